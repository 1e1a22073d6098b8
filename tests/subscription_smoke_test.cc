// The basic subscription loop: first update, a change, precision, WaitForDelivery.
#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <vector>

#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using namespace stagedb;
using stagedb::testing::kHangGuard;
using stagedb::testing::MustInsert;
using stagedb::testing::OpenOrFail;
using stagedb::testing::TempDir;

constexpr const char* kSchema = R"json({
  "tables": {
    "messages": {
      "fields": {"session": "string", "n": "int64"},
      "indexes": [{"name": "by_session", "fields": ["session", "n"]}]
    }
  }
})json";

TEST_CASE("a subscription gets its first result and each change, and only those") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  std::mutex mu;
  std::vector<QueryUpdate> updates;
  std::atomic<int> runs = 0;
  absl::StatusOr<Subscription> sub = db->Subscribe(
      [&](Reader& r) {
        ++runs;
        return r.Table("messages").WithIndex("by_session", Eq("session", "a")).Take(2);
      },
      [&](const QueryUpdate& u) {
        std::lock_guard<std::mutex> lock(mu);
        updates.push_back(u);
      });
  REQUIRE_OK(sub);
  REQUIRE_OK(db->WaitForDelivery(db->LastCommitTimestamp(), kHangGuard));
  {
    std::lock_guard<std::mutex> lock(mu);
    REQUIRE(updates.size() == 1);
    CHECK(updates[0].documents().empty());
    CHECK(updates[0].changes.empty());
  }
  Timestamp t = 0;
  REQUIRE_OK(db->Mutate(
      [&](Transaction& tx) {
        return tx.Insert("messages", {{"session", "a"}, {"n", 1}});
      },
      &t));
  REQUIRE_OK(db->WaitForDelivery(t, kHangGuard));
  {
    std::lock_guard<std::mutex> lock(mu);
    REQUIRE(updates.size() == 2);
    CHECK(updates[1].timestamp >= t);
    REQUIRE(updates[1].changes.added.size() == 1);
    CHECK(updates[1].changes.added[0].new_position == 0u);
    CHECK(updates[1].changes.added[0].document["n"] == Value(1));
  }
  // Another session: no re-run.
  const int runs_before = runs;
  REQUIRE_OK(db->Mutate(
      [&](Transaction& tx) {
        return tx.Insert("messages", {{"session", "b"}, {"n", 1}});
      },
      &t));
  REQUIRE_OK(db->WaitForDelivery(t, kHangGuard));
  CHECK(runs == runs_before);
  // Fill the take limit, then write beyond it: no re-run.
  MustInsert(*db, "messages", {{"session", "a"}, {"n", 2}});
  REQUIRE_OK(db->Mutate(
      [&](Transaction& tx) {
        return tx.Insert("messages", {{"session", "a"}, {"n", 5}});
      },
      &t));
  REQUIRE_OK(db->WaitForDelivery(t, kHangGuard));
  const int runs_full = runs;
  REQUIRE_OK(db->Mutate(
      [&](Transaction& tx) {
        return tx.Insert("messages", {{"session", "a"}, {"n", 9}});
      },
      &t));
  REQUIRE_OK(db->WaitForDelivery(t, kHangGuard));
  CHECK(runs == runs_full);
  std::lock_guard<std::mutex> lock(mu);
  CHECK(updates.back().documents().size() == 2);
}

}  // namespace

namespace {

TEST_CASE("a subscribed page keeps its range: inserts inside re-run it, after it do not") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  for (int n : {10, 20, 30, 40}) MustInsert(*db, "messages", {{"session", "a"}, {"n", n}});
  auto first_page = [](Reader& r, std::optional<std::string> end) {
    return r.Table("messages")
        .WithIndex("by_session", Eq("session", "a"))
        .Paginate({.num_items = 2, .end_cursor = std::move(end)});
  };
  absl::StatusOr<PaginationResult> first =
      db->Query([&](Reader& r) { return first_page(r, std::nullopt); });
  REQUIRE_OK(first);
  std::mutex mu;
  std::vector<QueryUpdate> updates;
  std::atomic<int> runs = 0;
  absl::StatusOr<Subscription> sub = db->Subscribe(
      [&, end = first->continue_cursor](Reader& r) {
        ++runs;
        return first_page(r, end);
      },
      [&](const QueryUpdate& u) {
        std::lock_guard<std::mutex> lock(mu);
        updates.push_back(u);
      });
  REQUIRE_OK(sub);
  Timestamp t = 0;
  REQUIRE_OK(db->Mutate(
      [&](Transaction& tx) {
        return tx.Insert("messages", {{"session", "a"}, {"n", 35}});
      },
      &t));
  REQUIRE_OK(db->WaitForDelivery(t, kHangGuard));
  CHECK(runs == 1);  // after the page's end: not read
  REQUIRE_OK(db->Mutate(
      [&](Transaction& tx) {
        return tx.Insert("messages", {{"session", "a"}, {"n", 15}});
      },
      &t));
  REQUIRE_OK(db->WaitForDelivery(t, kHangGuard));
  CHECK(runs == 2);
  std::lock_guard<std::mutex> lock(mu);
  REQUIRE(updates.size() == 2);
  const QueryUpdate& last = updates.back();
  REQUIRE(last.result.ok());
  CHECK((*last.result)["continueCursor"] == Value(first->continue_cursor));
  std::vector<int64_t> ns;
  for (const Document& d : last.documents()) ns.push_back(d["n"].as_int64());
  CHECK(ns == std::vector<int64_t>{10, 15, 20});
  REQUIRE(last.changes.added.size() == 1);
  CHECK(last.changes.added[0].new_position == 1u);
}

}  // namespace
