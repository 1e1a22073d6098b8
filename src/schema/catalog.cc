#include "schema/catalog.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "stagedb/document.h"
#include "stagedb/key_codec.h"
#include "storage/lmdb_store.h"
#include "values/value_internal.h"

namespace stagedb::internal {
namespace {

nlohmann::json IndexJson(const IndexInfo& index) {
  return {{"id", index.id}, {"fields", index.key_fields}, {"unique", index.unique}};
}

}  // namespace

const Value& ValueAtPath(const Object& document, const std::vector<std::string>& path) {
  const Object* object = &document;
  for (size_t i = 0;; ++i) {
    auto it = object->find(path[i]);
    if (it == object->end()) return UndefinedValue();
    if (i + 1 == path.size()) return it->second;
    if (!it->second.is_object()) return UndefinedValue();
    object = &it->second.as_object();
  }
}

std::string IndexPrefix(uint32_t index_id) {
  std::string prefix(4, '\0');
  for (int i = 0; i < 4; ++i) prefix[i] = static_cast<char>(index_id >> (24 - 8 * i));
  return prefix;
}

uint32_t IndexIdOf(std::string_view storage_key) {
  uint32_t id = 0;
  for (size_t i = 0; i < kIndexPrefixBytes; ++i) {
    id = (id << 8) | static_cast<unsigned char>(storage_key[i]);
  }
  return id;
}

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  end.push_back('\xFF');
  return end;
}

std::string KeySuccessor(std::string_view key) {
  std::string next(key);
  next.push_back('\0');
  return next;
}

std::string_view IdSuffixOf(std::string_view storage_key) {
  // `_id` is a key-encoded string: a tag, the id's text, a terminator. The text is base32
  // (digits and lowercase letters), so it holds neither the terminator nor the tag byte, and the
  // last tag byte before the final terminator starts the suffix.
  if (storage_key.size() < 2 || storage_key.back() != '\0') return {};
  static const char tag = EncodeKey(Value(""))[0];  // the empty string: tag, terminator
  const size_t start = storage_key.rfind(tag, storage_key.size() - 2);
  if (start == std::string_view::npos || start < kIndexPrefixBytes) return {};
  return storage_key.substr(start);
}

std::string IndexInfo::KeyPrefixFor(const Object& document, size_t n) const {
  std::string key;
  key.reserve(96);  // most keys fit: one allocation instead of a growth per field
  key = prefix;
  for (size_t i = 0; i < n; ++i) EncodeKey(ValueAtPath(document, key_paths[i]), &key);
  return key;
}

std::string IndexInfo::DescribeValues(const Object& document) const {
  std::vector<std::string> values;
  for (size_t i = 0; i < declared_fields; ++i) {
    values.push_back(absl::StrFormat("%s = %s", key_fields[i],
                                     DebugString(ValueAtPath(document, key_paths[i]), 60)));
  }
  return absl::StrJoin(values, ", ");
}

bool IndexInfo::ConstrainsUnique(const Object& document) const {
  if (!unique || primary) return false;
  for (size_t i = 0; i < declared_fields; ++i) {
    if (ValueAtPath(document, key_paths[i]).is_undefined()) return false;
  }
  return true;
}

absl::Status IndexInfo::CheckKeySize(std::string_view key, const Object& document) const {
  if (key.size() <= kMaxKeyBytes) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "table \"%s\": index \"%s\": the key of document %s is %d bytes, over the limit of %d "
      "bytes for an index key; shorten the indexed values: %s",
      table->name, name, DebugString(ValueAtPath(document, key_paths.back())), key.size(),
      kMaxKeyBytes, DescribeValues(document)));
}

std::string IndexInfo::KeyFor(const Object& document) const {
  return KeyPrefixFor(document, key_paths.size());
}

