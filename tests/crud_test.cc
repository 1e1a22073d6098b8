// CRUD tests: Insert, Get, Patch, Replace and Delete; reads of a transaction's own writes; the
// query terminal calls; unique indexes; snapshots and commit timestamps; nesting rules; and
// serializability of concurrent read-modify-write mutations.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using stagedb::Array;
using stagedb::Database;
using stagedb::Document;
using stagedb::DocumentId;
using stagedb::Object;
using stagedb::Reader;
using stagedb::SortOrder;
using stagedb::Timestamp;
using stagedb::Transaction;
using stagedb::Value;
using stagedb::testing::TempDir;

using stagedb::testing::Msg;
using stagedb::testing::MustInsert;
using stagedb::testing::OpenOrFail;

constexpr const char* kSchema = R"json({
  "tables": {
    "items": {
      "fields": {
        "name": "string",
        "qty": "int64",
        "tag": {"type": "optional", "of": "string"},
        "note": {"type": "optional", "of": "string"}
      },
      "indexes": [
        {"name": "by_name", "fields": ["name"]},
        {"name": "by_qty", "fields": ["qty"]}
      ]
    },
    "products": {
      "fields": {"sku": "string", "price": "number"},
      "indexes": [{"name": "by_sku", "fields": ["sku"], "unique": true}]
    },
    "counters": {
      "fields": {"name": "string", "value": "int64"},
      "indexes": [{"name": "by_name", "fields": ["name"], "unique": true}]
    }
  }
})json";

std::unique_ptr<Database> OpenDb(const std::string& path) {
  return OpenOrFail({.path = path, .schema_json = kSchema});
}

Object Item(const std::string& name, int64_t qty) {
  return {{"name", name}, {"qty", Value::Int64(qty)}};
}

std::optional<Document> GetDoc(Database& db, const DocumentId& id) {
  absl::StatusOr<std::optional<Document>> doc = db.Query([&](Reader& r) { return r.Get(id); });
  INFO("Get " << id.text() << ": " << doc.status().ToString());
  REQUIRE(doc.ok());
  return *std::move(doc);
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

std::vector<std::string> Names(const std::vector<Document>& docs) {
  std::vector<std::string> names;
  for (const Document& d : docs) names.push_back(d.Get("name").as_string());
  return names;
}

std::vector<std::string> Names(const absl::StatusOr<std::vector<Document>>& docs) {
  INFO(docs.status().ToString());
  REQUIRE(docs.ok());
  return Names(*docs);
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("Insert assigns system fields and Get returns the document", "[crud]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const double before_ms = absl::ToUnixMillis(absl::Now()) - 1.0;
  const DocumentId id = MustInsert(*db, "items", {{"name", "a"}, {"qty", Value::Int64(5)}});
  const double after_ms = absl::ToUnixMillis(absl::Now()) + 1.0;
  CHECK_FALSE(id.empty());
  std::optional<Document> doc = GetDoc(*db, id);
  REQUIRE(doc.has_value());
  CHECK(doc->id() == id);
  CHECK(doc->Get("_id") == Value(id.text()));
  REQUIRE(doc->Get("_creationTime").is_float64());
  CHECK(doc->creation_time() == doc->Get("_creationTime").as_float64());
  CHECK(doc->creation_time() >= before_ms);
  CHECK(doc->creation_time() <= after_ms);
  CHECK(doc->Get("name") == Value("a"));
  CHECK(doc->Get("qty") == Value::Int64(5));
  CHECK(doc->fields().size() == 4);
  // Get by the id's text works too, and parses it.
  absl::StatusOr<std::optional<Document>> by_text =
      db->Query([&](Reader& r) { return r.Get(id.text()); });
  REQUIRE_OK(by_text);
  REQUIRE(by_text->has_value());
  CHECK(**by_text == *doc);
  absl::StatusOr<DocumentId> parsed = DocumentId::Parse(id.text());
  REQUIRE_OK(parsed);
  CHECK(*parsed == id);
  CHECK(parsed->table_number() == id.table_number());
  CHECK_ERROR(db->Query([&](Reader& r) { return r.Get("no-such-id!"); }),
              absl::StatusCode::kInvalidArgument, "no-such-id!");
  // User fields may not set system fields.
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Insert("items", {{"name", "a"}, {"qty", Value::Int64(1)}, {"_id", id.text()}});
  }),
              absl::StatusCode::kInvalidArgument, "_id");
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Insert("items", {{"name", "a"}, {"qty", Value::Int64(1)}, {"_creationTime", 1.0}});
  }),
              absl::StatusCode::kInvalidArgument, "_creationTime");
  CHECK(All(*db, "items").size() == 1);
}

