// Identity and access: users synced from Clerk, projects with members and invitations, settings,
// provider keys (sealed with the host's field key) and REST API keys (stored as hashes).
#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_format.h"
#include "apps/codecourier/common.h"
#include "stagedb/secrets.h"

namespace stagedb::codecourier::detail {
namespace {

constexpr const char* kProviderValidator = R"({"type": "union", "of": [
    {"type": "literal", "value": "e2b"}, {"type": "literal", "value": "anthropic"},
    {"type": "literal", "value": "openrouter"}, {"type": "literal", "value": "openai"},
    {"type": "literal", "value": "github"}]})";
constexpr size_t kMaxSlugBytes = 64;

// ---- users ----

absl::StatusOr<std::optional<Document>> UserByClerkId(Reader& db, const std::string& clerk_id) {
  return db.Table("cc_users").WithIndex("by_clerkId", Eq("clerkId", clerk_id)).First();
}

// Creates or updates the user of a Clerk id with the profile fields `profile` gives (email, name,
// imageUrl); an omitted field keeps its stored value, so a partial update erases nothing.
Result UpsertUser(Transaction& tx, const std::string& clerk_id, const Value& profile) {
  absl::StatusOr<std::optional<Document>> existing = UserByClerkId(tx, clerk_id);
  if (!existing.ok()) return existing.status();
  const double now = NowMs();
  Object fields{{"updatedAt", now}};
  for (const char* field : {"email", "name", "imageUrl"}) {
    if (!profile[field].is_undefined()) fields[field] = profile[field];
  }
  if (existing->has_value()) {
    if (absl::Status s = tx.Patch((*existing)->id(), std::move(fields)); !s.ok()) return s;
    return Value((*existing)->id());
  }
  fields["clerkId"] = Value(clerk_id);
  fields["createdAt"] = Value(now);
  absl::StatusOr<DocumentId> id = tx.Insert("cc_users", std::move(fields));
  if (!id.ok()) return id.status();
  return Value(*id);
}

void RegisterUsers(Registrar& r) {
  // The signed-in user's record, by the identity's subject (the Clerk id): the one the Clerk
  // webhook created, or a bare one (no email yet) when the webhook has not arrived. The profile
  // (email, name, image) comes only from the webhook: a client-sent email could claim someone
  // else's invitations.
  r.Mutation({.name = "codecourier/users:store",
              .args = "{}",
              .returns = R"({"type": "id", "table": "cc_users"})"},
             [](MutationContext& ctx, const Value&) -> Result {
               const Identity* identity = ctx.auth().identity();
               if (identity == nullptr || identity->subject.empty()) {
                 return absl::UnauthenticatedError(
                     "codecourier/users:store: needs a signed-in Clerk identity");
               }
               absl::StatusOr<std::optional<Document>> existing =
                   UserByClerkId(ctx.db(), identity->subject);
               if (!existing.ok()) return existing.status();
               // Already stored: no write, so repeated sign-ins never conflict.
               if (existing->has_value()) return Value((*existing)->id());
               return UpsertUser(ctx.db(), identity->subject, Value(Object{}));
             });
  // Clerk's webhook (user.created / user.updated), called by trusted host code: the only source
  // of a user's email, name and image.
  r.Mutation({.name = "codecourier/users:upsertFromClerk",
              .visibility = Visibility::kInternal,
              .args = R"({"clerkId": "string", "email": "string",
                          "name": {"type": "optional", "of": "string"},
                          "imageUrl": {"type": "optional", "of": "string"}})",
              .returns = R"({"type": "id", "table": "cc_users"})"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::Status s = CheckNonEmpty("cc_users", "clerkId", args["clerkId"].as_string());
               if (s.ok()) s = CheckNonEmpty("cc_users", "email", args["email"].as_string());
               if (!s.ok()) return s;
               return UpsertUser(ctx.db(), args["clerkId"].as_string(), args);
             });
  r.Query({.name = "codecourier/users:current", .args = "{}"},
          [](QueryContext& ctx, const Value&) -> Result {
            absl::StatusOr<Document> user = CurrentUser(ctx.db(), ctx.auth());
            if (absl::IsUnauthenticated(user.status())) return Value(nullptr);
            if (!user.ok()) return user.status();
            return user->ToValue();
          });
}

// ---- projects and members ----

absl::Status CheckSlug(std::string_view slug) {
  const bool ok = !slug.empty() && slug.size() <= kMaxSlugBytes && slug.front() != '-' &&
                  slug.back() != '-' && std::all_of(slug.begin(), slug.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
                  });
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "table \"cc_projects\" field \"slug\": \"%s\" is not a slug (1-%d of a-z, 0-9 and '-', not "
      "starting or ending with '-')",
      slug, kMaxSlugBytes));
}

