// Subscriptions through the public API: precision of invalidation (re-runs counted by calls of
// the query function), coalescing, change sets, callbacks that mutate, subscribe and unsubscribe,
// Boost.Signals2 slots, unsubscribe and shutdown semantics, Delivery::kManual, WaitForDelivery
// (read your writes) and timestamp order under concurrent writers.
//
// Catch2 assertions are not thread-safe: callbacks and writer threads only record what they
// see (Recorder, atomics), and the test thread checks it. Waits use WaitForDelivery and gates,
// not sleeps: a callback that must still be running while the test stops a subscription or
// closes the database waits until that has begun (its subscription no longer active). Every
// wait is bounded by the hang guard only, so that a bug fails a test instead of hanging it.
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using namespace stagedb;
using stagedb::testing::Gate;
using stagedb::testing::OpenOnExit;
using stagedb::testing::OpenOrFail;
using stagedb::testing::TempDir;

constexpr const char* kSchema = R"json({
  "tables": {
    "items": {
      "fields": {
        "group": "string",
        "rank": "int64",
        "note": {"type": "optional", "of": "string"}
      },
      "indexes": [{"name": "by_group", "fields": ["group", "rank"]}]
    },
    "other": {
      "fields": {"group": "string", "rank": "int64"},
      "indexes": [{"name": "by_group", "fields": ["group", "rank"]}]
    },
    "log": {
      "fields": {"source": "string", "n": "int64"},
      "indexes": [{"name": "by_source", "fields": ["source", "n"]}]
    }
  }
})json";

// Every wait in these tests is bounded: a bug makes a test fail, not hang.
constexpr absl::Duration kTimeout = stagedb::testing::kHangGuard;

std::unique_ptr<Database> OpenDb(const TempDir& dir,
                                 Delivery delivery = Delivery::kNotifierThread) {
  return OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema, .delivery = delivery});
}

// ---- change sets ----

// Applies a change set to `list` as subscription.h documents, checking each position and
// document on the way. Returns what was wrong, or "".
std::string ApplyChanges(std::vector<Document>& list, const ChangeSet& changes) {
  std::vector<std::pair<size_t, const DocumentChange*>> erase;
  std::vector<std::pair<size_t, const DocumentChange*>> insert;
  for (const DocumentChange& c : changes.removed) {
    if (!c.old_position || c.new_position) return "a removed document must have only old_position";
    if (*c.old_position >= list.size()) return "removed: old_position out of range";
    if (!(list[*c.old_position] == c.document)) {
      return "removed: the document is not the one at old_position as it was";
    }
    erase.emplace_back(*c.old_position, &c);
  }
  for (const DocumentChange& c : changes.changed) {
    if (!c.old_position || !c.new_position) return "a changed document needs both positions";
    if (*c.old_position >= list.size()) return "changed: old_position out of range";
    if (list[*c.old_position].id() != c.document.id()) {
      return "changed: another document is at old_position";
    }
    if (c.moved) {
      erase.emplace_back(*c.old_position, &c);
      insert.emplace_back(*c.new_position, &c);
    }
  }
  for (const DocumentChange& c : changes.added) {
    if (c.old_position || !c.new_position) return "an added document must have only new_position";
    insert.emplace_back(*c.new_position, &c);
  }
  std::sort(erase.begin(), erase.end(),
            [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 1; i < erase.size(); ++i) {
    if (erase[i].first == erase[i - 1].first) return "two changes erase the same old position";
  }
  for (const auto& [position, change] : erase) list.erase(list.begin() + position);
  std::sort(insert.begin(), insert.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (const auto& [position, change] : insert) {
    if (position > list.size()) return "new_position out of range on insert";
    list.insert(list.begin() + position, change->document);
  }
  for (const DocumentChange& c : changes.changed) {
    if (c.moved) continue;
    if (*c.new_position >= list.size()) return "changed in place: new_position out of range";
    if (list[*c.new_position].id() != c.document.id()) {
      return "changed in place: another document is at new_position";
    }
    if (list[*c.new_position] == c.document) return "changed in place, but nothing changed";
    list[*c.new_position] = c.document;
  }
  return "";
}

// Records the updates a callback receives (on any thread), with the thread each ran on, and
// keeps a mirror of the result by applying each change set; every mismatch is kept as a problem.
class Recorder {
 public:
  UpdateSlot Slot() {
    return [this](const QueryUpdate& update) { Add(update); };
  }

  void Add(const QueryUpdate& update) {
    std::lock_guard<std::mutex> lock(mu_);
    const size_t n = updates_.size();
    if (!update.result.ok()) {
      if (!update.changes.empty())
        problems_.push_back(absl::StrCat("update ", n, ": error with changes"));
    } else if (update.changes.is_document_result) {
      std::string problem = ApplyChanges(mirror_, update.changes);
      if (problem.empty() && mirror_ != update.documents()) {
        problem = "the change set applied to the previous result is not the new result";
      }
      if (!problem.empty()) {
        problems_.push_back(
            absl::StrCat("update ", n, " (timestamp ", update.timestamp, "): ", problem));
        mirror_ = update.documents();  // resynchronize, to report later updates on their own
      }
    }
    updates_.push_back(update);
    threads_.push_back(std::this_thread::get_id());
    cv_.notify_all();
  }

  size_t size() {
    std::lock_guard<std::mutex> lock(mu_);
    return updates_.size();
  }
  std::vector<QueryUpdate> updates() {
    std::lock_guard<std::mutex> lock(mu_);
    return updates_;
  }
  QueryUpdate last() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!updates_.empty()) return updates_.back();
    QueryUpdate none;
    none.result = absl::NotFoundError("no update yet");
    return none;
  }
  Timestamp max_timestamp() {
    std::lock_guard<std::mutex> lock(mu_);
    Timestamp t = 0;
    for (const QueryUpdate& u : updates_) t = std::max(t, u.timestamp);
    return t;
  }
  std::vector<std::thread::id> threads() {
    std::lock_guard<std::mutex> lock(mu_);
    return threads_;
  }
  std::vector<std::string> problems() {
    std::lock_guard<std::mutex> lock(mu_);
    return problems_;
  }
  // Waits until at least n updates arrived.
  bool WaitForCount(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoNanoseconds(kTimeout),
                        [&] { return updates_.size() >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<QueryUpdate> updates_;
  std::vector<std::thread::id> threads_;
  std::vector<Document> mirror_;
  std::vector<std::string> problems_;
};

#define CHECK_NO_PROBLEMS(recorder)                                   \
  do {                                                                \
    const std::vector<std::string> problems_ = (recorder).problems(); \
    INFO(absl::StrJoin(problems_, "\n"));                             \
    CHECK(problems_.empty());                                         \
  } while (0)

// ---- database helpers ----

template <typename Fn>
Timestamp Commit(Database& db, Fn&& fn) {
  Timestamp t = 0;
  auto result = db.Mutate(std::forward<Fn>(fn), &t);
  REQUIRE_OK(result);
  return t;
}

Timestamp InsertItem(Database& db, const std::string& group, int64_t rank, DocumentId* id = nullptr,
                     const std::string& table = "items") {
  Timestamp t = 0;
  absl::StatusOr<DocumentId> inserted = db.Mutate(
      [&](Transaction& tx) {
        return tx.Insert(table, {{"group", group}, {"rank", Value::Int64(rank)}});
      },
      &t);
  REQUIRE_OK(inserted);
  if (id != nullptr) *id = *inserted;
  return t;
}

Timestamp PatchItem(Database& db, const DocumentId& id, Object fields) {
  return Commit(db, [&](Transaction& tx) { return tx.Patch(id, fields); });
}

Timestamp DeleteItem(Database& db, const DocumentId& id) {
  return Commit(db, [&](Transaction& tx) { return tx.Delete(id); });
}

// Waits until every update owed for the latest commit is delivered.
void Sync(Database& db) { REQUIRE_OK(db.WaitForDelivery(db.LastCommitTimestamp(), kTimeout)); }

// Syncs until callbacks stop committing: a chain reaction has settled.
void Settle(Database& db) {
  for (int i = 0; i < 100; ++i) {
    const Timestamp t = db.LastCommitTimestamp();
    REQUIRE_OK(db.WaitForDelivery(t, kTimeout));
    if (db.LastCommitTimestamp() == t) return;
  }
  FAIL("callbacks kept committing");
}

absl::StatusOr<std::vector<Document>> GroupQuery(Reader& r, const std::string& group,
                                                 const std::string& table = "items") {
  return r.Table(table).WithIndex("by_group", Eq("group", group)).Collect();
}

std::vector<Document> QueryGroup(Database& db, const std::string& group,
                                 const std::string& table = "items") {
  absl::StatusOr<std::vector<Document>> docs =
      db.Query([&](Reader& r) { return GroupQuery(r, group, table); });
  REQUIRE_OK(docs);
  return *docs;
}

std::vector<int64_t> Ranks(const std::vector<Document>& docs, std::string_view field = "rank") {
  std::vector<int64_t> ranks;
  for (const Document& d : docs) ranks.push_back(d[field].as_int64());
  return ranks;
}

bool Readable(int fd, int timeout_ms) {
  pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
  return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN) != 0;
}

// ============================================================================================
// 0. First updates
// ============================================================================================

TEST_CASE("first update: a subscription made while the notifier is idle gets its first update") {
  TempDir dir;
  Recorder a, b;
  auto db = OpenDb(dir);
  absl::StatusOr<Subscription> sub_a =
      db->Subscribe([](Reader& r) { return GroupQuery(r, "a"); }, a.Slot());
  REQUIRE_OK(sub_a);
  // A change of a's result: the notifier re-runs and delivers it, then has nothing left to do.
  REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "a", 1), kTimeout));
  REQUIRE(a.size() >= 1);
  CHECK(Ranks(a.last().documents()) == std::vector<int64_t>{1});
  // A new subscription, and no commit after it: its first update is still due.
  absl::StatusOr<Subscription> sub_b =
      db->Subscribe([](Reader& r) { return GroupQuery(r, "b"); }, b.Slot());
  REQUIRE_OK(sub_b);
  CHECK(b.WaitForCount(1));
  CHECK(db->WaitForDelivery(db->LastCommitTimestamp(), kTimeout).ok());
  CHECK(b.size() == 1);
}

