// The collaboration functions (stagedb/apps/collab.h), written against the public API only. The
// pieces several functions share (authenticating a token, appending a message, recording an
// activity row and scheduling its webhooks) are helpers over a Transaction, so each function
// is one mutation and its audit row commits with it or not at all.
#include "stagedb/apps/collab.h"

#include <algorithm>
#include <cctype>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "apps/common/functions.h"
#include "stagedb/secrets.h"

namespace stagedb::collab {
namespace {

using Result = absl::StatusOr<Value>;
using apps::Compact;
using apps::DocumentsValue;

constexpr size_t kMaxPathBytes = 400;  // the unique (session, path) key stays under LMDB's limit
constexpr std::string_view kBase32 = "0123456789abcdefghjkmnpqrstvwxyz";  // GenerateToken's
constexpr int kMaxInviteAttempts = 8;

// Word lists of invite codes: short, unambiguous, safe to read aloud.
constexpr std::string_view kInviteAdjectives[] = {
    "AMBER", "BOLD",  "BRAVE", "BRIGHT", "BRISK",  "CALM",   "CLEAR",  "COOL",  "CRISP",  "DARING",
    "EAGER", "EARLY", "FAIR",  "FAST",   "FOND",   "FRESH",  "GENTLE", "GLAD",  "GOLDEN", "GRAND",
    "GREEN", "HAPPY", "JOLLY", "KEEN",   "KIND",   "LIVELY", "LUCKY",  "MERRY", "MIGHTY", "NOBLE",
    "QUICK", "QUIET", "RAPID", "READY",  "SILVER", "SOLAR",  "STEADY", "SUNNY", "SWIFT",  "WARM",
    "WILD",  "WISE",  "ZESTY", "VIVID",  "NIMBLE", "PROUD",  "LUNAR",  "COSMIC"};
constexpr std::string_view kInviteNouns[] = {
    "DAWN",  "RIVER",  "STONE", "CLOUD", "EMBER",  "FIELD",  "FOREST", "HARBOR", "ISLAND", "LAKE",
    "MAPLE", "MEADOW", "MOON",  "OCEAN", "ORBIT",  "PEAK",   "PINE",   "PRISM",  "RAVEN",  "REEF",
    "RIDGE", "SPARK",  "STAR",  "STORM", "SUMMIT", "TIDE",   "TRAIL",  "VALLEY", "WAVE",   "WIND",
    "CEDAR", "COMET",  "CORAL", "DELTA", "DUNE",   "FALCON", "GLADE",  "GROVE",  "HAVEN",  "LOTUS",
    "MESA",  "NOVA",   "OTTER", "PEARL", "QUARTZ", "ROBIN",  "SAGE",   "WILLOW"};

// Allowed status moves, exactly: waiting -> active <-> paused -> completed (a session is
// completed only from paused).
constexpr std::pair<std::string_view, std::string_view> kTransitions[] = {
    {"waiting", "active"}, {"active", "paused"}, {"paused", "active"}, {"paused", "completed"}};

// Presence rows older than this (by the functions' clock) are stale; the schema's "ttl" on
// collab_presence.lastSeenAt (120 s) has the engine's sweep remove them.
constexpr double kPresenceTtlMs = 120'000;
// Page sizes: listMessages' default and largest limit, and the jobs getComputePool shows.
constexpr size_t kDefaultMessageLimit = 200;
constexpr size_t kMaxPageItems = 1000;
constexpr size_t kPoolJobsShown = 50;

enum class Role { kAgentA, kAgentB, kObserver };

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kAgentA:
      return "agent_a";
    case Role::kAgentB:
      return "agent_b";
    case Role::kObserver:
      return "observer";
  }
  return "?";
}

// What every function shares: the options, and the clock they name.
struct Env {
  CollabOptions options;
  double NowMs() const {
    const absl::Time now = options.now ? options.now() : absl::Now();
    return absl::ToDoubleMilliseconds(now - absl::UnixEpoch());
  }
};
using EnvPtr = std::shared_ptr<const Env>;

absl::Status RequireNonEmpty(std::string_view table, std::string_view field,
                             std::string_view value) {
  if (!value.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrFormat("table \"%s\" field \"%s\": must not be empty", table, field));
}