TEST_CASE("Patch sets, overwrites and removes fields", "[crud]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const DocumentId id = MustInsert(
      *db, "items", {{"name", "a"}, {"qty", Value::Int64(1)}, {"tag", "t1"}, {"note", "keep"}});
  const Document before = *GetDoc(*db, id);
  REQUIRE_OK(db->Mutate([&](Transaction& tx) {
    return tx.Patch(id, {{"qty", Value::Int64(2)},         // overwrite
                         {"tag", stagedb::Undefined{}}});  // remove
  }));
  Document after = *GetDoc(*db, id);
  CHECK(after.Get("qty") == Value::Int64(2));
  CHECK(after.Get("tag").is_undefined());
  CHECK(!after.fields().contains("tag"));
  CHECK(after.Get("note") == Value("keep"));
  CHECK(after.Get("name") == Value("a"));
  CHECK(after.Get("_id") == before.Get("_id"));
  CHECK(after.Get("_creationTime") == before.Get("_creationTime"));
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Patch(id, {{"tag", "t2"}}); }));
  CHECK(GetDoc(*db, id)->Get("tag") == Value("t2"));
  // An empty patch is fine and changes nothing.
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Patch(id, {}); }));
  CHECK(GetDoc(*db, id)->Get("tag") == Value("t2"));
  // Removing a field that is not there is fine.
  REQUIRE_OK(db->Mutate([&](Transaction& tx) {
    return tx.Patch(id, {{"tag", stagedb::Undefined{}}});
  }));
  REQUIRE_OK(db->Mutate([&](Transaction& tx) {
    return tx.Patch(id, {{"tag", stagedb::Undefined{}}});
  }));
  CHECK(GetDoc(*db, id)->Get("tag").is_undefined());
}

TEST_CASE("Patch cannot change system fields", "[crud]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const DocumentId id = MustInsert(*db, "items", Item("a", 1));
  const DocumentId other = MustInsert(*db, "items", Item("b", 2));
  const Document before = *GetDoc(*db, id);
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Patch(id, {{"_id", other.text()}});
  }),
              absl::StatusCode::kInvalidArgument, "_id");
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Patch(id, {{"_creationTime", 5.0}});
  }),
              absl::StatusCode::kInvalidArgument, "_creationTime");
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Patch(id, {{"_id", stagedb::Undefined{}}});
  }),
              absl::StatusCode::kInvalidArgument, "_id");
  CHECK(*GetDoc(*db, id) == before);
  CHECK(All(*db, "items").size() == 2);
}

TEST_CASE("Replace replaces user fields and keeps system fields", "[crud]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const DocumentId id =
      MustInsert(*db, "items", {{"name", "a"}, {"qty", Value::Int64(1)}, {"tag", "gone"}});
  const Document before = *GetDoc(*db, id);
  REQUIRE_OK(db->Mutate([&](Transaction& tx) {
    return tx.Replace(id, {{"name", "b"}, {"qty", Value::Int64(9)}, {"note", "new"}});
  }));
  const Document after = *GetDoc(*db, id);
  CHECK(after.id() == id);
  CHECK(after.Get("_id") == before.Get("_id"));
  CHECK(after.Get("_creationTime") == before.Get("_creationTime"));
  CHECK(after.Get("name") == Value("b"));
  CHECK(after.Get("qty") == Value::Int64(9));
  CHECK(after.Get("note") == Value("new"));
  CHECK(after.Get("tag").is_undefined());
  CHECK(after.fields().size() == 5);
  // Indexes follow the replacement.
  CHECK(Names(All(*db, "items", "by_name", stagedb::Eq("name", "a"))).empty());
  CHECK(Names(All(*db, "items", "by_name", stagedb::Eq("name", "b"))) ==
        std::vector<std::string>{"b"});
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Replace(id, {{"name", "c"}, {"qty", Value::Int64(1)}, {"_id", "x"}});
  }),
              absl::StatusCode::kInvalidArgument, "_id");
}

TEST_CASE("Delete removes the document; deleting twice is NotFound", "[crud]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const DocumentId id = MustInsert(*db, "items", Item("doomed", 3));
  const DocumentId keep = MustInsert(*db, "items", Item("kept", 4));
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Delete(id); }));
  CHECK_FALSE(GetDoc(*db, id).has_value());
  CHECK(Names(All(*db, "items")) == std::vector<std::string>{"kept"});
  CHECK(Names(All(*db, "items", "by_name")) == std::vector<std::string>{"kept"});
  CHECK(Names(All(*db, "items", "by_qty")) == std::vector<std::string>{"kept"});
  CHECK_ERROR(db->Mutate([&](Transaction& tx) { return tx.Delete(id); }),
              absl::StatusCode::kNotFound, "items", id.text());
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Patch(id, {{"qty", Value::Int64(1)}});
  }),
              absl::StatusCode::kNotFound, "items", id.text());
  CHECK_ERROR(db->Mutate([&](Transaction& tx) { return tx.Replace(id, Item("x", 1)); }),
              absl::StatusCode::kNotFound, "items", id.text());
  // Deleting twice inside one mutation.
  const DocumentId twice = MustInsert(*db, "items", Item("twice", 5));
  absl::Status second;
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    if (absl::Status s = tx.Delete(twice); !s.ok()) return s;
    second = tx.Delete(twice);
    return absl::OkStatus();
  }));
  CHECK_ERROR(second, absl::StatusCode::kNotFound, twice.text());
  CHECK_FALSE(GetDoc(*db, twice).has_value());
  CHECK(GetDoc(*db, keep).has_value());
}

