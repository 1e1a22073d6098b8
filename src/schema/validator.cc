#include "schema/validator.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "stagedb/document.h"
#include "stagedb/id.h"
#include "values/value_internal.h"

namespace stagedb::internal {
namespace {

struct SimpleKind {
  std::string_view name;
  Validator::Kind kind;
};
constexpr SimpleKind kSimpleKinds[] = {
    {"string", Validator::Kind::kString},   {"number", Validator::Kind::kFloat64},
    {"float64", Validator::Kind::kFloat64}, {"int64", Validator::Kind::kInt64},
    {"boolean", Validator::Kind::kBoolean}, {"bytes", Validator::Kind::kBytes},
    {"null", Validator::Kind::kNull},       {"any", Validator::Kind::kAny},
};

// The numbers rule's line: every integer up to 2^53 in magnitude has a float64 of its own;
// past it, float64 neighbours are 2 or more apart, so an int64 there may not survive.
constexpr int64_t kMaxExactFloat64Integer = int64_t{1} << 53;

// The float64 that holds `v` exactly, or nullopt when it is past the rule's line.
std::optional<double> ExactFloat64(int64_t v) {
  if (v < -kMaxExactFloat64Integer || v > kMaxExactFloat64Integer) return std::nullopt;
  return static_cast<double>(v);
}

std::string_view SimpleName(Validator::Kind kind) {
  for (const SimpleKind& simple : kSimpleKinds) {
    if (simple.kind == kind) return simple.name;
  }
  return "";
}

absl::Status SchemaError(const std::string& where, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrFormat("schema: %s: %s", where, what));
}

// The member of a JSON object, or an error naming it.
absl::StatusOr<const nlohmann::json*> Member(const nlohmann::json& json, const char* name,
                                             const std::string& where) {
  auto it = json.find(name);
  if (it == json.end()) {
    return SchemaError(where, absl::StrFormat("\"%s\" is required for type \"%s\"", name,
                                              json.value("type", std::string("?"))));
  }
  return &*it;
}

// The members a validator object of `type` may have.
std::vector<const char*> MembersOf(std::string_view type) {
  if (type == "id") return {"type", "table"};
  if (type == "literal") return {"type", "value"};
  if (type == "optional" || type == "union") return {"type", "of"};
  if (type == "array") return {"type", "items"};
  if (type == "record") return {"type", "keys", "values"};
  if (type == "object") return {"type", "fields"};
  return {"type"};
}

}  // namespace