// ============================================================================================
// 1. Precision
// ============================================================================================

TEST_CASE("precision: only writes inside what the query read re-run it") {
  TempDir dir;
  Recorder rec, table_rec;
  auto db = OpenDb(dir);
  std::atomic<int> runs{0}, table_runs{0};
  absl::StatusOr<Subscription> sub = db->Subscribe(
      [&runs](Reader& r) {
        ++runs;
        return r.Table("items").WithIndex("by_group", Eq("group", "a")).Take(3);
      },
      rec.Slot());
  REQUIRE_OK(sub);
  // A whole-table query (by_creation_time) of another table.
  absl::StatusOr<Subscription> table_sub = db->Subscribe(
      [&table_runs](Reader& r) {
        ++table_runs;
        return r.Table("other").Collect();
      },
      table_rec.Slot());
  REQUIRE_OK(table_sub);
  CHECK(runs == 1);  // ran now, on this thread
  CHECK(table_runs == 1);
  Sync(*db);
  REQUIRE(rec.size() == 1);
  REQUIRE(table_rec.size() == 1);

  // Runs `write` (which commits and returns its timestamp), waits for its delivery and returns
  // how many times the "a" query re-ran for it.
  auto reruns = [&](auto write) {
    const int before = runs;
    const Timestamp t = write();
    REQUIRE_OK(db->WaitForDelivery(t, kTimeout));
    return runs - before;
  };

  DocumentId b1, other1, a1, a2, a3, a10, a0;
  // Another index value, another table: no re-run of the "a" query.
  CHECK(reruns([&] { return InsertItem(*db, "b", 1, &b1); }) == 0);
  CHECK(reruns([&] { return InsertItem(*db, "a", 1, &other1, "other"); }) == 0);
  Sync(*db);
  CHECK(table_runs == 2);  // that one was the whole-table query's
  CHECK(table_rec.size() == 2);
  // Inside the range: exactly one re-run per commit, each delivered.
  CHECK(reruns([&] { return InsertItem(*db, "a", 1, &a1); }) == 1);
  CHECK(reruns([&] { return InsertItem(*db, "a", 2, &a2); }) == 1);
  CHECK(reruns([&] { return InsertItem(*db, "a", 3, &a3); }) == 1);
  CHECK(rec.size() == 4);
  CHECK(Ranks(rec.last().documents()) == std::vector<int64_t>{1, 2, 3});
  // Take(3) is full: a write beyond its last document was not read.
  CHECK(reruns([&] { return InsertItem(*db, "a", 10, &a10); }) == 0);
  CHECK(reruns([&] { return PatchItem(*db, a10, {{"note", "x"}}); }) == 0);
  // Before the limit: read.
  CHECK(reruns([&] { return InsertItem(*db, "a", 0, &a0); }) == 1);
  CHECK(Ranks(rec.last().documents()) == std::vector<int64_t>{0, 1, 2});
  // A non-indexed field of documents the query did not read: rank 3 (pushed past the limit), a
  // document of another group.
  CHECK(reruns([&] { return PatchItem(*db, a3, {{"note", "y"}}); }) == 0);
  CHECK(reruns([&] { return PatchItem(*db, b1, {{"note", "y"}}); }) == 0);
  // ... of one it read: re-run and delivered.
  const size_t delivered = rec.size();
  CHECK(reruns([&] { return PatchItem(*db, a1, {{"note", "z"}}); }) == 1);
  CHECK(rec.size() == delivered + 1);
  CHECK(rec.last().documents().at(1)["note"] == Value("z"));
  // A document moving into the group, but past the limit: neither old nor new key was read.
  CHECK(reruns([&] { return PatchItem(*db, b1, {{"group", "a"}, {"rank", 5}}); }) == 0);
  // Moving into the read part of the range: re-run.
  CHECK(reruns([&] { return PatchItem(*db, a10, {{"rank", -1}}); }) == 1);
  CHECK(Ranks(rec.last().documents()) == std::vector<int64_t>{-1, 0, 1});
  // Deleting a document it read: re-run.
  CHECK(reruns([&] { return DeleteItem(*db, a1); }) == 1);
  CHECK(Ranks(rec.last().documents()) == std::vector<int64_t>{-1, 0, 2});
  // One commit writing several documents in the range: one re-run.
  CHECK(reruns([&] {
          return Commit(*db, [&](Transaction& tx) -> absl::Status {
            for (int64_t rank : {-5, -4, -3}) {
              absl::StatusOr<DocumentId> id =
                  tx.Insert("items", {{"group", "a"}, {"rank", Value::Int64(rank)}});
              if (!id.ok()) return id.status();
            }
            return absl::OkStatus();
          });
        }) == 1);
  Sync(*db);
  CHECK(table_runs == 2);  // no write to "other" since
  absl::StatusOr<std::vector<Document>> now = db->Query(
      [](Reader& r) { return r.Table("items").WithIndex("by_group", Eq("group", "a")).Take(3); });
  REQUIRE_OK(now);
  CHECK(rec.last().documents() == *now);
  CHECK(Ranks(*now) == std::vector<int64_t>{-5, -4, -3});
  CHECK_NO_PROBLEMS(rec);
  CHECK_NO_PROBLEMS(table_rec);
}

TEST_CASE("precision: a point Get re-runs for its document only") {
  TempDir dir;
  Recorder rec;
  auto db = OpenDb(dir);
  DocumentId id1, id2;
  InsertItem(*db, "g", 1, &id1);
  InsertItem(*db, "g", 2, &id2);
  std::atomic<int> runs{0};
  absl::StatusOr<Subscription> sub = db->Subscribe(
      [&runs, id1](Reader& r) {
        ++runs;
        return r.Get(id1);
      },
      rec.Slot());
  REQUIRE_OK(sub);
  Sync(*db);
  REQUIRE(rec.size() == 1);
  REQUIRE(rec.last().documents().size() == 1);
  CHECK(rec.last().documents()[0].id() == id1);

  auto reruns = [&](auto write) {
    const int before = runs;
    const Timestamp t = write();
    REQUIRE_OK(db->WaitForDelivery(t, kTimeout));
    return runs - before;
  };
  CHECK(reruns([&] { return InsertItem(*db, "g", 3); }) == 0);
  CHECK(reruns([&] { return PatchItem(*db, id2, {{"note", "n"}}); }) == 0);
  CHECK(reruns([&] { return PatchItem(*db, id1, {{"note", "n"}}); }) == 1);
  CHECK(rec.size() == 2);
  CHECK(rec.last().documents().at(0)["note"] == Value("n"));
  CHECK(reruns([&] { return DeleteItem(*db, id2); }) == 0);
  CHECK(reruns([&] { return DeleteItem(*db, id1); }) == 1);
  REQUIRE(rec.size() == 3);
  REQUIRE_OK(rec.last().result);
  CHECK(rec.last().result->is_null());
  // A missing document's id stays read.
  CHECK(reruns([&] { return InsertItem(*db, "g", 4); }) == 0);
  CHECK(rec.size() == 3);
  CHECK_NO_PROBLEMS(rec);
}