absl::StatusOr<std::optional<Document>> FindMember(Reader& db, const DocumentId& project,
                                                   const DocumentId& user) {
  return db.Table("cc_projectMembers")
      .WithIndex("by_project_user", Eq("projectId", Value(project)).Eq("userId", Value(user)))
      .First();
}

absl::StatusOr<Document> RequireMember(Reader& db, const DocumentId& project,
                                       const DocumentId& user) {
  absl::StatusOr<std::optional<Document>> member = FindMember(db, project, user);
  if (!member.ok()) return member.status();
  if (!member->has_value()) {
    return absl::NotFoundError(
        absl::StrFormat("table \"cc_projectMembers\": user \"%s\" has no membership or "
                        "invitation in project \"%s\"",
                        user.text(), project.text()));
  }
  return **std::move(member);
}

// The user is an active member of the project, which exists: NotFound naming a missing project,
// PermissionDenied naming the user and project otherwise.
absl::Status RequireActiveMember(Reader& db, const DocumentId& project, const DocumentId& user) {
  if (auto found = Require(db, "cc_projects", "project", project); !found.ok()) {
    return found.status();
  }
  absl::StatusOr<std::optional<Document>> member = FindMember(db, project, user);
  if (!member.ok()) return member.status();
  if (member->has_value() && (**member)["status"] == Value("active")) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrFormat("table \"cc_projectMembers\": user \"%s\" is not an active member of "
                      "project \"%s\"",
                      user.text(), project.text()));
}

