// The README's code, run. ApplyChanges below is the README's (section "Subscriptions"),
// character for character: a test reads README.md and this file and compares the two texts, so
// neither can change alone. Then it is run against real subscriptions: many random mutations
// (inserts, deletes, patches that move documents within and out of ranges, several writes per
// commit, bursts of commits that coalesce into one update), and after every update applying its
// change set to the previous list must give exactly the new result. The README's example of an
// argument error is compared with the message the code produces.
//
// The random seed is fixed; set STAGEDB_TEST_SEED to try another. It is printed on failure.

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstddef>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

// README:ApplyChanges begin
// Applies an update's change set to `rows`, the documents shown so far (none before the first
// update), as subscription.h says: erase, then insert, then replace, each in its order.
void ApplyChanges(const stagedb::ChangeSet& changes, std::vector<stagedb::Document>& rows) {
  std::vector<const stagedb::DocumentChange*> erase, insert;
  for (const stagedb::DocumentChange& c : changes.removed) erase.push_back(&c);
  for (const stagedb::DocumentChange& c : changes.added) insert.push_back(&c);
  for (const stagedb::DocumentChange& c : changes.changed) {
    if (!c.moved) continue;
    erase.push_back(&c);  // a move is an erase and an insert
    insert.push_back(&c);
  }
  // Old positions, highest first: erasing one does not shift those still to erase.
  std::ranges::sort(erase, std::greater<>(), [](auto* c) { return *c->old_position; });
  for (const stagedb::DocumentChange* c : erase) rows.erase(rows.begin() + *c->old_position);
  // New positions, lowest first: each lands where the new result has it.
  std::ranges::sort(insert, std::less<>(), [](auto* c) { return *c->new_position; });
  for (const stagedb::DocumentChange* c : insert) {
    rows.insert(rows.begin() + *c->new_position, c->document);
  }
  for (const stagedb::DocumentChange& c : changes.changed) {
    if (!c.moved) rows[*c.new_position] = c.document;  // changed in place
  }
}
// README:ApplyChanges end

}  // namespace

namespace stagedb {
namespace {

using testing::TempDir;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  INFO("reading " << path << " (STAGEDB_SOURCE_DIR is the repository; ctest sets it)");
  REQUIRE(in.good());
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The README's ```cpp block that contains `needle`, without its fence lines.
std::string ReadmeBlock(const std::string& readme, std::string_view needle) {
  size_t at = readme.find(needle);
  REQUIRE(at != std::string::npos);
  const size_t open = readme.rfind("```cpp\n", at);
  REQUIRE(open != std::string::npos);
  const size_t start = open + 7;
  const size_t close = readme.find("```", at);
  REQUIRE(close != std::string::npos);
  return readme.substr(start, close - start);
}

// The text between this file's `begin` and `end` marker lines.
std::string MarkedText(const std::string& source, const std::string& name) {
  const std::string begin = "// README:" + name + " begin\n";
  const std::string end = "// README:" + name + " end\n";
  const size_t start = source.find(begin);
  REQUIRE(start != std::string::npos);
  const size_t stop = source.find(end, start);
  REQUIRE(stop != std::string::npos);
  return source.substr(start + begin.size(), stop - start - begin.size());
}

TEST_CASE("the README's ApplyChanges is the one this test runs", "[readme]") {
  const std::string dir = testing::SourceDir();
  const std::string readme = ReadFile(dir + "/README.md");
  const std::string source = ReadFile(dir + "/tests/readme_snippets_test.cc");
  CHECK(ReadmeBlock(readme, "void ApplyChanges(") == MarkedText(source, "ApplyChanges"));
  // The subscription example calls it as it is declared.
  CHECK(ReadmeBlock(readme, "(*db)->Subscribe(").find("ApplyChanges(update.changes, rows);") !=
        std::string::npos);
}

// The order of the README before it used subscription.h's recipe: insert `added`, erase
// `removed` by old position, replace `changed`, moves ignored. Kept to show that the random
// workload below tells the two apart. Returns false where a position is out of range.
bool ApplyInOldReadmeOrder(const ChangeSet& changes, std::vector<Document>& rows) {
  for (const DocumentChange& c : changes.added) {
    if (*c.new_position > rows.size()) return false;
    rows.insert(rows.begin() + static_cast<std::ptrdiff_t>(*c.new_position), c.document);
  }
  for (const DocumentChange& c : changes.removed) {
    if (*c.old_position >= rows.size()) return false;
    rows.erase(rows.begin() + static_cast<std::ptrdiff_t>(*c.old_position));
  }
  for (const DocumentChange& c : changes.changed) {
    if (*c.new_position >= rows.size()) return false;
    rows[*c.new_position] = c.document;
  }
  return true;
}

constexpr char kSchema[] = R"json({
  "tables": {
    "items": {
      "fields": {"rank": "int64", "label": "string"},
      "indexes": [{"name": "by_rank", "fields": ["rank"]},
                  {"name": "by_label_rank", "fields": ["label", "rank"]}]
    }
  }
})json";