TEST_CASE("precision: a Get of a document being inserted re-runs when the insert commits") {
  // The id exists only inside the inserting mutation: the mutation hands it to another thread,
  // which subscribes to Get(id) (reading the snapshot before the commit: null) while the
  // mutation waits; the commit must then re-run the subscription.
  TempDir dir;
  Recorder rec;
  auto db = OpenDb(dir);
  InsertItem(*db, "g", 0);
  std::atomic<int> runs{0};
  std::promise<DocumentId> id_promise;
  Gate subscribed;
  std::optional<absl::StatusOr<Subscription>> sub;
  std::thread subscriber([&] {
    const DocumentId id = id_promise.get_future().get();
    sub.emplace(db->Subscribe(
        [&runs, id](Reader& r) {
          ++runs;
          return r.Get(id);
        },
        rec.Slot()));
    subscribed.Open();
  });
  int attempts = 0;
  DocumentId inserted;
  Timestamp t = 0;
  const absl::Status status = db->Mutate(
      [&](Transaction& tx) -> absl::Status {
        if (++attempts > 1) return absl::AbortedError("the mutation was retried; cannot test");
        absl::StatusOr<DocumentId> id = tx.Insert("items", {{"group", "g"}, {"rank", 1}});
        if (!id.ok()) return id.status();
        inserted = *id;
        id_promise.set_value(*id);
        if (!subscribed.Wait()) return absl::DeadlineExceededError("Subscribe did not return");
        return absl::OkStatus();
      },
      &t);
  if (inserted.empty()) id_promise.set_value(DocumentId());  // let the subscriber finish
  subscriber.join();
  REQUIRE_OK(status);
  REQUIRE(sub.has_value());
  REQUIRE_OK(*sub);
  REQUIRE_OK(db->WaitForDelivery(t, kTimeout));
  CHECK(runs == 2);  // the first run (null) and the one for the insert
  const QueryUpdate last = rec.last();
  CHECK(last.timestamp >= t);
  REQUIRE(last.documents().size() == 1);
  CHECK(last.documents()[0].id() == inserted);
  CHECK_NO_PROBLEMS(rec);
}

TEST_CASE("precision: a filtered query re-runs for rejected documents but delivers no change") {
  TempDir dir;
  Recorder rec;
  auto db = OpenDb(dir);
  std::atomic<int> runs{0};
  absl::StatusOr<Subscription> sub = db->Subscribe(
      [&runs](Reader& r) {
        ++runs;
        return r.Table("items")
            .WithIndex("by_group", Eq("group", "f"))
            .Filter([](const Document& d) { return d["note"] == Value("keep"); })
            .Collect();
      },
      rec.Slot());
  REQUIRE_OK(sub);
  Sync(*db);
  REQUIRE(rec.size() == 1);

  auto reruns = [&](auto write) {
    const int before = runs;
    const Timestamp t = write();
    REQUIRE_OK(db->WaitForDelivery(t, kTimeout));
    return runs - before;
  };
  DocumentId dropped, kept;
  CHECK(reruns([&] {
          return Commit(*db, [&](Transaction& tx) -> absl::Status {
            absl::StatusOr<DocumentId> id =
                tx.Insert("items", {{"group", "f"}, {"rank", 1}, {"note", "drop"}});
            if (id.ok()) dropped = *id;
            return id.status();
          });
        }) == 1);
  CHECK(rec.size() == 1);  // filtered out: the result did not change
  CHECK(reruns([&] { return PatchItem(*db, dropped, {{"note", "drop too"}}); }) == 1);
  CHECK(rec.size() == 1);
  CHECK(reruns([&] {
          return Commit(*db, [&](Transaction& tx) -> absl::Status {
            absl::StatusOr<DocumentId> id =
                tx.Insert("items", {{"group", "f"}, {"rank", 2}, {"note", "keep"}});
            if (id.ok()) kept = *id;
            return id.status();
          });
        }) == 1);
  REQUIRE(rec.size() == 2);
  REQUIRE(rec.last().documents().size() == 1);
  CHECK(rec.last().documents()[0].id() == kept);
  CHECK(reruns([&] { return PatchItem(*db, dropped, {{"note", "keep"}}); }) == 1);
  REQUIRE(rec.size() == 3);
  CHECK(Ranks(rec.last().documents()) == std::vector<int64_t>{1, 2});
  CHECK(reruns([&] { return InsertItem(*db, "g", 1); }) == 0);
  CHECK_NO_PROBLEMS(rec);
}

// ============================================================================================
// 2. Coalescing
// ============================================================================================

TEST_CASE("coalescing: a burst of commits while the notifier is busy re-runs fewer times") {
  TempDir dir;
  Recorder rec;
  Gate entered, release;
  auto db = OpenDb(dir);
  std::atomic<int> runs{0}, calls{0};
  absl::StatusOr<Subscription> sub = db->Subscribe(
      [&runs](Reader& r) {
        ++runs;
        return GroupQuery(r, "c");
      },
      [&](const QueryUpdate& u) {
        rec.Add(u);
        if (++calls == 2) {
          entered.Open();
          (void)release.Wait();
        }
      });
  REQUIRE_OK(sub);
  OpenOnExit open_on_exit{release};
  Sync(*db);
  InsertItem(*db, "c", 0);
  REQUIRE(entered.Wait());  // the callback of that update holds the notifier now
  const int runs_blocked = runs;
  constexpr int kBurst = 40;
  Timestamp last = 0;
  for (int i = 1; i <= kBurst; ++i) last = InsertItem(*db, "c", i);
  release.Open();
  REQUIRE_OK(db->WaitForDelivery(last, kTimeout));
  const int reruns = runs - runs_blocked;
  INFO("re-runs for " << kBurst << " commits: " << reruns);
  CHECK(reruns >= 1);
  CHECK(reruns < kBurst / 2);
  CHECK(static_cast<int>(rec.size()) - 2 <= reruns);
  const QueryUpdate final_update = rec.last();
  CHECK(final_update.timestamp >= last);
  CHECK(final_update.documents() == QueryGroup(*db, "c"));
  CHECK(final_update.documents().size() == kBurst + 1);
  CHECK_NO_PROBLEMS(rec);
}

// ============================================================================================
// 3. Change sets
// ============================================================================================

TEST_CASE("change sets of an ordered query: insert, delete, patch in place, move") {
  TempDir dir;
  Recorder rec;
  auto db = OpenDb(dir);
  DocumentId d10, d20, d30, d15;
  Commit(*db, [&](Transaction& tx) -> absl::Status {
    for (auto [rank, id] : {std::pair{10, &d10}, std::pair{20, &d20}, std::pair{30, &d30}}) {
      absl::StatusOr<DocumentId> inserted = tx.Insert("items", {{"group", "o"}, {"rank", rank}});
      if (!inserted.ok()) return inserted.status();
      *id = *inserted;
    }
    return absl::OkStatus();
  });
  absl::StatusOr<Subscription> sub =
      db->Subscribe([](Reader& r) { return GroupQuery(r, "o"); }, rec.Slot());
  REQUIRE_OK(sub);
  Sync(*db);
  {
    const QueryUpdate u = rec.last();
    REQUIRE(rec.size() == 1);
    REQUIRE(u.changes.added.size() == 3);  // first update: everything added
    CHECK(u.changes.removed.empty());
    CHECK(u.changes.changed.empty());
    for (size_t i = 0; i < 3; ++i) {
      CHECK(u.changes.added[i].new_position == i);
      CHECK_FALSE(u.changes.added[i].old_position.has_value());
    }
    CHECK(u.changes.added[0].document.id() == d10);
  }
  SECTION("insert in the middle") {
    REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "o", 15, &d15), kTimeout));
    const QueryUpdate u = rec.last();
    REQUIRE(u.changes.added.size() == 1);
    CHECK(u.changes.added[0].new_position == 1u);
    CHECK(u.changes.added[0].document.id() == d15);
    CHECK(u.changes.removed.empty());
    CHECK(u.changes.changed.empty());  // shifted, not changed
  }
  SECTION("delete") {
    REQUIRE_OK(db->WaitForDelivery(DeleteItem(*db, d20), kTimeout));
    const QueryUpdate u = rec.last();
    REQUIRE(u.changes.removed.size() == 1);
    CHECK(u.changes.removed[0].old_position == 1u);
    CHECK_FALSE(u.changes.removed[0].new_position.has_value());
    CHECK(u.changes.removed[0].document.id() == d20);
    CHECK(u.changes.removed[0].document["rank"] == Value(20));
    CHECK(u.changes.added.empty());
    CHECK(u.changes.changed.empty());
  }
  SECTION("patch a non-key field: changed in place") {
    REQUIRE_OK(db->WaitForDelivery(PatchItem(*db, d20, {{"note", "n"}}), kTimeout));
    const QueryUpdate u = rec.last();
    REQUIRE(u.changes.changed.size() == 1);
    CHECK(u.changes.changed[0].old_position == 1u);
    CHECK(u.changes.changed[0].new_position == 1u);
    CHECK_FALSE(u.changes.changed[0].moved);
    CHECK(u.changes.changed[0].document["note"] == Value("n"));
    CHECK(u.changes.added.empty());
    CHECK(u.changes.removed.empty());
  }
  SECTION("patch the sort key: moved") {
    REQUIRE_OK(db->WaitForDelivery(PatchItem(*db, d10, {{"rank", 40}}), kTimeout));
    const QueryUpdate u = rec.last();
    CHECK(Ranks(u.documents()) == std::vector<int64_t>{20, 30, 40});
    REQUIRE(u.changes.changed.size() == 1);
    CHECK(u.changes.changed[0].document.id() == d10);
    CHECK(u.changes.changed[0].old_position == 0u);
    CHECK(u.changes.changed[0].new_position == 2u);
    CHECK(u.changes.changed[0].moved);
    CHECK(u.changes.added.empty());
    CHECK(u.changes.removed.empty());
  }
  SECTION("several changes in one commit") {
    REQUIRE_OK(db->WaitForDelivery(
        Commit(*db,
               [&](Transaction& tx) -> absl::Status {
                 if (auto s = tx.Delete(d20); !s.ok()) return s;
                 if (auto s = tx.Patch(d30, {{"rank", 5}}); !s.ok()) return s;
                 if (auto s = tx.Patch(d10, {{"note", "x"}}); !s.ok()) return s;
                 return tx.Insert("items", {{"group", "o"}, {"rank", 7}}).status();
               }),
        kTimeout));
    const QueryUpdate u = rec.last();
    CHECK(Ranks(u.documents()) == std::vector<int64_t>{5, 7, 10});
    CHECK(u.changes.added.size() == 1);
    CHECK(u.changes.removed.size() == 1);
    CHECK(u.changes.changed.size() == 2);
  }
  CHECK(rec.size() == 2);
  CHECK(rec.last().documents() == QueryGroup(*db, "o"));
  CHECK_NO_PROBLEMS(rec);  // every change set applied to the mirror gave the new result
}

