// The Covibe application (stagedb/apps/covibe.h): identity (hashed MCP tokens, the device flow
// delivering a token once), tasks (required task_type, preflight before start, workstreams
// matched or auto-created, planned-task edits), overlap warnings, session contexts, usage
// events for every tool call, share links, the schema health check, row-level isolation
// between workspaces on every read path and write kind, and the live overlap view firing on
// the right writes only. Written against the public API only.
#include "stagedb/apps/covibe.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using namespace stagedb;
using stagedb::testing::CountRuns;
using stagedb::testing::kHangGuard;
using stagedb::testing::MustSucceed;
using stagedb::testing::OpenOrFail;
using stagedb::testing::TempDir;
using Code = absl::StatusCode;

// A clock the tests move by hand (milliseconds since the epoch).
struct ManualClock {
  std::atomic<int64_t> ms{absl::ToUnixMillis(absl::Now())};
  absl::Time Now() const { return absl::FromUnixMillis(ms.load()); }
  void Advance(absl::Duration d) { ms += absl::ToInt64Milliseconds(d); }
};

// A team: a tenant with one workspace and its first developer (admin), and their auth.
struct Team {
  std::string tenant, workspace, alice;
  Auth auth;
};

Auth Member(const std::string& developer, const std::string& tenant, const std::string& workspace) {
  return Auth::User({.subject = developer, .tenant_id = tenant, .workspace_id = workspace});
}

struct Covibe {
  TempDir dir;
  std::shared_ptr<ManualClock> clock = std::make_shared<ManualClock>();
  std::unique_ptr<Database> db;

  absl::Status registered;
  explicit Covibe(std::string schema = std::string(covibe::SchemaJson()), bool degraded = false) {
    db = OpenOrFail({.path = dir.Sub("db"), .schema_json = std::move(schema)});
    registered = covibe::RegisterFunctions(*db, {.clock = [c = clock] { return c->Now(); }});
    if (!degraded) REQUIRE_OK(registered);
  }
  Value Call(std::string_view name, Object args, const Auth& auth) {
    return MustSucceed(db->Call(name, Value(std::move(args)), auth), name);
  }
  absl::StatusOr<Value> Try(std::string_view name, Object args, const Auth& auth) {
    return db->Call(name, Value(std::move(args)), auth);
  }
  Value Admin(std::string_view name, Object args) {
    return MustSucceed(db->CallInternal(name, Value(std::move(args))), name);
  }
  Team NewTeam(const std::string& slug) {
    Value ids = Admin("covibe:bootstrapTenant", {{"tenant_name", slug},
                                                 {"tenant_slug", slug},
                                                 {"workspace_name", slug + " main"},
                                                 {"workspace_slug", "main"},
                                                 {"developer_name", "Alice " + slug},
                                                 {"email", "alice@" + slug + ".dev"},
                                                 {"handle", "alice"}});
    Team team{ids["tenant_id"].as_string(), ids["workspace_id"].as_string(),
              ids["developer_id"].as_string(), Auth::Anonymous()};
    team.auth = Member(team.alice, team.tenant, team.workspace);
    return team;
  }
  // A new member of the team's workspace, and their auth.
  Auth AddMember(const Team& team, const std::string& name, std::string role = "member") {
    Value id = Call("covibe:addWorkspaceMember",
                    {{"name", name}, {"email", name + "@x.dev"}, {"handle", name}, {"role", role}},
                    team.auth);
    return Member(id.as_string(), team.tenant, team.workspace);
  }
  void Preflight(const Auth& who) {
    Call("covibe:preflight", {{"title", "check"}, {"task_type", "feature"}}, who);
  }
  Value Start(const Auth& who, const std::string& title, Array files, std::string repo = "web") {
    Preflight(who);
    return Call("covibe:startTask",
                {{"title", title},
                 {"task_type", "feature"},
                 {"repo", repo},
                 {"target_files", Value(std::move(files))}},
                who);
  }
  // Every document of a table, unscoped (host code).
  std::vector<Document> All(std::string_view table) {
    absl::StatusOr<std::vector<Document>> docs =
        db->Query([&](Reader& r) { return r.Table(table).Collect(); });
    REQUIRE(docs.ok());
    return *docs;
  }

  void Settle() { REQUIRE_OK(db->WaitForDelivery(db->LastCommitTimestamp(), kHangGuard)); }
  Document Get(const Value& id) {
    absl::StatusOr<std::optional<Document>> doc =
        db->Query([&](Reader& r) { return r.Get(id.as_string()); });
    REQUIRE(doc.ok());
    REQUIRE(doc->has_value());
    return **doc;
  }
};

std::string Subject(const Auth& auth) { return auth.identity()->subject; }

// ---- identity ----

