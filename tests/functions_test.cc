// Named functions (functions.h): registration, calls by name with argument and return
// validation, public and internal visibility, the auth context, actions calling functions by
// name, nested calls inside one transaction, and subscriptions by name.
#include <atomic>
#include <catch2/catch.hpp>
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
  "channels": {"fields": {"app": "string", "channel": "string", "version": "int64"},
               "indexes": [{"name": "by_app_channel", "fields": ["app", "channel"],
                            "unique": true}]},
  "audit": {"fields": {"who": "string", "what": "string"}}}})json";

// Counts the documents of a table.
int64_t CountOf(Database& db, std::string_view table) {
  absl::StatusOr<std::vector<Document>> docs =
      db.Query([&](Reader& r) { return r.Table(table).Collect(); });
  REQUIRE(docs.ok());
  return static_cast<int64_t>(docs->size());
}

// A database with the functions of a small app registered:
//   channels:upsert (public mutation), channels:get (public query), channels:count (internal
//   query), audit:record (internal mutation), channels:promote (public action).
struct App {
  TempDir dir;
  std::unique_ptr<Database> db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});

  App() {
    REQUIRE_OK(db->RegisterMutation(
        {.name = "channels:upsert",
         .args = R"({"app": "string", "channel": "string", "version": "int64"})",
         .returns = R"({"type": "id", "table": "channels"})"},
        [](MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
          absl::StatusOr<std::optional<Document>> existing =
              ctx.db()
                  .Table("channels")
                  .WithIndex("by_app_channel",
                             Eq("app", args["app"]).Eq("channel", args["channel"]))
                  .Unique();
          if (!existing.ok()) return existing.status();
          const std::string who = ctx.auth().identity() ? ctx.auth().identity()->subject : "-";
          absl::StatusOr<Value> audited = ctx.RunMutation(
              "audit:record", Object{{"who", who}, {"what", args["channel"].as_string()}});
          if (!audited.ok()) return audited.status();
          if (existing->has_value()) {
            const DocumentId id = (*existing)->id();
            absl::Status patched = ctx.db().Patch(id, {{"version", args["version"]}});
            if (!patched.ok()) return patched;
            return Value(id);
          }
          absl::StatusOr<DocumentId> id = ctx.db().Insert("channels", args.as_object());
          if (!id.ok()) return id.status();
          return Value(*id);
        }));
    REQUIRE_OK(db->RegisterQuery(
        {.name = "channels:get",
         .args = R"({"app": "string", "channel": "string"})",
         .returns = R"({"type": "union", "of": ["null", "int64"]})"},
        [](QueryContext& ctx, const Value& args) -> absl::StatusOr<Value> {
          absl::StatusOr<std::optional<Document>> doc =
              ctx.db()
                  .Table("channels")
                  .WithIndex("by_app_channel",
                             Eq("app", args["app"]).Eq("channel", args["channel"]))
                  .Unique();
          if (!doc.ok()) return doc.status();
          return doc->has_value() ? (**doc)["version"] : Value(nullptr);
        }));
    REQUIRE_OK(db->RegisterQuery(
        {.name = "channels:count", .visibility = Visibility::kInternal, .returns = R"("int64")"},
        [](QueryContext& ctx, const Value&) -> absl::StatusOr<Value> {
          absl::StatusOr<std::vector<Document>> docs = ctx.db().Table("channels").Collect();
          if (!docs.ok()) return docs.status();
          return Value(docs->size());
        }));
    REQUIRE_OK(db->RegisterMutation(
        {.name = "audit:record",
         .visibility = Visibility::kInternal,
         .args = R"({"who": "string", "what": "string"})",
         .returns = R"("null")"},
        [](MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
          absl::StatusOr<DocumentId> id = ctx.db().Insert("audit", args.as_object());
          if (!id.ok()) return id.status();
          return Value(nullptr);
        }));
    // Promotes preview to production: two mutations by name, each its own transaction.
    REQUIRE_OK(db->RegisterAction(
        {.name = "channels:promote", .args = R"({"app": "string"})", .returns = R"("int64")"},
        [](ActionContext& ctx, const Value& args) -> absl::StatusOr<Value> {
          absl::StatusOr<Value> preview =
              ctx.RunQuery("channels:get", Object{{"app", args["app"]}, {"channel", "preview"}});
          if (!preview.ok()) return preview.status();
          if (preview->is_null()) return absl::FailedPreconditionError("no preview version");
          absl::StatusOr<Value> upserted = ctx.RunMutation(
              "channels:upsert",
              Object{{"app", args["app"]}, {"channel", "production"}, {"version", *preview}});
          if (!upserted.ok()) return upserted.status();
          return ctx.RunQuery("channels:count", Object{});
        }));
  }

  absl::StatusOr<Value> Upsert(std::string_view app, std::string_view channel, int64_t version,
                               const Auth& auth = Auth::Anonymous()) {
    return db->Call("channels:upsert",
                    Object{{"app", app}, {"channel", channel}, {"version", Value::Int64(version)}},
                    auth);
  }
};

