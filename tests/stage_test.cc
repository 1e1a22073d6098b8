// The Stage application (stagedb/apps/stage.h): every function, the validation errors the
// seeds name, the deploy -> preview -> promote -> production -> rollback workflow end to end
// (also from two threads at once), and the live views firing on the steps that change them
// and only those. Written against the public API only.
#include "stagedb/apps/stage.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
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
using stagedb::testing::PollUntil;
using stagedb::testing::TempDir;
using stagedb::testing::UpdateCounter;
using Code = absl::StatusCode;

struct Studio {
  TempDir dir;
  std::unique_ptr<Database> db;
  explicit Studio(stage::StageOptions options = {}) {
    db = OpenOrFail({.path = dir.Sub("db"), .schema_json = std::string(stage::SchemaJson())});
    REQUIRE_OK(stage::RegisterFunctions(*db, std::move(options)));
  }
  Value Call(std::string_view name, Object args) {
    return MustSucceed(db->Call(name, Value(std::move(args))), name);
  }
  absl::StatusOr<Value> Try(std::string_view name, Object args) {
    return db->Call(name, Value(std::move(args)));
  }
  std::string NewSession() { return Call("stage:createSession", {}).as_string(); }
  std::string last_app;  // the app a test works on
};

constexpr const char* kEmail = "dev@example.com";

TEST_CASE("sessions: create, touch, and the status view") {
  Studio s;
  const std::string session = s.NewSession();
  Value status = s.Call("stage:getSessionStatus", {{"sessionId", session}});
  const double created = status["session"]["createdAt"].as_float64();
  CHECK(status["session"]["lastAccessedAt"].as_float64() == created);
  CHECK(status["render"].is_null());
  CHECK(status["files"] == Value(Array{}));
  // The touch comes later than the creation, however coarse the clock.
  REQUIRE(PollUntil(
      [&] { return absl::ToDoubleMilliseconds(absl::Now() - absl::UnixEpoch()) > created; }));
  s.Call("stage:touchSession", {{"sessionId", session}});
  status = s.Call("stage:getSessionStatus", {{"sessionId", session}});
  CHECK(status["session"]["lastAccessedAt"].as_float64() > created);

  // An id of no session here (a session of another database), and text that is no id.
  Studio elsewhere;
  const std::string foreign = elsewhere.NewSession();
  CHECK_ERROR(s.Try("stage:touchSession", {{"sessionId", foreign}}), Code::kNotFound,
              "stage_sessions", foreign);
  CHECK_ERROR(s.Try("stage:writeFile", {{"sessionId", foreign}, {"path", "/a"}, {"content", ""}}),
              Code::kNotFound, foreign);
  CHECK_ERROR(s.Try("stage:touchSession", {{"sessionId", "not-an-id"}}), Code::kInvalidArgument,
              "sessionId");
}

TEST_CASE("files: unique path per session, versions count up, size is bytes") {
  Studio s;
  const std::string session = s.NewSession();
  const std::string other = s.NewSession();
  Value written = s.Call("stage:writeFile",
                         {{"sessionId", session}, {"path", "/app/App.tsx"}, {"content", "héllo"}});
  CHECK(written["version"].as_float64() == 1);
  CHECK(written["size"].as_float64() == 6);  // bytes, not characters
  written = s.Call("stage:writeFile",
                   {{"sessionId", session}, {"path", "/app/App.tsx"}, {"content", "v2"}});
  CHECK(written["version"].as_float64() == 2);
  // The same path in another session is another file.
  CHECK(s.Call("stage:writeFile",
               {{"sessionId", other}, {"path", "/app/App.tsx"}, {"content", "x"}})["version"]
            .as_float64() == 1);
  s.Call("stage:writeFile", {{"sessionId", session}, {"path", "/app/a.css"}, {"content", ""}});

  Value file = s.Call("stage:readFile", {{"sessionId", session}, {"path", "/app/App.tsx"}});
  CHECK(file["content"] == Value("v2"));
  CHECK(file["version"].as_float64() == 2);
  CHECK(s.Call("stage:readFile", {{"sessionId", session}, {"path", "/nope"}}).is_null());
  Value list = s.Call("stage:listFiles", {{"sessionId", session}});
  REQUIRE(list.as_array().size() == 2);
  CHECK(list.as_array()[0]["path"] == Value("/app/App.tsx"));
  CHECK(list.as_array()[1]["path"] == Value("/app/a.css"));
  CHECK(list.as_array()[1]["size"].as_float64() == 0);

  CHECK(s.Call("stage:deleteFile", {{"sessionId", session}, {"path", "/app/a.css"}}) ==
        Value(true));
  CHECK(s.Call("stage:deleteFile", {{"sessionId", session}, {"path", "/app/a.css"}}) ==
        Value(false));
  CHECK(s.Call("stage:listFiles", {{"sessionId", session}}).as_array().size() == 1);

  for (const char* bad : {"app/x", "/app/", "/app//x", "/app/../x", "/app/./x", ""}) {
    INFO(bad);
    CHECK_ERROR(s.Try("stage:writeFile", {{"sessionId", session}, {"path", bad}, {"content", ""}}),
                Code::kInvalidArgument, "stage_files", "path");
  }
  CHECK_ERROR(s.Try("stage:writeFile", {{"sessionId", session},
                                        {"path", std::string(401, 'a').insert(0, "/")},
                                        {"content", ""}}),
              Code::kInvalidArgument, "over 400");
  CHECK_ERROR(s.Try("stage:writeFile", {{"sessionId", session}, {"path", "/a"}, {"content", 5}}),
              Code::kInvalidArgument, "argument \"content\"", "string");
}

