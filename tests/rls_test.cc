// Row-level scoping: a table that declares scope fields shows a function call made as a user
// only the documents whose scope fields hold the user's claims, in every read path (get by id,
// index ranges, full scans, pagination, also with another scope's cursor, subscriptions), and
// refuses every write kind that would touch or write another scope. Admin calls are unscoped.
#include <catch2/catch.hpp>
#include <mutex>
#include <string>
#include <vector>

#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using namespace stagedb;
using stagedb::testing::OpenOrFail;
using stagedb::testing::TempDir;
using Code = absl::StatusCode;

constexpr const char* kSchema = R"json({"tables": {
  "tasks": {"fields": {"tenant_id": "string", "workspace_id": "string", "title": "string"},
            "indexes": [{"name": "by_workspace", "fields": ["workspace_id"]},
                        {"name": "by_title", "fields": ["title"]}],
            "scope": {"tenant": "tenant_id", "workspace": "workspace_id"}},
  "notes": {"fields": {"text": "string"}}}})json";

Value Ids(const std::vector<Document>& documents) {
  Array ids;
  for (const Document& document : documents) ids.push_back(document["_id"]);
  return Value(std::move(ids));
}

// The app's functions: one per read path and write kind, all public.
void RegisterFunctions(Database& db) {
  REQUIRE_OK(db.RegisterQuery({.name = "tasks:get", .args = R"({"id": "string"})"},
                              [](QueryContext& ctx, const Value& args) -> absl::StatusOr<Value> {
                                absl::StatusOr<std::optional<Document>> doc =
                                    ctx.db().Get(args["id"].as_string());
                                if (!doc.ok()) return doc.status();
                                return doc->has_value() ? (*doc)->ToValue() : Value(nullptr);
                              }));
  REQUIRE_OK(db.RegisterQuery(
      {.name = "tasks:inWorkspace", .args = R"({"workspace_id": "string"})"},
      [](QueryContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        absl::StatusOr<std::vector<Document>> docs =
            ctx.db()
                .Table("tasks")
                .WithIndex("by_workspace", Eq("workspace_id", args["workspace_id"]))
                .Collect();
        if (!docs.ok()) return docs.status();
        return Ids(*docs);
      }));
  REQUIRE_OK(db.RegisterQuery(
      {.name = "tasks:all"}, [](QueryContext& ctx, const Value&) -> absl::StatusOr<Value> {
        absl::StatusOr<std::vector<Document>> docs = ctx.db().Table("tasks").Collect();
        if (!docs.ok()) return docs.status();
        return Ids(*docs);
      }));
  REQUIRE_OK(db.RegisterQuery(
      {.name = "tasks:byTitle", .args = R"({"title": "string"})"},
      [](QueryContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        absl::StatusOr<std::optional<Document>> doc =
            ctx.db().Table("tasks").WithIndex("by_title", Eq("title", args["title"])).First();
        if (!doc.ok()) return doc.status();
        return doc->has_value() ? (**doc)["_id"] : Value(nullptr);
      }));
  REQUIRE_OK(db.RegisterQuery(
      {.name = "tasks:page", .args = R"({"cursor": {"type": "optional", "of": "string"}})"},
      [](QueryContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        PaginationOptions options{.num_items = 2};
        if (args["cursor"].is_string()) options.cursor = args["cursor"].as_string();
        absl::StatusOr<PaginationResult> page = ctx.db().Table("tasks").Paginate(options);
        if (!page.ok()) return page.status();
        return Value(Object{
            {"ids", Ids(page->page)}, {"cursor", page->continue_cursor}, {"done", page->is_done}});
      }));
  REQUIRE_OK(db.RegisterMutation(
      {.name = "tasks:insert",
       .args = R"({"tenant_id": "string", "workspace_id": "string", "title": "string"})"},
      [](MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        absl::StatusOr<DocumentId> id = ctx.db().Insert("tasks", args.as_object());
        if (!id.ok()) return id.status();
        return Value(*id);
      }));
  REQUIRE_OK(db.RegisterMutation(
      {.name = "tasks:patch", .args = R"({"id": "string", "fields": "any"})"},
      [](MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        absl::StatusOr<DocumentId> id = DocumentId::Parse(args["id"].as_string());
        if (!id.ok()) return id.status();
        if (absl::Status s = ctx.db().Patch(*id, args["fields"].as_object()); !s.ok()) return s;
        return Value(nullptr);
      }));
  REQUIRE_OK(db.RegisterMutation(
      {.name = "tasks:replace", .args = R"({"id": "string", "fields": "any"})"},
      [](MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        absl::StatusOr<DocumentId> id = DocumentId::Parse(args["id"].as_string());
        if (!id.ok()) return id.status();
        if (absl::Status s = ctx.db().Replace(*id, args["fields"].as_object()); !s.ok()) return s;
        return Value(nullptr);
      }));
  REQUIRE_OK(db.RegisterMutation(
      {.name = "tasks:delete", .args = R"({"id": "string"})"},
      [](MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        absl::StatusOr<DocumentId> id = DocumentId::Parse(args["id"].as_string());
        if (!id.ok()) return id.status();
        if (absl::Status s = ctx.db().Delete(*id); !s.ok()) return s;
        return Value(nullptr);
      }));
  REQUIRE_OK(db.RegisterQuery(
      {.name = "notes:all"}, [](QueryContext& ctx, const Value&) -> absl::StatusOr<Value> {
        absl::StatusOr<std::vector<Document>> docs = ctx.db().Table("notes").Collect();
        if (!docs.ok()) return docs.status();
        return Ids(*docs);
      }));
}