TEST_CASE("sign-up, members, and MCP tokens stored only as hashes") {
  Covibe c;
  Team t = c.NewTeam("acme");
  Value made = c.Call("covibe:createToken", {{"label", "laptop"}, {"agent_type", "codex"}}, t.auth);
  const std::string token = made["token"].as_string();
  CHECK(token.starts_with("cvb_"));
  // Only the hash is stored; the listing shows metadata without it.
  for (const Document& row : c.All("covibe_mcp_tokens")) {
    CHECK(row["token_hash"] == Value(HashToken(token).sha256_hex));
    CHECK(row.ToJson().find(token) == std::string::npos);
  }
  Value listed = c.Call("covibe:listTokens", {}, t.auth);
  REQUIRE(listed.as_array().size() == 1);
  CHECK(listed.as_array()[0]["token_hash"].is_undefined());
  CHECK(listed.as_array()[0]["agent_type"] == Value("codex"));
  CHECK(listed.as_array()[0]["last_used_at"].is_undefined());

  // Verification: the identity, and last_used_at moves with each use.
  Value who = c.Admin("covibe:verifyToken", {{"token", token}});
  CHECK(who["developer_id"] == Value(t.alice));
  CHECK(who["workspace_id"] == Value(t.workspace));
  CHECK(who["tenant_id"] == Value(t.tenant));
  CHECK(who["agent_type"] == Value("codex"));
  const double first_use = c.Get(made["token_id"])["last_used_at"].as_float64();
  c.clock->Advance(absl::Seconds(5));
  c.Admin("covibe:verifyToken", {{"token", token}});
  CHECK(c.Get(made["token_id"])["last_used_at"].as_float64() == first_use + 5000);
  // The verified identity is a caller like any other.
  absl::StatusOr<Auth> agent = covibe::AuthFor(who);
  REQUIRE_OK(agent);
  CHECK(agent->identity()->HasRole("agent:codex"));
  CHECK(c.Call("covibe:listTokens", {}, *agent).as_array().size() == 1);

  // Untyped tokens are null; unknown agent types are refused.
  CHECK(c.Call("covibe:createToken", {{"label", "ci"}}, t.auth)["agent_type"].is_null());
  CHECK_ERROR(c.Try("covibe:createToken", {{"label", "x"}, {"agent_type", "vim"}}, t.auth),
              Code::kInvalidArgument, "agent_type", "\"vim\"");
  // Unknown, and revoked, tokens are refused.
  CHECK_ERROR(c.db->CallInternal("covibe:verifyToken", Object{{"token", "cvb_nope"}}),
              Code::kUnauthenticated, "unknown token");
  CHECK(c.Call("covibe:revokeToken", {{"token_id", made["token_id"]}}, t.auth) == Value(true));
  CHECK(c.Call("covibe:revokeToken", {{"token_id", made["token_id"]}}, t.auth) == Value(false));
  CHECK_ERROR(c.db->CallInternal("covibe:verifyToken", Object{{"token", token}}),
              Code::kUnauthenticated, "revoked");
  // verifyToken is for the host only.
  CHECK_ERROR(c.Try("covibe:verifyToken", {{"token", token}}, t.auth), Code::kPermissionDenied);

  // Members: only admins add them; members revoke only their own tokens.
  const Auth bob = c.AddMember(t, "bob");
  CHECK_ERROR(
      c.Try("covibe:addWorkspaceMember",
            {{"name", "eve"}, {"email", "eve@x.dev"}, {"handle", "eve"}, {"role", "member"}}, bob),
      Code::kPermissionDenied, "not an admin");
  CHECK_ERROR(
      c.Try("covibe:addWorkspaceMember",
            {{"name", "bob"}, {"email", "bob@x.dev"}, {"handle", "bob"}, {"role", "member"}},
            t.auth),
      Code::kAlreadyExists, "already a member");
  Value alice_token = c.Call("covibe:createToken", {{"label", "desk"}}, t.auth);
  CHECK_ERROR(c.Try("covibe:revokeToken", {{"token_id", alice_token["token_id"]}}, bob),
              Code::kPermissionDenied, "covibe_mcp_tokens", "developer_id");

  // Callers: anonymous, claims missing, or not a member.
  CHECK_ERROR(c.Try("covibe:listTokens", {}, Auth::Anonymous()), Code::kUnauthenticated);
  CHECK_ERROR(c.Try("covibe:listTokens", {}, Auth::User({.subject = t.alice})),
              Code::kUnauthenticated, "tenant_id");
  CHECK_ERROR(c.Try("covibe:listTokens", {}, Member(Subject(bob), t.tenant, "ws_other")),
              Code::kPermissionDenied, "not an active member");

  // More workspaces: tenant admins only, through the host.
  CHECK_ERROR(c.Try("covibe:createWorkspace",
                    {{"acting_developer_id", t.alice}, {"name", "Ops"}, {"slug", "ops"}}, t.auth),
              Code::kPermissionDenied);
  CHECK_ERROR(c.db->CallInternal(
                  "covibe:createWorkspace",
                  Object{{"acting_developer_id", Subject(bob)}, {"name", "Ops"}, {"slug", "ops"}}),
              Code::kPermissionDenied, "not an admin of tenant");
  Value ops = c.Admin("covibe:createWorkspace",
                      {{"acting_developer_id", t.alice}, {"name", "Ops"}, {"slug", "ops"}});
  CHECK(c.Call("covibe:listTokens", {}, Member(t.alice, t.tenant, ops.as_string()))
            .as_array()
            .empty());
  // A workspace admin who is no tenant admin adds existing developers of the tenant, but only
  // a tenant admin creates new ones.
  const Auth boss = c.AddMember(t, "boss", "admin");
  auto add = [&](const std::string& name, const Auth& by) {
    return c.Try("covibe:addWorkspaceMember",
                 {{"name", name}, {"email", name + "@x.dev"}, {"handle", name}, {"role", "member"}},
                 by);
  };
  CHECK_ERROR(add("dave", boss), Code::kPermissionDenied, "covibe_tenant_memberships",
              "not an admin of tenant", "only tenant admins create developers");
  for (const Document& d : c.All("covibe_developers")) CHECK(d["email"] != Value("dave@x.dev"));
  absl::StatusOr<Value> carol = add("carol", Member(t.alice, t.tenant, ops.as_string()));
  REQUIRE_OK(carol);
  absl::StatusOr<Value> carol_in_main = add("carol", boss);
  REQUIRE_OK(carol_in_main);
  CHECK(*carol_in_main == *carol);
  // Slugs are unique.
  CHECK_ERROR(c.db->CallInternal("covibe:bootstrapTenant", Object{{"tenant_name", "Acme 2"},
                                                                  {"tenant_slug", "acme"},
                                                                  {"workspace_name", "w"},
                                                                  {"workspace_slug", "w"},
                                                                  {"developer_name", "z"},
                                                                  {"email", "z@z"},
                                                                  {"handle", "z"}}),
              Code::kAlreadyExists, "by_slug");
}

TEST_CASE("device setup: codes stored hashed, the minted token delivered exactly once") {
  Covibe c;
  Team t = c.NewTeam("acme");
  Value grant = c.Admin("covibe:startDeviceSetup", {{"agent_type", "cursor"}});
  const std::string device = grant["device_code"].as_string();
  const std::string user = grant["user_code"].as_string();
  for (const Document& row : c.All("covibe_setup_device_grants")) {
    CHECK(row["device_code_hash"] == Value(HashToken(device).sha256_hex));
    CHECK(row.ToJson().find(device) == std::string::npos);
    CHECK(row.ToJson().find(user) == std::string::npos);
  }
  CHECK_ERROR(c.db->CallInternal("covibe:pollDeviceSetup", Object{{"device_code", device}}),
              Code::kFailedPrecondition, "authorization pending");
  CHECK_ERROR(c.Try("covibe:approveDeviceSetup", {{"user_code", "wrong"}}, t.auth), Code::kNotFound,
              "unknown user code");
  c.Call("covibe:approveDeviceSetup", {{"user_code", user}}, t.auth);
  CHECK_ERROR(c.Try("covibe:approveDeviceSetup", {{"user_code", user}}, t.auth),
              Code::kFailedPrecondition, "already approved");

  Value delivered = c.Admin("covibe:pollDeviceSetup", {{"device_code", device}});
  const std::string token = delivered["token"].as_string();
  // The poll's result is an identity too (it names the tenant).
  CHECK(delivered["tenant_id"] == Value(t.tenant));
  absl::StatusOr<Auth> polled = covibe::AuthFor(delivered);
  REQUIRE_OK(polled);
  CHECK(c.Call("covibe:listTokens", {}, *polled).as_array().size() == 1);
  CHECK_ERROR(covibe::AuthFor(Value(Object{
                  {"developer_id", t.alice}, {"workspace_id", t.workspace}, {"token_id", "x"}})),
              Code::kInvalidArgument, "\"tenant_id\"");
  Value who = c.Admin("covibe:verifyToken", {{"token", token}});
  CHECK(who["developer_id"] == Value(t.alice));
  CHECK(who["workspace_id"] == Value(t.workspace));
  CHECK(who["agent_type"] == Value("cursor"));
  // Exactly once: later polls are refused, also after the grant's expiry.
  CHECK_ERROR(c.db->CallInternal("covibe:pollDeviceSetup", Object{{"device_code", device}}),
              Code::kFailedPrecondition, "already delivered");
  c.clock->Advance(absl::Hours(1));
  CHECK_ERROR(c.db->CallInternal("covibe:pollDeviceSetup", Object{{"device_code", device}}),
              Code::kFailedPrecondition, "already delivered");
  CHECK(c.All("covibe_mcp_tokens").size() == 1);

  // An expired grant can be neither approved nor polled.
  Value late = c.Admin("covibe:startDeviceSetup", {});
  c.clock->Advance(absl::Minutes(16));
  CHECK_ERROR(c.Try("covibe:approveDeviceSetup", {{"user_code", late["user_code"]}}, t.auth),
              Code::kFailedPrecondition, "expired");
  CHECK_ERROR(
      c.db->CallInternal("covibe:pollDeviceSetup", Object{{"device_code", late["device_code"]}}),
      Code::kFailedPrecondition, "expired");
  CHECK_ERROR(c.db->CallInternal("covibe:pollDeviceSetup", Object{{"device_code", "cvd_x"}}),
              Code::kNotFound, "unknown device code");
  CHECK_ERROR(c.Try("covibe:pollDeviceSetup", {{"device_code", device}}, Auth::Anonymous()),
              Code::kPermissionDenied);
}

// ---- work ----

