// Schema tests: validation of writes against the declared validators, errors in schema files
// at Open, and schema evolution when a database is reopened with a different schema.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "stagedb/stagedb.h"
#include "storage/lmdb_store.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using stagedb::Array;
using stagedb::Bytes;
using stagedb::Database;
using stagedb::Document;
using stagedb::DocumentId;
using stagedb::Object;
using stagedb::Reader;
using stagedb::Transaction;
using stagedb::Value;
using stagedb::testing::TempDir;

using stagedb::testing::CheckError;
using stagedb::testing::Msg;
using stagedb::testing::MustInsert;
using stagedb::testing::OpenOrFail;
using stagedb::testing::StatusOf;

std::unique_ptr<Database> OpenDb(const std::string& path, const std::string& schema_json) {
  return OpenOrFail({.path = path, .schema_json = schema_json});
}

absl::StatusOr<DocumentId> InsertOne(Database& db, std::string_view table, const Object& fields) {
  return db.Mutate([&](Transaction& tx) { return tx.Insert(table, fields); });
}

std::vector<Document> All(Database& db, const std::string& table,
                          const std::string& index = "by_creation_time",
                          stagedb::IndexRange range = {}) {
  absl::StatusOr<std::vector<Document>> docs =
      db.Query([&](Reader& r) { return r.Table(table).WithIndex(index, range).Collect(); });
  INFO("query " << table << "." << index << ": " << docs.status().ToString());
  REQUIRE(docs.ok());
  return *std::move(docs);
}

std::optional<Document> GetDoc(Database& db, const DocumentId& id) {
  absl::StatusOr<std::optional<Document>> doc = db.Query([&](Reader& r) { return r.Get(id); });
  INFO("Get " << id.text() << ": " << doc.status().ToString());
  REQUIRE(doc.ok());
  return *std::move(doc);
}

absl::Status OpenStatus(const std::string& path, const std::string& schema_json) {
  return Database::Open({.path = path, .schema_json = schema_json}).status();
}

// ---------------------------------------------------------------------------------------------
// Validation of writes

constexpr const char* kWriteSchema = R"json({
  "tables": {
    "projects": {"fields": {"title": "string"}},
    "people": {
      "fields": {
        "name": "string",
        "age": "number",
        "level": {"type": "optional", "of": "int64"},
        "admin": {"type": "optional", "of": "boolean"},
        "avatar": {"type": "optional", "of": "bytes"},
        "nothing": {"type": "optional", "of": "null"},
        "nick": {"type": "optional", "of": "string"},
        "status": {"type": "optional", "of": {"type": "union", "of": [
          {"type": "literal", "value": "todo"}, {"type": "literal", "value": "done"}]}},
        "kind": {"type": "optional", "of": {"type": "literal", "value": "person"}},
        "mixed": {"type": "optional", "of": {"type": "union", "of": ["string", "int64"]}},
        "project": {"type": "optional", "of": {"type": "id", "table": "projects"}},
        "tags": {"type": "optional", "of": {"type": "array", "items": "string"}},
        "meta": {"type": "optional", "of": {"type": "object", "fields": {
          "source": "string",
          "inner": {"type": "optional", "of": {"type": "object", "fields": {"x": "int64"}}}}}},
        "labels": {"type": "optional", "of": {"type": "record", "keys": "string", "values": "int64"}},
        "refs": {"type": "optional", "of": {"type": "record",
          "keys": {"type": "id", "table": "projects"}, "values": "boolean"}},
        "payload": {"type": "optional", "of": "any"}
      }
    },
    "blobs": {"fields": {"data": "any"}}
  }
})json";

Object Person(Object extra = {}) {
  Object fields{{"name", "Ada"}, {"age", 36.0}};
  for (auto& [k, v] : extra) fields[k] = v;
  return fields;
}

TEST_CASE("a document with every kind of field is stored and read back", "[schema][write]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"), kWriteSchema);
  const DocumentId project = MustInsert(*db, "projects", {{"title", "stagedb"}});
  Object fields =
      Person({{"level", Value::Int64(3)},
              {"admin", true},
              {"avatar", Bytes{std::string("\x00\x01\xff", 3)}},
              {"nothing", nullptr},
              {"nick", "ada"},
              {"status", "done"},
              {"kind", "person"},
              {"mixed", Value::Int64(7)},
              {"project", project.text()},
              {"tags", Array{"a", "b"}},
              {"meta", Object{{"source", "import"}, {"inner", Object{{"x", Value::Int64(1)}}}}},
              {"labels", Object{{"k1", Value::Int64(1)}, {"k2", Value::Int64(2)}}},
              {"refs", Object{{project.text(), true}}},
              {"payload", Array{nullptr, 1.5, Object{{"deep", Array{}}}}}});
  const DocumentId id = MustInsert(*db, "people", fields);
  std::optional<Document> doc = GetDoc(*db, id);
  REQUIRE(doc.has_value());
  for (const auto& [name, value] : fields) {
    INFO("field " << name);
    CHECK(doc->Get(name) == value);
  }
  CHECK(doc->Get("meta.inner.x") == Value::Int64(1));
  // A union of string and int64 accepts both.
  REQUIRE_OK(InsertOne(*db, "people", Person({{"mixed", "text"}})));
}

