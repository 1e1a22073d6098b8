// Limits tests: per-transaction limits (TransactionLimits), document size, nesting depth, field
// names, UTF-8, and the LMDB map: growth up to max_map_size and a clean refusal past it.
#include <atomic>
#include <catch2/catch.hpp>
#include <cctype>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using stagedb::Array;
using stagedb::Database;
using stagedb::Document;
using stagedb::DocumentId;
using stagedb::Object;
using stagedb::Options;
using stagedb::Reader;
using stagedb::Timestamp;
using stagedb::Transaction;
using stagedb::TransactionLimits;
using stagedb::Value;
using stagedb::testing::TempDir;

using stagedb::testing::CheckError;
using stagedb::testing::Msg;
using stagedb::testing::MustInsert;
using stagedb::testing::OpenOrFail;
using stagedb::testing::StatusOf;

constexpr const char* kSchema = R"json({
  "tables": {
    "items": {
      "fields": {
        "name": "string",
        "data": {"type": "optional", "of": "string"},
        "payload": {"type": "optional", "of": "any"}
      },
      "indexes": [{"name": "by_name", "fields": ["name"]}]
    }
  }
})json";

std::unique_ptr<Database> OpenDb(Options options) {
  if (options.schema_json.empty()) options.schema_json = kSchema;
  return OpenOrFail(std::move(options));
}

std::unique_ptr<Database> OpenDb(const std::string& path) { return OpenDb(Options{.path = path}); }

std::unique_ptr<Database> OpenDb(const std::string& path, TransactionLimits limits) {
  return OpenDb(Options{.path = path, .limits = limits});
}

size_t Count(Database& db) {
  absl::StatusOr<size_t> n = db.Query([&](Reader& r) -> absl::StatusOr<size_t> {
    absl::StatusOr<std::vector<Document>> docs = r.Table("items").Collect();
    if (!docs.ok()) return docs.status();
    return docs->size();
  });
  REQUIRE_OK(n);
  return *n;
}

Object Item(const std::string& name, size_t data_bytes = 0) {
  Object fields{{"name", name}};
  if (data_bytes > 0) fields["data"] = std::string(data_bytes, 'd');
  return fields;
}

absl::StatusOr<DocumentId> InsertOne(Database& db, const Object& fields) {
  return db.Mutate([&](Transaction& tx) { return tx.Insert("items", fields); });
}

// Ten documents of about 350 bytes each, with default limits; returns their ids.
std::vector<DocumentId> SeedTen(const std::string& path) {
  auto db = OpenDb(path);
  std::vector<DocumentId> ids;
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    for (int i = 0; i < 10; ++i) {
      absl::StatusOr<DocumentId> id = tx.Insert("items", Item("seed-" + std::to_string(i), 300));
      if (!id.ok()) return id.status();
      ids.push_back(*id);
    }
    return absl::OkStatus();
  }));
  return ids;
}

// Reopens with default limits and checks the database still holds exactly the ten seeds at
// commit timestamp 1.
void CheckOnlySeeds(std::unique_ptr<Database>& db, const std::string& path) {
  db.reset();
  db = OpenDb(path);
  CHECK(Count(*db) == 10);
  CHECK(db->LastCommitTimestamp() == 1);
  absl::StatusOr<std::vector<Document>> extra = db->Query([&](Reader& r) {
    return r.Table("items").WithIndex("by_name", stagedb::Gte("name", "t")).Collect();
  });
  REQUIRE_OK(extra);
  CHECK(extra->empty());
}

// ---------------------------------------------------------------------------------------------
// Transaction limits

TEST_CASE("max_documents_read", "[limits]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  const std::vector<DocumentId> ids = SeedTen(path);
  auto db = OpenDb(path, TransactionLimits{.max_documents_read = 5});
  // Reading up to the limit is fine.
  absl::StatusOr<std::vector<Document>> five =
      db->Query([&](Reader& r) { return r.Table("items").Take(5); });
  REQUIRE_OK(five);
  CHECK(five->size() == 5);
  CHECK_ERROR(db->Query([&](Reader& r) { return r.Table("items").Collect(); }),
              absl::StatusCode::kResourceExhausted, "max_documents_read", "5");
  CHECK_ERROR(db->Query([&](Reader& r) -> absl::Status {
    for (const DocumentId& id : ids) {
      if (absl::Status s = r.Get(id).status(); !s.ok()) return s;
    }
    return absl::OkStatus();
  }),
              absl::StatusCode::kResourceExhausted, "max_documents_read");
  CHECK_ERROR(db->Mutate([&](Transaction& tx) -> absl::Status {
    if (absl::Status s = tx.Insert("items", Item("too-many-reads")).status(); !s.ok()) return s;
    return tx.Table("items").Collect().status();
  }),
              absl::StatusCode::kResourceExhausted, "max_documents_read");
  CheckOnlySeeds(db, path);
}