void RegisterProjects(Registrar& r) {
  // A project with its owner membership, settings and counters (memberCount 1), in one step.
  r.Mutation(
      {.name = "codecourier/projects:create",
       .args = R"({"name": "string", "slug": "string",
                          "description": {"type": "optional", "of": "string"}})",
       .returns = R"({"type": "id", "table": "cc_projects"})"},
      [](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<Document> user = CurrentUser(ctx.db(), ctx.auth());
        if (!user.ok()) return user.status();
        if (absl::Status s = CheckNonEmpty("cc_projects", "name", args["name"].as_string());
            !s.ok()) {
          return s;
        }
        if (absl::Status s = CheckSlug(args["slug"].as_string()); !s.ok()) return s;
        Transaction& tx = ctx.db();
        const double now = NowMs();
        // The unique by_slug index refuses a taken slug (AlreadyExists naming it).
        absl::StatusOr<DocumentId> project =
            tx.Insert("cc_projects", {{"name", args["name"]},
                                      {"slug", args["slug"]},
                                      {"ownerId", user->id()},
                                      {"description", args["description"]},
                                      {"createdAt", now},
                                      {"updatedAt", now}});
        if (!project.ok()) return project.status();
        for (auto [table, fields] :
             {std::pair<const char*, Object>{"cc_projectMembers",
                                             {{"projectId", Value(*project)},
                                              {"userId", user->id()},
                                              {"role", "owner"},
                                              {"status", "active"},
                                              {"invitedAt", now},
                                              {"acceptedAt", now}}},
              {"cc_projectCounters",
               {{"projectId", Value(*project)},
                {"sandboxCount", 0.0},
                {"runCount", 0.0},
                {"workflowCount", 0.0},
                {"memberCount", 1.0}}},
              {"cc_projectSettings", {{"projectId", Value(*project)}, {"updatedAt", now}}}}) {
          if (absl::Status s = tx.Insert(table, std::move(fields)).status(); !s.ok()) {
            return s;
          }
        }
        return Value(*project);
      });
  r.Query({.name = "codecourier/projects:get", .args = kProjectArg},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<ProjectAccess> access =
                ProjectArg(ctx.db(), ctx.auth(), args, Role::kMember);
            if (!access.ok()) return access.status();
            return access->project.ToValue();
          });
  // The caller's projects (active memberships), each with the caller's role.
  r.Query({.name = "codecourier/projects:listMine", .args = "{}"},
          [](QueryContext& ctx, const Value&) -> Result {
            absl::StatusOr<Document> user = CurrentUser(ctx.db(), ctx.auth());
            if (!user.ok()) return user.status();
            absl::StatusOr<std::vector<Document>> memberships =
                ctx.db()
                    .Table("cc_projectMembers")
                    .WithIndex("by_user", Eq("userId", user->id()).Eq("status", "active"))
                    .Collect();
            if (!memberships.ok()) return memberships.status();
            Array projects;
            for (const Document& membership : *memberships) {
              absl::StatusOr<std::optional<Document>> project =
                  ctx.db().Get(membership["projectId"].as_string());
              if (!project.ok()) return project.status();
              if (!project->has_value()) continue;
              Value view = (*project)->ToValue();
              view.as_object()["role"] = membership["role"];
              projects.push_back(std::move(view));
            }
            return Value(std::move(projects));
          });

  // An invitation (status "pending") of an existing user, by email; admins and owners invite.
  r.Mutation({.name = "codecourier/projectMembers:invite",
              .args = R"({"projectId": {"type": "id", "table": "cc_projects"}, "email": "string",
                   "role": {"type": "union", "of": [{"type": "literal", "value": "admin"},
                                                    {"type": "literal", "value": "member"}]}})",
              .returns = R"({"type": "id", "table": "cc_projectMembers"})"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<ProjectAccess> access =
                   ProjectArg(ctx.db(), ctx.auth(), args, Role::kAdmin);
               if (!access.ok()) return access.status();
               const DocumentId& project = access->project.id();
               const std::string& email = args["email"].as_string();
               // Emails come from Clerk only, but two users could still share one (a changed
               // address, a stale record): refuse to guess whose invitation it is.
               absl::StatusOr<std::optional<Document>> invitee =
                   ctx.db().Table("cc_users").WithIndex("by_email", Eq("email", email)).Unique();
               if (absl::IsFailedPrecondition(invitee.status())) {
                 return absl::FailedPreconditionError(absl::StrFormat(
                     "table \"cc_users\" field \"email\": more than one user has \"%s\"; "
                     "cannot tell whom to invite",
                     email));
               }
               if (!invitee.ok()) return invitee.status();
               if (!invitee->has_value()) {
                 return absl::NotFoundError(
                     absl::StrFormat("table \"cc_users\": no user with email \"%s\"", email));
               }
               absl::StatusOr<std::optional<Document>> existing =
                   FindMember(ctx.db(), project, (*invitee)->id());
               if (!existing.ok()) return existing.status();
               if (existing->has_value()) {
                 return absl::AlreadyExistsError(absl::StrFormat(
                     "table \"cc_projectMembers\": \"%s\" is already %s of project \"%s\" (%s)",
                     email, (**existing)["role"].as_string(), project.text(),
                     (**existing)["status"].as_string()));
               }
               const Value inviter = access->user ? Value(access->user->id()) : Value(Undefined{});
               absl::StatusOr<DocumentId> member =
                   ctx.db().Insert("cc_projectMembers", {{"projectId", Value(project)},
                                                         {"userId", (*invitee)->id()},
                                                         {"role", args["role"]},
                                                         {"status", "pending"},
                                                         {"invitedBy", inviter},
                                                         {"invitedAt", NowMs()}});
               if (!member.ok()) return member.status();
               absl::Status s =
                   Notify(ctx.db(), (*invitee)->id(), project, "invitation",
                          absl::StrFormat("Invitation to %s", access->project["name"].as_string()));
               if (!s.ok()) return s;
               return Value(*member);
             });
  // The caller accepts their pending invitation: the membership becomes active and counts.
  r.Mutation({.name = "codecourier/projectMembers:acceptInvitation",
              .args = kProjectArg,
              .returns = R"("null")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<DocumentId> project = IdArg(args, "projectId");
               if (!project.ok()) return project.status();
               absl::StatusOr<Document> user = CurrentUser(ctx.db(), ctx.auth());
               if (!user.ok()) return user.status();
               absl::StatusOr<Document> member = RequireMember(ctx.db(), *project, user->id());
               if (!member.ok()) return member.status();
               if ((*member)["status"].as_string() == "active") {
                 return absl::FailedPreconditionError(absl::StrFormat(
                     "table \"cc_projectMembers\": user \"%s\" is already an active member of "
                     "project \"%s\"",
                     (*user)["clerkId"].as_string(), project->text()));
               }
               absl::Status s =
                   ctx.db().Patch(member->id(), {{"status", "active"}, {"acceptedAt", NowMs()}});
               if (!s.ok()) return s;
               if (s = AdjustCounter(ctx.db(), *project, "memberCount", 1); !s.ok()) return s;
               return Value(nullptr);
             });
  // Removes a membership or invitation: admins remove others, anyone leaves; the owner stays.
  r.Mutation({.name = "codecourier/projectMembers:remove",
              .args = R"({"projectId": {"type": "id", "table": "cc_projects"},
                          "userId": {"type": "id", "table": "cc_users"}})",
              .returns = R"("null")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<DocumentId> project = IdArg(args, "projectId");
               if (!project.ok()) return project.status();
               absl::StatusOr<DocumentId> target = IdArg(args, "userId");
               if (!target.ok()) return target.status();
               absl::StatusOr<Document> self = CurrentUser(ctx.db(), ctx.auth());
               const bool leaving = self.ok() && self->id() == *target;
               absl::StatusOr<ProjectAccess> access = RequireProject(
                   ctx.db(), ctx.auth(), *project, leaving ? Role::kMember : Role::kAdmin);
               // A pending invitee may decline: not a member yet, but it is their own record.
               if (!access.ok() && !leaving) return access.status();
               absl::StatusOr<Document> member = RequireMember(ctx.db(), *project, *target);
               if (!member.ok()) return member.status();
               if ((*member)["role"].as_string() == "owner") {
                 return absl::FailedPreconditionError(absl::StrFormat(
                     "table \"cc_projectMembers\": the owner of project \"%s\" cannot be removed",
                     project->text()));
               }
               if (absl::Status s = ctx.db().Delete(member->id()); !s.ok()) return s;
               if ((*member)["status"].as_string() == "active") {
                 absl::Status s = AdjustCounter(ctx.db(), *project, "memberCount", -1);
                 if (!s.ok()) return s;
               }
               return Value(nullptr);
             });
  r.Query({.name = "codecourier/projectMembers:listByProject", .args = kProjectArg},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<ProjectAccess> access =
                ProjectArg(ctx.db(), ctx.auth(), args, Role::kMember);
            if (!access.ok()) return access.status();
            const DocumentId& project = access->project.id();
            absl::StatusOr<std::vector<Document>> members =
                ByProject(ctx.db(), "cc_projectMembers", project);
            if (!members.ok()) return members.status();
            Array views;
            for (const Document& member : *members) {
              absl::StatusOr<std::optional<Document>> user =
                  ctx.db().Get(member["userId"].as_string());
              if (!user.ok()) return user.status();
              Value view = member.ToValue();
              const Value email = user->has_value() ? (**user)["email"] : Value(nullptr);
              view.as_object()["email"] = email.is_undefined() ? Value(nullptr) : email;
              views.push_back(std::move(view));
            }
            return Value(std::move(views));
          });
}