TEST_CASE("wrong types are refused naming table, field and value", "[schema][write]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"), kWriteSchema);
  CHECK_ERROR(InsertOne(*db, "people", {{"name", Value::Int64(4242)}, {"age", 1.0}}),
              absl::StatusCode::kInvalidArgument, "people", "name", "4242", "string");
  CHECK_ERROR(InsertOne(*db, "people", Person({{"age", "very-old"}})),
              absl::StatusCode::kInvalidArgument, "people", "age", "very-old");
  // "number" is float64: an int64 float64 cannot hold exactly is refused (numbers_test.cc has
  // the rule's other cases).
  CHECK_ERROR(InsertOne(*db, "people", Person({{"age", Value::Int64((int64_t{1} << 53) + 1)}})),
              absl::StatusCode::kInvalidArgument, "people", "age", "9007199254740993");
  CHECK_ERROR(InsertOne(*db, "people", Person({{"level", 2.5}})),
              absl::StatusCode::kInvalidArgument, "people", "level", "2.5");
  CHECK_ERROR(InsertOne(*db, "people", Person({{"admin", "yes-please"}})),
              absl::StatusCode::kInvalidArgument, "people", "admin", "yes-please");
  CHECK_ERROR(InsertOne(*db, "people", Person({{"avatar", "not-bytes"}})),
              absl::StatusCode::kInvalidArgument, "people", "avatar", "not-bytes");
  CHECK_ERROR(InsertOne(*db, "people", Person({{"nothing", false}})),
              absl::StatusCode::kInvalidArgument, "people", "nothing", "false");
  // optional is not nullable.
  CHECK_ERROR(InsertOne(*db, "people", Person({{"nick", nullptr}})),
              absl::StatusCode::kInvalidArgument, "people", "nick", "null");
  CHECK(All(*db, "people").empty());
}

TEST_CASE("missing required fields and undeclared fields are refused", "[schema][write]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"), kWriteSchema);
  CHECK_ERROR(InsertOne(*db, "people", {{"age", 1.0}}), absl::StatusCode::kInvalidArgument,
              "people", "name", "missing");
  CHECK_ERROR(InsertOne(*db, "people", Person({{"colour", "bright-red"}})),
              absl::StatusCode::kInvalidArgument, "people", "colour", "bright-red");
  // `any` still needs a value.
  CHECK_ERROR(InsertOne(*db, "blobs", {}), absl::StatusCode::kInvalidArgument, "blobs", "data");
  // Unknown table.
  CHECK_ERROR(InsertOne(*db, "ghosts", {{"x", 1.0}}), absl::StatusCode::kInvalidArgument, "ghosts");
  // Optional fields may be missing.
  REQUIRE_OK(InsertOne(*db, "people", Person()));
  CHECK(All(*db, "people").size() == 1);
  CHECK(All(*db, "blobs").empty());
}

TEST_CASE("id(table) accepts only well-formed ids of that table", "[schema][write]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"), kWriteSchema);
  const DocumentId project = MustInsert(*db, "projects", {{"title", "p"}});
  const DocumentId person = MustInsert(*db, "people", Person());
  REQUIRE_OK(InsertOne(*db, "people", Person({{"project", project.text()}})));
  // An id of another table.
  CHECK_ERROR(InsertOne(*db, "people", Person({{"project", person.text()}})),
              absl::StatusCode::kInvalidArgument, "people", "project", "projects", person.text());
  // Malformed ids.
  CHECK_ERROR(InsertOne(*db, "people", Person({{"project", "not-an-id-at-all"}})),
              absl::StatusCode::kInvalidArgument, "people", "project", "not-an-id-at-all");
  std::string mistyped = project.text();
  mistyped.back() = mistyped.back() == '0' ? '1' : '0';
  CHECK_ERROR(InsertOne(*db, "people", Person({{"project", mistyped}})),
              absl::StatusCode::kInvalidArgument, "people", "project", mistyped);
  // Not a string at all.
  CHECK_ERROR(InsertOne(*db, "people", Person({{"project", 12.0}})),
              absl::StatusCode::kInvalidArgument, "people", "project", "12");
  CHECK(All(*db, "people").size() == 2);
}

TEST_CASE("literal and union mismatches are refused", "[schema][write]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"), kWriteSchema);
  REQUIRE_OK(InsertOne(*db, "people", Person({{"status", "todo"}, {"kind", "person"}})));
  CHECK_ERROR(InsertOne(*db, "people", Person({{"kind", "robot-kind"}})),
              absl::StatusCode::kInvalidArgument, "people", "kind", "robot-kind");
  CHECK_ERROR(InsertOne(*db, "people", Person({{"status", "doing-it"}})),
              absl::StatusCode::kInvalidArgument, "people", "status", "doing-it");
  CHECK_ERROR(InsertOne(*db, "people", Person({{"mixed", 1.25}})),
              absl::StatusCode::kInvalidArgument, "people", "mixed", "1.25");
  CHECK(All(*db, "people").size() == 1);
}

TEST_CASE("errors inside objects and arrays name the nested path", "[schema][write]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"), kWriteSchema);
  CHECK_ERROR(InsertOne(*db, "people", Person({{"meta", Object{{"source", 5.5}}}})),
              absl::StatusCode::kInvalidArgument, "people", "meta.source", "5.5");
  CHECK_ERROR(InsertOne(*db, "people", Person({{"meta", Object{}}})),
              absl::StatusCode::kInvalidArgument, "people", "meta.source", "missing");
  CHECK_ERROR(
      InsertOne(*db, "people", Person({{"meta", Object{{"source", "s"}, {"bogus", "extra-val"}}}})),
      absl::StatusCode::kInvalidArgument, "people", "meta.bogus", "extra-val");
  CHECK_ERROR(
      InsertOne(*db, "people",
                Person({{"meta", Object{{"source", "s"}, {"inner", Object{{"x", "not-int"}}}}}})),
      absl::StatusCode::kInvalidArgument, "people", "meta.inner.x", "not-int");
  CHECK_ERROR(InsertOne(*db, "people", Person({{"meta", "flat-string"}})),
              absl::StatusCode::kInvalidArgument, "people", "meta", "flat-string");
  CHECK_ERROR(InsertOne(*db, "people", Person({{"tags", Array{"a", 2.75, "c"}}})),
              absl::StatusCode::kInvalidArgument, "people", "tags[1]", "2.75");
  CHECK_ERROR(InsertOne(*db, "people", Person({{"tags", "not-an-array"}})),
              absl::StatusCode::kInvalidArgument, "people", "tags", "not-an-array");
  REQUIRE_OK(InsertOne(*db, "people", Person({{"tags", Array{}}})));
  CHECK(All(*db, "people").size() == 1);
}

