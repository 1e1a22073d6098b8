// The numbers rule: where a validator declares "number" (float64), an int64 that float64 holds
// exactly (|v| <= 2^53) is accepted and converted, in documents and in function arguments and
// return values; any other int64 is refused saying why. Where "int64" is declared, a float64 is
// refused with the way to write an int64.
#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
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

constexpr int64_t kTwoTo53 = int64_t{1} << 53;

constexpr const char* kSchema = R"json({"tables": {
  "readings": {
    "fields": {
      "value": "number",
      "count": {"type": "optional", "of": "int64"},
      "limits": {"type": "optional", "of": {"type": "object", "fields": {
        "low": "number", "high": {"type": "optional", "of": "number"}}}},
      "samples": {"type": "optional", "of": {"type": "array", "items": "number"}},
      "byName": {"type": "optional", "of": {"type": "record", "keys": "string", "values": "number"}},
      "either": {"type": "optional", "of": {"type": "union", "of": ["int64", "number"]}},
      "label": {"type": "optional", "of": {"type": "union", "of": ["string", "number"]}},
      "one": {"type": "optional", "of": {"type": "literal", "value": 1}},
      "pair": {"type": "optional", "of": {"type": "union", "of": [
        {"type": "object", "fields": {"a": "number", "b": "string"}},
        {"type": "object", "fields": {"a": "int64", "b": "number"}}]}}
    },
    "indexes": [{"name": "by_value", "fields": ["value"]}]
  }
}})json";

Document Read(Database& db, const DocumentId& id) {
  absl::StatusOr<std::optional<Document>> doc = db.Query([&](Reader& r) { return r.Get(id); });
  INFO(doc.status().ToString());
  REQUIRE(doc.ok());
  REQUIRE(doc->has_value());
  return **doc;
}

absl::StatusOr<DocumentId> Insert(Database& db, const Object& fields) {
  return db.Mutate([&](Transaction& tx) { return tx.Insert("readings", fields); });
}

TEST_CASE("an int64 where a number is declared is stored as its float64", "[numbers]") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  const DocumentId id = MustInsert(*db, "readings",
                                   {{"value", 5},
                                    {"limits", Object{{"low", 1}, {"high", 2.5}}},
                                    {"samples", Array{1, 2.5, Value::Int64(-3)}},
                                    {"byName", Object{{"x", 7}}},
                                    {"one", 1}});
  const Document doc = Read(*db, id);
  CHECK(doc["value"].is_float64());
  CHECK(doc["value"] == Value(5.0));
  CHECK(doc.Get("limits.low") == Value(1.0));
  CHECK(doc["samples"] == Value(Array{1.0, 2.5, -3.0}));
  CHECK(doc.Get("byName.x") == Value(7.0));
  CHECK(doc["one"] == Value(1.0));

  // The index holds the float64's key: an equality on 5.0 finds it, one on int64 5 does not.
  auto count = [&](Value key) {
    absl::StatusOr<std::vector<Document>> found = db->Query([&](Reader& r) {
      return r.Table("readings").WithIndex("by_value", Eq("value", key)).Collect();
    });
    REQUIRE(found.ok());
    return found->size();
  };
  CHECK(count(5.0) == 1);
  CHECK(count(Value::Int64(5)) == 0);

  // Patch and Replace convert too.
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Patch(id, {{"value", 6}}); }));
  CHECK(Read(*db, id)["value"] == Value(6.0));
  REQUIRE_OK(db->Mutate([&](Transaction& tx) {
    return tx.Replace(id, {{"value", kTwoTo53}, {"samples", Array{-kTwoTo53}}});
  }));
  const Document replaced = Read(*db, id);
  CHECK(replaced["value"] == Value(9007199254740992.0));
  CHECK(replaced["samples"] == Value(Array{-9007199254740992.0}));
  CHECK_FALSE(replaced["limits"].is_object());
}

TEST_CASE("a union prefers a member the value matches without conversion", "[numbers]") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  const DocumentId id = MustInsert(*db, "readings",
                                   {{"value", 1.0},
                                    {"either", 3},
                                    {"label", 4},
                                    // The first member converts "a" and then fails on "b"; the
                                    // second must see "a" as the int64 it was given.
                                    {"pair", Object{{"a", 5}, {"b", 6}}}});
  const Document doc = Read(*db, id);
  CHECK(doc["either"] == Value::Int64(3));
  CHECK(doc["label"] == Value(4.0));
  CHECK(doc.Get("pair.a") == Value::Int64(5));
  CHECK(doc.Get("pair.b") == Value(6.0));
  // A float64 in int64 | number is a number.
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Patch(id, {{"either", 3.5}}); }));
  CHECK(Read(*db, id)["either"] == Value(3.5));
}