TEST_CASE("tasks: task_type is required, starts need a recent preflight, workstreams") {
  Covibe c;
  Team t = c.NewTeam("acme");
  const Object base{{"title", "Fix login form validation"}, {"repo", "web"}};
  for (const char* fn : {"covibe:startTask", "covibe:planTask", "covibe:preflight"}) {
    INFO(fn);
    CHECK_ERROR(c.Try(fn, base, t.auth), Code::kInvalidArgument, "argument \"task_type\"",
                "required", "no default");
    Object bad = base;
    bad["task_type"] = "epic";
    CHECK_ERROR(c.Try(fn, bad, t.auth), Code::kInvalidArgument, "\"epic\" is not a task type");
  }
  Object task = base;
  task["task_type"] = "bug";
  CHECK_ERROR(c.Try("covibe:startTask", task, t.auth), Code::kFailedPrecondition,
              "covibe_preflight_checks", "no preflight check", "10m");

  c.Preflight(t.auth);
  Value first = c.Call("covibe:startTask", task, t.auth);
  CHECK(first["workstream_auto_created"] == Value(true));
  Document ws = c.Get(first["workstream_id"]);
  CHECK(ws["auto_created"] == Value(true));
  CHECK(ws["status"] == Value("active"));
  CHECK(ws["title"] == Value("Fix login form validation"));
  Document stored = c.Get(first["task_id"]);
  CHECK(stored["status"] == Value("active"));
  CHECK(stored["task_type"] == Value("bug"));
  CHECK(stored["started_at"].is_float64());

  // A related task of the same developer and repo joins the best matching workstream; an
  // unrelated one, or another repo, gets a new one.
  Value related =
      c.Call("covibe:startTask",
             {{"title", "Login form styling"}, {"task_type", "chore"}, {"repo", "web"}}, t.auth);
  CHECK(related["workstream_id"] == first["workstream_id"]);
  CHECK(related["workstream_auto_created"] == Value(false));
  Value unrelated =
      c.Call("covibe:startTask",
             {{"title", "Billing export"}, {"task_type", "feature"}, {"repo", "web"}}, t.auth);
  CHECK(unrelated["workstream_id"] != first["workstream_id"]);
  Value other_repo =
      c.Call("covibe:startTask",
             {{"title", "Login form docs"}, {"task_type", "docs"}, {"repo", "site"}}, t.auth);
  CHECK(other_repo["workstream_id"] != first["workstream_id"]);
  CHECK(other_repo["workstream_auto_created"] == Value(true));
  // A named workstream is used as given; a finished one is refused.
  Object named = task;
  named["workstream_id"] = unrelated["workstream_id"];
  CHECK(c.Call("covibe:startTask", named, t.auth)["workstream_id"] == unrelated["workstream_id"]);

  // The preflight window: 10 minutes.
  c.clock->Advance(absl::Minutes(11));
  CHECK_ERROR(c.Try("covibe:startTask", task, t.auth), Code::kFailedPrecondition,
              "no preflight check");
  CHECK_ERROR(c.Try("covibe:startTask",
                    {{"title", "x"},
                     {"task_type", "bug"},
                     {"repo", "web"},
                     {"target_files", Array{"../etc/passwd"}}},
                    t.auth),
              Code::kInvalidArgument, "target_files", "../etc/passwd");
}

TEST_CASE("workstreams: planned, started after a preflight, cancel is planned-only") {
  Covibe c;
  Team t = c.NewTeam("acme");
  const Auth bob = c.AddMember(t, "bob");
  Value planned = c.Call("covibe:createWorkstream", {{"title", "Search revamp"}}, t.auth);
  Document ws = c.Get(planned);
  CHECK(ws["status"] == Value("planned"));
  CHECK(ws["auto_created"] == Value(false));
  CHECK(ws["started_at"].is_null());
  CHECK_ERROR(c.Try("covibe:startWorkstream", {{"workstream_id", planned}}, bob),
              Code::kPermissionDenied, "owner_id");
  CHECK_ERROR(c.Try("covibe:startWorkstream", {{"workstream_id", planned}}, t.auth),
              Code::kFailedPrecondition, "no preflight check");
  CHECK_ERROR(c.Try("covibe:createWorkstream", {{"title", "Now"}, {"start", true}}, t.auth),
              Code::kFailedPrecondition, "no preflight check");
  c.Call("covibe:preflight", {{"title", "Search revamp"}, {"check_kind", "workstream"}}, t.auth);
  CHECK(c.Call("covibe:startWorkstream", {{"workstream_id", planned}}, t.auth) == Value("active"));
  CHECK(c.Get(planned)["started_at"].is_float64());
  CHECK_ERROR(c.Try("covibe:cancelWorkstream", {{"workstream_id", planned}}, t.auth),
              Code::kFailedPrecondition, "cancel is planned-only");
  CHECK(c.Call("covibe:completeWorkstream", {{"workstream_id", planned}}, t.auth) == Value("done"));
  CHECK_ERROR(
      c.Try("covibe:startTask",
            {{"title", "x"}, {"task_type", "bug"}, {"repo", "web"}, {"workstream_id", planned}},
            t.auth),
      Code::kFailedPrecondition, "is done");
  c.clock->Advance(absl::Seconds(1));
  Value other = c.Call("covibe:createWorkstream", {{"title", "Maybe later"}}, t.auth);
  CHECK(c.Call("covibe:cancelWorkstream", {{"workstream_id", other}}, t.auth) ==
        Value("cancelled"));
  CHECK(c.Call("covibe:listWorkstreams", {{"status", "cancelled"}}, t.auth).as_array().size() == 1);
  // Listings are bounded: every status, newest first, at most `limit`.
  Value all = c.Call("covibe:listWorkstreams", {}, t.auth);
  REQUIRE(all.as_array().size() == 2);
  CHECK(all.as_array()[0]["_id"] == other);
  Value newest = c.Call("covibe:listWorkstreams", {{"limit", 1.0}}, t.auth);
  REQUIRE(newest.as_array().size() == 1);
  CHECK(newest.as_array()[0]["_id"] == other);
  CHECK_ERROR(c.Try("covibe:listWorkstreams", {{"limit", 0.0}}, t.auth), Code::kInvalidArgument,
              "limit");
}