TEST_CASE("render: each trigger is a new version; results for stale versions are ignored") {
  Studio s;
  const std::string session = s.NewSession();
  CHECK_ERROR(s.Try("stage:recordRenderResult",
                    {{"sessionId", session}, {"version", 1.0}, {"error", nullptr}}),
              Code::kFailedPrecondition, "no render");
  CHECK(s.Call("stage:triggerRender", {{"sessionId", session}, {"entry", "/app/App.tsx"}})
            .as_float64() == 1);
  CHECK(s.Call("stage:triggerRender", {{"sessionId", session}, {"entry", "/app/App.tsx"}})
            .as_float64() == 2);
  // Version 1's result arrives late: ignored.
  CHECK(s.Call("stage:recordRenderResult",
               {{"sessionId", session}, {"version", 1.0}, {"error", "old"}}) == Value(false));
  CHECK(s.Call("stage:recordRenderResult",
               {{"sessionId", session}, {"version", 2.0}, {"error", "SyntaxError: line 3"}}) ==
        Value(true));
  Value render = s.Call("stage:getSessionStatus", {{"sessionId", session}})["render"];
  CHECK(render["version"].as_float64() == 2);
  CHECK(render["error"] == Value("SyntaxError: line 3"));
  CHECK(render["renderedAt"].is_null());
  CHECK(s.Call("stage:recordRenderResult",
               {{"sessionId", session}, {"version", 2.0}, {"error", nullptr}}) == Value(true));
  render = s.Call("stage:getSessionStatus", {{"sessionId", session}})["render"];
  CHECK(render["error"].is_null());
  CHECK(render["renderedAt"].is_float64());
  // A new trigger clears the error and keeps the last successful render's time.
  s.Call("stage:triggerRender", {{"sessionId", session}, {"entry", "/app/Main.tsx"}});
  Value next = s.Call("stage:getSessionStatus", {{"sessionId", session}})["render"];
  CHECK(next["entry"] == Value("/app/Main.tsx"));
  CHECK(next["renderedAt"] == render["renderedAt"]);
  CHECK_ERROR(s.Try("stage:recordRenderResult",
                    {{"sessionId", session}, {"version", 9.0}, {"error", nullptr}}),
              Code::kInvalidArgument, "never triggered");
}

TEST_CASE("snapshots copy files and render state; restore puts them back") {
  Studio s;
  const std::string session = s.NewSession();
  s.Call("stage:writeFile", {{"sessionId", session}, {"path", "/app/App.tsx"}, {"content", "v1"}});
  s.Call("stage:writeFile", {{"sessionId", session}, {"path", "/app/keep.ts"}, {"content", "k"}});
  s.Call("stage:triggerRender", {{"sessionId", session}, {"entry", "/app/App.tsx"}});
  s.Call("stage:recordRenderResult",
         {{"sessionId", session}, {"version", 1.0}, {"error", nullptr}});
  const std::string snapshot =
      s.Call("stage:createSnapshot", {{"sessionId", session}, {"label", "before"}}).as_string();
  s.Call("stage:writeFile", {{"sessionId", session}, {"path", "/app/App.tsx"}, {"content", "v2"}});
  s.Call("stage:writeFile", {{"sessionId", session}, {"path", "/app/new.ts"}, {"content", "n"}});
  s.Call("stage:triggerRender", {{"sessionId", session}, {"entry", "/app/New.tsx"}});
  s.Call("stage:recordRenderResult", {{"sessionId", session}, {"version", 2.0}, {"error", "boom"}});

  Value snapshots = s.Call("stage:listSnapshots", {{"sessionId", session}});
  REQUIRE(snapshots.as_array().size() == 1);
  CHECK(snapshots.as_array()[0]["label"] == Value("before"));
  CHECK(snapshots.as_array()[0]["fileCount"].as_float64() == 2);

  s.Call("stage:restoreSnapshot", {{"snapshotId", snapshot}});
  Value status = s.Call("stage:getSessionStatus", {{"sessionId", session}});
  REQUIRE(status["files"].as_array().size() == 2);
  Value app = s.Call("stage:readFile", {{"sessionId", session}, {"path", "/app/App.tsx"}});
  CHECK(app["content"] == Value("v1"));
  CHECK(app["version"].as_float64() == 3);  // versions only grow
  CHECK(s.Call("stage:readFile", {{"sessionId", session}, {"path", "/app/keep.ts"}})["version"]
            .as_float64() == 1);  // unchanged: not rewritten
  CHECK(s.Call("stage:readFile", {{"sessionId", session}, {"path", "/app/new.ts"}}).is_null());
  CHECK(status["render"]["entry"] == Value("/app/App.tsx"));
  CHECK(status["render"]["error"].is_null());
  CHECK(status["render"]["renderedAt"].is_float64());
  CHECK(status["render"]["version"].as_float64() == 3);
}

TEST_CASE("the workflow manifest is validated when written, with the place of the error") {
  Studio s;
  const std::string session = s.NewSession();
  auto write = [&](const std::string& text) {
    return s.Try("stage:writeFile", {{"sessionId", session},
                                     {"path", std::string(stage::kWorkflowManifestPath)},
                                     {"content", text}});
  };
  REQUIRE_OK(write(R"({"version": 1, "workflows": {"onSignup": {"steps": [
      {"kind": "sheets.appendRow", "sheet": "Signups"}, {"kind": "message.send"}]}}})"));
  CHECK_ERROR(write(R"({"version": 2, "workflows": {}})"), Code::kInvalidArgument, "version",
              "must be 1");
  CHECK_ERROR(write(R"({"version": 1})"), Code::kInvalidArgument, "workflows");
  CHECK_ERROR(write(R"({"version": 1, "workflows": {"a": {"steps": [{"kind": "pulse.track"},
      {"kind": "email"}]}}})"),
              Code::kInvalidArgument, "workflows.a.steps[1].kind", "\"email\"",
              "billing.createItem");
  CHECK_ERROR(write(R"({"version": 1, "workflows": {"a": {"steps": []}}})"), Code::kInvalidArgument,
              "workflows.a.steps");
  CHECK_ERROR(write(R"({"version": 1, "workflows": {"a": {"steps": [{"sheet": 1}]}}})"),
              Code::kInvalidArgument, "workflows.a.steps[0].kind");
  CHECK_ERROR(write("{not json"), Code::kInvalidArgument, "not valid JSON", "byte");
  CHECK_ERROR(write(R"({"version": 1, "workflows": {}, "extra": true})"), Code::kInvalidArgument,
              "extra");
  // The refused writes left the accepted manifest as it was.
  CHECK(s.Call("stage:readFile", {{"sessionId", session},
                                  {"path", std::string(stage::kWorkflowManifestPath)}})["version"]
            .as_float64() == 1);
}

