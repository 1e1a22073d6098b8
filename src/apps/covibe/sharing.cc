// Covibe's sharing functions: session contexts (what a developer is doing on a repo and branch,
// superseded by the next publish there), weekly summaries, and share links that freeze a sanitized
// summary for a public read by an opaque token.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"
#include "apps/covibe/internal.h"
#include "stagedb/secrets.h"

namespace stagedb::covibe::internal {
namespace {

bool ContextActive(const Document& context, double now) {
  return !context["superseded_by"].is_string() && !context["revoked_at"].is_float64() &&
         context["expires_at"].as_float64() > now;
}

void RegisterContexts(Registrar& r) {
  // Publishes the caller's context for a repo and branch; it supersedes every active context
  // of the workspace there, whoever published it (superseded_by, in this same mutation). TTL
  // 24 h unless ttl_hours. Only unexpired rows are read: expired ones stay for audit.
  r.ToolMutation(
      {.name = "covibe:publishContext",
       .args = R"({"title": "string", "summary": "string", "repo": "string", "branch": "string",
                   "files_touched": {"type": "optional", "of": {"type": "array", "items": "string"}},
                   "next_actions": {"type": "optional", "of": {"type": "array", "items": "string"}},
                   "blockers": {"type": "optional", "of": {"type": "array", "items": "string"}},
                   "task_ids": {"type": "optional", "of": {"type": "array",
                                "items": {"type": "id", "table": "covibe_tasks"}}},
                   "ttl_hours": {"type": "optional", "of": "number"}})"},
      [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller,
                      std::string*) -> Result {
        constexpr std::string_view fn = "covibe:publishContext";
        for (std::string_view name : {"title", "repo", "branch"}) {
          if (args[name].as_string().empty()) return BadArg(fn, name, "must not be empty");
        }
        absl::StatusOr<double> ttl_ms = TtlHoursArg(fn, args, env->options.context_ttl);
        if (!ttl_ms.ok()) return ttl_ms.status();
        Transaction& tx = ctx.db();
        const double now = env->NowMs();
        absl::StatusOr<std::vector<Document>> earlier =
            tx.Table("covibe_session_contexts")
                .WithIndex("by_workspace_repo_branch_expires",
                           Eq("workspace_id", Value(caller.workspace_id))
                               .Eq("repo", args["repo"])
                               .Eq("branch", args["branch"])
                               .Gt("expires_at", Value(now)))
                .Collect();
        if (!earlier.ok()) return earlier.status();
        Object fields =
            caller.Scoped({{"developer_id", caller.developer_id},
                           {"session_id", args["session_id"]},
                           {"title", args["title"]},
                           {"summary", args["summary"]},
                           {"files_touched_json", StringsJson(StringsArg(args, "files_touched"))},
                           {"next_actions_json", StringsJson(StringsArg(args, "next_actions"))},
                           {"blockers_json", StringsJson(StringsArg(args, "blockers"))},
                           {"task_ids_json", StringsJson(StringsArg(args, "task_ids"))},
                           {"repo", args["repo"]},
                           {"branch", args["branch"]},
                           {"published_at", now},
                           {"expires_at", now + *ttl_ms},
                           {"created_at", now},
                           {"updated_at", now}});
        absl::StatusOr<DocumentId> id = tx.Insert("covibe_session_contexts", std::move(fields));
        if (!id.ok()) return id.status();
        Array superseded;
        for (const Document& old : *earlier) {
          if (!ContextActive(old, now)) continue;
          absl::Status s = tx.Patch(old.id(), {{"superseded_by", Value(*id)}, {"updated_at", now}});
          if (!s.ok()) return s;
          superseded.push_back(Value(old.id()));
        }
        return Value(Object{{"context_id", Value(*id)},
                            {"expires_at", now + *ttl_ms},
                            {"superseded", Value(std::move(superseded))}});
      });
  // The owner revokes a context; true when it was not revoked before.
  r.ToolMutation({.name = "covibe:revokeContext",
                  .args = R"({"context_id": {"type": "id", "table": "covibe_session_contexts"}})"},
                 [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller,
                                 std::string*) -> Result {
                   return Revoke(ctx.db(), caller, "covibe_session_contexts", args["context_id"],
                                 "developer_id", /*admins_too=*/false, env->NowMs());
                 });
  // The workspace's active contexts (unexpired, unrevoked, not superseded), newest first,
  // optionally of one repo. It reads only unexpired rows. Expiry is judged at the query's run:
  // a subscription re-runs on writes, not when the clock passes expires_at.
  r.ToolQuery(
      {.name = "covibe:listActiveContexts",
       .args = R"({"repo": {"type": "optional", "of": "string"}})"},
      [env = r.env()](QueryContext& ctx, const Value& args, const Caller& caller) -> Result {
        const double now = env->NowMs();
        const Value repo = args["repo"];
        absl::StatusOr<std::vector<Document>> contexts =
            ctx.db()
                .Table("covibe_session_contexts")
                .WithIndex(
                    "by_workspace_expires",
                    Eq("workspace_id", Value(caller.workspace_id)).Gt("expires_at", Value(now)))
                .Filter([now, repo](const Document& c) {
                  return ContextActive(c, now) && (!repo.is_string() || c["repo"] == repo);
                })
                .Collect();
        if (!contexts.ok()) return contexts.status();
        std::stable_sort(contexts->begin(), contexts->end(),
                         [](const Document& a, const Document& b) {
                           return a["published_at"].as_float64() > b["published_at"].as_float64();
                         });
        return DocumentsValue(*contexts);
      });
}

// Members that never leave Covibe in a shared payload, at any depth: identities, secrets and
// content (the seed's "metadata only").
const std::set<std::string>& HiddenKeys() {
  static const std::set<std::string>* keys = new std::set<std::string>{
      "email",   "emails",     "token",         "token_hash", "prompt",       "prompts",
      "content", "transcript", "file_contents", "tenant_id",  "workspace_id", "developer_id"};
  return *keys;
}

void Sanitize(nlohmann::json& json) {
  if (json.is_object()) {
    for (auto it = json.begin(); it != json.end();) {
      if (HiddenKeys().contains(it.key())) {
        it = json.erase(it);
      } else {
        Sanitize(*it);
        ++it;
      }
    }
  } else if (json.is_array()) {
    for (nlohmann::json& item : json) Sanitize(item);
  }
}

void RegisterSummariesAndLinks(Registrar& r) {
  r.MemberMutation(
      {.name = "covibe:saveWeeklySummary",
       .args = R"({"week_start": "string", "summary_json": "string"})",
       .returns = R"({"type": "id", "table": "covibe_weekly_summaries"})"},
      [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller) -> Result {
        if (!nlohmann::json::parse(args["summary_json"].as_string(), nullptr, false).is_object()) {
          return BadArg("covibe:saveWeeklySummary", "summary_json", "is not a JSON object");
        }
        const double now = env->NowMs();
        Object fields = caller.Scoped({{"developer_id", caller.developer_id},
                                       {"week_start", args["week_start"]},
                                       {"summary_json", args["summary_json"]},
                                       {"created_at", now},
                                       {"updated_at", now}});
        absl::StatusOr<DocumentId> id =
            ctx.db().Insert("covibe_weekly_summaries", std::move(fields));
        if (!id.ok()) return id.status();
        return Value(*id);
      });
  // Freezes a sanitized copy of a weekly summary behind a new opaque token (returned once; only
  // its hash is stored). Expires after ttl_hours (default a week).
  r.MemberMutation(
      {.name = "covibe:createShareLink",
       .args = R"({"weekly_summary_id": {"type": "id", "table": "covibe_weekly_summaries"},
                   "ttl_hours": {"type": "optional", "of": "number"}})"},
      [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller) -> Result {
        absl::StatusOr<double> ttl_ms =
            TtlHoursArg("covibe:createShareLink", args, env->options.share_link_ttl);
        if (!ttl_ms.ok()) return ttl_ms.status();
        absl::StatusOr<Document> summary =
            RequireDoc(ctx.db(), "covibe_weekly_summaries", args["weekly_summary_id"]);
        if (!summary.ok()) return summary.status();
        nlohmann::json payload =
            nlohmann::json::parse((*summary)["summary_json"].as_string(), nullptr, false);
        Sanitize(payload);
        payload["week_start"] = (*summary)["week_start"].as_string();
        absl::StatusOr<std::string> token = GenerateToken("cvs_");
        if (!token.ok()) return token.status();
        const HashedToken hashed = HashToken(*token);
        const double now = env->NowMs();
        Object fields = caller.Scoped({{"created_by_developer_id", caller.developer_id},
                                       {"weekly_summary_id", args["weekly_summary_id"]},
                                       {"token_hash", hashed.sha256_hex},
                                       {"display_suffix", hashed.display_suffix},
                                       {"payload_json", payload.dump()},
                                       {"expires_at", now + *ttl_ms},
                                       {"created_at", now}});
        absl::StatusOr<DocumentId> id = ctx.db().Insert("covibe_share_links", std::move(fields));
        if (!id.ok()) return id.status();
        return Value(Object{
            {"share_link_id", Value(*id)}, {"token", *token}, {"expires_at", now + *ttl_ms}});
      });
  // Its creator (or a workspace admin) revokes a link; true when it was not revoked before.
  r.MemberMutation(
      {.name = "covibe:revokeShareLink",
       .args = R"({"share_link_id": {"type": "id", "table": "covibe_share_links"}})",
       .returns = R"("boolean")"},
      [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller) -> Result {
        return Revoke(ctx.db(), caller, "covibe_share_links", args["share_link_id"],
                      "created_by_developer_id", /*admins_too=*/true, env->NowMs());
      });
  // The public page's read (internal: the host serves it to anonymous visitors). It reads the
  // share link row by its token's hash and nothing else: the frozen payload, never tenant data.
  r.Query({.name = "covibe:readSharedSummary",
           .visibility = Visibility::kInternal,
           .args = R"({"token": "string"})",
           .returns = R"({"type": "object", "fields": {"payload_json": "string",
                                                       "expires_at": "number"}})"},
          [env = r.env()](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<Document> link = RequireByHash(
                ctx.db(), "covibe_share_links", "token_hash", args["token"].as_string(),
                absl::NotFoundError("table \"covibe_share_links\": unknown share token"));
            if (!link.ok()) return link.status();
            const Document& row = *link;
            if (row["revoked_at"].is_float64()) {
              return absl::FailedPreconditionError(absl::StrFormat(
                  "table \"covibe_share_links\": link \"%s\" was revoked", row.id().text()));
            }
            if (row["expires_at"].as_float64() <= env->NowMs()) {
              return absl::FailedPreconditionError(absl::StrFormat(
                  "table \"covibe_share_links\": link \"%s\" expired", row.id().text()));
            }
            return Value(
                Object{{"payload_json", row["payload_json"]}, {"expires_at", row["expires_at"]}});
          });
}

}  // namespace

void RegisterSharing(Registrar& r) {
  RegisterContexts(r);
  RegisterSummariesAndLinks(r);
}

}  // namespace stagedb::covibe::internal