TEST_CASE("planned tasks: the owner edits until start; edits write task.planned_updated") {
  Covibe c;
  Team t = c.NewTeam("acme");
  const Auth bob = c.AddMember(t, "bob");
  Value plan = c.Call("covibe:planTask",
                      {{"title", "Cache user profiles"},
                       {"task_type", "refactor"},
                       {"repo", "web"},
                       {"target_files", Array{"./src/cache/"}}},
                      t.auth);
  const Value id = plan["task_id"];
  Document task = c.Get(id);
  CHECK(task["status"] == Value("planned"));
  CHECK(task["started_at"].is_null());
  CHECK(task["target_files_json"] == Value(R"(["src/cache"])"));
  auto embedding_hash = [&] {
    for (const Document& e : c.All("covibe_work_embeddings")) {
      if (e["task_id"] == id) return e["content_hash"];
    }
    return Value(nullptr);
  };
  const Value hash_before = embedding_hash();
  CHECK(hash_before.is_string());

  Value updated = c.Call(
      "covibe:updatePlannedTask",
      {{"task_id", id}, {"title", "Cache user profiles in Redis"}, {"priority", "high"}}, t.auth);
  CHECK(updated["title"] == Value("Cache user profiles in Redis"));
  CHECK(updated["task_type"] == Value("refactor"));  // kept
  CHECK(embedding_hash() != hash_before);
  Value events = c.Call("covibe:listWorkEvents", {{"task_id", id}}, t.auth);
  REQUIRE(events.as_array().size() == 2);
  CHECK(events.as_array()[0]["event_type"] == Value("task.planned_updated"));
  CHECK(nlohmann::json::parse(events.as_array()[0]["payload_json"].as_string())["fields"] ==
        nlohmann::json::array({"title", "priority"}));
  CHECK(events.as_array()[1]["event_type"] == Value("task.planned"));

  CHECK_ERROR(c.Try("covibe:updatePlannedTask", {{"task_id", id}, {"title", "mine"}}, bob),
              Code::kPermissionDenied, "covibe_tasks", "developer_id");
  CHECK_ERROR(c.Try("covibe:updatePlannedTask", {{"task_id", id}}, t.auth), Code::kInvalidArgument,
              "no field to update");
  CHECK_ERROR(c.Try("covibe:updatePlannedTask", {{"task_id", id}, {"task_type", "epic"}}, t.auth),
              Code::kInvalidArgument, "not a task type");
  CHECK_ERROR(c.Try("covibe:startPlannedTask", {{"task_id", id}}, t.auth),
              Code::kFailedPrecondition, "no preflight check");
  c.Preflight(t.auth);
  Value started = c.Call("covibe:startPlannedTask", {{"task_id", id}}, t.auth);
  CHECK(c.Get(id)["status"] == Value("active"));
  CHECK(c.Get(id)["task_type"] == Value("refactor"));
  CHECK(started["warnings"] == Value(Array{}));
  CHECK_ERROR(c.Try("covibe:updatePlannedTask", {{"task_id", id}, {"title", "late"}}, t.auth),
              Code::kFailedPrecondition, "is active", "until they start");
  CHECK_ERROR(c.Try("covibe:startPlannedTask", {{"task_id", id}}, t.auth),
              Code::kFailedPrecondition, "is active");
  CHECK_ERROR(c.Try("covibe:deletePlannedTask", {{"task_id", id}}, t.auth),
              Code::kFailedPrecondition, "only planned tasks can be deleted");

  Value gone = c.Call("covibe:planTask",
                      {{"title", "Drop"}, {"task_type", "spike"}, {"repo", "web"}}, t.auth);
  c.Call("covibe:deletePlannedTask", {{"task_id", gone["task_id"]}}, t.auth);
  CHECK(c.Call("covibe:getTask", {{"task_id", gone["task_id"]}}, t.auth).is_null());

  // Legacy rows without a task_type cannot start until one is set.
  DocumentId legacy = testing::MustInsert(*c.db, "covibe_tasks",
                                          {{"tenant_id", t.tenant},
                                           {"workspace_id", t.workspace},
                                           {"developer_id", t.alice},
                                           {"workstream_id", plan["workstream_id"]},
                                           {"title", "old"},
                                           {"task_type", nullptr},
                                           {"target_files_json", "[]"},
                                           {"status", "planned"},
                                           {"repo", "web"},
                                           {"overlap_status", "none"},
                                           {"started_at", nullptr},
                                           {"completed_at", nullptr},
                                           {"created_at", 1.0},
                                           {"updated_at", 1.0}});
  CHECK_ERROR(c.Try("covibe:startPlannedTask", {{"task_id", legacy.text()}}, t.auth),
              Code::kFailedPrecondition, "task_type");

  // A planned task of a workstream that was cancelled meanwhile cannot start.
  Value later = c.Call("covibe:createWorkstream", {{"title", "Later"}, {"repo", "web"}}, t.auth);
  Value parked = c.Call(
      "covibe:planTask",
      {{"title", "Parked"}, {"task_type", "chore"}, {"repo", "web"}, {"workstream_id", later}},
      t.auth);
  c.Call("covibe:cancelWorkstream", {{"workstream_id", later}}, t.auth);
  c.Preflight(t.auth);
  CHECK_ERROR(c.Try("covibe:startPlannedTask", {{"task_id", parked["task_id"]}}, t.auth),
              Code::kFailedPrecondition, "covibe_workstreams", later.as_string(), "is cancelled");
  CHECK(c.Get(parked["task_id"])["status"] == Value("planned"));

  // A new repo that the task's workstream does not cover re-matches the workstream; a
  // workstream without a repo keeps the task.
  Value moving =
      c.Call("covibe:planTask",
             {{"title", "Offline mode"}, {"task_type", "feature"}, {"repo", "web"}}, t.auth);
  CHECK(c.Get(moving["workstream_id"])["repo"] == Value("web"));
  Value moved = c.Call("covibe:updatePlannedTask",
                       {{"task_id", moving["task_id"]}, {"repo", "mobile"}}, t.auth);
  CHECK(moved["workstream_id"] != moving["workstream_id"]);
  CHECK(c.Get(moved["workstream_id"])["repo"] == Value("mobile"));
  for (const Document& e : c.All("covibe_work_embeddings")) {
    if (e["task_id"] == moving["task_id"]) CHECK(e["workstream_id"] == moved["workstream_id"]);
  }
  Value loose = c.Call("covibe:createWorkstream", {{"title", "Anything"}}, t.auth);
  Value kept = c.Call(
      "covibe:planTask",
      {{"title", "Loose"}, {"task_type", "chore"}, {"repo", "web"}, {"workstream_id", loose}},
      t.auth);
  CHECK(c.Call("covibe:updatePlannedTask", {{"task_id", kept["task_id"]}, {"repo", "api"}},
               t.auth)["workstream_id"] == loose);
}