absl::StatusOr<Validator> Validator::FromJson(const nlohmann::json& json, const std::string& where,
                                              bool object_field) {
  Validator v;
  std::string type;
  if (json.is_string()) {
    type = json.get<std::string>();
  } else if (json.is_object() && json.contains("type") && json["type"].is_string()) {
    type = json["type"].get<std::string>();
  } else {
    return SchemaError(where, "a validator is a type name or an object with a \"type\"");
  }
  // A misspelt member would otherwise be ignored silently, and with it what it meant.
  if (json.is_object()) {
    const std::vector<const char*> allowed = MembersOf(type);
    for (const auto& [member, unused] : json.items()) {
      if (std::none_of(allowed.begin(), allowed.end(),
                       [&](const char* a) { return member == a; })) {
        return SchemaError(where, absl::StrFormat("unknown member \"%s\" in a \"%s\" validator "
                                                  "(it takes: %s)",
                                                  member, type, absl::StrJoin(allowed, ", ")));
      }
    }
  }
  for (const SimpleKind& simple : kSimpleKinds) {
    if (type == simple.name) {
      v.kind_ = simple.kind;
      return v;
    }
  }
  if (!json.is_object()) {
    return SchemaError(where, absl::StrFormat("unknown type \"%s\"", type));
  }
  if (type == "optional" && !object_field) {
    return SchemaError(where,
                       "\"optional\" may only be the validator of an object field (the "
                       "field may be missing)");
  }
  auto child = [&](const char* member, const std::string& child_where) -> absl::Status {
    absl::StatusOr<const nlohmann::json*> node = Member(json, member, where);
    if (!node.ok()) return node.status();
    absl::StatusOr<Validator> parsed = FromJson(**node, child_where);
    if (!parsed.ok()) return parsed.status();
    v.children_.push_back(*std::move(parsed));
    return absl::OkStatus();
  };
  absl::Status status;
  if (type == "id") {
    v.kind_ = Kind::kId;
    absl::StatusOr<const nlohmann::json*> table = Member(json, "table", where);
    if (!table.ok()) return table.status();
    if (!(*table)->is_string()) return SchemaError(where, "\"table\" must be a string");
    v.table_ = (*table)->get<std::string>();
  } else if (type == "literal") {
    v.kind_ = Kind::kLiteral;
    absl::StatusOr<const nlohmann::json*> node = Member(json, "value", where);
    if (!node.ok()) return node.status();
    absl::StatusOr<Value> literal = ValueFromJson((*node)->dump());
    if (!literal.ok()) return SchemaError(where, std::string(literal.status().message()));
    v.literal_ = *std::move(literal);
  } else if (type == "optional") {
    v.kind_ = Kind::kOptional;
    status = child("of", where);
  } else if (type == "array") {
    v.kind_ = Kind::kArray;
    status = child("items", where + "[]");
  } else if (type == "record") {
    v.kind_ = Kind::kRecord;
    status = child("keys", where + "{key}");
    if (status.ok()) status = child("values", where + "{value}");
    if (status.ok() && v.children_[0].kind_ != Kind::kString && v.children_[0].kind_ != Kind::kId) {
      status = SchemaError(where, "record keys must be \"string\" or an id");
    }
  } else if (type == "union") {
    v.kind_ = Kind::kUnion;
    auto of = json.find("of");
    if (of == json.end() || !of->is_array() || of->empty()) {
      return SchemaError(where, "a union needs \"of\": a non-empty array of validators");
    }
    for (const auto& member : *of) {
      absl::StatusOr<Validator> parsed = FromJson(member, where);
      if (!parsed.ok()) return parsed.status();
      v.children_.push_back(*std::move(parsed));
    }
  } else if (type == "object") {
    v.kind_ = Kind::kObject;
    auto fields = json.find("fields");
    if (fields == json.end() || !fields->is_object()) {
      return SchemaError(where, "an object needs \"fields\": an object of validators");
    }
    for (const auto& [name, field_json] : fields->items()) {
      const std::string field_where = where.empty() ? name : where + "." + name;
      if (name.empty() || name[0] == '$') {
        return SchemaError(field_where, "field names are non-empty and do not start with '$'");
      }
      absl::StatusOr<Validator> parsed = FromJson(field_json, field_where, /*object_field=*/true);
      if (!parsed.ok()) return parsed.status();
      v.fields_.emplace(name, *std::move(parsed));
    }
  } else {
    return SchemaError(where, absl::StrFormat("unknown type \"%s\"", type));
  }
  if (!status.ok()) return status;
  return v;
}

nlohmann::json Validator::ToJson() const {
  if (std::string_view simple = SimpleName(kind_); !simple.empty()) {
    return std::string(simple);
  }
  nlohmann::json json;
  switch (kind_) {
    case Kind::kId:
      json = {{"type", "id"}, {"table", table_}};
      break;
    case Kind::kLiteral:
      json = {{"type", "literal"}, {"value", nlohmann::json::parse(ValueToJson(literal_))}};
      break;
    case Kind::kOptional:
      json = {{"type", "optional"}, {"of", children_[0].ToJson()}};
      break;
    case Kind::kArray:
      json = {{"type", "array"}, {"items", children_[0].ToJson()}};
      break;
    case Kind::kRecord:
      json = {
          {"type", "record"}, {"keys", children_[0].ToJson()}, {"values", children_[1].ToJson()}};
      break;
    case Kind::kUnion: {
      json = {{"type", "union"}, {"of", nlohmann::json::array()}};
      for (const Validator& member : children_) json["of"].push_back(member.ToJson());
      break;
    }
    case Kind::kObject: {
      json = {{"type", "object"}, {"fields", nlohmann::json::object()}};
      for (const auto& [name, field] : fields_) json["fields"][name] = field.ToJson();
      break;
    }
    default:
      break;
  }
  return json;
}