TEST_CASE("records check their keys and values", "[schema][write]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"), kWriteSchema);
  const DocumentId project = MustInsert(*db, "projects", {{"title", "p"}});
  const DocumentId person = MustInsert(*db, "people", Person());
  REQUIRE_OK(InsertOne(*db, "people", Person({{"labels", Object{}}})));
  REQUIRE_OK(InsertOne(*db, "people", Person({{"refs", Object{{project.text(), false}}}})));
  CHECK_ERROR(
      InsertOne(*db, "people",
                Person({{"labels", Object{{"good", Value::Int64(1)}, {"badkey", "bad-value"}}}})),
      absl::StatusCode::kInvalidArgument, "people", "labels", "badkey", "bad-value");
  // Keys must be ids of `projects`.
  CHECK_ERROR(InsertOne(*db, "people", Person({{"refs", Object{{"plainkey", true}}}})),
              absl::StatusCode::kInvalidArgument, "people", "refs", "plainkey");
  CHECK_ERROR(InsertOne(*db, "people", Person({{"refs", Object{{person.text(), true}}}})),
              absl::StatusCode::kInvalidArgument, "people", "refs", person.text());
  CHECK_ERROR(InsertOne(*db, "people", Person({{"refs", Object{{project.text(), 1.0}}}})),
              absl::StatusCode::kInvalidArgument, "people", "refs", project.text());
  CHECK_ERROR(InsertOne(*db, "people", Person({{"labels", Array{}}})),
              absl::StatusCode::kInvalidArgument, "people", "labels");
  CHECK(All(*db, "people").size() == 3);
}

TEST_CASE("any accepts every storable value", "[schema][write]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"), kWriteSchema);
  const std::vector<Value> values = {nullptr,
                                     Value::Int64(-5),
                                     2.5,
                                     true,
                                     "text",
                                     Bytes{"raw"},
                                     Array{1.0, "x", Array{}},
                                     Object{{"a", Object{{"b", nullptr}}}, {"_nested", 1.0}}};
  std::vector<DocumentId> ids;
  for (const Value& value : values) ids.push_back(MustInsert(*db, "blobs", {{"data", value}}));
  for (size_t i = 0; i < ids.size(); ++i) {
    std::optional<Document> doc = GetDoc(*db, ids[i]);
    REQUIRE(doc.has_value());
    CHECK(doc->Get("data") == values[i]);
  }
}

TEST_CASE("Patch and Replace are validated like Insert", "[schema][write]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"), kWriteSchema);
  const DocumentId id = MustInsert(*db, "people", Person({{"nick", "n"}}));
  auto patch = [&](Object fields) {
    return db->Mutate([&](Transaction& tx) { return tx.Patch(id, fields); });
  };
  auto replace = [&](Object fields) {
    return db->Mutate([&](Transaction& tx) { return tx.Replace(id, fields); });
  };
  CHECK_ERROR(patch({{"age", "patched-age"}}), absl::StatusCode::kInvalidArgument, "people", "age",
              "patched-age");
  CHECK_ERROR(patch({{"name", stagedb::Undefined{}}}), absl::StatusCode::kInvalidArgument, "people",
              "name", "missing");
  CHECK_ERROR(patch({{"undeclared_field", 1.0}}), absl::StatusCode::kInvalidArgument, "people",
              "undeclared_field");
  CHECK_ERROR(replace({{"name", "only-name"}}), absl::StatusCode::kInvalidArgument, "people", "age",
              "missing");
  CHECK_ERROR(replace(Person({{"tags", Array{"x", false}}})), absl::StatusCode::kInvalidArgument,
              "people", "tags[1]");
  std::optional<Document> doc = GetDoc(*db, id);
  REQUIRE(doc.has_value());
  CHECK(doc->Get("name") == Value("Ada"));
  CHECK(doc->Get("age") == Value(36.0));
  CHECK(doc->Get("nick") == Value("n"));
  // Removing an optional field is fine.
  REQUIRE_OK(patch({{"nick", stagedb::Undefined{}}}));
  CHECK(GetDoc(*db, id)->Get("nick").is_undefined());
}

// ---------------------------------------------------------------------------------------------
// Schema file errors at Open

