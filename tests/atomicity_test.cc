// Atomicity tests (guarantee 2): a mutation that returns an error or throws leaves nothing
// behind — checked through the public API and byte for byte in the LMDB store — and a write
// that fails inside a mutation that goes on changes nothing of its own.
#include <catch2/catch.hpp>
#include <initializer_list>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "stagedb/stagedb.h"
#include "storage/lmdb_store.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using stagedb::Database;
using stagedb::Document;
using stagedb::DocumentId;
using stagedb::Object;
using stagedb::Reader;
using stagedb::Timestamp;
using stagedb::Transaction;
using stagedb::Value;
using stagedb::internal::LmdbStore;
using stagedb::internal::StoreDb;
using stagedb::testing::TempDir;

using stagedb::testing::Msg;
using stagedb::testing::MustInsert;
using stagedb::testing::OpenOrFail;

constexpr const char* kSchema = R"json({
  "tables": {
    "items": {
      "fields": {"name": "string", "qty": "int64", "note": {"type": "optional", "of": "string"}},
      "indexes": [
        {"name": "by_name", "fields": ["name"]},
        {"name": "by_qty", "fields": ["qty"]}
      ]
    },
    "products": {
      "fields": {"sku": "string"},
      "indexes": [{"name": "by_sku", "fields": ["sku"], "unique": true}]
    }
  }
})json";

// Index entries per document: by_id, by_creation_time and the declared indexes.
constexpr size_t kItemEntries = 4;
constexpr size_t kProductEntries = 3;

std::unique_ptr<Database> OpenDb(const std::string& path) {
  return OpenOrFail({.path = path, .schema_json = kSchema});
}

Object Item(const std::string& name, int64_t qty) {
  return {{"name", name}, {"qty", Value::Int64(qty)}};
}

// Every key and value of the store's two databases (data keys prefixed 'D', meta keys 'M').
using StoreDump = std::map<std::string, std::string>;

StoreDump DumpStore(const std::string& path) {
  absl::StatusOr<std::unique_ptr<LmdbStore>> store =
      LmdbStore::Open(path, size_t{16} << 20, size_t{1} << 30);
  REQUIRE_OK(store);
  StoreDump dump;
  absl::StatusOr<std::unique_ptr<stagedb::internal::StoreTxn>> txn = (*store)->BeginRead();
  REQUIRE_OK(txn);
  for (StoreDb which : {StoreDb::kData, StoreDb::kMeta}) {
    absl::StatusOr<stagedb::internal::StoreCursor> cursor = (*txn)->OpenCursor(which);
    REQUIRE_OK(cursor);
    for (absl::StatusOr<bool> found = cursor->SeekAtOrAfter("");; found = cursor->Next()) {
      REQUIRE_OK(found);
      if (!*found) break;
      const char tag = which == StoreDb::kData ? 'D' : 'M';
      const bool inserted =
          dump.emplace(tag + std::string(cursor->key()), std::string(cursor->value())).second;
      REQUIRE(inserted);
    }
  }
  return dump;
}

size_t DataEntries(const StoreDump& dump) {
  size_t n = 0;
  for (const auto& [key, value] : dump) n += key[0] == 'D';
  return n;
}

// What the public API shows: every document through every index, and the commit timestamp.
struct PublicView {
  Timestamp ts = 0;
  std::map<std::string, std::vector<std::string>> indexes;  // "table.index" -> documents as JSON
  friend bool operator==(const PublicView&, const PublicView&) = default;
};

PublicView View(Database& db) {
  PublicView view;
  view.ts = db.LastCommitTimestamp();
  const std::vector<std::pair<std::string, std::string>> indexes = {
      {"items", "by_creation_time"},
      {"items", "by_name"},
      {"items", "by_qty"},
      {"products", "by_creation_time"},
      {"products", "by_sku"}};
  REQUIRE_OK(db.Query([&](Reader& r) -> absl::Status {
    for (const auto& [table, index] : indexes) {
      absl::StatusOr<std::vector<Document>> docs = r.Table(table).WithIndex(index).Collect();
      if (!docs.ok()) return docs.status();
      std::vector<std::string>& out = view.indexes[table + "." + index];
      for (const Document& d : *docs) {
        out.push_back(d.ToJson());
        // Every document found through an index is also found by id.
        absl::StatusOr<std::optional<Document>> by_id = r.Get(d.id());
        if (!by_id.ok()) return by_id.status();
        CHECK(by_id->has_value());
        if (by_id->has_value()) CHECK(**by_id == d);
      }
    }
    return absl::OkStatus();
  }));
  return view;
}

struct Seeded {
  std::vector<DocumentId> items;
  std::vector<DocumentId> products;
};