TEST_CASE("a function is called by name with validated arguments") {
  App app;
  absl::StatusOr<Value> id = app.Upsert("notes", "preview", 3);
  REQUIRE_OK(id);
  CHECK(id->is_string());
  absl::StatusOr<Value> version =
      app.db->Call("channels:get", Object{{"app", "notes"}, {"channel", "preview"}});
  REQUIRE_OK(version);
  CHECK(*version == Value::Int64(3));
  absl::StatusOr<Value> missing =
      app.db->Call("channels:get", Object{{"app", "notes"}, {"channel", "production"}});
  REQUIRE_OK(missing);
  CHECK(missing->is_null());
}

TEST_CASE("argument errors name the function, the argument and the expected type") {
  App app;
  // A wrong type.
  CHECK_ERROR(app.db->Call("channels:upsert",
                           Object{{"app", "notes"}, {"channel", "preview"}, {"version", 1.5}}),
              Code::kInvalidArgument, "channels:upsert", "\"version\"", "expected int64",
              "float64");
  // A missing argument.
  CHECK_ERROR(app.db->Call("channels:get", Object{{"app", "notes"}}), Code::kInvalidArgument,
              "channels:get", "\"channel\"", "missing", "expected string");
  // An argument the function does not declare.
  CHECK_ERROR(
      app.db->Call("channels:get", Object{{"app", "notes"}, {"channel", "preview"}, {"limit", 5}}),
      Code::kInvalidArgument, "\"limit\"", "not in the schema");
  // Arguments that are not an object.
  CHECK_ERROR(app.db->Call("channels:get", Value("notes")), Code::kInvalidArgument, "channels:get",
              "must be an object", "string");
  // Nothing was written by the refused calls.
  CHECK(CountOf(*app.db, "channels") == 0);
  CHECK(CountOf(*app.db, "audit") == 0);
}

TEST_CASE("a refused return value fails the call, and a mutation writes nothing") {
  App app;
  REQUIRE_OK(app.db->RegisterQuery(
      {.name = "bad:query", .returns = R"("string")"},
      [](QueryContext&, const Value&) -> absl::StatusOr<Value> { return Value::Int64(7); }));
  CHECK_ERROR(app.db->Call("bad:query", Object{}), Code::kInternal, "bad:query",
              "returns validator", "expected string", "int64");
  REQUIRE_OK(app.db->RegisterMutation(
      {.name = "bad:mutation", .returns = R"({"type": "object", "fields": {"ok": "boolean"}})"},
      [](MutationContext& ctx, const Value&) -> absl::StatusOr<Value> {
        absl::StatusOr<DocumentId> id = ctx.db().Insert("audit", {{"who", "x"}, {"what", "y"}});
        if (!id.ok()) return id.status();
        return Value(Object{{"ok", "yes"}});
      }));
  CHECK_ERROR(app.db->Call("bad:mutation", Object{}), Code::kInternal, "bad:mutation", "at \"ok\"",
              "expected boolean");
  CHECK(CountOf(*app.db, "audit") == 0);
}

TEST_CASE("internal functions are refused at the public entry and callable from trusted code") {
  App app;
  CHECK_ERROR(app.db->Call("channels:count", Object{}), Code::kPermissionDenied, "channels:count",
              "internal");
  CHECK_ERROR(app.db->Call("audit:record", Object{{"who", "a"}, {"what", "b"}}),
              Code::kPermissionDenied, "audit:record");
  CHECK(CountOf(*app.db, "audit") == 0);
  absl::StatusOr<Value> count = app.db->CallInternal("channels:count", Object{});
  REQUIRE_OK(count);
  CHECK(*count == Value::Int64(0));
  // From another function: channels:upsert calls the internal audit:record.
  REQUIRE_OK(app.Upsert("notes", "preview", 1));
  CHECK(CountOf(*app.db, "audit") == 1);
  // The subscription entry is public too.
  CHECK_ERROR(app.db->SubscribeFunction("channels:count", Object{}, [](const QueryUpdate&) {}),
              Code::kPermissionDenied, "channels:count");
}