TEST_CASE("apps: publish, catalog, status, repository metadata, versions") {
  Studio s;
  const std::string session = s.NewSession();
  Value published = s.Call("stage:publishApp", {{"name", "Timesheets"},
                                                {"description", "Log hours"},
                                                {"authorEmail", kEmail},
                                                {"tags", Array{"hr", "time"}},
                                                {"sessionId", session},
                                                {"updatedByEmail", kEmail}});
  const std::string sid = published["appSid"].as_string();
  CHECK(sid.rfind("app_", 0) == 0);
  Value app = s.Call("stage:getApp", {{"sid", sid}});
  CHECK(app["status"] == Value("published"));
  CHECK(app["tags"] == Value(Array{"hr", "time"}));
  CHECK(s.Call("stage:getApp", {{"sid", "app_missing"}}).is_null());
  CHECK(s.Call("stage:listApps", {{"status", "published"}}).as_array().size() == 1);
  CHECK_ERROR(
      s.Try("stage:publishApp",
            {{"sid", sid}, {"name", "Dup"}, {"sessionId", session}, {"updatedByEmail", kEmail}}),
      Code::kAlreadyExists, "stage_apps", sid);
  CHECK_ERROR(
      s.Try("stage:publishApp", {{"name", ""}, {"sessionId", session}, {"updatedByEmail", kEmail}}),
      Code::kInvalidArgument, "name");
  CHECK_ERROR(s.Try("stage:listApps", {{"status", "live"}}), Code::kInvalidArgument, "status");

  s.Call("stage:setAppStatus", {{"sid", sid}, {"status", "archived"}});
  CHECK(s.Call("stage:listApps", {{"status", "published"}}).as_array().empty());
  CHECK(s.Call("stage:listApps", {{"status", "archived"}}).as_array().size() == 1);

  CHECK_ERROR(s.Try("stage:updateRepository", {{"appSid", sid}, {"lastCommitSha", "abc"}}),
              Code::kFailedPrecondition, "no linked repository");
  s.Call("stage:linkRepository", {{"appSid", sid},
                                  {"owner", "acme"},
                                  {"name", "timesheets"},
                                  {"url", "https://github.com/acme/timesheets"},
                                  {"visibility", "private"},
                                  {"defaultBranch", "main"}});
  s.Call("stage:updateRepository",
         {{"appSid", sid}, {"lastCommitSha", "abc123"}, {"lastPushedAt", 1700000000000.0}});
  Value repository = s.Call("stage:getApp", {{"sid", sid}})["repository"];
  CHECK(repository["provider"] == Value("github"));
  CHECK(repository["fullName"] == Value("acme/timesheets"));
  CHECK(repository["remoteName"] == Value("origin"));
  CHECK(repository["lastCommitSha"] == Value("abc123"));
  CHECK(repository["linkedAt"].is_float64());
  CHECK_ERROR(s.Try("stage:linkRepository", {{"appSid", sid},
                                             {"owner", "acme/x"},
                                             {"name", "t"},
                                             {"url", "u"},
                                             {"visibility", "private"}}),
              Code::kInvalidArgument, "repository.owner", "acme/x");
  CHECK_ERROR(s.Try("stage:linkRepository", {{"appSid", sid},
                                             {"owner", "acme"},
                                             {"name", "t"},
                                             {"url", "u"},
                                             {"visibility", "secret"}}),
              Code::kInvalidArgument, "visibility");
  CHECK_ERROR(s.Try("stage:linkRepository", {{"appSid", "app_nope"},
                                             {"owner", "acme"},
                                             {"name", "t"},
                                             {"url", "u"},
                                             {"visibility", "public"}}),
              Code::kNotFound, "stage_apps", "app_nope");

  Value versions = s.Call("stage:listAppVersions", {{"appSid", sid}});
  REQUIRE(versions.as_array().size() == 1);
  CHECK(versions.as_array()[0]["source"] == Value("publish"));
  CHECK(versions.as_array()[0]["sid"] == published["versionSid"]);
}

TEST_CASE("google scopes per session, copied into the channels a deploy updates") {
  Studio s;
  const std::string session = s.NewSession();
  CHECK(s.Call("stage:getGoogleScopes", {{"sessionId", session}}).is_null());
  s.Call("stage:setGoogleScopes",
         {{"sessionId", session},
          {"scopes", Array{"https://www.googleapis.com/auth/spreadsheets", "openid", "openid"}}});
  CHECK(s.Call("stage:getGoogleScopes", {{"sessionId", session}}) ==
        Value(Array{"https://www.googleapis.com/auth/spreadsheets", "openid"}));
  CHECK_ERROR(s.Try("stage:setGoogleScopes", {{"sessionId", session}, {"scopes", Array{"a b"}}}),
              Code::kInvalidArgument, "stage_googleScopes", "a b");
  const std::string sid =
      s.Call("stage:publishApp",
             {{"name", "A"}, {"sessionId", session}, {"updatedByEmail", kEmail}})["appSid"]
          .as_string();
  s.Call("stage:deploy", {{"appSid", sid},
                          {"sessionId", session},
                          {"files", Array{}},
                          {"entry", "/app/App.tsx"},
                          {"updatedByEmail", kEmail}});
  Value preview = s.Call("stage:getResolvedAppChannel", {{"appSid", sid}, {"channel", "preview"}});
  CHECK(preview["oauthScopes"] ==
        Value(Array{"https://www.googleapis.com/auth/spreadsheets", "openid"}));
  // Channels keep their own scopes: production's set by hand stays when preview changes.
  s.Call("stage:upsertAppChannel", {{"appSid", sid},
                                    {"channel", "production"},
                                    {"appVersionSid", preview["appVersionSid"]},
                                    {"oauthScopes", Array{"email"}},
                                    {"updatedByEmail", kEmail}});
  s.Call("stage:setGoogleScopes", {{"sessionId", session}, {"scopes", Array{"profile"}}});
  s.Call("stage:deploy", {{"appSid", sid},
                          {"sessionId", session},
                          {"files", Array{}},
                          {"entry", "/app/App.tsx"},
                          {"updatedByEmail", kEmail}});
  CHECK(s.Call("stage:getResolvedAppChannel",
               {{"appSid", sid}, {"channel", "preview"}})["oauthScopes"] ==
        Value(Array{"profile"}));
  CHECK(s.Call("stage:getResolvedAppChannel",
               {{"appSid", sid}, {"channel", "production"}})["oauthScopes"] ==
        Value(Array{"email"}));
}

