// Covibe's identity functions: sign-up of a tenant, workspaces and members, MCP tokens (stored
// only as hashes) and the device-flow setup that delivers a minted token exactly once.
#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"
#include "apps/common/text.h"
#include "apps/covibe/internal.h"
#include "stagedb/secrets.h"

namespace stagedb::covibe::internal {
namespace {

constexpr std::string_view kAgentTypes[] = {"claude-code", "codex", "cursor"};
// An agent_type argument: null (or missing) for an untyped token, else one of kAgentTypes.
constexpr const char* kAgentTypeArg = R"({"type": "optional", "of": {"type": "union",
                                            "of": ["null", "string"]}})";

absl::StatusOr<Value> AgentTypeArg(std::string_view fn, const Value& args) {
  const Value& type = args["agent_type"];
  if (!type.is_string()) return Value(nullptr);
  if (std::find(std::begin(kAgentTypes), std::end(kAgentTypes), type.as_string()) ==
      std::end(kAgentTypes)) {
    return BadArg(fn, "agent_type",
                  absl::StrFormat("\"%s\" is not an agent type (null or one of %s)",
                                  type.as_string(), apps::Join(kAgentTypes)));
  }
  return type;
}

absl::Status RequireText(std::string_view fn, const Value& args,
                         std::initializer_list<std::string_view> names) {
  for (std::string_view name : names) {
    if (args[name].is_string() && args[name].as_string().empty()) {
      return BadArg(fn, name, "must not be empty");
    }
  }
  return absl::OkStatus();
}

// A new token of `developer` in `workspace`: the raw token is returned once, only its hash kept.
absl::StatusOr<Value> MintToken(Transaction& tx, std::string_view developer,
                                std::string_view tenant, std::string_view workspace,
                                std::string_view label, const Value& agent_type, double now) {
  absl::StatusOr<std::string> token = GenerateToken("cvb_");
  if (!token.ok()) return token.status();
  const HashedToken hashed = HashToken(*token);
  absl::StatusOr<DocumentId> id =
      tx.Insert("covibe_mcp_tokens", {{"developer_id", developer},
                                      {"tenant_id", tenant},
                                      {"workspace_id", workspace},
                                      {"token_hash", hashed.sha256_hex},
                                      {"display_suffix", hashed.display_suffix},
                                      {"label", label},
                                      {"agent_type", agent_type},
                                      {"created_at", now}});
  if (!id.ok()) return id.status();
  return Value(Object{{"token_id", Value(*id)},
                      {"token", *token},
                      {"display_suffix", hashed.display_suffix},
                      {"agent_type", agent_type}});
}

absl::Status InsertMembership(Transaction& tx, std::string_view tenant, std::string_view workspace,
                              std::string_view developer, std::string_view role, double now,
                              const Value& invited_by = Value(Undefined{}),
                              const Value& invited_email = Value(Undefined{})) {
  return tx
      .Insert("covibe_workspace_memberships", {{"tenant_id", tenant},
                                               {"workspace_id", workspace},
                                               {"developer_id", developer},
                                               {"role", role},
                                               {"status", "active"},
                                               {"invited_by_developer_id", invited_by},
                                               {"invited_email", invited_email},
                                               {"created_at", now},
                                               {"updated_at", now}})
      .status();
}

// A developer of a tenant (home workspace `workspace`) with their tenant membership in `role`.
absl::StatusOr<DocumentId> InsertDeveloper(Transaction& tx, std::string_view tenant,
                                           std::string_view workspace, const Value& name,
                                           const Value& email, const Value& handle,
                                           const Value& auth_provider_user_id,
                                           std::string_view role, double now) {
  absl::StatusOr<DocumentId> developer =
      tx.Insert("covibe_developers", {{"tenant_id", tenant},
                                      {"workspace_id", workspace},
                                      {"auth_provider_user_id", auth_provider_user_id},
                                      {"name", name},
                                      {"email", email},
                                      {"handle", handle},
                                      {"role", role},
                                      {"created_at", now},
                                      {"updated_at", now}});
  if (!developer.ok()) return developer;
  absl::Status s = tx.Insert("covibe_tenant_memberships", {{"tenant_id", tenant},
                                                           {"developer_id", Value(*developer)},
                                                           {"role", role},
                                                           {"status", "active"},
                                                           {"created_at", now},
                                                           {"updated_at", now}})
                       .status();
  if (!s.ok()) return s;
  return developer;
}