TEST_CASE("a mutation reads its own writes", "[crud]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const DocumentId a = MustInsert(*db, "items", Item("a", 10));
  const DocumentId b = MustInsert(*db, "items", Item("b", 20));
  const DocumentId c = MustInsert(*db, "items", Item("c", 30));
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    // Insert, then find it by index, by id and by a scan.
    absl::StatusOr<DocumentId> d = tx.Insert("items", Item("d", 15));
    if (!d.ok()) return d.status();
    absl::StatusOr<std::optional<Document>> found =
        tx.Table("items").WithIndex("by_name", stagedb::Eq("name", "d")).Unique();
    REQUIRE_OK(found);
    REQUIRE(found->has_value());
    CHECK((*found)->id() == *d);
    absl::StatusOr<std::optional<Document>> got = tx.Get(*d);
    REQUIRE_OK(got);
    CHECK(got->has_value());
    CHECK(Names(tx.Table("items").WithIndex("by_qty").Collect()) ==
          std::vector<std::string>{"a", "d", "b", "c"});
    CHECK(Names(tx.Table("items").Collect()) == std::vector<std::string>{"a", "b", "c", "d"});
    CHECK(Names(tx.Table("items").Order(SortOrder::kDesc).Collect()) ==
          std::vector<std::string>{"d", "c", "b", "a"});

    // Delete, then it is gone from every index.
    if (absl::Status s = tx.Delete(b); !s.ok()) return s;
    CHECK(
        Names(tx.Table("items").WithIndex("by_name", stagedb::Eq("name", "b")).Collect()).empty());
    CHECK(Names(tx.Table("items").WithIndex("by_qty").Collect()) ==
          std::vector<std::string>{"a", "d", "c"});
    absl::StatusOr<std::optional<Document>> gone = tx.Get(b);
    REQUIRE_OK(gone);
    CHECK_FALSE(gone->has_value());

    // Patch moves a document within an index.
    if (absl::Status s = tx.Patch(a, {{"qty", Value::Int64(100)}}); !s.ok()) return s;
    CHECK(Names(tx.Table("items").WithIndex("by_qty").Collect()) ==
          std::vector<std::string>{"d", "c", "a"});
    CHECK(Names(tx.Table("items").WithIndex("by_qty").Order(SortOrder::kDesc).Collect()) ==
          std::vector<std::string>{"a", "c", "d"});
    CHECK(Names(tx.Table("items")
                    .WithIndex("by_qty",
                               stagedb::Gte("qty", Value::Int64(15)).Lt("qty", Value::Int64(100)))
                    .Collect()) == std::vector<std::string>{"d", "c"});
    // Patch of a document inserted in this mutation.
    if (absl::Status s = tx.Patch(*d, {{"name", "dd"}}); !s.ok()) return s;
    CHECK(Names(tx.Table("items").WithIndex("by_name").Collect()) ==
          std::vector<std::string>{"a", "c", "dd"});
    // Delete of a document inserted in this mutation.
    absl::StatusOr<DocumentId> e = tx.Insert("items", Item("e", 1));
    if (!e.ok()) return e.status();
    if (absl::Status s = tx.Delete(*e); !s.ok()) return s;
    CHECK(Names(tx.Table("items").WithIndex("by_name").Collect()) ==
          std::vector<std::string>{"a", "c", "dd"});
    return absl::OkStatus();
  }));
  // And the committed state is the same.
  CHECK(Names(All(*db, "items", "by_qty")) == std::vector<std::string>{"dd", "c", "a"});
  CHECK(Names(All(*db, "items", "by_name")) == std::vector<std::string>{"a", "c", "dd"});
  CHECK(Names(All(*db, "items")) == std::vector<std::string>{"a", "c", "dd"});
  CHECK(GetDoc(*db, c).has_value());
}

TEST_CASE("_creationTime increases in insertion order and ids sort by creation", "[crud]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  std::vector<DocumentId> ids;
  for (int i = 0; i < 5; ++i)
    ids.push_back(MustInsert(*db, "items", Item("m" + std::to_string(i), i)));
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    for (int i = 0; i < 200; ++i) {
      absl::StatusOr<DocumentId> id = tx.Insert("items", Item("t" + std::to_string(i), i));
      if (!id.ok()) return id.status();
      ids.push_back(*id);
    }
    return absl::OkStatus();
  }));
  std::vector<Document> docs = All(*db, "items");
  REQUIRE(docs.size() == ids.size());
  for (size_t i = 0; i < docs.size(); ++i) {
    INFO("document " << i);
    CHECK(docs[i].id() == ids[i]);
    if (i > 0) {
      CHECK(ids[i - 1] < ids[i]);
      CHECK(docs[i - 1].creation_time() < docs[i].creation_time());
    }
  }
}

