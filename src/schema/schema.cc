#include "schema/schema.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace stagedb::internal {
namespace {

absl::Status SchemaError(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrFormat("schema %s: %s", source, what));
}

// Refuses members other than `allowed` in a JSON object of the schema file: a misspelt one
// ("index", "uniqe") would otherwise drop what it meant without a word.
absl::Status CheckMembers(const nlohmann::json& json, std::initializer_list<const char*> allowed,
                          const std::string& source, const std::string& where) {
  for (const auto& [member, unused] : json.items()) {
    if (std::none_of(allowed.begin(), allowed.end(), [&](const char* a) { return member == a; })) {
      return SchemaError(source, absl::StrFormat("%s: unknown member \"%s\" (allowed: %s)", where,
                                                 member, absl::StrJoin(allowed, ", ")));
    }
  }
  return absl::OkStatus();
}

// Whether documents of `document` (the table's validator) can have a value at the dotted
// `path`: each step must be a declared field of an object (through optional and unions);
// `any` and records admit every path below them.
bool PathCanExist(const Validator& document, const std::string& path) {
  if (path == "_creationTime" || path == "_id") return true;
  std::vector<const Validator*> at = {&document};
  for (const std::string& step : std::vector<std::string>(absl::StrSplit(path, '.'))) {
    std::vector<const Validator*> next;
    while (!at.empty()) {
      const Validator* v = at.back();
      at.pop_back();
      switch (v->kind()) {
        case Validator::Kind::kAny:
        case Validator::Kind::kRecord:
          return true;
        case Validator::Kind::kOptional:
        case Validator::Kind::kUnion:
          for (const Validator& child : v->children()) at.push_back(&child);
          break;
        case Validator::Kind::kObject:
          if (auto it = v->fields().find(step); it != v->fields().end()) {
            next.push_back(&it->second);
          }
          break;
        default:
          break;
      }
    }
    if (next.empty()) return false;
    at = std::move(next);
  }
  return true;
}

absl::StatusOr<IndexDef> ParseIndex(const nlohmann::json& json, const std::string& table,
                                    const Validator& document, const std::string& source) {
  if (!json.is_object() || !json.contains("name") || !json["name"].is_string() ||
      !json.contains("fields") || !json["fields"].is_array()) {
    return SchemaError(source, absl::StrFormat("table \"%s\": an index is {\"name\": ..., "
                                               "\"fields\": [...], \"unique\": false}",
                                               table));
  }
  IndexDef index;
  index.name = json["name"].get<std::string>();
  const std::string where = absl::StrFormat("table \"%s\" index \"%s\"", table, index.name);
  if (absl::Status s = CheckMembers(json, {"name", "fields", "unique"}, source, where); !s.ok()) {
    return s;
  }
  if (!IsIdentifier(index.name)) {
    return SchemaError(source, where + ": the name is not an identifier");
  }
  if (index.name == "by_id" || index.name == "by_creation_time") {
    return SchemaError(source, where + ": the name is reserved (every table has it)");
  }
  if (json["fields"].empty() || json["fields"].size() > kMaxIndexFields) {
    return SchemaError(source,
                       absl::StrFormat("%s: an index has 1 to %d fields", where, kMaxIndexFields));
  }
  for (const auto& field : json["fields"]) {
    if (!field.is_string()) return SchemaError(source, where + ": fields are strings");
    const std::string path = field.get<std::string>();
    // The first path element must be a declared field (or a system field).
    if (!PathCanExist(document, path)) {
      return SchemaError(source,
                         absl::StrFormat("%s: field \"%s\" is not in the table", where, path));
    }
    if (std::find(index.fields.begin(), index.fields.end(), path) != index.fields.end()) {
      return SchemaError(source, absl::StrFormat("%s: field \"%s\" appears twice", where, path));
    }
    index.fields.push_back(path);
  }
  if (json.contains("unique")) {
    if (!json["unique"].is_boolean()) return SchemaError(source, where + ": unique is a boolean");
    index.unique = json["unique"].get<bool>();
  }
  return index;
}