TEST_CASE("max_bytes_read", "[limits]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  const std::vector<DocumentId> ids = SeedTen(path);
  auto db = OpenDb(path, TransactionLimits{.max_bytes_read = 1000});
  absl::StatusOr<std::optional<Document>> one = db->Query([&](Reader& r) { return r.Get(ids[0]); });
  REQUIRE_OK(one);
  CHECK(one->has_value());
  CHECK_ERROR(db->Query([&](Reader& r) { return r.Table("items").Collect(); }),
              absl::StatusCode::kResourceExhausted, "max_bytes_read", "1000");
  CHECK_ERROR(db->Mutate([&](Transaction& tx) -> absl::Status {
    if (absl::Status s = tx.Patch(ids[0], {{"name", "touched"}}); !s.ok()) return s;
    if (absl::Status s = tx.Insert("items", Item("too-many-bytes")).status(); !s.ok()) return s;
    return tx.Table("items").WithIndex("by_name").Collect().status();
  }),
              absl::StatusCode::kResourceExhausted, "max_bytes_read");
  CheckOnlySeeds(db, path);
}

TEST_CASE("max_documents_written", "[limits]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  const std::vector<DocumentId> ids = SeedTen(path);
  auto db = OpenDb(path, TransactionLimits{.max_documents_written = 3});
  CHECK_ERROR(db->Mutate([&](Transaction& tx) -> absl::Status {
    for (int i = 0; i < 4; ++i) {
      if (absl::Status s = tx.Insert("items", Item("w-" + std::to_string(i))).status(); !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }),
              absl::StatusCode::kResourceExhausted, "max_documents_written", "3");
  // Patches and deletes count too.
  CHECK_ERROR(db->Mutate([&](Transaction& tx) -> absl::Status {
    if (absl::Status s = tx.Patch(ids[0], {{"name", "p"}}); !s.ok()) return s;
    if (absl::Status s = tx.Delete(ids[1]); !s.ok()) return s;
    if (absl::Status s = tx.Replace(ids[2], Item("r")); !s.ok()) return s;
    return tx.Delete(ids[3]);
  }),
              absl::StatusCode::kResourceExhausted, "max_documents_written");
  CheckOnlySeeds(db, path);
  // Exactly at the limit is fine.
  db.reset();
  db = OpenDb(path, TransactionLimits{.max_documents_written = 3});
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    for (int i = 0; i < 3; ++i) {
      if (absl::Status s = tx.Insert("items", Item("ok-" + std::to_string(i))).status(); !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }));
  CHECK(Count(*db) == 13);
}

TEST_CASE("max_bytes_written", "[limits]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  SeedTen(path);
  auto db = OpenDb(path, TransactionLimits{.max_bytes_written = 2000});
  CHECK_ERROR(db->Mutate([&](Transaction& tx) -> absl::Status {
    for (int i = 0; i < 4; ++i) {
      if (absl::Status s = tx.Insert("items", Item("b-" + std::to_string(i), 500)).status();
          !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }),
              absl::StatusCode::kResourceExhausted, "max_bytes_written", "2000");
  CheckOnlySeeds(db, path);
}

TEST_CASE("max_read_ranges", "[limits]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  const std::vector<DocumentId> ids = SeedTen(path);
  auto db = OpenDb(path, TransactionLimits{.max_read_ranges = 3});
  REQUIRE_OK(db->Query([&](Reader& r) -> absl::Status {
    for (int i = 0; i < 3; ++i) {
      if (absl::Status s = r.Get(ids[i]).status(); !s.ok()) return s;
    }
    return absl::OkStatus();
  }));
  CHECK_ERROR(db->Query([&](Reader& r) -> absl::Status {
    for (int i = 0; i < 4; ++i) {
      if (absl::Status s = r.Get(ids[i]).status(); !s.ok()) return s;
    }
    return absl::OkStatus();
  }),
              absl::StatusCode::kResourceExhausted, "max_read_ranges", "3");
  // The engine's own reads (behind Patch, and unique checks) do not count, as in Convex: a
  // mutation may patch more documents than it may make reads.
  CHECK_ERROR(db->Mutate([&](Transaction& tx) -> absl::Status {
    for (int i = 0; i < 8; ++i) {
      if (absl::Status s = tx.Patch(ids[i], {{"name", "p"}}); !s.ok()) return s;
    }
    return absl::CancelledError("all 8 patches passed; abandon them");
  }),
              absl::StatusCode::kCancelled, "all 8 patches passed");
  CHECK_ERROR(db->Mutate([&](Transaction& tx) -> absl::Status {
    for (int i = 0; i < 4; ++i) {
      if (absl::Status s = tx.Get(ids[i]).status(); !s.ok()) return s;
    }
    return absl::OkStatus();
  }),
              absl::StatusCode::kResourceExhausted, "max_read_ranges");
  CHECK_ERROR(db->Mutate([&](Transaction& tx) -> absl::Status {
    if (absl::Status s = tx.Insert("items", Item("ranges")).status(); !s.ok()) return s;
    for (const char* name : {"a", "b", "c", "d"}) {
      absl::Status s =
          tx.Table("items").WithIndex("by_name", stagedb::Eq("name", name)).Collect().status();
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }),
              absl::StatusCode::kResourceExhausted, "max_read_ranges");
  CheckOnlySeeds(db, path);
}

// ---------------------------------------------------------------------------------------------
// Document limits

// The numbers in a message.
std::vector<uint64_t> Numbers(const std::string& text) {
  std::vector<uint64_t> out;
  for (size_t i = 0; i < text.size();) {
    if (!std::isdigit(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    uint64_t n = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      n = n * 10 + (text[i++] - '0');
    }
    out.push_back(n);
  }
  return out;
}

TEST_CASE("a document over 1 MiB encoded is refused", "[limits][document]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const size_t limit = stagedb::kMaxDocumentBytes;
  REQUIRE(limit == size_t{1} << 20);
  // Just under the limit is fine.
  absl::StatusOr<DocumentId> near = InsertOne(*db, Item("near", limit - 1000));
  REQUIRE_OK(near);
  absl::StatusOr<DocumentId> big = InsertOne(*db, Item("big", limit + 10));
  CHECK_ERROR(big, absl::StatusCode::kInvalidArgument, "items", "bytes");
  bool names_size = false;
  for (uint64_t n : Numbers(Msg(big.status()))) names_size |= n > limit;
  INFO(big.status().ToString());
  CHECK(names_size);
  // Also when a patch grows a document past the limit, or many fields add up.
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Patch(*near, {{"payload", std::string(2000, 'p')}});
  }),
              absl::StatusCode::kInvalidArgument, "items", "bytes");
  Array chunks;
  for (int i = 0; i < 20; ++i) chunks.push_back(std::string(60 * 1024, 'c'));
  CHECK_ERROR(InsertOne(*db, {{"name", "chunks"}, {"payload", chunks}}),
              absl::StatusCode::kInvalidArgument, "items", "bytes");
  CHECK(Count(*db) == 1);
  absl::StatusOr<std::optional<Document>> doc = db->Query([&](Reader& r) { return r.Get(*near); });
  REQUIRE_OK(doc);
  REQUIRE(doc->has_value());
  CHECK((*doc)->Get("payload").is_undefined());
  CHECK((*doc)->Get("data").as_string().size() == limit - 1000);
}

// `levels` nested arrays, the innermost empty: a document holding it is levels + 1 deep.
Value NestedArrays(int levels) {
  Value v = Array{};
  for (int i = 1; i < levels; ++i) v = Array{v};
  return v;
}

Value NestedObjects(int levels) {
  Value v = Object{};
  for (int i = 1; i < levels; ++i) v = Object{{"k", v}};
  return v;
}

TEST_CASE("nesting deeper than 16 is refused", "[limits][document]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const int max_levels = stagedb::kMaxNestingDepth - 1;  // the document itself is depth 1
  REQUIRE_OK(InsertOne(*db, {{"name", "deep-arrays"}, {"payload", NestedArrays(max_levels)}}));
  REQUIRE_OK(InsertOne(*db, {{"name", "deep-objects"}, {"payload", NestedObjects(max_levels)}}));
  CHECK_ERROR(InsertOne(*db, {{"name", "too-deep"}, {"payload", NestedArrays(max_levels + 1)}}),
              absl::StatusCode::kInvalidArgument, "items", "payload", "16");
  CHECK_ERROR(InsertOne(*db, {{"name", "too-deep"}, {"payload", NestedObjects(max_levels + 1)}}),
              absl::StatusCode::kInvalidArgument, "items", "payload", "16");
  CHECK_ERROR(InsertOne(*db, {{"name", "way-too-deep"}, {"payload", NestedArrays(200)}}),
              absl::StatusCode::kInvalidArgument, "items", "payload");
  absl::StatusOr<std::vector<Document>> docs =
      db->Query([&](Reader& r) { return r.Table("items").Collect(); });
  REQUIRE_OK(docs);
  REQUIRE(docs->size() == 2);
  CHECK((*docs)[0].Get("payload") == NestedArrays(max_levels));
  CHECK((*docs)[1].Get("payload") == NestedObjects(max_levels));
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Patch((*docs)[0].id(), {{"payload", NestedObjects(max_levels + 1)}});
  }),
              absl::StatusCode::kInvalidArgument, "payload");
}

