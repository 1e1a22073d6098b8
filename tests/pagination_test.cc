// Paginate: paging through a query returns exactly what Collect() returns, each document once;
// cursors are bound to their query and database and refuse alterations; and paging while other
// mutations insert and delete documents (between pages and from another thread) returns every
// document that existed throughout exactly once, in index order.
//
// The random seed is fixed; set STAGEDB_TEST_SEED to try another. It is printed on failure.

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stagedb/database.h"
#include "stagedb/index_range.h"
#include "stagedb/query.h"
#include "stagedb/value.h"
#include "test_util.h"

namespace stagedb {
namespace {

constexpr char kSchema[] = R"json({
  "tables": {
    "p": {
      "fields": {"g": "int64", "k": "number", "note": {"type": "optional", "of": "string"}},
      "indexes": [
        {"name": "by_g_k", "fields": ["g", "k"], "unique": false},
        {"name": "by_k", "fields": ["k"], "unique": false}
      ]
    },
    "q": {
      "fields": {"g": "int64", "k": "number", "note": {"type": "optional", "of": "string"}},
      "indexes": [
        {"name": "by_g_k", "fields": ["g", "k"], "unique": false},
        {"name": "by_k", "fields": ["k"], "unique": false}
      ]
    }
  }
})json";

uint64_t Seed() { return stagedb::testing::TestSeed(77031); }

std::unique_ptr<Database> OpenDb(const std::string& path) {
  auto db = Database::Open({.path = path, .schema_json = kSchema});
  INFO("open: " << db.status().ToString());
  REQUIRE(db.ok());
  return *std::move(db);
}

// Inserts `n` documents into `table` with g in 0..2 and k from a small set (many ties).
std::vector<std::string> InsertDocs(Database& db, const std::string& table, int n,
                                    std::mt19937_64& rng) {
  std::vector<std::string> ids;
  absl::Status s = db.Mutate([&](Transaction& tx) -> absl::Status {
    ids.clear();
    for (int i = 0; i < n; ++i) {
      const int64_t g = static_cast<int64_t>(rng() % 3);
      const double k = static_cast<double>(rng() % 12) / 2.0 - 1.0;
      absl::StatusOr<DocumentId> id = tx.Insert(table, {{"g", Value::Int64(g)}, {"k", Value(k)}});
      if (!id.ok()) return id.status();
      ids.push_back(id->text());
    }
    return absl::OkStatus();
  });
  INFO("insert: " << s.ToString());
  REQUIRE(s.ok());
  return ids;
}

// One query shape: the same function builds it for Collect and for every page.
struct Shape {
  std::string name;
  std::string table = "p";
  std::string index;
  IndexRange range;
  SortOrder order = SortOrder::kAsc;
  std::function<bool(const Document&)> filter;

  Query Build(Reader& r) const {
    Query q = r.Table(table);
    q.WithIndex(index, range).Order(order);
    if (filter) q.Filter(filter);
    return q;
  }
};

std::vector<Shape> Shapes() {
  std::vector<Shape> shapes;
  for (SortOrder order : {SortOrder::kAsc, SortOrder::kDesc}) {
    const std::string dir = order == SortOrder::kAsc ? " asc" : " desc";
    shapes.push_back(
        {.name = "by_creation_time" + dir, .index = "by_creation_time", .order = order});
    shapes.push_back({.name = "by_id" + dir, .index = "by_id", .order = order});
    shapes.push_back({.name = "by_k" + dir, .index = "by_k", .order = order});
    shapes.push_back(
        {.name = "by_g_k g=1" + dir, .index = "by_g_k", .range = Eq("g", 1), .order = order});
    shapes.push_back({.name = "by_g_k g=2, 0 <= k < 3" + dir,
                      .index = "by_g_k",
                      .range = Eq("g", 2).Gte("k", 0.0).Lt("k", 3.0),
                      .order = order});
    shapes.push_back(
        {.name = "by_k k > 1.5" + dir, .index = "by_k", .range = Gt("k", 1.5), .order = order});
    shapes.push_back({.name = "by_k k <= 0 (with filter g != 0)" + dir,
                      .index = "by_k",
                      .range = Lte("k", 0.0),
                      .order = order,
                      .filter = [](const Document& d) { return d["g"].as_int64() != 0; }});
    shapes.push_back({.name = "by_g_k g=7 (empty)" + dir,
                      .index = "by_g_k",
                      .range = Eq("g", 7),
                      .order = order});
  }
  return shapes;
}