TEST_CASE("a version records the OAuth scopes it is served with; a rollback restores them") {
  Studio s;
  const std::string session = s.NewSession();
  auto set_scopes = [&](Array scopes) {
    s.Call("stage:setGoogleScopes", {{"sessionId", session}, {"scopes", std::move(scopes)}});
  };
  auto channel = [&](const char* name) {
    return s.Call("stage:getResolvedAppChannel", {{"appSid", s.last_app}, {"channel", name}});
  };
  auto deploy_and_promote = [&] {
    s.Call("stage:deploy", {{"appSid", s.last_app},
                            {"sessionId", session},
                            {"files", Array{}},
                            {"entry", "/app/App.tsx"},
                            {"updatedByEmail", kEmail}});
    return s.Call("stage:promote", {{"appSid", s.last_app}, {"updatedByEmail", kEmail}});
  };
  set_scopes({"email"});
  const Value app = s.Call("stage:publishApp",
                           {{"name", "A"}, {"sessionId", session}, {"updatedByEmail", kEmail}});
  s.last_app = app["appSid"].as_string();
  const Value published = app["versionSid"];
  set_scopes({"openid"});
  const Value p1 = deploy_and_promote()["versionSid"];
  set_scopes({"openid", "profile"});
  const Value p2 = deploy_and_promote()["versionSid"];
  Value production = channel("production");
  CHECK(production["oauthScopes"] == Value(Array{"openid", "profile"}));
  CHECK(production["version"]["oauthScopes"] == Value(Array{"openid", "profile"}));
  CHECK(channel("preview")["version"]["oauthScopes"] == Value(Array{"openid", "profile"}));

  // Rolling back leaves production with the scopes it served the version with, not p2's.
  CHECK(s.Call("stage:rollback",
               {{"appSid", s.last_app}, {"updatedByEmail", kEmail}})["versionSid"] == p1);
  production = channel("production");
  CHECK(production["oauthScopes"] == Value(Array{"openid"}));
  CHECK(production["version"]["oauthScopes"] == Value(Array{"openid"}));
  CHECK(s.Call("stage:rollback",
               {{"appSid", s.last_app}, {"updatedByEmail", kEmail}})["versionSid"] == published);
  CHECK(channel("production")["oauthScopes"] == Value(Array{"email"}));

  // By hand: a channel pointed at a version takes its scopes unless the call gives some.
  s.Call("stage:upsertAppChannel", {{"appSid", s.last_app},
                                    {"channel", "production"},
                                    {"appVersionSid", p2},
                                    {"updatedByEmail", kEmail}});
  CHECK(channel("production")["oauthScopes"] == Value(Array{"openid", "profile"}));
  s.Call("stage:upsertAppChannel", {{"appSid", s.last_app},
                                    {"channel", "production"},
                                    {"appVersionSid", p1},
                                    {"oauthScopes", Array{"drive"}},
                                    {"updatedByEmail", kEmail}});
  CHECK(channel("production")["oauthScopes"] == Value(Array{"drive"}));
}

TEST_CASE("numbers: C++ ints work wherever Stage declares a number") {
  Studio s;
  const std::string session = s.NewSession();
  s.Call("stage:triggerRender", {{"sessionId", session}, {"entry", "/app/App.tsx"}});
  // Refused before the numbers rule ("expected float64, got int64 1").
  s.Call("stage:recordRenderResult", {{"sessionId", session}, {"version", 1}, {"error", nullptr}});
  Value render = s.Call("stage:getSessionStatus", {{"sessionId", session}})["render"];
  CHECK(render["renderedAt"].is_float64());
  CHECK(render["version"] == Value(1.0));
  // storeDriveRecording's sizeBytes and recordedAt take ints too: see the last test.
}