TEST_CASE("reserved field names are refused", "[limits][document]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  CHECK_ERROR(InsertOne(*db, {{"name", "n"}, {"$dollar", 1.0}}), absl::StatusCode::kInvalidArgument,
              "items", "$dollar");
  CHECK_ERROR(InsertOne(*db, {{"name", "n"}, {"_underscore", 1.0}}),
              absl::StatusCode::kInvalidArgument, "items", "_underscore");
  CHECK_ERROR(InsertOne(*db, {{"name", "n"}, {"payload", Object{{"$nested", 1.0}}}}),
              absl::StatusCode::kInvalidArgument, "items", "payload", "$nested");
  CHECK_ERROR(
      InsertOne(*db, {{"name", "n"}, {"payload", Array{Object{{"ok", Object{{"$deeper", 1.0}}}}}}}),
      absl::StatusCode::kInvalidArgument, "items", "payload", "$deeper");
  CHECK_ERROR(InsertOne(*db, {{"name", "n"}, {"payload", Object{{"", 1.0}}}}),
              absl::StatusCode::kInvalidArgument, "items", "payload");
  // Below the top level, '_' is an ordinary first character.
  REQUIRE_OK(InsertOne(*db, {{"name", "n"}, {"payload", Object{{"_fine", 1.0}}}}));
  CHECK(Count(*db) == 1);
}

