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
  REQUIRE_OK(db->WaitForDelivery(db->LastCommitTimestamp()));
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
  REQUIRE_OK(db->WaitForDelivery(t));
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
  REQUIRE_OK(db->WaitForDelivery(t));
  CHECK(runs == runs_before);
  // Fill the take limit, then write beyond it: no re-run.
  MustInsert(*db, "messages", {{"session", "a"}, {"n", 2}});
  REQUIRE_OK(db->Mutate(
      [&](Transaction& tx) {
        return tx.Insert("messages", {{"session", "a"}, {"n", 5}});
      },
      &t));
  REQUIRE_OK(db->WaitForDelivery(t));
  const int runs_full = runs;
  REQUIRE_OK(db->Mutate(
      [&](Transaction& tx) {
        return tx.Insert("messages", {{"session", "a"}, {"n", 9}});
      },
      &t));
  REQUIRE_OK(db->WaitForDelivery(t));
  CHECK(runs == runs_full);
  std::lock_guard<std::mutex> lock(mu);
  CHECK(updates.back().documents().size() == 2);
}

}  // namespace