// RequireNonEmpty for each of the string arguments `fields` that is given, named as fields of
// `table`.
absl::Status RequireNonEmptyArgs(std::string_view table, const Value& args,
                                 std::initializer_list<std::string_view> fields) {
  for (std::string_view field : fields) {
    if (!args[field].is_string()) continue;  // an optional argument left out
    if (absl::Status s = RequireNonEmpty(table, field, args[field].as_string()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// The document an id argument names, of `what` (for the message); NotFound when it is missing.
absl::StatusOr<Document> RequireDocument(Reader& db, std::string_view table, std::string_view what,
                                         const std::string& id) {
  absl::StatusOr<std::optional<Document>> found = db.Get(id);
  if (!found.ok()) return found.status();
  if (!found->has_value()) {
    return absl::NotFoundError(absl::StrFormat("table \"%s\": no %s \"%s\"", table, what, id));
  }
  return **std::move(found);
}

// ---- sessions and tokens ----

// A live (not deleted) session by its sid ("ses_…").
absl::StatusOr<Document> FindSession(Reader& db, std::string_view sid) {
  absl::StatusOr<std::optional<Document>> found =
      db.Table("collab_sessions").WithIndex("by_sid", Eq("sid", Value(sid))).First();
  if (!found.ok()) return found.status();
  if (!found->has_value()) {
    return absl::NotFoundError(
        absl::StrFormat("table \"collab_sessions\": no session \"%s\"", sid));
  }
  return **std::move(found);
}

// A caller who proved a role in a session with its token.
struct Member {
  Document session;
  Role role;
  std::string agent_id;  // the agent's id; "observer" for the observer
  const std::string& sid() const { return session["sid"].as_string(); }
};

// The session of args.sessionId and the role args.token holds in it (PermissionDenied when the
// token is none of the session's).
absl::StatusOr<Member> Authenticate(Reader& db, const Value& args) {
  absl::StatusOr<Document> session = FindSession(db, args["sessionId"].as_string());
  if (!session.ok()) return session.status();
  const std::string& token = args["token"].as_string();
  const Document& s = *session;
  if (TokenMatches(token, s["agentAToken"].as_string())) {
    return Member{*session, Role::kAgentA, s["agentAId"].as_string()};
  }
  if (s["agentBToken"].is_string() && TokenMatches(token, s["agentBToken"].as_string())) {
    return Member{*session, Role::kAgentB, s["agentBId"].as_string()};
  }
  if (TokenMatches(token, s["observerToken"].as_string())) {
    return Member{*session, Role::kObserver, "observer"};
  }
  return absl::PermissionDeniedError(absl::StrFormat(
      "session \"%s\": the token is not one of this session's tokens", s["sid"].as_string()));
}

// PermissionDenied unless the member's role is an agent's (observers only read, chat and
// heartbeat).
absl::Status RequireAgent(const Member& m, std::string_view operation) {
  if (m.role != Role::kObserver) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrFormat(
      "session \"%s\": role \"observer\" may not %s (agents only)", m.sid(), operation));
}

// FailedPrecondition when the session is completed: its content is then read-only.
absl::Status RequireNotCompleted(const Member& m, std::string_view operation) {
  if (m.session["status"].as_string() != "completed") return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrFormat("session \"%s\" is completed: cannot %s", m.sid(), operation));
}

// Authenticate, then RequireAgent and RequireNotCompleted: the gate of every content write.
absl::StatusOr<Member> AuthenticateWriter(Reader& db, const Value& args,
                                          std::string_view operation) {
  absl::StatusOr<Member> m = Authenticate(db, args);
  if (!m.ok()) return m.status();
  if (absl::Status s = RequireAgent(*m, operation); !s.ok()) return s;
  if (absl::Status s = RequireNotCompleted(*m, operation); !s.ok()) return s;
  return m;
}

// What listings and getSession show of a session: never its token hashes.
Value SessionSummary(const Document& s) {
  return Compact(Object{{"sessionId", s["sid"]},
                        {"name", s["name"]},
                        {"status", s["status"]},
                        {"mode", s["mode"]},
                        {"isPrivate", s["isPrivate"]},
                        {"agentAId", s["agentAId"]},
                        {"agentBId", s["agentBId"]},
                        {"workspaceId", s["workspaceId"]},
                        {"templateId", s["templateId"]},
                        {"metadata", s["metadata"]},
                        {"creatorType", s["creatorType"]},
                        {"creatorName", s["creatorName"]},
                        {"messageCount", s["messageCount"]},
                        {"createdAt", s["createdAt"]},
                        {"updatedAt", s["updatedAt"]}});
}

absl::Status CheckTransition(std::string_view sid, std::string_view from, std::string_view to) {
  for (const auto& [a, b] : kTransitions) {
    if (a == from && b == to) return absl::OkStatus();
  }
  std::string allowed;
  for (const auto& [a, b] : kTransitions) {
    if (a != from) continue;
    if (!allowed.empty()) allowed += ", ";
    allowed += b;
  }
  return absl::FailedPreconditionError(absl::StrFormat(
      "table \"collab_sessions\" session \"%s\" field \"status\": cannot move from \"%s\" to "
      "\"%s\" (allowed from \"%s\": %s)",
      sid, from, to, from, allowed.empty() ? std::string("none") : allowed));
}

// ---- activity and webhooks ----

// Whether a webhook's filter list takes `event`: "*", the event's name, or "<prefix>.*".
bool FilterMatches(const Value& filters, std::string_view event) {
  for (const Value& filter : filters.as_array()) {
    const std::string& f = filter.as_string();
    if (f == "*" || f == event) return true;
    if (f.size() > 2 && f.ends_with(".*") &&
        event.starts_with(std::string_view(f).substr(0, f.size() - 1))) {
      return true;
    }
  }
  return false;
}

// A mutation's handle on what it shares: its transaction, its caller's context and the clock.
struct Op {
  MutationContext& ctx;
  const Env& env;
  Transaction& db() { return ctx.db(); }
  double now() const { return env.NowMs(); }

  // Appends the activity row of this mutation (in its transaction) and, when webhooks take the
  // event, schedules their delivery in the same transaction.
  absl::Status Record(const Document* session, std::string_view actor, std::string_view action,
                      Object details) {
    const double at = now();
    Value compact = Compact(std::move(details));
    absl::StatusOr<DocumentId> row = db().Insert(
        "collab_activity", {{"sessionId", session ? Value(session->id()) : Value(Undefined{})},
                            {"actor", actor},
                            {"action", action},
                            {"details", compact},
                            {"createdAt", at}});
    if (!row.ok()) return row.status();
    absl::StatusOr<std::vector<Document>> hooks = db().Table("collab_webhooks").Collect();
    if (!hooks.ok()) return hooks.status();
    Array targets;
    for (const Document& hook : *hooks) {
      if (!FilterMatches(hook["events"], action)) continue;
      if (hook["workspaceId"].is_string() &&
          (session == nullptr || (*session)["workspaceId"] != hook["workspaceId"])) {
        continue;
      }
      targets.push_back(Value(hook.id()));
    }
    if (targets.empty()) return absl::OkStatus();
    const Value body(Object{{"activityId", Value(*row)},
                            {"event", action},
                            {"sessionId", session ? (*session)["sid"] : Value(nullptr)},
                            {"actor", actor},
                            {"details", std::move(compact)},
                            {"createdAt", at}});
    return ctx.scheduler()
        .RunAfter(absl::ZeroDuration(), "collab:deliverWebhooks",
                  Object{{"event", action},
                         {"body", ValueToJson(body)},
                         {"webhookIds", Value(std::move(targets))}})
        .status();
  }

  // Record for a member's session, with the member as actor; also touches the session.
  absl::Status RecordFor(const Member& m, std::string_view action, Object details) {
    if (absl::Status s = db().Patch(m.session.id(), {{"updatedAt", now()}}); !s.ok()) return s;
    return Record(&m.session, m.agent_id, action, std::move(details));
  }
};

// The actor of an operation outside any session: the caller's subject, or "host".
std::string HostActor(const Auth& auth) {
  return auth.identity() ? auth.identity()->subject : std::string("host");
}

// Inserts a host-level row (workspace, template, webhook) and logs `action` naming its id as
// `id_field`.
Result InsertLogged(Op& op, std::string_view table, Object fields, std::string_view action,
                    std::string id_field, Object details) {
  absl::StatusOr<DocumentId> id = op.db().Insert(table, std::move(fields));
  if (!id.ok()) return id.status();
  details[id_field] = Value(*id);
  absl::Status s = op.Record(nullptr, HostActor(op.ctx.auth()), action, std::move(details));
  if (!s.ok()) return s;
  return Value(*id);
}

// Webhook management reads and sets secrets: trusted host code or a user with role "admin".
absl::Status RequireAdmin(const Auth& auth, std::string_view operation) {
  if (auth.is_admin() || (auth.identity() && auth.identity()->HasRole("admin"))) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrFormat("%s: needs Auth::Admin() or a user with role \"admin\"", operation));
}

// ---- messages ----

// Appends a message with the session's next sequence number (the counter lives in the session
// row and moves in this transaction, so numbers are gapless and never reused).
absl::StatusOr<int64_t> AppendMessage(Op& op, const Document& session, std::string_view author,
                                      std::string_view role, std::string_view content,
                                      std::string_view type, const Value& metadata) {
  // Re-read: an earlier step of this mutation may have moved the counter.
  absl::StatusOr<std::optional<Document>> current = op.db().Get(session.id());
  if (!current.ok()) return current.status();
  const int64_t seq = (**current)["messageCount"].as_int64() + 1;
  absl::Status s =
      op.db().Patch(session.id(), {{"messageCount", Value::Int64(seq)}, {"updatedAt", op.now()}});
  if (!s.ok()) return s;
  absl::StatusOr<DocumentId> id =
      op.db().Insert("collab_messages", {{"sessionId", Value(session.id())},
                                         {"seq", Value::Int64(seq)},
                                         {"authorAgentId", author},
                                         {"authorRole", role},
                                         {"content", content},
                                         {"msgType", type},
                                         {"metadata", metadata},
                                         {"createdAt", op.now()}});
  if (!id.ok()) return id.status();
  return seq;
}

// ---- invite codes ----

// The sessions whose invite code is `code` and still open (nobody joined, not expired).
bool InviteOpen(const Document& session, double now) {
  return !session["agentBId"].is_string() && session["inviteExpiresAt"].as_float64() > now;
}

absl::StatusOr<std::string> UniqueInviteCode(Reader& db, double now) {
  for (int attempt = 0; attempt < kMaxInviteAttempts; ++attempt) {
    absl::StatusOr<std::string> code = NewInviteCode();
    if (!code.ok()) return code.status();
    absl::StatusOr<std::vector<Document>> same =
        db.Table("collab_sessions")
            .WithIndex("by_invite", Eq("inviteCode", Value(*code)))
            .Collect();
    if (!same.ok()) return same.status();
    if (std::none_of(same->begin(), same->end(),
                     [&](const Document& s) { return InviteOpen(s, now); })) {
      return code;
    }
  }
  return absl::ResourceExhaustedError(absl::StrFormat(
      "table \"collab_sessions\" field \"inviteCode\": no free code after %d attempts",
      kMaxInviteAttempts));
}

std::string Upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

// ---- registration ----

class Registrar : public apps::Registrar {
 public:
  Registrar(Database& db, EnvPtr env) : apps::Registrar(db), env_(std::move(env)) {}
  // A mutation given an Op over its context.
  void Mutation(FunctionDef def, std::function<Result(Op&, const Value&)> fn) {
    apps::Registrar::Mutation(
        def, [env = env_, fn = std::move(fn)](MutationContext& ctx, const Value& args) -> Result {
          Op op{ctx, *env};
          return fn(op, args);
        });
  }
  const EnvPtr& env() const { return env_; }

 private:
  EnvPtr env_;
};

// The arguments every session function starts with, as a JSON fragment to splice into `args`.
#define COLLAB_SESSION_ARGS R"("sessionId": "string", "token": "string")"
constexpr const char* kSessionArgs = "{" COLLAB_SESSION_ARGS "}";

// A query over a session's rows: authenticates, then returns `fn(reader, member)`.
QueryFunction SessionQuery(std::function<Result(Reader&, const Member&, const Value&)> fn) {
  return [fn = std::move(fn)](QueryContext& ctx, const Value& args) -> Result {
    absl::StatusOr<Member> m = Authenticate(ctx.db(), args);
    if (!m.ok()) return m.status();
    return fn(ctx.db(), *m, args);
  };
}

// The rows of `table` in a member's session by `index` (which starts with sessionId).
absl::StatusOr<std::vector<Document>> SessionRows(Reader& db, std::string_view table,
                                                  std::string_view index, const Member& m) {
  return db.Table(table)
      .WithIndex(std::string(index), Eq("sessionId", Value(m.session.id())))
      .Collect();
}

// The Convex paginationOpts argument {numItems, cursor?}, as a JSON fragment to splice into
// `args`.
#define COLLAB_PAGINATION_ARGS \
  R"("paginationOpts": {"type": "object", "fields": {"numItems": "number", "cursor": {"type": "optional", "of": {"type": "union", "of": ["string", "null"]}}}})"

// One page of `query` per args.paginationOpts, as {page, continueCursor, isDone} with each
// document shown by `view`.
Result Page(std::string_view table, Query query, const Value& args,
            const std::function<Value(const Document&)>& view) {
  const Value& opts = args["paginationOpts"];
  absl::StatusOr<size_t> num_items =
      apps::PageSizeArg(opts["numItems"], absl::StrFormat("table \"%s\"", table),
                        "paginationOpts.numItems", kMaxPageItems);
  if (!num_items.ok()) return num_items.status();
  PaginationOptions options{.num_items = *num_items};
  if (opts["cursor"].is_string()) options.cursor = opts["cursor"].as_string();
  absl::StatusOr<PaginationResult> page = query.Paginate(options);
  if (!page.ok()) return page.status();
  Array items;
  items.reserve(page->page.size());
  for (const Document& d : page->page) items.push_back(view(d));
  return Value(Object{{"page", Value(std::move(items))},
                      {"continueCursor", page->continue_cursor},
                      {"isDone", page->is_done}});
}

Value WholeDocument(const Document& d) { return d.ToValue(); }

void RegisterSessions(Registrar& r) {
  r.Mutation(
      {.name = "collab:createSession", .args = R"({"name": "string", "agentId": "string",
                   "mode": {"type": "optional", "of": {"type": "union", "of": [
                     {"type": "literal", "value": "async"}, {"type": "literal", "value": "realtime"}]}},
                   "isPrivate": {"type": "optional", "of": "boolean"},
                   "creatorType": {"type": "optional", "of": {"type": "union", "of": [
                     {"type": "literal", "value": "agent"}, {"type": "literal", "value": "human"}]}},
                   "creatorName": {"type": "optional", "of": "string"},
                   "workspaceId": {"type": "optional", "of": {"type": "id", "table": "collab_workspaces"}},
                   "templateId": {"type": "optional", "of": {"type": "id", "table": "collab_templates"}},
                   "metadata": {"type": "optional", "of": "any"}})"},
      [](Op& op, const Value& args) -> Result {
        const std::string& agent = args["agentId"].as_string();
        if (absl::Status s = RequireNonEmpty("collab_sessions", "name", args["name"].as_string());
            !s.ok()) {
          return s;
        }
        if (absl::Status s = RequireNonEmpty("collab_sessions", "agentAId", agent); !s.ok()) {
          return s;
        }
        if (args["workspaceId"].is_string()) {
          absl::StatusOr<Document> ws = RequireDocument(op.db(), "collab_workspaces", "workspace",
                                                        args["workspaceId"].as_string());
          if (!ws.ok()) return ws.status();
        }
        Array seed_notes;
        if (args["templateId"].is_string()) {
          absl::StatusOr<Document> tpl = RequireDocument(op.db(), "collab_templates", "template",
                                                         args["templateId"].as_string());
          if (!tpl.ok()) return tpl.status();
          seed_notes = (*tpl)["seedNotes"].as_array();
        }
        const double now = op.now();
        absl::StatusOr<std::string> sid = GenerateToken("ses_", 12);
        absl::StatusOr<std::string> agent_token = GenerateToken("agt_");
        absl::StatusOr<std::string> observer_token = GenerateToken("obs_");
        absl::StatusOr<std::string> invite = UniqueInviteCode(op.db(), now);
        for (const auto* s : {&sid, &agent_token, &observer_token, &invite}) {
          if (!s->ok()) return s->status();
        }
        const double expires = now + absl::ToDoubleMilliseconds(op.env.options.invite_ttl);
        absl::StatusOr<DocumentId> id = op.db().Insert(
            "collab_sessions",
            {{"sid", *sid},
             {"name", args["name"]},
             {"status", "waiting"},
             {"mode", args["mode"].is_string() ? args["mode"] : Value("async")},
             {"isPrivate", args["isPrivate"].is_boolean() ? args["isPrivate"] : Value(false)},
             {"agentAId", agent},
             {"agentAToken", HashToken(*agent_token).sha256_hex},
             {"observerToken", HashToken(*observer_token).sha256_hex},
             {"inviteCode", *invite},
             {"inviteExpiresAt", expires},
             {"workspaceId", args["workspaceId"]},
             {"templateId", args["templateId"]},
             {"metadata", args["metadata"]},
             {"creatorType",
              args["creatorType"].is_string() ? args["creatorType"] : Value("agent")},
             {"creatorName", args["creatorName"]},
             {"messageCount", Value::Int64(0)},
             {"createdAt", now},
             {"updatedAt", now}});
        if (!id.ok()) return id.status();
        if (absl::StatusOr<DocumentId> pool =
                op.db().Insert("collab_computePools", {{"sessionId", Value(*id)},
                                                       {"balance", Value::Int64(0)},
                                                       {"createdAt", now},
                                                       {"updatedAt", now}});
            !pool.ok()) {
          return pool.status();
        }
        for (const Value& note : seed_notes) {
          absl::StatusOr<DocumentId> n =
              op.db().Insert("collab_notes", {{"sessionId", Value(*id)},
                                              {"title", note["title"]},
                                              {"content", note["content"]},
                                              {"version", Value::Int64(1)},
                                              {"lastEditor", agent},
                                              {"createdAt", now},
                                              {"updatedAt", now}});
          if (!n.ok()) return n.status();
        }
        absl::StatusOr<std::optional<Document>> session = op.db().Get(*id);
        if (!session.ok()) return session.status();
        absl::Status s = op.Record(&**session, agent, "session.created",
                                   {{"name", args["name"]},
                                    {"templateId", args["templateId"]},
                                    {"seedNotes", Value::Int64(seed_notes.size())}});
        if (!s.ok()) return s;
        return Value(Object{{"sessionId", *sid},
                            {"agentToken", *agent_token},
                            {"observerToken", *observer_token},
                            {"inviteCode", *invite},
                            {"inviteExpiresAt", expires}});
      });

  // Joins as agent B with an invite code (case-insensitive); with sessionId, the code must be
  // that session's. Only a "waiting" session takes agent B; it moves to active.
  r.Mutation(
      {.name = "collab:joinSession", .args = R"({"inviteCode": "string", "agentId": "string",
                   "sessionId": {"type": "optional", "of": "string"}})"},
      [](Op& op, const Value& args) -> Result {
        const std::string code = Upper(args["inviteCode"].as_string());
        const std::string& agent = args["agentId"].as_string();
        if (absl::Status s = RequireNonEmpty("collab_sessions", "agentBId", agent); !s.ok()) {
          return s;
        }
        std::vector<Document> candidates;
        if (args["sessionId"].is_string()) {
          absl::StatusOr<Document> session = FindSession(op.db(), args["sessionId"].as_string());
          if (!session.ok()) return session.status();
          if ((*session)["inviteCode"].as_string() != code) {
            return absl::PermissionDeniedError(absl::StrFormat(
                "table \"collab_sessions\" field \"inviteCode\": wrong invite code \"%s\" for "
                "session \"%s\"",
                code, args["sessionId"].as_string()));
          }
          candidates.push_back(*std::move(session));
        } else {
          absl::StatusOr<std::vector<Document>> found =
              op.db()
                  .Table("collab_sessions")
                  .WithIndex("by_invite", Eq("inviteCode", Value(code)))
                  .Collect();
          if (!found.ok()) return found.status();
          if (found->empty()) {
            return absl::PermissionDeniedError(absl::StrFormat(
                "table \"collab_sessions\" field \"inviteCode\": invite code \"%s\" matches no "
                "session",
                code));
          }
          candidates = *std::move(found);
        }
        const double now = op.now();
        auto open = std::find_if(candidates.begin(), candidates.end(),
                                 [&](const Document& s) { return InviteOpen(s, now); });
        // The errors above and below, up to the status check, are reachable with a guessed code
        // alone: they name the table and field, never the session or its agents.
        if (open == candidates.end()) {
          // The newest session with the code says why it is closed.
          const Document& last = candidates.back();
          return absl::FailedPreconditionError(absl::StrFormat(
              "table \"collab_sessions\" field \"inviteCode\": invite code \"%s\" is %s", code,
              last["agentBId"].is_string() ? "already used" : "expired"));
        }
        if ((*open)["agentAId"].as_string() == agent) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "table \"collab_sessions\" field \"agentBId\": agent \"%s\" created this session "
              "and cannot join it as agent B",
              agent));
        }
        // The code is valid and open (a join would reveal the session anyway).
        if (const std::string& status = (*open)["status"].as_string(); status != "waiting") {
          return absl::FailedPreconditionError(absl::StrFormat(
              "table \"collab_sessions\" session \"%s\" field \"status\": is \"%s\"; agent B "
              "joins only a \"waiting\" session",
              (*open)["sid"].as_string(), status));
        }
        absl::StatusOr<std::string> token = GenerateToken("agt_");
        if (!token.ok()) return token.status();
        if (absl::Status s =
                op.db().Patch(open->id(), {{"agentBId", agent},
                                           {"agentBToken", HashToken(*token).sha256_hex},
                                           {"status", "active"}});
            !s.ok()) {
          return s;
        }
        Member joined{*open, Role::kAgentB, agent};
        if (absl::Status s = op.RecordFor(joined, "session.joined", {{"agentId", agent}});
            !s.ok()) {
          return s;
        }
        return Value(
            Object{{"sessionId", (*open)["sid"]}, {"agentToken", *token}, {"role", "agent_b"}});
      });

  // Moves the status along waiting -> active <-> paused -> completed (agents only); posts a
  // system message of msgType "status" so the transcript shows the change.
  r.Mutation(
      {.name = "collab:setStatus",
       .args = R"({)" COLLAB_SESSION_ARGS R"(, "status": {"type": "union", "of": [
                  {"type": "literal", "value": "waiting"}, {"type": "literal", "value": "active"},
                  {"type": "literal", "value": "paused"}, {"type": "literal", "value": "completed"}]}})",
       .returns = R"("string")"},
      [](Op& op, const Value& args) -> Result {
        absl::StatusOr<Member> m = Authenticate(op.db(), args);
        if (!m.ok()) return m.status();
        if (absl::Status s = RequireAgent(*m, "change the status"); !s.ok()) return s;
        const std::string from = m->session["status"].as_string();
        const std::string& to = args["status"].as_string();
        if (absl::Status s = CheckTransition(m->sid(), from, to); !s.ok()) return s;
        if (absl::Status s = op.db().Patch(m->session.id(), {{"status", to}}); !s.ok()) {
          return s;
        }
        absl::StatusOr<int64_t> seq = AppendMessage(
            op, m->session, m->agent_id, "system", absl::StrFormat("status: %s -> %s", from, to),
            "status", Value(Object{{"from", from}, {"to", to}}));
        if (!seq.ok()) return seq.status();
        absl::Status s = op.RecordFor(*m, "session.status_changed", {{"from", from}, {"to", to}});
        if (!s.ok()) return s;
        return Value(to);
      });

  // Soft delete (schema soft_delete): the rows stay, the session vanishes from reads. Agent A
  // only.
  r.Mutation({.name = "collab:deleteSession", .args = kSessionArgs, .returns = R"("null")"},
             [](Op& op, const Value& args) -> Result {
               absl::StatusOr<Member> m = Authenticate(op.db(), args);
               if (!m.ok()) return m.status();
               if (m->role != Role::kAgentA) {
                 return absl::PermissionDeniedError(absl::StrFormat(
                     "session \"%s\": role \"%s\" may not delete the session (agent_a only)",
                     m->sid(), RoleName(m->role)));
               }
               if (absl::Status s = op.RecordFor(*m, "session.deleted", {}); !s.ok()) return s;
               if (absl::Status s = op.db().Delete(m->session.id()); !s.ok()) return s;
               return Value(nullptr);
             });

  r.Query({.name = "collab:getSession", .args = kSessionArgs},
          SessionQuery([](Reader&, const Member& m, const Value&) -> Result {
            Value view = SessionSummary(m.session);
            view.as_object()["role"] = Value(RoleName(m.role));
            // Agent A shares the invite until someone joins.
            if (m.role == Role::kAgentA && !m.session["agentBId"].is_string()) {
              view.as_object()["inviteCode"] = m.session["inviteCode"];
              view.as_object()["inviteExpiresAt"] = m.session["inviteExpiresAt"];
            }
            return view;
          }));

  // Public (not private, not deleted) sessions, newest first, one page; of one workspace when
  // given.
  r.Query(
      {.name = "collab:listPublicSessions",
       .args =
           R"({"workspaceId": {"type": "optional", "of": {"type": "id", "table": "collab_workspaces"}},
                   )" COLLAB_PAGINATION_ARGS "}"},
      [](QueryContext& ctx, const Value& args) -> Result {
        IndexRange range = args["workspaceId"].is_string()
                               ? Eq("workspaceId", args["workspaceId"]).Eq("isPrivate", false)
                               : Eq("isPrivate", false);
        Query query = ctx.db().Table("collab_sessions");
        query.WithIndex(args["workspaceId"].is_string() ? "by_workspace" : "by_visibility", range)
            .Order(SortOrder::kDesc);
        return Page("collab_sessions", std::move(query), args, SessionSummary);
      });

  // The session's activity log, newest first, one page.
  r.Query({.name = "collab:listActivity",
           .args = "{" COLLAB_SESSION_ARGS ", " COLLAB_PAGINATION_ARGS "}"},
          SessionQuery([](Reader& db, const Member& m, const Value& args) -> Result {
            Query query = db.Table("collab_activity");
            query.WithIndex("by_session", Eq("sessionId", Value(m.session.id())))
                .Order(SortOrder::kDesc);
            return Page("collab_activity", std::move(query), args, WholeDocument);
          }));
}