TEST_CASE("overlap warnings: active tasks on a common path or a directory prefix") {
  CHECK(covibe::PathsOverlap("src/api", "src/api/users.ts"));
  CHECK(covibe::PathsOverlap("./src/api/", "src/api"));
  CHECK(covibe::PathsOverlap("README.md", "README.md"));
  CHECK_FALSE(covibe::PathsOverlap("src/api", "src/apiary.ts"));
  CHECK_FALSE(covibe::PathsOverlap("src/a.ts", "src/b.ts"));

  Covibe c;
  Team t = c.NewTeam("acme");
  const Auth bob = c.AddMember(t, "bob");
  const Auth carol = c.AddMember(t, "carol");
  Value a = c.Start(t.auth, "API auth", Array{"src/api/"});
  CHECK(a["warnings"] == Value(Array{}));
  // Planned tasks, other repos and sibling paths do not overlap.
  c.Call("covibe:planTask",
         {{"title", "later"},
          {"task_type", "bug"},
          {"repo", "web"},
          {"target_files", Array{"src/api"}}},
         bob);
  CHECK(c.Start(carol, "Apiary", Array{"src/apiary.ts"})["warnings"] == Value(Array{}));
  CHECK(c.Start(carol, "Other repo", Array{"src/api/users.ts"}, "mobile")["warnings"] ==
        Value(Array{}));
  CHECK(c.Call("covibe:listOverlapWarnings", {}, t.auth).as_array().empty());

  Value b = c.Start(bob, "Users endpoint", Array{"src/api/users.ts", "README.md"});
  REQUIRE(b["warnings"].as_array().size() == 1);
  const Value shown = b["warnings"].as_array()[0];
  CHECK(shown["other_task_id"] == a["task_id"]);
  CHECK(shown["files"] == Value(Array{"src/api/users.ts"}));
  Value open = c.Call("covibe:listOverlapWarnings", {}, t.auth);
  REQUIRE(open.as_array().size() == 1);
  CHECK(open.as_array()[0]["task_id"] == b["task_id"]);
  CHECK(open.as_array()[0]["developer_id"] == Value(Subject(bob)));
  CHECK(open.as_array()[0]["other_developer_id"] == Value(t.alice));
  CHECK(c.Get(a["task_id"])["overlap_status"] == Value("warning"));
  CHECK(c.Get(b["task_id"])["overlap_status"] == Value("warning"));
  CHECK(c.Get(b["workstream_id"])["overlap_status"] == Value("warning"));
  // The agent got the warning as feedback (stored, for audits).
  bool fed_back = false;
  for (const Document& f : c.All("covibe_agent_feedback_events")) {
    fed_back = fed_back ||
               (f["feedback_type"] == Value("overlap_warning") &&
                f["warning_id"] == shown["warning_id"] && f["developer_id"] == Value(Subject(bob)));
  }
  CHECK(fed_back);
  // A preflight reports the overlap without creating a warning.
  Value pre = c.Call("covibe:preflight",
                     {{"title", "More users"},
                      {"task_type", "feature"},
                      {"repo", "web"},
                      {"target_files", Array{"src/api/users.ts"}}},
                     carol);
  CHECK(pre["overlaps"].as_array().size() == 2);
  CHECK(c.Call("covibe:listOverlapWarnings", {}, t.auth).as_array().size() == 1);

  // Done resolves the warning; the other task is clear again.
  CHECK_ERROR(c.Try("covibe:setTaskStatus", {{"task_id", a["task_id"]}, {"status", "done"}}, bob),
              Code::kPermissionDenied);
  c.Call("covibe:setTaskStatus", {{"task_id", a["task_id"]}, {"status", "done"}}, t.auth);
  CHECK(c.Call("covibe:listOverlapWarnings", {}, t.auth).as_array().empty());
  CHECK(c.Call("covibe:listOverlapWarnings", {{"status", "resolved"}}, t.auth).as_array().size() ==
        1);
  CHECK(c.Get(b["task_id"])["overlap_status"] == Value("none"));
  CHECK(c.Get(a["task_id"])["completed_at"].is_float64());
  // Their workstreams are clear again too.
  CHECK(c.Get(b["workstream_id"])["overlap_status"] == Value("none"));
  CHECK(c.Get(a["workstream_id"])["overlap_status"] == Value("none"));
  CHECK_ERROR(
      c.Try("covibe:setTaskStatus", {{"task_id", a["task_id"]}, {"status", "active"}}, t.auth),
      Code::kFailedPrecondition, "is done");

  // Blocked tasks are not active: no warning while blocked, one when active again.
  c.Call("covibe:setTaskStatus", {{"task_id", b["task_id"]}, {"status", "blocked"}}, bob);
  Value d = c.Start(t.auth, "Readme", Array{"README.md"});
  CHECK(d["warnings"] == Value(Array{}));
  Value back =
      c.Call("covibe:setTaskStatus", {{"task_id", b["task_id"]}, {"status", "active"}}, bob);
  REQUIRE(back["warnings"].as_array().size() == 1);
  CHECK(back["warnings"].as_array()[0]["files"] == Value(Array{"README.md"}));
  // Once per pair while open.
  c.Call("covibe:setTaskStatus", {{"task_id", b["task_id"]}, {"status", "blocked"}}, bob);
  c.Call("covibe:setTaskStatus", {{"task_id", b["task_id"]}, {"status", "active"}}, bob);
  CHECK(c.Call("covibe:listOverlapWarnings", {}, t.auth).as_array().size() == 1);
  // Resolved warnings (kept for audit) are read newest first, bounded by `limit`.
  c.Call("covibe:setTaskStatus", {{"task_id", d["task_id"]}, {"status", "done"}}, t.auth);
  Value resolved =
      c.Call("covibe:listOverlapWarnings", {{"status", "resolved"}, {"limit", 1.0}}, t.auth);
  REQUIRE(resolved.as_array().size() == 1);
  CHECK(resolved.as_array()[0]["task_id"] == b["task_id"]);
  CHECK(resolved.as_array()[0]["other_task_id"] == d["task_id"]);
  CHECK(c.Call("covibe:listOverlapWarnings", {{"status", "resolved"}}, t.auth).as_array().size() ==
        2);
  CHECK(c.Get(b["workstream_id"])["overlap_status"] == Value("none"));
  CHECK_ERROR(
      c.Try("covibe:setTaskStatus", {{"task_id", b["task_id"]}, {"status", "planned"}}, bob),
      Code::kFailedPrecondition, "cannot become planned");
}

// ---- sessions ----

TEST_CASE("session contexts: a new publish supersedes, TTL, revoke by the owner") {
  Covibe c;
  Team t = c.NewTeam("acme");
  const Auth bob = c.AddMember(t, "bob");
  auto publish = [&](const Auth& who, const std::string& title, Object more = {}) {
    Object args{{"title", title},
                {"summary", "doing " + title},
                {"repo", "web"},
                {"branch", "main"},
                {"files_touched", Array{"src/a.ts"}}};
    for (auto& [k, v] : more) args[k] = v;
    return c.Call("covibe:publishContext", std::move(args), who);
  };
  auto active_titles = [&](const Auth& who) {
    std::vector<std::string> titles;
    const Value contexts = c.Call("covibe:listActiveContexts", {}, who);
    for (const Value& ctx : contexts.as_array()) {
      titles.push_back(ctx["title"].as_string());
    }
    return titles;
  };
  Value first = publish(t.auth, "one");
  CHECK(first["expires_at"].as_float64() ==
        c.Get(first["context_id"])["published_at"].as_float64() + 24 * 3600 * 1000.0);
  CHECK(first["superseded"] == Value(Array{}));
  // A publish for the same repo and branch supersedes the active context there, whoever
  // published it.
  c.clock->Advance(absl::Seconds(1));
  Value bobs = publish(bob, "bob's");
  CHECK(bobs["superseded"] == Value(Array{first["context_id"]}));
  CHECK(c.Get(first["context_id"])["superseded_by"] == bobs["context_id"]);
  c.clock->Advance(absl::Seconds(1));
  Value second = publish(t.auth, "two", {{"ttl_hours", 2.0}});
  CHECK(second["superseded"] == Value(Array{bobs["context_id"]}));
  CHECK(second["expires_at"].as_float64() ==
        c.Get(second["context_id"])["published_at"].as_float64() + 2 * 3600 * 1000.0);
  CHECK(active_titles(bob) == std::vector<std::string>{"two"});
  // Another branch does not supersede.
  c.clock->Advance(absl::Seconds(1));
  Value feature = publish(t.auth, "feature", {{"branch", "feat/x"}});
  CHECK(feature["superseded"] == Value(Array{}));
  c.clock->Advance(absl::Seconds(1));
  Value bobs_fix = publish(bob, "bob's fix", {{"branch", "fix/z"}});
  CHECK(active_titles(t.auth) == std::vector<std::string>{"bob's fix", "feature", "two"});
  // ttl_hours: after 3 hours the 2-hour context is inactive, the 24-hour ones remain.
  c.clock->Advance(absl::Hours(3));
  CHECK(active_titles(t.auth) == std::vector<std::string>{"bob's fix", "feature"});

  CHECK_ERROR(c.Try("covibe:revokeContext", {{"context_id", feature["context_id"]}}, bob),
              Code::kPermissionDenied, "covibe_session_contexts");
  CHECK(c.Call("covibe:revokeContext", {{"context_id", feature["context_id"]}}, t.auth) ==
        Value(true));
  CHECK(c.Call("covibe:revokeContext", {{"context_id", feature["context_id"]}}, t.auth) ==
        Value(false));
  CHECK(active_titles(t.auth) == std::vector<std::string>{"bob's fix"});
  c.clock->Advance(absl::Hours(25));
  CHECK(active_titles(t.auth).empty());
  // The live view reads only unexpired contexts: revoking an expired one does not re-run it
  // (a wrapper counts its runs), a new publish does.
  auto runs = CountRuns(*c.db, "covibe_test:countedContexts", "covibe:listActiveContexts");
  UpdateSlot ignore([](const QueryUpdate&) {});
  absl::StatusOr<Subscription> sub =
      c.db->SubscribeFunction("covibe_test:countedContexts", Value(Object{}), ignore, t.auth);
  REQUIRE_OK(sub);
  c.Settle();
  const int initial_runs = runs->load();
  REQUIRE(initial_runs >= 1);
  CHECK(c.Call("covibe:revokeContext", {{"context_id", bobs_fix["context_id"]}}, bob) ==
        Value(true));
  c.Settle();
  CHECK(runs->load() == initial_runs);
  // Expired contexts are not superseded again.
  CHECK(publish(bob, "fresh")["superseded"] == Value(Array{}));
  c.Settle();
  CHECK(runs->load() > initial_runs);
  CHECK(c.All("covibe_session_contexts").size() == 6);  // inactive rows stay for audit
  CHECK_ERROR(c.Try("covibe:publishContext",
                    {{"title", "x"},
                     {"summary", ""},
                     {"repo", "web"},
                     {"branch", "main"},
                     {"ttl_hours", 0.0}},
                    t.auth),
              Code::kInvalidArgument, "ttl_hours");
}