TEST_CASE("change sets of a Get: object and null") {
  TempDir dir;
  Recorder rec;
  auto db = OpenDb(dir);
  DocumentId id;
  InsertItem(*db, "g", 1, &id);
  absl::StatusOr<Subscription> sub =
      db->Subscribe([id](Reader& r) { return r.Get(id); }, rec.Slot());
  REQUIRE_OK(sub);
  Sync(*db);
  {
    const QueryUpdate u = rec.last();
    REQUIRE_OK(u.result);
    CHECK(u.result->is_object());
    REQUIRE(u.changes.added.size() == 1);
    CHECK(u.changes.added[0].new_position == 0u);
    CHECK(u.changes.added[0].document.id() == id);
  }
  REQUIRE_OK(db->WaitForDelivery(PatchItem(*db, id, {{"note", "p"}}), kTimeout));
  {
    const QueryUpdate u = rec.last();
    REQUIRE(rec.size() == 2);
    REQUIRE(u.changes.changed.size() == 1);
    CHECK(u.changes.changed[0].old_position == 0u);
    CHECK(u.changes.changed[0].new_position == 0u);
    CHECK_FALSE(u.changes.changed[0].moved);
    CHECK(u.changes.changed[0].document["note"] == Value("p"));
    CHECK(u.changes.added.empty());
    CHECK(u.changes.removed.empty());
  }
  REQUIRE_OK(db->WaitForDelivery(DeleteItem(*db, id), kTimeout));
  {
    const QueryUpdate u = rec.last();
    REQUIRE(rec.size() == 3);
    REQUIRE_OK(u.result);
    CHECK(u.result->is_null());
    CHECK(u.documents().empty());
    CHECK(u.changes.is_document_result);
    REQUIRE(u.changes.removed.size() == 1);
    CHECK(u.changes.removed[0].old_position == 0u);
    CHECK(u.changes.removed[0].document.id() == id);
    CHECK(u.changes.removed[0].document["note"] == Value("p"));  // as it was
    CHECK(u.changes.added.empty());
    CHECK(u.changes.changed.empty());
  }
  CHECK_NO_PROBLEMS(rec);
}

TEST_CASE("change sets: a result that is not made of documents has none") {
  TempDir dir;
  Recorder rec;
  auto db = OpenDb(dir);
  absl::StatusOr<Subscription> sub = db->Subscribe(
      [](Reader& r) -> absl::StatusOr<Value> {
        absl::StatusOr<std::vector<Document>> docs = GroupQuery(r, "n");
        if (!docs.ok()) return docs.status();
        return Value(docs->size());
      },
      rec.Slot());
  REQUIRE_OK(sub);
  Sync(*db);
  REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "n", 1), kTimeout));
  const std::vector<QueryUpdate> updates = rec.updates();
  REQUIRE(updates.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    REQUIRE_OK(updates[i].result);
    CHECK(*updates[i].result == Value(i));
    CHECK_FALSE(updates[i].changes.is_document_result);
    CHECK(updates[i].changes.empty());
    CHECK(updates[i].documents().empty());
  }
}

TEST_CASE("change sets: an error is delivered once, and recovery diffs the last good result") {
  TempDir dir;
  Recorder rec;
  auto db = OpenDb(dir);
  DocumentId u1, u2, u3;
  InsertItem(*db, "u", 1, &u1);
  std::atomic<int> runs{0};
  absl::StatusOr<Subscription> sub = db->Subscribe(
      [&runs](Reader& r) {
        ++runs;
        return r.Table("items").WithIndex("by_group", Eq("group", "u")).Unique();
      },
      rec.Slot());
  REQUIRE_OK(sub);
  Sync(*db);
  REQUIRE(rec.size() == 1);
  REQUIRE(rec.last().documents().size() == 1);

  // A second match: Unique fails.
  REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "u", 2, &u2), kTimeout));
  REQUIRE(rec.size() == 2);
  {
    const QueryUpdate u = rec.last();
    CHECK(u.result.status().code() == absl::StatusCode::kFailedPrecondition);
    CHECK(u.changes.empty());
    CHECK(u.documents().empty());
  }
  // A third one past the first two: Unique read only two, so no re-run.
  int runs_before = runs;
  REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "u", 3, &u3), kTimeout));
  CHECK(runs == runs_before);
  // A change to one it read: it re-runs and fails the same way, which is not delivered again.
  runs_before = runs;
  REQUIRE_OK(db->WaitForDelivery(PatchItem(*db, u2, {{"note", "p"}}), kTimeout));
  CHECK(runs == runs_before + 1);
  CHECK(rec.size() == 2);
  // Recovery with another document than before the error: the change set is against the last
  // successful result (u1), not against nothing.
  REQUIRE_OK(db->WaitForDelivery(Commit(*db,
                                        [&](Transaction& tx) -> absl::Status {
                                          if (absl::Status s = tx.Delete(u1); !s.ok()) return s;
                                          return tx.Delete(u3);
                                        }),
                                 kTimeout));
  REQUIRE(rec.size() == 3);
  const QueryUpdate u = rec.last();
  REQUIRE_OK(u.result);
  REQUIRE(u.documents().size() == 1);
  CHECK(u.documents()[0].id() == u2);
  REQUIRE(u.changes.removed.size() == 1);
  CHECK(u.changes.removed[0].document.id() == u1);
  CHECK(u.changes.removed[0].old_position == 0u);
  REQUIRE(u.changes.added.size() == 1);
  CHECK(u.changes.added[0].document.id() == u2);
  CHECK(u.changes.added[0].new_position == 0u);
  CHECK_NO_PROBLEMS(rec);
}

// ============================================================================================
// 4. Callbacks that mutate, subscribe and unsubscribe
// ============================================================================================