// {"workspace": "workspace_id", "tenant": "tenant_id"}: each field a required top-level string
// or id field of the table.
absl::StatusOr<std::map<std::string, std::string>> ParseScope(const nlohmann::json& json,
                                                              const std::string& table,
                                                              const Validator& document,
                                                              const std::string& source) {
  const std::string where = absl::StrFormat("table \"%s\" scope", table);
  if (!json.is_object() || json.empty()) {
    return SchemaError(source, where + " is {\"tenant\": \"<field>\", \"workspace\": \"<field>\"}");
  }
  std::map<std::string, std::string> scope;
  for (const auto& [claim, field_json] : json.items()) {
    if (std::find(std::begin(kScopeClaims), std::end(kScopeClaims), claim) ==
        std::end(kScopeClaims)) {
      return SchemaError(source, absl::StrFormat("%s: unknown claim \"%s\" (allowed: %s)", where,
                                                 claim, absl::StrJoin(kScopeClaims, ", ")));
    }
    if (!field_json.is_string()) {
      return SchemaError(source, absl::StrFormat("%s: %s names a field", where, claim));
    }
    const std::string field = field_json.get<std::string>();
    auto it = document.fields().find(field);
    const bool holds_text =
        it != document.fields().end() && (it->second.kind() == Validator::Kind::kString ||
                                          it->second.kind() == Validator::Kind::kId);
    if (!holds_text) {
      return SchemaError(source, absl::StrFormat("%s: %s field \"%s\" must be a required string "
                                                 "or id field of the table",
                                                 where, claim, field));
    }
    scope.emplace(claim, field);
  }
  return scope;
}

// {"field": "deletedAt"}: an optional number field of the table.
absl::StatusOr<std::string> ParseSoftDelete(const nlohmann::json& json, const std::string& table,
                                            const Validator& document, const std::string& source) {
  const std::string where = absl::StrFormat("table \"%s\" soft_delete", table);
  if (!json.is_object() || json.size() != 1 || !json.contains("field") ||
      !json["field"].is_string()) {
    return SchemaError(source, where + " is {\"field\": \"<optional number field>\"}");
  }
  const std::string field = json["field"].get<std::string>();
  auto it = document.fields().find(field);
  const bool optional_number = it != document.fields().end() &&
                               it->second.kind() == Validator::Kind::kOptional &&
                               it->second.children()[0].kind() == Validator::Kind::kFloat64;
  if (!optional_number) {
    return SchemaError(source, absl::StrFormat("%s: field \"%s\" must be an optional number field "
                                               "of the table ({\"type\": \"optional\", \"of\": "
                                               "\"number\"})",
                                               where, field));
  }
  return field;
}

// {"field": "lastSeenAt", "seconds": 120}: a number field (optional or not) that an index starts
// with, so that the sweep reads only the expired documents.
absl::Status ParseTtl(const nlohmann::json& json, const std::string& source, TableDef* table) {
  const std::string where = absl::StrFormat("table \"%s\" ttl", table->name);
  if (!json.is_object() || json.size() != 2 || !json.contains("field") ||
      !json["field"].is_string() || !json.contains("seconds") || !json["seconds"].is_number() ||
      !(json["seconds"].get<double>() > 0)) {
    return SchemaError(
        source, where + " is {\"field\": \"<number field>\", \"seconds\": <positive number>}");
  }
  const std::string field = json["field"].get<std::string>();
  auto it = table->document.fields().find(field);
  const Validator* validator = it == table->document.fields().end() ? nullptr : &it->second;
  if (validator != nullptr && validator->kind() == Validator::Kind::kOptional) {
    validator = &validator->children()[0];
  }
  if (validator == nullptr || validator->kind() != Validator::Kind::kFloat64) {
    return SchemaError(source, absl::StrFormat("%s: field \"%s\" must be a number field of the "
                                               "table (milliseconds since the epoch)",
                                               where, field));
  }
  if (!table->soft_delete_field.empty()) {
    return SchemaError(source, where +
                                   ": a table with soft_delete keeps its documents, so it "
                                   "cannot also expire them");
  }
  for (const IndexDef& index : table->indexes) {
    if (index.fields.front() == field) {
      table->ttl_index = index.name;
      break;
    }
  }
  if (table->ttl_index.empty()) {
    return SchemaError(source,
                       absl::StrFormat("%s: field \"%s\" needs an index that starts with it, so "
                                       "the sweep reads only expired documents (e.g. {\"name\": "
                                       "\"by_%s\", \"fields\": [\"%s\"]})",
                                       where, field, field, field));
  }
  table->ttl_field = field;
  table->ttl_seconds = json["seconds"].get<double>();
  return absl::OkStatus();
}

}  // namespace

