// Persistence tests: documents, indexes and the commit timestamp survive closing and reopening;
// ids stay unique and ordered across reopens; other processes see committed data, and commits
// survive a process kill.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "stagedb/stagedb.h"
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
using stagedb::testing::TempDir;

using stagedb::testing::Msg;
using stagedb::testing::MustInsert;
using stagedb::testing::OpenOrFail;

constexpr const char* kSchema = R"json({
  "tables": {
    "items": {
      "fields": {"name": "string", "qty": "int64", "meta": {"type": "optional", "of": "any"}},
      "indexes": [
        {"name": "by_name", "fields": ["name"]},
        {"name": "by_qty_name", "fields": ["qty", "name"]}
      ]
    },
    "products": {
      "fields": {"sku": "string"},
      "indexes": [{"name": "by_sku", "fields": ["sku"], "unique": true}]
    }
  }
})json";

std::unique_ptr<Database> OpenDb(const std::string& path, const std::string& schema = kSchema) {
  return OpenOrFail({.path = path, .schema_json = schema});
}

Object Item(const std::string& name, int64_t qty) {
  return {{"name", name}, {"qty", Value::Int64(qty)}};
}

std::vector<Document> All(Database& db, const std::string& table,
                          const std::string& index = "by_creation_time") {
  absl::StatusOr<std::vector<Document>> docs =
      db.Query([&](Reader& r) { return r.Table(table).WithIndex(index).Collect(); });
  INFO("query " << table << "." << index << ": " << docs.status().ToString());
  REQUIRE(docs.ok());
  return *std::move(docs);
}

// Every document through every index, as JSON, and the commit timestamp.
struct View {
  Timestamp ts = 0;
  std::map<std::string, std::vector<std::string>> indexes;
  friend bool operator==(const View&, const View&) = default;
};

View Snapshot(Database& db) {
  View view;
  view.ts = db.LastCommitTimestamp();
  for (const auto& [table, index] :
       std::vector<std::pair<std::string, std::string>>{{"items", "by_id"},
                                                        {"items", "by_creation_time"},
                                                        {"items", "by_name"},
                                                        {"items", "by_qty_name"},
                                                        {"products", "by_creation_time"},
                                                        {"products", "by_sku"}}) {
    for (const Document& d : All(db, table, index)) {
      view.indexes[table + "." + index].push_back(d.ToJson());
    }
  }
  return view;
}

// ---- the child process ----
// Runs when this test program is started again as a child (see RunChild): with the database at
// $STAGEDB_CHILD_PATH, inserts $STAGEDB_CHILD_COUNT items named child-<i> (one mutation each)
// (with a "meta" string of $STAGEDB_CHILD_BYTES bytes when set) and a product "child-sku"; with
// $STAGEDB_CHILD_KILL set it then kills itself with SIGKILL.
TEST_CASE("persistence child process", "[.child]") {
  const char* path = std::getenv("STAGEDB_CHILD_PATH");
  if (path == nullptr) return;
  const int count = std::atoi(std::getenv("STAGEDB_CHILD_COUNT"));
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open({.path = path});
  REQUIRE_OK(db);
  const char* bytes = std::getenv("STAGEDB_CHILD_BYTES");
  const size_t meta_bytes = bytes == nullptr ? 0 : std::strtoul(bytes, nullptr, 10);
  for (int i = 0; i < count; ++i) {
    Object fields = Item("child-" + std::to_string(i), 1000 + i);
    if (meta_bytes > 0) fields["meta"] = std::string(meta_bytes, 'm');
    MustInsert(**db, "items", fields);
  }
  MustInsert(**db, "products", {{"sku", "child-sku"}});
  if (std::getenv("STAGEDB_CHILD_KILL") != nullptr) raise(SIGKILL);
}