TEST_CASE("callbacks: a mutation in a callback feeds other subscriptions until it settles") {
  TempDir dir;
  Recorder items_rec, log_rec, other_rec;
  std::mutex errors_mu;
  std::vector<std::string> errors;
  auto db = OpenDb(dir);
  Database* dbp = db.get();
  auto note_error = [&](const absl::Status& s) {
    if (s.ok()) return;
    std::lock_guard<std::mutex> lock(errors_mu);
    errors.push_back(s.ToString());
  };
  // items "m" -> log "m" (n = number of items) -> other "chain" (rank = n).
  absl::StatusOr<Subscription> items_sub =
      db->Subscribe([](Reader& r) { return GroupQuery(r, "m"); },
                    [&](const QueryUpdate& u) {
                      items_rec.Add(u);
                      const size_t n = u.documents().size();
                      if (n == 0) return;
                      note_error(dbp->Mutate([&](Transaction& tx) {
                                      return tx.Insert("log", {{"source", "m"}, {"n", n}});
                                    })
                                     .status());
                    });
  REQUIRE_OK(items_sub);
  absl::StatusOr<Subscription> log_sub = db->Subscribe(
      [](Reader& r) { return r.Table("log").WithIndex("by_source", Eq("source", "m")).Collect(); },
      [&](const QueryUpdate& u) {
        log_rec.Add(u);
        const std::vector<Document> docs = u.documents();
        if (docs.empty()) return;
        note_error(dbp->Mutate([&](Transaction& tx) {
                        return tx.Insert("other", {{"group", "chain"}, {"rank", docs.back()["n"]}});
                      })
                       .status());
      });
  REQUIRE_OK(log_sub);
  absl::StatusOr<Subscription> other_sub =
      db->Subscribe([](Reader& r) { return GroupQuery(r, "chain", "other"); }, other_rec.Slot());
  REQUIRE_OK(other_sub);
  Settle(*db);
  for (int k = 1; k <= 3; ++k) {
    InsertItem(*db, "m", k);
    Settle(*db);
    std::vector<int64_t> expected;
    for (int i = 1; i <= k; ++i) expected.push_back(i);
    CHECK(Ranks(log_rec.last().documents(), "n") == expected);
    CHECK(Ranks(other_rec.last().documents()) == expected);
  }
  absl::StatusOr<std::vector<Document>> log_now = db->Query(
      [](Reader& r) { return r.Table("log").WithIndex("by_source", Eq("source", "m")).Collect(); });
  REQUIRE_OK(log_now);
  CHECK(log_rec.last().documents() == *log_now);
  CHECK(other_rec.last().documents() == QueryGroup(*db, "chain", "other"));
  std::lock_guard<std::mutex> lock(errors_mu);
  INFO(absl::StrJoin(errors, "\n"));
  CHECK(errors.empty());
  CHECK_NO_PROBLEMS(items_rec);
  CHECK_NO_PROBLEMS(log_rec);
  CHECK_NO_PROBLEMS(other_rec);
}

TEST_CASE("callbacks: a subscription made in a callback gets its first update") {
  TempDir dir;
  Recorder outer_rec, inner_rec;
  auto db = OpenDb(dir);
  Database* dbp = db.get();
  std::mutex mu;
  std::optional<absl::StatusOr<Subscription>> inner;
  std::atomic<int> calls{0};
  absl::StatusOr<Subscription> outer =
      db->Subscribe([](Reader& r) { return GroupQuery(r, "s"); },
                    [&](const QueryUpdate& u) {
                      outer_rec.Add(u);
                      if (++calls != 2) return;
                      absl::StatusOr<Subscription> made = dbp->Subscribe(
                          [](Reader& r) { return GroupQuery(r, "s"); }, inner_rec.Slot());
                      std::lock_guard<std::mutex> lock(mu);
                      inner.emplace(std::move(made));
                    });
  REQUIRE_OK(outer);
  Sync(*db);
  InsertItem(*db, "s", 1);
  Settle(*db);  // the outer update, and the first update of the one made in its callback
  {
    std::lock_guard<std::mutex> lock(mu);
    REQUIRE(inner.has_value());
    REQUIRE_OK(*inner);
    CHECK((*inner)->active());
  }
  REQUIRE(inner_rec.size() == 1);
  CHECK(Ranks(inner_rec.last().documents()) == std::vector<int64_t>{1});
  CHECK(inner_rec.last().changes.added.size() == 1);
  // And it lives on.
  REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "s", 2), kTimeout));
  CHECK(inner_rec.size() == 2);
  CHECK(Ranks(inner_rec.last().documents()) == std::vector<int64_t>{1, 2});
  CHECK(outer_rec.size() == 3);
  CHECK_NO_PROBLEMS(inner_rec);
  CHECK_NO_PROBLEMS(outer_rec);
}

TEST_CASE("callbacks: a callback unsubscribes its own subscription") {
  TempDir dir;
  std::atomic<int> calls{0};
  std::atomic<bool> active_after{true};
  auto db = OpenDb(dir);
  Subscription self;
  absl::StatusOr<Subscription> made = db->Subscribe(
      [](Reader& r) { return GroupQuery(r, "x"); },
      [&](const QueryUpdate&) {
        if (++calls == 2) {
          self.Unsubscribe();  // `self` is set before the commit that causes this update
          active_after = self.active();
        }
      });
  REQUIRE_OK(made);
  self = *std::move(made);
  Sync(*db);
  CHECK(calls == 1);
  REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "x", 1), kTimeout));
  CHECK(calls == 2);
  // A sentinel on the same range, so that WaitForDelivery covers the notifier's work for it
  // (and, delivered after it, the end of the callback that unsubscribed: see the next test).
  std::atomic<int> sentinel_calls{0};
  absl::StatusOr<Subscription> sentinel = db->Subscribe(
      [](Reader& r) { return GroupQuery(r, "x"); }, [&](const QueryUpdate&) { ++sentinel_calls; });
  REQUIRE_OK(sentinel);
  Sync(*db);
  CHECK_FALSE(active_after);
  CHECK_FALSE(self.active());
  for (int i = 2; i <= 4; ++i) REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "x", i), kTimeout));
  CHECK(sentinel_calls == 4);
  CHECK(calls == 2);
}

TEST_CASE("callbacks: WaitForDelivery waits for a callback that unsubscribed itself to return") {
  // A host reads what its callback wrote once WaitForDelivery returns; a callback that
  // unsubscribes itself and goes on writing must not race with that.
  TempDir dir;
  Gate entered, release;
  std::atomic<int> calls{0};
  auto db = OpenDb(dir);
  Subscription self;
  absl::StatusOr<Subscription> made = db->Subscribe([](Reader& r) { return GroupQuery(r, "v"); },
                                                    [&](const QueryUpdate&) {
                                                      if (++calls != 2) return;
                                                      self.Unsubscribe();
                                                      entered.Open();
                                                      (void)release.Wait();
                                                    });
  REQUIRE_OK(made);
  self = *std::move(made);
  OpenOnExit open_on_exit{release};
  Sync(*db);
  const Timestamp t = InsertItem(*db, "v", 1);
  REQUIRE(entered.Wait());
  // The callback of the update for t has not returned.
  CHECK_ERROR(db->WaitForDelivery(t, absl::Milliseconds(50)), absl::StatusCode::kDeadlineExceeded);
  release.Open();
  REQUIRE_OK(db->WaitForDelivery(t, kTimeout));
  CHECK(calls == 2);
}

TEST_CASE("callbacks: a callback unsubscribes another subscription") {
  TempDir dir;
  std::atomic<int> x_calls{0}, y_calls{0}, late_y{0};
  std::atomic<bool> y_stopped{false};
  auto db = OpenDb(dir);
  Subscription y;
  absl::StatusOr<Subscription> x = db->Subscribe([](Reader& r) { return GroupQuery(r, "y"); },
                                                 [&](const QueryUpdate&) {
                                                   if (++x_calls == 2) {
                                                     y.Unsubscribe();
                                                     y_stopped = true;
                                                   }
                                                 });
  REQUIRE_OK(x);
  absl::StatusOr<Subscription> made = db->Subscribe([](Reader& r) { return GroupQuery(r, "y"); },
                                                    [&](const QueryUpdate&) {
                                                      if (y_stopped) ++late_y;
                                                      ++y_calls;
                                                    });
  REQUIRE_OK(made);
  y = *std::move(made);
  Sync(*db);
  CHECK(y_calls == 1);
  REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "y", 1), kTimeout));
  CHECK(x_calls == 2);
  CHECK(y_stopped);
  CHECK_FALSE(y.active());
  const int y_after = y_calls;
  CHECK(y_after <= 2);  // it may have had this update before x's callback ran
  for (int i = 2; i <= 4; ++i) REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "y", i), kTimeout));
  CHECK(x_calls == 5);
  CHECK(y_calls == y_after);
  CHECK(late_y == 0);
}

TEST_CASE("callbacks: exceptions from a query or a callback do not stop subscriptions") {
  TempDir dir;
  Recorder rec;
  std::atomic<int> throwing_calls{0};
  auto db = OpenDb(dir);
  absl::StatusOr<Subscription> sub = db->Subscribe(
      [](Reader& r) -> absl::StatusOr<std::vector<Document>> {
        absl::StatusOr<std::vector<Document>> docs = GroupQuery(r, "ex");
        if (docs.ok()) {
          for (const Document& d : *docs) {
            if (d["note"] == Value("boom")) throw std::runtime_error("boom in the query");
          }
        }
        return docs;
      },
      rec.Slot());
  REQUIRE_OK(sub);
  absl::StatusOr<Subscription> thrower =
      db->Subscribe([](Reader& r) { return GroupQuery(r, "ex"); },
                    [&](const QueryUpdate&) {
                      ++throwing_calls;
                      throw std::runtime_error("boom in the callback");
                    });
  REQUIRE_OK(thrower);
  Sync(*db);
  CHECK(rec.size() == 1);
  CHECK(throwing_calls == 1);
  DocumentId id;
  REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "ex", 1, &id), kTimeout));
  CHECK(rec.size() == 2);
  CHECK(throwing_calls == 2);
  REQUIRE_OK(db->WaitForDelivery(PatchItem(*db, id, {{"note", "boom"}}), kTimeout));
  REQUIRE(rec.size() == 3);
  CHECK_ERROR(rec.last().result, absl::StatusCode::kUnknown, "boom in the query");
  CHECK(throwing_calls == 3);
  REQUIRE_OK(db->WaitForDelivery(PatchItem(*db, id, {{"note", "fine"}}), kTimeout));
  REQUIRE(rec.size() == 4);
  REQUIRE_OK(rec.last().result);
  CHECK(rec.last().documents().at(0)["note"] == Value("fine"));
  CHECK(throwing_calls == 4);
  CHECK(thrower->active());
  CHECK_NO_PROBLEMS(rec);
}