absl::StatusOr<DocumentId> InsertWorkspace(Transaction& tx, std::string_view tenant,
                                           const Value& name, const Value& slug,
                                           const Value& creator, double now) {
  return tx.Insert("covibe_workspaces", {{"tenant_id", tenant},
                                         {"name", name},
                                         {"slug", slug},
                                         {"created_by_developer_id", creator},
                                         {"created_at", now},
                                         {"updated_at", now}});
}

// PermissionDenied (saying `why`) unless `developer` is an active admin of `tenant`.
absl::Status RequireTenantAdmin(Reader& db, std::string_view tenant, std::string_view developer,
                                std::string_view why) {
  absl::StatusOr<std::optional<Document>> membership =
      db.Table("covibe_tenant_memberships")
          .WithIndex("by_tenant_developer",
                     Eq("tenant_id", Value(tenant)).Eq("developer_id", Value(developer)))
          .First();
  if (!membership.ok()) return membership.status();
  if (membership->has_value() && (**membership)["role"].as_string() == "admin" &&
      (**membership)["status"].as_string() == "active") {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrFormat(
      "table \"covibe_tenant_memberships\": developer \"%s\" is not an admin of tenant \"%s\" "
      "(%s)",
      developer, tenant, why));
}

void RegisterSignUp(Registrar& r) {
  // The host's sign-up: a tenant, its first developer (tenant admin) and first workspace.
  r.Mutation(
      {.name = "covibe:bootstrapTenant",
       .visibility = Visibility::kInternal,
       .args = R"({"tenant_name": "string", "tenant_slug": "string",
                   "external_id": {"type": "optional", "of": "string"},
                   "workos_organization_id": {"type": "optional", "of": "string"},
                   "workspace_name": "string", "workspace_slug": "string",
                   "developer_name": "string", "email": "string", "handle": "string",
                   "auth_provider_user_id": {"type": "optional", "of": "string"}})"},
      [env = r.env()](MutationContext& ctx, const Value& args) -> Result {
        if (absl::Status s = RequireText("covibe:bootstrapTenant", args,
                                         {"tenant_name", "tenant_slug", "workspace_name",
                                          "workspace_slug", "developer_name", "email", "handle"});
            !s.ok()) {
          return s;
        }
        Transaction& tx = ctx.db();
        const double now = env->NowMs();
        // Without an organization id the tenant's external id falls back to the provider user.
        Value external = args["external_id"];
        if (!external.is_string()) {
          external = args["auth_provider_user_id"].is_string()
                         ? Value("user:" + args["auth_provider_user_id"].as_string())
                         : Value("slug:" + args["tenant_slug"].as_string());
        }
        absl::StatusOr<DocumentId> tenant =
            tx.Insert("covibe_tenants", {{"external_id", external},
                                         {"workos_organization_id", args["workos_organization_id"]},
                                         {"name", args["tenant_name"]},
                                         {"slug", args["tenant_slug"]},
                                         {"created_at", now},
                                         {"updated_at", now}});
        if (!tenant.ok()) return tenant.status();
        absl::StatusOr<DocumentId> workspace =
            InsertWorkspace(tx, tenant->text(), args["workspace_name"], args["workspace_slug"],
                            Value(Undefined{}), now);
        if (!workspace.ok()) return workspace.status();
        absl::StatusOr<DocumentId> developer = InsertDeveloper(
            tx, tenant->text(), workspace->text(), args["developer_name"], args["email"],
            args["handle"], args["auth_provider_user_id"], "admin", now);
        if (!developer.ok()) return developer.status();
        for (const DocumentId& id : {*tenant, *workspace}) {
          if (absl::Status s = tx.Patch(id, {{"created_by_developer_id", Value(*developer)}});
              !s.ok()) {
            return s;
          }
        }
        absl::Status s = InsertMembership(tx, tenant->text(), workspace->text(), developer->text(),
                                          "admin", now);
        if (!s.ok()) return s;
        return Value(Object{{"tenant_id", Value(*tenant)},
                            {"workspace_id", Value(*workspace)},
                            {"developer_id", Value(*developer)}});
      });
  // A further workspace of a tenant, by a tenant admin. Internal: its membership row lies in the
  // new workspace, which the admin's scoped identity (another workspace) may not write; the host
  // calls it after verifying `acting_developer_id`'s session.
  r.Mutation({.name = "covibe:createWorkspace",
              .visibility = Visibility::kInternal,
              .args = R"({"acting_developer_id": {"type": "id", "table": "covibe_developers"},
                   "name": "string", "slug": "string"})"},
             [env = r.env()](MutationContext& ctx, const Value& args) -> Result {
               if (absl::Status s = RequireText("covibe:createWorkspace", args, {"name", "slug"});
                   !s.ok()) {
                 return s;
               }
               absl::StatusOr<Document> developer =
                   RequireDoc(ctx.db(), "covibe_developers", args["acting_developer_id"]);
               if (!developer.ok()) return developer.status();
               const std::string& tenant = (*developer)["tenant_id"].as_string();
               if (absl::Status s =
                       RequireTenantAdmin(ctx.db(), tenant, args["acting_developer_id"].as_string(),
                                          "only tenant admins create workspaces");
                   !s.ok()) {
                 return s;
               }
               const double now = env->NowMs();
               absl::StatusOr<DocumentId> workspace = InsertWorkspace(
                   ctx.db(), tenant, args["name"], args["slug"], args["acting_developer_id"], now);
               if (!workspace.ok()) return workspace.status();
               absl::Status s =
                   InsertMembership(ctx.db(), tenant, workspace->text(),
                                    args["acting_developer_id"].as_string(), "admin", now);
               if (!s.ok()) return s;
               return Value(*workspace);
             });
  // A developer joins the caller's workspace. Workspace admins only; when the email is new to
  // the tenant a new developer of the tenant is created, which takes a tenant admin too.
  r.MemberMutation(
      {.name = "covibe:addWorkspaceMember",
       .args = R"({"name": "string", "email": "string", "handle": "string",
                   "role": {"type": "union", "of": [{"type": "literal", "value": "admin"},
                                                    {"type": "literal", "value": "member"}]}})",
       .returns = R"({"type": "id", "table": "covibe_developers"})"},
      [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller) -> Result {
        if (absl::Status s =
                RequireText("covibe:addWorkspaceMember", args, {"name", "email", "handle"});
            !s.ok()) {
          return s;
        }
        if (!caller.workspace_admin) {
          return absl::PermissionDeniedError(absl::StrFormat(
              "table \"covibe_workspace_memberships\": developer \"%s\" is not an admin of "
              "workspace \"%s\" (only admins add members)",
              caller.developer_id, caller.workspace_id));
        }
        Transaction& tx = ctx.db();
        const double now = env->NowMs();
        absl::StatusOr<std::optional<Document>> existing =
            tx.Table("covibe_developers")
                .WithIndex("by_tenant_email",
                           Eq("tenant_id", Value(caller.tenant_id)).Eq("email", args["email"]))
                .First();
        if (!existing.ok()) return existing.status();
        std::string developer;
        if (existing->has_value()) {
          developer = (*existing)->id().text();
          absl::StatusOr<std::optional<Document>> membership =
              FindMembership(tx, caller.workspace_id, developer);
          if (!membership.ok()) return membership.status();
          if (membership->has_value()) {
            return absl::AlreadyExistsError(absl::StrFormat(
                "table \"covibe_workspace_memberships\": developer \"%s\" (%s) is already a "
                "member of workspace \"%s\"",
                developer, args["email"].as_string(), caller.workspace_id));
          }
        } else {
          if (absl::Status s = RequireTenantAdmin(tx, caller.tenant_id, caller.developer_id,
                                                  "only tenant admins create developers");
              !s.ok()) {
            return s;
          }
          absl::StatusOr<DocumentId> id =
              InsertDeveloper(tx, caller.tenant_id, caller.workspace_id, args["name"],
                              args["email"], args["handle"], Value(Undefined{}), "member", now);
          if (!id.ok()) return id.status();
          developer = id->text();
        }
        absl::Status s =
            InsertMembership(tx, caller.tenant_id, caller.workspace_id, developer,
                             args["role"].as_string(), now, caller.developer_id, args["email"]);
        if (!s.ok()) return s;
        return Value(developer);
      });
}