void RegisterMessages(Registrar& r) {
  r.Mutation(
      {.name = "collab:sendMessage",
       .args = R"({)" COLLAB_SESSION_ARGS R"(, "content": "string",
                   "msgType": {"type": "optional", "of": {"type": "union", "of": [
                     {"type": "literal", "value": "chat"}, {"type": "literal", "value": "handoff"},
                     {"type": "literal", "value": "status"}, {"type": "literal", "value": "action"}]}},
                   "metadata": {"type": "optional", "of": "any"}})",
       .returns = R"("int64")"},
      [](Op& op, const Value& args) -> Result {
        absl::StatusOr<Member> m = Authenticate(op.db(), args);
        if (!m.ok()) return m.status();
        if (absl::Status s = RequireNotCompleted(*m, "send messages"); !s.ok()) return s;
        const std::string& content = args["content"].as_string();
        if (absl::Status s = RequireNonEmpty("collab_messages", "content", content); !s.ok()) {
          return s;
        }
        const Value type = args["msgType"].is_string() ? args["msgType"] : Value("chat");
        absl::StatusOr<int64_t> seq = AppendMessage(op, m->session, m->agent_id, RoleName(m->role),
                                                    content, type.as_string(), args["metadata"]);
        if (!seq.ok()) return seq.status();
        absl::Status s =
            op.RecordFor(*m, "message.created", {{"seq", Value::Int64(*seq)}, {"msgType", type}});
        if (!s.ok()) return s;
        return Value::Int64(*seq);
      });

  // The transcript in seq order, at most `limit` messages (default 200, at most 1000); with
  // afterSeq, only the messages after it (the next call passes the last seq it got).
  r.Query({.name = "collab:listMessages",
           .args = R"({)" COLLAB_SESSION_ARGS R"(, "afterSeq": {"type": "optional", "of": "int64"},
                   "limit": {"type": "optional", "of": "number"}})"},
          SessionQuery([](Reader& db, const Member& m, const Value& args) -> Result {
            absl::StatusOr<size_t> limit =
                apps::PageSizeArg(args["limit"], "table \"collab_messages\"", "limit",
                                  kMaxPageItems, kDefaultMessageLimit);
            if (!limit.ok()) return limit.status();
            IndexRange range = Eq("sessionId", Value(m.session.id()));
            if (args["afterSeq"].is_int64()) range.Gt("seq", args["afterSeq"]);
            absl::StatusOr<std::vector<Document>> rows =
                db.Table("collab_messages").WithIndex("by_session_seq", range).Take(*limit);
            if (!rows.ok()) return rows.status();
            return DocumentsValue(*rows);
          }));
}