Seeded Seed(Database& db) {
  Seeded s;
  REQUIRE_OK(db.Mutate([&](Transaction& tx) -> absl::Status {
    for (int i = 0; i < 5; ++i) {
      absl::StatusOr<DocumentId> id = tx.Insert("items", Item("item-" + std::to_string(i), 10 * i));
      if (!id.ok()) return id.status();
      s.items.push_back(*id);
    }
    return absl::OkStatus();
  }));
  for (const char* sku : {"sku-1", "sku-2"}) {
    absl::StatusOr<DocumentId> id = db.Mutate([&](Transaction& tx) {
      return tx.Insert("products", {{"sku", sku}});
    });
    REQUIRE_OK(id);
    s.products.push_back(*id);
  }
  return s;
}

// Inserts, patches (moving index entries), replaces and deletes; every write succeeds.
absl::Status DoManyWrites(Transaction& tx, const Seeded& s) {
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<DocumentId> id = tx.Insert("items", Item("new-" + std::to_string(i), 1000 + i));
    if (!id.ok()) return id.status();
  }
  if (absl::Status st = tx.Patch(s.items[0], {{"qty", Value::Int64(-5)}, {"note", "patched"}});
      !st.ok()) {
    return st;
  }
  if (absl::Status st = tx.Replace(s.items[1], Item("replaced", 7)); !st.ok()) return st;
  if (absl::Status st = tx.Delete(s.items[2]); !st.ok()) return st;
  if (absl::Status st = tx.Delete(s.products[0]); !st.ok()) return st;
  if (absl::Status st = tx.Patch(s.products[1], {{"sku", "sku-1"}}); !st.ok()) return st;
  if (absl::Status st = tx.Insert("products", {{"sku", "sku-2"}}).status(); !st.ok()) return st;
  // The writes are visible inside the mutation.
  absl::StatusOr<std::vector<Document>> items = tx.Table("items").Collect();
  if (!items.ok()) return items.status();
  CHECK(items->size() == 7);
  return absl::OkStatus();
}

struct NonStdException {
  int code;
};

TEST_CASE("a failed mutation leaves the database exactly as it was", "[atomicity]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  auto db = OpenDb(path);
  const Seeded seeded = Seed(*db);
  const PublicView before = View(*db);
  REQUIRE(before.ts == 3);
  db.reset();
  const StoreDump dump_before = DumpStore(path);
  REQUIRE(DataEntries(dump_before) == 5 * kItemEntries + 2 * kProductEntries);
  db = OpenDb(path);
  REQUIRE(View(*db) == before);

  SECTION("the function returns an error Status") {
    const absl::Status error = absl::FailedPreconditionError("custom failure 1234");
    absl::Status result = db->Mutate([&](Transaction& tx) -> absl::Status {
      if (absl::Status s = DoManyWrites(tx, seeded); !s.ok()) return s;
      return error;
    });
    CHECK(result == error);
  }
  SECTION("the function returns an error StatusOr") {
    absl::StatusOr<std::string> result =
        db->Mutate([&](Transaction& tx) -> absl::StatusOr<std::string> {
          if (absl::Status s = DoManyWrites(tx, seeded); !s.ok()) return s;
          return absl::OutOfRangeError("statusor failure 5678");
        });
    CHECK_ERROR(result, absl::StatusCode::kOutOfRange, "statusor failure 5678");
  }
  SECTION("the function passes on the error of a failed write") {
    absl::Status result = db->Mutate([&](Transaction& tx) -> absl::Status {
      if (absl::Status s = DoManyWrites(tx, seeded); !s.ok()) return s;
      return tx.Insert("products", {{"sku", "sku-1"}}).status();
    });
    CHECK_ERROR(result, absl::StatusCode::kAlreadyExists, "products.by_sku", "sku-1");
  }
  SECTION("the function throws a std::runtime_error") {
    absl::Status result = db->Mutate([&](Transaction& tx) -> absl::Status {
      if (absl::Status s = DoManyWrites(tx, seeded); !s.ok()) return s;
      throw std::runtime_error("boom-runtime-error-42");
    });
    CHECK_ERROR(result, absl::StatusCode::kUnknown, "boom-runtime-error-42");
  }
  SECTION("the function throws a std::logic_error from a StatusOr mutation") {
    absl::StatusOr<int> result = db->Mutate([&](Transaction& tx) -> absl::StatusOr<int> {
      if (absl::Status s = DoManyWrites(tx, seeded); !s.ok()) return s;
      throw std::out_of_range("logic-boom-7");
    });
    CHECK_ERROR(result, absl::StatusCode::kUnknown, "logic-boom-7");
  }
  SECTION("the function throws something that is not a std::exception") {
    absl::Status result = db->Mutate([&](Transaction& tx) -> absl::Status {
      if (absl::Status s = DoManyWrites(tx, seeded); !s.ok()) return s;
      throw NonStdException{7};
    });
    CHECK_ERROR(result, absl::StatusCode::kUnknown, "exception");
  }
  SECTION("the function throws an int") {
    absl::Status result = db->Mutate([&](Transaction& tx) -> absl::Status {
      if (absl::Status s = DoManyWrites(tx, seeded); !s.ok()) return s;
      throw 17;
    });
    CHECK_ERROR(result, absl::StatusCode::kUnknown);
  }

  CHECK(View(*db) == before);
  CHECK(db->LastCommitTimestamp() == before.ts);
  // The write lock was released: another mutation (read-only, so the store stays the same) runs.
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Table("items").Collect().status(); }));
  db.reset();
  const StoreDump dump_after = DumpStore(path);
  CHECK(dump_after.size() == dump_before.size());
  CHECK(dump_after == dump_before);

  // And the same writes commit when the function returns OK.
  db = OpenDb(path);
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return DoManyWrites(tx, seeded); }));
  const PublicView committed = View(*db);
  CHECK(committed.ts == before.ts + 1);
  CHECK(committed.indexes.at("items.by_creation_time").size() == 7);
  CHECK(committed.indexes.at("products.by_sku").size() == 2);
  db.reset();
  CHECK(DataEntries(DumpStore(path)) == 7 * kItemEntries + 2 * kProductEntries);
}

