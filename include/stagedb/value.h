// Value: the Convex-style value model of stagedb documents.
//
// A Value is one of null, int64, float64, boolean, string (valid UTF-8), bytes, array or object.
// A ninth state, undefined, means "no value": it is what a missing field reads as, what sorts
// first in an index, and the marker that removes a field in Transaction::Patch (Insert and
// Replace leave such a field out). It is never stored.
//
// Total order across types (as Convex sorts them):
//   undefined < null < int64 < float64 < boolean < string < bytes < array < object
// Every int64 sorts below every float64. Within a type:
//   - int64 numerically;
//   - float64 by IEEE total order: -inf < ... < -0.0 < +0.0 < ... < +inf < NaN (every NaN is the
//     same value, so -0.0 and +0.0 are different values but all NaNs are equal);
//   - false < true;
//   - strings and bytes bytewise (UTF-8 bytes; a proper prefix sorts first);
//   - arrays element by element, a proper prefix first;
//   - objects field by field in ascending field-name order, comparing (name, value) pairs, a
//     proper prefix first.
// Equality is exactly Compare(a, b) == 0.
#ifndef STAGEDB_VALUE_H_
#define STAGEDB_VALUE_H_

#include <algorithm>
#include <compare>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stagedb/export.h"
#include "stagedb/id.h"

namespace stagedb {

class Value;

// Byte strings, distinct from (UTF-8) strings.
struct Bytes {
  std::string data;
  friend bool operator==(const Bytes&, const Bytes&) = default;
};

using Array = std::vector<Value>;
// An object: fields kept sorted by name (bytewise), each name once. A map's interface over one
// sorted array: a decoded document is one allocation instead of one per field, which halves
// the cost of reading it. Iteration yields std::pair<std::string, Value>; do not change a
// field's name through an iterator (the order would break).
class Object {
 public:
  using value_type = std::pair<std::string, Value>;
  using iterator = std::vector<value_type>::iterator;
  using const_iterator = std::vector<value_type>::const_iterator;

  Object() = default;
  // Later duplicates of a name are ignored, as std::map does.
  Object(std::initializer_list<value_type> fields);

  iterator begin() { return fields_.begin(); }
  iterator end() { return fields_.end(); }
  const_iterator begin() const { return fields_.begin(); }
  const_iterator end() const { return fields_.end(); }
  size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }

  iterator find(std::string_view name);
  const_iterator find(std::string_view name) const;
  bool contains(std::string_view name) const;
  // The field, inserted as null when missing (as std::map's operator[]).
  Value& operator[](std::string_view name);
  // Inserts unless the name is present; returns the field and whether it was inserted.
  std::pair<iterator, bool> emplace(std::string name, Value value);
  size_t erase(std::string_view name);
  iterator erase(const_iterator position);
  void reserve(size_t n) { fields_.reserve(n); }

  friend bool operator==(const Object& a, const Object& b);

 private:
  iterator LowerBound(std::string_view name);

  std::vector<value_type> fields_;
};

enum class Type : uint8_t {
  kUndefined = 0,
  kNull,
  kInt64,
  kFloat64,
  kBoolean,
  kString,
  kBytes,
  kArray,
  kObject,
};

// "int64", "float64", ...: used in error messages.
STAGEDB_EXPORT std::string_view TypeName(Type type);

struct Undefined {
  friend bool operator==(Undefined, Undefined) = default;
};

class STAGEDB_EXPORT Value {
 public:
  Value() : rep_(nullptr) {}  // null
  Value(std::nullptr_t) : rep_(nullptr) {}
  Value(Undefined) : rep_(Undefined{}) {}
  Value(bool b) : rep_(b) {}
  Value(char) = delete;  // 'x' would silently be int64 120: write "x"
  Value(int i) : rep_(int64_t{i}) {}
  Value(long i) : rep_(int64_t{i}) {}
  Value(long long i) : rep_(static_cast<int64_t>(i)) {}
  Value(unsigned u) : rep_(int64_t{u}) {}
  // Sizes and counts: int64. A value above INT64_MAX wraps, as static_cast<int64_t> does.
  Value(unsigned long u) : rep_(static_cast<int64_t>(u)) {}
  Value(unsigned long long u) : rep_(static_cast<int64_t>(u)) {}
  Value(double d) : rep_(d) {}
  Value(const char* s) : rep_(std::string(s)) {}
  Value(std::string_view s) : rep_(std::string(s)) {}
  Value(std::string s) : rep_(std::move(s)) {}
  Value(Bytes b) : rep_(std::move(b)) {}
  Value(Array a) : rep_(std::move(a)) {}
  Value(Object o) : rep_(std::move(o)) {}
  // An id is stored as its text, a string (as in Convex).
  Value(const DocumentId& id) : rep_(id.text()) {}

  static Value Int64(int64_t i) { return Value(static_cast<long long>(i)); }
  static Value Float64(double d) { return Value(d); }

  Type type() const { return static_cast<Type>(rep_.index()); }
  bool is_undefined() const { return type() == Type::kUndefined; }
  bool is_null() const { return type() == Type::kNull; }
  bool is_int64() const { return type() == Type::kInt64; }
  bool is_float64() const { return type() == Type::kFloat64; }
  bool is_boolean() const { return type() == Type::kBoolean; }
  bool is_string() const { return type() == Type::kString; }
  bool is_bytes() const { return type() == Type::kBytes; }
  bool is_array() const { return type() == Type::kArray; }
  bool is_object() const { return type() == Type::kObject; }