TEST_CASE("schema files with errors are refused at Open with a clear message", "[schema][open]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  CHECK_ERROR(OpenStatus(path, "{\"tables\": {\"widgets\": "), absl::StatusCode::kInvalidArgument,
              "JSON");
  CHECK_ERROR(OpenStatus(path, R"({"tables": {"widgets": {"fields": {"colour": "strnig"}}}})"),
              absl::StatusCode::kInvalidArgument, "widgets", "colour", "strnig");
  CHECK_ERROR(
      OpenStatus(path,
                 R"({"tables": {"widgets": {"fields": {"colour": {"type": "mapping-type"}}}}})"),
      absl::StatusCode::kInvalidArgument, "widgets", "colour", "mapping-type");
  CHECK_ERROR(OpenStatus(path, R"({"tables": {"widgets": {"fields": {"colour": "string"},
                 "indexes": [{"name": "by_ghost", "fields": ["ghostfield"]}]}}})"),
              absl::StatusCode::kInvalidArgument, "widgets", "by_ghost", "ghostfield");
  CHECK_ERROR(OpenStatus(path, R"({"tables": {"widgets": {"fields": {"colour": "string"},
                 "indexes": [{"name": "by_colour", "fields": ["colour"]},
                             {"name": "by_colour", "fields": ["colour"]}]}}})"),
              absl::StatusCode::kInvalidArgument, "widgets", "by_colour");
  for (const std::string reserved : {"by_id", "by_creation_time"}) {
    CHECK_ERROR(OpenStatus(path, R"({"tables": {"widgets": {"fields": {"colour": "string"},
                 "indexes": [{"name": ")" +
                                     reserved + R"(", "fields": ["colour"]}]}}})"),
                absl::StatusCode::kInvalidArgument, "widgets", reserved);
  }
  CHECK_ERROR(OpenStatus(path, R"({"tables": {"widgets": {"fields": {
                 "owner": {"type": "id", "table": "ghost_table"}}}}})"),
              absl::StatusCode::kInvalidArgument, "widgets", "ghost_table");
  // None of the refused schemas was stored: the path opens with a valid schema afterwards.
  auto db = OpenDb(path, R"({"tables": {"widgets": {"fields": {"colour": "string"}}}})");
  REQUIRE_OK(InsertOne(*db, "widgets", {{"colour", "blue"}}));
}

TEST_CASE("schema_dir problems are refused naming the directory or file", "[schema][open]") {
  TempDir dir;
  const std::string missing = dir.Sub("no-such-schema-dir");
  CHECK_ERROR(Database::Open({.path = dir.Sub("db"), .schema_dir = missing}),
              absl::StatusCode::kInvalidArgument, "no-such-schema-dir");
  const std::string schema_dir = dir.Sub("schema");
  std::filesystem::create_directory(schema_dir);
  std::ofstream(schema_dir + "/good.json") << R"({"tables": {"gadgets": {"fields": {}}}})";
  std::ofstream(schema_dir + "/broken-file.json") << R"({"tables": )";
  std::ofstream(schema_dir + "/ignored.txt") << "not a schema";
  CHECK_ERROR(Database::Open({.path = dir.Sub("db"), .schema_dir = schema_dir}),
              absl::StatusCode::kInvalidArgument, "broken-file.json");
  std::filesystem::remove(schema_dir + "/broken-file.json");
  // Files that are not *.json are ignored.
  absl::StatusOr<std::unique_ptr<Database>> db =
      Database::Open({.path = dir.Sub("db"), .schema_dir = schema_dir});
  REQUIRE_OK(db);
  REQUIRE_OK(InsertOne(**db, "gadgets", {}));
}

TEST_CASE("a table declared in two files of a schema_dir is refused", "[schema][open]") {
  TempDir dir;
  const std::string schema_dir = dir.Sub("schema");
  std::filesystem::create_directory(schema_dir);
  std::ofstream(schema_dir + "/a.json")
      << R"({"tables": {"gadgets": {"fields": {"x": "string"}}}})";
  std::ofstream(schema_dir + "/b.json")
      << R"({"tables": {"gadgets": {"fields": {"y": "string"}}, "other": {"fields": {}}}})";
  absl::StatusOr<std::unique_ptr<Database>> db =
      Database::Open({.path = dir.Sub("db"), .schema_dir = schema_dir});
  CHECK_ERROR(db, absl::StatusCode::kInvalidArgument, "gadgets");

  // Two files declaring different tables merge; an id(table) may reference the other file.
  std::filesystem::remove(schema_dir + "/b.json");
  std::ofstream(schema_dir + "/b.json")
      << R"({"tables": {"parts": {"fields": {"gadget": {"type": "id", "table": "gadgets"}}}}})";
  db = Database::Open({.path = dir.Sub("db"), .schema_dir = schema_dir});
  REQUIRE_OK(db);
  const DocumentId gadget = MustInsert(**db, "gadgets", {{"x", "g"}});
  REQUIRE_OK(InsertOne(**db, "parts", {{"gadget", gadget.text()}}));
}

TEST_CASE("the repository's schema directory loads", "[schema][open]") {
  TempDir dir;
  const std::string schema_dir = stagedb::testing::SourceDir() + "/schema";
  REQUIRE(std::filesystem::is_directory(schema_dir));
  absl::StatusOr<std::unique_ptr<Database>> db =
      Database::Open({.path = dir.Sub("db"), .schema_dir = schema_dir});
  REQUIRE_OK(db);
  const nlohmann::json stored = nlohmann::json::parse((*db)->SchemaJson());
  size_t declared = 0;
  for (const auto& entry : std::filesystem::directory_iterator(schema_dir)) {
    if (entry.path().extension() != ".json") continue;
    std::ifstream in(entry.path());
    const nlohmann::json file = nlohmann::json::parse(in);
    for (const auto& [table, unused] : file["tables"].items()) {
      INFO("table " << table << " from " << entry.path());
      CHECK(stored["tables"].contains(table));
      ++declared;
      // Every declared table can be queried (and is empty).
      CHECK(All(**db, table).empty());
    }
  }
  CHECK(declared > 0);
  CHECK(stored["tables"].size() == declared);
}

// ---------------------------------------------------------------------------------------------
// Schema evolution

// How many entries the store's data database holds (documents and index entries); the
// database must be closed.
size_t DataEntries(const std::string& path) {
  absl::StatusOr<std::unique_ptr<stagedb::internal::LmdbStore>> store =
      stagedb::internal::LmdbStore::Open(path, size_t{16} << 20, size_t{1} << 30);
  REQUIRE_OK(store);
  absl::StatusOr<std::unique_ptr<stagedb::internal::StoreTxn>> txn = (*store)->BeginRead();
  REQUIRE_OK(txn);
  absl::StatusOr<stagedb::internal::StoreCursor> cursor =
      (*txn)->OpenCursor(stagedb::internal::StoreDb::kData);
  REQUIRE_OK(cursor);
  size_t n = 0;
  for (absl::StatusOr<bool> found = cursor->SeekAtOrAfter("");; found = cursor->Next()) {
    REQUIRE_OK(found);
    if (!*found) break;
    ++n;
  }
  return n;
}

