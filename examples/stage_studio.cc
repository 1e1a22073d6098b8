// stage_studio: Stage's backend in-process. A studio session gets files and a render, the app
// is published, deployed twice (each deploy updates the preview channel), promoted to
// production and rolled back, while a subscription to stage:getAppChannelsForSummary prints
// the channel summary each time a step changes it.
//
//   stage_studio [DB_DIR]
//
// DB_DIR must not exist yet or be empty (default: a fresh directory under the system temp
// directory, removed at the end). Exits 0 when every step behaved as printed, 1 otherwise.
#include <stagedb/apps/stage.h>
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

// "v<source> @<branch>" for one channel of the summary, or "-".
std::string Describe(const Value& channel) {
  if (!channel.is_object()) return "-";
  std::string text = channel["version"]["source"].is_string()
                         ? channel["version"]["source"].as_string()
                         : std::string("?");
  text += " " + channel["appVersionSid"].as_string().substr(0, 10);
  if (channel["branch"].is_string()) text += " @" + channel["branch"].as_string();
  return text;
}

int Run(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<stagedb::Database>> opened = stagedb::Database::Open(
      {.path = dir, .schema_json = std::string(stagedb::stage::SchemaJson())});
  if (!opened.ok()) {
    std::cerr << "Open: " << opened.status() << "\n";
    return 1;
  }
  stagedb::Database& db = **opened;
  if (absl::Status s = stagedb::stage::RegisterFunctions(db); !s.ok()) {
    std::cerr << "RegisterFunctions: " << s << "\n";
    return 1;
  }
  auto call = [&](std::string_view name, Object args) -> Value {
    return ValueOrReport(db.Call(name, Value(std::move(args))), name);
  };
  const std::string email = "ada@example.com";

  std::cout << "1. A session with two files and a render:\n";
  const Value session = call("stage:createSession", {});
  call("stage:writeFile", {{"sessionId", session},
                           {"path", "/app/App.tsx"},
                           {"content", "export default () => <h1>Hello</h1>;"}});
  call("stage:writeFile", {{"sessionId", session},
                           {"path", std::string(stagedb::stage::kWorkflowManifestPath)},
                           {"content", R"({"version": 1, "workflows": {"signup": {"steps": [
                               {"kind": "sheets.appendRow"}, {"kind": "message.send"}]}}})"}});
  const Value render =
      call("stage:triggerRender", {{"sessionId", session}, {"entry", "/app/App.tsx"}});
  call("stage:recordRenderResult",
       {{"sessionId", session}, {"version", render}, {"error", nullptr}});
  const Value status = call("stage:getSessionStatus", {{"sessionId", session}});
  Expect(status["files"].is_array() && status["files"].as_array().size() == 2 &&
             status["render"]["renderedAt"].is_float64(),
         "status: 2 files, render version 1 rendered");
  absl::StatusOr<Value> bad_manifest = db.Call(
      "stage:writeFile",
      Value(Object{
          {"sessionId", session},
          {"path", std::string(stagedb::stage::kWorkflowManifestPath)},
          {"content", R"({"version": 1, "workflows": {"x": {"steps": [{"kind": "fax"}]}}})"}}));
  Expect(absl::IsInvalidArgument(bad_manifest.status()),
         "an invalid manifest is refused: " + std::string(bad_manifest.status().message()));

  std::cout << "2. Publish the app (production points at its first version):\n";
  const Value published = call("stage:publishApp", {{"name", "Signup desk"},
                                                    {"authorEmail", email},
                                                    {"sessionId", session},
                                                    {"updatedByEmail", email}});
  const Value app = published["appSid"];
  if (!app.is_string()) return 1;

  std::cout << "3. The channel summary, live (a line per change):\n";
  std::mutex mu;
  int updates = 0;
  Value last;
  absl::StatusOr<stagedb::Subscription> sub =
      db.SubscribeFunction("stage:getAppChannelsForSummary", Value(Object{{"appSid", app}}),
                           stagedb::UpdateSlot([&](const stagedb::QueryUpdate& update) {
                             if (!update.result.ok()) return;
                             std::lock_guard<std::mutex> lock(mu);
                             ++updates;
                             last = *update.result;
                             std::cout << "     preview: " << Describe(last["preview"])
                                       << " | production: " << Describe(last["production"]) << "\n";
                           }));
  if (!sub.ok()) return 1;
  auto settle = [&] { (void)db.WaitForDelivery(db.LastCommitTimestamp(), absl::Seconds(30)); };
  settle();
  auto current = [&](std::string_view channel) {
    std::lock_guard<std::mutex> lock(mu);
    return last[channel]["appVersionSid"];
  };

  std::cout << "4. Deploy twice from the studio:\n";
  Value first;
  for (int i = 1; i <= 2; ++i) {
    const Value deployed = call(
        "stage:deploy",
        {{"appSid", app},
         {"sessionId", session},
         {"files",
          Array{Object{{"path", "/app/App.tsx"},
                       {"content", "export default () => <h1>v" + std::to_string(i) + "</h1>;"}}}},
         {"entry", "/app/App.tsx"},
         {"branch", "main"},
         {"commitSha", "c" + std::to_string(i)},
         {"updatedByEmail", email}});
    if (i == 1) first = deployed["versionSid"];
    settle();
    Expect(current("preview") == deployed["versionSid"],
           "deploy " + std::to_string(i) + " is the preview");
  }

  std::cout << "5. Promote the preview to production:\n";
  const Value promoted = call("stage:promote", {{"appSid", app}, {"updatedByEmail", email}});
  settle();
  Expect(current("production") == promoted["versionSid"], "production is the promoted version");

  std::cout << "6. Roll production back:\n";
  const Value rolled = call("stage:rollback", {{"appSid", app}, {"updatedByEmail", email}});
  settle();
  Expect(current("production") == published["versionSid"] &&
             rolled["versionSid"] == published["versionSid"],
         "production is the published version again");
  {
    std::lock_guard<std::mutex> lock(mu);
    Expect(updates == 5,
           "the summary changed on exactly 5 steps (first run, 2 deploys, promote, "
           "rollback): " +
               std::to_string(updates));
  }
  return Finish();
}

}  // namespace

int main(int argc, char** argv) {
  return stagedb_examples::RunInDirectory(argc, argv, "stagedb-stage", Run);
}