TEST_CASE("registration errors name the function") {
  App app;
  auto query = [](QueryContext&, const Value&) -> absl::StatusOr<Value> { return Value(); };
  CHECK_ERROR(app.db->RegisterQuery({.name = "channels:get"}, query), Code::kAlreadyExists,
              "channels:get", "query");
  CHECK_ERROR(app.db->RegisterQuery({.name = "nocolon"}, query), Code::kInvalidArgument, "nocolon",
              "module:function");
  CHECK_ERROR(app.db->RegisterQuery({.name = "mod:9bad"}, query), Code::kInvalidArgument,
              "mod:9bad");
  CHECK_ERROR(app.db->RegisterQuery({.name = "m:a", .args = "{not json"}, query),
              Code::kInvalidArgument, "m:a", "args", "not valid JSON");
  CHECK_ERROR(app.db->RegisterQuery({.name = "m:b", .args = R"({"x": "strin"})"}, query),
              Code::kInvalidArgument, "m:b", "strin");
  CHECK_ERROR(
      app.db->RegisterQuery({.name = "m:c", .returns = R"({"type": "id", "table": "no"})"}, query),
      Code::kInvalidArgument, "m:c", "id(no)");
  CHECK_ERROR(app.db->Call("m:none", Object{}), Code::kNotFound, "m:none");
}

TEST_CASE("functions read the caller's identity from their context") {
  App app;
  std::vector<std::string> seen;
  REQUIRE_OK(app.db->RegisterQuery({.name = "auth:whoami", .returns = R"("string")"},
                                   [](QueryContext& ctx, const Value&) -> absl::StatusOr<Value> {
                                     const Auth& auth = ctx.auth();
                                     if (auth.is_admin()) return Value("admin");
                                     const Identity* identity = auth.identity();
                                     if (identity == nullptr) return Value("anonymous");
                                     return Value(identity->subject + "@" + identity->workspace_id +
                                                  "/" + identity->tenant_id +
                                                  (identity->HasRole("owner") ? " owner" : "") +
                                                  " " + identity->token_identifier);
                                   }));
  const Identity alice{.subject = "alice",
                       .issuer = "https://auth.example",
                       .token_identifier = "https://auth.example|alice",
                       .tenant_id = "t1",
                       .workspace_id = "ws1",
                       .roles = {"owner"}};
  absl::StatusOr<Value> as_alice = app.db->Call("auth:whoami", Object{}, Auth::User(alice));
  REQUIRE_OK(as_alice);
  CHECK(*as_alice == Value("alice@ws1/t1 owner https://auth.example|alice"));
  absl::StatusOr<Value> anonymous = app.db->Call("auth:whoami", Object{});
  REQUIRE_OK(anonymous);
  CHECK(*anonymous == Value("anonymous"));
  absl::StatusOr<Value> admin = app.db->CallInternal("auth:whoami", Object{});
  REQUIRE_OK(admin);
  CHECK(*admin == Value("admin"));
  // Nested calls run as the same caller.
  REQUIRE_OK(app.Upsert("notes", "preview", 1, Auth::User(alice)));
  absl::StatusOr<std::vector<Document>> audit =
      app.db->Query([](Reader& r) { return r.Table("audit").Collect(); });
  REQUIRE_OK(audit);
  REQUIRE(audit->size() == 1);
  CHECK((*audit)[0]["who"] == Value("alice"));
}