struct World {
  TempDir dir;
  std::unique_ptr<Database> db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  const Auth alice = Auth::User({.subject = "alice", .tenant_id = "t1", .workspace_id = "ws1"});
  const Auth bob = Auth::User({.subject = "bob", .tenant_id = "t1", .workspace_id = "ws2"});
  const Auth mallory = Auth::User({.subject = "mallory", .tenant_id = "t2", .workspace_id = "ws1"});
  std::vector<std::string> ws1, ws2;  // task ids, inserted by an admin

  World() {
    RegisterFunctions(*db);
    for (int i = 0; i < 3; ++i) {
      ws1.push_back(Insert(Auth::Admin(), "t1", "ws1", "a" + std::to_string(i)));
      ws2.push_back(Insert(Auth::Admin(), "t1", "ws2", "b" + std::to_string(i)));
    }
    REQUIRE_OK(db->Mutate([](Transaction& tx) { return tx.Insert("notes", {{"text", "hi"}}); }));
  }

  std::string Insert(const Auth& auth, std::string tenant, std::string workspace,
                     std::string title) {
    absl::StatusOr<Value> id = db->Call(
        "tasks:insert",
        Object{{"tenant_id", tenant}, {"workspace_id", workspace}, {"title", title}}, auth);
    REQUIRE_OK(id);
    return id->as_string();
  }
  Value Call(std::string_view name, Object args, const Auth& auth) {
    absl::StatusOr<Value> result = db->Call(name, Value(std::move(args)), auth);
    REQUIRE_OK(result);
    return *result;
  }
  // Every task, seen unscoped.
  std::vector<Document> AllTasks() {
    absl::StatusOr<std::vector<Document>> docs =
        db->Query([](Reader& r) { return r.Table("tasks").Collect(); });
    REQUIRE(docs.ok());
    return *docs;
  }
};

Value IdArray(const std::vector<std::string>& ids) {
  Array array(ids.begin(), ids.end());
  return Value(std::move(array));
}