constexpr const char* kNotesV1 = R"json({
  "tables": {
    "notes": {
      "fields": {"title": "string", "n": "number", "extra": {"type": "optional", "of": "any"}},
      "indexes": [{"name": "by_title", "fields": ["title"]}]
    },
    "people": {"fields": {"name": "string"}}
  }
})json";

struct Seeded {
  std::vector<DocumentId> notes;
  std::vector<DocumentId> people;
};

// Notes with n = 3, 1, 2 (inserted in that order) and two people.
Seeded Seed(Database& db) {
  Seeded s;
  for (double n : {3.0, 1.0, 2.0}) {
    s.notes.push_back(MustInsert(
        db, "notes", {{"title", "note-" + std::to_string(static_cast<int>(n))}, {"n", n}}));
  }
  s.people.push_back(MustInsert(db, "people", {{"name", "p1"}}));
  s.people.push_back(MustInsert(db, "people", {{"name", "p2"}}));
  return s;
}

std::vector<double> Ns(const std::vector<Document>& docs) {
  std::vector<double> ns;
  for (const Document& d : docs) ns.push_back(d.Get("n").as_float64());
  return ns;
}

// Replaces the first occurrence of `from` in `text` (which must contain it).
std::string Edit(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  REQUIRE(at != std::string::npos);
  return text.replace(at, from.size(), to);
}

TEST_CASE("compatible schema changes are applied on reopen", "[schema][evolution]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  auto db = OpenDb(path, kNotesV1);
  const Seeded seeded = Seed(*db);
  const stagedb::Timestamp ts = db->LastCommitTimestamp();
  db.reset();

  SECTION("a new table") {
    const std::string v2 =
        Edit(kNotesV1, R"("people")", R"("labels": {"fields": {"text": "string"}}, "people")");
    db = OpenDb(path, v2);
    REQUIRE_OK(InsertOne(*db, "labels", {{"text", "new"}}));
    CHECK(All(*db, "labels").size() == 1);
    CHECK(All(*db, "notes").size() == 3);
  }
  SECTION("a new optional field") {
    const std::string v2 = Edit(kNotesV1, R"("n": "number",)",
                                R"("n": "number", "color": {"type": "optional", "of": "string"},)");
    db = OpenDb(path, v2);
    REQUIRE_OK(InsertOne(*db, "notes", {{"title", "c"}, {"n", 9.0}, {"color", "red"}}));
    CHECK(All(*db, "notes").size() == 4);
    CHECK_ERROR(InsertOne(*db, "notes", {{"title", "c"}, {"n", 9.0}, {"color", 1.0}}),
                absl::StatusCode::kInvalidArgument, "notes", "color");
  }
  SECTION("a new index is backfilled") {
    const std::string v2 = Edit(kNotesV1, R"({"name": "by_title", "fields": ["title"]})",
                                R"({"name": "by_title", "fields": ["title"]},
                                   {"name": "by_n", "fields": ["n"]})");
    db = OpenDb(path, v2);
    CHECK(Ns(All(*db, "notes", "by_n")) == std::vector<double>{1.0, 2.0, 3.0});
    CHECK(Ns(All(*db, "notes", "by_n", stagedb::Gte("n", 2.0))) == std::vector<double>{2.0, 3.0});
    CHECK(Ns(All(*db, "notes", "by_n", stagedb::Eq("n", 1.0))) == std::vector<double>{1.0});
    // The new index is maintained from now on.
    REQUIRE_OK(InsertOne(*db, "notes", {{"title", "x"}, {"n", 1.5}}));
    CHECK(Ns(All(*db, "notes", "by_n")) == std::vector<double>{1.0, 1.5, 2.0, 3.0});
    // And it survives another reopen with the same schema.
    db.reset();
    db = OpenDb(path, v2);
    CHECK(Ns(All(*db, "notes", "by_n")) == std::vector<double>{1.0, 1.5, 2.0, 3.0});
  }
  SECTION("a new unique index over distinct values") {
    const std::string v2 = Edit(kNotesV1, R"({"name": "by_title", "fields": ["title"]})",
                                R"({"name": "by_title", "fields": ["title"]},
                                   {"name": "by_title_unique", "fields": ["title"], "unique": true})");
    db = OpenDb(path, v2);
    CHECK(All(*db, "notes", "by_title_unique").size() == 3);
    CHECK_ERROR(InsertOne(*db, "notes", {{"title", "note-1"}, {"n", 7.0}}),
                absl::StatusCode::kAlreadyExists, "notes.by_title_unique", "note-1");
  }
  SECTION("changing an index's fields rebuilds it") {
    const std::string v2 = Edit(kNotesV1, R"({"name": "by_title", "fields": ["title"]})",
                                R"({"name": "by_title", "fields": ["n", "title"]})");
    db = OpenDb(path, v2);
    CHECK(Ns(All(*db, "notes", "by_title")) == std::vector<double>{1.0, 2.0, 3.0});
    CHECK(Ns(All(*db, "notes", "by_title", stagedb::Eq("n", 2.0).Eq("title", "note-2"))) ==
          std::vector<double>{2.0});
    // The old shape of the index is gone.
    absl::StatusOr<std::vector<Document>> old_shape = db->Query([&](Reader& r) {
      return r.Table("notes").WithIndex("by_title", stagedb::Eq("title", "note-2")).Collect();
    });
    CHECK_ERROR(old_shape, absl::StatusCode::kInvalidArgument, "by_title", "title");
    // Changing it back rebuilds it again.
    db.reset();
    db = OpenDb(path, kNotesV1);
    std::vector<Document> by_title = All(*db, "notes", "by_title");
    REQUIRE(by_title.size() == 3);
    CHECK(by_title[0].Get("title") == Value("note-1"));
    CHECK(by_title[2].Get("title") == Value("note-3"));
  }
  SECTION("removing an index drops its entries; adding it back rebuilds it") {
    // notes: by_id, by_creation_time, by_title; people: by_id, by_creation_time.
    CHECK(DataEntries(path) == 3 * 3 + 2 * 2);
    const std::string without = Edit(kNotesV1, R"({"name": "by_title", "fields": ["title"]})", "");
    db = OpenDb(path, without);
    MustInsert(*db, "notes", {{"title", "note-0"}, {"n", 0.0}});
    db.reset();
    CHECK(DataEntries(path) == 4 * 2 + 2 * 2);
    db = OpenDb(path, kNotesV1);
    std::vector<Document> by_title = All(*db, "notes", "by_title");
    REQUIRE(by_title.size() == 4);
    CHECK(Ns(by_title) == std::vector<double>{0.0, 1.0, 2.0, 3.0});
    db.reset();
    CHECK(DataEntries(path) == 4 * 3 + 2 * 2);
    db = OpenDb(path, kNotesV1);
  }
  SECTION("a new optional field with an index on it, in one change") {
    std::string v2 = Edit(kNotesV1, R"("n": "number",)",
                          R"("n": "number", "meta": {"type": "optional", "of": {"type": "object",
                             "fields": {"rank": "float64"}}},)");
    v2 = Edit(v2, R"({"name": "by_title", "fields": ["title"]})",
              R"({"name": "by_title", "fields": ["title"]},
                 {"name": "by_rank", "fields": ["meta.rank", "title"]})");
    db = OpenDb(path, v2);
    // The old documents have no meta: they sort first (missing < any value), by title.
    std::vector<Document> by_rank = All(*db, "notes", "by_rank");
    CHECK(Ns(by_rank) == std::vector<double>{1.0, 2.0, 3.0});
    REQUIRE_OK(db->Mutate([&](Transaction& tx) {
      return tx.Patch(seeded.notes[1], {{"meta", Object{{"rank", -1.0}}}});
    }));
    CHECK(Ns(All(*db, "notes", "by_rank")) == std::vector<double>{2.0, 3.0, 1.0});
    CHECK(Ns(All(*db, "notes", "by_rank", stagedb::Eq("meta.rank", -1.0))) ==
          std::vector<double>{1.0});
  }
  SECTION("removing an empty table and widening a type") {
    std::string v2 =
        Edit(kNotesV1, R"("title": "string", "n": "number")",
             R"("title": "string", "n": {"type": "union", "of": ["number", "string"]})");
    db = OpenDb(path, v2);
    REQUIRE_OK(InsertOne(*db, "notes", {{"title", "w"}, {"n", "wide"}}));
    db.reset();
    // people has documents; a table without any can be dropped.
    v2 = Edit(v2, R"("people": {"fields": {"name": "string"}})",
              R"("people": {"fields": {"name": "string"}}, "empty_table": {"fields": {}})");
    db = OpenDb(path, v2);
    db.reset();
    v2 = Edit(v2, R"(, "empty_table": {"fields": {}})", "");
    db = OpenDb(path, v2);
    CHECK(All(*db, "notes").size() == 4);
  }
  // Whatever the change, the documents are intact and the commit timestamp is unchanged by Open.
  for (const DocumentId& id : seeded.notes) CHECK(GetDoc(*db, id).has_value());
  for (const DocumentId& id : seeded.people) CHECK(GetDoc(*db, id).has_value());
  CHECK(db->LastCommitTimestamp() >= ts);
}

