// TTL (schema "ttl"): documents whose TTL field is older than the table's TTL are removed by the
// engine's sweep (Database::SweepExpired, and a thread every Options::ttl_sweep_interval);
// fresh documents and documents without the field stay.
#include <catch2/catch.hpp>
#include <mutex>
#include <optional>
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
using Code = absl::StatusCode;

constexpr const char* kSchema = R"json({"tables": {
  "presence": {"fields": {"agent": "string", "lastSeenAt": "number"},
               "indexes": [{"name": "by_lastSeen", "fields": ["lastSeenAt", "agent"]}],
               "ttl": {"field": "lastSeenAt", "seconds": 60}},
  "contexts": {"fields": {"repo": "string",
                          "expires_at": {"type": "optional", "of": "number"}},
               "indexes": [{"name": "by_expiry", "fields": ["expires_at"]}],
               "ttl": {"field": "expires_at", "seconds": 0.001}},
  "logs": {"fields": {"line": "string"}}}})json";

double NowMs() { return absl::ToDoubleMilliseconds(absl::Now() - absl::UnixEpoch()); }

size_t CountOf(Database& db, std::string_view table) {
  absl::StatusOr<std::vector<Document>> docs =
      db.Query([&](Reader& r) { return r.Table(table).Collect(); });
  REQUIRE(docs.ok());
  return docs->size();
}

TEST_CASE("the sweep removes expired documents and keeps the rest") {
  TempDir dir;
  auto db = OpenOrFail(
      {.path = dir.Sub("db"), .schema_json = kSchema, .ttl_sweep_interval = absl::ZeroDuration()});
  const DocumentId fresh = MustInsert(*db, "presence", {{"agent", "a"}, {"lastSeenAt", NowMs()}});
  const DocumentId stale =
      MustInsert(*db, "presence", {{"agent", "b"}, {"lastSeenAt", NowMs() - 120'000}});
  const DocumentId no_expiry = MustInsert(*db, "contexts", {{"repo", "r"}});
  const DocumentId expired =
      MustInsert(*db, "contexts", {{"repo", "s"}, {"expires_at", NowMs() - 10}});
  MustInsert(*db, "logs", {{"line", "x"}});

  absl::StatusOr<size_t> removed = db->SweepExpired();
  REQUIRE_OK(removed);
  CHECK(*removed == 2);
  auto exists = [&](const DocumentId& id) {
    return db->Query([&](Reader& r) { return r.Get(id); })->has_value();
  };
  CHECK(exists(fresh));
  CHECK_FALSE(exists(stale));
  CHECK(exists(no_expiry));
  CHECK_FALSE(exists(expired));
  CHECK(CountOf(*db, "logs") == 1);
  // Nothing more to do.
  CHECK(*db->SweepExpired() == 0);
}

TEST_CASE("the sweep works through more expired documents than one batch") {
  TempDir dir;
  auto db = OpenOrFail(
      {.path = dir.Sub("db"), .schema_json = kSchema, .ttl_sweep_interval = absl::ZeroDuration()});
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    for (int i = 0; i < 1234; ++i) {
      absl::StatusOr<DocumentId> id = tx.Insert(
          "presence", {{"agent", "a" + std::to_string(i)}, {"lastSeenAt", NowMs() - 61'000 - i}});
      if (!id.ok()) return id.status();
    }
    return absl::OkStatus();
  }));
  MustInsert(*db, "presence", {{"agent", "live"}, {"lastSeenAt", NowMs()}});
  absl::StatusOr<size_t> removed = db->SweepExpired();
  REQUIRE_OK(removed);
  CHECK(*removed == 1234);
  CHECK(CountOf(*db, "presence") == 1);
}

TEST_CASE("the database's own thread sweeps, and subscriptions see documents expire") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"),
                        .schema_json = kSchema,
                        .ttl_sweep_interval = absl::Milliseconds(20)});
  // Due in an hour: the subscription sees it first, however slowly this thread goes on.
  const DocumentId id =
      MustInsert(*db, "contexts", {{"repo", "r"}, {"expires_at", NowMs() + 3'600'000}});
  std::mutex mu;
  std::vector<size_t> sizes;
  absl::StatusOr<Subscription> sub =
      db->Subscribe([](Reader& r) { return r.Table("contexts").Collect(); },
                    [&](const QueryUpdate& update) {
                      std::lock_guard<std::mutex> lock(mu);
                      sizes.push_back(update.result->as_array().size());
                    });
  REQUIRE_OK(sub);
  REQUIRE_OK(db->WaitForDelivery(db->LastCommitTimestamp(), testing::kHangGuard));
  // Expired now (the contexts TTL is 1 ms past expires_at): the sweep thread removes it.
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Patch(id, {{"expires_at", NowMs()}}); }));
  auto last_size = [&]() -> std::optional<size_t> {
    std::lock_guard<std::mutex> lock(mu);
    if (sizes.empty()) return std::nullopt;
    return sizes.back();
  };
  testing::WaitFor([&] { return last_size() == 0u; },
                   "the subscription to see the document expire");
  std::lock_guard<std::mutex> lock(mu);
  CHECK(sizes.front() == 1);
  CHECK(sizes.back() == 0);
}

TEST_CASE("TTL declarations are checked") {
  TempDir dir;
  auto open = [&](const char* schema) {
    return Database::Open({.path = dir.Sub("db"), .schema_json = schema});
  };
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"at": "number"},
                                         "ttl": {"field": "at", "seconds": 5}}}})"),
              Code::kInvalidArgument, "\"t\"", "\"at\"", "needs an index", "by_at");
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"at": "string"},
                                         "indexes": [{"name": "by_at", "fields": ["at"]}],
                                         "ttl": {"field": "at", "seconds": 5}}}})"),
              Code::kInvalidArgument, "\"at\"", "number field");
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"at": "number"},
                                         "indexes": [{"name": "by_at", "fields": ["at"]}],
                                         "ttl": {"field": "at", "seconds": 0}}}})"),
              Code::kInvalidArgument, "positive");
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"at": "number",
                                                    "d": {"type": "optional", "of": "number"}},
                                         "indexes": [{"name": "by_at", "fields": ["at"]}],
                                         "soft_delete": {"field": "d"},
                                         "ttl": {"field": "at", "seconds": 5}}}})"),
              Code::kInvalidArgument, "soft_delete");
}

}  // namespace