void Validator::CollectIdTables(std::vector<std::string>* tables) const {
  if (kind_ == Kind::kId) tables->push_back(table_);
  for (const Validator& child : children_) child.CollectIdTables(tables);
  for (const auto& [name, field] : fields_) field.CollectIdTables(tables);
}

std::string Validator::Describe() const {
  if (std::string_view simple = SimpleName(kind_); !simple.empty()) {
    return kind_ == Kind::kFloat64 ? "float64" : std::string(simple);
  }
  switch (kind_) {
    case Kind::kId:
      return absl::StrFormat("id(%s)", table_);
    case Kind::kLiteral:
      return absl::StrFormat("literal %s", DebugString(literal_));
    case Kind::kOptional:
      return absl::StrFormat("optional %s", children_[0].Describe());
    case Kind::kArray:
      return absl::StrFormat("array of %s", children_[0].Describe());
    case Kind::kRecord:
      return absl::StrFormat("record of %s to %s", children_[0].Describe(),
                             children_[1].Describe());
    case Kind::kUnion: {
      std::vector<std::string> members;
      for (const Validator& member : children_) members.push_back(member.Describe());
      return absl::StrJoin(members, " | ");
    }
    case Kind::kObject:
      return "object";
    default:
      return "?";
  }
}

std::string DescribeViolations(const std::vector<Violation>& violations) {
  if (violations.size() == 1) return violations[0].message;
  return absl::StrFormat("%s (and %d more)", violations[0].message, violations.size() - 1);
}

std::string Validator::FieldPath::ToString() const {
  if (parent == nullptr) return std::string(name);
  std::string prefix = parent->ToString();
  if (is_element) return absl::StrFormat("%s[%d]", prefix, index);
  if (prefix.empty()) return std::string(name);
  prefix.push_back('.');
  prefix.append(name);
  return prefix;
}

void Validator::CheckAt(const Value& value, Value* writable, const FieldPath& path,
                        const TableNumberLookup& tables, std::vector<Violation>* out) const {
  auto fail = [&](std::string message) { out->push_back({path.ToString(), std::move(message)}); };
  auto mismatch = [&](std::string_view why = "") {
    fail(value.is_undefined()
             ? absl::StrFormat("required field is missing (expected %s)", Describe())
             : absl::StrFormat("expected %s, got %s %s%s", Describe(), TypeName(value.type()),
                               DebugString(value, 60), why));
  };
  switch (kind_) {
    case Kind::kAny:
      if (value.is_undefined()) mismatch();
      return;
    case Kind::kString:
      if (!value.is_string()) mismatch();
      return;
    case Kind::kFloat64: {
      if (value.is_float64()) return;
      if (!value.is_int64() || writable == nullptr) return mismatch();
      const std::optional<double> exact = ExactFloat64(value.as_int64());
      if (!exact.has_value()) {
        return mismatch(
            ": float64 cannot hold it exactly (only integers up to 2^53 in magnitude); pass "
            "stagedb::Value::Float64(...) to store it rounded, or declare the field int64");
      }
      *writable = Value(*exact);
      return;
    }
    case Kind::kInt64:
      // Convex's strictness: a float64 is never narrowed, even one without a fraction.
      if (value.is_float64()) {
        return mismatch(
            ": a float64 is not converted to int64; write an int64 as "
            "stagedb::Value::Int64(...)");
      }
      if (!value.is_int64()) mismatch();
      return;
    case Kind::kBoolean:
      if (!value.is_boolean()) mismatch();
      return;
    case Kind::kBytes:
      if (!value.is_bytes()) mismatch();
      return;
    case Kind::kNull:
      if (!value.is_null()) mismatch();
      return;
    case Kind::kLiteral: {
      if (value == literal_) return;
      // A float64 literal is a number declared too: an int64 of the same value converts.
      if (writable != nullptr && literal_.is_float64() && value.is_int64()) {
        const std::optional<double> exact = ExactFloat64(value.as_int64());
        if (exact.has_value() && Value(*exact) == literal_) {  // Value: -0.0 is not 0
          *writable = literal_;
          return;
        }
      }
      return mismatch();
    }
    case Kind::kOptional:
      if (!value.is_undefined()) children_[0].CheckAt(value, writable, path, tables, out);
      return;
    case Kind::kId: {
      if (!value.is_string()) return mismatch();
      absl::StatusOr<DocumentId> id = DocumentId::Parse(value.as_string());
      if (!id.ok()) {
        return fail(absl::StrFormat("expected id(%s), got %s: %s", table_, DebugString(value, 60),
                                    id.status().message()));
      }
      if (id->table_number() != tables(table_)) {
        return fail(absl::StrFormat("expected id(%s), got an id of another table: %s", table_,
                                    value.as_string()));
      }
      return;
    }
    case Kind::kUnion: {
      // A member the value matches as it is wins (an int64 stays int64 in int64 | number); only
      // then may a member convert, tried on a copy so that a member failing half-way through
      // converts nothing.
      std::vector<Violation> scratch;
      for (const Validator& member : children_) {
        scratch.clear();
        member.CheckAt(value, nullptr, path, tables, &scratch);
        if (scratch.empty()) return;
      }
      if (writable != nullptr) {
        for (const Validator& member : children_) {
          scratch.clear();
          Value converted = value;
          member.CheckAt(converted, &converted, path, tables, &scratch);
          if (scratch.empty()) {
            *writable = std::move(converted);
            return;
          }
        }
      }
      if (children_.size() == 1) {
        out->insert(out->end(), scratch.begin(), scratch.end());
      } else {
        mismatch();
      }
      return;
    }
    case Kind::kArray: {
      if (!value.is_array()) return mismatch();
      const Array& array = value.as_array();
      for (size_t i = 0; i < array.size(); ++i) {
        children_[0].CheckAt(array[i], writable ? &writable->as_array()[i] : nullptr,
                             FieldPath{.parent = &path, .index = i, .is_element = true}, tables,
                             out);
      }
      return;
    }
    case Kind::kRecord: {
      if (!value.is_object()) return mismatch();
      const Object& object = value.as_object();
      for (auto field = object.begin(); field != object.end(); ++field) {
        const FieldPath field_path{.parent = &path, .name = field->first};
        children_[0].CheckAt(Value(field->first), nullptr, field_path, tables, out);
        Value* field_writable =
            writable ? &(writable->as_object().begin() + (field - object.begin()))->second
                     : nullptr;
        children_[1].CheckAt(field->second, field_writable, field_path, tables, out);
      }
      return;
    }
    case Kind::kObject:
      if (!value.is_object()) return mismatch();
      return CheckObject(value.as_object(), writable ? &writable->as_object() : nullptr, path,
                         tables, out);
  }
}