void RegisterTokens(Registrar& r) {
  const std::string token_args =
      std::string(R"({"label": "string", "agent_type": )") + kAgentTypeArg + "}";
  // A token of the caller for the caller's workspace; the raw token is in the result only.
  r.MemberMutation(
      {.name = "covibe:createToken", .args = token_args},
      [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller) -> Result {
        absl::StatusOr<Value> agent_type = AgentTypeArg("covibe:createToken", args);
        if (!agent_type.ok()) return agent_type.status();
        return MintToken(ctx.db(), caller.developer_id, caller.tenant_id, caller.workspace_id,
                         args["label"].as_string(), *agent_type, env->NowMs());
      });
  // The caller's tokens: metadata only (never token_hash).
  r.Query({.name = "covibe:listTokens", .args = "{}"},
          [](QueryContext& ctx, const Value&) -> Result {
            absl::StatusOr<Caller> caller = RequireMember(ctx.db(), ctx.auth());
            if (!caller.ok()) return caller.status();
            absl::StatusOr<std::vector<Document>> tokens =
                ctx.db()
                    .Table("covibe_mcp_tokens")
                    .WithIndex("by_workspace_developer",
                               Eq("workspace_id", Value(caller->workspace_id))
                                   .Eq("developer_id", Value(caller->developer_id)))
                    .Collect();
            if (!tokens.ok()) return tokens.status();
            Array list;
            for (const Document& token : *tokens) list.push_back(Without(token, {"token_hash"}));
            return Value(std::move(list));
          });
  // Revokes a token of the caller (workspace admins: any token of the workspace). True when it
  // was active.
  r.MemberMutation(
      {.name = "covibe:revokeToken",
       .args = R"({"token_id": {"type": "id", "table": "covibe_mcp_tokens"}})",
       .returns = R"("boolean")"},
      [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller) -> Result {
        return Revoke(ctx.db(), caller, "covibe_mcp_tokens", args["token_id"], "developer_id",
                      /*admins_too=*/true, env->NowMs());
      });
  // The host's check of a presented MCP token (unscoped: it finds the row by the token's hash).
  // Sets last_used_at; Unauthenticated for an unknown or revoked token, PermissionDenied when
  // its developer left the workspace.
  r.Mutation(
      {.name = "covibe:verifyToken",
       .visibility = Visibility::kInternal,
       .args = R"({"token": "string"})"},
      [env = r.env()](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<Document> token =
            RequireByHash(ctx.db(), "covibe_mcp_tokens", "token_hash", args["token"].as_string(),
                          absl::UnauthenticatedError("table \"covibe_mcp_tokens\": unknown token"));
        if (!token.ok()) return token.status();
        const Document& row = *token;
        if (row["revoked_at"].is_float64()) {
          return absl::UnauthenticatedError(
              absl::StrFormat("table \"covibe_mcp_tokens\": token \"%s\" (…%s) was revoked",
                              row.id().text(), row["display_suffix"].as_string()));
        }
        absl::StatusOr<std::optional<Document>> membership = FindMembership(
            ctx.db(), row["workspace_id"].as_string(), row["developer_id"].as_string());
        if (!membership.ok()) return membership.status();
        if (!membership->has_value() || (**membership)["status"].as_string() != "active") {
          return absl::PermissionDeniedError(absl::StrFormat(
              "table \"covibe_workspace_memberships\": the owner \"%s\" of token \"%s\" is no "
              "longer an active member of workspace \"%s\"",
              row["developer_id"].as_string(), row.id().text(), row["workspace_id"].as_string()));
        }
        absl::Status s = ctx.db().Patch(row.id(), {{"last_used_at", env->NowMs()}});
        if (!s.ok()) return s;
        return Value(Object{{"token_id", Value(row.id())},
                            {"developer_id", row["developer_id"]},
                            {"tenant_id", row["tenant_id"]},
                            {"workspace_id", row["workspace_id"]},
                            {"agent_type", row["agent_type"]}});
      });
}