// Opens `path` with `next` expecting a refusal, then checks that the old schema and data are
// still in force.
void ExpectRefusedThenIntact(const std::string& path, const std::string& next,
                             const std::string& stored_schema, const Seeded& seeded,
                             std::initializer_list<std::string> needles,
                             absl::StatusCode code = absl::StatusCode::kFailedPrecondition) {
  absl::Status refused = OpenStatus(path, next);
  CheckError(refused, code, needles);
  // Opening without a schema uses the stored (old) one.
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open({.path = path});
  REQUIRE_OK(db);
  CHECK((*db)->SchemaJson() == stored_schema);
  CHECK(All(**db, "notes").size() == seeded.notes.size());
  CHECK(All(**db, "people").size() == seeded.people.size());
  CHECK(Ns(All(**db, "notes")) == std::vector<double>{3.0, 1.0, 2.0});
  CHECK(All(**db, "notes", "by_title").size() == seeded.notes.size());
  // Writes are still validated by the old schema.
  REQUIRE_OK(InsertOne(**db, "notes", {{"title", "after"}, {"n", 0.5}}));
  absl::StatusOr<std::vector<Document>> after = (*db)->Query([&](Reader& r) {
    return r.Table("notes").WithIndex("by_title", stagedb::Eq("title", "after")).Collect();
  });
  REQUIRE_OK(after);
  CHECK(after->size() == 1);
  REQUIRE_OK((*db)->Mutate([&](Transaction& tx) { return tx.Delete(after->front().id()); }));
}