// ---- settings ----

constexpr std::string_view kDeployKeyContext = "cc_projectSettings.encryptedDeployKey";

absl::StatusOr<FieldKey> RequireFieldKey(const CodeCourierOptions& options,
                                         std::string_view table) {
  if (!options.field_key.has_value()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "table \"%s\": no field key (CodeCourierOptions::field_key) to seal keys with", table));
  }
  return *options.field_key;
}

// The last four characters of a secret, the only part ever shown.
std::string LastFour(std::string_view secret) {
  return std::string(secret.substr(secret.size() > 4 ? secret.size() - 4 : 0));
}

absl::StatusOr<Document> SettingsOf(Reader& db, const DocumentId& project) {
  absl::StatusOr<std::optional<Document>> settings =
      db.Table("cc_projectSettings")
          .WithIndex("by_project", Eq("projectId", Value(project)))
          .First();
  if (!settings.ok()) return settings.status();
  if (!settings->has_value()) {
    return absl::NotFoundError(absl::StrFormat(
        "table \"cc_projectSettings\": no settings for project \"%s\"", project.text()));
  }
  return **std::move(settings);
}

void RegisterSettings(Registrar& r, const CodeCourierOptions& options) {
  // The settings without the sealed deploy key (its last four characters only).
  r.Query({.name = "codecourier/projectSettings:get", .args = kProjectArg},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<ProjectAccess> access =
                ProjectArg(ctx.db(), ctx.auth(), args, Role::kMember);
            if (!access.ok()) return access.status();
            const DocumentId& project = access->project.id();
            absl::StatusOr<Document> settings = SettingsOf(ctx.db(), project);
            if (!settings.ok()) return settings.status();
            Value view = settings->ToValue();
            Object& fields = view.as_object();
            fields.erase("encryptedDeployKey");
            // Env var values are secrets of the project's deployments: admins and owners see
            // them, members only their names (to know what is configured).
            if (fields.contains("envVars")) {
              Array names;
              for (const auto& [name, value] : fields["envVars"].as_object()) {
                names.push_back(Value(name));
              }
              fields["envVarNames"] = Value(std::move(names));
              if (access->role < Role::kAdmin) fields.erase("envVars");
            }
            return view;
          });
  // The project's deploy key in clear, for the callback side that pushes to the repository;
  // null when none is set. Internal: trusted host code only.
  r.Query({.name = "codecourier/projectSettings:resolveDeployKey",
           .visibility = Visibility::kInternal,
           .args = kProjectArg},
          [options](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<DocumentId> project = IdArg(args, "projectId");
            if (!project.ok()) return project.status();
            if (auto found = Require(ctx.db(), "cc_projects", "project", *project); !found.ok()) {
              return found.status();
            }
            absl::StatusOr<Document> settings = SettingsOf(ctx.db(), *project);
            if (!settings.ok()) return settings.status();
            if (!(*settings)["encryptedDeployKey"].is_string()) return Value(nullptr);
            absl::StatusOr<FieldKey> key = RequireFieldKey(options, "cc_projectSettings");
            if (!key.ok()) return key.status();
            absl::StatusOr<std::string> clear = DecryptField(
                (*settings)["encryptedDeployKey"].as_string(), *key, kDeployKeyContext);
            if (!clear.ok()) return clear.status();
            return Value(Object{{"key", *clear}, {"lastFour", (*settings)["deployKeyLastFour"]}});
          });
  // Sets the given settings (admins and owners); an empty deployKey removes it.
  r.Mutation({.name = "codecourier/projectSettings:update",
              .args = R"({"projectId": {"type": "id", "table": "cc_projects"},
          "systemPrompt": {"type": "optional", "of": "string"},
          "claudeMd": {"type": "optional", "of": "string"},
          "envVars": {"type": "optional", "of": {"type": "record", "keys": "string", "values": "string"}},
          "selectedSkillIds": {"type": "optional", "of": {"type": "array", "items": {"type": "id", "table": "cc_skills"}}},
          "selectedCommandIds": {"type": "optional", "of": {"type": "array", "items": {"type": "id", "table": "cc_commands"}}},
          "deployKey": {"type": "optional", "of": "string"}})",
              .returns = R"("null")"},
             [options](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<ProjectAccess> access =
                   ProjectArg(ctx.db(), ctx.auth(), args, Role::kAdmin);
               if (!access.ok()) return access.status();
               const DocumentId& project = access->project.id();
               absl::StatusOr<Document> settings = SettingsOf(ctx.db(), project);
               if (!settings.ok()) return settings.status();
               Object patch{{"updatedAt", NowMs()}};
               for (const char* field : {"systemPrompt", "claudeMd", "envVars", "selectedSkillIds",
                                         "selectedCommandIds"}) {
                 if (!args[field].is_undefined()) patch[field] = args[field];
               }
               if (args["deployKey"].is_string() && args["deployKey"].as_string().empty()) {
                 patch["encryptedDeployKey"] = Value(Undefined{});
                 patch["deployKeyLastFour"] = Value(Undefined{});
               } else if (args["deployKey"].is_string()) {
                 absl::StatusOr<FieldKey> key = RequireFieldKey(options, "cc_projectSettings");
                 if (!key.ok()) return key.status();
                 const std::string& clear = args["deployKey"].as_string();
                 absl::StatusOr<std::string> sealed = EncryptField(clear, *key, kDeployKeyContext);
                 if (!sealed.ok()) return sealed.status();
                 patch["encryptedDeployKey"] = Value(*sealed);
                 patch["deployKeyLastFour"] = Value(LastFour(clear));
               }
               if (absl::Status s = ctx.db().Patch(settings->id(), std::move(patch)); !s.ok())
                 return s;
               return Value(nullptr);
             });
  r.Query({.name = "codecourier/userSettings:get", .args = "{}"},
          [](QueryContext& ctx, const Value&) -> Result {
            absl::StatusOr<Document> user = CurrentUser(ctx.db(), ctx.auth());
            if (!user.ok()) return user.status();
            absl::StatusOr<std::optional<Document>> settings =
                ctx.db()
                    .Table("cc_userSettings")
                    .WithIndex("by_user", Eq("userId", user->id()))
                    .First();
            if (!settings.ok()) return settings.status();
            return settings->has_value() ? (*settings)->ToValue() : Value(nullptr);
          });
  r.Mutation(
      {.name = "codecourier/userSettings:setLastActiveProject",
       .args = kProjectArg,
       .returns = R"("null")"},
      [](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<ProjectAccess> access =
            ProjectArg(ctx.db(), ctx.auth(), args, Role::kMember);
        if (!access.ok()) return access.status();
        const DocumentId& project = access->project.id();
        absl::StatusOr<DocumentId> user = access->UserId();
        if (!user.ok()) return user.status();
        absl::StatusOr<std::optional<Document>> settings =
            ctx.db().Table("cc_userSettings").WithIndex("by_user", Eq("userId", *user)).First();
        if (!settings.ok()) return settings.status();
        Object fields{{"userId", Value(*user)},
                      {"lastActiveProjectId", Value(project)},
                      {"updatedAt", NowMs()}};
        absl::Status s = settings->has_value()
                             ? ctx.db().Patch((*settings)->id(), std::move(fields))
                             : ctx.db().Insert("cc_userSettings", std::move(fields)).status();
        if (!s.ok()) return s;
        return Value(nullptr);
      });
}