std::vector<std::string> IdsOf(const std::vector<Document>& docs) {
  std::vector<std::string> ids;
  for (const Document& d : docs) ids.push_back(d.id().text());
  return ids;
}

absl::StatusOr<PaginationResult> Page(Database& db, const Shape& shape, size_t n,
                                      std::optional<std::string> cursor) {
  return db.Query([&](Reader& r) {
    return shape.Build(r).Paginate({.num_items = n, .cursor = std::move(cursor)});
  });
}

TEST_CASE("paging returns exactly the result of Collect()", "[pagination]") {
  std::mt19937_64 rng(Seed());
  INFO("seed " << Seed());
  testing::TempDir dir;
  auto db = OpenDb(dir.path());
  InsertDocs(*db, "p", 45, rng);
  InsertDocs(*db, "p", 25, rng);
  InsertDocs(*db, "q", 10, rng);

  for (const Shape& shape : Shapes()) {
    absl::StatusOr<std::vector<Document>> all =
        db->Query([&](Reader& r) { return shape.Build(r).Collect(); });
    REQUIRE(all.ok());
    const std::vector<std::string> expected = IdsOf(*all);
    for (size_t size : {size_t{1}, size_t{3}, size_t{7}}) {
      INFO("query " << shape.name << ", page size " << size << ", " << expected.size()
                    << " documents");
      std::vector<std::string> got;
      std::optional<std::string> cursor;
      size_t pages = 0;
      bool done = false;
      const size_t max_pages = expected.size() / size + 2;
      while (!done) {
        REQUIRE(pages < max_pages);
        absl::StatusOr<PaginationResult> page = Page(*db, shape, size, cursor);
        INFO("page " << pages << ": " << page.status().ToString());
        REQUIRE(page.ok());
        ++pages;
        CHECK(page->page.size() <= size);
        CHECK(!page->continue_cursor.empty());
        if (!page->is_done) {
          // Only the last page may be short or empty.
          CHECK(page->page.size() == size);
        }
        for (const Document& d : page->page) got.push_back(d.id().text());
        done = page->is_done;
        cursor = page->continue_cursor;
      }
      CHECK(got == expected);
      // An extra empty page is allowed only when the previous page was full.
      CHECK(pages <= expected.size() / size + 1);
      CHECK(pages >= (expected.size() + size - 1) / size);
      // Paging on from the last cursor stays done and empty.
      absl::StatusOr<PaginationResult> after = Page(*db, shape, size, cursor);
      REQUIRE(after.ok());
      CHECK(after->is_done);
      CHECK(after->page.empty());
    }
  }
}

