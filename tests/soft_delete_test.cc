// Soft delete (schema "soft_delete"): Delete marks a document with its deletion time and never
// removes it; Get and queries skip deleted documents; GetIncludingDeleted and
// Query::IncludeDeleted read them; clearing the field restores the document.
#include <catch2/catch.hpp>
#include <string>
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
  "sessions": {"fields": {"title": "string", "deletedAt": {"type": "optional", "of": "number"}},
               "indexes": [{"name": "by_title", "fields": ["title"]}],
               "soft_delete": {"field": "deletedAt"}},
  "logs": {"fields": {"line": "string"}}}})json";

std::vector<std::string> Titles(const absl::StatusOr<std::vector<Document>>& docs) {
  REQUIRE(docs.ok());
  std::vector<std::string> titles;
  for (const Document& doc : *docs) titles.push_back(doc["title"].as_string());
  return titles;
}

TEST_CASE("a soft-deleted document is hidden from ordinary reads and kept") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  const DocumentId a = MustInsert(*db, "sessions", {{"title", "a"}});
  const DocumentId b = MustInsert(*db, "sessions", {{"title", "b"}});
  const double before = absl::ToDoubleMilliseconds(absl::Now() - absl::UnixEpoch());
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Delete(a); }));

  // Ordinary reads: get by id, a full scan, an index range, pagination.
  CHECK_FALSE(db->Query([&](Reader& r) { return r.Get(a); })->has_value());
  CHECK(db->Query([&](Reader& r) { return r.Get(b); })->has_value());
  CHECK(Titles(db->Query([](Reader& r) { return r.Table("sessions").Collect(); })) ==
        std::vector<std::string>{"b"});
  CHECK(Titles(db->Query([](Reader& r) {
          return r.Table("sessions").WithIndex("by_title", Eq("title", "a")).Collect();
        })).empty());
  absl::StatusOr<PaginationResult> page =
      db->Query([](Reader& r) { return r.Table("sessions").Paginate({.num_items = 10}); });
  REQUIRE_OK(page);
  CHECK(page->page.size() == 1);

  // The explicit option reads it, with its deletion time.
  absl::StatusOr<std::optional<Document>> deleted =
      db->Query([&](Reader& r) { return r.GetIncludingDeleted(a); });
  REQUIRE_OK(deleted);
  REQUIRE(deleted->has_value());
  CHECK((**deleted)["deletedAt"].as_float64() >= before - 1);
  CHECK(Titles(db->Query([](Reader& r) {
          return r.Table("sessions").IncludeDeleted().Collect();
        })).size() == 2);

  // Deleting again keeps the first deletion time; patching a deleted document works (by id).
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Delete(a); }));
  CHECK(db->Query([&](Reader& r) { return r.GetIncludingDeleted(a); }).value().value() ==
        **deleted);
  // Restoring: clear the field.
  REQUIRE_OK(db->Mutate([&](Transaction& tx) {
    return tx.Patch(a, {{"deletedAt", Undefined{}}});
  }));
  CHECK(db->Query([&](Reader& r) { return r.Get(a); })->has_value());

  // A table without soft delete still deletes for good.
  const DocumentId line = MustInsert(*db, "logs", {{"line", "x"}});
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Delete(line); }));
  CHECK_FALSE(db->Query([&](Reader& r) { return r.GetIncludingDeleted(line); })->has_value());
}

TEST_CASE("Purge removes a document for good, soft-deleted or not") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  const DocumentId live = MustInsert(*db, "sessions", {{"title", "live"}});
  const DocumentId deleted = MustInsert(*db, "sessions", {{"title", "deleted"}});
  const DocumentId log = MustInsert(*db, "logs", {{"line", "x"}});
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Delete(deleted); }));
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    for (const DocumentId& id : {live, deleted, log}) {
      if (absl::Status s = tx.Purge(id); !s.ok()) return s;
    }
    return absl::OkStatus();
  }));
  for (const DocumentId& id : {live, deleted, log}) {
    CHECK_FALSE(db->Query([&](Reader& r) { return r.GetIncludingDeleted(id); })->has_value());
  }
  CHECK(
      db->Query([](Reader& r) { return r.Table("sessions").IncludeDeleted().Collect(); })->empty());
  CHECK_ERROR(db->Mutate([&](Transaction& tx) { return tx.Purge(live); }), Code::kNotFound,
              "sessions", live.text());
}

TEST_CASE("a subscription sees a soft delete as a removal") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  const DocumentId a = MustInsert(*db, "sessions", {{"title", "a"}});
  std::mutex mu;
  std::vector<size_t> sizes;
  absl::StatusOr<Subscription> sub =
      db->Subscribe([](Reader& r) { return r.Table("sessions").Collect(); },
                    [&](const QueryUpdate& update) {
                      std::lock_guard<std::mutex> lock(mu);
                      sizes.push_back(update.result->as_array().size());
                    });
  REQUIRE_OK(sub);
  REQUIRE_OK(db->WaitForDelivery(0, testing::kHangGuard));
  Timestamp ts = 0;
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Delete(a); }, &ts));
  REQUIRE_OK(db->WaitForDelivery(ts, testing::kHangGuard));
  std::lock_guard<std::mutex> lock(mu);
  CHECK(sizes == std::vector<size_t>{1, 0});
}

TEST_CASE("soft delete declarations are checked") {
  TempDir dir;
  auto open = [&](const char* schema) {
    return Database::Open({.path = dir.Sub("db"), .schema_json = schema});
  };
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"d": "number"},
                                         "soft_delete": {"field": "d"}}}})"),
              Code::kInvalidArgument, "\"t\"", "\"d\"", "optional number");
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"d": "number"}, "soft_delete": "d"}}})"),
              Code::kInvalidArgument, "soft_delete");
  { auto db = OpenOrFail({.path = dir.Sub("db2"), .schema_json = kSchema}); }
  auto reopened = OpenOrFail({.path = dir.Sub("db2")});
  CHECK(reopened->SchemaJson().find("\"soft_delete\"") != std::string::npos);
}

}  // namespace