bool IsIdentifier(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  if (!(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_')) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// The engine's own tables (README "System tables"): written only by the engine (the scheduler,
// file storage), readable, queryable and subscribable like any table, never row-scoped. Times are
// ms since the epoch; `auth` is who a job runs as (functions/scheduler.cc). Ended jobs are kept
// 7 days (as Convex keeps them), then swept like any TTL table's documents.
constexpr std::string_view kSystemSchema = R"({"tables": {
  "_scheduled_functions": {
    "fields": {
      "name": "string",
      "kind": {"type": "union", "of": [{"type": "literal", "value": "mutation"},
                                       {"type": "literal", "value": "action"}]},
      "args": "any",
      "auth": "any",
      "scheduledTime": "number",
      "state": {"type": "union", "of": [{"type": "literal", "value": "pending"},
                                        {"type": "literal", "value": "inProgress"},
                                        {"type": "literal", "value": "success"},
                                        {"type": "literal", "value": "failed"},
                                        {"type": "literal", "value": "canceled"}]},
      "completedTime": {"type": "optional", "of": "number"},
      "error": {"type": "optional", "of": "string"}
    },
    "indexes": [{"name": "by_state_time", "fields": ["state", "scheduledTime"]},
                {"name": "by_scheduled_time", "fields": ["scheduledTime"]},
                {"name": "by_completed_time", "fields": ["completedTime"]}],
    "ttl": {"field": "completedTime", "seconds": 604800}
  },
  "_storage": {
    "fields": {
      "contentType": "string",
      "size": "int64",
      "sha256": "string",
      "state": {"type": "union", "of": [{"type": "literal", "value": "uploading"},
                                        {"type": "literal", "value": "ready"},
                                        {"type": "literal", "value": "deleting"}]}
    },
    "indexes": [{"name": "by_state", "fields": ["state"]}]
  },
  "_storage_chunks": {
    "fields": {
      "storageId": {"type": "id", "table": "_storage"},
      "index": "int64",
      "data": "bytes"
    },
    "indexes": [{"name": "by_storage", "fields": ["storageId", "index"]}]
  }
}})";

bool IsSystemTable(std::string_view name) { return !name.empty() && name[0] == '_'; }

absl::StatusOr<Schema> Schema::FromJsonText(std::string_view text, const std::string& source) {
  return Parse(text, source, /*system=*/false);
}

std::string_view SystemSchemaText() { return kSystemSchema; }

absl::Status Schema::AddSystemTables(std::string_view text) {
  absl::StatusOr<Schema> system = Parse(text, "of the system tables", /*system=*/true);
  if (!system.ok()) return system.status();
  return Merge(*std::move(system), "of the system tables");
}

absl::StatusOr<Schema> Schema::Parse(std::string_view text, const std::string& source,
                                     bool system) {
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return SchemaError(source, "not valid JSON");
  if (!json.is_object() || !json.contains("tables") || !json["tables"].is_object()) {
    return SchemaError(source, "a schema file is {\"tables\": {\"<table>\": {...}}}");
  }
  if (absl::Status s = CheckMembers(json, {"tables"}, source, "the file"); !s.ok()) return s;
  Schema schema;
  for (const auto& [name, table_json] : json["tables"].items()) {
    if (!IsIdentifier(name) || IsSystemTable(name) != system) {
      return SchemaError(
          source, absl::StrFormat("table name \"%s\" is not an identifier of at most %d "
                                  "characters that does not start with '_' (names starting with "
                                  "'_' are the engine's system tables)",
                                  name, kMaxNameLength));
    }
    if (!table_json.is_object() || !table_json.contains("fields")) {
      return SchemaError(source, absl::StrFormat("table \"%s\" needs \"fields\"", name));
    }
    if (absl::Status s =
            CheckMembers(table_json, {"fields", "indexes", "scope", "soft_delete", "ttl"}, source,
                         absl::StrFormat("table \"%s\"", name));
        !s.ok()) {
      return s;
    }
    TableDef table;
    table.name = name;
    absl::StatusOr<Validator> document =
        Validator::FromJson({{"type", "object"}, {"fields", table_json["fields"]}}, name);
    if (!document.ok()) return document.status();
    table.document = *std::move(document);
    for (const auto& [field, unused] : table.document.fields()) {
      if (!IsIdentifier(field) || field[0] == '_') {
        return SchemaError(source,
                           absl::StrFormat("table \"%s\": field name \"%s\" is not an identifier "
                                           "(system fields start with '_')",
                                           name, field));
      }
    }
    if (table_json.contains("indexes")) {
      if (!table_json["indexes"].is_array()) {
        return SchemaError(source, absl::StrFormat("table \"%s\": indexes is an array", name));
      }
      for (const auto& index_json : table_json["indexes"]) {
        absl::StatusOr<IndexDef> index = ParseIndex(index_json, name, table.document, source);
        if (!index.ok()) return index.status();
        for (const IndexDef& other : table.indexes) {
          if (other.name == index->name) {
            return SchemaError(source, absl::StrFormat("table \"%s\": index \"%s\" is declared "
                                                       "twice",
                                                       name, index->name));
          }
        }
        table.indexes.push_back(*std::move(index));
      }
    }
    if (table_json.contains("scope")) {
      absl::StatusOr<std::map<std::string, std::string>> scope =
          ParseScope(table_json["scope"], name, table.document, source);
      if (!scope.ok()) return scope.status();
      table.scope = *std::move(scope);
    }
    if (table_json.contains("soft_delete")) {
      absl::StatusOr<std::string> field =
          ParseSoftDelete(table_json["soft_delete"], name, table.document, source);
      if (!field.ok()) return field.status();
      table.soft_delete_field = *std::move(field);
    }
    if (table_json.contains("ttl")) {
      if (absl::Status s = ParseTtl(table_json["ttl"], source, &table); !s.ok()) return s;
    }
    schema.tables_.emplace(name, std::move(table));
  }
  return schema;
}

absl::StatusOr<Schema> Schema::FromDirectory(const std::string& dir) {
  std::error_code error;
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    if (entry.is_regular_file() && entry.path().extension() == ".json") {
      files.push_back(entry.path());
    }
  }
  if (error) {
    return absl::InvalidArgumentError(
        absl::StrFormat("cannot read schema directory \"%s\": %s", dir, error.message()));
  }
  std::sort(files.begin(), files.end());
  Schema merged;
  for (const auto& file : files) {
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<Schema> schema = FromJsonText(text.str(), file.string());
    if (!schema.ok()) return schema.status();
    if (absl::Status s = merged.Merge(*std::move(schema), file.string()); !s.ok()) return s;
  }
  return merged;
}