absl::StatusOr<Document> SessionNote(Reader& db, const Member& m, const std::string& note_id) {
  absl::StatusOr<Document> note = RequireDocument(db, "collab_notes", "note", note_id);
  if (note.ok() && (*note)["sessionId"] != Value(m.session.id())) {
    return absl::NotFoundError(absl::StrFormat(
        "table \"collab_notes\": no note \"%s\" in session \"%s\"", note_id, m.sid()));
  }
  return note;
}

void RegisterNotes(Registrar& r) {
  r.Mutation({.name = "collab:createNote",
              .args = R"({)" COLLAB_SESSION_ARGS R"(, "title": "string", "content": "string"})",
              .returns = R"({"type": "id", "table": "collab_notes"})"},
             [](Op& op, const Value& args) -> Result {
               absl::StatusOr<Member> m = AuthenticateWriter(op.db(), args, "edit notes");
               if (!m.ok()) return m.status();
               if (absl::Status s = RequireNonEmptyArgs("collab_notes", args, {"title"}); !s.ok()) {
                 return s;
               }
               absl::StatusOr<DocumentId> id =
                   op.db().Insert("collab_notes", {{"sessionId", Value(m->session.id())},
                                                   {"title", args["title"]},
                                                   {"content", args["content"]},
                                                   {"version", Value::Int64(1)},
                                                   {"lastEditor", m->agent_id},
                                                   {"createdAt", op.now()},
                                                   {"updatedAt", op.now()}});
               if (!id.ok()) return id.status();
               absl::Status s = op.RecordFor(*m, "note.created",
                                             {{"noteId", Value(*id)}, {"title", args["title"]}});
               if (!s.ok()) return s;
               return Value(*id);
             });

  // Optimistic locking: the caller names the version it read; a stale one is refused with a
  // conflict (Aborted naming the note and both versions) and nothing is written.
  r.Mutation(
      {.name = "collab:updateNote",
       .args = R"({)" COLLAB_SESSION_ARGS R"(, "noteId": {"type": "id", "table": "collab_notes"},
                          "expectedVersion": "int64",
                          "title": {"type": "optional", "of": "string"},
                          "content": {"type": "optional", "of": "string"}})",
       .returns = R"("int64")"},
      [](Op& op, const Value& args) -> Result {
        absl::StatusOr<Member> m = AuthenticateWriter(op.db(), args, "edit notes");
        if (!m.ok()) return m.status();
        absl::StatusOr<Document> note = SessionNote(op.db(), *m, args["noteId"].as_string());
        if (!note.ok()) return note.status();
        const int64_t current = (*note)["version"].as_int64();
        const int64_t expected = args["expectedVersion"].as_int64();
        if (current != expected) {
          return absl::AbortedError(absl::StrFormat(
              "table \"collab_notes\" note \"%s\" field \"version\": conflict: stale version "
              "%d (current %d)",
              note->id().text(), expected, current));
        }
        if (absl::Status s = RequireNonEmptyArgs("collab_notes", args, {"title"}); !s.ok()) {
          return s;
        }
        const int64_t version = current + 1;
        absl::Status s = op.db().Patch(
            note->id(),
            {{"title", args["title"].is_string() ? args["title"] : (*note)["title"]},
             {"content", args["content"].is_string() ? args["content"] : (*note)["content"]},
             {"version", Value::Int64(version)},
             {"lastEditor", m->agent_id},
             {"updatedAt", op.now()}});
        if (!s.ok()) return s;
        s = op.RecordFor(*m, "note.updated",
                         {{"noteId", Value(note->id())}, {"version", Value::Int64(version)}});
        if (!s.ok()) return s;
        return Value::Int64(version);
      });

  r.Query({.name = "collab:listNotes", .args = kSessionArgs},
          SessionQuery([](Reader& db, const Member& m, const Value&) -> Result {
            absl::StatusOr<std::vector<Document>> rows =
                SessionRows(db, "collab_notes", "by_session", m);
            if (!rows.ok()) return rows.status();
            return DocumentsValue(*rows);
          }));
}

