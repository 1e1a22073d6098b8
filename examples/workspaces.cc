// workspaces: a multi-tenant backend in a few named functions. Two developers in two workspaces
// create tasks through public functions; a workspace-scoped table keeps each one's tasks out of
// the other's reach (row-level scoping), an internal function records an audit trail, an API
// token is stored only as its hash, and a subscription by name prints Alice's task list live.
//
//   workspaces [DB_DIR]
//
// DB_DIR must not exist yet or be empty (default: a fresh directory under the system temp
// directory, removed at the end). Exits 0 when every step behaved as printed, 1 otherwise.
#include <stagedb/stagedb.h>

#include <iostream>
#include <mutex>
#include <string>

#include "example_support.h"

namespace {

using stagedb_examples::Expect;
using stagedb_examples::Finish;

using stagedb::Value;

constexpr const char* kSchema = R"json({
  "tables": {
    "tasks": {
      "fields": {"workspace_id": "string", "title": "string", "done": "boolean"},
      "indexes": [{"name": "by_workspace", "fields": ["workspace_id"]}],
      "scope": {"workspace": "workspace_id"}
    },
    "audit": {"fields": {"who": "string", "what": "string"}},
    "api_keys": {
      "fields": {"owner": "string", "hash": "string", "suffix": "string"},
      "indexes": [{"name": "by_hash", "fields": ["hash"], "unique": true}]
    }
  }
})json";

absl::Status RegisterFunctions(stagedb::Database& db) {
  // Public: create a task in the caller's workspace (the scope refuses any other).
  absl::Status status = db.RegisterMutation(
      {.name = "tasks:create",
       .args = R"({"title": "string"})",
       .returns = R"({"type": "id", "table": "tasks"})"},
      [](stagedb::MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        const stagedb::Identity* who = ctx.auth().identity();
        if (who == nullptr)
          return absl::UnauthenticatedError("tasks:create needs a signed-in user");
        absl::StatusOr<stagedb::DocumentId> id = ctx.db().Insert(
            "tasks",
            {{"workspace_id", who->workspace_id}, {"title", args["title"]}, {"done", false}});
        if (!id.ok()) return id.status();
        absl::StatusOr<Value> audited = ctx.RunMutation(
            "audit:record", stagedb::Object{{"who", who->subject},
                                            {"what", "created " + args["title"].as_string()}});
        if (!audited.ok()) return audited.status();
        return Value(*id);
      });
  if (!status.ok()) return status;
  // Internal: only other functions and trusted code may write the audit trail.
  status = db.RegisterMutation(
      {.name = "audit:record",
       .visibility = stagedb::Visibility::kInternal,
       .args = R"({"who": "string", "what": "string"})"},
      [](stagedb::MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        absl::StatusOr<stagedb::DocumentId> id = ctx.db().Insert("audit", args.as_object());
        if (!id.ok()) return id.status();
        return Value(nullptr);
      });
  if (!status.ok()) return status;
  // Public: the caller's tasks. No filter on the workspace is needed: the scope applies it.
  return db.RegisterQuery(
      {.name = "tasks:list", .returns = R"({"type": "array", "items": "string"})"},
      [](stagedb::QueryContext& ctx, const Value&) -> absl::StatusOr<Value> {
        absl::StatusOr<std::vector<stagedb::Document>> tasks = ctx.db().Table("tasks").Collect();
        if (!tasks.ok()) return tasks.status();
        stagedb::Array titles;
        for (const stagedb::Document& task : *tasks) titles.push_back(task["title"]);
        return Value(std::move(titles));
      });
}