  // Accessors; calling one for another type is a programming error (checked by std::get).
  int64_t as_int64() const { return std::get<int64_t>(rep_); }
  double as_float64() const { return std::get<double>(rep_); }
  bool as_boolean() const { return std::get<bool>(rep_); }
  const std::string& as_string() const { return std::get<std::string>(rep_); }
  const Bytes& as_bytes() const { return std::get<Bytes>(rep_); }
  const Array& as_array() const { return std::get<Array>(rep_); }
  Array& as_array() { return std::get<Array>(rep_); }
  const Object& as_object() const { return std::get<Object>(rep_); }
  Object& as_object() { return std::get<Object>(rep_); }

  // Object field lookup: the field's value, or undefined when this is not an object or the
  // field is missing.
  const Value& operator[](std::string_view field) const;

  friend STAGEDB_EXPORT bool operator==(const Value& a, const Value& b);
  friend STAGEDB_EXPORT std::strong_ordering operator<=>(const Value& a, const Value& b);

 private:
  std::variant<Undefined, std::nullptr_t, int64_t, double, bool, std::string, Bytes, Array, Object>
      rep_;
};

// Negative, zero or positive as a sorts before, with or after b in the total order above.
STAGEDB_EXPORT int Compare(const Value& a, const Value& b);

inline Object::Object(std::initializer_list<value_type> fields) {
  fields_.reserve(fields.size());
  for (const value_type& field : fields) emplace(field.first, field.second);
}

inline Object::iterator Object::LowerBound(std::string_view name) {
  return std::lower_bound(
      fields_.begin(), fields_.end(), name,
      [](const value_type& field, std::string_view n) { return field.first < n; });
}

inline Object::iterator Object::find(std::string_view name) {
  iterator it = LowerBound(name);
  return it != fields_.end() && it->first == name ? it : fields_.end();
}

inline Object::const_iterator Object::find(std::string_view name) const {
  return const_cast<Object*>(this)->find(name);
}

inline bool Object::contains(std::string_view name) const { return find(name) != end(); }

inline Value& Object::operator[](std::string_view name) {
  iterator it = LowerBound(name);
  if (it == fields_.end() || it->first != name) {
    it = fields_.emplace(it, std::string(name), Value());
  }
  return it->second;
}

inline std::pair<Object::iterator, bool> Object::emplace(std::string name, Value value) {
  // Appending in order (decoding, building) is the common case: no search.
  if (fields_.empty() || fields_.back().first < name) {
    fields_.emplace_back(std::move(name), std::move(value));
    return {fields_.end() - 1, true};
  }
  iterator it = LowerBound(name);
  if (it != fields_.end() && it->first == name) return {it, false};
  return {fields_.emplace(it, std::move(name), std::move(value)), true};
}

inline Object::iterator Object::erase(const_iterator position) { return fields_.erase(position); }

inline size_t Object::erase(std::string_view name) {
  iterator it = find(name);
  if (it == fields_.end()) return 0;
  fields_.erase(it);
  return 1;
}

inline bool operator==(const Object& a, const Object& b) { return a.fields_ == b.fields_; }

// A short human-readable rendering for error messages (JSON text, cut at `max_len` bytes).
STAGEDB_EXPORT std::string DebugString(const Value& value, size_t max_len = 120);

// ---- JSON text ----
// stagedb's JSON form keeps every value distinct:
//   null, true/false, strings: as JSON;
//   float64: a JSON number (always written with a fraction or exponent, e.g. 1.0); non-finite
//            values as {"$float": "NaN" | "Infinity" | "-Infinity"};
//   int64:   {"$integer": "<decimal>"}, e.g. {"$integer": "-42"};
//   bytes:   {"$bytes": "<standard base64>"};
//   arrays and objects: as JSON. Object keys starting with '$' are reserved for these forms.
// On input a plain JSON number is float64 (as in Convex); int64 needs the $integer form.
// Undefined has no JSON form: ValueToJson writes the bare word `undefined` (for messages), which
// ValueFromJson refuses.
STAGEDB_EXPORT absl::StatusOr<Value> ValueFromJson(std::string_view json);
STAGEDB_EXPORT std::string ValueToJson(const Value& value);

// ---- Limits ----
inline constexpr size_t kMaxDocumentBytes = 1 << 20;  // encoded document size
inline constexpr int kMaxNestingDepth = 16;           // a document is depth 1
inline constexpr size_t kMaxFieldNameBytes = 1024;
inline constexpr size_t kMaxObjectFields = 1024;
inline constexpr size_t kMaxArrayElements = 8192;

// Checks a value that is to be stored (inside a document): no undefined, strings valid UTF-8,
// nesting at most kMaxNestingDepth (counting `depth` for `value` itself), field names non-empty,
// at most kMaxFieldNameBytes, not starting with '$', array and object sizes within limits.
// Errors name the path of the offending value (e.g. `meta.tags[2]`), prefixed by `path`.
STAGEDB_EXPORT absl::Status ValidateStoredValue(const Value& value, std::string_view path = "",
                                                int depth = 1);

}  // namespace stagedb

#endif  // STAGEDB_VALUE_H_
