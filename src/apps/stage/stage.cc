// Stage's named functions (stagedb/apps/stage.h). Each is written against the public API only;
// the pieces shared by several functions (finding a session, writing a file, triggering a
// render, pointing a channel at a version) are plain helpers over a Transaction, so a composite
// step such as a deploy is one mutation made of them.
#include "stagedb/apps/stage.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "apps/common/functions.h"
#include "apps/common/text.h"
#include "stagedb/secrets.h"

namespace stagedb::stage {
namespace {

using Result = absl::StatusOr<Value>;
using apps::Compact;
using apps::DocumentsValue;
using apps::IdArg;
using apps::NowMs;
using apps::Registrar;

constexpr size_t kMaxPathBytes = 400;  // the unique (session, path) key stays under LMDB's limit
constexpr std::string_view kChannels[] = {"preview", "production"};
// The recordings Stage's drive captures: audio and video containers browsers record.
constexpr std::string_view kRecordingTypes[] = {
    "audio/webm", "audio/ogg", "audio/mp4", "audio/mpeg", "audio/wav", "video/webm", "video/mp4"};

// An optional argument's value, or undefined (which leaves a field out of an Object).
const Value& Optional(const Value& args, std::string_view name) { return args[name]; }

absl::StatusOr<Document> RequireSession(Reader& db, const DocumentId& id) {
  absl::StatusOr<std::optional<Document>> session = db.Get(id);
  if (!session.ok()) return session.status();
  if (!session->has_value()) {
    return absl::NotFoundError(
        absl::StrFormat("table \"stage_sessions\": no session \"%s\"", id.text()));
  }
  return **std::move(session);
}

// The session an argument names, which must exist (NotFound naming it otherwise).
absl::StatusOr<DocumentId> SessionArg(Reader& db, const Value& args) {
  absl::StatusOr<DocumentId> session = IdArg(args, "sessionId");
  if (!session.ok()) return session.status();
  if (absl::StatusOr<Document> found = RequireSession(db, *session); !found.ok()) {
    return found.status();
  }
  return session;
}

absl::Status Touch(Transaction& tx, const DocumentId& session) {
  return tx.Patch(session, {{"lastAccessedAt", NowMs()}});
}

absl::Status CheckPath(std::string_view path) {
  std::string problem;
  if (path.empty() || path[0] != '/') {
    problem = "must start with '/'";
  } else if (path.size() > kMaxPathBytes) {
    problem = absl::StrFormat("is %d bytes, over %d", path.size(), kMaxPathBytes);
  } else if (path.back() == '/' || apps::Contains(path, "//") || apps::Contains(path, "/./") ||
             apps::Contains(path, "/../") || path.ends_with("/.") || path.ends_with("/..")) {
    problem = "must be a normalized file path (no empty, '.' or '..' segments, no trailing '/')";
  }
  if (problem.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrFormat("table \"stage_files\" field \"path\": \"%s\" %s", path, problem));
}

// A session's file at `path`; with `include_deleted`, also one deleted (soft delete keeps it,
// so a path written again continues its versions instead of restarting at 1).
absl::StatusOr<std::optional<Document>> FindFile(Reader& db, const DocumentId& session,
                                                 std::string_view path,
                                                 bool include_deleted = false) {
  Query query =
      db.Table("stage_files")
          .WithIndex("by_session_path", Eq("sessionId", Value(session)).Eq("path", Value(path)));
  if (include_deleted) query.IncludeDeleted();
  return query.First();
}

// Writes (creates or replaces) a file of a session: version + 1, size = content bytes; the
// workflow manifest is validated first. Returns the file's document as written.
absl::StatusOr<Value> WriteFileIn(Transaction& tx, const DocumentId& session, std::string_view path,
                                  const std::string& content) {
  if (absl::Status s = CheckPath(path); !s.ok()) return s;
  if (path == kWorkflowManifestPath) {
    if (absl::Status s = ValidateWorkflowManifest(content); !s.ok()) return s;
  }
  absl::StatusOr<std::optional<Document>> existing =
      FindFile(tx, session, path, /*include_deleted=*/true);
  if (!existing.ok()) return existing.status();
  const double size = static_cast<double>(content.size());
  double version = 1;
  if (existing->has_value()) {
    version = (**existing)["version"].as_float64() + 1;
    absl::Status s = tx.Patch((*existing)->id(), {{"content", content},
                                                  {"version", version},
                                                  {"size", size},
                                                  {"deletedAt", Value(Undefined{})}});
    if (!s.ok()) return s;
  } else {
    absl::StatusOr<DocumentId> id = tx.Insert("stage_files", {{"sessionId", Value(session)},
                                                              {"path", path},
                                                              {"content", content},
                                                              {"version", version},
                                                              {"size", size}});
    if (!id.ok()) return id.status();
  }
  return Value(Object{{"path", path}, {"version", version}, {"size", size}});
}

absl::StatusOr<std::optional<Document>> FindRender(Reader& db, const DocumentId& session) {
  return db.Table("stage_renderState")
      .WithIndex("by_session", Eq("sessionId", Value(session)))
      .First();
}

// Starts a render of `entry`: the session's render version + 1, its error cleared.
absl::StatusOr<double> TriggerRenderIn(Transaction& tx, const DocumentId& session,
                                       std::string_view entry) {
  if (absl::Status s = CheckPath(entry); !s.ok()) return s;
  absl::StatusOr<std::optional<Document>> render = FindRender(tx, session);
  if (!render.ok()) return render.status();
  if (render->has_value()) {
    const double version = (**render)["version"].as_float64() + 1;
    absl::Status s =
        tx.Patch((*render)->id(), {{"entry", entry}, {"version", version}, {"error", nullptr}});
    if (!s.ok()) return s;
    return version;
  }
  absl::StatusOr<DocumentId> id = tx.Insert("stage_renderState", {{"sessionId", Value(session)},
                                                                  {"entry", entry},
                                                                  {"version", 1.0},
                                                                  {"error", nullptr},
                                                                  {"renderedAt", nullptr}});
  if (!id.ok()) return id.status();
  return 1.0;
}

// The render state as the status query and snapshots show it.
Value RenderView(const Document& render) {
  return Value(Object{{"entry", render["entry"]},
                      {"version", render["version"]},
                      {"error", render["error"]},
                      {"renderedAt", render["renderedAt"]}});
}

absl::StatusOr<std::vector<Document>> SessionFiles(Reader& db, const DocumentId& session) {
  return db.Table("stage_files")
      .WithIndex("by_session_path", Eq("sessionId", Value(session)))
      .Collect();
}

// Copies a session's files and render state into a new snapshot (also what freezes an app
// version's files).
absl::StatusOr<DocumentId> SnapshotIn(Transaction& tx, const DocumentId& session,
                                      const Value& label) {
  absl::StatusOr<std::optional<Document>> render = FindRender(tx, session);
  if (!render.ok()) return render.status();
  absl::StatusOr<std::vector<Document>> files = SessionFiles(tx, session);
  if (!files.ok()) return files.status();
  absl::StatusOr<DocumentId> snapshot = tx.Insert(
      "stage_snapshots", {{"sessionId", Value(session)},
                          {"label", label},
                          {"createdAt", NowMs()},
                          {"fileCount", static_cast<double>(files->size())},
                          {"render", render->has_value() ? RenderView(**render) : Value(nullptr)}});
  if (!snapshot.ok()) return snapshot.status();
  for (const Document& file : *files) {
    absl::StatusOr<DocumentId> copy =
        tx.Insert("stage_snapshot_files", {{"snapshotId", Value(*snapshot)},
                                           {"path", file["path"]},
                                           {"content", file["content"]},
                                           {"version", file["version"]},
                                           {"size", file["size"]}});
    if (!copy.ok()) return copy.status();
  }
  return snapshot;
}

absl::StatusOr<std::vector<Document>> SnapshotFiles(Reader& db, const DocumentId& snapshot) {
  return db.Table("stage_snapshot_files")
      .WithIndex("by_snapshot_path", Eq("snapshotId", Value(snapshot)))
      .Collect();
}

absl::StatusOr<Document> FindBySid(Reader& db, std::string_view table, std::string_view what,
                                   std::string_view sid) {
  absl::StatusOr<std::optional<Document>> found =
      db.Table(table).WithIndex("by_sid", Eq("sid", Value(sid))).First();
  if (!found.ok()) return found.status();
  if (!found->has_value()) {
    return absl::NotFoundError(
        absl::StrFormat("table \"%s\": no %s with sid \"%s\"", table, what, sid));
  }
  return **std::move(found);
}

absl::StatusOr<Document> FindApp(Reader& db, std::string_view sid) {
  return FindBySid(db, "stage_apps", "app", sid);
}

// A version of `app_sid`: NotFound when there is none with that sid, or it is another app's.
absl::StatusOr<Document> FindVersion(Reader& db, std::string_view app_sid, std::string_view sid) {
  absl::StatusOr<Document> version = FindBySid(db, "stage_app_versions", "app version", sid);
  if (version.ok() && (*version)["appSid"].as_string() != app_sid) {
    return absl::NotFoundError(absl::StrFormat(
        "table \"stage_app_versions\": version \"%s\" belongs to app \"%s\", not \"%s\"", sid,
        (*version)["appSid"].as_string(), app_sid));
  }
  return version;
}

absl::StatusOr<std::optional<Document>> FindChannel(Reader& db, std::string_view app_sid,
                                                    std::string_view channel) {
  return db.Table("stage_app_channels")
      .WithIndex("by_app_channel", Eq("appSid", Value(app_sid)).Eq("channel", Value(channel)))
      .First();
}

absl::Status CheckChannel(std::string_view channel) {
  if (std::find(std::begin(kChannels), std::end(kChannels), channel) != std::end(kChannels)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "table \"stage_app_channels\" field \"channel\": \"%s\" is not a channel (preview, "
      "production)",
      channel));
}

absl::StatusOr<std::string> NewSid(std::string_view prefix) { return GenerateToken(prefix, 12); }

struct NewVersion {
  std::string app_sid;
  std::string source;
  DocumentId session;
  // The frozen files the version serves; none: a new snapshot of `session` now.
  std::optional<DocumentId> snapshot;
  Value render_version = Value(Undefined{});  // undefined: none
  Value from_version = Value(Undefined{});    // undefined: none
  Value branch = Value(Undefined{});
  Value commit_sha = Value(Undefined{});
  Value email = Value(Undefined{});
  Value oauth_scopes = Value(Undefined{});  // the scopes it is served with (rollback restores them)
};

absl::StatusOr<std::string> CreateVersion(Transaction& tx, const NewVersion& v) {
  absl::StatusOr<std::string> sid = NewSid("ver_");
  if (!sid.ok()) return sid.status();
  absl::StatusOr<DocumentId> snapshot =
      v.snapshot.has_value() ? *v.snapshot : SnapshotIn(tx, v.session, Value("version " + *sid));
  if (!snapshot.ok()) return snapshot.status();
  absl::StatusOr<DocumentId> id =
      tx.Insert("stage_app_versions", {{"sid", *sid},
                                       {"appSid", v.app_sid},
                                       {"source", v.source},
                                       {"sessionId", Value(v.session)},
                                       {"snapshotId", Value(*snapshot)},
                                       {"renderVersion", v.render_version},
                                       {"fromVersionSid", v.from_version},
                                       {"branch", v.branch},
                                       {"commitSha", v.commit_sha},
                                       {"oauthScopes", v.oauth_scopes},
                                       {"createdByEmail", v.email},
                                       {"createdAt", NowMs()}});
  if (!id.ok()) return id.status();
  return *sid;
}

// Points `channel` of `app_sid` at a version with its session binding, git tracking and OAuth
// scopes; creates the channel record on first use. Undefined branch or commit leave the field
// out; undefined scopes keep the channel's own. The version it pointed at before goes on its
// history (what rollback returns to), unless `history` replaces that history.
struct ChannelUpdate {
  std::string app_sid;
  std::string channel;
  std::string version_sid;
  DocumentId session;
  Value branch = Value(Undefined{});
  Value commit_sha = Value(Undefined{});
  Value oauth_scopes = Value(Undefined{});
  std::string email;
  std::optional<Array> history;
};

// How many earlier versions a channel remembers for rollback.
constexpr size_t kChannelHistory = 50;

// The OAuth scopes a channel holds after an update giving `given`: those, or when undefined the
// channel's own (`channel`: its record, if it has one).
Value ScopesAfter(const Value& given, const std::optional<Document>& channel) {
  if (!given.is_undefined() || !channel.has_value()) return given;
  return (*channel)["oauthScopes"];
}

absl::StatusOr<DocumentId> UpsertChannelIn(Transaction& tx, const ChannelUpdate& u) {
  if (absl::Status s = CheckChannel(u.channel); !s.ok()) return s;
  absl::StatusOr<std::optional<Document>> existing = FindChannel(tx, u.app_sid, u.channel);
  if (!existing.ok()) return existing.status();
  Array history;
  const Value scopes = ScopesAfter(u.oauth_scopes, *existing);
  if (existing->has_value()) {
    const Document& before = **existing;
    if (before["previousVersionSids"].is_array())
      history = before["previousVersionSids"].as_array();
    if (before["appVersionSid"].as_string() != u.version_sid) {
      history.push_back(before["appVersionSid"]);
    }
    if (history.size() > kChannelHistory) history.erase(history.begin());
  }
  if (u.history.has_value()) history = *u.history;
  Object fields{{"appSid", u.app_sid},
                {"channel", u.channel},
                {"appVersionSid", u.version_sid},
                {"sessionId", Value(u.session)},
                {"branch", u.branch},
                {"commitSha", u.commit_sha},
                {"oauthScopes", scopes},
                {"previousVersionSids", Value(std::move(history))},
                {"updatedByEmail", u.email},
                {"updatedAt", NowMs()}};
  if (existing->has_value()) {
    if (absl::Status s = tx.Replace((*existing)->id(), std::move(fields)); !s.ok()) return s;
    return (*existing)->id();
  }
  return tx.Insert("stage_app_channels", std::move(fields));
}

// Creates version `v` and points `channel` at it with the version's session and git tracking
// and `oauth_scopes` (undefined: the channel keeps its own). The version records the scopes the
// channel serves it with, which a rollback to it restores.
absl::StatusOr<std::string> ServeNewVersion(Transaction& tx, NewVersion v, std::string_view channel,
                                            const Value& oauth_scopes) {
  absl::StatusOr<std::optional<Document>> record = FindChannel(tx, v.app_sid, channel);
  if (!record.ok()) return record.status();
  v.oauth_scopes = ScopesAfter(oauth_scopes, *record);
  absl::StatusOr<std::string> sid = CreateVersion(tx, v);
  if (!sid.ok()) return sid.status();
  absl::StatusOr<DocumentId> updated = UpsertChannelIn(tx, {.app_sid = v.app_sid,
                                                            .channel = std::string(channel),
                                                            .version_sid = *sid,
                                                            .session = v.session,
                                                            .branch = v.branch,
                                                            .commit_sha = v.commit_sha,
                                                            .oauth_scopes = v.oauth_scopes,
                                                            .email = v.email.as_string()});
  if (!updated.ok()) return updated.status();
  return sid;
}

// The channel with its version's details, as stage:getResolvedAppChannel returns it; null when
// the channel has no record.
absl::StatusOr<Value> ResolvedChannel(Reader& db, std::string_view app_sid,
                                      std::string_view channel) {
  if (absl::Status s = CheckChannel(channel); !s.ok()) return s;
  absl::StatusOr<std::optional<Document>> record = FindChannel(db, app_sid, channel);
  if (!record.ok()) return record.status();
  if (!record->has_value()) return Value(nullptr);
  Value resolved = (*record)->ToValue();
  absl::StatusOr<Document> version =
      FindVersion(db, app_sid, (**record)["appVersionSid"].as_string());
  resolved.as_object()["version"] = version.ok() ? version->ToValue() : Value(nullptr);
  return resolved;
}

absl::StatusOr<Value> GoogleScopesOf(Reader& db, const DocumentId& session) {
  absl::StatusOr<std::optional<Document>> scopes =
      db.Table("stage_googleScopes")
          .WithIndex("by_session", Eq("sessionId", Value(session)))
          .First();
  if (!scopes.ok()) return scopes.status();
  if (!scopes->has_value()) return Value(Undefined{});
  return (**scopes)["scopes"];
}

// ---- registration ----

constexpr const char* kSessionArg = R"({"sessionId": {"type": "id", "table": "stage_sessions"}})";

void RegisterSessions(Registrar& r) {
  r.Mutation({.name = "stage:createSession",
              .args = "{}",
              .returns = R"({"type": "id", "table": "stage_sessions"})"},
             [](MutationContext& ctx, const Value&) -> Result {
               const double now = NowMs();
               absl::StatusOr<DocumentId> id =
                   ctx.db().Insert("stage_sessions", {{"createdAt", now}, {"lastAccessedAt", now}});
               if (!id.ok()) return id.status();
               return Value(*id);
             });
  r.Mutation({.name = "stage:touchSession", .args = kSessionArg, .returns = R"("null")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<DocumentId> session = SessionArg(ctx.db(), args);
               if (!session.ok()) return session.status();
               if (absl::Status s = Touch(ctx.db(), *session); !s.ok()) return s;
               return Value(nullptr);
             });
  // The SessionStatus composite view: the session, its render state and its files' metadata.
  r.Query(
      {.name = "stage:getSessionStatus", .args = kSessionArg},
      [](QueryContext& ctx, const Value& args) -> Result {
        absl::StatusOr<DocumentId> session_id = IdArg(args, "sessionId");
        if (!session_id.ok()) return session_id.status();
        absl::StatusOr<std::optional<Document>> session = ctx.db().Get(*session_id);
        if (!session.ok()) return session.status();
        absl::StatusOr<std::optional<Document>> render = FindRender(ctx.db(), *session_id);
        if (!render.ok()) return render.status();
        absl::StatusOr<std::vector<Document>> files = SessionFiles(ctx.db(), *session_id);
        if (!files.ok()) return files.status();
        Array file_views;
        for (const Document& file : *files) {
          file_views.push_back(Value(Object{
              {"path", file["path"]}, {"version", file["version"]}, {"size", file["size"]}}));
        }
        Value session_view(nullptr);
        if (session->has_value()) {
          session_view = Value(Object{{"createdAt", (**session)["createdAt"]},
                                      {"lastAccessedAt", (**session)["lastAccessedAt"]}});
        }
        return Value(Object{{"session", session_view},
                            {"render", render->has_value() ? RenderView(**render) : Value(nullptr)},
                            {"files", Value(std::move(file_views))}});
      });
}

void RegisterFiles(Registrar& r) {
  r.Mutation({.name = "stage:writeFile",
              .args = R"({"sessionId": {"type": "id", "table": "stage_sessions"},
                          "path": "string", "content": "string"})"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<DocumentId> session = SessionArg(ctx.db(), args);
               if (!session.ok()) return session.status();
               if (absl::Status s = Touch(ctx.db(), *session); !s.ok()) return s;
               return WriteFileIn(ctx.db(), *session, args["path"].as_string(),
                                  args["content"].as_string());
             });
  r.Query({.name = "stage:readFile",
           .args = R"({"sessionId": {"type": "id", "table": "stage_sessions"}, "path": "string"})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<DocumentId> session = IdArg(args, "sessionId");
            if (!session.ok()) return session.status();
            absl::StatusOr<std::optional<Document>> file =
                FindFile(ctx.db(), *session, args["path"].as_string());
            if (!file.ok()) return file.status();
            if (!file->has_value()) return Value(nullptr);
            return Value(Object{{"path", (**file)["path"]},
                                {"content", (**file)["content"]},
                                {"version", (**file)["version"]},
                                {"size", (**file)["size"]}});
          });
  r.Mutation({.name = "stage:deleteFile",
              .args = R"({"sessionId": {"type": "id", "table": "stage_sessions"},
                          "path": "string"})",
              .returns = R"("boolean")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<DocumentId> session = SessionArg(ctx.db(), args);
               if (!session.ok()) return session.status();
               absl::StatusOr<std::optional<Document>> file =
                   FindFile(ctx.db(), *session, args["path"].as_string());
               if (!file.ok()) return file.status();
               if (!file->has_value()) return Value(false);
               if (absl::Status s = ctx.db().Delete((*file)->id()); !s.ok()) return s;
               if (absl::Status s = Touch(ctx.db(), *session); !s.ok()) return s;
               return Value(true);
             });
  r.Query({.name = "stage:listFiles", .args = kSessionArg},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<DocumentId> session = IdArg(args, "sessionId");
            if (!session.ok()) return session.status();
            absl::StatusOr<std::vector<Document>> files = SessionFiles(ctx.db(), *session);
            if (!files.ok()) return files.status();
            Array views;
            for (const Document& file : *files) {
              views.push_back(Value(Object{
                  {"path", file["path"]}, {"version", file["version"]}, {"size", file["size"]}}));
            }
            return Value(std::move(views));
          });
}