TEST_CASE("failed writes inside a mutation that returns OK change nothing of their own",
          "[atomicity]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  auto db = OpenDb(path);
  const Seeded s = Seed(*db);
  const Document item1_before = **db->Query([&](Reader& r) { return r.Get(s.items[1]); });
  const Document item3_before = **db->Query([&](Reader& r) { return r.Get(s.items[3]); });

  std::vector<absl::Status> failures;
  DocumentId added;
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    absl::StatusOr<DocumentId> id = tx.Insert("items", Item("added", 55));
    if (!id.ok()) return id.status();
    added = *id;
    // Each of these fails and must leave no trace.
    failures.push_back(tx.Insert("items", {{"name", 1.0}, {"qty", Value::Int64(1)}}).status());
    if (absl::Status st = tx.Insert("items", Item("x", 1)).status(); !st.ok()) return st;
    failures.push_back(tx.Patch(s.items[1], {{"qty", "not-an-int"}}));
    failures.push_back(tx.Patch(s.items[1], {{"name", stagedb::Undefined{}}}));
    failures.push_back(tx.Replace(s.items[3], {{"name", "only"}}));
    failures.push_back(tx.Patch(s.items[3], {{"_id", s.items[1].text()}}));
    failures.push_back(tx.Insert("products", {{"sku", "sku-2"}}).status());
    failures.push_back(tx.Patch(s.products[0], {{"sku", "sku-2"}}));
    failures.push_back(tx.Insert("nonexistent_table", {{"a", 1.0}}).status());
    failures.push_back(tx.Delete(DocumentId::Generate(s.items[0].table_number())));
    // Successful writes around them.
    if (absl::Status st = tx.Patch(s.items[0], {{"qty", Value::Int64(99)}}); !st.ok()) return st;
    if (absl::Status st = tx.Delete(s.items[2]); !st.ok()) return st;
    return absl::OkStatus();
  }));
  REQUIRE(failures.size() == 9);
  for (size_t i = 0; i < failures.size(); ++i) {
    INFO("write " << i << ": " << failures[i].ToString());
    CHECK_FALSE(failures[i].ok());
  }

  // Only the successful writes committed, with exactly their index entries.
  auto names = [&](const std::string& index) {
    absl::StatusOr<std::vector<Document>> docs =
        db->Query([&](Reader& r) { return r.Table("items").WithIndex(index).Collect(); });
    REQUIRE_OK(docs);
    std::vector<std::string> out;
    for (const Document& d : *docs) out.push_back(d.Get("name").as_string());
    return out;
  };
  CHECK(names("by_name") ==
        std::vector<std::string>{"added", "item-0", "item-1", "item-3", "item-4", "x"});
  CHECK(names("by_qty") ==
        std::vector<std::string>{"x", "item-1", "item-3", "item-4", "added", "item-0"});
  CHECK(names("by_creation_time") ==
        std::vector<std::string>{"item-0", "item-1", "item-3", "item-4", "added", "x"});
  CHECK(**db->Query([&](Reader& r) { return r.Get(s.items[1]); }) == item1_before);
  CHECK(**db->Query([&](Reader& r) { return r.Get(s.items[3]); }) == item3_before);
  CHECK((**db->Query([&](Reader& r) { return r.Get(s.items[0]); })).Get("qty") == Value::Int64(99));
  CHECK_FALSE(db->Query([&](Reader& r) { return r.Get(s.items[2]); })->has_value());
  CHECK(db->Query([&](Reader& r) { return r.Get(added); })->has_value());
  absl::StatusOr<std::vector<Document>> products =
      db->Query([&](Reader& r) { return r.Table("products").WithIndex("by_sku").Collect(); });
  REQUIRE_OK(products);
  REQUIRE(products->size() == 2);
  CHECK((*products)[0].Get("sku") == Value("sku-1"));
  CHECK((*products)[1].Get("sku") == Value("sku-2"));
  CHECK(db->LastCommitTimestamp() == 4);
  db.reset();
  // No stray index entries: exactly the entries of the 6 items and 2 products.
  CHECK(DataEntries(DumpStore(path)) == 6 * kItemEntries + 2 * kProductEntries);
}

}  // namespace