TEST_CASE("usage events: every tool call leaves one") {
  Covibe c;
  Team t = c.NewTeam("acme");
  auto usage = [&] { return c.All("covibe_usage_events"); };
  // Tool mutations record themselves, in their own transaction.
  c.Call("covibe:preflight", {{"title", "t"}, {"task_type", "bug"}, {"session_id", "s1"}}, t.auth);
  REQUIRE(usage().size() == 1);
  CHECK(usage()[0]["tool_name"] == Value("covibe:preflight"));
  CHECK(usage()[0]["status"] == Value("ok"));
  CHECK(usage()[0]["agent_session_id"] == Value("s1"));
  CHECK(usage()[0]["developer_id"] == Value(t.alice));
  // A refused mutation writes nothing, so CallTool records the error.
  CHECK_ERROR(c.Try("covibe:startTask", {{"title", "t"}, {"repo", "web"}}, t.auth),
              Code::kInvalidArgument);
  CHECK(usage().size() == 1);
  CHECK_ERROR(covibe::CallTool(*c.db, "covibe:startTask",
                               Value(Object{{"title", "t"}, {"repo", "web"}}), t.auth),
              Code::kInvalidArgument, "task_type");
  REQUIRE(usage().size() == 2);
  CHECK(usage()[1]["status"] == Value("error"));
  CHECK(usage()[1]["tool_name"] == Value("covibe:startTask"));
  // Tool queries: CallTool records them.
  REQUIRE_OK(covibe::CallTool(*c.db, "covibe:listOverlapWarnings", Value(Object{}), t.auth));
  REQUIRE(usage().size() == 3);
  CHECK(usage()[2]["tool_name"] == Value("covibe:listOverlapWarnings"));
  CHECK(usage()[2]["workspace_id"] == Value(t.workspace));
  CHECK(usage()[2]["developer_id"] == Value(t.alice));
  CHECK(usage()[2]["status"] == Value("ok"));
  // A successful mutation through CallTool is recorded once.
  REQUIRE_OK(covibe::CallTool(*c.db, "covibe:planTask",
                              Value(Object{{"title", "p"}, {"task_type", "bug"}, {"repo", "web"}}),
                              t.auth));
  CHECK(usage().size() == 4);
  // An overlap warning is named as the call's feedback.
  const Auth bob = c.AddMember(t, "bob");
  c.Start(t.auth, "one", Array{"a.ts"});
  c.Start(bob, "two", Array{"a.ts"});
  CHECK(usage().back()["feedback_type"] == Value("overlap_warning"));
  // Every tool is registered; recordUsage knows only tools.
  for (const std::string& name : covibe::ToolNames()) {
    INFO(name);
    CHECK(c.Try(name, {}, t.auth).status().code() != Code::kNotFound);
  }
  // recordUsage is internal: a member cannot forge usage rows.
  const size_t before = usage().size();
  CHECK_ERROR(
      c.Try("covibe:recordUsage",
            {{"tool_name", "covibe:getTask"}, {"status", "ok"}, {"duration_ms", 1.0}}, t.auth),
      Code::kPermissionDenied);
  CHECK(usage().size() == before);
  CHECK_ERROR(
      c.db->CallInternal(
          "covibe:recordUsage",
          Object{{"tool_name", "covibe:nope"}, {"status", "ok"}, {"duration_ms", 1.0}}, t.auth),
      Code::kInvalidArgument, "not a Covibe tool");
}

TEST_CASE("share links: an opaque token, a frozen sanitized payload, expiry and revocation") {
  Covibe c;
  Team t = c.NewTeam("acme");
  const Auth bob = c.AddMember(t, "bob");
  Value summary =
      c.Call("covibe:saveWeeklySummary",
             {{"week_start", "2026-11-30"},
              {"summary_json",
               R"({"tasks_done": 4, "people": [{"handle": "alice", "email": "alice@acme.dev"}],
            "prompt": "secret prompt"})"}},
             t.auth);
  Value link = c.Call("covibe:createShareLink", {{"weekly_summary_id", summary}}, t.auth);
  const std::string token = link["token"].as_string();
  for (const Document& row : c.All("covibe_share_links")) {
    CHECK(row.ToJson().find(token) == std::string::npos);
  }
  Value read = c.Admin("covibe:readSharedSummary", {{"token", token}});
  nlohmann::json payload = nlohmann::json::parse(read["payload_json"].as_string());
  CHECK(payload["tasks_done"] == 4);
  CHECK(payload["week_start"] == "2026-11-30");
  CHECK(payload["people"][0]["handle"] == "alice");
  CHECK_FALSE(payload["people"][0].contains("email"));
  CHECK_FALSE(payload.contains("prompt"));
  // Only the host's public page reads it; an unknown token is NotFound.
  CHECK_ERROR(c.Try("covibe:readSharedSummary", {{"token", token}}, Auth::Anonymous()),
              Code::kPermissionDenied);
  CHECK_ERROR(c.db->CallInternal("covibe:readSharedSummary", Object{{"token", "cvs_x"}}),
              Code::kNotFound, "unknown share token");
  CHECK_ERROR(
      c.Try("covibe:saveWeeklySummary", {{"week_start", "w"}, {"summary_json", "[1]"}}, t.auth),
      Code::kInvalidArgument, "summary_json");

  CHECK_ERROR(c.Try("covibe:revokeShareLink", {{"share_link_id", link["share_link_id"]}}, bob),
              Code::kPermissionDenied, "created_by_developer_id");
  CHECK(c.Call("covibe:revokeShareLink", {{"share_link_id", link["share_link_id"]}}, t.auth) ==
        Value(true));
  CHECK_ERROR(c.db->CallInternal("covibe:readSharedSummary", Object{{"token", token}}),
              Code::kFailedPrecondition, "revoked");

  Value brief =
      c.Call("covibe:createShareLink", {{"weekly_summary_id", summary}, {"ttl_hours", 1.0}}, bob);
  REQUIRE_OK(c.db->CallInternal("covibe:readSharedSummary", Object{{"token", brief["token"]}}));
  c.clock->Advance(absl::Minutes(61));
  CHECK_ERROR(c.db->CallInternal("covibe:readSharedSummary", Object{{"token", brief["token"]}}),
              Code::kFailedPrecondition, "expired");
}

// ---- health ----