void RegisterRender(Registrar& r) {
  r.Mutation({.name = "stage:triggerRender",
              .args = R"({"sessionId": {"type": "id", "table": "stage_sessions"},
                          "entry": "string"})",
              .returns = R"("number")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<DocumentId> session = SessionArg(ctx.db(), args);
               if (!session.ok()) return session.status();
               if (absl::Status s = Touch(ctx.db(), *session); !s.ok()) return s;
               absl::StatusOr<double> version =
                   TriggerRenderIn(ctx.db(), *session, args["entry"].as_string());
               if (!version.ok()) return version.status();
               return Value(*version);
             });
  // The renderer reports the outcome of render `version`; a report for an older render than the
  // latest trigger is stale and ignored (returns false).
  r.Mutation({.name = "stage:recordRenderResult",
              .args = R"({"sessionId": {"type": "id", "table": "stage_sessions"},
                          "version": "number",
                          "error": {"type": "union", "of": ["string", "null"]}})",
              .returns = R"("boolean")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<DocumentId> session = SessionArg(ctx.db(), args);
               if (!session.ok()) return session.status();
               absl::StatusOr<std::optional<Document>> render = FindRender(ctx.db(), *session);
               if (!render.ok()) return render.status();
               if (!render->has_value()) {
                 return absl::FailedPreconditionError(absl::StrFormat(
                     "table \"stage_renderState\": session \"%s\" has no render to report on "
                     "(trigger one first)",
                     session->text()));
               }
               const double current = (**render)["version"].as_float64();
               const double reported = args["version"].as_float64();
               if (!std::isfinite(reported) || reported > current) {
                 return absl::InvalidArgumentError(absl::StrFormat(
                     "table \"stage_renderState\" field \"version\": render %g of session \"%s\" "
                     "was never triggered (the latest is %g)",
                     reported, session->text(), current));
               }
               if (reported < current) return Value(false);
               Object patch{{"error", args["error"]}};
               if (args["error"].is_null()) patch["renderedAt"] = Value(NowMs());
               if (absl::Status s = ctx.db().Patch((*render)->id(), std::move(patch)); !s.ok()) {
                 return s;
               }
               return Value(true);
             });
}