// ============================================================================================
// 5. Boost.Signals2 slots
// ============================================================================================

TEST_CASE("signals2: several slots, disconnecting one, and a tracked slot") {
  TempDir dir;
  std::atomic<int> a{0}, b{0}, c{0}, tracked{0};
  auto db = OpenDb(dir);
  absl::StatusOr<Subscription> sub =
      db->Subscribe([](Reader& r) { return GroupQuery(r, "q"); }, [&](const QueryUpdate&) { ++a; });
  REQUIRE_OK(sub);
  Sync(*db);
  REQUIRE(a == 1);
  boost::signals2::connection cb = sub->Connect([&](const QueryUpdate&) { ++b; });
  boost::signals2::connection cc = sub->Connect([&](const QueryUpdate&) { ++c; });
  CHECK(cb.connected());
  CHECK(cc.connected());
  REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "q", 1), kTimeout));
  CHECK(a == 2);
  CHECK(b == 1);  // connected after the first update: only later ones
  CHECK(c == 1);
  cb.disconnect();
  CHECK_FALSE(cb.connected());
  REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "q", 2), kTimeout));
  CHECK(a == 3);
  CHECK(b == 1);
  CHECK(c == 2);
  CHECK(sub->active());

  auto owner = std::make_shared<int>(1);
  boost::signals2::connection ct = sub->Connect(
      UpdateSlot([&](const QueryUpdate&) { ++tracked; }).track_foreign(std::weak_ptr<int>(owner)));
  CHECK(ct.connected());
  REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "q", 3), kTimeout));
  CHECK(tracked == 1);
  owner.reset();
  REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "q", 4), kTimeout));
  CHECK(tracked == 1);
  CHECK(a == 5);
  CHECK(c == 4);
  CHECK_FALSE(ct.connected());
}

// ============================================================================================
// 6. Unsubscribe semantics
// ============================================================================================

enum class Stop { kUnsubscribe, kDestroy, kMoveAssign };

// While a writer keeps committing into its range, the subscription is stopped; a callback that
// starts or is still running after that returned is a bug.
void CheckNoCallbackAfterStop(Stop how) {
  TempDir dir;
  Recorder sentinel_rec, replacement_rec;
  Gate warmed_up;
  std::atomic<bool> stopped{false}, stop_writer{false};
  std::atomic<int> late{0}, calls{0}, writer_errors{0}, commits_after{0};
  auto db = OpenDb(dir);
  absl::StatusOr<Subscription> sentinel =
      db->Subscribe([](Reader& r) { return GroupQuery(r, "w"); }, sentinel_rec.Slot());
  REQUIRE_OK(sentinel);
  absl::StatusOr<Subscription> replacement =
      db->Subscribe([](Reader& r) { return GroupQuery(r, "z"); }, replacement_rec.Slot());
  REQUIRE_OK(replacement);
  absl::StatusOr<Subscription> made = db->Subscribe([](Reader& r) { return GroupQuery(r, "w"); },
                                                    [&](const QueryUpdate&) {
                                                      if (stopped) ++late;
                                                      if (++calls == 3) warmed_up.Open();
                                                      std::this_thread::yield();
                                                      if (stopped) ++late;
                                                    });
  REQUIRE_OK(made);
  std::optional<Subscription> sub(*std::move(made));
  CHECK(sub->active());
  std::thread writer([&] {
    for (int i = 0; !stop_writer; ++i) {
      absl::Status s = db->Mutate([&](Transaction& tx) {
                           return tx.Insert("items", {{"group", "w"}, {"rank", i}});
                         }).status();
      if (!s.ok()) ++writer_errors;
      if (stopped) ++commits_after;
    }
  });
  const bool warm = warmed_up.Wait();
  switch (how) {
    case Stop::kUnsubscribe:
      sub->Unsubscribe();
      break;
    case Stop::kDestroy:
      sub.reset();
      break;
    case Stop::kMoveAssign:
      *sub = *std::move(replacement);
      break;
  }
  stopped = true;
  // Let more commits come in, then stop the writer.
  const bool more_commits =
      stagedb::testing::PollUntil([&] { return commits_after >= 10 || writer_errors > 0; });
  stop_writer = true;
  writer.join();
  REQUIRE(warm);
  REQUIRE(more_commits);
  REQUIRE(writer_errors == 0);
  Sync(*db);  // the sentinel shares the range: the notifier has done the work of every commit
  CHECK(late == 0);
  CHECK(sentinel_rec.last().documents() == QueryGroup(*db, "w"));
  switch (how) {
    case Stop::kUnsubscribe:
      CHECK_FALSE(sub->active());
      sub->Unsubscribe();  // idempotent
      CHECK_FALSE(sub->active());
      break;
    case Stop::kDestroy:
      break;
    case Stop::kMoveAssign: {
      // The handle now holds the other subscription, which is live; the moved-from one is inert.
      CHECK(sub->active());
      CHECK_FALSE(replacement->active());
      replacement->Unsubscribe();
      CHECK_FALSE(replacement->Connect([](const QueryUpdate&) {}).connected());
      CHECK(sub->active());
      const size_t before = replacement_rec.size();
      REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "z", 1), kTimeout));
      CHECK(replacement_rec.size() == before + 1);
      break;
    }
  }
  CHECK(late == 0);
}

TEST_CASE("unsubscribe: no callback after Unsubscribe returns") {
  CheckNoCallbackAfterStop(Stop::kUnsubscribe);
}

TEST_CASE("unsubscribe: no callback after the handle is destroyed") {
  CheckNoCallbackAfterStop(Stop::kDestroy);
}

TEST_CASE("unsubscribe: no callback after a handle is move-assigned over") {
  CheckNoCallbackAfterStop(Stop::kMoveAssign);
}

TEST_CASE("unsubscribe: from another thread it waits for the running callback") {
  TempDir dir;
  Gate entered;
  std::atomic<bool> exited{false}, saw_unsubscribe{false};
  std::atomic<int> calls{0};
  auto db = OpenDb(dir);
  std::optional<absl::StatusOr<Subscription>> sub;
  sub.emplace(db->Subscribe([](Reader& r) { return GroupQuery(r, "t"); },
                            [&](const QueryUpdate&) {
                              if (++calls != 2) return;
                              entered.Open();
                              // Still running once Unsubscribe has begun (the subscription is
                              // inactive then), however the threads are scheduled.
                              saw_unsubscribe =
                                  stagedb::testing::PollUntil([&] { return !(*sub)->active(); });
                              exited = true;
                            }));
  REQUIRE_OK(*sub);
  Sync(*db);
  InsertItem(*db, "t", 1);
  REQUIRE(entered.Wait());
  (*sub)->Unsubscribe();
  CHECK(saw_unsubscribe);
  CHECK(exited);
  CHECK_FALSE((*sub)->active());
  InsertItem(*db, "t", 2);
  Sync(*db);
  CHECK(calls == 2);
}

TEST_CASE("unsubscribe: active() and inert handles") {
  TempDir dir;
  Recorder rec;
  auto db = OpenDb(dir);
  Subscription empty;
  CHECK_FALSE(empty.active());
  empty.Unsubscribe();
  CHECK_FALSE(empty.Connect([](const QueryUpdate&) {}).connected());

  absl::StatusOr<Subscription> made =
      db->Subscribe([](Reader& r) { return GroupQuery(r, "h"); }, rec.Slot());
  REQUIRE_OK(made);
  Subscription sub = *std::move(made);
  CHECK(sub.active());
  Subscription moved(std::move(sub));
  CHECK(moved.active());
  CHECK_FALSE(sub.active());  // NOLINT(bugprone-use-after-move): moved-from is inert
  sub.Unsubscribe();          // does nothing to `moved`
  CHECK_FALSE(sub.Connect([](const QueryUpdate&) {}).connected());
  CHECK(moved.active());
  Sync(*db);
  REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "h", 1), kTimeout));
  CHECK(rec.size() == 2);
  moved.Unsubscribe();
  CHECK_FALSE(moved.active());
  moved.Unsubscribe();
  CHECK_FALSE(moved.Connect([](const QueryUpdate&) {}).connected());
}

