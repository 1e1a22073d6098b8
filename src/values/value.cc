#include "stagedb/value.h"

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "values/utf8.h"
#include "values/value_internal.h"

namespace stagedb {
namespace {

template <typename T>
int ThreeWay(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

// Bytewise comparison: std::string_view::compare uses char_traits<char>, which compares as
// unsigned char, the same order as the key codec's bytes.
int CompareBytes(std::string_view a, std::string_view b) {
  const int c = a.compare(b);
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

int CompareArrays(const Array& a, const Array& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (const int c = Compare(a[i], b[i]); c != 0) return c;
  }
  return ThreeWay(a.size(), b.size());
}

int CompareObjects(const Object& a, const Object& b) {
  // Both maps iterate in ascending (bytewise) key order, so this compares the sorted sequences of
  // (name, value) pairs, as the key codec lays them out.
  auto ia = a.begin();
  auto ib = b.begin();
  for (; ia != a.end() && ib != b.end(); ++ia, ++ib) {
    if (const int c = CompareBytes(ia->first, ib->first); c != 0) return c;
    if (const int c = Compare(ia->second, ib->second); c != 0) return c;
  }
  return ThreeWay(a.size(), b.size());
}

// ---- ValidateStoredValue ----

std::string FieldPath(std::string_view parent, std::string_view name) {
  return parent.empty() ? std::string(name)
                        : absl::StrCat(internal::AbslView(parent), ".", internal::AbslView(name));
}

// `field "<path>": ` or nothing at the top level.
std::string PathPrefix(std::string_view path) {
  return path.empty() ? std::string() : absl::StrCat("field \"", internal::AbslView(path), "\": ");
}

absl::Status ValidateFieldName(std::string_view name, std::string_view path) {
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(PathPrefix(path), "field name \"\" is empty"));
  }
  if (name.size() > kMaxFieldNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(PathPrefix(path), "field name of ", name.size(),
                                                   " bytes exceeds the limit of ",
                                                   kMaxFieldNameBytes));
  }
  if (!internal::IsValidUtf8(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(PathPrefix(path), "field name is not valid UTF-8"));
  }
  if (name.front() == '$') {
    return absl::InvalidArgumentError(absl::StrCat(PathPrefix(path), "field name \"",
                                                   internal::AbslView(name), "\" starts with '$'"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view TypeName(Type type) {
  switch (type) {
    case Type::kUndefined:
      return "undefined";
    case Type::kNull:
      return "null";
    case Type::kInt64:
      return "int64";
    case Type::kFloat64:
      return "float64";
    case Type::kBoolean:
      return "boolean";
    case Type::kString:
      return "string";
    case Type::kBytes:
      return "bytes";
    case Type::kArray:
      return "array";
    case Type::kObject:
      return "object";
  }
  return "unknown";
}

const Value& internal::UndefinedValue() {
  // A function-local static: safe to use from other static initializers and never destroyed
  // while still referenced.
  static const Value* const kUndefinedValue = new Value(Undefined{});
  return *kUndefinedValue;
}

const Value& Value::operator[](std::string_view field) const {
  if (!is_object()) return internal::UndefinedValue();
  const Object& object = as_object();
  const auto it = object.find(field);
  return it == object.end() ? internal::UndefinedValue() : it->second;
}

int Compare(const Value& a, const Value& b) {
  if (a.type() != b.type()) return ThreeWay(a.type(), b.type());
  switch (a.type()) {
    case Type::kUndefined:
    case Type::kNull:
      return 0;
    case Type::kInt64:
      return ThreeWay(a.as_int64(), b.as_int64());
    case Type::kFloat64:
      return ThreeWay(internal::OrderedFloatBits(a.as_float64()),
                      internal::OrderedFloatBits(b.as_float64()));
    case Type::kBoolean:
      return ThreeWay(a.as_boolean(), b.as_boolean());
    case Type::kString:
      return CompareBytes(a.as_string(), b.as_string());
    case Type::kBytes:
      return CompareBytes(a.as_bytes().data, b.as_bytes().data);
    case Type::kArray:
      return CompareArrays(a.as_array(), b.as_array());
    case Type::kObject:
      return CompareObjects(a.as_object(), b.as_object());
  }
  return 0;
}

bool operator==(const Value& a, const Value& b) { return Compare(a, b) == 0; }

std::strong_ordering operator<=>(const Value& a, const Value& b) {
  const int c = Compare(a, b);
  return c < 0 ? std::strong_ordering::less
               : (c > 0 ? std::strong_ordering::greater : std::strong_ordering::equal);
}

std::string DebugString(const Value& value, size_t max_len) {
  std::string text;
  internal::AppendJson(value, max_len, &text);
  if (text.size() <= max_len) return text;
  // Cut at a UTF-8 character boundary so the message stays valid text.
  size_t cut = max_len;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  text.resize(cut);
  text += "...";
  return text;
}

absl::Status ValidateStoredValue(const Value& value, std::string_view path, int depth) {
  switch (value.type()) {
    case Type::kUndefined:
      return absl::InvalidArgumentError(
          path.empty() ? std::string("undefined is not a storable value")
                       : absl::StrCat("undefined is not a storable value (field \"",
                                      internal::AbslView(path), "\")"));
    case Type::kString:
      if (!internal::IsValidUtf8(value.as_string())) {
        return absl::InvalidArgumentError(
            absl::StrCat(PathPrefix(path), "string is not valid UTF-8"));
      }
      return absl::OkStatus();
    case Type::kArray: {
      if (depth > kMaxNestingDepth) {
        return absl::InvalidArgumentError(absl::StrCat(PathPrefix(path), "nesting depth ", depth,
                                                       " exceeds the limit of ", kMaxNestingDepth));
      }
      const Array& array = value.as_array();
      if (array.size() > kMaxArrayElements) {
        return absl::InvalidArgumentError(absl::StrCat(PathPrefix(path), "array of ", array.size(),
                                                       " elements exceeds the limit of ",
                                                       kMaxArrayElements));
      }
      for (size_t i = 0; i < array.size(); ++i) {
        absl::Status status = ValidateStoredValue(
            array[i], absl::StrCat(internal::AbslView(path), "[", i, "]"), depth + 1);
        if (!status.ok()) return status;
      }
      return absl::OkStatus();
    }
    case Type::kObject: {
      if (depth > kMaxNestingDepth) {
        return absl::InvalidArgumentError(absl::StrCat(PathPrefix(path), "nesting depth ", depth,
                                                       " exceeds the limit of ", kMaxNestingDepth));
      }
      const Object& object = value.as_object();
      if (object.size() > kMaxObjectFields) {
        return absl::InvalidArgumentError(
            absl::StrCat(PathPrefix(path), "object of ", object.size(),
                         " fields exceeds the limit of ", kMaxObjectFields));
      }
      for (const auto& [name, field_value] : object) {
        if (absl::Status status = ValidateFieldName(name, path); !status.ok()) return status;
        absl::Status status = ValidateStoredValue(field_value, FieldPath(path, name), depth + 1);
        if (!status.ok()) return status;
      }
      return absl::OkStatus();
    }
    case Type::kNull:
    case Type::kInt64:
    case Type::kFloat64:
    case Type::kBoolean:
    case Type::kBytes:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

}  // namespace stagedb