void RegisterSnapshots(Registrar& r) {
  r.Mutation({.name = "stage:createSnapshot",
              .args = R"({"sessionId": {"type": "id", "table": "stage_sessions"},
                          "label": {"type": "optional", "of": "string"}})",
              .returns = R"({"type": "id", "table": "stage_snapshots"})"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<DocumentId> session = SessionArg(ctx.db(), args);
               if (!session.ok()) return session.status();
               absl::StatusOr<DocumentId> snapshot =
                   SnapshotIn(ctx.db(), *session, Optional(args, "label"));
               if (!snapshot.ok()) return snapshot.status();
               return Value(*snapshot);
             });
  // Puts the session's files and render state back as the snapshot holds them: files not in
  // the snapshot are deleted, changed ones rewritten with a new version (versions only grow),
  // and the render state's entry, error and renderedAt restored under a new render version.
  r.Mutation(
      {.name = "stage:restoreSnapshot",
       .args = R"({"snapshotId": {"type": "id", "table": "stage_snapshots"}})",
       .returns = R"("null")"},
      [](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<DocumentId> snapshot_id = IdArg(args, "snapshotId");
        if (!snapshot_id.ok()) return snapshot_id.status();
        absl::StatusOr<std::optional<Document>> snapshot = ctx.db().Get(*snapshot_id);
        if (!snapshot.ok()) return snapshot.status();
        if (!snapshot->has_value()) {
          return absl::NotFoundError(absl::StrFormat(
              "table \"stage_snapshots\": no snapshot \"%s\"", snapshot_id->text()));
        }
        absl::StatusOr<DocumentId> session = IdArg((*snapshot)->ToValue(), "sessionId");
        if (!session.ok()) return session.status();
        if (auto s = RequireSession(ctx.db(), *session); !s.ok()) return s.status();
        absl::StatusOr<std::vector<Document>> saved = SnapshotFiles(ctx.db(), *snapshot_id);
        if (!saved.ok()) return saved.status();
        absl::StatusOr<std::vector<Document>> current = SessionFiles(ctx.db(), *session);
        if (!current.ok()) return current.status();
        for (const Document& file : *current) {
          const bool kept = std::any_of(saved->begin(), saved->end(), [&](const Document& s) {
            return s["path"] == file["path"];
          });
          if (kept) continue;
          if (absl::Status s = ctx.db().Delete(file.id()); !s.ok()) return s;
        }
        for (const Document& file : *saved) {
          absl::StatusOr<std::optional<Document>> now =
              FindFile(ctx.db(), *session, file["path"].as_string());
          if (!now.ok()) return now.status();
          if (now->has_value() && (**now)["content"] == file["content"]) continue;
          absl::StatusOr<Value> written = WriteFileIn(ctx.db(), *session, file["path"].as_string(),
                                                      file["content"].as_string());
          if (!written.ok()) return written.status();
        }
        const Value& render = (**snapshot)["render"];
        if (render.is_object()) {
          absl::StatusOr<double> version =
              TriggerRenderIn(ctx.db(), *session, render["entry"].as_string());
          if (!version.ok()) return version.status();
          absl::StatusOr<std::optional<Document>> state = FindRender(ctx.db(), *session);
          if (!state.ok()) return state.status();
          absl::Status s = ctx.db().Patch(
              (**state).id(), {{"error", render["error"]}, {"renderedAt", render["renderedAt"]}});
          if (!s.ok()) return s;
        }
        if (absl::Status s = Touch(ctx.db(), *session); !s.ok()) return s;
        return Value(nullptr);
      });
  r.Query({.name = "stage:listSnapshots", .args = kSessionArg},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<DocumentId> session = IdArg(args, "sessionId");
            if (!session.ok()) return session.status();
            absl::StatusOr<std::vector<Document>> snapshots =
                ctx.db()
                    .Table("stage_snapshots")
                    .WithIndex("by_session", Eq("sessionId", Value(*session)))
                    .Collect();
            if (!snapshots.ok()) return snapshots.status();
            return DocumentsValue(*snapshots);
          });
}