TEST_CASE("incompatible schema changes are refused and leave the database as it was",
          "[schema][evolution]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  auto db = OpenDb(path, kNotesV1);
  const Seeded seeded = Seed(*db);
  REQUIRE_OK(db->Mutate([&](Transaction& tx) {
    return tx.Patch(seeded.notes[0], {{"extra", 5.0}});
  }));
  const std::string stored = db->SchemaJson();
  db.reset();

  SECTION("required fields added to two tables: both named in one error") {
    std::string v2 = Edit(kNotesV1, R"("n": "number",)", R"("n": "number", "priority": "int64",)");
    v2 = Edit(v2, R"("name": "string")", R"("name": "string", "email": "string")");
    ExpectRefusedThenIntact(path, v2, stored, seeded, {"notes", "priority", "people", "email"});
  }
  SECTION("narrowing a type") {
    const std::string v2 = Edit(kNotesV1, R"("extra": {"type": "optional", "of": "any"})",
                                R"("extra": {"type": "optional", "of": "string"})");
    ExpectRefusedThenIntact(path, v2, stored, seeded, {"notes", "extra"});
  }
  SECTION("number to int64") {
    const std::string v2 = Edit(kNotesV1, R"("n": "number")", R"("n": "int64")");
    ExpectRefusedThenIntact(path, v2, stored, seeded, {"notes", "int64"});
  }
  SECTION("removing a table that has documents") {
    const std::string v2 = Edit(kNotesV1, R"(,
    "people": {"fields": {"name": "string"}})",
                                "");
    ExpectRefusedThenIntact(path, v2, stored, seeded, {"people"});
  }
  SECTION("removing a field that documents use") {
    const std::string v2 = Edit(kNotesV1, R"(, "extra": {"type": "optional", "of": "any"})", "");
    ExpectRefusedThenIntact(path, v2, stored, seeded, {"notes", "extra"});
  }
  SECTION("an index made unique over duplicate values") {
    const std::string v2 = Edit(kNotesV1, R"({"name": "by_title", "fields": ["title"]})",
                                R"({"name": "by_title", "fields": ["title"]},
                                   {"name": "by_n", "fields": ["n"]})");
    db = OpenDb(path, v2);
    MustInsert(*db, "notes", {{"title", "same-n"}, {"n", 1.0}});
    REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Delete(seeded.notes.back()); }));
    MustInsert(*db, "notes", {{"title", "note-2"}, {"n", 2.0}});
    db.reset();
    const std::string v3 = Edit(v2, R"({"name": "by_n", "fields": ["n"]})",
                                R"({"name": "by_n", "fields": ["n"], "unique": true})");
    CHECK_ERROR(OpenStatus(path, v3), absl::StatusCode::kFailedPrecondition, "notes", "by_n",
                "1.0");
    db = OpenDb(path, v2);
    CHECK(Ns(All(*db, "notes", "by_n")) == std::vector<double>{1.0, 1.0, 2.0, 3.0});
  }
  SECTION("an invalid schema on an existing database") {
    ExpectRefusedThenIntact(path, R"({"tables": {"notes": {"fields": {"title": "strin"}}}})",
                            stored, seeded, {"notes", "title", "strin"},
                            absl::StatusCode::kInvalidArgument);
  }
  SECTION("a new unique index over duplicate values") {
    db = OpenDb(path, kNotesV1);
    MustInsert(*db, "notes", {{"title", "dup-title"}, {"n", 10.0}});
    MustInsert(*db, "notes", {{"title", "dup-title"}, {"n", 11.0}});
    db.reset();
    const std::string v2 = Edit(kNotesV1, R"({"name": "by_title", "fields": ["title"]})",
                                R"({"name": "by_title", "fields": ["title"]},
                                   {"name": "by_title_u", "fields": ["title"], "unique": true})");
    CHECK_ERROR(OpenStatus(path, v2), absl::StatusCode::kFailedPrecondition, "notes", "by_title_u",
                "dup-title");
    auto again = OpenDb(path, kNotesV1);
    CHECK(All(*again, "notes").size() == 5);
    CHECK(All(*again, "notes", "by_title").size() == 5);
    // The refused index was not kept half-built: a query through it is an unknown index.
    absl::StatusOr<std::vector<Document>> through =
        again->Query([&](Reader& r) { return r.Table("notes").WithIndex("by_title_u").Collect(); });
    CHECK_ERROR(through, absl::StatusCode::kInvalidArgument, "by_title_u");
  }
}

TEST_CASE("SchemaJson reflects the stored schema; no schema option uses it",
          "[schema][evolution]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  auto db = OpenDb(path, kNotesV1);
  const nlohmann::json schema = nlohmann::json::parse(db->SchemaJson());
  CHECK(schema["tables"].contains("notes"));
  CHECK(schema["tables"].contains("people"));
  CHECK(schema["tables"]["notes"]["fields"].contains("title"));
  const nlohmann::json n_type = schema["tables"]["notes"]["fields"]["n"];
  CHECK((n_type == "number" || n_type == "float64"));
  Seed(*db);
  const std::string v1_text = db->SchemaJson();
  db.reset();

  // SchemaJson is itself a valid schema file: opening a fresh database with it works.
  {
    TempDir other;
    auto copy = OpenDb(other.Sub("db"), v1_text);
    CHECK(copy->SchemaJson() == v1_text);
  }

  const std::string v2 = Edit(kNotesV1, R"("n": "number",)",
                              R"("n": "number", "color": {"type": "optional", "of": "string"},)");
  db = OpenDb(path, v2);
  const std::string v2_text = db->SchemaJson();
  CHECK(v2_text != v1_text);
  CHECK(nlohmann::json::parse(v2_text)["tables"]["notes"]["fields"].contains("color"));
  db.reset();

  absl::StatusOr<std::unique_ptr<Database>> stored = Database::Open({.path = path});
  REQUIRE_OK(stored);
  CHECK((*stored)->SchemaJson() == v2_text);
  // The stored schema validates writes.
  REQUIRE_OK(InsertOne(**stored, "notes", {{"title", "t"}, {"n", 1.0}, {"color", "red"}}));
  CHECK_ERROR(InsertOne(**stored, "notes", {{"title", "t"}}), absl::StatusCode::kInvalidArgument,
              "notes", "n");
  CHECK(All(**stored, "notes", "by_title").size() == 4);

  // A brand-new database with no schema has no tables.
  TempDir empty;
  absl::StatusOr<std::unique_ptr<Database>> blank = Database::Open({.path = empty.Sub("db")});
  REQUIRE_OK(blank);
  CHECK(nlohmann::json::parse((*blank)->SchemaJson())["tables"].empty());
  CHECK_ERROR(InsertOne(**blank, "notes", {{"title", "t"}, {"n", 1.0}}),
              absl::StatusCode::kInvalidArgument, "notes");
}

}  // namespace