// Starts this program again running only the child test case; returns its wait status.
int RunChild(const std::string& path, int count, bool kill_itself, size_t meta_bytes = 0) {
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    setenv("STAGEDB_CHILD_PATH", path.c_str(), 1);
    if (meta_bytes > 0) setenv("STAGEDB_CHILD_BYTES", std::to_string(meta_bytes).c_str(), 1);
    setenv("STAGEDB_CHILD_COUNT", std::to_string(count).c_str(), 1);
    if (kill_itself) setenv("STAGEDB_CHILD_KILL", "1", 1);
    execl("/proc/self/exe", "persistence_test", "persistence child process", "--reporter",
          "compact", static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  return status;
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("data, indexes and the commit timestamp survive close and reopen", "[persistence]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  auto db = OpenDb(path);
  std::vector<DocumentId> ids;
  for (int batch = 0; batch < 5; ++batch) {
    REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
      for (int i = 0; i < 10; ++i) {
        const int n = batch * 10 + i;
        absl::StatusOr<DocumentId> id = tx.Insert(
            "items",
            {{"name", "item-" + std::to_string(n)},
             {"qty", Value::Int64((n * 37) % 11)},
             {"meta", Object{{"n", Value::Int64(n)}, {"blob", stagedb::Bytes{"\x00\x01"}}}}});
        if (!id.ok()) return id.status();
        ids.push_back(*id);
      }
      return absl::OkStatus();
    }));
  }
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    for (int n = 0; n < 50; n += 7) {
      if (absl::Status s = tx.Delete(ids[n]); !s.ok()) return s;
    }
    for (int n = 1; n < 50; n += 5) {
      if (n % 7 == 0) continue;  // deleted above
      if (absl::Status s = tx.Patch(ids[n], {{"qty", Value::Int64(100 + n)}}); !s.ok()) return s;
    }
    return absl::OkStatus();
  }));
  MustInsert(*db, "products", {{"sku", "unique-sku"}});
  const View before = Snapshot(*db);
  REQUIRE(before.ts == 7);
  REQUIRE(before.indexes.at("items.by_qty_name").size() == 42);
  db.reset();

  SECTION("reopened with the stored schema") {
    absl::StatusOr<std::unique_ptr<Database>> opened = Database::Open({.path = path});
    REQUIRE_OK(opened);
    db = *std::move(opened);
  }
  SECTION("reopened with the same schema") { db = OpenDb(path); }

  CHECK(Snapshot(*db) == before);
  CHECK(db->LastCommitTimestamp() == 7);
  // Documents by id.
  for (int n = 0; n < 50; ++n) {
    absl::StatusOr<std::optional<Document>> doc =
        db->Query([&](Reader& r) { return r.Get(ids[n]); });
    REQUIRE_OK(doc);
    CHECK(doc->has_value() == (n % 7 != 0));
  }
  // Index ranges still work.
  absl::StatusOr<std::vector<Document>> range = db->Query([&](Reader& r) {
    return r.Table("items")
        .WithIndex("by_qty_name", stagedb::Gte("qty", Value::Int64(100)))
        .Collect();
  });
  REQUIRE_OK(range);
  CHECK(range->size() == 9);  // n = 1, 6, ..., 46 but 21
  // Unique indexes are still enforced.
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Insert("products", {{"sku", "unique-sku"}}).status();
  }),
              absl::StatusCode::kAlreadyExists, "products.by_sku", "unique-sku");
  // Timestamps go on from where they were.
  Timestamp ts = 0;
  REQUIRE_OK(db->Mutate(
      [&](Transaction& tx) {
        return tx.Patch(ids[1], {{"name", "renamed"}});
      },
      &ts));
  CHECK(ts == 8);
  db.reset();
  db = OpenDb(path);
  CHECK(db->LastCommitTimestamp() == 8);
  CHECK(All(*db, "items", "by_name").back().Get("name") == Value("renamed"));
}

TEST_CASE("ids generated after reopening are new and sort after the old ones", "[persistence]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  std::set<std::string> seen;
  std::string max_old;
  double max_old_time = 0;
  {
    auto db = OpenDb(path);
    REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
      for (int i = 0; i < 200; ++i) {
        absl::StatusOr<DocumentId> id = tx.Insert("items", Item("old", i));
        if (!id.ok()) return id.status();
        CHECK(seen.insert(id->text()).second);
        max_old = std::max(max_old, id->text());
      }
      return absl::OkStatus();
    }));
    for (const Document& d : All(*db, "items")) {
      max_old_time = std::max(max_old_time, d.creation_time());
    }
  }
  for (int round = 0; round < 3; ++round) {
    auto db = OpenDb(path);
    REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
      for (int i = 0; i < 100; ++i) {
        absl::StatusOr<DocumentId> id = tx.Insert("items", Item("new", i));
        if (!id.ok()) return id.status();
        INFO("new id " << id->text() << ", largest old id " << max_old);
        CHECK(seen.insert(id->text()).second);
        CHECK(id->text() > max_old);
      }
      return absl::OkStatus();
    }));
    std::vector<Document> docs = All(*db, "items");
    REQUIRE(docs.size() == 200 + 100 * (round + 1));
    CHECK(docs.back().creation_time() >= max_old_time);
    for (const Document& d : docs) max_old = std::max(max_old, d.id().text());
    max_old_time = docs.back().creation_time();
    // by_id order is creation order.
    std::vector<Document> by_id = All(*db, "items", "by_id");
    REQUIRE(by_id.size() == docs.size());
    for (size_t i = 0; i < docs.size(); ++i) CHECK(by_id[i].id() == docs[i].id());
  }
}