TEST_CASE("Paginate checks num_items and its cursor", "[pagination]") {
  std::mt19937_64 rng(Seed() + 1);
  INFO("seed " << Seed() + 1);
  testing::TempDir dir;
  auto db = OpenDb(dir.path());
  InsertDocs(*db, "p", 30, rng);
  InsertDocs(*db, "q", 30, rng);

  const Shape base{
      .name = "base", .index = "by_g_k", .range = Eq("g", 1), .order = SortOrder::kAsc};
  absl::StatusOr<PaginationResult> first = Page(*db, base, 3, std::nullopt);
  REQUIRE(first.ok());
  REQUIRE(!first->is_done);
  const std::string cursor = first->continue_cursor;
  // The cursor works for its own query.
  absl::StatusOr<PaginationResult> second = Page(*db, base, 3, cursor);
  REQUIRE(second.ok());
  // A done cursor, also bound to its query.
  std::string done_cursor = cursor;
  for (;;) {
    absl::StatusOr<PaginationResult> page = Page(*db, base, 4, done_cursor);
    REQUIRE(page.ok());
    done_cursor = page->continue_cursor;
    if (page->is_done) break;
  }

  auto expect_invalid = [&](const Shape& shape, std::optional<std::string> c, size_t n = 3) {
    absl::StatusOr<PaginationResult> page = Page(*db, shape, n, std::move(c));
    INFO("query " << shape.name << ": " << page.status().ToString());
    CHECK(page.status().code() == absl::StatusCode::kInvalidArgument);
  };

  SECTION("num_items 0") {
    expect_invalid(base, std::nullopt, 0);
    expect_invalid(base, cursor, 0);
  }

  SECTION("a cursor from another query") {
    const std::vector<Shape> others = {
        {.name = "other index", .index = "by_k", .order = SortOrder::kAsc},
        {.name = "other index, same field prefix", .index = "by_creation_time"},
        {.name = "other range (eq)", .index = "by_g_k", .range = Eq("g", 2)},
        {.name = "other range (bound)", .index = "by_g_k", .range = Eq("g", 1).Gte("k", -10.0)},
        {.name = "no range", .index = "by_g_k"},
        {.name = "other order", .index = "by_g_k", .range = Eq("g", 1), .order = SortOrder::kDesc},
        {.name = "other table", .table = "q", .index = "by_g_k", .range = Eq("g", 1)},
    };
    for (const Shape& other : others) {
      expect_invalid(other, cursor);
      expect_invalid(other, done_cursor);
    }
  }

  SECTION("an altered cursor") {
    static const std::string kAlphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    INFO("cursor " << cursor);
    for (size_t i = 0; i < cursor.size(); ++i) {
      std::string altered = cursor;
      const size_t at = kAlphabet.find(altered[i]);
      altered[i] = kAlphabet[(at == std::string::npos ? 0 : at + 1 + i % 63) % 64];
      if (altered == cursor) continue;
      INFO("changed position " << i << ": " << altered);
      expect_invalid(base, altered);
    }
    for (size_t len = 0; len < cursor.size(); ++len) {
      INFO("truncated to " << len);
      expect_invalid(base, cursor.substr(0, len));
    }
    expect_invalid(base, std::string());
    expect_invalid(base, cursor + "A");
    expect_invalid(base, cursor + cursor);
    expect_invalid(base, done_cursor.substr(0, done_cursor.size() - 2));
    std::mt19937_64 garbage_rng(Seed() + 2);
    for (int i = 0; i < 200; ++i) {
      std::string garbage;
      const size_t len = garbage_rng() % 80;
      for (size_t j = 0; j < len; ++j) {
        garbage.push_back(i % 2 == 0 ? kAlphabet[garbage_rng() % 64]
                                     : static_cast<char>(garbage_rng() % 256));
      }
      INFO("garbage " << i);
      expect_invalid(base, garbage);
    }
  }

  SECTION("a cursor from another database with the same schema and documents") {
    testing::TempDir other_dir;
    auto other = OpenDb(other_dir.path());
    std::mt19937_64 same_rng(Seed() + 1);
    InsertDocs(*other, "p", 30, same_rng);
    absl::StatusOr<PaginationResult> own = Page(*other, base, 3, std::nullopt);
    REQUIRE(own.ok());
    REQUIRE(Page(*other, base, 3, own->continue_cursor).ok());
    absl::StatusOr<PaginationResult> page = Page(*other, base, 3, cursor);
    INFO(page.status().ToString());
    CHECK(page.status().code() == absl::StatusCode::kInvalidArgument);
    page = Page(*other, base, 3, done_cursor);
    CHECK(page.status().code() == absl::StatusCode::kInvalidArgument);
    page = Page(*db, base, 3, own->continue_cursor);
    CHECK(page.status().code() == absl::StatusCode::kInvalidArgument);
  }

  SECTION("a cursor stays valid when the database is reopened") {
    absl::StatusOr<PaginationResult> before = Page(*db, base, 3, cursor);
    REQUIRE(before.ok());
    db.reset();
    db = OpenDb(dir.path());
    absl::StatusOr<PaginationResult> after = Page(*db, base, 3, cursor);
    INFO(after.status().ToString());
    REQUIRE(after.ok());
    CHECK(IdsOf(after->page) == IdsOf(before->page));
  }
}

// ---- paging under concurrent writes ----

struct Tracked {
  double k;
  double creation_time;
  std::string id;
};

// Strict index order of by_k (k, _creationTime, _id), or of by_g_k within one g.
int CompareKeys(const Tracked& x, const Tracked& y) {
  if (int c = Compare(Value(x.k), Value(y.k)); c != 0) return c;
  if (int c = Compare(Value(x.creation_time), Value(y.creation_time)); c != 0) return c;
  return x.id < y.id ? -1 : (x.id > y.id ? 1 : 0);
}

// A writer's pool of documents that exist only to be deleted.
class Churn {
 public:
  Churn(Database& db, uint64_t seed, std::vector<std::string> stable)
      : db_(db), rng_(seed), stable_(std::move(stable)) {}