absl::StatusOr<std::optional<Document>> FindFile(Reader& db, const Member& m,
                                                 std::string_view path) {
  return db.Table("collab_files")
      .WithIndex("by_session_path", Eq("sessionId", Value(m.session.id())).Eq("path", Value(path)))
      .First();
}

void RegisterFiles(Registrar& r) {
  // Creates or replaces the file at `path` (unique within the session); contentHash is the
  // SHA-256 of the content, hex.
  r.Mutation(
      {.name = "collab:writeFile",
       .args = R"({)" COLLAB_SESSION_ARGS R"(, "path": "string", "content": "string"})"},
      [](Op& op, const Value& args) -> Result {
        absl::StatusOr<Member> m = AuthenticateWriter(op.db(), args, "write files");
        if (!m.ok()) return m.status();
        const std::string& path = args["path"].as_string();
        if (absl::Status s = RequireNonEmpty("collab_files", "path", path); !s.ok()) return s;
        if (path.size() > kMaxPathBytes) {
          return absl::InvalidArgumentError(
              absl::StrFormat("table \"collab_files\" field \"path\": %d bytes, over %d",
                              path.size(), kMaxPathBytes));
        }
        const std::string hash = HashToken(args["content"].as_string()).sha256_hex;
        absl::StatusOr<std::optional<Document>> existing = FindFile(op.db(), *m, path);
        if (!existing.ok()) return existing.status();
        const bool created = !existing->has_value();
        if (created) {
          absl::StatusOr<DocumentId> id =
              op.db().Insert("collab_files", {{"sessionId", Value(m->session.id())},
                                              {"path", path},
                                              {"content", args["content"]},
                                              {"contentHash", hash},
                                              {"createdAt", op.now()},
                                              {"updatedAt", op.now()}});
          if (!id.ok()) return id.status();
        } else if (absl::Status s = op.db().Patch((*existing)->id(), {{"content", args["content"]},
                                                                      {"contentHash", hash},
                                                                      {"updatedAt", op.now()}});
                   !s.ok()) {
          return s;
        }
        absl::Status s = op.RecordFor(
            *m, "file.written", {{"path", path}, {"contentHash", hash}, {"created", created}});
        if (!s.ok()) return s;
        return Value(Object{{"path", path}, {"contentHash", hash}, {"created", created}});
      });

  r.Query({.name = "collab:readFile", .args = R"({)" COLLAB_SESSION_ARGS R"(, "path": "string"})"},
          SessionQuery([](Reader& db, const Member& m, const Value& args) -> Result {
            absl::StatusOr<std::optional<Document>> file =
                FindFile(db, m, args["path"].as_string());
            if (!file.ok()) return file.status();
            return file->has_value() ? (*file)->ToValue() : Value(nullptr);
          }));

  // Paths, hashes and times, without the contents.
  r.Query({.name = "collab:listFiles", .args = kSessionArgs},
          SessionQuery([](Reader& db, const Member& m, const Value&) -> Result {
            absl::StatusOr<std::vector<Document>> rows =
                SessionRows(db, "collab_files", "by_session_path", m);
            if (!rows.ok()) return rows.status();
            Array out;
            for (const Document& f : *rows) {
              out.push_back(Value(Object{{"path", f["path"]},
                                         {"contentHash", f["contentHash"]},
                                         {"updatedAt", f["updatedAt"]}}));
            }
            return Value(std::move(out));
          }));
}