TEST_CASE("invalid UTF-8 is refused naming the field", "[limits][document]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  for (const std::string bad : {std::string("\xff\xfe"), std::string("ok\xc3"),
                                std::string("\xc0\xaf"), std::string("\xed\xa0\x80")}) {
    INFO("bytes of length " << bad.size());
    CHECK_ERROR(InsertOne(*db, {{"name", bad}}), absl::StatusCode::kInvalidArgument, "items",
                "name", "UTF-8");
    CHECK_ERROR(InsertOne(*db, {{"name", "n"}, {"payload", Array{"fine", bad}}}),
                absl::StatusCode::kInvalidArgument, "items", "payload[1]", "UTF-8");
    CHECK_ERROR(InsertOne(*db, {{"name", "n"}, {"payload", Object{{"inner", bad}}}}),
                absl::StatusCode::kInvalidArgument, "items", "payload.inner", "UTF-8");
    CHECK_ERROR(InsertOne(*db, {{"name", "n"}, {"payload", Object{{bad, 1.0}}}}),
                absl::StatusCode::kInvalidArgument, "items", "payload", "UTF-8");
  }
  // Valid multi-byte text is fine, and bytes may hold anything.
  REQUIRE_OK(InsertOne(
      *db, {{"name", "h\xc3\xa9llo \xf0\x9f\x98\x80"}, {"payload", stagedb::Bytes{"\xff\xfe"}}}));
  CHECK(Count(*db) == 1);
}

// ---------------------------------------------------------------------------------------------
// The LMDB map

