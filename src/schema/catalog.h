// Catalog: the schema's tables and indexes with their stable numbers, and how a document maps
// to its index keys. Numbers are kept across reopens (stored as JSON in the meta database): a
// table keeps its number (ids carry it), an index keeps its id while its definition is unchanged.
#ifndef STAGEDB_SRC_SCHEMA_CATALOG_H_
#define STAGEDB_SRC_SCHEMA_CATALOG_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "schema/schema.h"
#include "stagedb/value.h"

namespace stagedb::internal {

struct TableInfo;

struct IndexInfo {
  uint32_t id = 0;
  const TableInfo* table = nullptr;
  std::string name;
  // The key's fields in order: the declared fields, then `_creationTime` and `_id` (ties sort by
  // creation); `by_id` is just `_id`, `by_creation_time` is `_creationTime`, `_id`.
  std::vector<std::string> key_fields;
  std::vector<std::vector<std::string>> key_paths;  // key_fields split at '.'
  size_t declared_fields = 0;  // how many of key_fields the schema declared (the unique part)
  bool unique = false;
  bool primary = false;  // by_id: its entries hold the documents
  std::string prefix;    // the index id, 4 bytes big-endian: the start of every key

  // The full storage key of `document` in this index.
  std::string KeyFor(const Object& document) const;
  // The storage key prefix of the first `n` key fields of `document` (the unique part).
  std::string KeyPrefixFor(const Object& document, size_t n) const;
  // The document's values of the declared fields, for messages: `email = "a@x", org = "o1"`.
  std::string DescribeValues(const Object& document) const;
  // Whether a unique index constrains `document`: not when one of its declared fields is
  // missing (undefined), as SQL exempts NULL, so an optional field can have a unique index.
  bool ConstrainsUnique(const Object& document) const;
  // InvalidArgument naming the index, its fields and the document's values when `key` (this
  // index's key of `document`) is longer than storage allows.
  absl::Status CheckKeySize(std::string_view key, const Object& document) const;
};

// The `by_id` key suffix (the key encoding of `_id`) that ends every index key, so a secondary
// entry needs no value to find its document; empty when `storage_key` does not end with one.
std::string_view IdSuffixOf(std::string_view storage_key);

struct TableInfo {
  uint32_t number = 0;
  std::string name;
  const TableDef* def = nullptr;
  const IndexInfo* by_id = nullptr;
  const IndexInfo* by_creation_time = nullptr;
  std::vector<const IndexInfo*> indexes;  // all, by_id first
};

class Catalog {
 public:
  // Numbers the tables and indexes of `schema`, keeping those recorded in `stored` (the ToJson of
  // an earlier catalog; null for a new database).
  static std::unique_ptr<Catalog> Build(Schema schema, const nlohmann::json& stored);
  nlohmann::json ToJson() const;

  const Schema& schema() const { return schema_; }
  const std::deque<TableInfo>& tables() const { return tables_; }
  const TableInfo* FindTable(std::string_view name) const;
  const TableInfo* FindTableByNumber(uint32_t number) const;
  const IndexInfo* FindIndex(const TableInfo& table, std::string_view name) const;
  // The number of a table, 0 when unknown (for id(table) validation).
  uint32_t TableNumber(std::string_view name) const;

 private:
  Catalog() = default;

  Schema schema_;
  std::deque<TableInfo> tables_;  // deques: stable addresses for the pointers above
  std::deque<IndexInfo> indexes_;
  absl::flat_hash_map<std::string, const TableInfo*> tables_by_name_;
  absl::flat_hash_map<uint32_t, const TableInfo*> tables_by_number_;
  uint32_t next_table_number_ = 1;
  uint32_t next_index_id_ = 1;
};

// The value at a dotted path (already split) in a document; undefined when missing.
const Value& ValueAtPath(const Object& document, const std::vector<std::string>& path);

// 4-byte big-endian encoding of an index id.
std::string IndexPrefix(uint32_t index_id);
inline constexpr size_t kIndexPrefixBytes = 4;
// The index id of a storage key (its first kIndexPrefixBytes; the key must be that long).
uint32_t IndexIdOf(std::string_view storage_key);
// The end of the range of keys that start with `prefix` (see key_codec.h): prefix + 0xFF.
std::string PrefixEnd(std::string_view prefix);
// The smallest key after `key`.
std::string KeySuccessor(std::string_view key);

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_SCHEMA_CATALOG_H_
