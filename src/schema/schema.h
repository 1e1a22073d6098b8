// Schema: the tables and indexes declared by schema files (format: README "Schema files").
#ifndef STAGEDB_SRC_SCHEMA_SCHEMA_H_
#define STAGEDB_SRC_SCHEMA_SCHEMA_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "schema/validator.h"

namespace stagedb::internal {

inline constexpr size_t kMaxIndexFields = 16;
inline constexpr size_t kMaxNameLength = 64;

struct IndexDef {
  std::string name;
  std::vector<std::string> fields;  // dotted paths
  bool unique = false;
  friend bool operator==(const IndexDef&, const IndexDef&) = default;
};

// The caller claims a table may be scoped by (row-level scoping, README "Row-level scoping").
inline constexpr const char* kScopeClaims[] = {"tenant", "workspace"};

struct TableDef {
  std::string name;
  Validator document;  // an object validator of the user fields
  std::vector<IndexDef> indexes;
  // Row-level scoping: claim ("tenant" or "workspace") -> the top-level field that holds it.
  std::map<std::string, std::string> scope;
  // Soft delete: the optional number field Delete sets (ms since the epoch); empty: hard delete.
  std::string soft_delete_field;
  // TTL: a document whose `ttl_field` (ms since the epoch) is older than `ttl` is removed by the
  // engine's sweep. Empty field: no TTL. `ttl_index`: an index that starts with the field.
  std::string ttl_field;
  double ttl_seconds = 0;
  std::string ttl_index;
};

class Schema {
 public:
  // Parses the text of one schema file; `source` names it in errors.
  static absl::StatusOr<Schema> FromJsonText(std::string_view text, const std::string& source);
  // Every `*.json` file in `dir`, merged (a table declared twice is an error).
  static absl::StatusOr<Schema> FromDirectory(const std::string& dir);

  // Adds the engine's system tables (`_scheduled_functions`, `_storage`, ...), which no schema
  // file may declare, as `text` (a SystemSchemaText, this build's or a stored one) declares them.
  absl::Status AddSystemTables(std::string_view text);
  // The schema as the text of one schema file (what the database stores), without the system
  // tables.
  std::string ToJsonText() const;
  // Every id(table) names a declared table (checked once all files are merged).
  absl::Status CheckReferences() const;
  const std::map<std::string, TableDef>& tables() const { return tables_; }

 private:
  // `system`: the text declares system tables (names starting with '_'), and only those.
  static absl::StatusOr<Schema> Parse(std::string_view text, const std::string& source,
                                      bool system);
  absl::Status Merge(Schema other, const std::string& source);

  std::map<std::string, TableDef> tables_;
};

// The system tables as this build declares them (a schema file's text). Stored with the user's
// schema, so a later build that changes them migrates them as it migrates the user's tables.
std::string_view SystemSchemaText();

// Whether `name` is a system table's: it starts with '_'.
bool IsSystemTable(std::string_view name);

// Table, index and top-level field names: [A-Za-z_][A-Za-z0-9_]*, at most 64 characters.
bool IsIdentifier(std::string_view name);

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_SCHEMA_SCHEMA_H_
