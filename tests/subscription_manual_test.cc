// Delivery::kManual edge cases found in review: a waiter while another thread is inside a
// callback, a callback that destroys the database, and host objects owned by a query function.
#include <atomic>
#include <catch2/catch.hpp>
#include <future>
#include <memory>
#include <optional>
#include <thread>

#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using namespace stagedb;
using stagedb::testing::Gate;
using stagedb::testing::kHangGuard;
using stagedb::testing::OpenOrFail;
using stagedb::testing::TempDir;

constexpr const char* kSchema = R"json({"tables": {"items": {
  "fields": {"group": "string", "rank": "int64"},
  "indexes": [{"name": "by_group", "fields": ["group", "rank"]}]}}})json";

Timestamp Insert(Database& db, const std::string& group, int64_t rank) {
  Timestamp t = 0;
  absl::StatusOr<DocumentId> id = db.Mutate(
      [&](Transaction& tx) {
        return tx.Insert("items", {{"group", group}, {"rank", rank}});
      },
      &t);
  REQUIRE_OK(id);
  return t;
}

auto GroupQuery(std::string group) {
  return [group](Reader& r) {
    return r.Table("items").WithIndex("by_group", Eq("group", group)).Collect();
  };
}

std::unique_ptr<Database> OpenManual(const TempDir& dir) {
  return OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema, .delivery = Delivery::kManual});
}

TEST_CASE("manual delivery: WaitForDelivery while another thread is inside the callback") {
  TempDir dir;
  auto db = OpenManual(dir);
  Gate in_callback, release;
  std::atomic<bool> block = false;
  std::atomic<int> delivered = 0;
  absl::StatusOr<Subscription> sub = db->Subscribe(GroupQuery("k"), [&](const QueryUpdate&) {
    ++delivered;
    if (block.exchange(false)) {
      in_callback.Open();
      (void)release.Wait();
    }
  });
  REQUIRE_OK(sub);
  REQUIRE(db->WaitForPending(kHangGuard));
  db->DeliverPending();
  block = true;
  Insert(*db, "k", 1);
  REQUIRE(db->WaitForPending(kHangGuard));
  std::thread deliverer([&] { db->DeliverPending(); });
  REQUIRE(in_callback.Wait());
  // A newer result queues while the callback runs on `deliverer`.
  const Timestamp t2 = Insert(*db, "k", 2);
  REQUIRE(db->WaitForPending(kHangGuard));
  auto waiter = std::async(std::launch::async,
                           [&] { return db->WaitForDelivery(t2, absl::Milliseconds(300)); });
  // The waiter must not spin holding the engine: it times out while the callback is held...
  REQUIRE(waiter.wait_for(absl::ToChronoNanoseconds(kHangGuard)) == std::future_status::ready);
  CHECK(waiter.get().code() == absl::StatusCode::kDeadlineExceeded);
  release.Open();
  deliverer.join();
  // ...and once the callback returns, the newer result is delivered.
  REQUIRE_OK(db->WaitForDelivery(t2, kHangGuard));
  CHECK(delivered == 3);
}

TEST_CASE("manual delivery: a callback may destroy the database") {
  TempDir dir;
  std::unique_ptr<Database> db = OpenManual(dir);
  std::atomic<int> calls = 0;
  absl::StatusOr<Subscription> sub = db->Subscribe(GroupQuery("k"), [&](const QueryUpdate&) {
    ++calls;
    db.reset();
  });
  REQUIRE_OK(sub);
  Database* raw = db.get();
  REQUIRE(raw->WaitForPending(kHangGuard));
  CHECK(raw->DeliverPending() == 1);
  CHECK(db == nullptr);
  CHECK(calls == 1);
  CHECK_FALSE(sub->active());
}

TEST_CASE("manual delivery: host objects owned by a query function are destroyed outside locks") {
  TempDir dir;
  auto db = OpenManual(dir);
  // Its destructor mutates the database: it must not run under an engine lock.
  struct Helper {
    Database* db;
    ~Helper() {
      if (db != nullptr) Insert(*db, "z", 1);
    }
  };
  auto helper = std::make_shared<Helper>();
  helper->db = db.get();
  {
    absl::StatusOr<Subscription> sub = db->Subscribe(
        [h = helper](Reader& r) { return GroupQuery("k")(r); }, [](const QueryUpdate&) {});
    REQUIRE_OK(sub);
    helper.reset();
    REQUIRE(db->WaitForPending(kHangGuard));
  }  // unsubscribed with its first update still queued
  auto delivering = std::async(std::launch::async, [&] { return db->DeliverPending(); });
  REQUIRE(delivering.wait_for(absl::ToChronoNanoseconds(kHangGuard)) == std::future_status::ready);
  CHECK(delivering.get() == 0);
  absl::StatusOr<std::vector<Document>> z = db->Query(GroupQuery("z"));
  REQUIRE_OK(z);
  CHECK(z->size() == 1);
}

}  // namespace