  // Inserts `n` documents (g random, k anywhere) into the pool.
  void Insert(int n) {
    std::vector<std::string> added;
    absl::Status s = db_.Mutate([&](Transaction& tx) -> absl::Status {
      added.clear();
      for (int i = 0; i < n; ++i) {
        absl::StatusOr<DocumentId> id = tx.Insert("p", RandomFields());
        if (!id.ok()) return id.status();
        added.push_back(id->text());
      }
      return absl::OkStatus();
    });
    Check(s);
    pool_.insert(pool_.end(), added.begin(), added.end());
  }

  // One mutation: inserts, deletes from the pool, and a patch of a stable document's
  // unindexed field (its index entries are rewritten in place).
  void Step(int inserts, int deletes) {
    std::vector<std::string> added;
    std::vector<size_t> removed;
    const std::string note = "n" + std::to_string(rng_() % 1000);
    const std::string& patched = stable_[rng_() % stable_.size()];
    for (int i = 0; i < deletes && !pool_.empty(); ++i) {
      const size_t at = rng_() % pool_.size();
      if (std::find(removed.begin(), removed.end(), at) == removed.end()) removed.push_back(at);
    }
    std::vector<Object> fields;
    for (int i = 0; i < inserts; ++i) fields.push_back(RandomFields());
    absl::Status s = db_.Mutate([&](Transaction& tx) -> absl::Status {
      added.clear();
      for (const Object& f : fields) {
        absl::StatusOr<DocumentId> id = tx.Insert("p", f);
        if (!id.ok()) return id.status();
        added.push_back(id->text());
      }
      for (size_t at : removed) {
        absl::StatusOr<DocumentId> id = DocumentId::Parse(pool_[at]);
        if (!id.ok()) return id.status();
        if (absl::Status d = tx.Delete(*id); !d.ok()) return d;
      }
      absl::StatusOr<DocumentId> id = DocumentId::Parse(patched);
      if (!id.ok()) return id.status();
      return tx.Patch(*id, {{"note", Value(note)}});
    });
    Check(s);
    std::sort(removed.rbegin(), removed.rend());
    for (size_t at : removed) {
      deleted_.push_back(pool_[at]);
      pool_.erase(pool_.begin() + static_cast<std::ptrdiff_t>(at));
    }
    pool_.insert(pool_.end(), added.begin(), added.end());
  }

  // Deletes every document of the pool.
  void DeleteAll() {
    absl::Status s = db_.Mutate([&](Transaction& tx) -> absl::Status {
      for (const std::string& text : pool_) {
        absl::StatusOr<DocumentId> id = DocumentId::Parse(text);
        if (!id.ok()) return id.status();
        if (absl::Status d = tx.Delete(*id); !d.ok()) return d;
      }
      return absl::OkStatus();
    });
    Check(s);
    deleted_.insert(deleted_.end(), pool_.begin(), pool_.end());
    pool_.clear();
  }

  const std::vector<std::string>& deleted() const { return deleted_; }
  const std::string& first_error() const { return first_error_; }

 private:
  Object RandomFields() {
    return {{"g", Value::Int64(static_cast<int64_t>(rng_() % 3))},
            {"k", Value(static_cast<double>(rng_() % 400) / 4.0)}};
  }
  // Catch assertions are not thread-safe: a writer thread records its first error instead.
  void Check(const absl::Status& s) {
    if (!s.ok() && first_error_.empty()) first_error_ = s.ToString();
  }

  Database& db_;
  std::mt19937_64 rng_;
  std::vector<std::string> stable_;
  std::vector<std::string> pool_;
  std::vector<std::string> deleted_;
  std::string first_error_;
};