void RegisterApps(Registrar& r) {
  // Publishes an app: the catalog entry, its first version (source "publish") and the
  // production channel pointing at it. The preview channel appears with the first deploy.
  r.Mutation(
      {.name = "stage:publishApp",
       .args = R"({"sid": {"type": "optional", "of": "string"},
                   "name": "string",
                   "description": {"type": "optional", "of": "string"},
                   "authorEmail": {"type": "optional", "of": "string"},
                   "authorName": {"type": "optional", "of": "string"},
                   "tags": {"type": "optional", "of": {"type": "array", "items": "string"}},
                   "sessionId": {"type": "id", "table": "stage_sessions"},
                   "updatedByEmail": "string"})",
       .returns = R"({"type": "object", "fields": {"appSid": "string", "versionSid": "string"}})"},
      [](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<DocumentId> session = SessionArg(ctx.db(), args);
        if (!session.ok()) return session.status();
        if (args["name"].as_string().empty()) {
          return absl::InvalidArgumentError(
              "table \"stage_apps\" field \"name\": an app needs a non-empty name");
        }
        std::string sid;
        if (args["sid"].is_string()) {
          sid = args["sid"].as_string();
        } else {
          absl::StatusOr<std::string> generated = NewSid("app_");
          if (!generated.ok()) return generated.status();
          sid = *generated;
        }
        const double now = NowMs();
        // The unique index on sid refuses a taken sid (AlreadyExists naming it).
        absl::StatusOr<DocumentId> app =
            ctx.db().Insert("stage_apps", {{"sid", sid},
                                           {"name", args["name"]},
                                           {"description", Optional(args, "description")},
                                           {"authorEmail", Optional(args, "authorEmail")},
                                           {"authorName", Optional(args, "authorName")},
                                           {"status", "published"},
                                           {"tags", Optional(args, "tags")},
                                           {"sessionId", Value(*session)},
                                           {"createdAt", now},
                                           {"updatedAt", now},
                                           {"lastDeployedAt", now}});
        if (!app.ok()) return app.status();
        absl::StatusOr<Value> scopes = GoogleScopesOf(ctx.db(), *session);
        if (!scopes.ok()) return scopes.status();
        absl::StatusOr<std::string> version = ServeNewVersion(ctx.db(),
                                                              {.app_sid = sid,
                                                               .source = "publish",
                                                               .session = *session,
                                                               .email = args["updatedByEmail"]},
                                                              "production", *scopes);
        if (!version.ok()) return version.status();
        return Value(Object{{"appSid", sid}, {"versionSid", *version}});
      });
  r.Query({.name = "stage:getApp", .args = R"({"sid": "string"})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<Document> app = FindApp(ctx.db(), args["sid"].as_string());
            if (absl::IsNotFound(app.status())) return Value(nullptr);
            if (!app.ok()) return app.status();
            return app->ToValue();
          });
  r.Query({.name = "stage:listApps",
           .args = R"({"status": {"type": "union", "of": [{"type": "literal", "value": "published"},
                       {"type": "literal", "value": "draft"},
                       {"type": "literal", "value": "archived"}]}})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<std::vector<Document>> apps =
                ctx.db()
                    .Table("stage_apps")
                    .WithIndex("by_status", Eq("status", args["status"]))
                    .Order(SortOrder::kDesc)
                    .Collect();
            if (!apps.ok()) return apps.status();
            return DocumentsValue(*apps);
          });
  r.Mutation({.name = "stage:setAppStatus",
              .args = R"({"sid": "string",
                          "status": {"type": "union", "of": [
                            {"type": "literal", "value": "published"},
                            {"type": "literal", "value": "draft"},
                            {"type": "literal", "value": "archived"}]}})",
              .returns = R"("null")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<Document> app = FindApp(ctx.db(), args["sid"].as_string());
               if (!app.ok()) return app.status();
               absl::Status s =
                   ctx.db().Patch(app->id(), {{"status", args["status"]}, {"updatedAt", NowMs()}});
               if (!s.ok()) return s;
               return Value(nullptr);
             });
  r.Mutation(
      {.name = "stage:linkRepository",
       .args = R"({"appSid": "string", "owner": "string", "name": "string", "url": "string",
                   "visibility": {"type": "union", "of": [
                     {"type": "literal", "value": "private"},
                     {"type": "literal", "value": "public"},
                     {"type": "literal", "value": "internal"}]},
                   "defaultBranch": {"type": "optional", "of": "string"},
                   "remoteName": {"type": "optional", "of": "string"}})",
       .returns = R"("null")"},
      [](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<Document> app = FindApp(ctx.db(), args["appSid"].as_string());
        if (!app.ok()) return app.status();
        for (std::string_view part : {"owner", "name"}) {
          const std::string& value = args[part].as_string();
          if (value.empty() || apps::Contains(value, "/")) {
            return absl::InvalidArgumentError(absl::StrFormat(
                "table \"stage_apps\" field \"repository.%s\": \"%s\" must be a non-empty "
                "GitHub name without '/'",
                part, value));
          }
        }
        const Value repository = Compact(Object{
            {"provider", "github"},
            {"owner", args["owner"]},
            {"name", args["name"]},
            {"fullName", args["owner"].as_string() + "/" + args["name"].as_string()},
            {"url", args["url"]},
            {"visibility", args["visibility"]},
            {"defaultBranch", Optional(args, "defaultBranch")},
            {"remoteName", args["remoteName"].is_string() ? args["remoteName"] : Value("origin")},
            {"linkedAt", NowMs()}});
        absl::Status s =
            ctx.db().Patch(app->id(), {{"repository", repository}, {"updatedAt", NowMs()}});
        if (!s.ok()) return s;
        return Value(nullptr);
      });
  r.Mutation(
      {.name = "stage:updateRepository",
       .args = R"({"appSid": "string",
                   "lastPushedAt": {"type": "optional", "of": "number"},
                   "lastCommitSha": {"type": "optional", "of": "string"},
                   "defaultBranch": {"type": "optional", "of": "string"},
                   "visibility": {"type": "optional", "of": {"type": "union", "of": [
                     {"type": "literal", "value": "private"},
                     {"type": "literal", "value": "public"},
                     {"type": "literal", "value": "internal"}]}}})",
       .returns = R"("null")"},
      [](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<Document> app = FindApp(ctx.db(), args["appSid"].as_string());
        if (!app.ok()) return app.status();
        if (!(*app)["repository"].is_object()) {
          return absl::FailedPreconditionError(absl::StrFormat(
              "table \"stage_apps\": app \"%s\" has no linked repository (stage:linkRepository "
              "first)",
              args["appSid"].as_string()));
        }
        Value repository = (*app)["repository"];
        for (std::string_view field :
             {"lastPushedAt", "lastCommitSha", "defaultBranch", "visibility"}) {
          if (!args[field].is_undefined()) repository.as_object()[field] = args[field];
        }
        absl::Status s =
            ctx.db().Patch(app->id(), {{"repository", repository}, {"updatedAt", NowMs()}});
        if (!s.ok()) return s;
        return Value(nullptr);
      });
  r.Query({.name = "stage:listAppVersions", .args = R"({"appSid": "string"})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<std::vector<Document>> versions =
                ctx.db()
                    .Table("stage_app_versions")
                    .WithIndex("by_app", Eq("appSid", args["appSid"]))
                    .Collect();
            if (!versions.ok()) return versions.status();
            return DocumentsValue(*versions);
          });
}

