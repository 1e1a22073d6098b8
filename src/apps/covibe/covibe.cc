// Covibe's shared helpers, the registration of every function, and CallTool
// (stagedb/apps/covibe.h). The functions themselves are in identity.cc, work.cc, sharing.cc.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "apps/covibe/internal.h"
#include "stagedb/secrets.h"

namespace stagedb::covibe {
namespace internal {

namespace {

// The MCP tools: mutations record their usage themselves, CallTool records the queries'.
const std::vector<std::string> kToolMutations = {
    "covibe:preflight",         "covibe:planTask",           "covibe:updatePlannedTask",
    "covibe:deletePlannedTask", "covibe:startTask",          "covibe:startPlannedTask",
    "covibe:setTaskStatus",     "covibe:createWorkstream",   "covibe:startWorkstream",
    "covibe:cancelWorkstream",  "covibe:completeWorkstream", "covibe:publishContext",
    "covibe:revokeContext"};
const std::vector<std::string> kToolQueries = {
    "covibe:getTask",        "covibe:listTasks",       "covibe:listOverlapWarnings",
    "covibe:listWorkEvents", "covibe:listWorkstreams", "covibe:listActiveContexts"};

bool IsIn(const std::vector<std::string>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

constexpr const char* kSessionArgField = R"("session_id": {"type": "optional", "of": "string"})";

// `{...fields...}` with the session_id argument added.
std::string WithSessionArg(const std::string& args) {
  const size_t open = args.find('{');
  const size_t close = args.rfind('}');
  if (open == std::string::npos || close == std::string::npos) return args;
  const std::string inner = args.substr(open + 1, close - open - 1);
  const bool empty = inner.find_first_not_of(" \n\t") == std::string::npos;
  return "{" + inner + (empty ? "" : ", ") + kSessionArgField + "}";
}

absl::Status NotATool(std::string_view name) {
  return absl::InternalError(
      absl::StrFormat("covibe: \"%s\" is registered as a tool but is not in ToolNames()", name));
}

}  // namespace

absl::StatusOr<std::optional<Document>> FindMembership(Reader& db, std::string_view workspace_id,
                                                       std::string_view developer_id) {
  return db.Table("covibe_workspace_memberships")
      .WithIndex("by_workspace_developer",
                 Eq("workspace_id", Value(workspace_id)).Eq("developer_id", Value(developer_id)))
      .First();
}

absl::StatusOr<Caller> RequireMember(Reader& db, const Auth& auth) {
  const Identity* who = auth.identity();
  if (who == nullptr) {
    return absl::UnauthenticatedError(
        "covibe: this function needs a signed-in developer (Auth::User; verify an MCP token with "
        "covibe:verifyToken)");
  }
  for (auto [claim, value] :
       {std::pair<std::string_view, const std::string*>{"subject", &who->subject},
        {"tenant_id", &who->tenant_id},
        {"workspace_id", &who->workspace_id}}) {
    if (value->empty()) {
      return absl::UnauthenticatedError(
          absl::StrFormat("covibe: the identity has no %s claim", claim));
    }
  }
  absl::StatusOr<std::optional<Document>> membership =
      FindMembership(db, who->workspace_id, who->subject);
  if (!membership.ok()) return membership.status();
  if (!membership->has_value() || (**membership)["status"].as_string() != "active") {
    return absl::PermissionDeniedError(absl::StrFormat(
        "table \"covibe_workspace_memberships\": developer \"%s\" is not an active member of "
        "workspace \"%s\"",
        who->subject, who->workspace_id));
  }
  return Caller{.developer_id = who->subject,
                .tenant_id = who->tenant_id,
                .workspace_id = who->workspace_id,
                .workspace_admin = (**membership)["role"].as_string() == "admin"};
}

absl::StatusOr<Document> RequireDoc(Reader& db, std::string_view table, const Value& id) {
  absl::StatusOr<std::optional<Document>> found = db.Get(id.as_string());
  if (!found.ok()) return found.status();
  if (!found->has_value()) {
    return absl::NotFoundError(
        absl::StrFormat("table \"%s\": no document \"%s\"", table, id.as_string()));
  }
  return **std::move(found);
}

absl::Status RequireOwner(const Document& doc, std::string_view table, std::string_view owner_field,
                          const Caller& caller) {
  if (doc[owner_field].is_string() && doc[owner_field].as_string() == caller.developer_id) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrFormat(
      "table \"%s\" field \"%s\": document \"%s\" belongs to developer \"%s\", not \"%s\"", table,
      owner_field, doc.id().text(), DebugString(doc[owner_field]), caller.developer_id));
}

absl::StatusOr<Document> RequireByHash(Reader& db, std::string_view table, std::string_view field,
                                       std::string_view secret, absl::Status missing) {
  absl::StatusOr<std::optional<Document>> found =
      db.Table(table)
          .WithIndex("by_" + std::string(field),
                     Eq(std::string(field), HashToken(secret).sha256_hex))
          .First();
  if (!found.ok()) return found.status();
  if (!found->has_value()) return missing;
  return **std::move(found);
}

Result Revoke(Transaction& tx, const Caller& caller, std::string_view table, const Value& id,
              std::string_view owner_field, bool admins_too, double now) {
  absl::StatusOr<Document> row = RequireDoc(tx, table, id);
  if (!row.ok()) return row.status();
  if (!(admins_too && caller.workspace_admin)) {
    if (absl::Status s = RequireOwner(*row, table, owner_field, caller); !s.ok()) return s;
  }
  if ((*row)["revoked_at"].is_float64()) return Value(false);
  Object patch{{"revoked_at", now}};
  if ((*row)["updated_at"].is_float64()) patch["updated_at"] = now;
  if (absl::Status s = tx.Patch(row->id(), std::move(patch)); !s.ok()) return s;
  return Value(true);
}

absl::Status WriteWorkEvent(Transaction& tx, const Caller& caller, double now,
                            std::string_view event_type, const Value& task, const Value& workstream,
                            std::string_view summary, const Value& payload, const Value& session) {
  return tx
      .Insert("covibe_work_events", caller.Scoped({{"event_type", event_type},
                                                   {"developer_id", caller.developer_id},
                                                   {"session_id", session},
                                                   {"task_id", task},
                                                   {"workstream_id", workstream},
                                                   {"summary", summary},
                                                   {"payload_json", ValueToJson(payload)},
                                                   {"created_at", now}}))
      .status();
}

absl::Status WriteFeedback(Transaction& tx, const Caller& caller, double now, std::string_view tool,
                           std::string_view feedback_type, std::string_view message,
                           const Value& warning) {
  return tx
      .Insert(
          "covibe_agent_feedback_events",
          caller.Scoped({{"developer_id", caller.developer_id},
                         {"tool_name", tool},
                         {"feedback_type", feedback_type},
                         {"message", message},
                         {"required_action", "coordinate with the other developer before editing"},
                         {"warning_id", warning},
                         {"created_at", now}}))
      .status();
}

absl::Status WriteUsage(Transaction& tx, const Caller& caller, double now, std::string_view tool,
                        std::string_view status, std::string_view feedback_type, double duration_ms,
                        const Value& session) {
  return tx
      .Insert("covibe_usage_events",
              caller.Scoped({{"developer_id", caller.developer_id},
                             {"agent_session_id", session},
                             {"tool_name", tool},
                             {"status", status},
                             {"feedback_type",
                              feedback_type.empty() ? Value(Undefined{}) : Value(feedback_type)},
                             {"duration_ms", std::max(0.0, duration_ms)},
                             {"created_at", now}}))
      .status();
}

absl::Status BadArg(std::string_view fn, std::string_view arg, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrFormat("function \"%s\": argument \"%s\": %s", fn, arg, what));
}

std::string StringsJson(const std::vector<std::string>& items) {
  return nlohmann::json(items).dump();
}

absl::StatusOr<std::vector<std::string>> ParseStrings(std::string_view json,
                                                      std::string_view what) {
  nlohmann::json parsed = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  std::vector<std::string> items;
  bool ok = parsed.is_array();
  if (ok) {
    for (const nlohmann::json& item : parsed) {
      if (!item.is_string()) ok = false;
      if (ok) items.push_back(item.get<std::string>());
    }
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: not a JSON array of strings: %s", what, json));
  }
  return items;
}

std::vector<std::string> StringsArg(const Value& args, std::string_view name) {
  std::vector<std::string> items;
  if (args[name].is_array()) {
    for (const Value& item : args[name].as_array()) items.push_back(item.as_string());
  }
  return items;
}

Value Without(const Document& doc, std::initializer_list<std::string_view> hidden) {
  Object fields = doc.fields();
  for (std::string_view name : hidden) fields.erase(name);
  return Value(std::move(fields));
}

absl::StatusOr<double> TtlHoursArg(std::string_view fn, const Value& args,
                                   absl::Duration fallback) {
  if (!args["ttl_hours"].is_float64()) return absl::ToDoubleMilliseconds(fallback);
  const double hours = args["ttl_hours"].as_float64();
  if (!(hours > 0) || hours > 24 * 30) {
    return BadArg(fn, "ttl_hours",
                  absl::StrFormat("%g is not between 0 (exclusive) and 720 hours", hours));
  }
  return hours * 3600 * 1000;
}

void Registrar::MemberMutation(FunctionDef def, MemberMutationFn fn) {
  Mutation(std::move(def), [fn = std::move(fn)](MutationContext& ctx, const Value& args) -> Result {
    absl::StatusOr<Caller> caller = RequireMember(ctx.db(), ctx.auth());
    if (!caller.ok()) return caller.status();
    return fn(ctx, args, *caller);
  });
}

void Registrar::ToolMutation(FunctionDef def, ToolMutationFn fn) {
  if (!IsIn(kToolMutations, def.name)) return Keep(NotATool(def.name));
  def.args = WithSessionArg(def.args);
  const std::string name = def.name;
  Mutation(
      std::move(def),
      [env = env_, name, fn = std::move(fn)](MutationContext& ctx, const Value& args) -> Result {
        const double start = env->NowMs();
        absl::StatusOr<Caller> caller = RequireMember(ctx.db(), ctx.auth());
        if (!caller.ok()) return caller.status();
        std::string feedback;
        Result result = fn(ctx, args, *caller, &feedback);
        if (!result.ok()) return result;
        const double now = env->NowMs();
        absl::Status s = WriteUsage(ctx.db(), *caller, now, name, "ok", feedback, now - start,
                                    args["session_id"]);
        if (!s.ok()) return s;
        return result;
      });
}

void Registrar::ToolQuery(FunctionDef def, ToolQueryFn fn) {
  if (!IsIn(kToolQueries, def.name)) return Keep(NotATool(def.name));
  def.args = WithSessionArg(def.args);
  Query(std::move(def), [fn = std::move(fn)](QueryContext& ctx, const Value& args) -> Result {
    absl::StatusOr<Caller> caller = RequireMember(ctx.db(), ctx.auth());
    if (!caller.ok()) return caller.status();
    return fn(ctx, args, *caller);
  });
}

namespace {

void RegisterDoctor(Registrar& r) {
  Database* db = &r.db();
  r.Query({.name = "covibe:doctor", .args = "{}"}, [db](QueryContext&, const Value&) -> Result {
    absl::StatusOr<HealthReport> report = Doctor(*db);
    if (!report.ok()) return report.status();
    return report->ToValue();
  });
}

// "covibe_tasks.task_type, covibe_share_links": what a degraded report lacks.
std::string Missing(const HealthReport& report) {
  std::string all;
  for (const auto* list : {&report.missing_tables, &report.missing_columns, &report.missing_indexes,
                           &report.missing_scopes, &report.missing_ttls}) {
    for (const std::string& item : *list) all += (all.empty() ? "" : ", ") + item;
  }
  return all;
}

// covibe:recordUsage: the usage of tool queries and of refused tool calls. Internal (a member
// could forge usage rows otherwise): CallTool calls it with the caller's auth, so the row lies
// in the caller's scope.
void RegisterUsage(Registrar& r) {
  r.Mutation({.name = "covibe:recordUsage",
              .visibility = Visibility::kInternal,
              .args = R"({"tool_name": "string",
                   "status": {"type": "union", "of": [{"type": "literal", "value": "ok"},
                                                      {"type": "literal", "value": "error"}]},
                   "duration_ms": "number",
                   "feedback_type": {"type": "optional", "of": "string"},
                   "session_id": {"type": "optional", "of": "string"}})",
              .returns = R"("null")"},
             [env = r.env()](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<Caller> caller = RequireMember(ctx.db(), ctx.auth());
               if (!caller.ok()) return caller.status();
               const std::string& tool = args["tool_name"].as_string();
               if (!IsIn(kToolMutations, tool) && !IsIn(kToolQueries, tool)) {
                 return BadArg("covibe:recordUsage", "tool_name",
                               absl::StrFormat("\"%s\" is not a Covibe tool", tool));
               }
               const std::string feedback =
                   args["feedback_type"].is_string() ? args["feedback_type"].as_string() : "";
               absl::Status s =
                   WriteUsage(ctx.db(), *caller, env->NowMs(), tool, args["status"].as_string(),
                              feedback, args["duration_ms"].as_float64(), args["session_id"]);
               if (!s.ok()) return s;
               return Value(nullptr);
             });
}

}  // namespace
}  // namespace internal