TEST_CASE("doctor: ok on Covibe's schema, degraded naming what a trimmed schema lacks") {
  {
    Covibe c;
    absl::StatusOr<covibe::HealthReport> report = covibe::Doctor(*c.db);
    REQUIRE_OK(report);
    CHECK(report->status == "ok");
    CHECK(c.Call("covibe:doctor", {}, Auth::Anonymous())["status"] == Value("ok"));
  }
  nlohmann::json schema = nlohmann::json::parse(covibe::SchemaJson());
  schema["tables"].erase("covibe_share_links");
  schema["tables"]["covibe_tasks"]["fields"].erase("task_type");
  nlohmann::json& indexes = schema["tables"]["covibe_overlap_warnings"]["indexes"];
  for (auto it = indexes.begin(); it != indexes.end(); ++it) {
    if ((*it)["name"] == "by_other_task") {
      indexes.erase(it);
      break;
    }
  }
  schema["tables"]["covibe_usage_events"].erase("scope");
  schema["tables"]["covibe_setup_device_grants"].erase("ttl");
  // Losing the unique flag of the token-hash index is as bad as losing the index.
  auto drop_unique = [](nlohmann::json& schema) {
    for (nlohmann::json& index : schema["tables"]["covibe_mcp_tokens"]["indexes"]) {
      if (index["name"] == "by_token_hash") index.erase("unique");
    }
  };
  {
    nlohmann::json only_unique = nlohmann::json::parse(covibe::SchemaJson());
    drop_unique(only_unique);
    Covibe lost(only_unique.dump(), /*degraded=*/true);
    CHECK_ERROR(lost.registered, Code::kFailedPrecondition, "degraded",
                "covibe_mcp_tokens.by_token_hash");
    absl::StatusOr<covibe::HealthReport> report = covibe::Doctor(*lost.db);
    REQUIRE_OK(report);
    CHECK(report->status == "degraded");
    CHECK(report->missing_indexes == std::vector<std::string>{"covibe_mcp_tokens.by_token_hash"});
  }
  drop_unique(schema);
  Covibe c(schema.dump(), /*degraded=*/true);
  // Only the doctor is registered on a degraded schema: no agent starts work.
  CHECK_ERROR(c.registered, Code::kFailedPrecondition, "degraded", "covibe_tasks.task_type",
              "covibe_share_links");
  CHECK_ERROR(c.Try("covibe:preflight", {{"title", "x"}}, Auth::Admin()), Code::kNotFound);
  absl::StatusOr<covibe::HealthReport> report = covibe::Doctor(*c.db);
  REQUIRE_OK(report);
  CHECK(report->status == "degraded");
  CHECK(report->missing_tables == std::vector<std::string>{"covibe_share_links"});
  CHECK(report->missing_columns == std::vector<std::string>{"covibe_tasks.task_type"});
  CHECK(report->missing_indexes ==
        std::vector<std::string>{"covibe_mcp_tokens.by_token_hash",
                                 "covibe_overlap_warnings.by_other_task"});
  CHECK(report->missing_scopes == std::vector<std::string>{"covibe_usage_events"});
  CHECK(report->missing_ttls == std::vector<std::string>{"covibe_setup_device_grants"});
  Value shown = c.Call("covibe:doctor", {}, Auth::Anonymous());
  CHECK(shown["status"] == Value("degraded"));
  CHECK(shown["missing_columns"] == Value(Array{"covibe_tasks.task_type"}));
  CHECK(shown["missing_ttls"] == Value(Array{"covibe_setup_device_grants"}));
}

// ---- isolation ----

TEST_CASE("row-level isolation: a workspace never reads or writes another's rows") {
  Covibe c;
  Team red = c.NewTeam("red");
  Team blue = c.NewTeam("blue");
  // A second workspace of red's tenant is as separate as another tenant.
  const std::string ops =
      c.Admin("covibe:createWorkspace",
              {{"acting_developer_id", red.alice}, {"name", "Ops"}, {"slug", "ops"}})
          .as_string();
  const Auth red_ops = Member(red.alice, red.tenant, ops);

  Value task = c.Start(red.auth, "Red task", Array{"src/x.ts"});
  Value plan = c.Call("covibe:planTask",
                      {{"title", "Red plan"}, {"task_type", "bug"}, {"repo", "web"}}, red.auth);
  Value context =
      c.Call("covibe:publishContext",
             {{"title", "red"}, {"summary", "s"}, {"repo", "web"}, {"branch", "main"}}, red.auth);
  Value token = c.Call("covibe:createToken", {{"label", "red"}}, red.auth);
  Value summary =
      c.Call("covibe:saveWeeklySummary", {{"week_start", "w"}, {"summary_json", "{}"}}, red.auth);
  for (int i = 0; i < 3; ++i) c.Start(red.auth, "more " + std::to_string(i), Array{});
  Value link = c.Call("covibe:createShareLink", {{"weekly_summary_id", summary}}, red.auth);
  REQUIRE_OK(
      covibe::CallTool(*c.db, "covibe:listTasks", Value(Object{{"num_items", 1.0}}), red.auth));
  // Every row of a table the caller's scope shows (the engine's scope on a plain read).
  REQUIRE_OK(c.db->RegisterQuery({.name = "covibe_test:peek", .args = R"({"table": "string"})"},
                                 [](QueryContext& ctx, const Value& args) -> absl::StatusOr<Value> {
                                   absl::StatusOr<std::vector<Document>> rows =
                                       ctx.db().Table(args["table"].as_string()).Collect();
                                   if (!rows.ok()) return rows.status();
                                   Array all;
                                   for (const Document& row : *rows) all.push_back(row.ToValue());
                                   return Value(std::move(all));
                                 }));
  auto peek = [&](const std::string& table, const Auth& who) {
    return c.Call("covibe_test:peek", {{"table", table}}, who).as_array();
  };
  REQUIRE_FALSE(peek("covibe_usage_events", red.auth).empty());
  REQUIRE(peek("covibe_share_links", red.auth).size() == 1);
  // Developers are tenant rows: the other tenant sees none of red's.
  for (const Value& developer : peek("covibe_developers", blue.auth)) {
    CHECK(developer["tenant_id"] == Value(blue.tenant));
  }
  CHECK_FALSE(peek("covibe_developers", red_ops).empty());

  for (const Auth* other : std::vector<const Auth*>{&blue.auth, &red_ops}) {
    // Reads: get by id, index ranges, pagination (also with the other's cursor), listings.
    CHECK(c.Call("covibe:getTask", {{"task_id", task["task_id"]}}, *other).is_null());
    Value page = c.Call("covibe:listTasks", {{"num_items", 10.0}}, *other);
    CHECK(page["page"].as_array().empty());
    CHECK(page["isDone"] == Value(true));
    Value red_page = c.Call("covibe:listTasks", {{"num_items", 2.0}}, red.auth);
    REQUIRE(red_page["page"].as_array().size() == 2);
    absl::StatusOr<Value> stolen = c.Try(
        "covibe:listTasks", {{"num_items", 2.0}, {"cursor", red_page["continueCursor"]}}, *other);
    CHECK((!stolen.ok() || (*stolen)["page"].as_array().empty()));
    CHECK(c.Call("covibe:listWorkEvents", {}, *other).as_array().empty());
    CHECK(c.Call("covibe:listActiveContexts", {}, *other).as_array().empty());
    CHECK(c.Call("covibe:listWorkstreams", {}, *other).as_array().empty());
    CHECK(c.Call("covibe:listTokens", {}, *other).as_array().empty());
    CHECK(c.Call("covibe:listOverlapWarnings", {}, *other).as_array().empty());
    for (const char* table : {"covibe_usage_events", "covibe_share_links"}) {
      INFO(table);
      for (const Value& row : peek(table, *other)) {
        CHECK(row["workspace_id"] != Value(red.workspace));
      }
    }
    CHECK_ERROR(c.Try("covibe:revokeShareLink", {{"share_link_id", link["share_link_id"]}}, *other),
                Code::kNotFound, "covibe_share_links");
    // Writes of every kind: patch, replace, delete, and inserts that reference red's rows.
    CHECK_ERROR(
        c.Try("covibe:setTaskStatus", {{"task_id", task["task_id"]}, {"status", "done"}}, *other),
        Code::kNotFound, "covibe_tasks");
    CHECK_ERROR(
        c.Try("covibe:updatePlannedTask", {{"task_id", plan["task_id"]}, {"title", "x"}}, *other),
        Code::kNotFound, "covibe_tasks");
    CHECK_ERROR(c.Try("covibe:deletePlannedTask", {{"task_id", plan["task_id"]}}, *other),
                Code::kNotFound, "covibe_tasks");
    c.Preflight(*other);
    CHECK_ERROR(c.Try("covibe:startTask",
                      {{"title", "t"},
                       {"task_type", "bug"},
                       {"repo", "web"},
                       {"workstream_id", task["workstream_id"]}},
                      *other),
                Code::kNotFound, "covibe_workstreams");
    CHECK_ERROR(c.Try("covibe:revokeContext", {{"context_id", context["context_id"]}}, *other),
                Code::kNotFound, "covibe_session_contexts");
    CHECK_ERROR(c.Try("covibe:revokeToken", {{"token_id", token["token_id"]}}, *other),
                Code::kNotFound, "covibe_mcp_tokens");
    CHECK_ERROR(c.Try("covibe:createShareLink", {{"weekly_summary_id", summary}}, *other),
                Code::kNotFound, "covibe_weekly_summaries");
    // A new task on red's files in the other workspace warns nobody.
    CHECK(c.Start(*other, "Same file", Array{"src/x.ts"})["warnings"] == Value(Array{}));
  }
  // Red's rows are untouched.
  CHECK(c.Get(task["task_id"])["status"] == Value("active"));
  CHECK(c.Get(plan["task_id"])["title"] == Value("Red plan"));
  CHECK_FALSE(c.Get(context["context_id"])["revoked_at"].is_float64());
  CHECK_FALSE(c.Get(link["share_link_id"])["revoked_at"].is_float64());
  // Red's developer's email in blue's tenant is a new developer of blue, not red's.
  Value twin =
      c.Call("covibe:addWorkspaceMember",
             {{"name", "Alice"}, {"email", "alice@red.dev"}, {"handle", "a"}, {"role", "member"}},
             blue.auth);
  CHECK(twin != Value(red.alice));
  CHECK(c.Get(twin)["tenant_id"] == Value(blue.tenant));
  CHECK(c.Get(Value(red.alice))["name"] == Value("Alice red"));

  // The engine's scope, not only the functions: a function that tries to write red's
  // workspace as blue is refused.
  REQUIRE_OK(c.db->RegisterMutation(
      {.name = "covibe_test:forge"},
      [&](MutationContext& ctx, const Value&) -> absl::StatusOr<Value> {
        absl::Status s =
            ctx.db().Patch(*DocumentId::Parse(task["task_id"].as_string()), {{"title", "forged"}});
        if (!s.ok()) return s;
        return Value(nullptr);
      }));
  CHECK_ERROR(c.Try("covibe_test:forge", {}, blue.auth), Code::kNotFound);
  REQUIRE_OK(c.db->RegisterMutation(
      {.name = "covibe_test:forgeInsert"},
      [&](MutationContext& ctx, const Value&) -> absl::StatusOr<Value> {
        absl::StatusOr<DocumentId> id =
            ctx.db().Insert("covibe_work_events", {{"tenant_id", red.tenant},
                                                   {"workspace_id", red.workspace},
                                                   {"event_type", "x"},
                                                   {"developer_id", blue.alice},
                                                   {"summary", "x"},
                                                   {"payload_json", "{}"},
                                                   {"created_at", 1.0}});
        if (!id.ok()) return id.status();
        return Value(*id);
      }));
  CHECK_ERROR(c.Try("covibe_test:forgeInsert", {}, blue.auth), Code::kPermissionDenied,
              "covibe_work_events");
}