absl::Status Schema::Merge(Schema other, const std::string& source) {
  for (auto& [name, table] : other.tables_) {
    if (tables_.contains(name)) {
      return SchemaError(source, absl::StrFormat("table \"%s\" is declared in two files", name));
    }
    tables_.emplace(name, std::move(table));
  }
  return absl::OkStatus();
}

absl::Status Schema::CheckReferences() const {
  for (const auto& [name, table] : tables_) {
    std::vector<std::string> referenced;
    table.document.CollectIdTables(&referenced);
    for (const std::string& target : referenced) {
      if (!tables_.contains(target)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("table \"%s\" has an id(\"%s\") field, but no table \"%s\" is declared",
                            name, target, target));
      }
    }
  }
  return absl::OkStatus();
}

std::string Schema::ToJsonText() const {
  nlohmann::json tables = nlohmann::json::object();
  for (const auto& [name, table] : tables_) {
    if (IsSystemTable(name)) continue;  // added by every Open, in the engine's current form
    nlohmann::json indexes = nlohmann::json::array();
    for (const IndexDef& index : table.indexes) {
      indexes.push_back({{"name", index.name}, {"fields", index.fields}, {"unique", index.unique}});
    }
    tables[name] = {{"fields", table.document.ToJson()["fields"]}, {"indexes", indexes}};
    if (!table.scope.empty()) tables[name]["scope"] = table.scope;
    if (!table.soft_delete_field.empty()) {
      tables[name]["soft_delete"] = {{"field", table.soft_delete_field}};
    }
    if (!table.ttl_field.empty()) {
      tables[name]["ttl"] = {{"field", table.ttl_field}, {"seconds", table.ttl_seconds}};
    }
  }
  return nlohmann::json({{"tables", tables}}).dump(2);
}

}  // namespace stagedb::internal