TEST_CASE("ids carry their table", "[crud]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const DocumentId i1 = MustInsert(*db, "items", Item("a", 1));
  const DocumentId i2 = MustInsert(*db, "items", Item("b", 1));
  const DocumentId p1 = MustInsert(*db, "products", {{"sku", "s"}, {"price", 1.0}});
  CHECK(i1.table_number() == i2.table_number());
  CHECK(i1.table_number() != p1.table_number());
  CHECK(i1.text().size() == i2.text().size());
  // An id is global: Get finds a document of any table.
  std::optional<Document> product = GetDoc(*db, p1);
  REQUIRE(product.has_value());
  CHECK(product->Get("sku") == Value("s"));
  // An id of a table number the schema does not have.
  const DocumentId unknown = DocumentId::Generate(9999);
  CHECK(unknown.table_number() == 9999);
  CHECK_ERROR(db->Query([&](Reader& r) { return r.Get(unknown); }),
              absl::StatusCode::kInvalidArgument, "9999");
  CHECK_ERROR(db->Mutate([&](Transaction& tx) { return tx.Delete(unknown); }),
              absl::StatusCode::kInvalidArgument, "9999");
  // An id of a known table that was never inserted: not found.
  CHECK_FALSE(GetDoc(*db, DocumentId::Generate(i1.table_number())).has_value());
}

TEST_CASE("Unique, First, Take, Collect and Filter", "[crud][query]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  for (int i = 1; i <= 6; ++i) MustInsert(*db, "items", Item(i % 2 == 0 ? "even" : "odd", i));
  MustInsert(*db, "items", Item("single", 100));
  REQUIRE_OK(db->Query([&](Reader& r) -> absl::Status {
    auto by_name = [&](const char* name) {
      return r.Table("items").WithIndex("by_name", stagedb::Eq("name", name));
    };
    absl::StatusOr<std::optional<Document>> single = by_name("single").Unique();
    REQUIRE_OK(single);
    REQUIRE(single->has_value());
    CHECK((*single)->Get("qty") == Value::Int64(100));
    absl::StatusOr<std::optional<Document>> none = by_name("nobody").Unique();
    REQUIRE_OK(none);
    CHECK_FALSE(none->has_value());
    CHECK_ERROR(by_name("odd").Unique(), absl::StatusCode::kFailedPrecondition, "items", "by_name");

    absl::StatusOr<std::optional<Document>> first = by_name("odd").First();
    REQUIRE_OK(first);
    REQUIRE(first->has_value());
    CHECK((*first)->Get("qty") == Value::Int64(1));
    first = r.Table("items").WithIndex("by_qty").Order(SortOrder::kDesc).First();
    REQUIRE_OK(first);
    REQUIRE(first->has_value());
    CHECK((*first)->Get("qty") == Value::Int64(100));
    absl::StatusOr<std::optional<Document>> empty_first = by_name("nobody").First();
    REQUIRE_OK(empty_first);
    CHECK_FALSE(empty_first->has_value());

    auto qtys = [](const absl::StatusOr<std::vector<Document>>& docs) {
      INFO(docs.status().ToString());
      REQUIRE(docs.ok());
      std::vector<int64_t> out;
      for (const Document& d : *docs) out.push_back(d.Get("qty").as_int64());
      return out;
    };
    CHECK(qtys(r.Table("items").WithIndex("by_qty").Take(3)) == std::vector<int64_t>{1, 2, 3});
    CHECK(qtys(r.Table("items").WithIndex("by_qty").Take(0)).empty());
    CHECK(qtys(r.Table("items").WithIndex("by_qty").Take(50)).size() == 7);
    CHECK(qtys(r.Table("items").WithIndex("by_qty").Order(SortOrder::kDesc).Take(2)) ==
          std::vector<int64_t>{100, 6});
    CHECK(qtys(by_name("even").Collect()) == std::vector<int64_t>{2, 4, 6});
    CHECK(qtys(r.Table("items")
                   .WithIndex("by_qty",
                              stagedb::Gt("qty", Value::Int64(2)).Lte("qty", Value::Int64(5)))
                   .Collect()) == std::vector<int64_t>{3, 4, 5});
    // Filter runs before Take: Take(2) returns two matching documents.
    auto is_even = [](const Document& d) { return d.Get("qty").as_int64() % 2 == 0; };
    CHECK(qtys(r.Table("items").WithIndex("by_qty").Filter(is_even).Take(2)) ==
          std::vector<int64_t>{2, 4});
    CHECK(qtys(r.Table("items").WithIndex("by_qty").Filter(is_even).Collect()) ==
          std::vector<int64_t>{2, 4, 6, 100});
    // Filters chain.
    CHECK(qtys(r.Table("items")
                   .WithIndex("by_qty")
                   .Filter(is_even)
                   .Filter([](const Document& d) { return d.Get("qty").as_int64() > 3; })
                   .Collect()) == std::vector<int64_t>{4, 6, 100});
    absl::StatusOr<std::optional<Document>> filtered_first =
        r.Table("items").WithIndex("by_qty").Filter(is_even).First();
    REQUIRE_OK(filtered_first);
    REQUIRE(filtered_first->has_value());
    CHECK((*filtered_first)->Get("qty") == Value::Int64(2));
    // Unique on a filtered query counts only the matching documents.
    absl::StatusOr<std::optional<Document>> filtered_unique =
        r.Table("items")
            .WithIndex("by_qty")
            .Filter([](const Document& d) { return d.Get("qty").as_int64() == 4; })
            .Unique();
    REQUIRE_OK(filtered_unique);
    REQUIRE(filtered_unique->has_value());
    CHECK((*filtered_unique)->Get("qty") == Value::Int64(4));

    // Errors name what is wrong.
    CHECK_ERROR(r.Table("nope_table").Collect(), absl::StatusCode::kInvalidArgument, "nope_table");
    CHECK_ERROR(r.Table("items").WithIndex("by_nothing").Collect(),
                absl::StatusCode::kInvalidArgument, "items", "by_nothing");
    CHECK_ERROR(
        r.Table("items").WithIndex("by_name", stagedb::Eq("qty", Value::Int64(1))).Collect(),
        absl::StatusCode::kInvalidArgument, "by_name", "qty");
    return absl::OkStatus();
  }));
}