int Run(const std::string& path) {
  absl::StatusOr<std::unique_ptr<stagedb::Database>> opened =
      stagedb::Database::Open({.path = path, .schema_json = kSchema});
  if (!opened.ok()) {
    std::cerr << "open: " << opened.status() << "\n";
    return 1;
  }
  stagedb::Database& db = **opened;
  if (absl::Status status = RegisterFunctions(db); !status.ok()) {
    std::cerr << "register: " << status << "\n";
    return 1;
  }
  const auto alice = stagedb::Auth::User({.subject = "alice", .workspace_id = "ws_red"});
  const auto bob = stagedb::Auth::User({.subject = "bob", .workspace_id = "ws_blue"});

  std::cout << "Alice subscribes to tasks:list by name\n";
  std::mutex mu;
  Value alice_view;
  absl::StatusOr<stagedb::Subscription> live = db.SubscribeFunction(
      "tasks:list", stagedb::Object{},
      [&](const stagedb::QueryUpdate& update) {
        std::lock_guard<std::mutex> lock(mu);
        alice_view = update.result.ok() ? *update.result : Value(update.result.status().ToString());
        std::cout << "  [live] Alice's tasks: " << stagedb::ValueToJson(alice_view) << "\n";
      },
      alice);
  Expect(live.ok(), "the subscription is made");

  std::cout << "Alice and Bob create tasks\n";
  Expect(db.Call("tasks:create", stagedb::Object{{"title", "ship the editor"}}, alice).ok(),
         "Alice creates a task");
  Expect(db.Call("tasks:create", stagedb::Object{{"title", "fix login"}}, bob).ok(),
         "Bob creates a task");
  absl::StatusOr<Value> bad = db.Call("tasks:create", stagedb::Object{{"title", 42}}, alice);
  Expect(absl::IsInvalidArgument(bad.status()),
         "a wrong argument type is refused: " + std::string(bad.status().message()));
  Expect(absl::IsPermissionDenied(
             db.Call("audit:record", stagedb::Object{{"who", "eve"}, {"what", "x"}}).status()),
         "the internal audit:record is refused at the public entry");

  std::cout << "Each sees only their own workspace\n";
  absl::StatusOr<Value> bobs = db.Call("tasks:list", stagedb::Object{}, bob);
  Expect(bobs.ok() && *bobs == Value(stagedb::Array{"fix login"}),
         "Bob's list: " + (bobs.ok() ? stagedb::ValueToJson(*bobs) : bobs.status().ToString()));
  absl::StatusOr<Value> everyone = db.CallInternal("tasks:list", stagedb::Object{});
  Expect(everyone.ok() && everyone->as_array().size() == 2,
         "an admin (CallInternal) sees both workspaces");

  std::cout << "An API token for Alice, stored as its hash\n";
  absl::StatusOr<std::string> token = stagedb::GenerateToken("sk_");
  const stagedb::HashedToken hashed = stagedb::HashToken(*token);
  Expect(db.Mutate([&](stagedb::Transaction& tx) {
             return tx.Insert("api_keys", {{"owner", "alice"},
                                           {"hash", hashed.sha256_hex},
                                           {"suffix", hashed.display_suffix}});
           }).ok(),
         "the key is stored (shown once: ..." + hashed.display_suffix + ")");
  absl::StatusOr<std::optional<stagedb::Document>> key = db.Query([&](stagedb::Reader& r) {
    return r.Table("api_keys")
        .WithIndex("by_hash", stagedb::Eq("hash", stagedb::HashToken(*token).sha256_hex))
        .Unique();
  });
  Expect(key.ok() && key->has_value() && (**key)["owner"] == Value("alice"),
         "a presented token finds its owner by hash");

  // Read your writes: wait until Alice's subscription has seen the last commit.
  Expect(db.WaitForDelivery(db.LastCommitTimestamp(), absl::Seconds(10)).ok(),
         "the live view caught up");
  std::lock_guard<std::mutex> lock(mu);
  Expect(alice_view == Value(stagedb::Array{"ship the editor"}),
         "Alice's live view never showed Bob's task");
  return Finish();
}

}  // namespace

int main(int argc, char** argv) {
  return stagedb_examples::RunInDirectory(argc, argv, "stagedb-workspaces", Run);
}