TEST_CASE("an index path must be able to exist in the table's documents", "[schema]") {
  TempDir dir;
  auto open = [&](const std::string& fields, const std::string& index_field) {
    return Database::Open({.path = dir.Sub("db"),
                           .schema_json = R"({"tables": {"t": {"fields": )" + fields +
                                          R"(, "indexes": [{"name": "by_x", "fields": [")" +
                                          index_field + R"("]}]}}})"});
  };
  // Through a string: refused, naming the index and the path.
  CHECK_ERROR(open(R"({"name": "string"})", "name.first"), absl::StatusCode::kInvalidArgument,
              "by_x", "name.first");
  // Through an optional object, a union with an object, any and record: accepted.
  for (
      const auto& [fields, path] : std::vector<std::pair<std::string, std::string>>{
          {R"({"name": {"type": "optional", "of": {"type": "object", "fields": {"first": "string"}}}})",
           "name.first"},
          {R"({"name": {"type": "union", "of": ["null", {"type": "object", "fields": {"first": "string"}}]}})",
           "name.first"},
          {R"({"meta": "any"})", "meta.a.b"},
          {R"({"meta": {"type": "record", "keys": "string", "values": "int64"}})", "meta.k"},
      }) {
    INFO(fields << " " << path);
    absl::StatusOr<std::unique_ptr<Database>> db = open(fields, path);
    CHECK(db.ok());
  }
}

TEST_CASE("a migration walks a large table in batches: backfill and duplicates past the first",
          "[schema]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  const std::string before = R"({"tables": {"docs": {"fields": {
      "n": "int64", "code": "string", "payload": "string"}}}})";
  const size_t count = 3000;  // about 7.5 MB of documents: several migration batches
  {
    auto db = OpenDb(path, before);
    for (size_t start = 0; start < count; start += 1000) {
      REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
        for (size_t i = start; i < start + 1000; ++i) {
          // The last document repeats the first's code.
          const std::string code = i == count - 1 ? "c0" : "c" + std::to_string(i);
          absl::Status s = tx.Insert("docs", {{"n", Value(count - i)},
                                              {"code", code},
                                              {"payload", std::string(2500, 'p')}})
                               .status();
          if (!s.ok()) return s;
        }
        return absl::OkStatus();
      }));
    }
  }
  const std::string with_index = R"({"tables": {"docs": {"fields": {
      "n": "int64", "code": "string", "payload": "string"},
      "indexes": [{"name": "by_n", "fields": ["n"]}]}}})";
  {
    auto db = OpenDb(path, with_index);
    absl::StatusOr<std::vector<Document>> docs =
        db->Query([](Reader& r) { return r.Table("docs").WithIndex("by_n").Collect(); });
    REQUIRE_OK(docs);
    REQUIRE(docs->size() == count);
    for (size_t i = 0; i < count; ++i) CHECK((*docs)[i]["n"].as_int64() == int64_t(i + 1));
  }
  const std::string with_unique = R"({"tables": {"docs": {"fields": {
      "n": "int64", "code": "string", "payload": "string"},
      "indexes": [{"name": "by_n", "fields": ["n"]},
                  {"name": "by_code", "fields": ["code"], "unique": true}]}}})";
  CHECK_ERROR(Database::Open({.path = path, .schema_json = with_unique}),
              absl::StatusCode::kFailedPrecondition, "by_code", "1 duplicate", "\"c0\"");
}

TEST_CASE("misspelt schema members and misplaced optional are refused", "[schema]") {
  TempDir dir;
  auto open = [&](const std::string& schema) {
    return Database::Open({.path = dir.Sub("db"), .schema_json = schema});
  };
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"a": "string"},
                  "index": [{"name": "x", "fields": ["a"]}]}}})"),
              absl::StatusCode::kInvalidArgument, "table \"t\"", "unknown member \"index\"");
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"a": "string"},
                  "indexes": [{"name": "x", "fields": ["a"], "uniqe": true}]}}})"),
              absl::StatusCode::kInvalidArgument, "index \"x\"", "unknown member \"uniqe\"");
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"a": "string"}}}, "extra": 1})"),
              absl::StatusCode::kInvalidArgument, "unknown member \"extra\"");
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"a": {"type": "string", "of": "int64"}}}}})"),
              absl::StatusCode::kInvalidArgument, "t.a", "unknown member \"of\"");
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"a": {"type": "array",
                  "items": {"type": "optional", "of": "string"}}}}}})"),
              absl::StatusCode::kInvalidArgument, "t.a", "optional");
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"a": {"type": "union",
                  "of": [{"type": "optional", "of": "string"}, "null"]}}}}})"),
              absl::StatusCode::kInvalidArgument, "t.a", "optional");
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"a": {"type": "optional",
                  "of": {"type": "optional", "of": "string"}}}}}})"),
              absl::StatusCode::kInvalidArgument, "t.a", "optional");
  // Optional as a nested object's field is where it belongs.
  absl::StatusOr<std::unique_ptr<Database>> db =
      open(R"({"tables": {"t": {"fields": {"a": {"type": "object",
                  "fields": {"b": {"type": "optional", "of": "string"}}}}}}})");
  CHECK(db.ok());
}