TEST_CASE("the version-channel workflow: deploy, promote, rollback") {
  Studio s;
  const std::string session = s.NewSession();
  const Value published = s.Call(
      "stage:publishApp", {{"name", "Shop"}, {"sessionId", session}, {"updatedByEmail", kEmail}});
  const std::string sid = published["appSid"].as_string();
  const Value v1 = published["versionSid"];

  // Promotion needs a preview version; rollback an earlier production version.
  CHECK_ERROR(s.Try("stage:promote", {{"appSid", sid}, {"updatedByEmail", kEmail}}),
              Code::kFailedPrecondition, "no preview version", sid);
  CHECK_ERROR(s.Try("stage:rollback", {{"appSid", sid}, {"updatedByEmail", kEmail}}),
              Code::kFailedPrecondition, "no version earlier");
  CHECK(s.Call("stage:getAppChannelsForSummary", {{"appSid", sid}})["preview"].is_null());

  // Deploy: files pushed, render triggered, a studio_deploy version, preview updated.
  Value d1 =
      s.Call("stage:deploy",
             {{"appSid", sid},
              {"sessionId", session},
              {"files", Array{Object{{"path", "/app/App.tsx"}, {"content", "export default 1"}}}},
              {"entry", "/app/App.tsx"},
              {"branch", "feature/cart"},
              {"commitSha", "c0ffee1"},
              {"updatedByEmail", kEmail}});
  CHECK(d1["renderVersion"].as_float64() == 1);
  Value preview = s.Call("stage:getResolvedAppChannel", {{"appSid", sid}, {"channel", "preview"}});
  CHECK(preview["appVersionSid"] == d1["versionSid"]);
  CHECK(preview["branch"] == Value("feature/cart"));
  CHECK(preview["commitSha"] == Value("c0ffee1"));
  CHECK(preview["sessionId"] == Value(session));
  CHECK(preview["version"]["source"] == Value("studio_deploy"));
  CHECK(preview["version"]["renderVersion"].as_float64() == 1);
  CHECK(s.Call("stage:readFile", {{"sessionId", session}, {"path", "/app/App.tsx"}})["content"] ==
        Value("export default 1"));
  // Production is untouched by a deploy.
  CHECK(s.Call("stage:getResolvedAppChannel",
               {{"appSid", sid}, {"channel", "production"}})["appVersionSid"] == v1);

  // Promote: production gets the preview's version as a "promotion" version.
  Value p1 = s.Call("stage:promote", {{"appSid", sid}, {"updatedByEmail", kEmail}});
  CHECK(p1["fromVersionSid"] == d1["versionSid"]);
  Value production =
      s.Call("stage:getResolvedAppChannel", {{"appSid", sid}, {"channel", "production"}});
  CHECK(production["appVersionSid"] == p1["versionSid"]);
  CHECK(production["version"]["source"] == Value("promotion"));
  CHECK(production["version"]["fromVersionSid"] == d1["versionSid"]);
  CHECK(production["branch"] == Value("feature/cart"));

  // A second deploy (a feedback iteration) moves preview only; promote again; roll back twice.
  Value d2 =
      s.Call("stage:deploy",
             {{"appSid", sid},
              {"sessionId", session},
              {"files", Array{Object{{"path", "/app/App.tsx"}, {"content", "export default 2"}}}},
              {"entry", "/app/App.tsx"},
              {"source", "feedback"},
              {"updatedByEmail", kEmail}});
  CHECK(s.Call("stage:getResolvedAppChannel",
               {{"appSid", sid}, {"channel", "preview"}})["version"]["source"] ==
        Value("feedback"));
  CHECK(s.Call("stage:getResolvedAppChannel",
               {{"appSid", sid}, {"channel", "production"}})["appVersionSid"] == p1["versionSid"]);
  Value p2 = s.Call("stage:promote", {{"appSid", sid}, {"updatedByEmail", kEmail}});
  CHECK(p2["fromVersionSid"] == d2["versionSid"]);
  CHECK(s.Call("stage:rollback", {{"appSid", sid}, {"updatedByEmail", kEmail}})["versionSid"] ==
        p1["versionSid"]);
  CHECK(s.Call("stage:rollback", {{"appSid", sid}, {"updatedByEmail", kEmail}})["versionSid"] ==
        v1);
  CHECK_ERROR(s.Try("stage:rollback", {{"appSid", sid}, {"updatedByEmail", kEmail}}),
              Code::kFailedPrecondition, "no version earlier");
  // Explicit targets must be versions production served before: not a later one, not another
  // app's.
  CHECK_ERROR(
      s.Try("stage:rollback",
            {{"appSid", sid}, {"updatedByEmail", kEmail}, {"toVersionSid", p2["versionSid"]}}),
      Code::kFailedPrecondition, "served before");
  const std::string other =
      s.Call("stage:publishApp",
             {{"name", "Other"}, {"sessionId", session}, {"updatedByEmail", kEmail}})["appSid"]
          .as_string();
  const Value other_version =
      s.Call("stage:listAppVersions", {{"appSid", other}}).as_array()[0]["sid"];
  CHECK_ERROR(s.Try("stage:rollback",
                    {{"appSid", sid}, {"updatedByEmail", kEmail}, {"toVersionSid", other_version}}),
              Code::kFailedPrecondition, "served before");
  CHECK(s.Call("stage:listAppVersions", {{"appSid", sid}}).as_array().size() == 5);

  // upsertAppChannel: unknown channel names and versions are refused.
  CHECK_ERROR(s.Try("stage:upsertAppChannel", {{"appSid", sid},
                                               {"channel", "staging"},
                                               {"appVersionSid", d1["versionSid"]},
                                               {"updatedByEmail", kEmail}}),
              Code::kInvalidArgument, "staging");
  CHECK_ERROR(s.Try("stage:upsertAppChannel", {{"appSid", sid},
                                               {"channel", "preview"},
                                               {"appVersionSid", "ver_nope"},
                                               {"updatedByEmail", kEmail}}),
              Code::kNotFound, "ver_nope");
  CHECK_ERROR(s.Try("stage:getResolvedAppChannel", {{"appSid", sid}, {"channel", "beta"}}),
              Code::kInvalidArgument, "beta");
}

TEST_CASE("a failed step of a deploy writes nothing") {
  Studio s;
  const std::string session = s.NewSession();
  const std::string sid =
      s.Call("stage:publishApp",
             {{"name", "A"}, {"sessionId", session}, {"updatedByEmail", kEmail}})["appSid"]
          .as_string();
  // The second file's path is invalid: the first file, the render and the version are not kept.
  CHECK_ERROR(
      s.Try("stage:deploy", {{"appSid", sid},
                             {"sessionId", session},
                             {"files", Array{Object{{"path", "/app/ok.ts"}, {"content", "1"}},
                                             Object{{"path", "bad"}, {"content", "2"}}}},
                             {"entry", "/app/ok.ts"},
                             {"updatedByEmail", kEmail}}),
      Code::kInvalidArgument, "bad");
  Value status = s.Call("stage:getSessionStatus", {{"sessionId", session}});
  CHECK(status["files"].as_array().empty());
  CHECK(status["render"].is_null());
  CHECK(s.Call("stage:listAppVersions", {{"appSid", sid}}).as_array().size() == 1);
  CHECK(s.Call("stage:getAppChannelsForSummary", {{"appSid", sid}})["preview"].is_null());
}