TEST_CASE("the map grows from 1 MiB to hold 20 MiB", "[limits][map]") {
  TempDir dir;
  auto db = OpenDb(Options{.path = dir.Sub("db"),
                           .initial_map_size = size_t{1} << 20,
                           .max_map_size = size_t{64} << 20});
  const size_t initial = db->MapSize();
  CHECK(initial < size_t{2} << 20);
  constexpr int kBatches = 100;
  constexpr int kPerBatch = 20;
  constexpr size_t kDocBytes = 10 * 1024;
  std::vector<DocumentId> ids;
  for (int b = 0; b < kBatches; ++b) {
    REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
      for (int i = 0; i < kPerBatch; ++i) {
        absl::StatusOr<DocumentId> id =
            tx.Insert("items", Item("doc-" + std::to_string(b * kPerBatch + i), kDocBytes));
        if (!id.ok()) return id.status();
        ids.push_back(*id);
      }
      return absl::OkStatus();
    }));
  }
  CHECK(db->MapSize() > initial);
  CHECK(db->MapSize() >= size_t{20} << 20);
  CHECK(db->MapSize() <= size_t{64} << 20);
  CHECK(db->LastCommitTimestamp() == kBatches);
  // 20 MiB is more than one transaction may read (max_bytes_read): count page by page.
  size_t count = 0;
  std::optional<std::string> cursor;
  for (bool done = false; !done;) {
    absl::StatusOr<stagedb::PaginationResult> page = db->Query(
        [&](Reader& r) { return r.Table("items").Paginate({.num_items = 300, .cursor = cursor}); });
    REQUIRE_OK(page);
    count += page->page.size();
    cursor = page->continue_cursor;
    done = page->is_done;
  }
  CHECK(count == kBatches * kPerBatch);
  for (size_t i = 0; i < ids.size(); i += 97) {
    absl::StatusOr<std::optional<Document>> doc =
        db->Query([&](Reader& r) { return r.Get(ids[i]); });
    REQUIRE_OK(doc);
    REQUIRE(doc->has_value());
    CHECK((*doc)->Get("data").as_string().size() == kDocBytes);
  }
}

TEST_CASE("a full map at max_map_size refuses the write and keeps what was committed",
          "[limits][map]") {
  TempDir dir;
  const Options options{.path = dir.Sub("db"),
                        .schema_json = kSchema,
                        .initial_map_size = size_t{1} << 20,
                        .max_map_size = size_t{2} << 20};
  auto db = OpenDb(options);
  std::vector<DocumentId> committed;
  absl::Status failure;
  for (int b = 0; b < 100 && failure.ok(); ++b) {
    absl::StatusOr<std::vector<DocumentId>> batch =
        db->Mutate([&](Transaction& tx) -> absl::StatusOr<std::vector<DocumentId>> {
          std::vector<DocumentId> ids;
          for (int i = 0; i < 5; ++i) {
            absl::StatusOr<DocumentId> id =
                tx.Insert("items", Item("b" + std::to_string(b) + "-" + std::to_string(i), 20000));
            if (!id.ok()) return id.status();
            ids.push_back(*id);
          }
          return ids;
        });
    if (batch.ok()) {
      committed.insert(committed.end(), batch->begin(), batch->end());
    } else {
      failure = batch.status();
    }
  }
  CHECK_ERROR(failure, absl::StatusCode::kResourceExhausted, "max_map_size");
  REQUIRE_FALSE(committed.empty());
  CHECK(db->MapSize() <= options.max_map_size);
  const Timestamp ts = db->LastCommitTimestamp();
  CHECK(ts == committed.size() / 5);
  // Reads still work, and the failure is repeatable (nothing half-written).
  CHECK(Count(*db) == committed.size());
  CHECK_ERROR(InsertOne(*db, Item("one-more", 500000)), absl::StatusCode::kResourceExhausted,
              "max_map_size");
  CHECK(db->LastCommitTimestamp() == ts);

  db.reset();
  db = OpenDb(options);
  CHECK(db->LastCommitTimestamp() == ts);
  CHECK(Count(*db) == committed.size());
  for (const DocumentId& id : committed) {
    absl::StatusOr<std::optional<Document>> doc = db->Query([&](Reader& r) { return r.Get(id); });
    REQUIRE_OK(doc);
    REQUIRE(doc->has_value());
    CHECK((*doc)->Get("data").as_string() == std::string(20000, 'd'));
  }
  absl::StatusOr<std::vector<Document>> by_name =
      db->Query([&](Reader& r) { return r.Table("items").WithIndex("by_name").Collect(); });
  REQUIRE_OK(by_name);
  CHECK(by_name->size() == committed.size());
  // With a larger limit the database takes more again.
  db.reset();
  Options bigger = options;
  bigger.max_map_size = size_t{16} << 20;
  db = OpenDb(bigger);
  REQUIRE_OK(InsertOne(*db, Item("after-raise", 500000)));
  CHECK(Count(*db) == committed.size() + 1);
}