void RegisterGoogleScopes(Registrar& r) {
  r.Mutation({.name = "stage:setGoogleScopes",
              .args = R"({"sessionId": {"type": "id", "table": "stage_sessions"},
                          "scopes": {"type": "array", "items": "string"}})",
              .returns = R"("null")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<DocumentId> session = SessionArg(ctx.db(), args);
               if (!session.ok()) return session.status();
               // Kept sorted and without duplicates, so equal sets compare equal.
               std::vector<std::string> scopes;
               for (const Value& scope : args["scopes"].as_array()) {
                 if (scope.as_string().empty() || apps::Contains(scope.as_string(), " ")) {
                   return absl::InvalidArgumentError(absl::StrFormat(
                       "table \"stage_googleScopes\" field \"scopes\": \"%s\" is not an OAuth "
                       "scope (non-empty, no spaces)",
                       scope.as_string()));
                 }
                 scopes.push_back(scope.as_string());
               }
               std::sort(scopes.begin(), scopes.end());
               scopes.erase(std::unique(scopes.begin(), scopes.end()), scopes.end());
               Array values(scopes.begin(), scopes.end());
               absl::StatusOr<std::optional<Document>> existing =
                   ctx.db()
                       .Table("stage_googleScopes")
                       .WithIndex("by_session", Eq("sessionId", Value(*session)))
                       .First();
               if (!existing.ok()) return existing.status();
               Object fields{{"scopes", Value(std::move(values))}, {"updatedAt", NowMs()}};
               if (existing->has_value()) {
                 if (absl::Status s = ctx.db().Patch((*existing)->id(), std::move(fields));
                     !s.ok()) {
                   return s;
                 }
               } else {
                 fields["sessionId"] = Value(*session);
                 if (auto id = ctx.db().Insert("stage_googleScopes", std::move(fields)); !id.ok()) {
                   return id.status();
                 }
               }
               return Value(nullptr);
             });
  r.Query({.name = "stage:getGoogleScopes", .args = kSessionArg},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<DocumentId> session = IdArg(args, "sessionId");
            if (!session.ok()) return session.status();
            absl::StatusOr<Value> scopes = GoogleScopesOf(ctx.db(), *session);
            if (!scopes.ok()) return scopes.status();
            return scopes->is_undefined() ? Value(nullptr) : *scopes;
          });
}