std::unique_ptr<Catalog> Catalog::Build(Schema schema, const nlohmann::json& stored) {
  auto catalog = std::unique_ptr<Catalog>(new Catalog());
  catalog->schema_ = std::move(schema);
  const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json& stored_tables =
      stored.is_object() && stored.contains("tables") ? stored["tables"] : empty;
  if (stored.is_object()) {
    catalog->next_table_number_ = stored.value("next_table", 1u);
    catalog->next_index_id_ = stored.value("next_index", 1u);
  }

  for (const auto& [name, def] : catalog->schema_.tables()) {
    TableInfo& table = catalog->tables_.emplace_back();
    table.name = name;
    table.def = &def;
    const nlohmann::json* stored_table =
        stored_tables.contains(name) ? &stored_tables[name] : nullptr;
    table.number = stored_table != nullptr ? stored_table->at("number").get<uint32_t>()
                                           : catalog->next_table_number_++;

    auto add_index = [&](const std::string& index_name, std::vector<std::string> fields,
                         size_t declared, bool unique, bool primary) {
      IndexInfo& index = catalog->indexes_.emplace_back();
      index.table = &table;
      index.name = index_name;
      index.key_fields = std::move(fields);
      for (const std::string& field : index.key_fields) {
        index.key_paths.push_back(absl::StrSplit(field, '.'));
      }
      index.declared_fields = declared;
      index.unique = unique;
      index.primary = primary;
      // Keep the stored id while the definition is unchanged; a changed index is a new index.
      index.id = 0;
      if (stored_table != nullptr && stored_table->contains("indexes") &&
          (*stored_table)["indexes"].contains(index_name)) {
        const nlohmann::json& old = (*stored_table)["indexes"][index_name];
        if (old.at("fields") == nlohmann::json(index.key_fields) &&
            old.at("unique").get<bool>() == unique) {
          index.id = old.at("id").get<uint32_t>();
        }
      }
      if (index.id == 0) index.id = catalog->next_index_id_++;
      index.prefix = IndexPrefix(index.id);
      table.indexes.push_back(&index);
      return &index;
    };
    const std::string id_field(kIdField);
    const std::string time_field(kCreationTimeField);
    table.by_id = add_index("by_id", {id_field}, 1, true, true);
    table.by_creation_time = add_index("by_creation_time", {time_field, id_field}, 1, false, false);
    for (const IndexDef& def_index : def.indexes) {
      std::vector<std::string> fields = def_index.fields;
      fields.push_back(time_field);
      fields.push_back(id_field);
      add_index(def_index.name, std::move(fields), def_index.fields.size(), def_index.unique,
                false);
    }
    catalog->tables_by_name_[name] = &table;
    catalog->tables_by_number_[table.number] = &table;
  }
  // Numbers of tables that left the schema are never reused.
  for (const auto& [name, old] : stored_tables.items()) {
    catalog->next_table_number_ =
        std::max(catalog->next_table_number_, old.at("number").get<uint32_t>() + 1);
  }
  return catalog;
}

nlohmann::json Catalog::ToJson() const {
  nlohmann::json tables = nlohmann::json::object();
  for (const TableInfo& table : tables_) {
    nlohmann::json indexes = nlohmann::json::object();
    for (const IndexInfo* index : table.indexes) indexes[index->name] = IndexJson(*index);
    tables[table.name] = {{"number", table.number}, {"indexes", indexes}};
  }
  return {{"next_table", next_table_number_}, {"next_index", next_index_id_}, {"tables", tables}};
}

const TableInfo* Catalog::FindTable(std::string_view name) const {
  auto it = tables_by_name_.find(std::string(name));
  return it == tables_by_name_.end() ? nullptr : it->second;
}

const TableInfo* Catalog::FindTableByNumber(uint32_t number) const {
  auto it = tables_by_number_.find(number);
  return it == tables_by_number_.end() ? nullptr : it->second;
}

const IndexInfo* Catalog::FindIndex(const TableInfo& table, std::string_view name) const {
  for (const IndexInfo* index : table.indexes) {
    if (index->name == name) return index;
  }
  return nullptr;
}

uint32_t Catalog::TableNumber(std::string_view name) const {
  const TableInfo* table = FindTable(name);
  return table == nullptr ? 0 : table->number;
}

}  // namespace stagedb::internal