std::string Show(const std::vector<Document>& rows) {
  std::string text = "[";
  for (const Document& row : rows) {
    if (text.size() > 1) text += ", ";
    text += row["label"].as_string() + std::to_string(row["rank"].as_int64());
  }
  return text + "]";
}

// One subscription and the list its callback keeps with ApplyChanges. The callback runs on the
// notifier thread: everything it records is guarded, and the test thread checks it after
// WaitForDelivery (which returns only once those callbacks have returned).
struct Watcher {
  using ListQuery = std::function<absl::StatusOr<std::vector<Document>>(Reader&)>;
  std::string name;
  ListQuery current;  // the same query as a list, to compare with after each wait

  std::mutex mu;
  std::vector<Document> rows, old_order_rows;
  int updates = 0, moves = 0, mixed = 0, multi = 0, old_order_wrong = 0;
  std::string failure;  // the first update where ApplyChanges missed the result

  void OnUpdate(const QueryUpdate& update) {
    std::lock_guard<std::mutex> lock(mu);
    ++updates;
    if (!update.result.ok()) {
      if (failure.empty()) failure = "the query failed: " + update.result.status().ToString();
      return;
    }
    const ChangeSet& c = update.changes;
    const std::vector<Document> expected = update.documents();
    for (const DocumentChange& change : c.changed) moves += change.moved ? 1 : 0;
    if (!c.added.empty() && !c.removed.empty()) ++mixed;
    if (c.added.size() + c.removed.size() + c.changed.size() > 1) ++multi;
    const std::string before = Show(rows);
    ApplyChanges(c, rows);
    if (rows != expected && failure.empty()) {
      failure = "update " + std::to_string(updates) + " at " + std::to_string(update.timestamp) +
                ": " + before + " + changes gave " + Show(rows) + ", the result is " +
                Show(expected);
    }
    rows = expected;  // judge each update on its own
    if (!ApplyInOldReadmeOrder(c, old_order_rows) || old_order_rows != expected) {
      ++old_order_wrong;
    }
    old_order_rows = expected;
  }
};