TEST_CASE("a path is opened once per process; the next Open sees the data", "[persistence]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  auto db = OpenDb(path);
  const DocumentId id = MustInsert(*db, "items", Item("first", 1));
  absl::StatusOr<std::unique_ptr<Database>> second =
      Database::Open({.path = path, .schema_json = kSchema});
  if (second.ok()) {
    // Sharing is allowed: then the second object must see the first one's commits.
    absl::StatusOr<std::optional<Document>> doc =
        (*second)->Query([&](Reader& r) { return r.Get(id); });
    REQUIRE_OK(doc);
    CHECK(doc->has_value());
    second->reset();
  } else {
    CHECK_ERROR(second, absl::StatusCode::kFailedPrecondition, "already open");
  }
  // The first object is unaffected.
  MustInsert(*db, "items", Item("second", 2));
  CHECK(All(*db, "items").size() == 2);
  db.reset();
  db = OpenDb(path);
  CHECK(All(*db, "items").size() == 2);
}

TEST_CASE("another process's commits are seen by an open database", "[persistence][process]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  auto db = OpenDb(path);
  const DocumentId mine = MustInsert(*db, "items", Item("parent-before", 1));
  const Timestamp ts = db->LastCommitTimestamp();
  // The parent holds a snapshot open while the child commits.
  REQUIRE_OK(db->Query([&](Reader& r) -> absl::Status {
    const int status = RunChild(path, 20, /*kill_itself=*/false);
    INFO("child wait status " << status);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    absl::StatusOr<std::vector<Document>> during = r.Table("items").Collect();
    REQUIRE_OK(during);
    CHECK(during->size() == 1);
    return absl::OkStatus();
  }));
  CHECK(db->LastCommitTimestamp() == ts + 21);
  std::vector<Document> items = All(*db, "items", "by_name");
  REQUIRE(items.size() == 21);
  CHECK(items.back().Get("name") == Value("parent-before"));
  CHECK(items.front().Get("name") == Value("child-0"));
  // The child's writes are in the unique index the parent checks.
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Insert("products", {{"sku", "child-sku"}}).status();
  }),
              absl::StatusCode::kAlreadyExists, "products.by_sku", "child-sku");
  // The parent goes on committing after the child.
  Timestamp after = 0;
  const DocumentId later = MustInsert(*db, "items", Item("parent-after", 2));
  REQUIRE_OK(db->Mutate(
      [&](Transaction& tx) {
        return tx.Patch(mine, {{"qty", Value::Int64(5)}});
      },
      &after));
  CHECK(after == ts + 23);
  std::set<std::string> ids;
  for (const Document& d : All(*db, "items")) CHECK(ids.insert(d.id().text()).second);
  CHECK(ids.count(later.text()) == 1);
  CHECK(ids.size() == 22);
}

TEST_CASE("commits survive the process being killed", "[persistence][process]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  {
    auto db = OpenDb(path);
    MustInsert(*db, "items", Item("before-child", 1));
  }
  const int status = RunChild(path, 30, /*kill_itself=*/true);
  INFO("child wait status " << status);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(WTERMSIG(status) == SIGKILL);
  auto db = OpenDb(path);
  CHECK(db->LastCommitTimestamp() == 32);
  std::vector<Document> items = All(*db, "items");
  REQUIRE(items.size() == 31);
  for (int i = 0; i < 30; ++i) {
    CHECK(items[i + 1].Get("name") == Value("child-" + std::to_string(i)));
  }
  CHECK(All(*db, "products", "by_sku").size() == 1);
  // And the database is fully usable.
  MustInsert(*db, "items", Item("after-kill", 2));
  CHECK(All(*db, "items", "by_qty_name").size() == 32);
}

TEST_CASE("a map grown by another process is adopted", "[persistence][process]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  absl::StatusOr<std::unique_ptr<Database>> opened =
      Database::Open({.path = path, .schema_json = kSchema, .initial_map_size = size_t{1} << 20});
  REQUIRE_OK(opened);
  std::unique_ptr<Database> db = *std::move(opened);
  MustInsert(*db, "items", Item("parent", 1));
  const size_t map_before = db->MapSize();
  CHECK(map_before < size_t{2} << 20);
  // About 6 MiB written by the child: far past the parent's map.
  constexpr int kDocs = 300;
  constexpr size_t kBytes = 20000;
  const int status = RunChild(path, kDocs, /*kill_itself=*/false, kBytes);
  INFO("child wait status " << status);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  CHECK(db->LastCommitTimestamp() == 1 + kDocs + 1);
  std::vector<Document> items = All(*db, "items");
  REQUIRE(items.size() == kDocs + 1);
  for (int i = 0; i < kDocs; ++i) {
    INFO("child document " << i);
    CHECK(items[i + 1].Get("meta").is_string());
    if (items[i + 1].Get("meta").is_string()) {
      CHECK(items[i + 1].Get("meta").as_string().size() == kBytes);
    }
  }
  // The parent writes into the larger file, too.
  MustInsert(
      *db, "items",
      {{"name", "parent-big"}, {"qty", Value::Int64(2)}, {"meta", std::string(100000, 'p')}});
  CHECK(db->MapSize() >= size_t{6} << 20);
  db.reset();
  db = OpenDb(path);
  CHECK(All(*db, "items", "by_name").size() == kDocs + 2);
}

}  // namespace