// ============================================================================================
// 7. Shutdown
// ============================================================================================

TEST_CASE("shutdown: destroying the database stops subscriptions; handles outlive it") {
  TempDir dir;
  Gate entered;
  std::atomic<bool> closed{false}, exited{false}, saw_close{false};
  std::atomic<int> late{0}, in_callback{0}, in_query{0}, calls{0};
  std::vector<Subscription> subs;
  auto db = OpenDb(dir);
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<Subscription> sub = db->Subscribe(
        [&](Reader& r) {
          ++in_query;
          if (closed) ++late;
          auto result = GroupQuery(r, "d");
          --in_query;
          return result;
        },
        [&, i](const QueryUpdate& u) {
          ++in_callback;
          if (closed) ++late;
          ++calls;
          // The first subscription's first change is still running once the database has
          // begun closing (its subscriptions are inactive then), however threads are scheduled.
          if (i == 0 && !u.documents().empty() && !entered.is_open()) {
            entered.Open();
            saw_close = stagedb::testing::PollUntil([&] { return !subs[0].active(); });
            exited = true;
          }
          if (closed) ++late;
          --in_callback;
        });
    REQUIRE_OK(sub);
    subs.push_back(*std::move(sub));
  }
  Sync(*db);
  InsertItem(*db, "d", 0);
  REQUIRE(entered.Wait());
  for (int i = 1; i <= 10; ++i) InsertItem(*db, "d", i);  // pending work
  db.reset();
  closed = true;
  CHECK(saw_close);
  CHECK(exited);  // the destructor waited for the running callback
  CHECK(in_callback == 0);
  CHECK(in_query == 0);
  const int calls_at_close = calls;
  for (Subscription& sub : subs) {
    CHECK_FALSE(sub.active());
    CHECK_FALSE(sub.Connect([](const QueryUpdate&) {}).connected());
  }
  subs[0].Unsubscribe();
  subs[0].Unsubscribe();
  CHECK_FALSE(subs[0].active());
  subs.clear();  // destroying handles of a closed database
  CHECK(late == 0);
  CHECK(calls == calls_at_close);
}

TEST_CASE("shutdown: a manual-delivery database closes with updates queued") {
  TempDir dir;
  std::atomic<int> calls{0};
  std::optional<Subscription> sub;
  auto db = OpenDb(dir, Delivery::kManual);
  absl::StatusOr<Subscription> made = db->Subscribe([](Reader& r) { return GroupQuery(r, "d"); },
                                                    [&](const QueryUpdate&) { ++calls; });
  REQUIRE_OK(made);
  sub.emplace(*std::move(made));
  InsertItem(*db, "d", 1);
  CHECK(db->WaitForPending(kTimeout));
  db.reset();
  CHECK(calls == 0);
  CHECK_FALSE(sub->active());
  sub.reset();
  CHECK(calls == 0);
}

// ============================================================================================
// 8. Delivery::kManual
// ============================================================================================