TEST_CASE("a scoped caller reads only its scope, on every read path") {
  World w;
  // Get by id.
  CHECK(w.Call("tasks:get", {{"id", w.ws1[0]}}, w.alice).is_object());
  CHECK(w.Call("tasks:get", {{"id", w.ws2[0]}}, w.alice).is_null());
  CHECK(w.Call("tasks:get", {{"id", w.ws1[0]}}, w.bob).is_null());
  // The tenant claim must match too.
  CHECK(w.Call("tasks:get", {{"id", w.ws1[0]}}, w.mallory).is_null());
  // An index range naming the other workspace, and a full scan.
  CHECK(w.Call("tasks:inWorkspace", {{"workspace_id", "ws2"}}, w.alice) == Value(Array{}));
  CHECK(w.Call("tasks:inWorkspace", {{"workspace_id", "ws1"}}, w.alice) == IdArray(w.ws1));
  CHECK(w.Call("tasks:all", {}, w.alice) == IdArray(w.ws1));
  CHECK(w.Call("tasks:all", {}, w.bob) == IdArray(w.ws2));
  CHECK(w.Call("tasks:all", {}, w.mallory) == Value(Array{}));
  // First on another index: another workspace's title is not found.
  CHECK(w.Call("tasks:byTitle", {{"title", "b1"}}, w.alice).is_null());
  CHECK(w.Call("tasks:byTitle", {{"title", "a1"}}, w.alice) == Value(w.ws1[1]));
  // Anonymous callers see no scoped rows; unscoped tables are for everyone.
  CHECK(w.Call("tasks:all", {}, Auth::Anonymous()) == Value(Array{}));
  CHECK(w.Call("notes:all", {}, w.alice).as_array().size() == 1);
  CHECK(w.Call("notes:all", {}, Auth::Anonymous()).as_array().size() == 1);
  // Admin: explicit unscoped access.
  CHECK(w.db->CallInternal("tasks:all", Object{})->as_array().size() == 6);
}

TEST_CASE("pagination is scoped, also with a cursor made in another scope") {
  World w;
  std::vector<Value> seen;
  Value cursor;
  for (int pages = 0; pages < 10; ++pages) {
    Object args;
    if (cursor.is_string()) args.emplace("cursor", cursor);
    const Value page = w.Call("tasks:page", std::move(args), w.alice);
    for (const Value& id : page["ids"].as_array()) seen.push_back(id);
    cursor = page["cursor"];
    if (page["done"] == Value(true)) break;
  }
  CHECK(Value(Array(seen.begin(), seen.end())) == IdArray(w.ws1));
  // Bob's first page's cursor, used by Alice: she still sees only her own documents.
  const Value bob_page = w.Call("tasks:page", {}, w.bob);
  CHECK(bob_page["ids"].as_array().size() == 2);
  const Value alice_rest = w.Call("tasks:page", {{"cursor", bob_page["cursor"]}}, w.alice);
  for (const Value& id : alice_rest["ids"].as_array()) {
    CHECK(std::find(w.ws1.begin(), w.ws1.end(), id.as_string()) != w.ws1.end());
  }
}