// ---- provider keys ----

constexpr std::string_view kUserKeyContext = "cc_apiKeys.encryptedKey";
constexpr std::string_view kProjectKeyContext = "cc_projectProviderKeys.encryptedKey";

// The listing of key rows, each shown by `view`.
Value Views(const std::vector<Document>& rows, Value (*view)(const Document&)) {
  Array views;
  for (const Document& row : rows) views.push_back(view(row));
  return Value(std::move(views));
}

// Registers `name` {projectId}: the project's rows of the key table `table`, each shown by
// `view`; members may read it.
void RegisterKeyListing(Registrar& r, std::string name, std::string table,
                        Value (*view)(const Document&)) {
  r.Query({.name = std::move(name), .args = kProjectArg},
          [table, view](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<ProjectAccess> access = ProjectArg(ctx.db(), ctx.auth(), args);
            if (!access.ok()) return access.status();
            absl::StatusOr<std::vector<Document>> keys =
                ByProject(ctx.db(), table, access->project.id());
            if (!keys.ok()) return keys.status();
            return Views(*keys, view);
          });
}

// A provider key's listing: provider, last four and times; never the sealed key.
Value KeyView(const Document& key) {
  return Value(Object{{"provider", key["provider"]},
                      {"lastFour", key["lastFour"]},
                      {"updatedAt", key["updatedAt"]}});
}