// The files a version serves (frozen when it was made), as readFile shows a file.
absl::StatusOr<Value> VersionFiles(Reader& db, const Document& version) {
  absl::StatusOr<DocumentId> snapshot = IdArg(version.ToValue(), "snapshotId");
  if (!snapshot.ok()) return snapshot.status();
  absl::StatusOr<std::vector<Document>> files = SnapshotFiles(db, *snapshot);
  if (!files.ok()) return files.status();
  Array views;
  for (const Document& file : *files) {
    views.push_back(Value(Object{{"path", file["path"]},
                                 {"content", file["content"]},
                                 {"version", file["version"]},
                                 {"size", file["size"]}}));
  }
  return Value(std::move(views));
}

void RegisterChannels(Registrar& r) {
  // What a channel serves: its version's frozen files (null when the channel has no version).
  r.Query({.name = "stage:getChannelFiles", .args = R"({"appSid": "string", "channel": "string"})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            const std::string& app_sid = args["appSid"].as_string();
            if (absl::Status s = CheckChannel(args["channel"].as_string()); !s.ok()) return s;
            absl::StatusOr<std::optional<Document>> channel =
                FindChannel(ctx.db(), app_sid, args["channel"].as_string());
            if (!channel.ok()) return channel.status();
            if (!channel->has_value()) return Value(nullptr);
            absl::StatusOr<Document> version =
                FindVersion(ctx.db(), app_sid, (**channel)["appVersionSid"].as_string());
            if (!version.ok()) return version.status();
            return VersionFiles(ctx.db(), *version);
          });
  r.Query(
      {.name = "stage:getVersionFiles", .args = R"({"appSid": "string", "versionSid": "string"})"},
      [](QueryContext& ctx, const Value& args) -> Result {
        absl::StatusOr<Document> version =
            FindVersion(ctx.db(), args["appSid"].as_string(), args["versionSid"].as_string());
        if (!version.ok()) return version.status();
        return VersionFiles(ctx.db(), *version);
      });
  r.Query({.name = "stage:getResolvedAppChannel",
           .args = R"({"appSid": "string", "channel": "string"})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            return ResolvedChannel(ctx.db(), args["appSid"].as_string(),
                                   args["channel"].as_string());
          });
  r.Query({.name = "stage:getAppChannelsForSummary", .args = R"({"appSid": "string"})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            Object summary;
            for (std::string_view channel : kChannels) {
              absl::StatusOr<Value> resolved =
                  ResolvedChannel(ctx.db(), args["appSid"].as_string(), channel);
              if (!resolved.ok()) return resolved.status();
              summary[channel] = *std::move(resolved);
            }
            return Value(std::move(summary));
          });
  r.Mutation({.name = "stage:upsertAppChannel",
              .args = R"({"appSid": "string", "channel": "string", "appVersionSid": "string",
                   "sessionId": {"type": "optional", "of": {"type": "id", "table": "stage_sessions"}},
                   "branch": {"type": "optional", "of": "string"},
                   "commitSha": {"type": "optional", "of": "string"},
                   "oauthScopes": {"type": "optional", "of": {"type": "array", "items": "string"}},
                   "updatedByEmail": "string"})",
              .returns = R"({"type": "id", "table": "stage_app_channels"})"},
             [](MutationContext& ctx, const Value& args) -> Result {
               const std::string& app_sid = args["appSid"].as_string();
               if (auto app = FindApp(ctx.db(), app_sid); !app.ok()) return app.status();
               absl::StatusOr<Document> version =
                   FindVersion(ctx.db(), app_sid, args["appVersionSid"].as_string());
               if (!version.ok()) return version.status();
               // The session binding defaults to the version's session; git tracking and OAuth
               // scopes to the version's (scopes: else the channel's own).
               absl::StatusOr<DocumentId> session = args["sessionId"].is_string()
                                                        ? SessionArg(ctx.db(), args)
                                                        : IdArg(version->ToValue(), "sessionId");
               if (!session.ok()) return session.status();
               auto pick = [&](std::string_view field) {
                 return args[field].is_undefined() ? (*version)[field] : args[field];
               };
               absl::StatusOr<DocumentId> channel =
                   UpsertChannelIn(ctx.db(), {.app_sid = app_sid,
                                              .channel = args["channel"].as_string(),
                                              .version_sid = args["appVersionSid"].as_string(),
                                              .session = *session,
                                              .branch = pick("branch"),
                                              .commit_sha = pick("commitSha"),
                                              .oauth_scopes = pick("oauthScopes"),
                                              .email = args["updatedByEmail"].as_string()});
               if (!channel.ok()) return channel.status();
               return Value(*channel);
             });
}