void RegisterPresence(Registrar& r) {
  // The caller's presence in the session: status, what it is doing, lastSeenAt = now. Rows
  // expire 120 s after the last heartbeat (schema "ttl").
  r.Mutation(
      {.name = "collab:heartbeat",
       .args = R"({)" COLLAB_SESSION_ARGS R"(, "status": {"type": "union", "of": [
                  {"type": "literal", "value": "online"}, {"type": "literal", "value": "working"},
                  {"type": "literal", "value": "idle"}]},
                  "currentActivity": {"type": "optional", "of": "string"}})",
       .returns = R"("null")"},
      [](Op& op, const Value& args) -> Result {
        absl::StatusOr<Member> m = Authenticate(op.db(), args);
        if (!m.ok()) return m.status();
        absl::StatusOr<std::optional<Document>> row =
            op.db()
                .Table("collab_presence")
                .WithIndex(
                    "by_session_agent",
                    Eq("sessionId", Value(m->session.id())).Eq("agentId", Value(m->agent_id)))
                .First();
        if (!row.ok()) return row.status();
        Object fields{{"sessionId", Value(m->session.id())},
                      {"agentId", m->agent_id},
                      {"status", args["status"]},
                      {"currentActivity", args["currentActivity"]},
                      {"lastSeenAt", op.now()}};
        if (row->has_value()) {
          if (absl::Status s = op.db().Replace((*row)->id(), std::move(fields)); !s.ok()) {
            return s;
          }
        } else if (absl::StatusOr<DocumentId> id =
                       op.db().Insert("collab_presence", std::move(fields));
                   !id.ok()) {
          return id.status();
        }
        absl::Status s =
            op.Record(&m->session, m->agent_id, "presence.updated",
                      {{"status", args["status"]}, {"currentActivity", args["currentActivity"]}});
        if (!s.ok()) return s;
        return Value(nullptr);
      });

  // Who is here: rows seen within the TTL by the functions' clock, so a stale row is hidden
  // even before the engine's sweep removes it.
  r.Query({.name = "collab:listPresence", .args = kSessionArgs},
          SessionQuery([env = r.env()](Reader& db, const Member& m, const Value&) -> Result {
            absl::StatusOr<std::vector<Document>> rows =
                SessionRows(db, "collab_presence", "by_session_agent", m);
            if (!rows.ok()) return rows.status();
            const double oldest = env->NowMs() - kPresenceTtlMs;
            std::erase_if(*rows,
                          [&](const Document& p) { return p["lastSeenAt"].as_float64() < oldest; });
            return DocumentsValue(*rows);
          }));
}

absl::StatusOr<std::optional<Document>> FindProfile(Reader& db, std::string_view agent) {
  return db.Table("collab_agentProfiles")
      .WithIndex("by_agent", Eq("agentId", Value(agent)))
      .First();
}

void RegisterProfiles(Registrar& r) {
  // Creates or edits an agent's profile. Allowed to admins (Auth::Admin or role "admin") and to
  // the agent itself, proved by its own token in a session it is agent A or B of (sessionId
  // and token). Only the fields given change; a new profile's name defaults to the agentId.
  r.Mutation(
      {.name = "collab:upsertAgentProfile",
       .args = R"({"agentId": "string", "name": {"type": "optional", "of": "string"},
                          "description": {"type": "optional", "of": "string"},
                          "capabilities": {"type": "optional", "of": {"type": "array", "items": "string"}},
                          "sessionId": {"type": "optional", "of": "string"},
                          "token": {"type": "optional", "of": "string"}})",
       .returns = R"({"type": "id", "table": "collab_agentProfiles"})"},
      [](Op& op, const Value& args) -> Result {
        const std::string& agent = args["agentId"].as_string();
        if (absl::Status s = RequireNonEmptyArgs("collab_agentProfiles", args, {"agentId", "name"});
            !s.ok()) {
          return s;
        }
        std::string actor = HostActor(op.ctx.auth());
        if (!RequireAdmin(op.ctx.auth(), "collab:upsertAgentProfile").ok()) {
          if (!args["sessionId"].is_string() || !args["token"].is_string()) {
            return absl::PermissionDeniedError(absl::StrFormat(
                "table \"collab_agentProfiles\" agent \"%s\": needs Auth::Admin(), a user with "
                "role \"admin\", or the agent's own sessionId and token",
                agent));
          }
          absl::StatusOr<Member> m = Authenticate(op.db(), args);
          if (!m.ok()) return m.status();
          if (m->role == Role::kObserver || m->agent_id != agent) {
            return absl::PermissionDeniedError(absl::StrFormat(
                "table \"collab_agentProfiles\" agent \"%s\": role \"%s\" of session \"%s\" "
                "may edit only its own agent's profile",
                agent, RoleName(m->role), m->sid()));
          }
          actor = agent;
        }
        absl::StatusOr<std::optional<Document>> existing = FindProfile(op.db(), agent);
        if (!existing.ok()) return existing.status();
        Object fields{{"name", args["name"]},
                      {"description", args["description"]},
                      {"capabilities", args["capabilities"]},
                      {"updatedAt", op.now()}};
        DocumentId id;
        if (existing->has_value()) {
          id = (*existing)->id();
          // Patch removes undefined fields: leave out the ones not given.
          if (absl::Status s = op.db().Patch(id, Compact(std::move(fields)).as_object()); !s.ok()) {
            return s;
          }
        } else {
          if (!args["name"].is_string()) fields["name"] = Value(agent);
          if (!args["capabilities"].is_array()) fields["capabilities"] = Value(Array{});
          fields["agentId"] = Value(agent);
          fields["ratingCount"] = Value::Int64(0);
          fields["ratingSum"] = Value::Int64(0);
          fields["ratingAverage"] = Value(0.0);
          fields["createdAt"] = Value(op.now());
          absl::StatusOr<DocumentId> inserted =
              op.db().Insert("collab_agentProfiles", std::move(fields));
          if (!inserted.ok()) return inserted.status();
          id = *inserted;
        }
        absl::Status s = op.Record(nullptr, actor, "profile.updated", {{"agentId", agent}});
        if (!s.ok()) return s;
        return Value(id);
      });

  r.Query({.name = "collab:getAgentProfile", .args = R"({"agentId": "string"})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<std::optional<Document>> p =
                FindProfile(ctx.db(), args["agentId"].as_string());
            if (!p.ok()) return p.status();
            return p->has_value() ? (*p)->ToValue() : Value(nullptr);
          });

  // Rates the other agent of the session, 1 to 5, once per session; the rated agent's profile
  // aggregates (count, sum, average) move in the same transaction (a profile is created when
  // the agent has none).
  r.Mutation(
      {.name = "collab:rateAgent",
       .args = R"({)" COLLAB_SESSION_ARGS R"(, "ratedAgentId": "string", "rating": "int64",
                   "review": {"type": "optional", "of": "string"}})",
       .returns = R"({"type": "id", "table": "collab_agentRatings"})"},
      [](Op& op, const Value& args) -> Result {
        absl::StatusOr<Member> m = Authenticate(op.db(), args);
        if (!m.ok()) return m.status();
        if (absl::Status s = RequireAgent(*m, "rate agents"); !s.ok()) return s;
        const int64_t rating = args["rating"].as_int64();
        if (rating < 1 || rating > 5) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "table \"collab_agentRatings\" field \"rating\": %d is not between 1 and 5", rating));
        }
        const std::string& rated = args["ratedAgentId"].as_string();
        const Value& other =
            m->role == Role::kAgentA ? m->session["agentBId"] : m->session["agentAId"];
        if (!other.is_string() || other.as_string() != rated) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "table \"collab_agentRatings\" field \"ratedAgentId\": \"%s\" is not the other agent "
              "of session \"%s\"",
              rated, m->sid()));
        }
        absl::StatusOr<DocumentId> id =
            op.db().Insert("collab_agentRatings", {{"raterAgentId", m->agent_id},
                                                   {"ratedAgentId", rated},
                                                   {"sessionId", Value(m->session.id())},
                                                   {"rating", Value::Int64(rating)},
                                                   {"review", args["review"]},
                                                   {"createdAt", op.now()}});
        if (!id.ok()) return id.status();
        absl::StatusOr<std::optional<Document>> profile = FindProfile(op.db(), rated);
        if (!profile.ok()) return profile.status();
        const int64_t count =
            (profile->has_value() ? (**profile)["ratingCount"].as_int64() : 0) + 1;
        const int64_t sum =
            (profile->has_value() ? (**profile)["ratingSum"].as_int64() : 0) + rating;
        Object aggregates{{"ratingCount", Value::Int64(count)},
                          {"ratingSum", Value::Int64(sum)},
                          {"ratingAverage", static_cast<double>(sum) / static_cast<double>(count)},
                          {"updatedAt", op.now()}};
        if (profile->has_value()) {
          if (absl::Status s = op.db().Patch((*profile)->id(), std::move(aggregates)); !s.ok()) {
            return s;
          }
        } else {
          aggregates["agentId"] = Value(rated);
          aggregates["name"] = Value(rated);
          aggregates["capabilities"] = Value(Array{});
          aggregates["createdAt"] = Value(op.now());
          if (absl::StatusOr<DocumentId> p =
                  op.db().Insert("collab_agentProfiles", std::move(aggregates));
              !p.ok()) {
            return p.status();
          }
        }
        absl::Status s = op.RecordFor(*m, "agent.rated",
                                      {{"ratedAgentId", rated}, {"rating", Value::Int64(rating)}});
        if (!s.ok()) return s;
        return Value(*id);
      });

  r.Query({.name = "collab:listAgentRatings", .args = R"({"agentId": "string"})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<std::vector<Document>> rows =
                ctx.db()
                    .Table("collab_agentRatings")
                    .WithIndex("by_rated", Eq("ratedAgentId", args["agentId"]))
                    .Collect();
            if (!rows.ok()) return rows.status();
            return DocumentsValue(*rows);
          });
}

