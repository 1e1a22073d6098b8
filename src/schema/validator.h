// Validator: the schema language's type of a value (string, int64, id(table), union, object, ...)
// and the check of a value against it. Parsed from and written back to schema-file JSON.
#ifndef STAGEDB_SRC_SCHEMA_VALIDATOR_H_
#define STAGEDB_SRC_SCHEMA_VALIDATOR_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "stagedb/value.h"

namespace stagedb::internal {

// Where a value broke its validator: `path` is the field path ("meta.tags[2]").
struct Violation {
  std::string path;
  std::string message;
};

// The first violation's message, and " (and N more)" when there are others: the one way an
// error message sums up a failed validation. `violations` is not empty.
std::string DescribeViolations(const std::vector<Violation>& violations);

// Maps a table name to its number, for id(table) checks; 0 when the table is unknown.
using TableNumberLookup = std::function<uint32_t(std::string_view table)>;

class Validator {
 public:
  enum class Kind {
    kString,
    kFloat64,
    kInt64,
    kBoolean,
    kBytes,
    kNull,
    kAny,
    kId,
    kLiteral,
    kUnion,
    kOptional,
    kArray,
    kObject,
    kRecord,
  };

  // Parses the JSON form (see README "Schema files"); errors name `where` (e.g. `tasks.priority`).
  // `object_field`: the validator of an object's field, the one place "optional" may stand.
  static absl::StatusOr<Validator> FromJson(const nlohmann::json& json, const std::string& where,
                                            bool object_field = false);
  nlohmann::json ToJson() const;

  Kind kind() const { return kind_; }
  const std::map<std::string, Validator>& fields() const { return fields_; }
  // Union members; the one validator of optional, array; record keys then values.
  const std::vector<Validator>& children() const { return children_; }
  // Table names that id(table) validators inside refer to.
  void CollectIdTables(std::vector<std::string>* tables) const;

  // Appends to `out` every violation of `value` (at `path`), at most a few per field.
  // Undefined stands for a missing field: only optional accepts it. Types must match exactly,
  // nothing is converted: for values already stored (a schema change), and as the cheap first
  // check of function arguments.
  void Check(const Value& value, const std::string& path, const TableNumberLookup& tables,
             std::vector<Violation>* out) const {
    CheckAt(value, nullptr, FieldPath{.name = path}, tables, out);
  }
  // Check for a whole document (this is the table's object validator); system fields pass.
  void CheckDocument(const Object& document, const TableNumberLookup& tables,
                     std::vector<Violation>* out) const {
    CheckObject(document, nullptr, FieldPath{}, tables, out);
  }
  // Check for a value about to be written or passed to a function, applying the numbers rule
  // in place: an int64 where a float64 ("number") is declared becomes that float64 when it
  // converts exactly (|v| <= 2^53), and is a violation saying so otherwise. A union takes a
  // member that matches without conversion first. After a violation `value` may be partly
  // converted: the caller discards it.
  void CheckAndConvert(Value* value, const std::string& path, const TableNumberLookup& tables,
                       std::vector<Violation>* out) const {
    CheckAt(*value, value, FieldPath{.name = path}, tables, out);
  }
  void CheckAndConvertDocument(Object* document, const TableNumberLookup& tables,
                               std::vector<Violation>* out) const {
    CheckObject(*document, document, FieldPath{}, tables, out);
  }
  // "int64", "id(tasks)", "union of ...": for error messages.
  std::string Describe() const;

  friend bool operator==(const Validator& a, const Validator& b) {
    return a.ToJson() == b.ToJson();
  }

 private:
  // A value's place in the document, spelled out ("meta.tags[2]") only when a violation needs
  // it: building the string for every value checked was most of the cost of validation.
  struct FieldPath {
    const FieldPath* parent = nullptr;  // nullptr: `name` is the whole path (the root)
    std::string_view name;              // a field name, unless this is an array element
    size_t index = 0;
    bool is_element = false;
    std::string ToString() const;
  };

  // The one type check. `writable` is nullptr (exact types only) or `value` itself, which
  // the numbers rule may then convert.
  void CheckAt(const Value& value, Value* writable, const FieldPath& path,
               const TableNumberLookup& tables, std::vector<Violation>* out) const;
  void CheckObject(const Object& object, Object* writable, const FieldPath& path,
                   const TableNumberLookup& tables, std::vector<Violation>* out) const;

  Kind kind_ = Kind::kAny;
  std::string table_;                        // kId
  Value literal_;                            // kLiteral
  std::vector<Validator> children_;          // union members; array items, optional, record k/v
  std::map<std::string, Validator> fields_;  // kObject
};

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_SCHEMA_VALIDATOR_H_