TEST_CASE("paging under concurrent writes returns every stable document once",
          "[pagination][concurrency]") {
  const uint64_t seed = Seed() + 3;
  INFO("seed " << seed);
  struct Config {
    std::string name;
    std::string index;
    IndexRange range;
    SortOrder order;
    std::optional<int64_t> g;        // the g of every document in range
    double k_lo = -1e9, k_hi = 1e9;  // k_lo <= k < k_hi for every document in range
  };
  const std::vector<Config> configs = {
      {"by_k asc", "by_k", IndexRange(), SortOrder::kAsc, std::nullopt},
      {"by_k desc", "by_k", IndexRange(), SortOrder::kDesc, std::nullopt},
      {"by_g_k g=1 asc", "by_g_k", Eq("g", 1), SortOrder::kAsc, 1},
      {"by_g_k g=1, 10 <= k < 90 desc", "by_g_k", Eq("g", 1).Gte("k", 10.0).Lt("k", 90.0),
       SortOrder::kDesc, 1, 10.0, 90.0},
  };
  for (const Config& config : configs) {
    INFO("query " << config.name);
    testing::TempDir dir;
    auto db = OpenDb(dir.path());

    // Stable documents (never deleted), documents deleted before paging starts, and pools of
    // documents for the two writers to delete while paging.
    std::mt19937_64 rng(seed);
    std::vector<std::string> stable;
    for (int i = 0; i < 4; ++i) {
      std::vector<std::string> ids;
      absl::Status s = db->Mutate([&](Transaction& tx) -> absl::Status {
        ids.clear();
        for (int j = 0; j < 40; ++j) {
          absl::StatusOr<DocumentId> id =
              tx.Insert("p", {{"g", Value::Int64(static_cast<int64_t>(j % 3))},
                              {"k", Value(static_cast<double>(rng() % 400) / 4.0)}});
          if (!id.ok()) return id.status();
          ids.push_back(id->text());
        }
        return absl::OkStatus();
      });
      REQUIRE(s.ok());
      stable.insert(stable.end(), ids.begin(), ids.end());
    }
    Churn before(*db, seed + 1, stable);
    before.Insert(40);
    before.DeleteAll();
    Churn main_writer(*db, seed + 2, stable);
    Churn thread_writer(*db, seed + 3, stable);
    main_writer.Insert(30);
    thread_writer.Insert(30);
    REQUIRE(main_writer.first_error().empty());
    REQUIRE(thread_writer.first_error().empty());

    // Which stable documents are in range, and their keys.
    std::map<std::string, Tracked> in_range;
    absl::Status s = db->Query([&](Reader& r) -> absl::Status {
      for (const std::string& text : stable) {
        absl::StatusOr<std::optional<Document>> d = r.Get(text);
        if (!d.ok()) return d.status();
        if (!d->has_value()) return absl::InternalError("stable document missing: " + text);
        const Document& doc = **d;
        const double k = doc["k"].as_float64();
        const bool inside = (!config.g.has_value() || doc["g"].as_int64() == *config.g) &&
                            k >= config.k_lo && k < config.k_hi;
        if (inside) in_range[text] = {k, doc["_creationTime"].as_float64(), text};
      }
      return absl::OkStatus();
    });
    REQUIRE(s.ok());
    REQUIRE(in_range.size() > 20);

    // The writer thread commits for as long as the pages are read; between two pages the
    // reader waits for its progress (below), so that its commits land between the pages however
    // the threads are scheduled.
    std::atomic<bool> paging_done{false};
    testing::Progress thread_steps;
    std::thread writer([&] {
      while (!paging_done.load()) {
        thread_writer.Step(1, 1);
        thread_steps.Add();
      }
    });

    std::vector<Tracked> returned;
    std::set<std::string> seen;
    std::vector<std::string> duplicates;
    std::optional<std::string> cursor;
    std::string error;
    int pages = 0;
    int waited_pages = 0;  // pages followed by a commit of the writer thread
    for (bool done = false; !done && pages < 500; ++pages) {
      absl::StatusOr<PaginationResult> page = db->Query([&](Reader& r) {
        Query q = r.Table("p");
        q.WithIndex(config.index, config.range).Order(config.order);
        return q.Paginate({.num_items = 5, .cursor = cursor});
      });
      if (!page.ok()) {
        error = page.status().ToString();
        break;
      }
      for (const Document& d : page->page) {
        if (!seen.insert(d.id().text()).second) duplicates.push_back(d.id().text());
        returned.push_back({d["k"].as_float64(), d["_creationTime"].as_float64(), d.id().text()});
        const double k = d["k"].as_float64();
        if ((config.g.has_value() && d["g"].as_int64() != *config.g) || k < config.k_lo ||
            k >= config.k_hi) {
          error = "returned a document outside the range: " + d.ToJson();
        }
      }
      done = page->is_done;
      cursor = page->continue_cursor;
      main_writer.Step(2, 2);
      if (!done) {
        // A commit of the writer thread made after this page was read, before the next.
        if (!thread_steps.WaitForNewer()) {
          error = "the writer thread made no progress within the hang guard";
          break;
        }
        ++waited_pages;
      }
    }
    paging_done.store(true);
    writer.join();

    INFO("pages " << pages << ", writer thread mutations " << thread_steps.value());
    INFO("error: " << error);
    REQUIRE(error.empty());
    REQUIRE(main_writer.first_error().empty());
    REQUIRE(thread_writer.first_error().empty());
    // Paging ended, and every page but the last was followed by the writer thread's commits.
    CHECK(waited_pages == pages - 1);
    CHECK(duplicates.empty());
    for (const auto& [id, tracked] : in_range) {
      INFO("stable document " << id << " k=" << tracked.k);
      CHECK(seen.count(id) == 1);
    }
    for (const std::string& id : before.deleted()) {
      INFO("deleted before paging began: " << id);
      CHECK(seen.count(id) == 0);
    }
    // Pages continue strictly after the last key returned: the whole sequence is in index order.
    for (size_t i = 1; i < returned.size(); ++i) {
      const int c = CompareKeys(returned[i - 1], returned[i]);
      INFO("position " << i << ": " << returned[i - 1].id << " then " << returned[i].id);
      CHECK((config.order == SortOrder::kAsc ? c < 0 : c > 0));
    }
  }
}

}  // namespace
}  // namespace stagedb