// Seals `clear` into the provider-key row `existing` (or a new row of `table` with the fields of
// `owner`, which names the provider); returns the key's listing.
Result StoreProviderKey(Transaction& tx, const CodeCourierOptions& options, std::string_view table,
                        std::string_view context, const std::optional<Document>& existing,
                        Object owner, const std::string& clear) {
  if (absl::Status s = CheckNonEmpty(table, "key", clear); !s.ok()) return s;
  absl::StatusOr<FieldKey> key = RequireFieldKey(options, table);
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> sealed = EncryptField(clear, *key, context);
  if (!sealed.ok()) return sealed.status();
  const double now = NowMs();
  Value view(Object{{"provider", owner["provider"]}, {"lastFour", LastFour(clear)}});
  Object fields{{"encryptedKey", *sealed}, {"lastFour", LastFour(clear)}, {"updatedAt", now}};
  if (existing.has_value()) {
    if (absl::Status s = tx.Patch(existing->id(), std::move(fields)); !s.ok()) return s;
  } else {
    for (auto& [name, value] : owner) fields[name] = std::move(value);
    fields["createdAt"] = Value(now);
    if (absl::Status s = tx.Insert(table, std::move(fields)).status(); !s.ok()) return s;
  }
  return view;
}

absl::StatusOr<std::optional<Document>> UserKey(Reader& db, const DocumentId& user,
                                                const Value& provider) {
  return db.Table("cc_apiKeys")
      .WithIndex("by_user", Eq("userId", Value(user)).Eq("provider", provider))
      .First();
}

absl::StatusOr<std::optional<Document>> ProjectKey(Reader& db, const DocumentId& project,
                                                   const Value& provider) {
  return db.Table("cc_projectProviderKeys")
      .WithIndex("by_project", Eq("projectId", Value(project)).Eq("provider", provider))
      .First();
}

// Deletes a provider-key row when there is one; whether there was.
Result DeleteKeyRow(Transaction& tx, const absl::StatusOr<std::optional<Document>>& row) {
  if (!row.ok()) return row.status();
  if (!row->has_value()) return Value(false);
  if (absl::Status s = tx.Delete((*row)->id()); !s.ok()) return s;
  return Value(true);
}

