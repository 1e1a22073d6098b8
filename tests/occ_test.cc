// Optimistic mutations, deterministically: a mutation whose reads a concurrent commit overwrote
// is re-run on a newer snapshot (write skew is prevented, not just lost updates), and past
// TransactionLimits::max_conflict_retries Mutate returns Aborted naming the table and index.
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using namespace stagedb;
using stagedb::testing::MustInsert;
using stagedb::testing::OpenOrFail;
using stagedb::testing::TempDir;

constexpr const char* kSchema = R"json({"tables": {
  "counters": {"fields": {"name": "string", "value": "int64"},
               "indexes": [{"name": "by_name", "fields": ["name"], "unique": true}]},
  "doctors": {"fields": {"name": "string", "on_call": "boolean"},
              "indexes": [{"name": "by_on_call", "fields": ["on_call"]}]}}})json";

// Runs `interloper` (another mutation, on another thread, to completion) while `fn`'s first
// attempt is between its reads and its writes.
struct Interleave {
  std::function<void()> interloper;
  std::atomic<int> attempts = 0;
  void AfterReads() {
    if (attempts++ == 0) std::async(std::launch::async, interloper).get();
  }
};

absl::Status Increment(Transaction& tx, const DocumentId& id, Interleave* interleave) {
  absl::StatusOr<std::optional<Document>> counter = tx.Get(id);
  if (!counter.ok()) return counter.status();
  if (interleave != nullptr) interleave->AfterReads();
  return tx.Patch(id, {{"value", (**counter)["value"].as_int64() + 1}});
}

TEST_CASE("a mutation whose read was overwritten re-runs on a newer snapshot") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  const DocumentId id = MustInsert(*db, "counters", {{"name", "c"}, {"value", 0}});
  Interleave interleave;
  interleave.interloper = [&] {
    REQUIRE_OK(db->Mutate([&](Transaction& tx) { return Increment(tx, id, nullptr); }));
  };
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return Increment(tx, id, &interleave); }));
  CHECK(interleave.attempts == 2);  // the first attempt conflicted
  absl::StatusOr<std::optional<Document>> counter = db->Query([&](Reader& r) { return r.Get(id); });
  REQUIRE_OK(counter);
  CHECK((**counter)["value"] == Value(2));  // no lost update
}

TEST_CASE("past max_conflict_retries, Mutate returns Aborted naming table and index") {
  TempDir dir;
  Options options{.path = dir.Sub("db"), .schema_json = kSchema};
  options.limits.max_conflict_retries = 0;
  auto db = OpenOrFail(options);
  const DocumentId id = MustInsert(*db, "counters", {{"name", "c"}, {"value", 0}});
  Interleave interleave;
  interleave.interloper = [&] {
    REQUIRE_OK(db->Mutate([&](Transaction& tx) { return Increment(tx, id, nullptr); }));
  };
  absl::Status status = db->Mutate([&](Transaction& tx) { return Increment(tx, id, &interleave); });
  CHECK_ERROR(status, absl::StatusCode::kAborted, "table \"counters\"", "index \"by_id\"",
              "max_conflict_retries");
  // Nothing of the refused mutation was written.
  absl::StatusOr<std::optional<Document>> counter = db->Query([&](Reader& r) { return r.Get(id); });
  REQUIRE_OK(counter);
  CHECK((**counter)["value"] == Value(1));
}

TEST_CASE("write skew is prevented: two on-call doctors cannot both go off call") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  const DocumentId alice = MustInsert(*db, "doctors", {{"name", "alice"}, {"on_call", true}});
  const DocumentId bob = MustInsert(*db, "doctors", {{"name", "bob"}, {"on_call", true}});
  auto go_off_call = [&](Transaction& tx, const DocumentId& me,
                         Interleave* interleave) -> absl::Status {
    absl::StatusOr<std::vector<Document>> on_call =
        tx.Table("doctors").WithIndex("by_on_call", Eq("on_call", true)).Collect();
    if (!on_call.ok()) return on_call.status();
    if (interleave != nullptr) interleave->AfterReads();
    if (on_call->size() < 2) return absl::FailedPreconditionError("someone must stay on call");
    return tx.Patch(me, {{"on_call", false}});
  };
  Interleave interleave;
  interleave.interloper = [&] {
    REQUIRE_OK(db->Mutate([&](Transaction& tx) { return go_off_call(tx, bob, nullptr); }));
  };
  // Alice read two doctors on call; Bob went off call meanwhile (a write to a document Alice
  // did not write, only read): her re-run sees one and refuses. Snapshot isolation would not.
  absl::Status status =
      db->Mutate([&](Transaction& tx) { return go_off_call(tx, alice, &interleave); });
  CHECK_ERROR(status, absl::StatusCode::kFailedPrecondition, "someone must stay on call");
  CHECK(interleave.attempts == 2);
  absl::StatusOr<std::vector<Document>> on_call = db->Query([&](Reader& r) {
    return r.Table("doctors").WithIndex("by_on_call", Eq("on_call", true)).Collect();
  });
  REQUIRE_OK(on_call);
  REQUIRE(on_call->size() == 1);
  CHECK((*on_call)[0].id() == alice);
}