TEST_CASE("each version serves the files it froze; rollback follows what production served") {
  Studio s;
  const std::string session = s.NewSession();
  auto deploy = [&](const std::string& content) {
    return s.Call("stage:deploy",
                  {{"appSid", s.last_app},
                   {"sessionId", session},
                   {"files", Array{Object{{"path", "/app/App.tsx"}, {"content", content}}}},
                   {"entry", "/app/App.tsx"},
                   {"updatedByEmail", kEmail}})["versionSid"];
  };
  auto promote = [&] {
    return s.Call("stage:promote",
                  {{"appSid", s.last_app}, {"updatedByEmail", kEmail}})["versionSid"];
  };
  auto rollback = [&] {
    return s.Call("stage:rollback",
                  {{"appSid", s.last_app}, {"updatedByEmail", kEmail}})["versionSid"];
  };
  auto serves = [&](const char* channel) {
    Value files = s.Call("stage:getChannelFiles", {{"appSid", s.last_app}, {"channel", channel}});
    return files.as_array().empty() ? Value("") : files.as_array()[0]["content"];
  };
  s.Call("stage:writeFile", {{"sessionId", session}, {"path", "/app/App.tsx"}, {"content", "v0"}});
  s.last_app = s.Call("stage:publishApp",
                      {{"name", "A"}, {"sessionId", session}, {"updatedByEmail", kEmail}})["appSid"]
                   .as_string();
  const Value published =
      s.Call("stage:getResolvedAppChannel",
             {{"appSid", s.last_app}, {"channel", "production"}})["appVersionSid"];
  deploy("one");
  const Value p1 = promote();
  CHECK_ERROR(s.Try("stage:promote", {{"appSid", s.last_app}, {"updatedByEmail", kEmail}}),
              Code::kFailedPrecondition, "already serves");
  deploy("two");
  // A deploy changes the session's files and preview, never what production serves.
  CHECK(serves("preview") == Value("two"));
  CHECK(serves("production") == Value("one"));
  const Value p2 = promote();
  CHECK(serves("production") == Value("two"));
  CHECK(rollback() == p1);
  CHECK(serves("production") == Value("one"));
  deploy("three");
  const Value p3 = promote();
  CHECK(serves("production") == Value("three"));
  // Back to what production served before p3 (p1), not to p2, which was rolled away from.
  CHECK(rollback() == p1);
  CHECK(rollback() == published);
  CHECK(serves("production") == Value("v0"));
  CHECK(s.Call("stage:getVersionFiles", {{"appSid", s.last_app}, {"versionSid", p3}})
            .as_array()[0]["content"] == Value("three"));
  CHECK_ERROR(s.Try("stage:getVersionFiles", {{"appSid", s.last_app}, {"versionSid", "ver_x"}}),
              Code::kNotFound, "ver_x");
}

TEST_CASE("a deleted file written again continues its versions") {
  Studio s;
  const std::string session = s.NewSession();
  for (int i = 0; i < 2; ++i) {
    s.Call("stage:writeFile", {{"sessionId", session}, {"path", "/a.ts"}, {"content", "x"}});
  }
  CHECK(s.Call("stage:deleteFile", {{"sessionId", session}, {"path", "/a.ts"}}) == Value(true));
  CHECK(s.Call("stage:readFile", {{"sessionId", session}, {"path", "/a.ts"}}).is_null());
  CHECK(s.Call("stage:listFiles", {{"sessionId", session}}).as_array().empty());
  CHECK(s.Call("stage:writeFile",
               {{"sessionId", session}, {"path", "/a.ts"}, {"content", "y"}})["version"]
            .as_float64() == 3);
}

TEST_CASE("more validation errors name what was wrong") {
  Studio s;
  Studio elsewhere;
  const std::string session = s.NewSession();
  const std::string foreign_session = elsewhere.NewSession();
  const std::string foreign_snapshot =
      elsewhere.Call("stage:createSnapshot", {{"sessionId", foreign_session}}).as_string();
  CHECK_ERROR(s.Try("stage:recordRenderResult",
                    {{"sessionId", foreign_session}, {"version", 1.0}, {"error", nullptr}}),
              Code::kNotFound, "stage_sessions");
  CHECK_ERROR(s.Try("stage:restoreSnapshot", {{"snapshotId", foreign_snapshot}}), Code::kNotFound,
              "stage_snapshots", foreign_snapshot);
  CHECK_ERROR(s.Try("stage:triggerRender", {{"sessionId", session}, {"entry", "App.tsx"}}),
              Code::kInvalidArgument, "App.tsx");
  CHECK_ERROR(s.Try("stage:setAppStatus", {{"sid", "app_nope"}, {"status", "draft"}}),
              Code::kNotFound, "app_nope");
  CHECK_ERROR(s.Try("stage:updateRepository", {{"appSid", "app_nope"}}), Code::kNotFound,
              "app_nope");
  const std::string a =
      s.Call("stage:publishApp",
             {{"name", "A"}, {"sessionId", session}, {"updatedByEmail", kEmail}})["appSid"]
          .as_string();
  const Value b_version =
      s.Call("stage:publishApp",
             {{"name", "B"}, {"sessionId", session}, {"updatedByEmail", kEmail}})["versionSid"];
  CHECK_ERROR(s.Try("stage:upsertAppChannel", {{"appSid", a},
                                               {"channel", "preview"},
                                               {"appVersionSid", b_version},
                                               {"updatedByEmail", kEmail}}),
              Code::kNotFound, "belongs to app");
  CHECK_ERROR(s.Try("stage:upsertAppChannel", {{"appSid", a},
                                               {"channel", "preview"},
                                               {"appVersionSid", b_version},
                                               {"sessionId", foreign_session},
                                               {"updatedByEmail", kEmail}}),
              Code::kNotFound);
  CHECK_ERROR(s.Try("stage:publishApp", {{"name", "C"}, {"sessionId", session}}),
              Code::kInvalidArgument, "updatedByEmail");

  // A database without Stage's tables is refused at registration.
  TempDir dir;
  auto bare = OpenOrFail({.path = dir.Sub("db"), .schema_json = R"({"tables": {}})"});
  CHECK_ERROR(stage::RegisterFunctions(*bare), Code::kFailedPrecondition, "stage::SchemaJson");
}