void RegisterProviderKeys(Registrar& r, const CodeCourierOptions& options) {
  const std::string provider_arg =
      absl::StrFormat(R"({"provider": %s, "key": "string"})", kProviderValidator);
  const std::string project_provider_arg =
      absl::StrFormat(R"({"projectId": {"type": "id", "table": "cc_projects"}, "provider": %s})",
                      kProviderValidator);
  const std::string project_provider_key_arg = absl::StrFormat(
      R"({"projectId": {"type": "id", "table": "cc_projects"}, "provider": %s, "key": "string"})",
      kProviderValidator);
  const std::string key_view = R"({"type": "object", "fields": {"provider": "string",
                                   "lastFour": "string"}})";

  r.Mutation({.name = "codecourier/apiKeys:set", .args = provider_arg, .returns = key_view},
             [options](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<Document> user = CurrentUser(ctx.db(), ctx.auth());
               if (!user.ok()) return user.status();
               absl::StatusOr<std::optional<Document>> existing =
                   UserKey(ctx.db(), user->id(), args["provider"]);
               if (!existing.ok()) return existing.status();
               return StoreProviderKey(ctx.db(), options, "cc_apiKeys", kUserKeyContext, *existing,
                                       {{"userId", user->id()}, {"provider", args["provider"]}},
                                       args["key"].as_string());
             });
  r.Query(
      {.name = "codecourier/apiKeys:list", .args = "{}"},
      [](QueryContext& ctx, const Value&) -> Result {
        absl::StatusOr<Document> user = CurrentUser(ctx.db(), ctx.auth());
        if (!user.ok()) return user.status();
        absl::StatusOr<std::vector<Document>> keys =
            ctx.db().Table("cc_apiKeys").WithIndex("by_user", Eq("userId", user->id())).Collect();
        if (!keys.ok()) return keys.status();
        Array views;
        for (const Document& key : *keys) views.push_back(KeyView(key));
        return Value(std::move(views));
      });
  r.Mutation({.name = "codecourier/apiKeys:remove",
              .args = absl::StrFormat(R"({"provider": %s})", kProviderValidator),
              .returns = R"("boolean")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<Document> user = CurrentUser(ctx.db(), ctx.auth());
               if (!user.ok()) return user.status();
               return DeleteKeyRow(ctx.db(), UserKey(ctx.db(), user->id(), args["provider"]));
             });

  // Project-level keys override the members' own keys; admins and owners manage them.
  r.Mutation({.name = "codecourier/projectProviderKeys:set",
              .args = project_provider_key_arg,
              .returns = key_view},
             [options](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<ProjectAccess> access =
                   ProjectArg(ctx.db(), ctx.auth(), args, Role::kAdmin);
               if (!access.ok()) return access.status();
               const DocumentId& project = access->project.id();
               absl::StatusOr<DocumentId> user = access->UserId();
               if (!user.ok()) return user.status();
               absl::StatusOr<std::optional<Document>> existing =
                   ProjectKey(ctx.db(), project, args["provider"]);
               if (!existing.ok()) return existing.status();
               return StoreProviderKey(ctx.db(), options, "cc_projectProviderKeys",
                                       kProjectKeyContext, *existing,
                                       {{"projectId", Value(project)},
                                        {"provider", args["provider"]},
                                        {"createdBy", Value(*user)}},
                                       args["key"].as_string());
             });
  RegisterKeyListing(r, "codecourier/projectProviderKeys:list", "cc_projectProviderKeys", KeyView);
  r.Mutation({.name = "codecourier/projectProviderKeys:remove",
              .args = project_provider_arg,
              .returns = R"("boolean")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<ProjectAccess> access =
                   ProjectArg(ctx.db(), ctx.auth(), args, Role::kAdmin);
               if (!access.ok()) return access.status();
               const DocumentId& project = access->project.id();
               return DeleteKeyRow(ctx.db(), ProjectKey(ctx.db(), project, args["provider"]));
             });

  // The key a sandbox or run of the project uses for `provider`, decrypted: the project's own
  // key when set, else the user's; null when neither has one. Internal: for the launch actions.
  r.Query({.name = "codecourier/providerKeys:resolveEffective",
           .visibility = Visibility::kInternal,
           .args = absl::StrFormat(R"({"projectId": {"type": "id", "table": "cc_projects"},
                                   "userId": {"type": "id", "table": "cc_users"}, "provider": %s})",
                                   kProviderValidator)},
          [options](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<DocumentId> project = IdArg(args, "projectId");
            if (!project.ok()) return project.status();
            absl::StatusOr<DocumentId> user = IdArg(args, "userId");
            if (!user.ok()) return user.status();
            // Only a member's own key may serve the project: never another user's.
            absl::Status member = RequireActiveMember(ctx.db(), *project, *user);
            if (!member.ok()) return member;
            absl::StatusOr<std::optional<Document>> row =
                ProjectKey(ctx.db(), *project, args["provider"]);
            if (!row.ok()) return row.status();
            std::string_view source = "project", context = kProjectKeyContext,
                             table = "cc_projectProviderKeys";
            if (!row->has_value()) {
              row = UserKey(ctx.db(), *user, args["provider"]);
              if (!row.ok()) return row.status();
              source = "user", context = kUserKeyContext, table = "cc_apiKeys";
            }
            if (!row->has_value()) return Value(nullptr);
            absl::StatusOr<FieldKey> key = RequireFieldKey(options, table);
            if (!key.ok()) return key.status();
            absl::StatusOr<std::string> clear =
                DecryptField((**row)["encryptedKey"].as_string(), *key, context);
            if (!clear.ok()) return clear.status();
            return Value(Object{{"provider", args["provider"]},
                                {"source", source},
                                {"key", *clear},
                                {"lastFour", (**row)["lastFour"]}});
          });
}

// ---- CodeCourier REST API keys ----

constexpr std::string_view kApiKeyPrefix = "cck_";

Value ApiKeyView(const Document& key) {
  return Compact(Object{{"_id", key["_id"]},
                        {"name", key["name"]},
                        {"lastFour", key["lastFour"]},
                        {"createdAt", key["createdAt"]},
                        {"revokedAt", key["revokedAt"]},
                        {"lastUsedAt", key["lastUsedAt"]},
                        {"usageCount", key["usageCount"]}});
}