TEST_CASE("a scoped caller cannot write another scope, by any write kind") {
  World w;
  const std::vector<Document> before = w.AllTasks();
  // Insert with another workspace's (or tenant's) value.
  CHECK_ERROR(
      w.db->Call("tasks:insert",
                 Object{{"tenant_id", "t1"}, {"workspace_id", "ws2"}, {"title", "x"}}, w.alice),
      Code::kPermissionDenied, "tasks", "workspace_id", "\"ws2\"", "\"ws1\"");
  CHECK_ERROR(
      w.db->Call("tasks:insert",
                 Object{{"tenant_id", "t9"}, {"workspace_id", "ws1"}, {"title", "x"}}, w.alice),
      Code::kPermissionDenied, "tenant_id", "\"t9\"");
  CHECK_ERROR(w.db->Call("tasks:insert",
                         Object{{"tenant_id", "t1"}, {"workspace_id", "ws1"}, {"title", "x"}},
                         Auth::Anonymous()),
              Code::kPermissionDenied, "tasks", "admin");
  // Patch, replace and delete of another scope's document: as if it did not exist.
  CHECK_ERROR(w.db->Call("tasks:patch",
                         Object{{"id", w.ws2[0]}, {"fields", Object{{"title", "mine"}}}}, w.alice),
              Code::kNotFound, "does not exist");
  CHECK_ERROR(
      w.db->Call(
          "tasks:replace",
          Object{{"id", w.ws2[0]},
                 {"fields",
                  Object{{"tenant_id", "t1"}, {"workspace_id", "ws1"}, {"title", "stolen"}}}},
          w.alice),
      Code::kNotFound);
  CHECK_ERROR(w.db->Call("tasks:delete", Object{{"id", w.ws2[0]}}, w.alice), Code::kNotFound);
  // Moving one's own document into another scope.
  CHECK_ERROR(
      w.db->Call("tasks:patch",
                 Object{{"id", w.ws1[0]}, {"fields", Object{{"workspace_id", "ws2"}}}}, w.alice),
      Code::kPermissionDenied, "workspace_id", "\"ws2\"");
  // Nothing was written by any of them.
  CHECK(w.AllTasks() == before);
  // Writes inside the scope work.
  w.Insert(w.alice, "t1", "ws1", "new");
  REQUIRE_OK(w.db->Call(
      "tasks:patch", Object{{"id", w.ws1[0]}, {"fields", Object{{"title", "renamed"}}}}, w.alice));
  REQUIRE_OK(w.db->Call("tasks:delete", Object{{"id", w.ws1[1]}}, w.alice));
  CHECK(w.AllTasks().size() == before.size());
}

TEST_CASE("a scoped subscription never delivers another scope's documents") {
  World w;
  std::mutex mu;
  std::vector<Value> results;
  absl::StatusOr<Subscription> sub = w.db->SubscribeFunction(
      "tasks:all", Object{},
      [&](const QueryUpdate& update) {
        // No Catch2 assertion on the notifier thread: an error is kept as its text, which the
        // checks below then show.
        std::lock_guard<std::mutex> lock(mu);
        results.push_back(update.result.ok() ? *update.result
                                             : Value(update.result.status().ToString()));
      },
      w.alice);
  REQUIRE_OK(sub);
  REQUIRE_OK(w.db->WaitForDelivery(0, testing::kHangGuard));
  // Bob's insert: Alice's result does not change, so nothing is delivered.
  w.Insert(w.bob, "t1", "ws2", "bobs");
  REQUIRE_OK(w.db->WaitForDelivery(w.db->LastCommitTimestamp(), testing::kHangGuard));
  {
    std::lock_guard<std::mutex> lock(mu);
    CHECK(results.size() == 1);
  }
  const std::string mine = w.Insert(w.alice, "t1", "ws1", "alices");
  REQUIRE_OK(w.db->WaitForDelivery(w.db->LastCommitTimestamp(), testing::kHangGuard));
  std::lock_guard<std::mutex> lock(mu);
  REQUIRE(results.size() == 2);
  std::vector<std::string> want = w.ws1;
  want.push_back(mine);
  CHECK(results.back() == IdArray(want));
}

TEST_CASE("scope declarations are checked") {
  TempDir dir;
  auto open = [&](const char* schema) {
    return Database::Open({.path = dir.Sub("db"), .schema_json = schema});
  };
  CHECK_ERROR(
      open(R"({"tables": {"t": {"fields": {"w": "string"}, "scope": {"workspace": "x"}}}})"),
      Code::kInvalidArgument, "\"t\"", "\"x\"");
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"w": {"type": "optional", "of": "string"}},
                                         "scope": {"workspace": "w"}}}})"),
              Code::kInvalidArgument, "required string");
  CHECK_ERROR(open(R"({"tables": {"t": {"fields": {"w": "string"}, "scope": {"team": "w"}}}})"),
              Code::kInvalidArgument, "unknown claim", "team");
  // The declaration survives a reopen (it is part of the stored schema).
  { auto db = OpenOrFail({.path = dir.Sub("db2"), .schema_json = kSchema}); }
  auto reopened = OpenOrFail({.path = dir.Sub("db2")});
  CHECK(reopened->SchemaJson().find("\"scope\"") != std::string::npos);
}

}  // namespace