TEST_CASE("concurrent deploys to one app from two threads are serialized") {
  Studio s;
  const std::string sid = [&] {
    const std::string session = s.NewSession();
    return s
        .Call("stage:publishApp",
              {{"name", "A"}, {"sessionId", session}, {"updatedByEmail", kEmail}})["appSid"]
        .as_string();
  }();
  const std::string session_a = s.NewSession();
  const std::string session_b = s.NewSession();
  constexpr int kDeploysEach = 10;
  std::atomic<int> failures{0};
  std::mutex mu;
  std::vector<std::string> versions;
  auto deployer = [&](const std::string& session, const std::string& who) {
    for (int i = 0; i < kDeploysEach; ++i) {
      absl::StatusOr<Value> result =
          s.db->Call("stage:deploy",
                     Value(Object{{"appSid", sid},
                                  {"sessionId", session},
                                  {"files", Array{Object{{"path", "/app/App.tsx"},
                                                         {"content", who + std::to_string(i)}}}},
                                  {"entry", "/app/App.tsx"},
                                  {"updatedByEmail", who}}));
      if (!result.ok()) {
        ++failures;
        continue;
      }
      std::lock_guard<std::mutex> lock(mu);
      versions.push_back((*result)["versionSid"].as_string());
    }
  };
  std::thread a(deployer, session_a, "a@x");
  std::thread b(deployer, session_b, "b@x");
  a.join();
  b.join();
  CHECK(failures == 0);
  CHECK(versions.size() == 2 * kDeploysEach);
  // Every deploy made exactly one version; the preview channel is one record, pointing at the
  // last committed deploy, with that deploy's session and author.
  CHECK(s.Call("stage:listAppVersions", {{"appSid", sid}}).as_array().size() ==
        1 + 2 * kDeploysEach);
  Value preview = s.Call("stage:getResolvedAppChannel", {{"appSid", sid}, {"channel", "preview"}});
  const Value& last = preview["version"];
  CHECK(preview["appVersionSid"] == last["sid"]);
  CHECK(preview["sessionId"] == last["sessionId"]);
  CHECK(preview["updatedByEmail"] == last["createdByEmail"]);
  absl::StatusOr<std::vector<Document>> newest = s.db->Query([&](Reader& r) {
    return r.Table("stage_app_versions")
        .WithIndex("by_app", Eq("appSid", sid))
        .Order(SortOrder::kDesc)
        .Take(1);
  });
  REQUIRE_OK(newest);
  CHECK((*newest)[0]["sid"] == preview["appVersionSid"]);
  // Each session's render version counts its own deploys.
  CHECK(s.Call("stage:getSessionStatus", {{"sessionId", session_a}})["render"]["version"]
            .as_float64() == kDeploysEach);
  CHECK(s.Call("stage:readFile", {{"sessionId", session_b}, {"path", "/app/App.tsx"}})["version"]
            .as_float64() == kDeploysEach);
}

TEST_CASE("live views fire on the steps that change them, and only those") {
  Studio s;
  const std::string session = s.NewSession();
  const std::string other_session = s.NewSession();
  const std::string sid =
      s.Call("stage:publishApp",
             {{"name", "Live"}, {"sessionId", session}, {"updatedByEmail", kEmail}})["appSid"]
          .as_string();
  const std::string other_sid =
      s.Call("stage:publishApp",
             {{"name", "Else"}, {"sessionId", other_session}, {"updatedByEmail", kEmail}})["appSid"]
          .as_string();
  // Wrappers that count how often each view runs: a commit outside what a view read must not
  // re-run it (unchanged results are never delivered, so deliveries alone could not tell).
  auto status_runs = CountRuns(*s.db, "test:countedStatus", "stage:getSessionStatus");
  auto summary_runs = CountRuns(*s.db, "test:countedSummary", "stage:getAppChannelsForSummary");
  UpdateCounter status, summary;
  absl::StatusOr<Subscription> status_sub = s.db->SubscribeFunction(
      "test:countedStatus", Value(Object{{"sessionId", session}}), status.Slot());
  absl::StatusOr<Subscription> summary_sub = s.db->SubscribeFunction(
      "test:countedSummary", Value(Object{{"appSid", sid}}), summary.Slot());
  REQUIRE_OK(status_sub);
  REQUIRE_OK(summary_sub);
  auto settle = [&] { REQUIRE_OK(s.db->WaitForDelivery(s.db->LastCommitTimestamp(), kHangGuard)); };
  settle();
  int status_seen = status.count(), summary_seen = summary.count();
  int status_ran = *status_runs, summary_ran = *summary_runs;
  // Each step: whether the status view and the summary view must fire (re-run and deliver a
  // changed result) or cost nothing (not even a re-run).
  auto step = [&](const char* what, bool status_fires, bool summary_fires, auto&& run) {
    INFO(what);
    run();
    settle();
    CHECK((status.count() > status_seen) == status_fires);
    CHECK((summary.count() > summary_seen) == summary_fires);
    CHECK((*status_runs > status_ran) == status_fires);
    CHECK((*summary_runs > summary_ran) == summary_fires);
    status_seen = status.count();
    summary_seen = summary.count();
    status_ran = *status_runs;
    summary_ran = *summary_runs;
  };
  step("a write to another session", false, false, [&] {
    s.Call("stage:writeFile", {{"sessionId", other_session}, {"path", "/a"}, {"content", "x"}});
  });
  step("a deploy to another app", false, false, [&] {
    s.Call("stage:deploy", {{"appSid", other_sid},
                            {"sessionId", other_session},
                            {"files", Array{}},
                            {"entry", "/a"},
                            {"updatedByEmail", kEmail}});
  });
  step("a file write in the session", true, false, [&] {
    s.Call("stage:writeFile", {{"sessionId", session}, {"path", "/app/App.tsx"}, {"content", "1"}});
  });
  step("a deploy", true, true, [&] {
    s.Call("stage:deploy", {{"appSid", sid},
                            {"sessionId", session},
                            {"files", Array{}},
                            {"entry", "/app/App.tsx"},
                            {"updatedByEmail", kEmail}});
  });
  step("a render result", true, false, [&] {
    s.Call("stage:recordRenderResult",
           {{"sessionId", session}, {"version", 1.0}, {"error", nullptr}});
  });
  step("a render trigger", true, false, [&] {
    s.Call("stage:triggerRender", {{"sessionId", session}, {"entry", "/app/App.tsx"}});
  });
  step("a stale render result (ignored, writes nothing)", false, false, [&] {
    s.Call("stage:recordRenderResult",
           {{"sessionId", session}, {"version", 1.0}, {"error", "late"}});
  });
  step("google scopes of the app's own session", false, false, [&] {
    s.Call("stage:setGoogleScopes", {{"sessionId", session}, {"scopes", Array{"openid"}}});
  });
  step("a channel set by hand", false, true, [&] {
    const Value preview = s.Call("stage:getResolvedAppChannel",
                                 {{"appSid", sid}, {"channel", "preview"}})["appVersionSid"];
    s.Call("stage:upsertAppChannel", {{"appSid", sid},
                                      {"channel", "preview"},
                                      {"appVersionSid", preview},
                                      {"branch", "hotfix"},
                                      {"updatedByEmail", kEmail}});
  });
  step("a promotion", false, true, [&] {
    s.Call("stage:promote", {{"appSid", sid}, {"updatedByEmail", kEmail}});
  });
  step("a rollback", false, true, [&] {
    s.Call("stage:rollback", {{"appSid", sid}, {"updatedByEmail", kEmail}});
  });
  step("google scopes of another session", false, false, [&] {
    s.Call("stage:setGoogleScopes", {{"sessionId", other_session}, {"scopes", Array{"email"}}});
  });
  std::lock_guard<std::mutex> lock(summary.mu);
  CHECK(summary.last["production"]["version"]["source"] == Value("publish"));
  CHECK(summary.last["preview"]["version"]["source"] == Value("studio_deploy"));
}