TEST_CASE("the map grows while several threads write and read", "[limits][map][threads]") {
  TempDir dir;
  // About 3.2 MiB of documents in a map that may grow to 16 MiB: every write must succeed, however
  // many writers find the map full at the same time.
  auto db = OpenDb(Options{.path = dir.Sub("db"),
                           .initial_map_size = size_t{1} << 20,
                           .max_map_size = size_t{16} << 20});
  const size_t initial = db->MapSize();
  constexpr int kWriters = 8;
  constexpr int kMutations = 5;
  constexpr int kPerMutation = 10;
  constexpr size_t kDocBytes = 8 * 1024;
  std::vector<std::vector<DocumentId>> ids(kWriters);
  std::vector<std::string> errors(kWriters + 1);
  std::atomic<int> writers_left{kWriters};
  // The reader's snapshots: after each mutation but its last, a writer waits for a newer one, so
  // that snapshots fall between commits (and map growths) however threads are scheduled.
  stagedb::testing::Progress snapshots;
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int m = 0; m < kMutations && errors[w].empty(); ++m) {
        if (m > 0 && !snapshots.WaitForNewer()) {
          errors[w] = "no snapshot of the reader within the hang guard";
          break;
        }
        absl::StatusOr<std::vector<DocumentId>> batch =
            db->Mutate([&](Transaction& tx) -> absl::StatusOr<std::vector<DocumentId>> {
              std::vector<DocumentId> out;
              for (int i = 0; i < kPerMutation; ++i) {
                absl::StatusOr<DocumentId> id = tx.Insert(
                    "items", Item("w" + std::to_string(w) + "-" + std::to_string(m), kDocBytes));
                if (!id.ok()) return id.status();
                out.push_back(*id);
              }
              return out;
            });
        if (batch.ok()) {
          ids[w].insert(ids[w].end(), batch->begin(), batch->end());
        } else {
          errors[w] = batch.status().ToString();
        }
      }
      --writers_left;
    });
  }
  threads.emplace_back([&] {
    // A reader: every snapshot holds whole mutations only. It keeps going after an error (the
    // first is kept), for the writers wait for its snapshots.
    while (writers_left > 0) {
      absl::Status s = db->Query([&](Reader& r) -> absl::Status {
        absl::StatusOr<std::vector<Document>> docs =
            r.Table("items").WithIndex("by_name").Take(500);
        if (!docs.ok()) return docs.status();
        std::map<std::string, int> per_mutation;
        for (const Document& d : *docs) ++per_mutation[d.Get("name").as_string()];
        for (const auto& [name, n] : per_mutation) {
          if (n != kPerMutation && docs->size() < 500) {
            return absl::InternalError("a snapshot holds part of mutation " + name);
          }
        }
        return absl::OkStatus();
      });
      if (!s.ok() && errors[kWriters].empty()) errors[kWriters] = s.ToString();
      snapshots.Add();
    }
  });
  for (std::thread& t : threads) t.join();
  for (const std::string& error : errors) {
    INFO(error);
    CHECK(error.empty());
  }
  std::set<std::string> unique;
  for (const auto& writer_ids : ids) {
    CHECK(writer_ids.size() == kMutations * kPerMutation);
    for (const DocumentId& id : writer_ids) CHECK(unique.insert(id.text()).second);
  }
  CHECK(db->MapSize() > initial);
  CHECK(db->MapSize() <= size_t{16} << 20);
  CHECK(db->LastCommitTimestamp() == kWriters * kMutations);
  CHECK(Count(*db) == kWriters * kMutations * kPerMutation);
}