namespace stagedb {
namespace {

// end_cursor: a page re-run with its own continue_cursor as end keeps its key range.
TEST_CASE("end_cursor keeps a page's range while documents come and go", "[pagination]") {
  testing::TempDir dir;
  auto db = OpenDb(dir.path());
  auto insert = [&](int64_t g, double k) {
    absl::StatusOr<DocumentId> id = db->Mutate([&](Transaction& tx) {
      return tx.Insert("p", {{"g", g}, {"k", k}});
    });
    REQUIRE(id.ok());
    return *id;
  };
  for (double k : {10.0, 20.0, 30.0, 40.0, 50.0}) insert(1, k);
  auto page = [&](std::optional<std::string> cursor, std::optional<std::string> end, size_t n = 2) {
    return db->Query([&](Reader& r) {
      return r.Table("p")
          .WithIndex("by_g_k", Eq("g", 1))
          .Paginate({.num_items = n, .cursor = std::move(cursor), .end_cursor = std::move(end)});
    });
  };
  auto ks = [](const PaginationResult& result) {
    std::vector<double> out;
    for (const Document& d : result.page) out.push_back(d["k"].as_float64());
    return out;
  };
  absl::StatusOr<PaginationResult> first = page(std::nullopt, std::nullopt);
  REQUIRE(first.ok());
  REQUIRE(ks(*first) == std::vector<double>{10, 20});

  // A document inside the first page's range, and one after it.
  insert(1, 15);
  insert(1, 25);
  absl::StatusOr<PaginationResult> again = page(std::nullopt, first->continue_cursor);
  REQUIRE(again.ok());
  CHECK(ks(*again) == std::vector<double>{10, 15, 20});  // grew; 25 is not in its range
  CHECK(again->continue_cursor == first->continue_cursor);
  CHECK_FALSE(again->is_done);
  // The next page starts right after: no overlap, no gap.
  absl::StatusOr<PaginationResult> second = page(first->continue_cursor, std::nullopt);
  REQUIRE(second.ok());
  CHECK(ks(*second) == std::vector<double>{25, 30});

  // A last page's "done" cursor as end: the page runs to the end of the range.
  absl::StatusOr<PaginationResult> rest = page(second->continue_cursor, std::nullopt, 10);
  REQUIRE(rest.ok());
  REQUIRE(rest->is_done);
  insert(1, 60);
  absl::StatusOr<PaginationResult> rest_again =
      page(second->continue_cursor, rest->continue_cursor);
  REQUIRE(rest_again.ok());
  CHECK(ks(*rest_again) == std::vector<double>{40, 50, 60});
  CHECK(rest_again->is_done);

  // An end cursor of another query is refused, naming it.
  absl::StatusOr<PaginationResult> other = db->Query([&](Reader& r) {
    return r.Table("p").WithIndex("by_k").Paginate(
        {.num_items = 2, .end_cursor = first->continue_cursor});
  });
  REQUIRE(other.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(other.status().message()).find("end_cursor") != std::string::npos);
}

}  // namespace
}  // namespace stagedb