TEST_CASE("unique indexes refuse duplicates on Insert and Patch", "[crud][unique]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const DocumentId a = MustInsert(*db, "products", {{"sku", "SKU-AAA"}, {"price", 1.0}});
  const DocumentId b = MustInsert(*db, "products", {{"sku", "SKU-BBB"}, {"price", 2.0}});
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Insert("products", {{"sku", "SKU-AAA"}, {"price", 3.0}});
  }),
              absl::StatusCode::kAlreadyExists, "products.by_sku", "SKU-AAA");
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Patch(b, {{"sku", "SKU-AAA"}});
  }),
              absl::StatusCode::kAlreadyExists, "products.by_sku", "SKU-AAA");
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Replace(b, {{"sku", "SKU-AAA"}, {"price", 2.0}});
  }),
              absl::StatusCode::kAlreadyExists, "products.by_sku", "SKU-AAA");
  // A document keeps its own unique value.
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Patch(a, {{"price", 10.0}}); }));
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Patch(a, {{"sku", "SKU-AAA"}}); }));
  REQUIRE_OK(db->Mutate([&](Transaction& tx) {
    return tx.Replace(a, {{"sku", "SKU-AAA"}, {"price", 11.0}});
  }));
  CHECK(GetDoc(*db, a)->Get("price") == Value(11.0));
  CHECK(GetDoc(*db, b)->Get("sku") == Value("SKU-BBB"));
  // Within one mutation: a duplicate of a value inserted earlier in it is refused...
  absl::Status dup;
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    absl::StatusOr<DocumentId> c = tx.Insert("products", {{"sku", "SKU-CCC"}, {"price", 1.0}});
    if (!c.ok()) return c.status();
    dup = tx.Insert("products", {{"sku", "SKU-CCC"}, {"price", 1.0}}).status();
    return absl::OkStatus();
  }));
  CHECK_ERROR(dup, absl::StatusCode::kAlreadyExists, "products.by_sku", "SKU-CCC");
  // ...and a value freed earlier in it (by delete or by patch) can be taken.
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    if (absl::Status s = tx.Delete(a); !s.ok()) return s;
    if (absl::Status s = tx.Patch(b, {{"sku", "SKU-AAA"}}); !s.ok()) return s;
    return tx.Insert("products", {{"sku", "SKU-BBB"}, {"price", 5.0}}).status();
  }));
  std::vector<Document> by_sku = All(*db, "products", "by_sku");
  REQUIRE(by_sku.size() == 3);
  CHECK(by_sku[0].Get("sku") == Value("SKU-AAA"));
  CHECK(by_sku[0].id() == b);
  CHECK(by_sku[1].Get("sku") == Value("SKU-BBB"));
  CHECK(by_sku[2].Get("sku") == Value("SKU-CCC"));
  // Swapping two unique values inside one mutation through a temporary value works.
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    const DocumentId other = by_sku[1].id();
    if (absl::Status s = tx.Patch(b, {{"sku", "tmp"}}); !s.ok()) return s;
    if (absl::Status s = tx.Patch(other, {{"sku", "SKU-AAA"}}); !s.ok()) return s;
    return tx.Patch(b, {{"sku", "SKU-BBB"}});
  }));
  CHECK(GetDoc(*db, b)->Get("sku") == Value("SKU-BBB"));
}

