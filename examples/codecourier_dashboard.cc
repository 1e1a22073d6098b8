// codecourier_dashboard: CodeCourier's dashboard in-process. The runs list pages through a
// project's runs while a Trigger.dev stand-in thread starts more: the first page is a paginated
// subscription that keeps its range (new runs appear at its top), the later pages are read one
// by one, and together they show every run once. Then a sandbox conversation is followed live
// while the agent's callback writes into it, the session ends, and the scheduled learning
// extraction saves what it learned. The usage summary's counters close the tour.
//
//   codecourier_dashboard [DB_DIR]
//
// DB_DIR must not exist yet or be empty (default: a fresh directory under the system temp
// directory, removed at the end). Exits 0 when every step behaved as printed, 1 otherwise.
#include <stagedb/apps/codecourier.h>
#include <stagedb/stagedb.h>

#include <iostream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "example_support.h"

namespace {

using stagedb_examples::Expect;
using stagedb_examples::Finish;

using stagedb::Array;
using stagedb::Object;
using stagedb::Value;

std::vector<std::string> Ids(const Value& documents) {
  std::vector<std::string> ids;
  if (!documents.is_array()) return ids;
  for (const Value& document : documents.as_array()) ids.push_back(document["_id"].as_string());
  return ids;
}

Object PageArgs(const Value& project, Value cursor, Value end_cursor) {
  Object opts{{"numItems", 5.0}};
  if (cursor.is_string()) opts["cursor"] = cursor;
  if (end_cursor.is_string()) opts["endCursor"] = end_cursor;
  return {{"projectId", project}, {"paginationOpts", Value(std::move(opts))}};
}

int Run(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<stagedb::Database>> opened = stagedb::Database::Open(
      {.path = dir, .schema_json = std::string(stagedb::codecourier::SchemaJson())});
  if (!opened.ok()) {
    std::cerr << "Open: " << opened.status() << "\n";
    return 1;
  }
  stagedb::Database& db = **opened;
  // The host's field key would come from a key file or a KMS; a fixed one for the example.
  absl::StatusOr<stagedb::FieldKey> key = stagedb::FieldKey::FromHex(
      "5f1e0c9a7b3d2e4f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7");
  absl::Status registered = stagedb::codecourier::RegisterFunctions(
      db,
      {.field_key = *key,
       .extract_learnings = [](const std::vector<stagedb::codecourier::SandboxMessage>& messages)
           -> absl::StatusOr<std::string> {
         // Stands in for the LLM call: the last assistant message is the lesson.
         for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
           if (it->role == "assistant") return "Learned: " + it->content;
         }
         return std::string();
       }});
  if (!registered.ok()) {
    std::cerr << "RegisterFunctions: " << registered << "\n";
    return 1;
  }
  const stagedb::Auth ada = stagedb::Auth::User({.subject = "user_ada"});
  // A failed call is a failed step: reported at once on the main thread; on the stand-in
  // threads collected (under `mu`) and reported by the main thread after joining them.
  std::mutex mu;
  const std::thread::id main_thread = std::this_thread::get_id();
  std::vector<std::string> background_failures;
  auto checked = [&](std::string_view name, absl::StatusOr<Value> result) -> Value {
    if (result.ok()) return *std::move(result);
    std::string failure = std::string(name) + ": " + result.status().ToString();
    if (std::this_thread::get_id() == main_thread) {
      Expect(false, failure);
    } else {
      std::lock_guard<std::mutex> lock(mu);
      background_failures.push_back(std::move(failure));
    }
    return Value(nullptr);
  };
  auto report_background_failures = [&] {
    std::lock_guard<std::mutex> lock(mu);
    for (const std::string& failure : background_failures) Expect(false, failure);
    background_failures.clear();
  };
  auto call = [&](std::string_view name, Object args, const stagedb::Auth& auth) -> Value {
    return checked(name, db.Call(name, Value(std::move(args)), auth));
  };
  auto internal = [&](std::string_view name, Object args) -> Value {
    return checked(name, db.CallInternal(name, Value(std::move(args))));
  };
  auto settle = [&] { (void)db.WaitForDelivery(db.LastCommitTimestamp(), absl::Seconds(30)); };

