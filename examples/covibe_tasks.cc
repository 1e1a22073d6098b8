// covibe_tasks: Covibe's task coordination in-process. Two developers of one workspace start
// tasks on overlapping files; a subscription to covibe:listOverlapWarnings prints the warning
// live when the second one starts. A developer of another workspace sees none of it, and their
// own overlapping work never reaches the first workspace's view.
//
//   covibe_tasks [DB_DIR]
//
// DB_DIR must not exist yet or be empty (default: a fresh directory under the system temp
// directory, removed at the end). Exits 0 when every step behaved as printed, 1 otherwise.
#include <stagedb/apps/covibe.h>
#include <stagedb/stagedb.h>

#include <iostream>
#include <mutex>
#include <string>

#include "example_support.h"

namespace {

using stagedb_examples::Expect;
using stagedb_examples::Finish;
using stagedb_examples::ValueOrReport;

using stagedb::Array;
using stagedb::Object;
using stagedb::Value;

int Run(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<stagedb::Database>> opened = stagedb::Database::Open(
      {.path = dir, .schema_json = std::string(stagedb::covibe::SchemaJson())});
  if (!opened.ok()) {
    std::cerr << "Open: " << opened.status() << "\n";
    return 1;
  }
  stagedb::Database& db = **opened;
  if (absl::Status s = stagedb::covibe::RegisterFunctions(db); !s.ok()) {
    std::cerr << "RegisterFunctions: " << s << "\n";
    return 1;
  }
  // Host code (sign-up, token checks) calls internal functions; agents call tools with CallTool.
  auto host = [&](std::string_view name, Object args) -> Value {
    return ValueOrReport(db.CallInternal(name, Value(std::move(args))), name);
  };
  auto tool = [&](const stagedb::Auth& who, std::string_view name, Object args) -> Value {
    return ValueOrReport(stagedb::covibe::CallTool(db, name, Value(std::move(args)), who), name);
  };
  // An agent's MCP token, verified by the host into the caller's identity.
  auto agent_of = [&](const stagedb::Auth& developer, const std::string& agent_type) {
    Value made =
        tool(developer, "covibe:createToken", {{"label", agent_type}, {"agent_type", agent_type}});
    Value verified = host("covibe:verifyToken", {{"token", made["token"]}});
    absl::StatusOr<stagedb::Auth> auth = stagedb::covibe::AuthFor(verified);
    Expect(auth.ok(), "the verified token is an identity: " + auth.status().ToString());
    return auth.ok() ? *std::move(auth) : stagedb::Auth::Anonymous();
  };
  auto bootstrap = [&](const std::string& slug, const std::string& who) {
    return host("covibe:bootstrapTenant", {{"tenant_name", slug},
                                           {"tenant_slug", slug},
                                           {"workspace_name", slug},
                                           {"workspace_slug", "main"},
                                           {"developer_name", who},
                                           {"email", who + "@" + slug + ".dev"},
                                           {"handle", who}});
  };
  auto user = [](const Value& ids) {
    return stagedb::Auth::User({.subject = ids["developer_id"].as_string(),
                                .tenant_id = ids["tenant_id"].as_string(),
                                .workspace_id = ids["workspace_id"].as_string()});
  };
  auto start = [&](const stagedb::Auth& who, const std::string& title, Array files) {
    tool(who, "covibe:preflight",
         {{"title", title}, {"task_type", "feature"}, {"repo", "web"}, {"target_files", files}});
    return tool(
        who, "covibe:startTask",
        {{"title", title}, {"task_type", "feature"}, {"repo", "web"}, {"target_files", files}});
  };

  std::cout << "1. Acme's workspace with Ada and Grace, Globex's with Linus; each has an agent:\n";
  const Value acme = bootstrap("acme", "ada");
  const Value globex = bootstrap("globex", "linus");
  if (!acme.is_object() || !globex.is_object()) return 1;
  const stagedb::Auth ada_user = user(acme);
  Value grace_id = tool(
      ada_user, "covibe:addWorkspaceMember",
      {{"name", "Grace"}, {"email", "grace@acme.dev"}, {"handle", "grace"}, {"role", "member"}});
  const stagedb::Auth grace_user =
      stagedb::Auth::User({.subject = grace_id.as_string(),
                           .tenant_id = acme["tenant_id"].as_string(),
                           .workspace_id = acme["workspace_id"].as_string()});
  const stagedb::Auth ada = agent_of(ada_user, "claude-code");
  const stagedb::Auth grace = agent_of(grace_user, "codex");
  const stagedb::Auth linus = agent_of(user(globex), "cursor");
  Expect(ada.identity() != nullptr && grace.identity() != nullptr && linus.identity() != nullptr,
         "three agents with verified tokens");

  std::cout << "2. Ada and Linus watch their workspaces' overlap warnings, live:\n";
  std::mutex mu;
  Value acme_view, globex_view;
  int acme_updates = 0, globex_updates = 0;
  auto watch = [&](const stagedb::Auth& who, const std::string& name, Value* view, int* updates) {
    return db.SubscribeFunction(
        "covibe:listOverlapWarnings", Value(Object{}),
        stagedb::UpdateSlot([&mu, name, view, updates](const stagedb::QueryUpdate& update) {
          if (!update.result.ok()) return;
          std::lock_guard<std::mutex> lock(mu);
          ++*updates;
          *view = *update.result;
          std::cout << "     [" << name << " live] " << view->as_array().size()
                    << " open warning(s)";
          for (const Value& w : view->as_array()) std::cout << " " << w["files_json"].as_string();
          std::cout << "\n";
        }),
        who);
  };
  absl::StatusOr<stagedb::Subscription> acme_sub = watch(ada, "acme", &acme_view, &acme_updates);
  absl::StatusOr<stagedb::Subscription> globex_sub =
      watch(linus, "globex", &globex_view, &globex_updates);
  if (!acme_sub.ok() || !globex_sub.ok()) return 1;
  auto settle = [&] { (void)db.WaitForDelivery(db.LastCommitTimestamp(), absl::Seconds(30)); };
  settle();

  std::cout << "3. Starting a task without a preflight check is refused:\n";
  absl::StatusOr<Value> refused = stagedb::covibe::CallTool(
      db, "covibe:startTask", Value(Object{{"title", "x"}, {"task_type", "bug"}, {"repo", "web"}}),
      ada);
  Expect(absl::IsFailedPrecondition(refused.status()), std::string(refused.status().message()));

  std::cout << "4. Ada starts on src/api/, Linus (Globex) on the same path in his workspace:\n";
  Value ada_task = start(ada, "Rate-limit the API", Array{"src/api/"});
  Value linus_task = start(linus, "Globex API cleanup", Array{"src/api/"});
  settle();
  Expect(ada_task["warnings"] == Value(Array{}) && linus_task["warnings"] == Value(Array{}),
         "no warning: Ada's and Linus's tasks are in different workspaces");

  std::cout << "5. Grace starts a task on src/api/users.ts:\n";
  Value grace_task = start(grace, "Users endpoint pagination", Array{"src/api/users.ts"});
  settle();
  {
    std::lock_guard<std::mutex> lock(mu);
    Expect(grace_task["warnings"].is_array() && grace_task["warnings"].as_array().size() == 1,
           "Grace's start returns the warning");
    Expect(acme_view.is_array() && acme_view.as_array().size() == 1 &&
               acme_view.as_array()[0]["other_task_id"] == ada_task["task_id"],
           "Ada's live view shows the overlap with her task");
    Expect(acme_updates == 2, "Acme's view changed once (after its first result)");
    Expect(globex_updates == 1 && globex_view == Value(Array{}),
           "Linus's view never changed and shows nothing of Acme");
  }
  absl::StatusOr<Value> peek =
      db.Call("covibe:getTask", Value(Object{{"task_id", ada_task["task_id"]}}), linus);
  Expect(peek.ok() && peek->is_null(), "Linus cannot read Ada's task by its id");

  std::cout << "6. Ada finishes; the warning resolves:\n";
  tool(ada, "covibe:setTaskStatus", {{"task_id", ada_task["task_id"]}, {"status", "done"}});
  settle();
  {
    std::lock_guard<std::mutex> lock(mu);
    Expect(acme_view == Value(Array{}), "no open warning left");
  }
  absl::StatusOr<std::vector<stagedb::Document>> usage =
      db.Query([](stagedb::Reader& r) { return r.Table("covibe_usage_events").Collect(); });
  Expect(usage.ok() && usage->size() == 8,
         "each of the 8 tool calls (the refused one too) left a usage event: " +
             std::to_string(usage.ok() ? usage->size() : 0));
  return Finish();
}

}  // namespace

int main(int argc, char** argv) {
  return stagedb_examples::RunInDirectory(argc, argv, "stagedb-covibe", Run);
}