TEST_CASE("a Reader sees one snapshot", "[crud][snapshot]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const DocumentId a = MustInsert(*db, "items", Item("a", 1));
  const Timestamp ts_before = db->LastCommitTimestamp();
  DocumentId inserted;
  REQUIRE_OK(db->Query([&](Reader& r) -> absl::Status {
    CHECK(r.timestamp() == ts_before);
    CHECK(Names(r.Table("items").Collect()) == std::vector<std::string>{"a"});
    // Another thread commits while this query runs.
    std::thread writer([&] {
      absl::StatusOr<DocumentId> id =
          db->Mutate([&](Transaction& tx) -> absl::StatusOr<DocumentId> {
            if (absl::Status s = tx.Patch(a, {{"name", "a2"}}); !s.ok()) return s;
            return tx.Insert("items", Item("b", 2));
          });
      if (id.ok()) inserted = *id;
    });
    writer.join();
    REQUIRE_FALSE(inserted.empty());
    CHECK(db->LastCommitTimestamp() == ts_before + 1);
    // This reader still sees the old state, whatever it reads.
    CHECK(r.timestamp() == ts_before);
    CHECK(Names(r.Table("items").Collect()) == std::vector<std::string>{"a"});
    CHECK(Names(r.Table("items").WithIndex("by_name").Collect()) == std::vector<std::string>{"a"});
    absl::StatusOr<std::optional<Document>> b = r.Get(inserted);
    REQUIRE_OK(b);
    CHECK_FALSE(b->has_value());
    absl::StatusOr<std::optional<Document>> old_a = r.Get(a);
    REQUIRE_OK(old_a);
    REQUIRE(old_a->has_value());
    CHECK((*old_a)->Get("name") == Value("a"));
    return absl::OkStatus();
  }));
  REQUIRE_OK(db->Query([&](Reader& r) -> absl::Status {
    CHECK(r.timestamp() == ts_before + 1);
    CHECK(Names(r.Table("items").Collect()) == std::vector<std::string>{"a2", "b"});
    return absl::OkStatus();
  }));
}

TEST_CASE("commit timestamps", "[crud][timestamp]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  CHECK(db->LastCommitTimestamp() == 0);
  Timestamp ts = 12345;
  REQUIRE_OK(
      db->Mutate([&](Transaction& tx) { return tx.Insert("items", Item("a", 1)).status(); }, &ts));
  CHECK(ts == 1);
  CHECK(db->LastCommitTimestamp() == 1);
  // Several writes: one commit.
  REQUIRE_OK(db->Mutate(
      [&](Transaction& tx) -> absl::Status {
        for (int i = 0; i < 5; ++i) {
          if (absl::Status s = tx.Insert("items", Item("x", i)).status(); !s.ok()) return s;
        }
        return absl::OkStatus();
      },
      &ts));
  CHECK(ts == 2);
  CHECK(db->LastCommitTimestamp() == 2);
  // A read-only mutation commits nothing.
  Timestamp read_only_ts = 999;
  REQUIRE_OK(db->Mutate([&](Transaction& tx) { return tx.Table("items").Collect().status(); },
                        &read_only_ts));
  CHECK(db->LastCommitTimestamp() == 2);
  CHECK(read_only_ts <= 2);
  REQUIRE_OK(db->Mutate([&](Transaction&) { return absl::OkStatus(); }));
  CHECK(db->LastCommitTimestamp() == 2);
  // Neither does a failed one, nor one whose only write failed.
  CHECK_ERROR(db->Mutate([&](Transaction& tx) -> absl::Status {
    REQUIRE_OK(tx.Insert("items", Item("y", 1)));
    return absl::AbortedError("changed my mind");
  }),
              absl::StatusCode::kAborted, "changed my mind");
  CHECK(db->LastCommitTimestamp() == 2);
  REQUIRE_OK(db->Mutate([&](Transaction& tx) {
    CHECK_FALSE(tx.Insert("items", {{"name", 1.0}}).ok());
    return absl::OkStatus();
  }));
  CHECK(db->LastCommitTimestamp() == 2);
  // Queries see the timestamp.
  REQUIRE_OK(db->Query([&](Reader& r) {
    CHECK(r.timestamp() == 2);
    return absl::OkStatus();
  }));
  REQUIRE_OK(db->Mutate(
      [&](Transaction& tx) {
        CHECK(tx.timestamp() == 2);
        return tx.Insert("items", Item("z", 1)).status();
      },
      &ts));
  CHECK(ts == 3);
}