// A webhook as listings show it: never its secret.
Value WebhookView(const Document& hook) {
  return Compact(Object{{"_id", Value(hook.id())},
                        {"url", hook["url"]},
                        {"events", hook["events"]},
                        {"workspaceId", hook["workspaceId"]},
                        {"createdAt", hook["createdAt"]}});
}

void RegisterWebhooks(Registrar& r) {
  // Registers an endpoint for the events its filter list names ("message.created", "note.*",
  // "*"); returns the signing secret, shown only here.
  r.Mutation({.name = "collab:registerWebhook",
              .args = R"({"url": "string", "events": {"type": "array", "items": "string"},
                   "workspaceId": {"type": "optional", "of": {"type": "id", "table": "collab_workspaces"}}})"},
             [](Op& op, const Value& args) -> Result {
               if (absl::Status s = RequireAdmin(op.ctx.auth(), "collab:registerWebhook");
                   !s.ok()) {
                 return s;
               }
               const std::string& url = args["url"].as_string();
               if (!url.starts_with("https://") && !url.starts_with("http://")) {
                 return absl::InvalidArgumentError(absl::StrFormat(
                     "table \"collab_webhooks\" field \"url\": \"%s\" is not an http(s) URL", url));
               }
               if (args["events"].as_array().empty()) {
                 return absl::InvalidArgumentError(
                     "table \"collab_webhooks\" field \"events\": the filter list is empty");
               }
               for (const Value& e : args["events"].as_array()) {
                 if (absl::Status s = RequireNonEmpty("collab_webhooks", "events", e.as_string());
                     !s.ok()) {
                   return s;
                 }
               }
               if (args["workspaceId"].is_string()) {
                 absl::StatusOr<Document> ws = RequireDocument(
                     op.db(), "collab_workspaces", "workspace", args["workspaceId"].as_string());
                 if (!ws.ok()) return ws.status();
               }
               absl::StatusOr<std::string> secret = GenerateToken("whsec_");
               if (!secret.ok()) return secret.status();
               Result id = InsertLogged(op, "collab_webhooks",
                                        {{"url", url},
                                         {"secret", *secret},
                                         {"events", args["events"]},
                                         {"workspaceId", args["workspaceId"]},
                                         {"createdAt", op.now()}},
                                        "webhook.registered", "webhookId", {{"url", url}});
               if (!id.ok()) return id.status();
               return Value(Object{{"webhookId", *id}, {"secret", *secret}});
             });

  // Soft delete (schema soft_delete), as the seed hard-deletes nothing: the row stays with its
  // deletedAt; listings, event matching and deliveries already scheduled no longer see it.
  r.Mutation({.name = "collab:deleteWebhook",
              .args = R"({"webhookId": {"type": "id", "table": "collab_webhooks"}})",
              .returns = R"("null")"},
             [](Op& op, const Value& args) -> Result {
               if (absl::Status s = RequireAdmin(op.ctx.auth(), "collab:deleteWebhook"); !s.ok()) {
                 return s;
               }
               absl::StatusOr<Document> hook = RequireDocument(
                   op.db(), "collab_webhooks", "webhook", args["webhookId"].as_string());
               if (!hook.ok()) return hook.status();
               if (absl::Status s = op.db().Delete(hook->id()); !s.ok()) return s;
               absl::Status s = op.Record(nullptr, HostActor(op.ctx.auth()), "webhook.deleted",
                                          {{"webhookId", Value(hook->id())}});
               if (!s.ok()) return s;
               return Value(nullptr);
             });

  r.Query(
      {.name = "collab:listWebhooks", .args = "{}"}, [](QueryContext& ctx, const Value&) -> Result {
        if (absl::Status s = RequireAdmin(ctx.auth(), "collab:listWebhooks"); !s.ok()) return s;
        absl::StatusOr<std::vector<Document>> hooks = ctx.db().Table("collab_webhooks").Collect();
        if (!hooks.ok()) return hooks.status();
        Array out;
        for (const Document& h : *hooks) out.push_back(WebhookView(h));
        return Value(std::move(out));
      });

  // The delivery targets still registered, with their secrets (internal: for the delivery only).
  r.Query(
      {.name = "collab:webhookEndpoints",
       .visibility = Visibility::kInternal,
       .args =
           R"({"webhookIds": {"type": "array", "items": {"type": "id", "table": "collab_webhooks"}}})"},
      [](QueryContext& ctx, const Value& args) -> Result {
        Array out;
        for (const Value& id : args["webhookIds"].as_array()) {
          absl::StatusOr<std::optional<Document>> hook = ctx.db().Get(id.as_string());
          if (!hook.ok()) return hook.status();
          if (!hook->has_value()) continue;  // deleted since the event
          out.push_back(Value(Object{{"url", (**hook)["url"]}, {"secret", (**hook)["secret"]}}));
        }
        return Value(std::move(out));
      });

  // Signs the event's body with each webhook's secret and hands it to the host's sender. Fails
  // (the job records the error) naming every endpoint the sender refused.
  r.Action({.name = "collab:deliverWebhooks",
            .visibility = Visibility::kInternal,
            .args = R"({"event": "string", "body": "string",
                        "webhookIds": {"type": "array", "items": {"type": "id", "table": "collab_webhooks"}}})",
            .returns = R"("int64")"},
           [env = r.env()](ActionContext& ctx, const Value& args) -> Result {
             if (!env->options.send_webhook) {
               return absl::FailedPreconditionError(
                   "collab:deliverWebhooks: no webhook sender (CollabOptions::send_webhook)");
             }
             absl::StatusOr<Value> endpoints = ctx.RunQuery(
                 "collab:webhookEndpoints", Object{{"webhookIds", args["webhookIds"]}});
             if (!endpoints.ok()) return endpoints.status();
             const std::string& body = args["body"].as_string();
             std::string failures;
             int64_t delivered = 0;
             for (const Value& endpoint : endpoints->as_array()) {
               WebhookDelivery delivery{
                   .url = endpoint["url"].as_string(),
                   .event = args["event"].as_string(),
                   .body = body,
                   .signature = "sha256=" + HmacSha256Hex(endpoint["secret"].as_string(), body)};
               if (absl::Status s = env->options.send_webhook(delivery); !s.ok()) {
                 failures += absl::StrFormat("%s%s: %s", failures.empty() ? "" : "; ", delivery.url,
                                             s.ToString());
               } else {
                 ++delivered;
               }
             }
             if (!failures.empty()) {
               return absl::UnavailableError(
                   absl::StrFormat("collab:deliverWebhooks: event \"%s\" not delivered to %s",
                                   args["event"].as_string(), failures));
             }
             return Value::Int64(delivered);
           });
}

// A query listing a whole (small, host-level) table in the order of `index`.
QueryFunction ListTable(std::string table, std::string index) {
  return [table, index](QueryContext& ctx, const Value&) -> Result {
    absl::StatusOr<std::vector<Document>> rows = ctx.db().Table(table).WithIndex(index).Collect();
    if (!rows.ok()) return rows.status();
    return DocumentsValue(*rows);
  };
}

void RegisterSpacesAndTemplates(Registrar& r) {
  r.Mutation(
      {.name = "collab:createWorkspace",
       .args = R"({"name": "string", "slug": "string",
                          "description": {"type": "optional", "of": "string"}})",
       .returns = R"({"type": "id", "table": "collab_workspaces"})"},
      [](Op& op, const Value& args) -> Result {
        if (absl::Status s = RequireNonEmptyArgs("collab_workspaces", args, {"name", "slug"});
            !s.ok()) {
          return s;
        }
        return InsertLogged(op, "collab_workspaces",
                            {{"name", args["name"]},
                             {"slug", args["slug"]},
                             {"description", args["description"]},
                             {"createdAt", op.now()}},
                            "workspace.created", "workspaceId", {{"slug", args["slug"]}});
      });
  r.Query({.name = "collab:listWorkspaces", .args = "{}"},
          ListTable("collab_workspaces", "by_slug"));

  r.Mutation(
      {.name = "collab:createTemplate",
       .args = R"({"name": "string", "description": {"type": "optional", "of": "string"},
                          "seedNotes": {"type": "array", "items": {"type": "object", "fields": {
                            "title": "string", "content": "string"}}}})",
       .returns = R"({"type": "id", "table": "collab_templates"})"},
      [](Op& op, const Value& args) -> Result {
        if (absl::Status s = RequireNonEmptyArgs("collab_templates", args, {"name"}); !s.ok()) {
          return s;
        }
        const Array& seeds = args["seedNotes"].as_array();
        for (size_t i = 0; i < seeds.size(); ++i) {
          if (absl::Status s =
                  RequireNonEmpty("collab_templates", absl::StrFormat("seedNotes[%d].title", i),
                                  seeds[i]["title"].as_string());
              !s.ok()) {
            return s;
          }
        }
        return InsertLogged(op, "collab_templates",
                            {{"name", args["name"]},
                             {"description", args["description"]},
                             {"seedNotes", args["seedNotes"]},
                             {"createdAt", op.now()}},
                            "template.created", "templateId", {{"name", args["name"]}});
      });
  r.Query({.name = "collab:listTemplates", .args = "{}"}, ListTable("collab_templates", "by_name"));
}