TEST_CASE("an indexed value too long for an index key is handled at the write",
          "[limits][document]") {
  // LMDB keys are limited (511 bytes by default); an index key holds the indexed values.
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  for (size_t length : {size_t{400}, size_t{600}, size_t{5000}}) {
    INFO("indexed string of " << length << " bytes");
    const std::string long_name(length, 'n');
    absl::Status insert_status;
    absl::Status result = db->Mutate([&](Transaction& tx) -> absl::Status {
      insert_status = tx.Insert("items", {{"name", long_name}}).status();
      // The mutation goes on: its other writes must commit either way.
      return tx.Insert("items", {{"name", "companion-" + std::to_string(length)}}).status();
    });
    INFO("insert: " << insert_status.ToString() << "; mutation: " << result.ToString());
    // Refused at the write with a clear error, or stored and found through the index; never an
    // internal storage error at commit.
    REQUIRE_OK(result);
    absl::StatusOr<std::vector<Document>> found = db->Query([&](Reader& r) {
      return r.Table("items").WithIndex("by_name", stagedb::Eq("name", long_name)).Collect();
    });
    REQUIRE_OK(found);
    if (insert_status.ok()) {
      CHECK(found->size() == 1);
    } else {
      CheckError(insert_status, absl::StatusCode::kInvalidArgument, {"items", "by_name", "name"});
      CHECK(found->empty());
    }
    absl::StatusOr<std::vector<Document>> companion = db->Query([&](Reader& r) {
      return r.Table("items")
          .WithIndex("by_name", stagedb::Eq("name", "companion-" + std::to_string(length)))
          .Collect();
    });
    REQUIRE_OK(companion);
    CHECK(companion->size() == 1);
  }
}

TEST_CASE("a schema change whose backfill needs a bigger map grows it", "[limits][map]") {
  TempDir dir;
  const Options options{.path = dir.Sub("db"),
                        .schema_json = kSchema,
                        .initial_map_size = size_t{1} << 20,
                        .max_map_size = size_t{64} << 20};
  constexpr int kDocs = 2000;
  {
    auto db = OpenDb(options);
    for (int b = 0; b < kDocs / 50; ++b) {
      REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
        for (int i = 0; i < 50; ++i) {
          Object fields = Item("d" + std::to_string(b * 50 + i));
          fields["data"] = std::to_string(b * 50 + i) + std::string(300, 'x');
          if (absl::Status s = tx.Insert("items", fields).status(); !s.ok()) return s;
        }
        return absl::OkStatus();
      }));
    }
  }
  // Reopened, the map is about as large as the data; the new index needs about as much again.
  Options with_index = options;
  const std::string by_name = R"({"name": "by_name", "fields": ["name"]})";
  const size_t at = with_index.schema_json.find(by_name);
  REQUIRE(at != std::string::npos);
  with_index.schema_json.insert(at + by_name.size(),
                                R"(, {"name": "by_data", "fields": ["data"]})");
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(with_index);
  REQUIRE_OK(db);
  absl::StatusOr<std::vector<Document>> docs =
      (*db)->Query([&](Reader& r) { return r.Table("items").WithIndex("by_data").Collect(); });
  REQUIRE_OK(docs);
  CHECK(docs->size() == kDocs);
}

TEST_CASE("map options: a zero start and an empty path are refused; a small maximum caps the start",
          "[limits][map]") {
  TempDir dir;
  CHECK_ERROR(
      Database::Open({.path = dir.Sub("db"), .schema_json = kSchema, .initial_map_size = 0}),
      absl::StatusCode::kInvalidArgument, "initial_map_size");
  CHECK_ERROR(Database::Open({.path = "", .schema_json = kSchema}),
              absl::StatusCode::kInvalidArgument, "path");
  {
    // Only a maximum below the default start (16 MiB): the map starts at the maximum.
    auto small = OpenDb(Options{.path = dir.Sub("small"), .max_map_size = size_t{2} << 20});
    CHECK(small->MapSize() == size_t{2} << 20);
    REQUIRE_OK(InsertOne(*small, Item("ok")));
  }
  // Nothing was left open: the path opens normally afterwards.
  auto db = OpenDb(dir.Sub("db"));
  REQUIRE_OK(InsertOne(*db, Item("ok")));
}

}  // namespace