TEST_CASE("Mutate and Query return the function's StatusOr value", "[crud]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  absl::StatusOr<int> answer = db->Mutate([&](Transaction&) -> absl::StatusOr<int> { return 42; });
  REQUIRE_OK(answer);
  CHECK(*answer == 42);
  absl::StatusOr<std::string> text =
      db->Mutate([&](Transaction& tx) -> absl::StatusOr<std::string> {
        absl::StatusOr<DocumentId> id = tx.Insert("items", Item("a", 1));
        if (!id.ok()) return id.status();
        return "inserted " + id->text();
      });
  REQUIRE_OK(text);
  CHECK(text->rfind("inserted ", 0) == 0);
  absl::StatusOr<std::vector<std::string>> names =
      db->Query([&](Reader& r) -> absl::StatusOr<std::vector<std::string>> {
        absl::StatusOr<std::vector<Document>> docs = r.Table("items").Collect();
        if (!docs.ok()) return docs.status();
        return Names(*docs);
      });
  REQUIRE_OK(names);
  CHECK(*names == std::vector<std::string>{"a"});
  absl::StatusOr<int> failed = db->Mutate(
      [&](Transaction&) -> absl::StatusOr<int> { return absl::NotFoundError("custom-not-found"); });
  CHECK_ERROR(failed, absl::StatusCode::kNotFound, "custom-not-found");
  absl::Status query_failed = db->Query([&](Reader&) { return absl::DataLossError("q-error"); });
  CHECK_ERROR(query_failed, absl::StatusCode::kDataLoss, "q-error");
}

TEST_CASE("Mutate and Query inside a mutation are refused; the Transaction reads", "[crud]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  MustInsert(*db, "items", Item("committed", 1));
  absl::Status nested;
  absl::Status inner_query;
  size_t seen_by_transaction = 0;
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    if (absl::Status s = tx.Insert("items", Item("outer", 2)).status(); !s.ok()) return s;
    nested = db->Mutate(
        [&](Transaction& inner) { return inner.Insert("items", Item("inner", 3)).status(); });
    // A Query would read another snapshot, without this mutation's writes and outside its
    // read set.
    inner_query = db->Query([&](Reader& r) { return r.Table("items").Collect().status(); });
    absl::StatusOr<std::vector<Document>> docs = tx.Table("items").Collect();
    if (!docs.ok()) return docs.status();
    seen_by_transaction = docs->size();
    return absl::OkStatus();
  }));
  CHECK_ERROR(nested, absl::StatusCode::kFailedPrecondition, "Mutate");
  CHECK_ERROR(inner_query, absl::StatusCode::kFailedPrecondition, "Query", "Transaction");
  CHECK(seen_by_transaction == 2);
  CHECK(Names(All(*db, "items")) == std::vector<std::string>{"committed", "outer"});
  // Mutate and Query work again afterwards on this thread.
  MustInsert(*db, "items", Item("after", 4));
  CHECK(All(*db, "items").size() == 3);
}

TEST_CASE("concurrent read-modify-write mutations are serializable", "[crud][threads]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const DocumentId counter =
      MustInsert(*db, "counters", {{"name", "hits"}, {"value", Value::Int64(0)}});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 200;
  std::atomic<int> failures{0};
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  const Timestamp start_ts = db->LastCommitTimestamp();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::Status s = db->Mutate([&](Transaction& tx) -> absl::Status {
          absl::StatusOr<std::optional<Document>> doc =
              tx.Table("counters").WithIndex("by_name", stagedb::Eq("name", "hits")).Unique();
          if (!doc.ok()) return doc.status();
          if (!doc->has_value()) return absl::NotFoundError("counter vanished");
          const int64_t value = (*doc)->Get("value").as_int64();
          return tx.Patch(counter, {{"value", Value::Int64(value + 1)}});
        });
        if (!s.ok()) {
          ++failures;
          errors[t] = s.ToString();
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const std::string& error : errors) {
    INFO(error);
    CHECK(error.empty());
  }
  CHECK(failures == 0);
  std::optional<Document> doc = GetDoc(*db, counter);
  REQUIRE(doc.has_value());
  CHECK(doc->Get("value") == Value::Int64(kThreads * kPerThread));
  CHECK(db->LastCommitTimestamp() == start_ts + kThreads * kPerThread);
}

}  // namespace

TEST_CASE("a write from inside a query's Filter is refused, not a crash", "[crud]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  for (int i = 0; i < 20; ++i) MustInsert(*db, "items", Item("n" + std::to_string(i), i));
  absl::Status from_filter;
  size_t matched = 0;
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    // Buffered writes of this transaction in the scanned range, so the scan walks the overlay.
    for (int i = 0; i < 20; ++i) {
      if (absl::Status s = tx.Insert("items", Item("m" + std::to_string(i), 100 + i)).status();
          !s.ok()) {
        return s;
      }
    }
    absl::StatusOr<std::vector<Document>> docs =
        tx.Table("items")
            .WithIndex("by_qty")
            .Filter([&](const Document& d) {
              absl::Status s = tx.Insert("items", Item("x", d["qty"].as_int64() + 1000)).status();
              if (from_filter.ok()) from_filter = s;
              return true;
            })
            .Collect();
    if (!docs.ok()) return docs.status();
    matched = docs->size();
    return absl::OkStatus();
  }));
  CHECK_ERROR(from_filter, absl::StatusCode::kFailedPrecondition, "Filter");
  CHECK(matched == 40);
  // After the scan, writes work again in the same transaction; nothing from the filter landed.
  CHECK(All(*db, "items").size() == 40);
}