const std::vector<std::string>& ToolNames() {
  static const std::vector<std::string>* names = [] {
    auto* all = new std::vector<std::string>(internal::kToolMutations);
    all->insert(all->end(), internal::kToolQueries.begin(), internal::kToolQueries.end());
    return all;
  }();
  return *names;
}

absl::StatusOr<Auth> AuthFor(const Value& verified) {
  for (std::string_view field : {"developer_id", "tenant_id", "workspace_id", "token_id"}) {
    if (!verified[field].is_string() || verified[field].as_string().empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("covibe AuthFor: the verified identity has no \"%s\" (a string); pass "
                          "covibe:verifyToken's or covibe:pollDeviceSetup's result",
                          field));
    }
  }
  Identity identity{.subject = verified["developer_id"].as_string(),
                    .issuer = "covibe",
                    .token_identifier = "covibe|" + verified["token_id"].as_string(),
                    .tenant_id = verified["tenant_id"].as_string(),
                    .workspace_id = verified["workspace_id"].as_string()};
  if (verified["agent_type"].is_string()) {
    identity.roles.push_back("agent:" + verified["agent_type"].as_string());
  }
  return Auth::User(std::move(identity));
}

absl::StatusOr<Value> CallTool(Database& db, std::string_view name, const Value& args,
                               const Auth& auth) {
  const bool mutation = internal::IsIn(internal::kToolMutations, name);
  if (!mutation && !internal::IsIn(internal::kToolQueries, name)) return db.Call(name, args, auth);
  const absl::Time start = absl::Now();
  absl::StatusOr<Value> result = db.Call(name, args, auth);
  if (mutation && result.ok()) return result;  // recorded in its own transaction
  Object usage{{"tool_name", name},
               {"status", result.ok() ? "ok" : "error"},
               {"duration_ms", absl::ToDoubleMilliseconds(absl::Now() - start)}};
  if (args["session_id"].is_string()) usage["session_id"] = args["session_id"];
  // A caller who is no member of a workspace has nowhere to record usage: that call fails too.
  // Internal, but run as the caller: the row is written in the caller's scope.
  (void)db.CallInternal("covibe:recordUsage", Value(std::move(usage)), auth);
  return result;
}

absl::Status RegisterFunctions(Database& db, CovibeOptions options) {
  internal::Registrar r(
      db, std::make_shared<const internal::Env>(internal::Env{.options = std::move(options)}));
  internal::RegisterDoctor(r);
  // On a degraded schema only the doctor runs: agents must not start work on missing tables.
  absl::StatusOr<HealthReport> health = Doctor(db);
  if (!health.ok()) return health.status();
  if (health->status != "ok") {
    if (!r.status().ok()) return r.status();
    return absl::FailedPreconditionError(absl::StrFormat(
        "covibe: the schema is degraded (missing %s); only covibe:doctor is registered",
        internal::Missing(*health)));
  }
  internal::RegisterIdentity(r);
  internal::RegisterWork(r);
  internal::RegisterSharing(r);
  internal::RegisterUsage(r);
  return r.status();
}

}  // namespace stagedb::covibe