void RegisterProjectApiKeys(Registrar& r) {
  // A new key, returned in clear this once; only its SHA-256 hash and last four are stored.
  r.Mutation(
      {.name = "codecourier/projectApiKeys:generate",
       .args = R"({"projectId": {"type": "id", "table": "cc_projects"}, "name": "string"})",
       .returns = R"({"type": "object", "fields": {
           "keyId": {"type": "id", "table": "cc_projectApiKeys"}, "key": "string",
           "lastFour": "string"}})"},
      [](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<ProjectAccess> access = ProjectArg(ctx.db(), ctx.auth(), args, Role::kAdmin);
        if (!access.ok()) return access.status();
        const DocumentId& project = access->project.id();
        absl::StatusOr<DocumentId> user = access->UserId();
        if (!user.ok()) return user.status();
        if (absl::Status s = CheckNonEmpty("cc_projectApiKeys", "name", args["name"].as_string());
            !s.ok()) {
          return s;
        }
        // A re-run on conflict draws a new token; only the committed run's is returned.
        absl::StatusOr<std::string> token = GenerateToken(kApiKeyPrefix, 24);
        if (!token.ok()) return token.status();
        const HashedToken hashed = HashToken(*token);
        absl::StatusOr<DocumentId> key =
            ctx.db().Insert("cc_projectApiKeys", {{"projectId", Value(project)},
                                                  {"name", args["name"]},
                                                  {"keyHash", hashed.sha256_hex},
                                                  {"lastFour", hashed.display_suffix},
                                                  {"createdBy", Value(*user)},
                                                  {"createdAt", NowMs()},
                                                  {"usageCount", 0.0}});
        if (!key.ok()) return key.status();
        return Value(
            Object{{"keyId", Value(*key)}, {"key", *token}, {"lastFour", hashed.display_suffix}});
      });
  RegisterKeyListing(r, "codecourier/projectApiKeys:list", "cc_projectApiKeys", ApiKeyView);
  // Revokes a key (admins and owners); true the first time, false when it already was.
  r.Mutation({.name = "codecourier/projectApiKeys:revoke",
              .args = R"({"keyId": {"type": "id", "table": "cc_projectApiKeys"}})",
              .returns = R"("boolean")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<DocumentId> id = IdArg(args, "keyId");
               if (!id.ok()) return id.status();
               absl::StatusOr<RecordAccess> key = RequireRecord(
                   ctx.db(), ctx.auth(), "cc_projectApiKeys", "API key", *id, Role::kAdmin);
               if (!key.ok()) return key.status();
               if (key->record["revokedAt"].is_float64()) return Value(false);
               if (absl::Status s = ctx.db().Patch(*id, {{"revokedAt", NowMs()}}); !s.ok())
                 return s;
               return Value(true);
             });
  // The REST gateway presents a key: found by its hash, refused when unknown or revoked, and its
  // use counted. Internal: trusted host code calls it for each API request.
  r.Mutation(
      {.name = "codecourier/projectApiKeys:verify",
       .visibility = Visibility::kInternal,
       .args = R"({"key": "string"})",
       .returns = R"({"type": "object", "fields": {
           "projectId": {"type": "id", "table": "cc_projects"},
           "keyId": {"type": "id", "table": "cc_projectApiKeys"}, "name": "string"}})"},
      [](MutationContext& ctx, const Value& args) -> Result {
        const std::string& presented = args["key"].as_string();
        const HashedToken hashed = HashToken(presented);
        absl::StatusOr<std::optional<Document>> key =
            ctx.db()
                .Table("cc_projectApiKeys")
                .WithIndex("by_key", Eq("keyHash", hashed.sha256_hex))
                .First();
        if (!key.ok()) return key.status();
        if (!key->has_value() || !TokenMatches(presented, (**key)["keyHash"].as_string())) {
          return absl::UnauthenticatedError(absl::StrFormat(
              "table \"cc_projectApiKeys\": no API key ending \"%s\"", hashed.display_suffix));
        }
        const Document& found = **key;
        if (found["revokedAt"].is_float64()) {
          return absl::PermissionDeniedError(absl::StrFormat(
              "table \"cc_projectApiKeys\": API key \"%s\" (ending \"%s\") of project \"%s\" was "
              "revoked",
              found["name"].as_string(), found["lastFour"].as_string(),
              found["projectId"].as_string()));
        }
        absl::Status s = ctx.db().Patch(
            found.id(),
            {{"lastUsedAt", NowMs()}, {"usageCount", found["usageCount"].as_float64() + 1}});
        if (!s.ok()) return s;
        return Value(Object{{"projectId", found["projectId"]},
                            {"keyId", Value(found.id())},
                            {"name", found["name"]}});
      });
}

}  // namespace

void RegisterIdentity(Registrar& r, const CodeCourierOptions& options) {
  RegisterUsers(r);
  RegisterProjects(r);
  RegisterSettings(r, options);
}

void RegisterKeys(Registrar& r, const CodeCourierOptions& options) {
  RegisterProviderKeys(r, options);
  RegisterProjectApiKeys(r);
}

}  // namespace stagedb::codecourier::detail