TEST_CASE("manual delivery: only in DeliverPending or WaitForDelivery, on the calling thread") {
  TempDir dir;
  Recorder rec, rec2;
  auto db = OpenDb(dir, Delivery::kManual);
  const std::thread::id self = std::this_thread::get_id();
  const int fd = db->DeliveryFd();
  REQUIRE(fd >= 0);
  CHECK_FALSE(Readable(fd, 0));
  CHECK(db->DeliverPending() == 0);

  absl::StatusOr<Subscription> sub =
      db->Subscribe([](Reader& r) { return GroupQuery(r, "k"); }, rec.Slot());
  REQUIRE_OK(sub);
  REQUIRE(db->WaitForPending(kTimeout));
  CHECK(rec.size() == 0);
  CHECK(Readable(fd, 10'000));
  CHECK(rec.size() == 0);
  CHECK(db->DeliverPending() == 1);
  REQUIRE(rec.size() == 1);
  CHECK_FALSE(Readable(fd, 0));  // drained
  CHECK(db->DeliverPending() == 0);

  // A commit outside the range queues nothing; one inside queues one update.
  InsertItem(*db, "other", 1);
  const Timestamp t1 = InsertItem(*db, "k", 1);
  REQUIRE(db->WaitForPending(kTimeout));
  CHECK(rec.size() == 1);
  CHECK(Readable(fd, 10'000));
  CHECK(db->DeliverPending() == 1);
  REQUIRE(rec.size() == 2);
  CHECK(rec.last().timestamp >= t1);
  CHECK(Ranks(rec.last().documents()) == std::vector<int64_t>{1});
  CHECK_FALSE(Readable(fd, 0));

  // WaitForDelivery delivers on the calling thread.
  const Timestamp t2 = InsertItem(*db, "k", 2);
  REQUIRE_OK(db->WaitForDelivery(t2, kTimeout));
  REQUIRE(rec.size() == 3);
  CHECK(rec.last().timestamp >= t2);
  CHECK(Ranks(rec.last().documents()) == std::vector<int64_t>{1, 2});
  // The descriptor may be left readable (nothing is queued): DeliverPending drains it.
  if (Readable(fd, 0)) CHECK(db->DeliverPending() == 0);
  CHECK_FALSE(Readable(fd, 0));

  // Two subscriptions: DeliverPending counts what it delivered.
  absl::StatusOr<Subscription> sub2 =
      db->Subscribe([](Reader& r) { return GroupQuery(r, "k"); }, rec2.Slot());
  REQUIRE_OK(sub2);
  REQUIRE(db->WaitForPending(kTimeout));
  CHECK(db->DeliverPending() == 1);
  CHECK(rec2.size() == 1);
  InsertItem(*db, "k", 3);
  size_t delivered = 0;
  while (delivered < 2 && db->WaitForPending(kTimeout)) delivered += db->DeliverPending();
  CHECK(delivered == 2);
  CHECK(rec.size() == 4);
  CHECK(rec2.size() == 2);

  for (const std::thread::id& id : rec.threads()) CHECK(id == self);
  for (const std::thread::id& id : rec2.threads()) CHECK(id == self);
  CHECK_NO_PROBLEMS(rec);
  CHECK_NO_PROBLEMS(rec2);
}

TEST_CASE("manual delivery: the notifier-thread mode has no descriptor and nothing to deliver") {
  TempDir dir;
  auto db = OpenDb(dir);
  CHECK(db->DeliveryFd() == -1);
  CHECK(db->DeliverPending() == 0);
}

// ============================================================================================
// 9. WaitForDelivery
// ============================================================================================

TEST_CASE("WaitForDelivery: read your writes") {
  TempDir dir;
  Recorder rec;
  auto db = OpenDb(dir);
  absl::StatusOr<Subscription> sub =
      db->Subscribe([](Reader& r) { return GroupQuery(r, "r"); }, rec.Slot());
  REQUIRE_OK(sub);
  std::vector<DocumentId> ids;
  for (int i = 0; i < 20; ++i) {
    Timestamp t = 0;
    if (i % 4 == 3) {
      t = PatchItem(*db, ids[i / 2], {{"note", absl::StrCat("n", i)}});
    } else if (i % 7 == 6) {
      t = DeleteItem(*db, ids.front());
      ids.erase(ids.begin());
    } else {
      ids.emplace_back();
      t = InsertItem(*db, "r", i, &ids.back());
    }
    REQUIRE_OK(db->WaitForDelivery(t, kTimeout));
    const QueryUpdate last = rec.last();
    CHECK(last.timestamp >= t);
    CHECK(last.documents() == QueryGroup(*db, "r"));
  }
  CHECK_NO_PROBLEMS(rec);
}

TEST_CASE("WaitForDelivery: from inside a callback it is FailedPrecondition") {
  for (Delivery delivery : {Delivery::kNotifierThread, Delivery::kManual}) {
    INFO("delivery " << static_cast<int>(delivery));
    TempDir dir;
    std::mutex mu;
    std::vector<absl::Status> statuses;
    auto db = OpenDb(dir, delivery);
    Database* dbp = db.get();
    absl::StatusOr<Subscription> sub =
        db->Subscribe([](Reader& r) { return GroupQuery(r, "i"); },
                      [&](const QueryUpdate&) {
                        absl::Status s = dbp->WaitForDelivery(dbp->LastCommitTimestamp(),
                                                              absl::Milliseconds(100));
                        std::lock_guard<std::mutex> lock(mu);
                        statuses.push_back(s);
                      });
    REQUIRE_OK(sub);
    REQUIRE_OK(db->WaitForDelivery(InsertItem(*db, "i", 1), kTimeout));
    std::lock_guard<std::mutex> lock(mu);
    REQUIRE(!statuses.empty());
    for (const absl::Status& s : statuses) {
      CHECK_ERROR(s, absl::StatusCode::kFailedPrecondition, "callback");
    }
  }
}

TEST_CASE("WaitForDelivery: DeadlineExceeded while a callback holds the update") {
  TempDir dir;
  Gate entered, release;
  std::atomic<int> calls{0};
  auto db = OpenDb(dir);
  absl::StatusOr<Subscription> sub = db->Subscribe([](Reader& r) { return GroupQuery(r, "l"); },
                                                   [&](const QueryUpdate&) {
                                                     if (++calls == 2) {
                                                       entered.Open();
                                                       (void)release.Wait();
                                                     }
                                                   });
  REQUIRE_OK(sub);
  OpenOnExit open_on_exit{release};
  Sync(*db);
  const Timestamp t = InsertItem(*db, "l", 1);
  REQUIRE(entered.Wait());
  CHECK_ERROR(db->WaitForDelivery(t, absl::Milliseconds(50)), absl::StatusCode::kDeadlineExceeded);
  release.Open();
  REQUIRE_OK(db->WaitForDelivery(t, kTimeout));
  CHECK(calls == 2);
}

TEST_CASE("WaitForDelivery: waits for the first update of earlier subscriptions") {
  // "... and every subscription made before the call has had its first update delivered":
  // whatever the timestamp, here one older than the subscription's snapshot.
  TempDir dir;
  Gate entered, release;
  std::atomic<int> calls{0};
  auto db = OpenDb(dir);
  const Timestamp t1 = InsertItem(*db, "e", 1);
  InsertItem(*db, "e", 2);
  InsertItem(*db, "e", 3);
  absl::StatusOr<Subscription> sub = db->Subscribe([](Reader& r) { return GroupQuery(r, "e"); },
                                                   [&](const QueryUpdate&) {
                                                     if (++calls == 1) {
                                                       entered.Open();
                                                       (void)release.Wait();
                                                     }
                                                   });
  REQUIRE_OK(sub);
  OpenOnExit open_on_exit{release};
  REQUIRE(entered.Wait());
  // The first update's callback has not returned: it has not been delivered.
  CHECK_ERROR(db->WaitForDelivery(t1, absl::Milliseconds(50)), absl::StatusCode::kDeadlineExceeded);
  release.Open();
  REQUIRE_OK(db->WaitForDelivery(t1, kTimeout));
  CHECK(calls == 1);
}

// ============================================================================================
// 10. Timestamp order under concurrent writers
// ============================================================================================

// Groups and their ranks in a result of a query over several groups.
std::map<std::string, std::vector<int64_t>> ByGroup(const std::vector<Document>& docs) {
  std::map<std::string, std::vector<int64_t>> groups;
  for (const Document& d : docs) groups[d["group"].as_string()].push_back(d["rank"].as_int64());
  return groups;
}

// `kWriters` threads commit at once into ranges two subscriptions watch, each waiting for the
// delivery of its every commit (read your writes). Checks each subscription's updates: in
// timestamp order, consistent snapshots, never going back, and the last one current.
void CheckConcurrentWriters(const int kWriters, const int kCommits) {
  constexpr int kBallast = 300;
  TempDir dir;
  Recorder rec1, rec2;
  std::mutex violations_mu;
  std::vector<std::string> violations;
  auto db = OpenDb(dir);
  // Writer i owns one document of group "w<i>" and moves it to rank 1, 2, 3, ... (a patch of an
  // index key: its old and new entry change in one commit). Any snapshot holds each group's
  // document exactly once, and a later snapshot a rank at least as high. rec1 watches w0 and w1,
  // rec2 w1 and above.
  std::vector<DocumentId> docs(kWriters);
  for (int w = 0; w < kWriters; ++w) InsertItem(*db, absl::StrCat("w", w), 0, &docs[w]);
  // Each query also reads a ballast of documents nobody writes, so that a run takes a while and
  // commits keep arriving while the notifier is busy.
  Commit(*db, [](Transaction& tx) -> absl::Status {
    for (int i = 0; i < kBallast; ++i) {
      absl::StatusOr<DocumentId> id = tx.Insert("other", {{"group", "ballast"}, {"rank", i}});
      if (!id.ok()) return id.status();
    }
    return absl::OkStatus();
  });
  auto q1 = [](Reader& r) -> absl::StatusOr<std::vector<Document>> {
    if (absl::StatusOr<std::vector<Document>> ballast = GroupQuery(r, "ballast", "other");
        !ballast.ok()) {
      return ballast.status();
    }
    return r.Table("items").WithIndex("by_group", Gte("group", "w0").Lt("group", "w2")).Collect();
  };
  auto q2 = [](Reader& r) -> absl::StatusOr<std::vector<Document>> {
    if (absl::StatusOr<std::vector<Document>> ballast = GroupQuery(r, "ballast", "other");
        !ballast.ok()) {
      return ballast.status();
    }
    return r.Table("items").WithIndex("by_group", Gte("group", "w1").Lt("group", "x")).Collect();
  };
  absl::StatusOr<Subscription> s1 = db->Subscribe(q1, rec1.Slot());
  REQUIRE_OK(s1);
  absl::StatusOr<Subscription> s2 = db->Subscribe(q2, rec2.Slot());
  REQUIRE_OK(s2);
  Sync(*db);
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 1; i <= kCommits; ++i) {
        Timestamp t = 0;
        absl::Status s = db->Mutate(
            [&](Transaction& tx) {
              return tx.Patch(docs[w], {{"rank", i}});
            },
            &t);
        if (s.ok()) s = db->WaitForDelivery(t, kTimeout);
        std::lock_guard<std::mutex> lock(violations_mu);
        if (!s.ok()) {
          violations.push_back(absl::StrCat("w", w, " #", i, ": ", s.ToString()));
          return;
        }
        // Read your writes, with other writers committing at once.
        if (w <= 1 && rec1.max_timestamp() < t) {
          violations.push_back(absl::StrCat("WaitForDelivery(", t, ") returned but subscription 1 ",
                                            "was delivered only up to ", rec1.max_timestamp()));
        }
        if (w >= 1 && rec2.max_timestamp() < t) {
          violations.push_back(absl::StrCat("WaitForDelivery(", t, ") returned but subscription 2 ",
                                            "was delivered only up to ", rec2.max_timestamp()));
        }
      }
    });
  }
  for (std::thread& writer : writers) writer.join();
  Sync(*db);
  {
    std::lock_guard<std::mutex> lock(violations_mu);
    INFO(violations.size() << " violation(s):\n" << absl::StrJoin(violations, "\n"));
    CHECK(violations.empty());
  }
  int which = 0;
  for (auto [rec, query] : {std::pair{&rec1, +q1}, std::pair{&rec2, +q2}}) {
    ++which;
    INFO("subscription " << which);
    const std::vector<QueryUpdate> updates = rec->updates();
    REQUIRE(!updates.empty());
    const size_t groups = which == 1 ? 2 : kWriters - 1;
    std::map<std::string, int64_t> previous;
    std::vector<std::string> problems;
    for (size_t i = 0; i < updates.size(); ++i) {
      const QueryUpdate& u = updates[i];
      if (i > 0 && u.timestamp <= updates[i - 1].timestamp) {
        problems.push_back(absl::StrCat("update ", i, ": timestamp ", u.timestamp, " after ",
                                        updates[i - 1].timestamp));
      }
      const std::map<std::string, std::vector<int64_t>> by_group = ByGroup(u.documents());
      if (by_group.size() != groups) {
        problems.push_back(absl::StrCat("update ", i, ": ", by_group.size(), " groups"));
      }
      for (const auto& [group, ranks] : by_group) {
        if (ranks.size() != 1) {
          problems.push_back(absl::StrCat("update ", i, ": ", group, " appears ", ranks.size(),
                                          " times (a torn snapshot)"));
          continue;
        }
        if (ranks[0] < previous[group]) {
          problems.push_back(absl::StrCat("update ", i, ": ", group, " went back from rank ",
                                          previous[group], " to ", ranks[0]));
        }
        previous[group] = ranks[0];
      }
    }
    INFO(absl::StrJoin(problems, "\n"));
    CHECK(problems.empty());
    absl::StatusOr<std::vector<Document>> now = db->Query(query);
    REQUIRE_OK(now);
    CHECK(updates.back().documents() == *now);
    CHECK(now->size() == groups);
    for (const Document& d : *now) CHECK(d["rank"] == Value(kCommits));
    CHECK_NO_PROBLEMS(*rec);
  }
}

TEST_CASE("concurrency: 4 writers; per subscription, results in timestamp order, ending current") {
  CheckConcurrentWriters(4, 100);
}

TEST_CASE("concurrency: 8 writers; WaitForDelivery still reads each writer's own writes") {
  // More threads than cores: a writer is more often preempted between its commit and the
  // publication of its write set, so that commits are published out of timestamp order.
  CheckConcurrentWriters(8, 60);
}

}  // namespace