absl::StatusOr<Document> SessionPool(Reader& db, const Member& m) {
  absl::StatusOr<std::optional<Document>> pool =
      db.Table("collab_computePools")
          .WithIndex("by_session", Eq("sessionId", Value(m.session.id())))
          .First();
  if (!pool.ok()) return pool.status();
  if (!pool->has_value()) {
    return absl::NotFoundError(
        absl::StrFormat("table \"collab_computePools\": no pool for session \"%s\"", m.sid()));
  }
  return **std::move(pool);
}

// A positive int64 argument (credits, costs).
absl::StatusOr<int64_t> PositiveArg(const Value& args, std::string_view table,
                                    std::string_view field) {
  const int64_t value = args[field].as_int64();
  if (value > 0) return value;
  return absl::InvalidArgumentError(
      absl::StrFormat("table \"%s\" field \"%s\": %d is not positive", table, field, value));
}

void RegisterCompute(Registrar& r) {
  r.Mutation(
      {.name = "collab:addComputeCredits",
       .args = R"({)" COLLAB_SESSION_ARGS R"(, "credits": "int64"})",
       .returns = R"("int64")"},
      [](Op& op, const Value& args) -> Result {
        absl::StatusOr<Member> m = Authenticate(op.db(), args);
        if (!m.ok()) return m.status();
        if (absl::Status s = RequireAgent(*m, "add compute credits"); !s.ok()) return s;
        absl::StatusOr<int64_t> credits = PositiveArg(args, "collab_computePools", "credits");
        if (!credits.ok()) return credits.status();
        absl::StatusOr<Document> pool = SessionPool(op.db(), *m);
        if (!pool.ok()) return pool.status();
        const int64_t before = (*pool)["balance"].as_int64();
        if (*credits > std::numeric_limits<int64_t>::max() - before) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "table \"collab_computePools\" field \"balance\": adding %d credits to %d would "
              "overflow int64",
              *credits, before));
        }
        const int64_t balance = before + *credits;
        absl::Status s = op.db().Patch(
            pool->id(), {{"balance", Value::Int64(balance)}, {"updatedAt", op.now()}});
        if (!s.ok()) return s;
        s = op.RecordFor(*m, "compute.credited",
                         {{"credits", Value::Int64(*credits)}, {"balance", Value::Int64(balance)}});
        if (!s.ok()) return s;
        return Value::Int64(balance);
      });

  // Charges a job to the session's pool; refused (nothing written) when the balance would go
  // below zero.
  r.Mutation({.name = "collab:submitComputeJob",
              .args = R"({)" COLLAB_SESSION_ARGS R"(, "cost": "int64", "description": "string"})"},
             [](Op& op, const Value& args) -> Result {
               absl::StatusOr<Member> m = AuthenticateWriter(op.db(), args, "submit compute jobs");
               if (!m.ok()) return m.status();
               absl::StatusOr<int64_t> cost = PositiveArg(args, "collab_computeJobs", "cost");
               if (!cost.ok()) return cost.status();
               absl::StatusOr<Document> pool = SessionPool(op.db(), *m);
               if (!pool.ok()) return pool.status();
               const int64_t balance = (*pool)["balance"].as_int64();
               if (balance < *cost) {
                 return absl::FailedPreconditionError(absl::StrFormat(
                     "table \"collab_computePools\" pool \"%s\" of session \"%s\": balance %d "
                     "cannot cover cost %d",
                     pool->id().text(), m->sid(), balance, *cost));
               }
               const int64_t after = balance - *cost;
               absl::Status s = op.db().Patch(
                   pool->id(), {{"balance", Value::Int64(after)}, {"updatedAt", op.now()}});
               if (!s.ok()) return s;
               absl::StatusOr<DocumentId> job =
                   op.db().Insert("collab_computeJobs", {{"sessionId", Value(m->session.id())},
                                                         {"poolId", Value(pool->id())},
                                                         {"requestedBy", m->agent_id},
                                                         {"description", args["description"]},
                                                         {"cost", Value::Int64(*cost)},
                                                         {"balanceAfter", Value::Int64(after)},
                                                         {"createdAt", op.now()}});
               if (!job.ok()) return job.status();
               s = op.RecordFor(*m, "compute.job_submitted",
                                {{"jobId", Value(*job)}, {"cost", Value::Int64(*cost)}});
               if (!s.ok()) return s;
               return Value(Object{{"jobId", Value(*job)}, {"balance", Value::Int64(after)}});
             });

  // The pool's balance and its newest jobs (at most kPoolJobsShown, newest first).
  r.Query({.name = "collab:getComputePool", .args = kSessionArgs},
          SessionQuery([](Reader& db, const Member& m, const Value&) -> Result {
            absl::StatusOr<Document> pool = SessionPool(db, m);
            if (!pool.ok()) return pool.status();
            absl::StatusOr<std::vector<Document>> jobs =
                db.Table("collab_computeJobs")
                    .WithIndex("by_session", Eq("sessionId", Value(m.session.id())))
                    .Order(SortOrder::kDesc)
                    .Take(kPoolJobsShown);
            if (!jobs.ok()) return jobs.status();
            return Value(Object{{"poolId", Value(pool->id())},
                                {"balance", (*pool)["balance"]},
                                {"jobs", DocumentsValue(*jobs)}});
          }));
}

}  // namespace

absl::StatusOr<std::string> NewInviteCode() {
  // 60 random bits from the OS's cryptographic source (12 base32 digits of a token), split
  // into the three parts; the modulo bias over 60 bits is negligible.
  absl::StatusOr<std::string> token = GenerateToken("", 8);
  if (!token.ok()) return token.status();
  uint64_t bits = 0;
  for (char c : token->substr(0, 12)) bits = (bits << 5) | kBase32.find(c);
  const size_t adjectives = std::size(kInviteAdjectives), nouns = std::size(kInviteNouns);
  const std::string_view adjective = kInviteAdjectives[bits % adjectives];
  bits /= adjectives;
  const std::string_view noun = kInviteNouns[bits % nouns];
  bits /= nouns;
  return absl::StrFormat("%s-%s-%d", adjective, noun, 10 + static_cast<int>(bits % 90));
}

absl::Status RegisterFunctions(Database& db, CollabOptions options) {
  // Refused up front rather than as "unknown table" from the first call.
  absl::Status tables = db.Query([](Reader& reader) -> absl::Status {
    for (std::string_view table :
         {"collab_workspaces", "collab_templates", "collab_sessions", "collab_messages",
          "collab_notes", "collab_files", "collab_presence", "collab_activity",
          "collab_agentProfiles", "collab_agentRatings", "collab_webhooks", "collab_computePools",
          "collab_computeJobs"}) {
      if (absl::StatusOr<std::optional<Document>> probe = reader.Table(table).First();
          !probe.ok()) {
        return probe.status();
      }
    }
    return absl::OkStatus();
  });
  if (!tables.ok()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "collab::RegisterFunctions: the database lacks the collaboration tables (open it with "
        "collab::SchemaJson()'s tables): %s",
        tables.message()));
  }
  Registrar r(db, std::make_shared<const Env>(Env{std::move(options)}));
  RegisterSessions(r);
  RegisterMessages(r);
  RegisterNotes(r);
  RegisterFiles(r);
  RegisterPresence(r);
  RegisterProfiles(r);
  RegisterWebhooks(r);
  RegisterSpacesAndTemplates(r);
  RegisterCompute(r);
  return r.status();
}

}  // namespace stagedb::collab