TEST_CASE("the README's ApplyChanges keeps a list equal to every result", "[readme]") {
  const uint64_t seed = testing::TestSeed(20250927);
  INFO("seed " << seed);
  std::mt19937_64 rng(seed);
  auto pick = [&rng](size_t n) { return static_cast<size_t>(rng() % n); };
  TempDir dir;
  std::unique_ptr<Database> db =
      testing::OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema, .run_scheduler = false});

  // Lists whose documents come, go and move: newest first with a limit (the README's shape),
  // a whole index where patches of `rank` reorder, a filtered top of it, a page, and one
  // label's range that patches of `label` move documents into and out of.
  std::vector<std::unique_ptr<Watcher>> watchers;
  std::vector<Subscription> subscriptions;
  auto watch = [&](std::string name, auto query, Watcher::ListQuery as_list) {
    auto watcher = std::make_unique<Watcher>();
    watcher->name = std::move(name);
    watcher->current = std::move(as_list);
    Watcher* w = watcher.get();
    absl::StatusOr<Subscription> sub =
        db->Subscribe(query, [w](const QueryUpdate& update) { w->OnUpdate(update); });
    REQUIRE_OK(sub);
    subscriptions.push_back(*std::move(sub));
    watchers.push_back(std::move(watcher));
  };
  auto list = [&](std::string name, Watcher::ListQuery query) {
    watch(std::move(name), query, query);
  };
  list("newest 6", [](Reader& r) { return r.Table("items").Order(SortOrder::kDesc).Take(6); });
  list("by rank", [](Reader& r) { return r.Table("items").WithIndex("by_rank").Collect(); });
  list("top 5 by rank, not c", [](Reader& r) {
    return r.Table("items")
        .WithIndex("by_rank")
        .Order(SortOrder::kDesc)
        .Filter([](const Document& d) { return d["label"].as_string() != "c"; })
        .Take(5);
  });
  list("label a by rank", [](Reader& r) {
    return r.Table("items").WithIndex("by_label_rank", Eq("label", "a")).Collect();
  });
  auto page = [](Reader& r) {
    return r.Table("items").WithIndex("by_rank").Paginate({.num_items = 7});
  };
  watch("first page of 7 by rank", page,
        [page](Reader& r) -> absl::StatusOr<std::vector<Document>> {
          absl::StatusOr<PaginationResult> result = page(r);
          if (!result.ok()) return result.status();
          return std::move(result->page);
        });

  std::vector<DocumentId> live;
  const char* const kLabels[] = {"a", "b", "c"};
  auto commit_random_mutation = [&]() -> Timestamp {
    // Planned outside the function, which may run more than once.
    struct Op {
      enum Kind { kInsert, kDelete, kPatchRank, kPatchLabel } kind;
      DocumentId target;
      int64_t rank = 0;
      std::string label;
    };
    std::vector<Op> ops;
    std::vector<DocumentId> pool = live;  // each document is written at most once per commit
    const size_t n = 1 + pick(4);
    for (size_t i = 0; i < n; ++i) {
      Op op{.kind = Op::kInsert, .rank = static_cast<int64_t>(pick(12)), .label = kLabels[pick(3)]};
      const size_t roll = pick(100);
      if (!pool.empty() && live.size() > 3 && roll < 65) {
        op.kind = roll < 25 ? Op::kDelete : roll < 55 ? Op::kPatchRank : Op::kPatchLabel;
        const size_t k = pick(pool.size());
        op.target = pool[k];
        pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(k));
      }
      ops.push_back(std::move(op));
    }
    std::vector<DocumentId> inserted;
    Timestamp t = 0;
    REQUIRE_OK(db->Mutate(
        [&](Transaction& tx) -> absl::Status {
          inserted.clear();
          for (const Op& op : ops) {
            absl::Status s;
            switch (op.kind) {
              case Op::kInsert: {
                absl::StatusOr<DocumentId> id =
                    tx.Insert("items", {{"rank", Value::Int64(op.rank)}, {"label", op.label}});
                if (id.ok()) inserted.push_back(*id);
                s = id.status();
                break;
              }
              case Op::kDelete:
                s = tx.Delete(op.target);
                break;
              case Op::kPatchRank:
                s = tx.Patch(op.target, {{"rank", Value::Int64(op.rank)}});
                break;
              case Op::kPatchLabel:
                s = tx.Patch(op.target, {{"label", op.label}});
                break;
            }
            if (!s.ok()) return s;
          }
          return absl::OkStatus();
        },
        &t));
    for (const Op& op : ops) {
      if (op.kind == Op::kDelete) live.erase(std::find(live.begin(), live.end(), op.target));
    }
    live.insert(live.end(), inserted.begin(), inserted.end());
    return t;
  };

  constexpr int kRounds = 500;
  for (int round = 0; round < kRounds; ++round) {
    // Now and then a burst: commits made before the re-run of the first, which may coalesce
    // into one update (a change set spanning several commits).
    const int commits = pick(4) == 0 ? 2 + static_cast<int>(pick(3)) : 1;
    Timestamp last = 0;
    for (int i = 0; i < commits; ++i) last = commit_random_mutation();
    REQUIRE_OK(db->WaitForDelivery(last, absl::Minutes(2)));
    for (const std::unique_ptr<Watcher>& w : watchers) {
      INFO(w->name << ", round " << round);
      std::vector<Document> now;
      {
        absl::StatusOr<std::vector<Document>> result = db->Query(w->current);
        REQUIRE_OK(result);
        now = *std::move(result);
      }
      std::lock_guard<std::mutex> lock(w->mu);
      REQUIRE(w->failure == "");
      // Every commit was waited for, so the list shown is the result now.
      REQUIRE(Show(w->rows) == Show(now));
      REQUIRE(w->rows == now);
    }
  }

  int updates = 0, moves = 0, mixed = 0, multi = 0, old_order_wrong = 0;
  for (const std::unique_ptr<Watcher>& w : watchers) {
    std::lock_guard<std::mutex> lock(w->mu);
    INFO(w->name << ": " << w->updates << " updates, " << w->moves << " moves, " << w->mixed
                 << " with additions and removals, " << w->multi << " with several changes, "
                 << w->old_order_wrong << " wrong in the old README order");
    CHECK(w->updates > 20);
    updates += w->updates;
    moves += w->moves;
    mixed += w->mixed;
    multi += w->multi;
    old_order_wrong += w->old_order_wrong;
  }
  // The workload made the cases where the order matters, and the old order failed on them.
  INFO(updates << " updates, " << moves << " moves, " << mixed << " mixed, " << multi << " multi, "
               << old_order_wrong << " wrong in the old order");
  CHECK(moves > 20);
  CHECK(mixed > 20);
  CHECK(multi > 100);
  CHECK(old_order_wrong > 20);
}

