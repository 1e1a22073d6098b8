// collab_session: two agents and an observer in one collaboration session. Agent A creates the
// session, agent B joins with the invite code, the observer follows a live transcript (a
// subscription to collab:listMessages that prints each message as it commits) while the agents
// chat, edit a shared note (one edit is refused as stale), and move the session's status.
//
//   collab_session [DB_DIR]
//
// DB_DIR must not exist yet or be empty (default: a fresh directory under the system temp
// directory, removed at the end). Exits 0 when every step behaved as printed, 1 otherwise.
#include <stagedb/apps/collab.h>
#include <stagedb/stagedb.h>

#include <iostream>
#include <mutex>
#include <string>

#include "example_support.h"

namespace {

using stagedb_examples::Expect;
using stagedb_examples::Finish;
using stagedb_examples::ValueOrReport;

using stagedb::Object;
using stagedb::Value;

int Run(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<stagedb::Database>> opened = stagedb::Database::Open(
      {.path = dir, .schema_json = std::string(stagedb::collab::SchemaJson())});
  if (!opened.ok()) {
    std::cerr << "Open: " << opened.status() << "\n";
    return 1;
  }
  stagedb::Database& db = **opened;
  if (absl::Status s = stagedb::collab::RegisterFunctions(db); !s.ok()) {
    std::cerr << "RegisterFunctions: " << s << "\n";
    return 1;
  }
  auto attempt = [&](std::string_view name, Object args) {
    return db.Call(name, Value(std::move(args)));
  };
  auto call = [&](std::string_view name, Object args) -> Value {
    return ValueOrReport(attempt(name, std::move(args)), name);
  };
  // Waits until the transcript has caught up with every commit so far.
  auto settle = [&] {
    if (absl::Status s = db.WaitForDelivery(db.LastCommitTimestamp(), absl::Seconds(30)); !s.ok()) {
      Expect(false, "transcript delivery: " + s.ToString());
    }
  };

  std::cout << "1. Agent A (claude) creates a session:\n";
  const Value created =
      call("collab:createSession", {{"name", "Refactor the parser"}, {"agentId", "claude"}});
  if (!created.is_object()) return 1;
  const Value sid = created["sessionId"];
  const Value token_a = created["agentToken"];
  const Value observer = created["observerToken"];
  std::cout << "  session " << sid.as_string() << ", invite " << created["inviteCode"].as_string()
            << "\n";

  std::cout << "2. Agent B (codex) joins with the invite code; a second join is refused:\n";
  const Value joined =
      call("collab:joinSession", {{"inviteCode", created["inviteCode"]}, {"agentId", "codex"}});
  const Value token_b = joined["agentToken"];
  absl::StatusOr<Value> again =
      attempt("collab:joinSession", {{"inviteCode", created["inviteCode"]}, {"agentId", "eve"}});
  Expect(again.status().code() == absl::StatusCode::kFailedPrecondition,
         "reusing the invite: " + again.status().ToString());
  const Value status = call("collab:getSession", {{"sessionId", sid}, {"token", observer}});
  Expect(status["status"] == Value("active") && status["agentBId"] == Value("codex"),
         "the session is active with codex as agent B");

  std::cout << "3. The observer follows the live transcript:\n";
  std::mutex mu;
  int64_t printed = 0;  // the highest seq printed
  absl::StatusOr<stagedb::Subscription> transcript = db.SubscribeFunction(
      "collab:listMessages", Value(Object{{"sessionId", sid}, {"token", observer}}),
      stagedb::UpdateSlot([&](const stagedb::QueryUpdate& update) {
        if (!update.result.ok()) return;
        std::lock_guard<std::mutex> lock(mu);
        for (const Value& m : update.result->as_array()) {
          if (m["seq"].as_int64() <= printed) continue;
          printed = m["seq"].as_int64();
          std::cout << "    [" << printed << "] " << m["authorRole"].as_string() << " ("
                    << m["authorAgentId"].as_string() << "): " << m["content"].as_string() << "\n";
        }
      }));
  if (!transcript.ok()) {
    std::cerr << "subscribe: " << transcript.status() << "\n";
    return 1;
  }
  const Object as_a{{"sessionId", sid}, {"token", token_a}};
  const Object as_b{{"sessionId", sid}, {"token", token_b}};
  auto with = [](Object args, Object more) {
    for (auto& [k, v] : more) args[k] = v;
    return args;
  };
  call("collab:sendMessage", with(as_a, {{"content", "I'll take the tokenizer."}}));
  call("collab:sendMessage", with(as_b, {{"content", "Then I'll do the AST nodes."}}));
  call("collab:sendMessage",
       {{"sessionId", sid}, {"token", observer}, {"content", "Watching; ship small PRs."}});
  settle();
  {
    std::lock_guard<std::mutex> lock(mu);
    Expect(printed == 3, "the transcript printed 3 messages in order");
  }

  std::cout << "4. A shared note; a stale edit is refused:\n";
  const Value note =
      call("collab:createNote", with(as_a, {{"title", "Plan"}, {"content", "1. tokenizer"}}));
  const Value v2 = call("collab:updateNote", with(as_b, {{"noteId", note},
                                                         {"expectedVersion", Value::Int64(1)},
                                                         {"content", "1. tokenizer\n2. AST"}}));
  Expect(v2 == Value::Int64(2), "codex's edit made version 2");
  absl::StatusOr<Value> stale =
      attempt("collab:updateNote", with(as_a, {{"noteId", note},
                                               {"expectedVersion", Value::Int64(1)},
                                               {"content", "1. tokenizer only"}}));
  Expect(stale.status().code() == absl::StatusCode::kAborted,
         "claude's edit of version 1 conflicts: " + stale.status().ToString());
  const Value notes = call("collab:listNotes", {{"sessionId", sid}, {"token", observer}});
  Expect(notes.is_array() && notes.as_array().size() == 1 &&
             notes.as_array()[0]["content"] == Value("1. tokenizer\n2. AST"),
         "the note keeps codex's version");

  std::cout << "5. Status: pause, resume, pause, complete; reopening is refused:\n";
  absl::StatusOr<Value> early = attempt("collab:setStatus", with(as_a, {{"status", "completed"}}));
  Expect(early.status().code() == absl::StatusCode::kFailedPrecondition,
         "active -> completed (completed only from paused): " + early.status().ToString());
  for (const char* next : {"paused", "active", "paused", "completed"}) {
    call("collab:setStatus", with(as_a, {{"status", next}}));
  }
  absl::StatusOr<Value> reopen = attempt("collab:setStatus", with(as_b, {{"status", "active"}}));
  Expect(reopen.status().code() == absl::StatusCode::kFailedPrecondition,
         "completed -> active: " + reopen.status().ToString());
  settle();
  {
    std::lock_guard<std::mutex> lock(mu);
    Expect(printed == 7, "the transcript shows the 4 status changes as system messages");
  }
  // The log is paginated, newest first: read it 5 rows at a time.
  size_t rows = 0;
  Value cursor(nullptr);
  for (int pages = 0; pages < 10; ++pages) {
    const Value page = call("collab:listActivity",
                            {{"sessionId", sid},
                             {"token", observer},
                             {"paginationOpts", Object{{"numItems", 5.0}, {"cursor", cursor}}}});
    if (!page.is_object()) break;
    rows += page["page"].as_array().size();
    if (page["isDone"].as_boolean()) break;
    cursor = page["continueCursor"];
  }
  Expect(rows == 11, "the activity log has one row per change (11), read in pages of 5");

  return Finish();
}

}  // namespace

int main(int argc, char** argv) {
  return stagedb_examples::RunInDirectory(argc, argv, "stagedb-collab", Run);
}