void Validator::CheckObject(const Object& object, Object* writable, const FieldPath& path,
                            const TableNumberLookup& tables, std::vector<Violation>* out) const {
  // Both are in ascending name order: one merge walk pairs each declared field with its value
  // (undefined when missing) and finds the undeclared ones, without a lookup per field.
  const bool top_level = path.parent == nullptr && path.name.empty();
  std::vector<Violation> undeclared;  // reported after the declared fields' violations
  auto declared = fields_.begin();
  auto given = object.begin();
  while (declared != fields_.end() || given != object.end()) {
    const bool only_declared =
        given == object.end() || (declared != fields_.end() && declared->first < given->first);
    if (only_declared) {
      declared->second.CheckAt(UndefinedValue(), nullptr,
                               FieldPath{.parent = &path, .name = declared->first}, tables, out);
      ++declared;
    } else if (declared == fields_.end() || given->first < declared->first) {
      // At the top level, `_id` and `_creationTime` are the system fields.
      const std::string& name = given->first;
      if (!top_level || (name != kIdField && name != kCreationTimeField)) {
        undeclared.push_back({FieldPath{.parent = &path, .name = name}.ToString(),
                              absl::StrFormat("field is not in the schema (value %s)",
                                              DebugString(given->second, 60))});
      }
      ++given;
    } else {
      Value* given_writable =
          writable ? &(writable->begin() + (given - object.begin()))->second : nullptr;
      declared->second.CheckAt(given->second, given_writable,
                               FieldPath{.parent = &path, .name = declared->first}, tables, out);
      ++declared;
      ++given;
    }
  }
  out->insert(out->end(), std::make_move_iterator(undeclared.begin()),
              std::make_move_iterator(undeclared.end()));
}

}  // namespace stagedb::internal