TEST_CASE("the issue's case: newest first [B, A], delete A and insert C gives [C, B]", "[readme]") {
  TempDir dir;
  std::unique_ptr<Database> db =
      testing::OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema, .run_scheduler = false});
  const DocumentId a = testing::MustInsert(*db, "items", {{"rank", 1}, {"label", "a"}});
  testing::MustInsert(*db, "items", {{"rank", 2}, {"label", "b"}});
  std::mutex mu;
  std::vector<Document> rows, old_order_rows;
  absl::StatusOr<Subscription> sub =
      db->Subscribe([](Reader& r) { return r.Table("items").Order(SortOrder::kDesc).Collect(); },
                    [&](const QueryUpdate& update) {
                      std::lock_guard<std::mutex> lock(mu);
                      ApplyChanges(update.changes, rows);
                      ApplyInOldReadmeOrder(update.changes, old_order_rows);
                    });
  REQUIRE_OK(sub);
  REQUIRE_OK(db->WaitForDelivery(db->LastCommitTimestamp(), absl::Minutes(2)));
  {
    std::lock_guard<std::mutex> lock(mu);
    REQUIRE(Show(rows) == "[b2, a1]");
  }
  Timestamp t = 0;
  REQUIRE_OK(db->Mutate(
      [&](Transaction& tx) -> absl::Status {
        if (absl::Status s = tx.Delete(a); !s.ok()) return s;
        return tx.Insert("items", {{"rank", 3}, {"label", "c"}}).status();
      },
      &t));
  REQUIRE_OK(db->WaitForDelivery(t, absl::Minutes(2)));
  std::lock_guard<std::mutex> lock(mu);
  CHECK(Show(rows) == "[c3, b2]");
  CHECK(Show(old_order_rows) == "[c3, a1]");  // what the old README order made of it
}

TEST_CASE("the README's argument error is the message a call gets", "[readme]") {
  const std::string readme = ReadFile(testing::SourceDir() + "/README.md");
  const size_t start = readme.find("`function \"tasks:rename\": argument");
  REQUIRE(start != std::string::npos);
  const size_t end = readme.find('`', start + 1);
  REQUIRE(end != std::string::npos);
  // The README wraps it: a line break and the next line's indent read as one space.
  std::string documented;
  bool at_line_start = false;
  for (char ch : std::string_view(readme).substr(start + 1, end - start - 1)) {
    if (ch == '\n') {
      documented += ' ';
      at_line_start = true;
    } else if (!(at_line_start && ch == ' ')) {
      documented += ch;
      at_line_start = false;
    }
  }
  TempDir dir;
  std::unique_ptr<Database> db =
      testing::OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema, .run_scheduler = false});
  REQUIRE_OK(db->RegisterMutation(
      {.name = "tasks:rename", .args = R"({"title": "string"})"},
      [](MutationContext&, const Value&) -> absl::StatusOr<Value> { return Value(nullptr); }));
  absl::StatusOr<Value> result = db->Call("tasks:rename", Object{{"title", Value::Int64(5)}});
  REQUIRE(result.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(std::string(result.status().message()) == documented);
}

}  // namespace
}  // namespace stagedb