TEST_CASE("numbers: page sizes, limits and ttl_hours take C++ ints") {
  Covibe c;
  Team t = c.NewTeam("acme");
  c.Start(t.auth, "Parser", Array{"src/parser.ts"});
  c.Start(t.auth, "Billing", Array{"src/billing.ts"});
  // Each was refused before the numbers rule ("expected float64, got int64").
  CHECK(c.Call("covibe:listTasks", {{"num_items", 1}}, t.auth)["page"].as_array().size() == 1);
  CHECK(c.Call("covibe:listWorkstreams", {{"limit", 1}}, t.auth).as_array().size() == 1);
  CHECK(c.Call("covibe:listWorkEvents", {{"limit", 2}}, t.auth).as_array().size() == 2);
  const double now = absl::ToDoubleMilliseconds(c.clock->Now() - absl::UnixEpoch());
  Value context = c.Call(
      "covibe:publishContext",
      {{"title", "x"}, {"summary", ""}, {"repo", "web"}, {"branch", "main"}, {"ttl_hours", 2}},
      t.auth);
  CHECK(context["expires_at"].as_float64() == now + 2 * 3600 * 1000);
  // A limit is a whole number: 1.5 is refused, not taken as 1.
  CHECK_ERROR(c.Try("covibe:listWorkstreams", {{"limit", 1.5}}, t.auth), Code::kInvalidArgument,
              "covibe:listWorkstreams", "limit", "1.5", "whole number");
  CHECK_ERROR(c.Try("covibe:listTasks", {{"num_items", 501}}, t.auth), Code::kInvalidArgument,
              "covibe:listTasks", "num_items", "501");
}

// ---- live ----

TEST_CASE("live overlap warnings fire on the workspace's overlapping start, not on others") {
  Covibe c;
  Team red = c.NewTeam("red");
  Team blue = c.NewTeam("blue");
  const Auth bob = c.AddMember(red, "bob");
  const Auth blue_bob = c.AddMember(blue, "bob");
  auto runs = CountRuns(*c.db, "covibe_test:countedWarnings", "covibe:listOverlapWarnings");
  std::mutex mu;
  std::vector<Value> seen;
  absl::StatusOr<Subscription> sub = c.db->SubscribeFunction(
      "covibe_test:countedWarnings", Value(Object{}), UpdateSlot([&](const QueryUpdate& update) {
        std::lock_guard<std::mutex> lock(mu);
        seen.push_back(update.result.ok() ? *update.result
                                          : Value(update.result.status().ToString()));
      }),
      red.auth);
  REQUIRE_OK(sub);
  auto count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return seen.size();
  };
  c.Settle();
  REQUIRE(count() == 1);
  CHECK(seen[0] == Value(Array{}));
  const int initial_runs = runs->load();

  // Blue's developers overlap: red's view shows nothing of it.
  c.Start(blue.auth, "Blue one", Array{"src/api"});
  Value blue_warned = c.Start(blue_bob, "Blue two", Array{"src/api/x.ts"});
  REQUIRE(blue_warned["warnings"].as_array().size() == 1);
  // Red's non-overlapping starts change nothing it shows.
  c.Start(red.auth, "Red one", Array{"src/api"});
  c.Start(bob, "Red docs", Array{"docs/guide.md"});
  c.Settle();
  CHECK(runs->load() == initial_runs);
  // The overlapping start is the change.
  Value red_warned = c.Start(bob, "Red two", Array{"src/api/users.ts"});
  c.Settle();
  {
    std::lock_guard<std::mutex> lock(mu);
    REQUIRE(seen.size() == 2);
    REQUIRE(seen[1].as_array().size() == 1);
    CHECK(seen[1].as_array()[0]["_id"] == red_warned["warnings"].as_array()[0]["warning_id"]);
  }
  // Blue resolving its warning is not red's change; red's task finishing is.
  const int warned_runs = runs->load();
  CHECK(warned_runs > initial_runs);
  c.Call("covibe:setTaskStatus", {{"task_id", blue_warned["task_id"]}, {"status", "done"}},
         blue_bob);
  c.Settle();
  CHECK(runs->load() == warned_runs);
  c.Call("covibe:setTaskStatus", {{"task_id", red_warned["task_id"]}, {"status", "done"}}, bob);
  c.Settle();
  CHECK(runs->load() > warned_runs);
  std::lock_guard<std::mutex> lock(mu);
  REQUIRE(seen.size() == 3);
  CHECK(seen[2] == Value(Array{}));
  for (const Value& update : seen) {
    CHECK(ValueToJson(update).find(blue.workspace) == std::string::npos);
  }
}

}  // namespace