TEST_CASE("two racing inserts of one unique value: one commits, the other re-runs and fails") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  Interleave interleave;
  auto insert = [&](Transaction& tx, Interleave* i) -> absl::Status {
    absl::StatusOr<DocumentId> id = tx.Insert("counters", {{"name", "same"}, {"value", 1}});
    if (!id.ok()) return id.status();
    if (i != nullptr) i->AfterReads();
    return absl::OkStatus();
  };
  interleave.interloper = [&] {
    REQUIRE_OK(db->Mutate([&](Transaction& tx) { return insert(tx, nullptr); }));
  };
  absl::Status status = db->Mutate([&](Transaction& tx) { return insert(tx, &interleave); });
  CHECK_ERROR(status, absl::StatusCode::kAlreadyExists, "by_name");
  absl::StatusOr<std::vector<Document>> all =
      db->Query([&](Reader& r) { return r.Table("counters").Collect(); });
  REQUIRE_OK(all);
  CHECK(all->size() == 1);
}

}  // namespace

namespace {

TEST_CASE("a conflict storm ends with Aborted errors, not a hang, and stays consistent") {
  TempDir dir;
  Options options{.path = dir.Sub("db"), .schema_json = kSchema, .durability = Durability::kNoSync};
  options.limits.max_conflict_retries = 1;
  auto db = OpenOrFail(options);
  const DocumentId id = MustInsert(*db, "counters", {{"name", "hot"}, {"value", 0}});
  // In each round every thread increments the counter once. Each attempt waits, between its read
  // and its write, until the round's other attempts have read too: of the kThreads first attempts
  // exactly one commits; the other kThreads - 1 re-run and meet again, one commits and the rest,
  // out of retries, end Aborted. Whatever the scheduling, every attempt overlaps all the others.
  constexpr int kThreads = 8;
  constexpr int kRounds = 40;
  testing::Progress first_reads, second_reads;
  std::atomic<int> committed = 0, aborted = 0, other = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int round = 1; round <= kRounds; ++round) {
        int attempts = 0;
        absl::Status s = db->Mutate([&](Transaction& tx) -> absl::Status {
          absl::StatusOr<std::optional<Document>> counter = tx.Get(id);
          if (!counter.ok()) return counter.status();
          // A thread may run ahead into the next round's first attempt (it read the counter
          // before this round's second commit, so it conflicts): the counts stay per round.
          testing::Progress& reads = ++attempts == 1 ? first_reads : second_reads;
          reads.Add();
          if (!reads.WaitAtLeast(int64_t{round} * (attempts == 1 ? kThreads : kThreads - 1))) {
            return absl::DeadlineExceededError("the other attempts did not read in time");
          }
          return tx.Patch(id, {{"value", (**counter)["value"].as_int64() + 1}});
        });
        if (s.ok()) {
          ++committed;
        } else if (s.code() == absl::StatusCode::kAborted) {
          ++aborted;
        } else {
          ++other;
          return;  // the rounds can no longer fill up
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CHECK(other == 0);
  CHECK(committed == 2 * kRounds);
  CHECK(aborted == (kThreads - 2) * kRounds);
  absl::StatusOr<std::optional<Document>> counter = db->Query([&](Reader& r) { return r.Get(id); });
  REQUIRE_OK(counter);
  CHECK((**counter)["value"] == Value(static_cast<int64_t>(committed)));
}

}  // namespace

TEST_CASE("a durable commit waits for running mutations only briefly (commit delay)") {
  // The committer's leader waits for mutations that are running but not yet queued, so that one
  // fsync covers them too; a mutation that takes long must not hold other commits back.
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  std::thread slow([&] {
    const absl::Status status = db->Mutate([&](Transaction& tx) -> absl::Status {
      started.set_value();
      released.wait();
      return tx.Insert("counters", {{"name", "slow"}, {"value", 1}}).status();
    });
    CHECK(status.ok());
  });
  started.get_future().wait();
  const auto begin = std::chrono::steady_clock::now();
  // On a thread of its own, so that a commit that waits for the slow mutation fails the test
  // (after the hang guard) instead of hanging it.
  std::future<absl::StatusOr<DocumentId>> fast_insert = std::async(std::launch::async, [&] {
    return db->Mutate([](Transaction& tx) {
      return tx.Insert("counters", {{"name", "fast"}, {"value", 2}});
    });
  });
  const bool committed = fast_insert.wait_for(absl::ToChronoNanoseconds(testing::kHangGuard)) ==
                         std::future_status::ready;
  const auto took = std::chrono::steady_clock::now() - begin;
  release.set_value();
  slow.join();
  INFO("the commit took " << std::chrono::duration<double>(took).count() << " s");
  REQUIRE(committed);  // it did not wait for the slow mutation to end
  // Generous for a loaded machine: the commit delay is well under a millisecond.
  CHECK(took < std::chrono::seconds(2));
  const absl::StatusOr<DocumentId> id = fast_insert.get();
  REQUIRE_OK(id);
  absl::StatusOr<std::optional<Document>> fast = db->Query([&](Reader& r) { return r.Get(*id); });
  REQUIRE_OK(fast);
  CHECK(fast->has_value());
}