void RegisterDeviceFlow(Registrar& r) {
  // An agent asks for a token: a device code (the agent keeps it and polls) and a user code (the
  // developer enters it in the browser). Both stored as hashes.
  r.Mutation(
      {.name = "covibe:startDeviceSetup",
       .visibility = Visibility::kInternal,
       .args = std::string(R"({"label": {"type": "optional", "of": "string"}, "agent_type": )") +
               kAgentTypeArg + "}"},
      [env = r.env()](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<Value> agent_type = AgentTypeArg("covibe:startDeviceSetup", args);
        if (!agent_type.ok()) return agent_type.status();
        absl::StatusOr<std::string> device_code = GenerateToken("cvd_", 24);
        absl::StatusOr<std::string> user_code = GenerateToken("", 6);
        if (!device_code.ok()) return device_code.status();
        if (!user_code.ok()) return user_code.status();
        const double now = env->NowMs();
        const double expires_at = now + absl::ToDoubleMilliseconds(env->options.device_grant_ttl);
        absl::StatusOr<DocumentId> grant = ctx.db().Insert(
            "covibe_setup_device_grants", {{"device_code_hash", HashToken(*device_code).sha256_hex},
                                           {"user_code_hash", HashToken(*user_code).sha256_hex},
                                           {"agent_type", *agent_type},
                                           {"label", args["label"]},
                                           {"status", "pending"},
                                           {"expires_at", expires_at},
                                           {"created_at", now}});
        if (!grant.ok()) return grant.status();
        return Value(Object{
            {"device_code", *device_code}, {"user_code", *user_code}, {"expires_at", expires_at}});
      });
  // The signed-in developer approves the grant their agent shows: the token will belong to them
  // and their current workspace.
  r.MemberMutation(
      {.name = "covibe:approveDeviceSetup",
       .args = R"({"user_code": "string"})",
       .returns = R"("null")"},
      [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller) -> Result {
        absl::StatusOr<Document> grant = RequireByHash(
            ctx.db(), "covibe_setup_device_grants", "user_code_hash", args["user_code"].as_string(),
            absl::NotFoundError("table \"covibe_setup_device_grants\": unknown user code"));
        if (!grant.ok()) return grant.status();
        const double now = env->NowMs();
        const Document& row = *grant;
        if (row["status"].as_string() != "pending") {
          return absl::FailedPreconditionError(absl::StrFormat(
              "table \"covibe_setup_device_grants\" field \"status\": grant \"%s\" is already %s",
              row.id().text(), row["status"].as_string()));
        }
        if (row["expires_at"].as_float64() <= now) {
          return absl::FailedPreconditionError(absl::StrFormat(
              "table \"covibe_setup_device_grants\": grant \"%s\" expired", row.id().text()));
        }
        absl::Status s = ctx.db().Patch(row.id(), {{"status", "approved"},
                                                   {"developer_id", caller.developer_id},
                                                   {"tenant_id", caller.tenant_id},
                                                   {"workspace_id", caller.workspace_id},
                                                   {"approved_at", now}});
        if (!s.ok()) return s;
        return Value(nullptr);
      });
  // The agent polls with its device code. The first poll after approval mints the token and
  // returns it (the only time it exists outside the agent); later polls get FailedPrecondition
  // "already delivered". Before approval: FailedPrecondition "authorization pending".
  r.Mutation(
      {.name = "covibe:pollDeviceSetup",
       .visibility = Visibility::kInternal,
       .args = R"({"device_code": "string"})"},
      [env = r.env()](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<Document> grant = RequireByHash(
            ctx.db(), "covibe_setup_device_grants", "device_code_hash",
            args["device_code"].as_string(),
            absl::NotFoundError("table \"covibe_setup_device_grants\": unknown device code"));
        if (!grant.ok()) return grant.status();
        const Document& row = *grant;
        const std::string& status = row["status"].as_string();
        const double now = env->NowMs();
        auto refuse = [&](std::string_view why) {
          return absl::FailedPreconditionError(absl::StrFormat(
              "table \"covibe_setup_device_grants\": grant \"%s\": %s", row.id().text(), why));
        };
        if (status == "delivered") return refuse("token already delivered");
        if (row["expires_at"].as_float64() <= now) return refuse("expired");
        if (status == "pending") return refuse("authorization pending (not approved yet)");
        const std::string label =
            row["label"].is_string() ? row["label"].as_string() : std::string("device setup");
        absl::StatusOr<Value> minted =
            MintToken(ctx.db(), row["developer_id"].as_string(), row["tenant_id"].as_string(),
                      row["workspace_id"].as_string(), label, row["agent_type"], now);
        if (!minted.ok()) return minted.status();
        absl::Status s = ctx.db().Patch(
            row.id(),
            {{"status", "delivered"}, {"delivered_at", now}, {"token_id", (*minted)["token_id"]}});
        if (!s.ok()) return s;
        Value result = *std::move(minted);
        result.as_object()["developer_id"] = row["developer_id"];
        result.as_object()["tenant_id"] = row["tenant_id"];
        result.as_object()["workspace_id"] = row["workspace_id"];
        return result;
      });
}

}  // namespace

void RegisterIdentity(Registrar& r) {
  RegisterSignUp(r);
  RegisterTokens(r);
  RegisterDeviceFlow(r);
}

}  // namespace stagedb::covibe::internal