TEST_CASE("drive recordings: validated, stored, transcribed by a scheduled job that is live") {
  std::atomic<int> transcriptions{0};
  Studio s({.transcribe = [&](const StoredFile& file,
                              std::string_view bytes) -> absl::StatusOr<std::string> {
    ++transcriptions;
    return absl::StrCat(file.content_type, ": ", bytes.size(), " bytes");
  }});
  const std::string session = s.NewSession();
  const std::string audio(1000, 'a');
  absl::StatusOr<DocumentId> storage = s.db->files().Store("audio/webm", audio);
  REQUIRE_OK(storage);
  Object good{{"sessionId", session},         {"fileId", "drive-file-1"},
              {"filename", "standup.webm"},   {"contentType", "audio/webm"},
              {"sizeBytes", 1000.0},          {"storageId", Value(*storage)},
              {"recordedAt", 1700000000000.0}};
  auto with = [&](std::string_view field, Value value) {
    Object changed = good;
    changed[field] = std::move(value);
    return changed;
  };
  CHECK_ERROR(s.Try("stage:storeDriveRecording", with("sizeBytes", 0.0)), Code::kInvalidArgument,
              "stage_drive_recordings", "sizeBytes", "positive");
  CHECK_ERROR(s.Try("stage:storeDriveRecording", with("sizeBytes", -5.0)), Code::kInvalidArgument,
              "sizeBytes");
  CHECK_ERROR(s.Try("stage:storeDriveRecording", with("sizeBytes", 999.0)), Code::kInvalidArgument,
              "sizeBytes", "1000 bytes");
  CHECK_ERROR(s.Try("stage:storeDriveRecording", with("contentType", "text/plain")),
              Code::kInvalidArgument, "contentType", "text/plain");
  CHECK_ERROR(s.Try("stage:storeDriveRecording", with("fileId", "")), Code::kInvalidArgument,
              "fileId", "required");
  CHECK_ERROR(s.Try("stage:storeDriveRecording", with("filename", "")), Code::kInvalidArgument,
              "filename", "required");
  CHECK_ERROR(s.Try("stage:storeDriveRecording", with("sizeBytes", 999.5)), Code::kInvalidArgument,
              "sizeBytes", "whole");
  absl::StatusOr<DocumentId> deleted = s.db->files().Store("audio/webm", audio);
  REQUIRE_OK(deleted);
  REQUIRE_OK(s.db->files().Delete(*deleted));
  CHECK_ERROR(s.Try("stage:storeDriveRecording", with("storageId", Value(*deleted))),
              Code::kInvalidArgument, "storageId", deleted->text());
  Object no_storage = good;
  no_storage.erase("storageId");
  CHECK_ERROR(s.Try("stage:storeDriveRecording", no_storage), Code::kInvalidArgument, "storageId");
  CHECK_ERROR(s.Try("stage:storeDriveRecording", with("storageId", Value(session))),
              Code::kInvalidArgument, "storageId", "_storage");
  CHECK(s.Call("stage:listDriveRecordings", {{"sessionId", session}}).as_array().empty());
  CHECK(transcriptions == 0);

  Value stored = s.Call("stage:storeDriveRecording", good);
  const std::string recording = stored["recordingId"].as_string();
  UpdateCounter live;
  absl::StatusOr<Subscription> sub = s.db->SubscribeFunction(
      "stage:getDriveRecording", Value(Object{{"recordingId", recording}}), live.Slot());
  REQUIRE_OK(sub);
  // The scheduler's thread runs the job; the live view must show its success.
  REQUIRE(PollUntil([&] {
    std::lock_guard<std::mutex> lock(live.mu);
    return live.last["transcription"]["state"] == Value("success");
  }));
  Value done = s.Call("stage:getDriveRecording", {{"recordingId", recording}});
  CHECK(done["transcript"] == Value("audio/webm: 1000 bytes"));
  CHECK(done["transcriptionJobId"] == stored["jobId"]);
  CHECK(transcriptions == 1);
  CHECK(s.Call("stage:listDriveRecordings", {{"sessionId", session}}).as_array().size() == 1);
  // The internal functions are not callable from the public entry point.
  CHECK_ERROR(s.Try("stage:saveTranscript", {{"recordingId", recording}, {"transcript", "x"}}),
              Code::kPermissionDenied);
}

TEST_CASE("without a transcriber the transcription job fails with a clear error") {
  Studio s;
  const std::string session = s.NewSession();
  absl::StatusOr<DocumentId> storage = s.db->files().Store("video/mp4", "xyz");
  REQUIRE_OK(storage);
  Value stored = s.Call("stage:storeDriveRecording", {{"sessionId", session},
                                                      {"fileId", "f"},
                                                      {"filename", "clip.mp4"},
                                                      {"contentType", "video/mp4"},
                                                      {"sizeBytes", 3},  // ints, as numbers
                                                      {"storageId", Value(*storage)},
                                                      {"recordedAt", 1}});
  CHECK(s.Call("stage:getDriveRecording", {{"recordingId", stored["recordingId"]}})["sizeBytes"] ==
        Value(3.0));
  Value view;
  REQUIRE(PollUntil([&] {
    view = s.Call("stage:getDriveRecording", {{"recordingId", stored["recordingId"]}});
    return view["transcription"]["state"] == Value("failed");
  }));
  CHECK(view["transcription"]["error"].as_string().find("no transcriber") != std::string::npos);
}

}  // namespace