// The version-channel workflow: deploy -> preview, promote -> production, rollback.
void RegisterWorkflow(Registrar& r) {
  r.Mutation(
      {.name = "stage:deploy",
       .args = R"({"appSid": "string",
                   "sessionId": {"type": "id", "table": "stage_sessions"},
                   "files": {"type": "array", "items": {"type": "object", "fields": {
                     "path": "string", "content": "string"}}},
                   "entry": "string",
                   "source": {"type": "optional", "of": {"type": "union", "of": [
                     {"type": "literal", "value": "studio_deploy"},
                     {"type": "literal", "value": "feedback"}]}},
                   "branch": {"type": "optional", "of": "string"},
                   "commitSha": {"type": "optional", "of": "string"},
                   "updatedByEmail": "string"})",
       .returns = R"({"type": "object", "fields": {"versionSid": "string",
                                                    "renderVersion": "number"}})"},
      [](MutationContext& ctx, const Value& args) -> Result {
        const std::string& app_sid = args["appSid"].as_string();
        absl::StatusOr<Document> app = FindApp(ctx.db(), app_sid);
        if (!app.ok()) return app.status();
        absl::StatusOr<DocumentId> session = SessionArg(ctx.db(), args);
        if (!session.ok()) return session.status();
        if (absl::Status s = Touch(ctx.db(), *session); !s.ok()) return s;
        // 1. Push the files.
        for (const Value& file : args["files"].as_array()) {
          absl::StatusOr<Value> written = WriteFileIn(ctx.db(), *session, file["path"].as_string(),
                                                      file["content"].as_string());
          if (!written.ok()) return written.status();
        }
        // 2. Trigger the render.
        absl::StatusOr<double> render =
            TriggerRenderIn(ctx.db(), *session, args["entry"].as_string());
        if (!render.ok()) return render.status();
        // 3. A version of the app, which the preview channel follows with the session's OAuth
        // scopes.
        absl::StatusOr<Value> scopes = GoogleScopesOf(ctx.db(), *session);
        if (!scopes.ok()) return scopes.status();
        absl::StatusOr<std::string> version =
            ServeNewVersion(ctx.db(),
                            {.app_sid = app_sid,
                             .source = args["source"].is_string() ? args["source"].as_string()
                                                                  : std::string("studio_deploy"),
                             .session = *session,
                             .render_version = Value(*render),
                             .branch = Optional(args, "branch"),
                             .commit_sha = Optional(args, "commitSha"),
                             .email = args["updatedByEmail"]},
                            "preview", *scopes);
        if (!version.ok()) return version.status();
        const double now = NowMs();
        absl::Status s = ctx.db().Patch(app->id(), {{"lastDeployedAt", now}, {"updatedAt", now}});
        if (!s.ok()) return s;
        return Value(Object{{"versionSid", *version}, {"renderVersion", *render}});
      });
  // Promotion: production gets the preview's version, as a new version of source "promotion"
  // (fromVersionSid: the preview's), with the preview's session, git tracking and scopes.
  r.Mutation(
      {.name = "stage:promote",
       .args = R"({"appSid": "string", "updatedByEmail": "string"})",
       .returns = R"({"type": "object", "fields": {"versionSid": "string",
                                                    "fromVersionSid": "string"}})"},
      [](MutationContext& ctx, const Value& args) -> Result {
        const std::string& app_sid = args["appSid"].as_string();
        absl::StatusOr<Document> app = FindApp(ctx.db(), app_sid);
        if (!app.ok()) return app.status();
        absl::StatusOr<std::optional<Document>> preview = FindChannel(ctx.db(), app_sid, "preview");
        if (!preview.ok()) return preview.status();
        if (!preview->has_value()) {
          return absl::FailedPreconditionError(absl::StrFormat(
              "table \"stage_app_channels\": app \"%s\" has no preview version to promote "
              "(deploy first)",
              app_sid));
        }
        const Document& from = **preview;
        absl::StatusOr<std::optional<Document>> production =
            FindChannel(ctx.db(), app_sid, "production");
        if (!production.ok()) return production.status();
        if (production->has_value()) {
          absl::StatusOr<Document> serving =
              FindVersion(ctx.db(), app_sid, (**production)["appVersionSid"].as_string());
          if (serving.ok() && (*serving)["fromVersionSid"] == from["appVersionSid"]) {
            return absl::FailedPreconditionError(absl::StrFormat(
                "table \"stage_app_channels\": production of app \"%s\" already serves preview's "
                "version \"%s\"",
                app_sid, from["appVersionSid"].as_string()));
          }
        }
        absl::StatusOr<Document> promoted =
            FindVersion(ctx.db(), app_sid, from["appVersionSid"].as_string());
        if (!promoted.ok()) return promoted.status();
        absl::StatusOr<DocumentId> session = IdArg(from.ToValue(), "sessionId");
        if (!session.ok()) return session.status();
        absl::StatusOr<DocumentId> frozen = IdArg(promoted->ToValue(), "snapshotId");
        if (!frozen.ok()) return frozen.status();
        // The promotion serves exactly the files the preview version froze.
        absl::StatusOr<std::string> version =
            ServeNewVersion(ctx.db(),
                            {.app_sid = app_sid,
                             .source = "promotion",
                             .session = *session,
                             .snapshot = *frozen,
                             .from_version = from["appVersionSid"],
                             .branch = from["branch"],
                             .commit_sha = from["commitSha"],
                             .email = args["updatedByEmail"]},
                            "production", from["oauthScopes"]);
        if (!version.ok()) return version.status();
        if (absl::Status s = ctx.db().Patch(app->id(), {{"updatedAt", NowMs()}}); !s.ok()) return s;
        return Value(Object{{"versionSid", *version}, {"fromVersionSid", from["appVersionSid"]}});
      });
  // Rollback: production returns to the version it served before (its channel history), or
  // further back to `toVersionSid`, which must be in that history.
  r.Mutation(
      {.name = "stage:rollback",
       .args = R"({"appSid": "string", "updatedByEmail": "string",
                   "toVersionSid": {"type": "optional", "of": "string"}})",
       .returns = R"({"type": "object", "fields": {"versionSid": "string"}})"},
      [](MutationContext& ctx, const Value& args) -> Result {
        const std::string& app_sid = args["appSid"].as_string();
        absl::StatusOr<Document> app = FindApp(ctx.db(), app_sid);
        if (!app.ok()) return app.status();
        absl::StatusOr<std::optional<Document>> production =
            FindChannel(ctx.db(), app_sid, "production");
        if (!production.ok()) return production.status();
        if (!production->has_value()) {
          return absl::FailedPreconditionError(absl::StrFormat(
              "table \"stage_app_channels\": app \"%s\" has no production version", app_sid));
        }
        const Document& channel = **production;
        Array history;
        if (channel["previousVersionSids"].is_array()) {
          history = channel["previousVersionSids"].as_array();
        }
        auto target_it = history.end();
        if (args["toVersionSid"].is_string()) {
          target_it = std::find(history.begin(), history.end(), args["toVersionSid"]);
          if (target_it == history.end()) {
            return absl::FailedPreconditionError(absl::StrFormat(
                "table \"stage_app_channels\": version \"%s\" is not one production of app "
                "\"%s\" served before \"%s\"",
                args["toVersionSid"].as_string(), app_sid, channel["appVersionSid"].as_string()));
          }
        } else if (history.empty()) {
          return absl::FailedPreconditionError(absl::StrFormat(
              "table \"stage_app_channels\": production of app \"%s\" has no version earlier "
              "than \"%s\" to roll back to",
              app_sid, channel["appVersionSid"].as_string()));
        } else {
          target_it = std::prev(history.end());
        }
        absl::StatusOr<Document> target = FindVersion(ctx.db(), app_sid, target_it->as_string());
        if (!target.ok()) return target.status();
        absl::StatusOr<DocumentId> session = IdArg(target->ToValue(), "sessionId");
        if (!session.ok()) return session.status();
        // What production served after the target is rolled away from, not kept for later. The
        // target's OAuth scopes come back with it (a version made before versions recorded
        // them leaves the channel's).
        absl::StatusOr<DocumentId> updated =
            UpsertChannelIn(ctx.db(), {.app_sid = app_sid,
                                       .channel = "production",
                                       .version_sid = (*target)["sid"].as_string(),
                                       .session = *session,
                                       .branch = (*target)["branch"],
                                       .commit_sha = (*target)["commitSha"],
                                       .oauth_scopes = (*target)["oauthScopes"],
                                       .email = args["updatedByEmail"].as_string(),
                                       .history = Array(history.begin(), target_it)});
        if (!updated.ok()) return updated.status();
        if (absl::Status s = ctx.db().Patch(app->id(), {{"updatedAt", NowMs()}}); !s.ok()) return s;
        return Value(Object{{"versionSid", (*target)["sid"]}});
      });
}