  std::cout << "1. Ada signs in, creates a project and a workflow, starts 12 runs:\n";
  // Clerk's webhook brings Ada's profile; the dashboard then stores the signed-in user.
  internal("codecourier/users:upsertFromClerk",
           {{"clerkId", "user_ada"}, {"email", "ada@example.com"}, {"name", "Ada"}});
  call("codecourier/users:store", {}, ada);
  const Value project =
      call("codecourier/projects:create", {{"name", "Courier web"}, {"slug", "courier-web"}}, ada);
  const Value workflow = call("codecourier/workflows:create",
                              {{"projectId", project},
                               {"name", "Feature pipeline"},
                               {"pipelineType", "feature"},
                               {"steps", Array{Object{{"name", "design"}, {"kind", "designer"}},
                                               Object{{"name", "check"}, {"kind", "checker"}}}}},
                              ada);
  if (!project.is_string() || !workflow.is_string()) return 1;
  auto start_run = [&](const std::string& name) {
    return call("codecourier/runs:create",
                {{"projectId", project}, {"workflowId", workflow}, {"name", name}}, ada);
  };
  for (int i = 1; i <= 12; ++i) start_run("run " + std::to_string(i));

  std::cout << "2. The runs list: page 1 live, later pages read while 8 more runs start:\n";
  const Value first =
      call("codecourier/runs:listPaginated", PageArgs(project, Value(), Value()), ada);
  Value live_first;
  absl::StatusOr<stagedb::Subscription> runs_sub = db.SubscribeFunction(
      "codecourier/runs:listPaginated", Value(PageArgs(project, Value(), first["continueCursor"])),
      stagedb::UpdateSlot([&](const stagedb::QueryUpdate& update) {
        if (!update.result.ok()) return;
        std::lock_guard<std::mutex> lock(mu);
        const bool first_update = live_first.is_null();
        live_first = *update.result;
        if (first_update) return;
        for (const stagedb::DocumentChange& added : update.changes.added) {
          std::cout << "     page 1 + " << added.document["name"].as_string() << "\n";
        }
      }),
      ada);
  if (!runs_sub.ok()) return 1;
  std::thread trigger([&] {
    for (int i = 13; i <= 20; ++i) start_run("run " + std::to_string(i));
  });
  std::vector<std::string> later;
  Value cursor = first["continueCursor"];
  for (int page = 2; cursor.is_string(); ++page) {
    const Value result =
        call("codecourier/runs:listPaginated", PageArgs(project, cursor, Value()), ada);
    if (!result["page"].is_array()) break;  // the failed call was reported
    std::cout << "     page " << page << ": " << result["page"].as_array().size() << " runs\n";
    for (const std::string& id : Ids(result["page"])) later.push_back(id);
    cursor = result["isDone"] == Value(true) ? Value() : result["continueCursor"];
  }
  trigger.join();
  report_background_failures();
  settle();
  {
    std::lock_guard<std::mutex> lock(mu);
    const std::vector<std::string> top = Ids(live_first["page"]);
    std::set<std::string> all(top.begin(), top.end());
    all.insert(later.begin(), later.end());
    Expect(top.size() == 13,
           "the live first page holds the 8 new runs and its 5: " + std::to_string(top.size()));
    Expect(later.size() == 7,
           "the later pages hold the 7 older runs: " + std::to_string(later.size()));
    Expect(all.size() == 20, "every run shown exactly once (no gap, no duplicate)");
  }