TEST_CASE("an action calls functions by name, each call its own transaction") {
  App app;
  CHECK_ERROR(app.db->Call("channels:promote", Object{{"app", "notes"}}), Code::kFailedPrecondition,
              "no preview version");
  REQUIRE_OK(app.Upsert("notes", "preview", 4));
  absl::StatusOr<Value> count = app.db->Call("channels:promote", Object{{"app", "notes"}});
  REQUIRE_OK(count);
  CHECK(*count == Value::Int64(2));
  absl::StatusOr<Value> production =
      app.db->Call("channels:get", Object{{"app", "notes"}, {"channel", "production"}});
  REQUIRE_OK(production);
  CHECK(*production == Value::Int64(4));

  // An action whose second step fails keeps its first step: actions are not transactional.
  REQUIRE_OK(app.db->RegisterAction(
      {.name = "steps:half"}, [](ActionContext& ctx, const Value&) -> absl::StatusOr<Value> {
        absl::StatusOr<Value> first = ctx.RunMutation(
            "channels:upsert", Object{{"app", "half"}, {"channel", "preview"}, {"version", 1}});
        if (!first.ok()) return first.status();
        return ctx.RunMutation("channels:upsert", Object{{"app", "half"}});  // missing args
      }));
  CHECK_ERROR(app.db->Call("steps:half", Object{}), Code::kInvalidArgument, "\"channel\"");
  absl::StatusOr<Value> kept =
      app.db->Call("channels:get", Object{{"app", "half"}, {"channel", "preview"}});
  REQUIRE_OK(kept);
  CHECK(*kept == Value::Int64(1));

  // Calls by name check the kind: a mutation is not a query.
  REQUIRE_OK(app.db->RegisterAction({.name = "steps:wrongkind"},
                                    [](ActionContext& ctx, const Value&) -> absl::StatusOr<Value> {
                                      return ctx.RunQuery("channels:upsert", Object{});
                                    }));
  CHECK_ERROR(app.db->Call("steps:wrongkind", Object{}), Code::kFailedPrecondition,
              "channels:upsert", "is a mutation, not a query");
}

TEST_CASE("a mutation's nested calls share its transaction and its fate") {
  App app;
  REQUIRE_OK(app.db->RegisterMutation(
      {.name = "steps:failafter"}, [](MutationContext& ctx, const Value&) -> absl::StatusOr<Value> {
        absl::StatusOr<Value> audited =
            ctx.RunMutation("audit:record", Object{{"who", "w"}, {"what", "x"}});
        if (!audited.ok()) return audited.status();
        // The nested write is visible here, in the same transaction.
        absl::StatusOr<Value> count = ctx.RunQuery("channels:count", Object{});
        if (!count.ok()) return count.status();
        absl::StatusOr<std::vector<Document>> audit = ctx.db().Table("audit").Collect();
        if (!audit.ok()) return audit.status();
        if (audit->size() != 1) return absl::InternalError("nested write not visible");
        return absl::AbortedError("changed my mind");
      }));
  CHECK_ERROR(app.db->Call("steps:failafter", Object{}), Code::kAborted, "changed my mind");
  CHECK(CountOf(*app.db, "audit") == 0);
}

TEST_CASE("a query is subscribed to by name and arguments") {
  App app;
  std::atomic<int> updates = 0;
  Value last;
  std::mutex mu;
  CHECK_ERROR(
      app.db->SubscribeFunction("channels:get", Object{{"app", 1}}, [](const QueryUpdate&) {}),
      Code::kInvalidArgument, "\"app\"");
  absl::StatusOr<Subscription> sub = app.db->SubscribeFunction(
      "channels:get", Object{{"app", "notes"}, {"channel", "production"}},
      [&](const QueryUpdate& update) {
        // No Catch2 assertion on the notifier thread: an error is kept as its text, which the
        // checks below then show.
        std::lock_guard<std::mutex> lock(mu);
        last = update.result.ok() ? *update.result : Value(update.result.status().ToString());
        ++updates;
      });
  REQUIRE_OK(sub);
  REQUIRE_OK(app.db->WaitForDelivery(0, testing::kHangGuard));
  {
    std::lock_guard<std::mutex> lock(mu);
    CHECK(updates == 1);
    CHECK(last.is_null());
  }
  Timestamp ts = 0;
  // A write elsewhere (another app) does not re-deliver; the promotion does.
  REQUIRE_OK(app.Upsert("other", "production", 9));
  REQUIRE_OK(app.Upsert("notes", "preview", 5));
  REQUIRE_OK(app.db->Call("channels:promote", Object{{"app", "notes"}}));
  ts = app.db->LastCommitTimestamp();
  REQUIRE_OK(app.db->WaitForDelivery(ts, testing::kHangGuard));
  std::lock_guard<std::mutex> lock(mu);
  CHECK(updates == 2);
  CHECK(last == Value::Int64(5));
}

}  // namespace