TEST_CASE("an int64 float64 cannot hold is refused naming table, field, value and why",
          "[numbers]") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  CHECK_ERROR(Insert(*db, {{"value", kTwoTo53 + 1}}), Code::kInvalidArgument, "table \"readings\"",
              "field \"value\"", "9007199254740993", "float64 cannot hold it exactly", "2^53");
  CHECK_ERROR(Insert(*db, {{"value", -kTwoTo53 - 1}}), Code::kInvalidArgument, "value",
              "-9007199254740993", "2^53");
  CHECK_ERROR(Insert(*db, {{"value", 1.0}, {"samples", Array{1, INT64_MAX}}}),
              Code::kInvalidArgument, "readings", "samples[1]", "9223372036854775807", "2^53");
  CHECK_ERROR(Insert(*db, {{"value", 1.0}, {"limits", Object{{"low", kTwoTo53 + 1}}}}),
              Code::kInvalidArgument, "readings", "limits.low", "2^53");
  // In a single-member union the member's reason shows; the literal 1 is not 2.
  CHECK_ERROR(Insert(*db, {{"value", 1.0}, {"one", 2}}), Code::kInvalidArgument, "one",
              "literal 1.0", "2");
  CHECK(db->Query([](Reader& r) { return r.Table("readings").Collect(); })->empty());
}

TEST_CASE("a float64 where int64 is declared is refused with the way to write an int64",
          "[numbers]") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  CHECK_ERROR(Insert(*db, {{"value", 1.0}, {"count", 2.0}}), Code::kInvalidArgument,
              "table \"readings\"", "field \"count\"", "expected int64, got float64 2.0",
              "stagedb::Value::Int64(...)");
  REQUIRE_OK(Insert(*db, {{"value", 1.0}, {"count", 2}}));
}

// Returns its arguments as it received them, with each top-level value's type name.
void RegisterEcho(Database& db) {
  REQUIRE_OK(db.RegisterMutation(
      {.name = "numbers:echo",
       .args = R"({"n": "number",
                   "paginationOpts": {"type": "optional", "of": {"type": "object",
                     "fields": {"numItems": "number"}}},
                   "samples": {"type": "optional", "of": {"type": "array", "items": "number"}},
                   "either": {"type": "optional", "of": {"type": "union", "of": ["int64", "number"]}},
                   "count": {"type": "optional", "of": "int64"}})",
       .returns = R"({"type": "object", "fields": {"args": "any", "scaled": "number"}})"},
      [](MutationContext&, const Value& args) -> absl::StatusOr<Value> {
        // Returns an int64 where the returns validator declares a number.
        return Value(Object{{"args", args}, {"scaled", Value::Int64(10)}});
      }));
}

TEST_CASE("function arguments and return values follow the numbers rule", "[numbers]") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  RegisterEcho(*db);
  absl::StatusOr<Value> echoed =
      db->Call("numbers:echo", Object{{"n", 2},
                                      {"paginationOpts", Object{{"numItems", 20}}},
                                      {"samples", Array{1, 2.5}},
                                      {"either", 7},
                                      {"count", 3}});
  REQUIRE_OK(echoed);
  const Value& args = (*echoed)["args"];
  CHECK(args["n"] == Value(2.0));
  CHECK(args["paginationOpts"]["numItems"] == Value(20.0));
  CHECK(args["samples"] == Value(Array{1.0, 2.5}));
  CHECK(args["either"] == Value::Int64(7));
  CHECK(args["count"] == Value::Int64(3));
  CHECK((*echoed)["scaled"] == Value(10.0));

  CHECK_ERROR(db->Call("numbers:echo", Object{{"n", kTwoTo53 + 1}}), Code::kInvalidArgument,
              "function \"numbers:echo\"", "argument \"n\"", "9007199254740993", "2^53");
  CHECK_ERROR(db->Call("numbers:echo", Object{{"n", 1}, {"count", 3.0}}), Code::kInvalidArgument,
              "argument \"count\"", "stagedb::Value::Int64(...)");

  // A scheduled job keeps its arguments converted.
  absl::StatusOr<DocumentId> job =
      db->scheduler().RunAfter(absl::Hours(1), "numbers:echo", Object{{"n", 4}});
  REQUIRE_OK(job);
  absl::StatusOr<std::optional<Document>> stored =
      db->Query([&](Reader& r) { return r.Get(*job); });
  REQUIRE_OK(stored);
  REQUIRE(stored->has_value());
  CHECK((**stored)["args"]["n"] == Value(4.0));
}

}  // namespace