void RegisterRecordings(Registrar& r, const StageOptions& options) {
  const absl::Duration delay = options.transcription_delay;
  r.Mutation(
      {.name = "stage:storeDriveRecording",
       .args = R"({"sessionId": {"type": "id", "table": "stage_sessions"},
                   "fileId": "string", "filename": "string", "contentType": "string",
                   "sizeBytes": "number",
                   "storageId": {"type": "id", "table": "_storage"},
                   "recordedAt": "number"})",
       .returns = R"({"type": "object", "fields": {
                      "recordingId": {"type": "id", "table": "stage_drive_recordings"},
                      "jobId": {"type": "id", "table": "_scheduled_functions"}}})"},
      [delay](MutationContext& ctx, const Value& args) -> Result {
        auto invalid = [](std::string_view field, const std::string& what) {
          return absl::InvalidArgumentError(
              absl::StrFormat("table \"stage_drive_recordings\" field \"%s\": %s", field, what));
        };
        const double size = args["sizeBytes"].as_float64();
        // Whole, positive, and exact in a double (below 2^53) before it is cast.
        if (!(size > 0 && size < 9007199254740992.0) || size != std::floor(size)) {
          return invalid("sizeBytes",
                         absl::StrFormat("%g is not a positive whole number of bytes", size));
        }
        const std::string& type = args["contentType"].as_string();
        if (std::find(std::begin(kRecordingTypes), std::end(kRecordingTypes), type) ==
            std::end(kRecordingTypes)) {
          return invalid("contentType",
                         absl::StrFormat("\"%s\" is not a recording type (expected one of %s)",
                                         type, apps::Join(kRecordingTypes)));
        }
        if (args["fileId"].as_string().empty()) return invalid("fileId", "is required (empty)");
        if (args["filename"].as_string().empty()) {
          return invalid("filename", "is required (empty)");
        }
        absl::StatusOr<DocumentId> session = SessionArg(ctx.db(), args);
        if (!session.ok()) return session.status();
        // The stored file must exist, be complete and be as large as the recording claims.
        absl::StatusOr<DocumentId> storage = IdArg(args, "storageId");
        if (!storage.ok()) return storage.status();
        absl::StatusOr<std::optional<Document>> file = ctx.db().Get(*storage);
        if (!file.ok()) return file.status();
        if (!file->has_value() || (**file)["state"].as_string() != "ready") {
          return invalid("storageId",
                         absl::StrFormat("no complete stored file \"%s\" (store the bytes first)",
                                         storage->text()));
        }
        if (static_cast<double>((**file)["size"].as_int64()) != size) {
          return invalid("sizeBytes",
                         absl::StrFormat("%g, but stored file \"%s\" has %d bytes", size,
                                         storage->text(), (**file)["size"].as_int64()));
        }
        absl::StatusOr<DocumentId> recording =
            ctx.db().Insert("stage_drive_recordings", {{"sessionId", Value(*session)},
                                                       {"fileId", args["fileId"]},
                                                       {"filename", args["filename"]},
                                                       {"contentType", type},
                                                       {"sizeBytes", size},
                                                       {"storageId", Value(*storage)},
                                                       {"recordedAt", args["recordedAt"]}});
        if (!recording.ok()) return recording.status();
        absl::StatusOr<DocumentId> job = ctx.scheduler().RunAfter(
            delay, "stage:transcribeRecording", Object{{"recordingId", Value(*recording)}});
        if (!job.ok()) return job.status();
        if (absl::Status s = ctx.db().Patch(*recording, {{"transcriptionJobId", Value(*job)}});
            !s.ok()) {
          return s;
        }
        return Value(Object{{"recordingId", Value(*recording)}, {"jobId", Value(*job)}});
      });
  // The recording with its transcription job's state ("pending", ..., "success"); live.
  r.Query({.name = "stage:getDriveRecording",
           .args = R"({"recordingId": {"type": "id", "table": "stage_drive_recordings"}})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<std::optional<Document>> recording =
                ctx.db().Get(args["recordingId"].as_string());
            if (!recording.ok()) return recording.status();
            if (!recording->has_value()) return Value(nullptr);
            Value view = (*recording)->ToValue();
            Value job_view(nullptr);
            if ((**recording)["transcriptionJobId"].is_string()) {
              absl::StatusOr<std::optional<Document>> job =
                  ctx.db().Get((**recording)["transcriptionJobId"].as_string());
              if (!job.ok()) return job.status();
              if (job->has_value()) {
                job_view = Compact(Object{{"state", (**job)["state"]},
                                          {"error", (**job)["error"]},
                                          {"completedTime", (**job)["completedTime"]}});
              }
            }
            view.as_object()["transcription"] = std::move(job_view);
            return view;
          });
  r.Query({.name = "stage:listDriveRecordings", .args = kSessionArg},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<DocumentId> session = IdArg(args, "sessionId");
            if (!session.ok()) return session.status();
            absl::StatusOr<std::vector<Document>> recordings =
                ctx.db()
                    .Table("stage_drive_recordings")
                    .WithIndex("by_session", Eq("sessionId", Value(*session)))
                    .Collect();
            if (!recordings.ok()) return recordings.status();
            return DocumentsValue(*recordings);
          });
  r.Mutation({.name = "stage:saveTranscript",
              .visibility = Visibility::kInternal,
              .args = R"({"recordingId": {"type": "id", "table": "stage_drive_recordings"},
                          "transcript": "string"})",
              .returns = R"("null")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<DocumentId> recording = IdArg(args, "recordingId");
               if (!recording.ok()) return recording.status();
               absl::Status s = ctx.db().Patch(*recording, {{"transcript", args["transcript"]}});
               if (!s.ok()) return s;
               return Value(nullptr);
             });
  r.Action({.name = "stage:transcribeRecording",
            .visibility = Visibility::kInternal,
            .args = R"({"recordingId": {"type": "id", "table": "stage_drive_recordings"}})"},
           [transcribe = options.transcribe](ActionContext& ctx, const Value& args) -> Result {
             if (!transcribe) {
               return absl::FailedPreconditionError(
                   "stage:transcribeRecording: no transcriber (StageOptions::transcribe)");
             }
             absl::StatusOr<Value> recording = ctx.RunQuery("stage:getDriveRecording", args);
             if (!recording.ok()) return recording.status();
             if (recording->is_null()) {
               return absl::NotFoundError(
                   absl::StrFormat("table \"stage_drive_recordings\": no recording \"%s\"",
                                   args["recordingId"].as_string()));
             }
             absl::StatusOr<DocumentId> storage = IdArg(*recording, "storageId");
             if (!storage.ok()) return storage.status();
             absl::StatusOr<StoredFile> file = ctx.storage().Metadata(*storage);
             if (!file.ok()) return file.status();
             absl::StatusOr<std::string> bytes = ctx.storage().ReadAll(*storage);
             if (!bytes.ok()) return bytes.status();
             absl::StatusOr<std::string> text = transcribe(*file, *bytes);
             if (!text.ok()) return text.status();
             return ctx.RunMutation(
                 "stage:saveTranscript",
                 Object{{"recordingId", args["recordingId"]}, {"transcript", *text}});
           });
}

}  // namespace

absl::Status RegisterFunctions(Database& db, StageOptions options) {
  // Refused up front rather than as "unknown table" from the first call.
  absl::Status tables = db.Query([](Reader& reader) -> absl::Status {
    for (std::string_view table : {"stage_sessions", "stage_files", "stage_app_channels",
                                   "stage_app_versions", "stage_drive_recordings"}) {
      if (absl::StatusOr<std::optional<Document>> probe = reader.Table(table).First();
          !probe.ok()) {
        return probe.status();
      }
    }
    return absl::OkStatus();
  });
  if (!tables.ok()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("stage::RegisterFunctions: the database lacks Stage's tables (open it with "
                        "stage::SchemaJson()'s tables): %s",
                        tables.message()));
  }
  Registrar r(db);
  RegisterSessions(r);
  RegisterFiles(r);
  RegisterRender(r);
  RegisterSnapshots(r);
  RegisterApps(r);
  RegisterGoogleScopes(r);
  RegisterChannels(r);
  RegisterWorkflow(r);
  RegisterRecordings(r, options);
  return r.status();
}

}  // namespace stagedb::stage