TEST_CASE("unique indexes skip documents missing a unique field; many inserts fit the limits",
          "[crud]") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = R"json({
    "tables": {"users": {
      "fields": {"name": "string", "email": {"type": "optional", "of": "string"}},
      "indexes": [{"name": "by_email", "fields": ["email"], "unique": true}]}}})json"});
  // Missing (undefined) is exempt, as SQL exempts NULL; a value is still unique.
  MustInsert(*db, "users", {{"name", "a"}});
  MustInsert(*db, "users", {{"name", "b"}});
  MustInsert(*db, "users", {{"name", "c"}, {"email", "c@x"}});
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Insert("users", {{"name", "d"}, {"email", "c@x"}}).status();
  }),
              absl::StatusCode::kAlreadyExists, "users.by_email", "c@x");
  // Each insert probes the unique index; the probes do not count as the mutation's reads.
  const size_t count = 5000;
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    for (size_t i = 0; i < count; ++i) {
      absl::Status s =
          tx.Insert("users", {{"name", "user"}, {"email", "u" + std::to_string(i)}}).status();
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }));
  CHECK(All(*db, "users").size() == count + 3);
  // Sizes and counts convert to int64.
  CHECK(Value(count).is_int64());
  CHECK(Value(count).as_int64() == 5000);
}

TEST_CASE("documents read can be written back; undefined fields are left out", "[crud]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const DocumentId id = MustInsert(*db, "items", Item("a", 1));
  REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<Document>> doc = tx.Get(id);
    if (!doc.ok()) return doc.status();
    Object fields = (*doc)->fields();  // with _id and _creationTime
    fields["qty"] = Value(2);
    if (absl::Status s = tx.Replace(id, fields); !s.ok()) return s;
    return tx.Patch(id, (*doc)->fields());  // back to qty 1
  }));
  CHECK(All(*db, "items")[0]["qty"] == Value(1));
  // Another document's system values are refused, naming the field.
  const DocumentId other = MustInsert(*db, "items", Item("b", 2));
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Patch(id, {{"_id", Value(other)}});
  }),
              absl::StatusCode::kInvalidArgument, "\"_id\"", "system field", "cannot be changed");
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Insert("items", {{"name", "c"}, {"qty", 3}, {"_creationTime", 5.0}}).status();
  }),
              absl::StatusCode::kInvalidArgument, "\"_creationTime\"", "system field");
  // Undefined on Insert and Replace means "no such field", as a Patch removes it.
  absl::StatusOr<DocumentId> with_undefined = db->Mutate([&](Transaction& tx) {
    return tx.Insert("items", {{"name", "d"}, {"qty", 4}, {"tag", stagedb::Undefined{}}});
  });
  REQUIRE_OK(with_undefined);
  REQUIRE_OK(db->Mutate([&](Transaction& tx) {
    return tx.Replace(*with_undefined, {{"name", "d"}, {"qty", 5}, {"note", stagedb::Undefined{}}});
  }));
  absl::StatusOr<std::optional<Document>> stored =
      db->Query([&](Reader& r) { return r.Get(*with_undefined); });
  REQUIRE_OK(stored);
  CHECK((*stored)->fields().size() == 4);  // _id, _creationTime, name, qty
  CHECK((**stored)["qty"] == Value(5));
  // A dotted name gets a hint.
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Patch(id, {{"meta.x", "y"}});
  }),
              absl::StatusCode::kInvalidArgument, "meta.x", "whole top-level field");
}

namespace {

using namespace stagedb;
using stagedb::testing::OpenOrFail;
using stagedb::testing::TempDir;

TEST_CASE("a hot counter does not starve anyone: retried mutations are validated first",
          "[crud][threads]") {
  // Four threads increment one counter with a small retry budget. Each round of conflicts has
  // one winner; the committer validates the most-retried transaction first (and waits for it),
  // so a thread loses about as many rounds in a row as there are competitors (3), well under
  // max_conflict_retries + 1 (without that order one thread lost 33 in a row).
  TempDir dir;
  Options options{.path = dir.Sub("db"), .schema_json = kSchema};
  options.limits.max_conflict_retries = 8;
  auto db = OpenOrFail(options);
  const DocumentId counter =
      MustInsert(*db, "counters", {{"name", "hot"}, {"value", Value::Int64(0)}});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 50;
  std::atomic<int> failures{0};
  std::string last_error;
  std::mutex mu;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::Status s = db->Mutate([&](Transaction& tx) -> absl::Status {
          absl::StatusOr<std::optional<Document>> doc = tx.Get(counter);
          if (!doc.ok()) return doc.status();
          return tx.Patch(counter, {{"value", (**doc)["value"].as_int64() + 1}});
        });
        if (!s.ok()) {
          ++failures;
          std::lock_guard<std::mutex> lock(mu);
          last_error = s.ToString();
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  INFO(last_error);
  CHECK(failures == 0);
  std::optional<Document> doc = GetDoc(*db, counter);
  REQUIRE(doc.has_value());
  CHECK((*doc)["value"] == Value::Int64(kThreads * kPerThread - failures));
}

}  // namespace