  std::cout << "3. A sandbox conversation, live, while the agent answers via callbacks:\n";
  const Value sandbox =
      call("codecourier/sandboxes:create", {{"projectId", project}, {"name", "Fix login"}}, ada);
  const Value other =
      call("codecourier/sandboxes:create", {{"projectId", project}, {"name", "Other"}}, ada);
  int conversation_updates = 0;
  size_t messages_shown = 0;
  absl::StatusOr<stagedb::Subscription> chat = db.SubscribeFunction(
      "codecourier/sandboxMessages:listBySandbox", Value(Object{{"sandboxId", sandbox}}),
      stagedb::UpdateSlot([&](const stagedb::QueryUpdate& update) {
        if (!update.result.ok()) return;
        std::lock_guard<std::mutex> lock(mu);
        ++conversation_updates;
        for (const stagedb::DocumentChange& added : update.changes.added) {
          std::cout << "     [" << added.document["role"].as_string() << "] "
                    << added.document["content"].as_string() << "\n";
        }
        if (update.result->is_array()) messages_shown = update.result->as_array().size();
      }),
      ada);
  if (!chat.ok()) return 1;
  settle();
  call("codecourier/sandboxMessages:send",
       {{"sandboxId", sandbox}, {"content", "The login form rejects valid emails"}}, ada);
  settle();
  std::thread agent([&] {
    for (const char* line : {"Reproduced: the regex rejects '+' in the local part",
                             "Fixed the regex and added a test; always run the auth tests"}) {
      internal("codecourier/callbacks:appendSandboxMessage",
               {{"sandboxId", sandbox}, {"role", "assistant"}, {"content", line}});
    }
  });
  agent.join();
  report_background_failures();
  settle();
  int before_other = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    before_other = conversation_updates;
  }
  internal("codecourier/callbacks:appendSandboxMessage",
           {{"sandboxId", other}, {"role", "assistant"}, {"content", "elsewhere"}});
  settle();
  {
    std::lock_guard<std::mutex> lock(mu);
    Expect(messages_shown == 3, "the conversation shows 3 messages");
    Expect(conversation_updates == before_other, "a message in another sandbox did not change it");
  }

  std::cout << "4. The session ends; the scheduled extraction saves a learning:\n";
  call("codecourier/sandboxes:endSession", {{"sandboxId", sandbox}}, ada);
  Value state;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    absl::SleepFor(absl::Milliseconds(5));
    state = call("codecourier/sandboxes:get", {{"sandboxId", sandbox}},
                 ada)["learningExtraction"]["state"];
  } while (state != Value("success") && state != Value("failed") && absl::Now() < deadline);
  Expect(state == Value("success"), "the extraction job succeeded");
  const Value learnings =
      call("codecourier/learnings:listForProject", {{"projectId", project}}, ada);
  const bool learned = learnings.is_array() && learnings.as_array().size() == 1;
  Expect(learned, "one learning: " + (learned ? learnings.as_array()[0]["content"].as_string()
                                              : std::string("none")));

  std::cout << "5. The usage dashboard's counters:\n";
  const Value summary =
      call("codecourier/usage:getProjectUsageSummary",
           {{"projectId", project}, {"startDate", "2026-01-01"}, {"endDate", "2026-12-31"}}, ada);
  const Value& counters = summary["counters"];
  // A failed call leaves no counters (null): print "?" rather than read a missing number.
  auto count = [&](const char* field) {
    const Value& value = counters[field];
    return value.is_float64() ? std::to_string(static_cast<int64_t>(value.as_float64()))
                              : std::string("?");
  };
  std::cout << "     runs " << count("runCount") << ", sandboxes " << count("sandboxCount")
            << ", workflows " << count("workflowCount") << ", members " << count("memberCount")
            << "\n";
  Expect(counters["runCount"] == Value(20.0) && counters["sandboxCount"] == Value(2.0) &&
             counters["workflowCount"] == Value(1.0) && counters["memberCount"] == Value(1.0),
         "the counters match what was created");
  return Finish();
}

}  // namespace

int main(int argc, char** argv) {
  return stagedb_examples::RunInDirectory(argc, argv, "stagedb-codecourier", Run);
}
