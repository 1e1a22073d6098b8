// The collaboration application (stagedb/apps/collab.h): identifiers and tokens, invites, the
// message sequence, optimistic note locking, files, presence TTL, the activity log written with
// every mutation (and not by a failed one), soft delete, ratings, the status machine, private
// listings, templates, webhooks, compute credits, and live queries firing on the writes that
// change them and only those. Written against the public API only.
#include "stagedb/apps/collab.h"

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <limits>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "stagedb/secrets.h"
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
using Code = absl::StatusCode;

struct Collab {
  TempDir dir;
  std::unique_ptr<Database> db;
  // The functions' clock runs this far ahead of the real one.
  std::shared_ptr<std::atomic<int64_t>> clock_offset_ms = std::make_shared<std::atomic<int64_t>>(0);
  std::mutex mu;
  std::vector<collab::WebhookDelivery> deliveries;  // delivered ones; guarded by mu
  std::string failing_url;                          // the sender refuses it; guarded by mu

  Collab() {
    db = OpenOrFail({.path = dir.Sub("db"),
                     .schema_json = std::string(collab::SchemaJson()),
                     .durability = Durability::kNoSync,
                     .ttl_sweep_interval = absl::ZeroDuration()});
    collab::CollabOptions options;
    options.now = [offset = clock_offset_ms] {
      return absl::Now() + absl::Milliseconds(offset->load());
    };
    options.send_webhook = [this](const collab::WebhookDelivery& d) {
      std::lock_guard<std::mutex> lock(mu);
      if (d.url == failing_url) return absl::UnavailableError("endpoint down");
      deliveries.push_back(d);
      return absl::OkStatus();
    };
    REQUIRE_OK(collab::RegisterFunctions(*db, std::move(options)));
  }
  Value Call(std::string_view name, Object args, const Auth& auth = Auth::Anonymous()) {
    return MustSucceed(db->Call(name, Value(std::move(args)), auth), name);
  }
  absl::StatusOr<Value> Try(std::string_view name, Object args,
                            const Auth& auth = Auth::Anonymous()) {
    return db->Call(name, Value(std::move(args)), auth);
  }
  // The activity rows of every session and of none, counted by a direct query.
  size_t ActivityCount() {
    absl::StatusOr<size_t> n = db->Query([](Reader& r) -> absl::StatusOr<size_t> {
      absl::StatusOr<std::vector<Document>> rows = r.Table("collab_activity").Collect();
      if (!rows.ok()) return rows.status();
      return rows->size();
    });
    REQUIRE(n.ok());
    return *n;
  }
  size_t DeliveryCount() {
    std::lock_guard<std::mutex> lock(mu);
    return deliveries.size();
  }
  // The scheduled delivery jobs: the mutation that logs the event schedules them, so counting
  // them right after it is exact.
  std::vector<Document> DeliveryJobs() {
    absl::StatusOr<std::vector<Document>> jobs = db->Query([](Reader& r) {
      return r.Table("_scheduled_functions")
          .Filter([](const Document& j) { return j["name"] == Value("collab:deliverWebhooks"); })
          .Collect();
    });
    REQUIRE(jobs.ok());
    return *std::move(jobs);
  }
  // Waits until every subscription has seen every commit so far.
  void Settle() { REQUIRE_OK(db->WaitForDelivery(db->LastCommitTimestamp(), kHangGuard)); }
};

// The first page of a paginated listing with room for everything the tests write.
Object FirstPage(Object args = {}) {
  args["paginationOpts"] = Value(Object{{"numItems", 1000.0}});
  return args;
}

// The message of a failed call (empty when it succeeded).
std::string ErrorText(const absl::StatusOr<Value>& result) {
  return result.ok() ? std::string() : std::string(result.status().message());
}

// A session with both agents joined: sid and the three tokens.
struct Session {
  std::string sid, a, b, observer;
  Object As(const std::string& token) const { return {{"sessionId", sid}, {"token", token}}; }
  Object As(const std::string& token, Object more) const {
    Object args = As(token);
    for (auto& [k, v] : more) args[k] = v;
    return args;
  }
};

Session NewSession(Collab& c, Object extra = {}, bool join = true) {
  Object args{{"name", "pairing"}, {"agentId", "agent-alpha"}};
  for (auto& [k, v] : extra) args[k] = v;
  Value created = c.Call("collab:createSession", std::move(args));
  Session s{created["sessionId"].as_string(), created["agentToken"].as_string(), "",
            created["observerToken"].as_string()};
  if (join) {
    s.b = c.Call("collab:joinSession",
                 {{"inviteCode", created["inviteCode"]}, {"agentId", "agent-beta"}})["agentToken"]
              .as_string();
  }
  return s;
}

TEST_CASE("sessions: sid, tokens shown once and stored hashed, invite codes") {
  Collab c;
  Value created = c.Call("collab:createSession", {{"name", "pairing"}, {"agentId", "alpha"}});
  const std::string sid = created["sessionId"].as_string();
  const std::string token = created["agentToken"].as_string();
  const std::string observer = created["observerToken"].as_string();
  CHECK(std::regex_match(sid, std::regex("ses_[0-9a-z]{20}")));
  CHECK(token.starts_with("agt_"));
  CHECK(observer.starts_with("obs_"));
  CHECK(
      std::regex_match(created["inviteCode"].as_string(), std::regex("[A-Z]+-[A-Z]+-[1-9][0-9]")));
  CHECK(created["inviteExpiresAt"].as_float64() > 0);

  // The row holds hashes, never the tokens.
  absl::StatusOr<Document> row = c.db->Query([&](Reader& r) -> absl::StatusOr<Document> {
    absl::StatusOr<std::optional<Document>> d =
        r.Table("collab_sessions").WithIndex("by_sid", Eq("sid", Value(sid))).First();
    if (!d.ok()) return d.status();
    return **d;
  });
  REQUIRE(row.ok());
  CHECK((*row)["agentAToken"] == Value(HashToken(token).sha256_hex));
  CHECK((*row)["observerToken"] == Value(HashToken(observer).sha256_hex));
  CHECK((*row)["status"] == Value("waiting"));
  CHECK((*row)["messageCount"] == Value::Int64(0));
  CHECK(row->ToJson().find(token) == std::string::npos);

  Value view = c.Call("collab:getSession", {{"sessionId", sid}, {"token", token}});
  CHECK(view["role"] == Value("agent_a"));
  CHECK(view["inviteCode"] == created["inviteCode"]);
  CHECK(view["agentAToken"].is_undefined());
  CHECK(c.Call("collab:getSession", {{"sessionId", sid}, {"token", observer}})["role"] ==
        Value("observer"));
  CHECK(c.Call("collab:getSession", {{"sessionId", sid}, {"token", observer}})["inviteCode"]
            .is_undefined());
  CHECK_ERROR(c.Try("collab:getSession", {{"sessionId", sid}, {"token", "agt_wrong"}}),
              Code::kPermissionDenied, sid, "token");
  CHECK_ERROR(c.Try("collab:getSession", {{"sessionId", "ses_nope"}, {"token", token}}),
              Code::kNotFound, "collab_sessions", "ses_nope");
  CHECK_ERROR(c.Try("collab:createSession", {{"name", ""}, {"agentId", "alpha"}}),
              Code::kInvalidArgument, "collab_sessions", "name");
  CHECK_ERROR(c.Try("collab:createSession", {{"name", "x"}, {"agentId", "a"}, {"mode", "batch"}}),
              Code::kInvalidArgument, "mode");

  // Invite codes: word-word-number, and different each time.
  std::set<std::string> codes;
  for (int i = 0; i < 50; ++i) {
    absl::StatusOr<std::string> code = collab::NewInviteCode();
    REQUIRE(code.ok());
    CHECK(std::regex_match(*code, std::regex("[A-Z]+-[A-Z]+-[1-9][0-9]")));
    codes.insert(*code);
  }
  CHECK(codes.size() > 40);
}

TEST_CASE("joining: agent B with the invite; wrong, used and expired codes are refused") {
  Collab c;
  Value created = c.Call("collab:createSession", {{"name", "pairing"}, {"agentId", "alpha"}});
  const std::string sid = created["sessionId"].as_string();
  const std::string code = created["inviteCode"].as_string();

  CHECK_ERROR(c.Try("collab:joinSession", {{"inviteCode", "NOPE-NOPE-11"}, {"agentId", "beta"}}),
              Code::kPermissionDenied, "table \"collab_sessions\" field \"inviteCode\"",
              "NOPE-NOPE-11", "matches no session");
  CHECK_ERROR(c.Try("collab:joinSession",
                    {{"inviteCode", "NOPE-NOPE-11"}, {"agentId", "beta"}, {"sessionId", sid}}),
              Code::kPermissionDenied, "inviteCode", sid, "wrong invite code");
  absl::StatusOr<Value> own =
      c.Try("collab:joinSession", {{"inviteCode", code}, {"agentId", "alpha"}});
  CHECK_ERROR(own, Code::kInvalidArgument, "collab_sessions", "field \"agentBId\"", "alpha");
  CHECK(ErrorText(own).find(sid) == std::string::npos);

  // Case does not matter: codes are read aloud.
  std::string lower = code;
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  Value joined = c.Call("collab:joinSession", {{"inviteCode", lower}, {"agentId", "beta"}});
  CHECK(joined["sessionId"] == Value(sid));
  CHECK(joined["role"] == Value("agent_b"));
  const std::string b = joined["agentToken"].as_string();
  CHECK(b.starts_with("agt_"));
  Value view = c.Call("collab:getSession", {{"sessionId", sid}, {"token", b}});
  CHECK(view["role"] == Value("agent_b"));
  CHECK(view["agentBId"] == Value("beta"));
  CHECK(view["status"] == Value("active"));  // joining starts the session

  // Errors reachable with a code alone name neither the session nor its agents.
  absl::StatusOr<Value> used =
      c.Try("collab:joinSession", {{"inviteCode", code}, {"agentId", "gamma"}});
  CHECK_ERROR(used, Code::kFailedPrecondition,
              "table \"collab_sessions\" field \"inviteCode\": invite code \"" + code +
                  "\" is already used");
  CHECK(ErrorText(used).find(sid) == std::string::npos);
  CHECK(ErrorText(used).find("beta") == std::string::npos);

  // An invite past inviteExpiresAt.
  Value late = c.Call("collab:createSession", {{"name", "late"}, {"agentId", "alpha"}});
  *c.clock_offset_ms = 25 * 3600 * 1000;  // the default invite_ttl is 24 h
  const size_t activity = c.ActivityCount();
  absl::StatusOr<Value> expired =
      c.Try("collab:joinSession", {{"inviteCode", late["inviteCode"]}, {"agentId", "beta"}});
  CHECK_ERROR(expired, Code::kFailedPrecondition, "collab_sessions", "inviteCode",
              late["inviteCode"].as_string() + "\" is expired");
  CHECK(ErrorText(expired).find(late["sessionId"].as_string()) == std::string::npos);
  CHECK(c.ActivityCount() == activity);
}

TEST_CASE("joining: only a waiting session takes agent B") {
  Collab c;
  // Agent A may start (and pause, and complete) a session before anyone joins.
  for (const std::vector<std::string>& moves :
       {std::vector<std::string>{"active"}, std::vector<std::string>{"active", "paused"},
        std::vector<std::string>{"active", "paused", "completed"}}) {
    Value created = c.Call("collab:createSession", {{"name", "solo"}, {"agentId", "alpha"}});
    const std::string sid = created["sessionId"].as_string();
    for (const std::string& to : moves) {
      c.Call("collab:setStatus",
             {{"sessionId", sid}, {"token", created["agentToken"]}, {"status", to}});
    }
    const size_t activity = c.ActivityCount();
    CHECK_ERROR(
        c.Try("collab:joinSession", {{"inviteCode", created["inviteCode"]}, {"agentId", "beta"}}),
        Code::kFailedPrecondition, "collab_sessions", sid, "field \"status\"",
        "is \"" + moves.back() + "\"");
    CHECK(c.ActivityCount() == activity);
    CHECK(c.Call("collab:getSession",
                 {{"sessionId", sid}, {"token", created["observerToken"]}})["agentBId"]
              .is_undefined());
  }
}

TEST_CASE("messages: seq counts up per session, gapless, with the author's role") {
  Collab c;
  Session s = NewSession(c);
  Session t = NewSession(c);
  CHECK(c.Call("collab:sendMessage", s.As(s.a, {{"content", "hi"}})) == Value::Int64(1));
  CHECK(c.Call("collab:sendMessage", s.As(s.b, {{"content", "hello"}, {"msgType", "handoff"}})) ==
        Value::Int64(2));
  CHECK(c.Call("collab:sendMessage", t.As(t.a, {{"content", "other"}})) == Value::Int64(1));
  CHECK(c.Call("collab:sendMessage", s.As(s.observer, {{"content", "watching"}})) ==
        Value::Int64(3));

  Value messages = c.Call("collab:listMessages", s.As(s.observer));
  REQUIRE(messages.as_array().size() == 3);
  CHECK(messages.as_array()[0]["authorRole"] == Value("agent_a"));
  CHECK(messages.as_array()[0]["authorAgentId"] == Value("agent-alpha"));
  CHECK(messages.as_array()[0]["msgType"] == Value("chat"));
  CHECK(messages.as_array()[1]["authorRole"] == Value("agent_b"));
  CHECK(messages.as_array()[1]["msgType"] == Value("handoff"));
  CHECK(messages.as_array()[2]["authorRole"] == Value("observer"));
  Value after = c.Call("collab:listMessages", s.As(s.a, {{"afterSeq", Value::Int64(2)}}));
  REQUIRE(after.as_array().size() == 1);
  CHECK(after.as_array()[0]["seq"] == Value::Int64(3));

  CHECK_ERROR(c.Try("collab:sendMessage", s.As(s.a, {{"content", ""}})), Code::kInvalidArgument,
              "collab_messages", "content");
  CHECK_ERROR(c.Try("collab:sendMessage", s.As(s.a, {{"content", "x"}, {"msgType", "system"}})),
              Code::kInvalidArgument, "msgType");
  // The session's counter and the unique (sessionId, seq) index agree.
  CHECK(c.Call("collab:getSession", s.As(s.a))["messageCount"] == Value::Int64(3));

  // Concurrent senders still get distinct, gapless numbers.
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < 10; ++j) {
        if (!c.db->Call("collab:sendMessage",
                        Value(s.As(i % 2 ? s.a : s.b, {{"content", "burst"}})))
                 .ok()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  CHECK(failures == 0);
  messages = c.Call("collab:listMessages", s.As(s.a));
  REQUIRE(messages.as_array().size() == 43);
  for (size_t i = 0; i < 43; ++i) CHECK(messages.as_array()[i]["seq"] == Value::Int64(i + 1));
}

TEST_CASE("messages: reads are bounded by limit (default 200, at most 1000)") {
  Collab c;
  Session s = NewSession(c);
  for (int i = 0; i < 203; ++i) c.Call("collab:sendMessage", s.As(s.a, {{"content", "m"}}));
  Value first = c.Call("collab:listMessages", s.As(s.b));
  REQUIRE(first.as_array().size() == 200);
  CHECK(first.as_array()[199]["seq"] == Value::Int64(200));
  Value rest = c.Call("collab:listMessages", s.As(s.b, {{"afterSeq", Value::Int64(200)}}));
  REQUIRE(rest.as_array().size() == 3);
  CHECK(rest.as_array()[0]["seq"] == Value::Int64(201));
  Value two = c.Call("collab:listMessages",
                     s.As(s.b, {{"afterSeq", Value::Int64(10)}, {"limit", Value::Int64(2)}}));
  REQUIRE(two.as_array().size() == 2);
  CHECK(two.as_array()[1]["seq"] == Value::Int64(12));
  CHECK(
      c.Call("collab:listMessages", s.As(s.b, {{"limit", Value::Int64(1000)}})).as_array().size() ==
      203);
  for (int64_t bad : {0, -1, 1001}) {
    CHECK_ERROR(c.Try("collab:listMessages", s.As(s.b, {{"limit", Value::Int64(bad)}})),
                Code::kInvalidArgument, "collab_messages", "limit");
  }
}

TEST_CASE("notes: optimistic locking refuses a stale version and writes nothing") {
  Collab c;
  Session s = NewSession(c);
  Value note = c.Call("collab:createNote", s.As(s.a, {{"title", "Plan"}, {"content", "v1"}}));
  CHECK(c.Call("collab:updateNote", s.As(s.b, {{"noteId", note},
                                               {"expectedVersion", Value::Int64(1)},
                                               {"content", "v2 by beta"}})) == Value::Int64(2));
  const size_t activity = c.ActivityCount();
  CHECK_ERROR(c.Try("collab:updateNote", s.As(s.a, {{"noteId", note},
                                                    {"expectedVersion", Value::Int64(1)},
                                                    {"content", "v2 by alpha"}})),
              Code::kAborted, "table \"collab_notes\"", note.as_string(), "field \"version\"",
              "conflict", "stale version 1", "current 2");
  CHECK(c.ActivityCount() == activity);
  Value notes = c.Call("collab:listNotes", s.As(s.observer));
  REQUIRE(notes.as_array().size() == 1);
  CHECK(notes.as_array()[0]["content"] == Value("v2 by beta"));
  CHECK(notes.as_array()[0]["version"] == Value::Int64(2));
  CHECK(notes.as_array()[0]["lastEditor"] == Value("agent-beta"));
  CHECK(notes.as_array()[0]["title"] == Value("Plan"));

  // Observers read notes but do not edit them; a note of another session is not found.
  CHECK_ERROR(c.Try("collab:createNote", s.As(s.observer, {{"title", "x"}, {"content", ""}})),
              Code::kPermissionDenied, "observer", "edit notes");
  Session t = NewSession(c);
  CHECK_ERROR(c.Try("collab:updateNote", t.As(t.a, {{"noteId", note},
                                                    {"expectedVersion", Value::Int64(2)},
                                                    {"content", "hijack"}})),
              Code::kNotFound, "collab_notes", t.sid);
  CHECK_ERROR(c.Try("collab:createNote", s.As(s.a, {{"title", ""}, {"content", ""}})),
              Code::kInvalidArgument, "collab_notes", "title");
}

TEST_CASE("files: unique path per session, SHA-256 content hash") {
  Collab c;
  Session s = NewSession(c);
  Session t = NewSession(c);
  Value w = c.Call("collab:writeFile", s.As(s.a, {{"path", "src/main.py"}, {"content", "abc"}}));
  // SHA-256("abc"), the FIPS 180-2 test vector.
  CHECK(w["contentHash"] ==
        Value("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
  CHECK(w["created"] == Value(true));
  w = c.Call("collab:writeFile", s.As(s.b, {{"path", "src/main.py"}, {"content", "abcd"}}));
  CHECK(w["created"] == Value(false));
  c.Call("collab:writeFile", t.As(t.a, {{"path", "src/main.py"}, {"content", "other"}}));
  Value files = c.Call("collab:listFiles", s.As(s.observer));
  REQUIRE(files.as_array().size() == 1);
  CHECK(files.as_array()[0]["contentHash"] == Value(HashToken("abcd").sha256_hex));
  CHECK(c.Call("collab:readFile", s.As(s.a, {{"path", "src/main.py"}}))["content"] ==
        Value("abcd"));
  CHECK(c.Call("collab:readFile", s.As(s.a, {{"path", "nope"}})).is_null());
  CHECK_ERROR(
      c.Try("collab:writeFile", s.As(s.a, {{"path", std::string(401, 'p')}, {"content", ""}})),
      Code::kInvalidArgument, "collab_files", "path", "over 400");
  CHECK_ERROR(c.Try("collab:writeFile", s.As(s.observer, {{"path", "x"}, {"content", ""}})),
              Code::kPermissionDenied, "observer");
  // The unique index backs the rule: a second row for the path is refused.
  absl::Status dup = c.db->Mutate([&](Transaction& tx) -> absl::Status {
    absl::StatusOr<std::vector<Document>> rows = tx.Table("collab_files").Collect();
    if (!rows.ok()) return rows.status();
    Object copy = rows->front().fields();
    copy.erase("_id");
    copy.erase("_creationTime");
    return tx.Insert("collab_files", copy).status();
  });
  CHECK(dup.code() == Code::kAlreadyExists);
}

TEST_CASE("presence: heartbeat upserts status and activity; rows expire after the TTL") {
  Collab c;
  Session s = NewSession(c);
  c.Call("collab:heartbeat", s.As(s.a, {{"status", "working"}, {"currentActivity", "tests"}}));
  c.Call("collab:heartbeat", s.As(s.a, {{"status", "idle"}}));
  Value presence = c.Call("collab:listPresence", s.As(s.b));
  REQUIRE(presence.as_array().size() == 1);
  CHECK(presence.as_array()[0]["agentId"] == Value("agent-alpha"));
  CHECK(presence.as_array()[0]["status"] == Value("idle"));
  CHECK(presence.as_array()[0]["currentActivity"].is_undefined());
  CHECK_ERROR(c.Try("collab:heartbeat", s.As(s.a, {{"status", "away"}})), Code::kInvalidArgument,
              "status");

  // Beta's last heartbeat is 200 s old: the sweep removes it, alpha's stays.
  *c.clock_offset_ms = -200'000;
  c.Call("collab:heartbeat", s.As(s.b, {{"status", "online"}}));
  *c.clock_offset_ms = 0;
  // Stale by the functions' clock: hidden already, though the row is still stored.
  CHECK(c.Call("collab:listPresence", s.As(s.b)).as_array().size() == 1);
  absl::StatusOr<size_t> stored = c.db->Query([](Reader& r) -> absl::StatusOr<size_t> {
    absl::StatusOr<std::vector<Document>> rows = r.Table("collab_presence").Collect();
    if (!rows.ok()) return rows.status();
    return rows->size();
  });
  REQUIRE(stored.ok());
  CHECK(*stored == 2);
  absl::StatusOr<size_t> swept = c.db->SweepExpired();
  REQUIRE(swept.ok());
  CHECK(*swept == 1);
  presence = c.Call("collab:listPresence", s.As(s.b));
  REQUIRE(presence.as_array().size() == 1);
  CHECK(presence.as_array()[0]["agentId"] == Value("agent-alpha"));

  // Moving the app's clock past the TTL hides alpha too, before any sweep (the engine's sweep
  // runs on the real clock, by which the row is fresh). The clock is set from alpha's
  // lastSeenAt, so however long the test took so far does not count.
  const double alpha_seen = presence.as_array()[0]["lastSeenAt"].as_float64();
  auto app_clock_at = [&](double ms_after_alpha) {
    const double real_now = absl::ToDoubleMilliseconds(absl::Now() - absl::UnixEpoch());
    *c.clock_offset_ms = static_cast<int64_t>(alpha_seen + ms_after_alpha - real_now);
  };
  app_clock_at(121'000);
  CHECK(c.Call("collab:listPresence", s.As(s.b)).as_array().empty());
  app_clock_at(60'000);
  CHECK(c.Call("collab:listPresence", s.As(s.b)).as_array().size() == 1);
}

TEST_CASE("activity: every mutation appends a row in its transaction; a failed one none") {
  Collab c;
  Session s = NewSession(c);
  c.Call("collab:sendMessage", s.As(s.a, {{"content", "hi"}}));
  Value note = c.Call("collab:createNote", s.As(s.a, {{"title", "T"}, {"content", ""}}));
  c.Call("collab:updateNote",
         s.As(s.b, {{"noteId", note}, {"expectedVersion", Value::Int64(1)}, {"content", "x"}}));
  c.Call("collab:writeFile", s.As(s.b, {{"path", "a"}, {"content", "x"}}));
  c.Call("collab:heartbeat", s.As(s.a, {{"status", "online"}}));
  c.Call("collab:setStatus", s.As(s.a, {{"status", "paused"}}));
  c.Call("collab:addComputeCredits", s.As(s.a, {{"credits", Value::Int64(5)}}));
  c.Call("collab:submitComputeJob",
         s.As(s.b, {{"cost", Value::Int64(2)}, {"description", "lint"}}));
  c.Call("collab:rateAgent",
         s.As(s.a, {{"ratedAgentId", "agent-beta"}, {"rating", Value::Int64(4)}}));

  Value listed = c.Call("collab:listActivity", FirstPage(s.As(s.observer)));
  CHECK(listed["isDone"] == Value(true));
  const Array& rows = listed["page"].as_array();
  std::vector<std::string> actions;
  for (const Value& row : rows) actions.push_back(row["action"].as_string());
  std::reverse(actions.begin(), actions.end());  // the log lists newest first
  CHECK(actions == std::vector<std::string>{
                       "session.created", "session.joined", "message.created", "note.created",
                       "note.updated", "file.written", "presence.updated", "session.status_changed",
                       "compute.credited", "compute.job_submitted", "agent.rated"});
  REQUIRE(rows.size() == 11);
  CHECK(rows[9]["actor"] == Value("agent-beta"));
  CHECK(rows[3]["details"]["to"] == Value("paused"));

  // Page by page, newest first, each row once.
  std::vector<std::string> paged;
  Value cursor(nullptr);
  for (int pages = 0;; ++pages) {
    REQUIRE(pages < 10);
    Value page = c.Call(
        "collab:listActivity",
        s.As(s.observer, {{"paginationOpts", Object{{"numItems", 4.0}, {"cursor", cursor}}}}));
    CHECK(page["page"].as_array().size() <= 4);
    for (const Value& row : page["page"].as_array()) paged.push_back(row["action"].as_string());
    if (page["isDone"].as_boolean()) break;
    cursor = page["continueCursor"];
  }
  std::reverse(paged.begin(), paged.end());
  CHECK(paged == actions);
  for (double bad : {0.0, 1.5, 1001.0}) {
    CHECK_ERROR(
        c.Try("collab:listActivity", s.As(s.a, {{"paginationOpts", Object{{"numItems", bad}}}})),
        Code::kInvalidArgument, "collab_activity", "paginationOpts.numItems");
  }

  // Host-level operations are logged too, without a session.
  const size_t before = c.ActivityCount();
  c.Call("collab:createWorkspace", {{"name", "Lab"}, {"slug", "lab"}});
  c.Call("collab:upsertAgentProfile", {{"agentId", "agent-alpha"}, {"name", "Alpha"}},
         Auth::Admin());
  CHECK(c.ActivityCount() == before + 2);

  // Each failed mutation leaves no row (nor any other write).
  const size_t failed_before = c.ActivityCount();
  CHECK_FALSE(c.Try("collab:setStatus", s.As(s.a, {{"status", "waiting"}})).ok());
  CHECK_FALSE(c.Try("collab:submitComputeJob",
                    s.As(s.a, {{"cost", Value::Int64(99)}, {"description", "big"}}))
                  .ok());
  CHECK_FALSE(c.Try("collab:createWorkspace", {{"name", "Lab 2"}, {"slug", "lab"}}).ok());
  CHECK_FALSE(c.Try("collab:sendMessage", s.As("agt_forged", {{"content", "x"}})).ok());
  CHECK(c.ActivityCount() == failed_before);
  CHECK(c.Call("collab:getSession", s.As(s.a))["messageCount"] == Value::Int64(2));
}

TEST_CASE("status: waiting -> active <-> paused -> completed; anything else is refused") {
  Collab c;
  Session s = NewSession(c, {}, /*join=*/false);
  CHECK_ERROR(c.Try("collab:setStatus", s.As(s.a, {{"status", "paused"}})),
              Code::kFailedPrecondition, "collab_sessions", s.sid, "from \"waiting\"",
              "to \"paused\"");
  CHECK(c.Call("collab:setStatus", s.As(s.a, {{"status", "active"}})) == Value("active"));
  CHECK_ERROR(c.Try("collab:setStatus", s.As(s.a, {{"status", "waiting"}})),
              Code::kFailedPrecondition, "from \"active\"", "to \"waiting\"");
  CHECK_ERROR(c.Try("collab:setStatus", s.As(s.a, {{"status", "active"}})),
              Code::kFailedPrecondition, "from \"active\"", "to \"active\"");
  // Completed only from paused.
  CHECK_ERROR(c.Try("collab:setStatus", s.As(s.a, {{"status", "completed"}})),
              Code::kFailedPrecondition, "from \"active\"", "to \"completed\"",
              "allowed from \"active\": paused)");
  c.Call("collab:setStatus", s.As(s.a, {{"status", "paused"}}));
  c.Call("collab:setStatus", s.As(s.a, {{"status", "active"}}));
  c.Call("collab:setStatus", s.As(s.a, {{"status", "paused"}}));
  CHECK_ERROR(c.Try("collab:setStatus", s.As(s.observer, {{"status", "active"}})),
              Code::kPermissionDenied, "observer");
  c.Call("collab:setStatus", s.As(s.a, {{"status", "completed"}}));
  CHECK_ERROR(c.Try("collab:setStatus", s.As(s.a, {{"status", "active"}})),
              Code::kFailedPrecondition, "from \"completed\"", "to \"active\"", "none");
  // Each change is in the transcript as a system status message.
  Value messages = c.Call("collab:listMessages", s.As(s.a));
  REQUIRE(messages.as_array().size() == 5);
  CHECK(messages.as_array()[4]["authorRole"] == Value("system"));
  CHECK(messages.as_array()[4]["msgType"] == Value("status"));
  CHECK(messages.as_array()[4]["metadata"]["to"] == Value("completed"));
  // A completed session is read-only.
  CHECK_ERROR(c.Try("collab:sendMessage", s.As(s.a, {{"content", "late"}})),
              Code::kFailedPrecondition, s.sid, "completed");
  CHECK_ERROR(c.Try("collab:writeFile", s.As(s.a, {{"path", "a"}, {"content", ""}})),
              Code::kFailedPrecondition, "completed");
  CHECK_ERROR(c.Try("collab:createNote", s.As(s.a, {{"title", "late"}, {"content", ""}})),
              Code::kFailedPrecondition, s.sid, "completed", "edit notes");
  CHECK_ERROR(c.Try("collab:submitComputeJob",
                    s.As(s.a, {{"cost", Value::Int64(1)}, {"description", "late"}})),
              Code::kFailedPrecondition, s.sid, "completed", "compute jobs");
}

TEST_CASE("deleting a session is soft: rows stay, reads and listings skip it") {
  Collab c;
  Session s = NewSession(c);
  c.Call("collab:sendMessage", s.As(s.a, {{"content", "keep me"}}));
  CHECK_ERROR(c.Try("collab:deleteSession", s.As(s.b)), Code::kPermissionDenied, "agent_b");
  CHECK(c.Call("collab:listPublicSessions", FirstPage())["page"].as_array().size() == 1);
  c.Call("collab:deleteSession", s.As(s.a));
  CHECK_ERROR(c.Try("collab:getSession", s.As(s.a)), Code::kNotFound, s.sid);
  CHECK_ERROR(c.Try("collab:listMessages", s.As(s.a)), Code::kNotFound, s.sid);
  CHECK_ERROR(c.Try("collab:sendMessage", s.As(s.a, {{"content", "x"}})), Code::kNotFound, s.sid);
  CHECK(c.Call("collab:listPublicSessions", FirstPage())["page"].as_array().empty());
  // Still stored: the session (marked) and its messages and activity.
  absl::StatusOr<std::pair<size_t, size_t>> kept =
      c.db->Query([&](Reader& r) -> absl::StatusOr<std::pair<size_t, size_t>> {
        absl::StatusOr<std::vector<Document>> sessions =
            r.Table("collab_sessions").IncludeDeleted().Collect();
        absl::StatusOr<std::vector<Document>> messages = r.Table("collab_messages").Collect();
        if (!sessions.ok()) return sessions.status();
        if (!messages.ok()) return messages.status();
        if (sessions->size() != 1 || !(*sessions)[0]["deletedAt"].is_float64()) {
          return absl::InternalError("the session row is not kept marked");
        }
        return std::make_pair(sessions->size(), messages->size());
      });
  REQUIRE(kept.ok());
  CHECK(kept->second == 1);
}

TEST_CASE("listings: private sessions never appear; workspaces filter") {
  Collab c;
  Value ws = c.Call("collab:createWorkspace", {{"name", "Lab"}, {"slug", "lab"}});
  NewSession(c, {{"name", "open"}});
  NewSession(c, {{"name", "secret"}, {"isPrivate", true}});
  NewSession(c, {{"name", "lab open"}, {"workspaceId", ws}});
  NewSession(c, {{"name", "lab secret"}, {"workspaceId", ws}, {"isPrivate", true}});
  std::vector<std::string> names;
  const Value listed = c.Call("collab:listPublicSessions", FirstPage());
  CHECK(listed["isDone"] == Value(true));
  for (const Value& s : listed["page"].as_array()) {
    names.push_back(s["name"].as_string());
    CHECK(s["inviteCode"].is_undefined());
    CHECK(s["agentAToken"].is_undefined());
  }
  CHECK(names == std::vector<std::string>{"lab open", "open"});  // newest first
  Value lab = c.Call("collab:listPublicSessions", FirstPage({{"workspaceId", ws}}));
  REQUIRE(lab["page"].as_array().size() == 1);
  CHECK(lab["page"].as_array()[0]["name"] == Value("lab open"));
  // One at a time: newest first, then the next page from the cursor.
  Value one = c.Call("collab:listPublicSessions",
                     {{"paginationOpts", Object{{"numItems", 1.0}, {"cursor", Value(nullptr)}}}});
  REQUIRE(one["page"].as_array().size() == 1);
  CHECK(one["page"].as_array()[0]["name"] == Value("lab open"));
  CHECK(one["isDone"] == Value(false));
  Value two =
      c.Call("collab:listPublicSessions",
             {{"paginationOpts", Object{{"numItems", 1.0}, {"cursor", one["continueCursor"]}}}});
  REQUIRE(two["page"].as_array().size() == 1);
  CHECK(two["page"].as_array()[0]["name"] == Value("open"));
  CHECK_ERROR(c.Try("collab:listPublicSessions", {{"paginationOpts", Object{{"numItems", 0.0}}}}),
              Code::kInvalidArgument, "collab_sessions", "numItems");
  CHECK(c.Call("collab:listWorkspaces", {}).as_array().size() == 1);
  CHECK_ERROR(c.Try("collab:createWorkspace", {{"name", "Lab"}, {"slug", "lab"}}),
              Code::kAlreadyExists, "by_slug");
  // A workspace id that names no workspace.
  Value gone = c.Call("collab:createWorkspace", {{"name", "Tmp"}, {"slug", "tmp"}});
  REQUIRE_OK(c.db->Mutate(
      [&](Transaction& tx) { return tx.Delete(*DocumentId::Parse(gone.as_string())); }));
  CHECK_ERROR(
      c.Try("collab:createSession", {{"name", "x"}, {"agentId", "a"}, {"workspaceId", gone}}),
      Code::kNotFound, "collab_workspaces", gone.as_string());
}

TEST_CASE("ratings: 1 to 5, once per session, aggregates kept on the profile") {
  Collab c;
  Session s = NewSession(c);
  Session t = NewSession(c);
  c.Call("collab:upsertAgentProfile",
         {{"agentId", "agent-beta"}, {"name", "Beta"}, {"capabilities", Array{"python", "review"}}},
         Auth::Admin());
  for (int64_t bad : {0, 6, -1}) {
    CHECK_ERROR(c.Try("collab:rateAgent",
                      s.As(s.a, {{"ratedAgentId", "agent-beta"}, {"rating", Value::Int64(bad)}})),
                Code::kInvalidArgument, "collab_agentRatings", "rating", "between 1 and 5");
  }
  CHECK_ERROR(
      c.Try("collab:rateAgent", s.As(s.a, {{"ratedAgentId", "agent-beta"}, {"rating", 4.5}})),
      Code::kInvalidArgument, "rating");
  CHECK_ERROR(c.Try("collab:rateAgent",
                    s.As(s.a, {{"ratedAgentId", "agent-alpha"}, {"rating", Value::Int64(5)}})),
              Code::kInvalidArgument, "ratedAgentId", "not the other agent");
  CHECK_ERROR(c.Try("collab:rateAgent", s.As(s.observer, {{"ratedAgentId", "agent-beta"},
                                                          {"rating", Value::Int64(5)}})),
              Code::kPermissionDenied, "observer");
  c.Call("collab:rateAgent",
         s.As(s.a,
              {{"ratedAgentId", "agent-beta"}, {"rating", Value::Int64(5)}, {"review", "sharp"}}));
  CHECK_ERROR(c.Try("collab:rateAgent",
                    s.As(s.a, {{"ratedAgentId", "agent-beta"}, {"rating", Value::Int64(1)}})),
              Code::kAlreadyExists);
  c.Call("collab:rateAgent",
         t.As(t.a, {{"ratedAgentId", "agent-beta"}, {"rating", Value::Int64(2)}}));
  Value profile = c.Call("collab:getAgentProfile", {{"agentId", "agent-beta"}});
  CHECK(profile["name"] == Value("Beta"));
  CHECK(profile["ratingCount"] == Value::Int64(2));
  CHECK(profile["ratingSum"] == Value::Int64(7));
  CHECK(profile["ratingAverage"] == Value(3.5));
  CHECK(profile["capabilities"] == Value(Array{"python", "review"}));
  // Rating an agent without a profile creates one with the aggregates.
  c.Call("collab:rateAgent",
         s.As(s.b, {{"ratedAgentId", "agent-alpha"}, {"rating", Value::Int64(3)}}));
  profile = c.Call("collab:getAgentProfile", {{"agentId", "agent-alpha"}});
  CHECK(profile["ratingCount"] == Value::Int64(1));
  CHECK(profile["ratingAverage"] == Value(3.0));
  CHECK(c.Call("collab:listAgentRatings", {{"agentId", "agent-beta"}}).as_array().size() == 2);
  CHECK(c.Call("collab:getAgentProfile", {{"agentId", "nobody"}}).is_null());
}

TEST_CASE("templates: a session from a template gets its seed notes") {
  Collab c;
  Value tpl = c.Call("collab:createTemplate",
                     {{"name", "Code review"},
                      {"seedNotes", Array{Object{{"title", "Scope"}, {"content", "what to review"}},
                                          Object{{"title", "Findings"}, {"content", ""}}}}});
  CHECK_ERROR(c.Try("collab:createTemplate", {{"name", "Code review"}, {"seedNotes", Array{}}}),
              Code::kAlreadyExists, "by_name");
  CHECK_ERROR(c.Try("collab:createTemplate",
                    {{"name", "Blank"},
                     {"seedNotes", Array{Object{{"title", "Ok"}, {"content", ""}},
                                         Object{{"title", ""}, {"content", "x"}}}}}),
              Code::kInvalidArgument, "collab_templates", "seedNotes[1].title");
  // A template id that names no template.
  Value gone = c.Call("collab:createTemplate", {{"name", "Tmp"}, {"seedNotes", Array{}}});
  REQUIRE_OK(c.db->Mutate(
      [&](Transaction& tx) { return tx.Delete(*DocumentId::Parse(gone.as_string())); }));
  CHECK_ERROR(
      c.Try("collab:createSession", {{"name", "x"}, {"agentId", "a"}, {"templateId", gone}}),
      Code::kNotFound, "collab_templates", gone.as_string());
  Session s = NewSession(c, {{"templateId", tpl}});
  Value notes = c.Call("collab:listNotes", s.As(s.b));
  REQUIRE(notes.as_array().size() == 2);
  CHECK(notes.as_array()[0]["title"] == Value("Scope"));
  CHECK(notes.as_array()[0]["content"] == Value("what to review"));
  CHECK(notes.as_array()[0]["version"] == Value::Int64(1));
  CHECK(c.Call("collab:getSession", s.As(s.a))["templateId"] == tpl);
  // Another session's notes are its own copies.
  Session t = NewSession(c, {{"templateId", tpl}});
  c.Call("collab:updateNote",
         t.As(t.a, {{"noteId", c.Call("collab:listNotes", t.As(t.a)).as_array()[0]["_id"]},
                    {"expectedVersion", Value::Int64(1)},
                    {"content", "changed"}}));
  CHECK(c.Call("collab:listNotes", s.As(s.a)).as_array()[0]["content"] == Value("what to review"));
  CHECK(c.Call("collab:listTemplates", {}).as_array().size() == 1);
}

TEST_CASE("compute: credits never go below zero") {
  Collab c;
  Session s = NewSession(c);
  c.Call("collab:addComputeCredits", s.As(s.a, {{"credits", Value::Int64(10)}}));
  Value job = c.Call("collab:submitComputeJob",
                     s.As(s.b, {{"cost", Value::Int64(7)}, {"description", "build"}}));
  CHECK(job["balance"] == Value::Int64(3));
  Value pool = c.Call("collab:getComputePool", s.As(s.observer));
  CHECK_ERROR(c.Try("collab:submitComputeJob",
                    s.As(s.a, {{"cost", Value::Int64(4)}, {"description", "test"}})),
              Code::kFailedPrecondition, "collab_computePools", pool["poolId"].as_string(),
              "balance 3", "cost 4");
  CHECK(c.Call("collab:submitComputeJob",
               s.As(s.a, {{"cost", Value::Int64(3)}, {"description", "test"}}))["balance"] ==
        Value::Int64(0));
  pool = c.Call("collab:getComputePool", s.As(s.observer));
  CHECK(pool["balance"] == Value::Int64(0));
  CHECK(pool["jobs"].as_array().size() == 2);
  CHECK_ERROR(c.Try("collab:submitComputeJob",
                    s.As(s.a, {{"cost", Value::Int64(0)}, {"description", "free"}})),
              Code::kInvalidArgument, "cost", "not positive");
  CHECK_ERROR(c.Try("collab:addComputeCredits", s.As(s.a, {{"credits", Value::Int64(-5)}})),
              Code::kInvalidArgument, "credits");
  CHECK_ERROR(c.Try("collab:addComputeCredits", s.As(s.observer, {{"credits", Value::Int64(5)}})),
              Code::kPermissionDenied, "observer");
  CHECK_ERROR(c.Try("collab:addComputeCredits", s.As(s.a, {{"credits", Value::Int64(0)}})),
              Code::kInvalidArgument, "credits", "not positive");

  // Credits that would overflow int64 (and wrap the balance negative) are refused.
  const int64_t max = std::numeric_limits<int64_t>::max();
  CHECK(c.Call("collab:addComputeCredits", s.As(s.a, {{"credits", Value::Int64(max - 5)}})) ==
        Value::Int64(max - 5));
  const size_t activity = c.ActivityCount();
  CHECK_ERROR(c.Try("collab:addComputeCredits", s.As(s.a, {{"credits", Value::Int64(6)}})),
              Code::kInvalidArgument, "table \"collab_computePools\" field \"balance\"",
              "overflow");
  CHECK_ERROR(c.Try("collab:addComputeCredits", s.As(s.a, {{"credits", Value::Int64(max)}})),
              Code::kInvalidArgument, "collab_computePools", "balance");
  CHECK(c.ActivityCount() == activity);
  CHECK(c.Call("collab:getComputePool", s.As(s.a))["balance"] == Value::Int64(max - 5));
  CHECK(c.Call("collab:addComputeCredits", s.As(s.a, {{"credits", Value::Int64(5)}})) ==
        Value::Int64(max));

  // Concurrent jobs cannot overdraw together either.
  Session t = NewSession(c);
  c.Call("collab:addComputeCredits", t.As(t.a, {{"credits", Value::Int64(5)}}));
  std::atomic<int> accepted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < 3; ++j) {
        if (c.db->Call("collab:submitComputeJob",
                       Value(t.As(t.a, {{"cost", Value::Int64(1)}, {"description", "x"}})))
                .ok()) {
          ++accepted;
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  CHECK(accepted == 5);
  CHECK(c.Call("collab:getComputePool", t.As(t.a))["balance"] == Value::Int64(0));
}

TEST_CASE("compute: the pool shows its newest 50 jobs, newest first") {
  Collab c;
  Session s = NewSession(c);
  c.Call("collab:addComputeCredits", s.As(s.a, {{"credits", Value::Int64(60)}}));
  for (int i = 0; i < 55; ++i) {
    c.Call("collab:submitComputeJob", s.As(s.a, {{"cost", Value::Int64(1)}, {"description", "j"}}));
  }
  Value pool = c.Call("collab:getComputePool", s.As(s.observer));
  CHECK(pool["balance"] == Value::Int64(5));
  REQUIRE(pool["jobs"].as_array().size() == 50);
  CHECK(pool["jobs"].as_array()[0]["balanceAfter"] == Value::Int64(5));
  CHECK(pool["jobs"].as_array()[49]["balanceAfter"] == Value::Int64(54));
}

TEST_CASE("webhooks: matching events are delivered, signed with the secret") {
  Collab c;
  const Auth admin = Auth::Admin();
  CHECK_ERROR(c.Try("collab:registerWebhook",
                    {{"url", "https://example.com/hook"}, {"events", Array{"*"}}}),
              Code::kPermissionDenied, "admin");
  CHECK_ERROR(c.Try("collab:registerWebhook", {{"url", "ftp://x"}, {"events", Array{"*"}}}, admin),
              Code::kInvalidArgument, "collab_webhooks", "url", "ftp://x");
  CHECK_ERROR(c.Try("collab:registerWebhook", {{"url", "https://x"}, {"events", Array{}}}, admin),
              Code::kInvalidArgument, "events");
  Value messages_hook = c.Call(
      "collab:registerWebhook",
      {{"url", "https://example.com/messages"}, {"events", Array{"message.created"}}}, admin);
  Value notes_hook = c.Call("collab:registerWebhook",
                            {{"url", "https://example.com/notes"}, {"events", Array{"note.*"}}},
                            Auth::User({.subject = "ops", .roles = {"admin"}}));
  const std::string secret = messages_hook["secret"].as_string();
  CHECK(secret.starts_with("whsec_"));
  Value listed = c.Call("collab:listWebhooks", {}, admin);
  REQUIRE(listed.as_array().size() == 2);
  CHECK(listed.as_array()[0]["secret"].is_undefined());
  CHECK(listed.as_array()[0]["events"] == Value(Array{"message.created"}));

  Session s = NewSession(c);
  c.Call("collab:sendMessage", s.As(s.a, {{"content", "ping"}}));
  c.Call("collab:heartbeat", s.As(s.a, {{"status", "online"}}));  // matches no filter
  c.Call("collab:createNote", s.As(s.a, {{"title", "T"}, {"content", ""}}));
  REQUIRE(PollUntil([&] { return c.DeliveryCount() >= 2; }));
  std::vector<collab::WebhookDelivery> got;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    got = c.deliveries;
  }
  std::sort(got.begin(), got.end(), [](auto& x, auto& y) { return x.url < y.url; });
  REQUIRE(got.size() == 2);
  CHECK(got[0].url == "https://example.com/messages");
  CHECK(got[0].event == "message.created");
  CHECK(got[0].signature == "sha256=" + HmacSha256Hex(secret, got[0].body));
  CHECK(got[0].signature !=
        "sha256=" + HmacSha256Hex(notes_hook["secret"].as_string(), got[0].body));
  absl::StatusOr<Value> body = ValueFromJson(got[0].body);
  REQUIRE(body.ok());
  CHECK((*body)["event"] == Value("message.created"));
  CHECK((*body)["sessionId"] == Value(s.sid));
  CHECK((*body)["actor"] == Value("agent-alpha"));
  CHECK(got[1].url == "https://example.com/notes");
  CHECK(got[1].event == "note.created");

  // Deleted webhooks get nothing more; a sender error fails the delivery job.
  c.Call("collab:deleteWebhook", {{"webhookId", notes_hook["webhookId"]}}, admin);
  CHECK(c.Call("collab:listWebhooks", {}, admin).as_array().size() == 1);
  CHECK_ERROR(c.Try("collab:deleteWebhook", {{"webhookId", notes_hook["webhookId"]}}, admin),
              Code::kNotFound, "collab_webhooks");
  const size_t jobs = c.DeliveryJobs().size();
  c.Call("collab:createNote", s.As(s.a, {{"title", "U"}, {"content", ""}}));
  CHECK(c.DeliveryJobs().size() == jobs);  // no webhook takes note events any more
  c.Call("collab:sendMessage", s.As(s.a, {{"content", "pong"}}));
  CHECK(c.DeliveryJobs().size() == jobs + 1);
  REQUIRE(PollUntil([&] { return c.DeliveryCount() >= 3; }));
  {
    std::lock_guard<std::mutex> lock(c.mu);
    CHECK(std::count_if(c.deliveries.begin(), c.deliveries.end(),
                        [](const auto& d) { return d.url == "https://example.com/notes"; }) == 1);
    CHECK(c.deliveries.back().url == "https://example.com/messages");
  }
}

TEST_CASE("deleting a webhook is soft: the row stays; listings, events and deliveries skip it") {
  Collab c;
  const Auth admin = Auth::Admin();
  Value hook = c.Call("collab:registerWebhook",
                      {{"url", "https://example.com/all"}, {"events", Array{"*"}}}, admin);
  c.Call("collab:deleteWebhook", {{"webhookId", hook["webhookId"]}}, admin);
  CHECK(c.Call("collab:listWebhooks", {}, admin).as_array().empty());
  CHECK_ERROR(c.Try("collab:deleteWebhook", {{"webhookId", hook["webhookId"]}}, admin),
              Code::kNotFound, "collab_webhooks");
  // No event schedules a delivery to it, and a delivery scheduled before the deletion finds no
  // endpoint to send to (the delivery action reads its endpoints through this query).
  const size_t jobs = c.DeliveryJobs().size();
  NewSession(c);
  CHECK(c.DeliveryJobs().size() == jobs);
  CHECK(MustSucceed(c.db->CallInternal("collab:webhookEndpoints",
                                       Value(Object{{"webhookIds", Array{hook["webhookId"]}}})),
                    "collab:webhookEndpoints") == Value(Array{}));
  // Kept, marked with its deletion time: the seed hard-deletes nothing.
  absl::StatusOr<std::vector<Document>> kept =
      c.db->Query([](Reader& r) { return r.Table("collab_webhooks").IncludeDeleted().Collect(); });
  REQUIRE_OK(kept);
  REQUIRE(kept->size() == 1);
  CHECK((*kept)[0]["url"] == Value("https://example.com/all"));
  CHECK((*kept)[0]["deletedAt"].is_float64());
}

TEST_CASE("numbers: page sizes take 2 and 2.0; int64 arguments say how to write one") {
  Collab c;
  Session s = NewSession(c);
  for (int i = 0; i < 3; ++i) c.Call("collab:sendMessage", s.As(s.a, {{"content", "m"}}));
  // Before: `limit` was int64 (2.0 refused) and numItems float64 (2 refused).
  for (const Value& two : {Value(2), Value(2.0)}) {
    INFO(DebugString(two));
    CHECK(c.Call("collab:listMessages", s.As(s.b, {{"limit", two}})).as_array().size() == 2);
    CHECK(c.Call("collab:listActivity",
                 s.As(s.a, {{"paginationOpts", Object{{"numItems", two}}}}))["page"]
              .as_array()
              .size() == 2);
    CHECK(
        c.Call("collab:listPublicSessions", {{"paginationOpts", Object{{"numItems", two}}}})["page"]
            .is_array());
  }
  CHECK_ERROR(c.Try("collab:listMessages", s.As(s.b, {{"limit", 2.5}})), Code::kInvalidArgument,
              "collab_messages", "limit", "2.5", "whole number");
  // Ratings are int64 as in the seed: a C++ int works, a double is refused saying what to write.
  CHECK_ERROR(
      c.Try("collab:rateAgent", s.As(s.a, {{"ratedAgentId", "agent-beta"}, {"rating", 5.0}})),
      Code::kInvalidArgument, "argument \"rating\"", "expected int64",
      "stagedb::Value::Int64(...)");
  c.Call("collab:rateAgent", s.As(s.a, {{"ratedAgentId", "agent-beta"}, {"rating", 5}}));
}

TEST_CASE("webhooks: a sender error fails the delivery job, naming the endpoint") {
  Collab c;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    c.failing_url = "https://down.example.com/hook";
  }
  c.Call("collab:registerWebhook",
         {{"url", "https://down.example.com/hook"}, {"events", Array{"session.created"}}},
         Auth::Admin());
  c.Call("collab:registerWebhook",
         {{"url", "https://up.example.com/hook"}, {"events", Array{"session.created"}}},
         Auth::Admin());
  NewSession(c, {}, /*join=*/false);
  REQUIRE(c.DeliveryJobs().size() == 1);
  std::string state, error;
  REQUIRE(PollUntil([&] {
    const Document job = c.DeliveryJobs().front();
    state = job["state"].as_string();
    error = job["error"].is_string() ? job["error"].as_string() : "";
    return state == "failed" || state == "success";
  }));
  CHECK(state == "failed");
  CHECK(error.find("https://down.example.com/hook") != std::string::npos);
  CHECK(error.find("endpoint down") != std::string::npos);
  CHECK(error.find("up.example.com") == std::string::npos);
  // The other endpoint still got the event.
  std::lock_guard<std::mutex> lock(c.mu);
  REQUIRE(c.deliveries.size() == 1);
  CHECK(c.deliveries[0].url == "https://up.example.com/hook");
}

TEST_CASE("profiles: admins or the agent itself (by its own session token); patch given fields") {
  Collab c;
  Session s = NewSession(c);
  const Object profile{{"agentId", "agent-beta"}, {"name", "Beta"}};
  CHECK_ERROR(c.Try("collab:upsertAgentProfile", profile), Code::kPermissionDenied,
              "collab_agentProfiles", "agent-beta", "admin");
  CHECK_ERROR(c.Try("collab:upsertAgentProfile", profile, Auth::User({.subject = "u"})),
              Code::kPermissionDenied, "agent-beta");
  // Another agent's token, or the observer's, does not do.
  Object as_alpha = s.As(s.a, profile);
  CHECK_ERROR(c.Try("collab:upsertAgentProfile", as_alpha), Code::kPermissionDenied, "agent_a",
              "its own agent");
  CHECK_ERROR(c.Try("collab:upsertAgentProfile", s.As(s.observer, profile)),
              Code::kPermissionDenied, "observer");
  CHECK_ERROR(c.Try("collab:upsertAgentProfile", s.As("agt_forged", profile)),
              Code::kPermissionDenied, s.sid);
  CHECK(c.Call("collab:getAgentProfile", {{"agentId", "agent-beta"}}).is_null());

  c.Call("collab:upsertAgentProfile", s.As(s.b, {{"agentId", "agent-beta"},
                                                 {"name", "Beta"},
                                                 {"description", "reviews code"},
                                                 {"capabilities", Array{"python"}}}));
  Value p = c.Call("collab:getAgentProfile", {{"agentId", "agent-beta"}});
  CHECK(p["description"] == Value("reviews code"));
  // Only the given fields change.
  c.Call("collab:upsertAgentProfile", {{"agentId", "agent-beta"}, {"name", "Beta 2"}},
         Auth::User({.subject = "ops", .roles = {"admin"}}));
  p = c.Call("collab:getAgentProfile", {{"agentId", "agent-beta"}});
  CHECK(p["name"] == Value("Beta 2"));
  CHECK(p["description"] == Value("reviews code"));
  CHECK(p["capabilities"] == Value(Array{"python"}));
  c.Call("collab:upsertAgentProfile",
         s.As(s.b, {{"agentId", "agent-beta"}, {"capabilities", Array{"go"}}}));
  p = c.Call("collab:getAgentProfile", {{"agentId", "agent-beta"}});
  CHECK(p["name"] == Value("Beta 2"));
  CHECK(p["description"] == Value("reviews code"));
  CHECK(p["capabilities"] == Value(Array{"go"}));
  // A new profile without a name is named after the agent.
  c.Call("collab:upsertAgentProfile", s.As(s.a, {{"agentId", "agent-alpha"}}));
  CHECK(c.Call("collab:getAgentProfile", {{"agentId", "agent-alpha"}})["name"] ==
        Value("agent-alpha"));
  CHECK_ERROR(c.Try("collab:upsertAgentProfile", {{"agentId", "x"}, {"name", ""}}, Auth::Admin()),
              Code::kInvalidArgument, "collab_agentProfiles", "name");
}

TEST_CASE("webhooks: a workspace's webhook takes only that workspace's sessions' events") {
  Collab c;
  Value ws = c.Call("collab:createWorkspace", {{"name", "Lab"}, {"slug", "lab"}});
  c.Call("collab:registerWebhook",
         {{"url", "https://lab.example.com"}, {"events", Array{"session.*"}}, {"workspaceId", ws}},
         Auth::Admin());
  // Delivery jobs are scheduled by the mutation itself, so counting them is exact.
  auto jobs = [&] {
    absl::StatusOr<size_t> n = c.db->Query([](Reader& r) -> absl::StatusOr<size_t> {
      absl::StatusOr<std::vector<Document>> all = r.Table("_scheduled_functions").Collect();
      if (!all.ok()) return all.status();
      return static_cast<size_t>(std::count_if(all->begin(), all->end(), [](const Document& j) {
        return j["name"] == Value("collab:deliverWebhooks");
      }));
    });
    REQUIRE(n.ok());
    return *n;
  };
  NewSession(c, {}, /*join=*/false);
  CHECK(jobs() == 0);
  Session s = NewSession(c, {{"workspaceId", ws}}, /*join=*/false);
  CHECK(jobs() == 1);
  c.Call("collab:sendMessage", s.As(s.a, {{"content", "not a session event"}}));
  CHECK(jobs() == 1);
  REQUIRE(PollUntil([&] { return c.DeliveryCount() == 1; }));
  std::lock_guard<std::mutex> lock(c.mu);
  CHECK(c.deliveries[0].event == "session.created");
  CHECK(c.deliveries[0].url == "https://lab.example.com");
}

TEST_CASE("registration needs the tables; without a webhook sender the delivery job fails") {
  TempDir dir;
  std::unique_ptr<Database> db =
      OpenOrFail({.path = dir.Sub("db"), .schema_json = std::string(collab::SchemaJson())});
  REQUIRE_OK(collab::RegisterFunctions(*db));
  CHECK(collab::RegisterFunctions(*db).code() == Code::kAlreadyExists);
  std::unique_ptr<Database> bare = OpenOrFail({.path = dir.Sub("bare")});
  CHECK_ERROR(collab::RegisterFunctions(*bare), Code::kFailedPrecondition, "collab_",
              "collab::SchemaJson()");
  REQUIRE(db->CallInternal("collab:registerWebhook",
                           Value(Object{{"url", "https://x"}, {"events", Array{"*"}}}))
              .ok());
  absl::StatusOr<Value> created =
      db->Call("collab:createSession", Value(Object{{"name", "n"}, {"agentId", "a"}}));
  REQUIRE(created.ok());
  std::string error;
  REQUIRE(PollUntil([&] {
    absl::StatusOr<std::vector<Document>> jobs =
        db->Query([](Reader& r) { return r.Table("_scheduled_functions").Collect(); });
    if (!jobs.ok()) return false;
    for (const Document& job : *jobs) {
      if (job["state"] == Value("failed")) error = job["error"].as_string();
    }
    return !error.empty();
  }));
  CHECK(error.find("send_webhook") != std::string::npos);
}

TEST_CASE("live: the transcript fires on its session's messages, not another session's") {
  Collab c;
  Session s = NewSession(c);
  Session t = NewSession(c);
  std::mutex mu;
  std::vector<Value> results;
  absl::StatusOr<Subscription> sub = c.db->SubscribeFunction(
      "collab:listMessages", Value(s.As(s.observer)), UpdateSlot([&](const QueryUpdate& u) {
        std::lock_guard<std::mutex> lock(mu);
        results.push_back(u.result.ok() ? *u.result : Value(u.result.status().ToString()));
      }));
  REQUIRE(sub.ok());
  c.Settle();
  auto count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return results.size();
  };
  REQUIRE(count() == 1);

  // Writes elsewhere: another session's message, a note and a heartbeat in this session.
  c.Call("collab:sendMessage", t.As(t.a, {{"content", "elsewhere"}}));
  c.Call("collab:createNote", s.As(s.a, {{"title", "T"}, {"content", ""}}));
  c.Call("collab:heartbeat", s.As(s.b, {{"status", "working"}}));
  c.Settle();
  CHECK(count() == 1);

  c.Call("collab:sendMessage", s.As(s.b, {{"content", "here"}}));
  c.Settle();
  REQUIRE(count() == 2);
  {
    std::lock_guard<std::mutex> lock(mu);
    REQUIRE(results[1].as_array().size() == 1);
    CHECK(results[1].as_array()[0]["content"] == Value("here"));
  }
  // Deleting the session turns the live transcript into NotFound.
  c.Call("collab:deleteSession", s.As(s.a));
  c.Settle();
  REQUIRE(count() == 3);
  {
    std::lock_guard<std::mutex> lock(mu);
    CHECK(results[2].is_string());
    CHECK(results[2].as_string().find("NOT_FOUND") != std::string::npos);
  }
}

TEST_CASE("live: public listings fire on a public session, not on a private one") {
  Collab c;
  std::atomic<int> updates{0};
  Value last;
  std::mutex mu;
  absl::StatusOr<Subscription> sub = c.db->SubscribeFunction(
      "collab:listPublicSessions", Value(FirstPage()), UpdateSlot([&](const QueryUpdate& u) {
        std::lock_guard<std::mutex> lock(mu);
        last = *u.result;
        ++updates;
      }));
  REQUIRE(sub.ok());
  c.Settle();
  REQUIRE(updates == 1);
  NewSession(c, {{"isPrivate", true}}, /*join=*/false);
  c.Settle();
  CHECK(updates == 1);
  NewSession(c, {{"name", "public one"}}, /*join=*/false);
  c.Settle();
  CHECK(updates == 2);
  std::lock_guard<std::mutex> lock(mu);
  REQUIRE(last["page"].as_array().size() == 1);
  CHECK(last["page"].as_array()[0]["name"] == Value("public one"));
}

// A live view through a counting wrapper query "test:counted_<fn>" around collab:<fn>: the
// engine skips deliveries of unchanged results but not runs, so `runs` shows whether a write
// touched what the query read.
struct CountedView {
  std::shared_ptr<std::atomic<int>> runs;
  std::mutex mu;
  Value last;  // guarded by mu
  Subscription sub;

  int Runs() const { return runs->load(); }
  Value Last() {
    std::lock_guard<std::mutex> lock(mu);
    return last;
  }
};

std::unique_ptr<CountedView> Watch(Collab& c, const std::string& fn, Object args) {
  auto view = std::make_unique<CountedView>();
  view->runs = CountRuns(*c.db, "test:counted_" + fn, "collab:" + fn);
  CountedView* v = view.get();
  absl::StatusOr<Subscription> sub = c.db->SubscribeFunction(
      "test:counted_" + fn, Value(std::move(args)), UpdateSlot([v](const QueryUpdate& u) {
        std::lock_guard<std::mutex> lock(v->mu);
        v->last = u.result.ok() ? *u.result : Value(u.result.status().ToString());
      }));
  REQUIRE(sub.ok());
  view->sub = *std::move(sub);
  c.Settle();
  REQUIRE(view->Runs() >= 1);
  return view;
}

// Runs `write`, waits for delivery and checks the view did not run again.
template <typename Write>
void CheckNotRerun(Collab& c, CountedView& view, Write write) {
  const int runs = view.Runs();
  write();
  c.Settle();
  CHECK(view.Runs() == runs);
}

// Runs `write`, waits for delivery and checks the view ran again.
template <typename Write>
void CheckRerun(Collab& c, CountedView& view, Write write) {
  const int runs = view.Runs();
  write();
  c.Settle();
  CHECK(view.Runs() > runs);
}

TEST_CASE("live: notes and files re-run on their session's writes, not on unrelated ones") {
  Collab c;
  Session s = NewSession(c);
  Session t = NewSession(c);
  std::unique_ptr<CountedView> notes = Watch(c, "listNotes", s.As(s.observer));
  std::unique_ptr<CountedView> files = Watch(c, "listFiles", s.As(s.observer));
  // Unrelated: another session's note and file, a heartbeat here, a host-level write.
  // (Content writes in this session touch its row, which every session query authenticates
  // against, so they re-run it: see the README's decisions.)
  int workspaces = 0;
  for (CountedView* view : {notes.get(), files.get()}) {
    CheckNotRerun(c, *view, [&] {
      c.Call("collab:createNote", t.As(t.a, {{"title", "T"}, {"content", ""}}));
      c.Call("collab:writeFile", t.As(t.a, {{"path", "x"}, {"content", "y"}}));
      c.Call("collab:heartbeat", s.As(s.a, {{"status", "online"}}));
      c.Call("collab:createWorkspace",
             {{"name", "W"}, {"slug", "w" + std::to_string(++workspaces)}});
    });
  }
  CheckRerun(c, *notes, [&] {
    c.Call("collab:createNote", s.As(s.a, {{"title", "Plan"}, {"content", "v1"}}));
  });
  REQUIRE(notes->Last().is_array());
  REQUIRE(notes->Last().as_array().size() == 1);
  CHECK(notes->Last().as_array()[0]["title"] == Value("Plan"));
  CheckRerun(c, *files, [&] {
    c.Call("collab:writeFile", s.As(s.b, {{"path", "src/a.py"}, {"content", "print()"}}));
  });
  REQUIRE(files->Last().is_array());
  REQUIRE(files->Last().as_array().size() == 1);
  CHECK(files->Last().as_array()[0]["path"] == Value("src/a.py"));
}

TEST_CASE("live: getSession shows a status change; other sessions' changes do not re-run it") {
  Collab c;
  Session s = NewSession(c);
  Session t = NewSession(c);
  std::unique_ptr<CountedView> view = Watch(c, "getSession", s.As(s.observer));
  CHECK(view->Last()["status"] == Value("active"));
  CheckNotRerun(c, *view, [&] {
    c.Call("collab:setStatus", t.As(t.a, {{"status", "paused"}}));
    c.Call("collab:heartbeat", s.As(s.a, {{"status", "online"}}));
    c.Call("collab:upsertAgentProfile", {{"agentId", "agent-alpha"}}, Auth::Admin());
  });
  CheckRerun(c, *view, [&] { c.Call("collab:setStatus", s.As(s.b, {{"status", "paused"}})); });
  CHECK(view->Last()["status"] == Value("paused"));
}

TEST_CASE("live: presence shows heartbeats and the sweep's removals, not other sessions'") {
  Collab c;
  Session s = NewSession(c);
  Session t = NewSession(c);
  // The functions' clock 200 s behind: rows it writes are fresh by it but expired by the
  // engine's sweep (real clock).
  *c.clock_offset_ms = -200'000;
  std::unique_ptr<CountedView> view = Watch(c, "listPresence", s.As(s.observer));
  CHECK(view->Last().as_array().empty());
  CheckNotRerun(c, *view, [&] {
    c.Call("collab:heartbeat", t.As(t.a, {{"status", "online"}}));
    c.Call("collab:createWorkspace", {{"name", "W"}, {"slug", "w"}});
  });
  CheckRerun(c, *view, [&] { c.Call("collab:heartbeat", s.As(s.b, {{"status", "working"}})); });
  REQUIRE(view->Last().as_array().size() == 1);
  CHECK(view->Last().as_array()[0]["agentId"] == Value("agent-beta"));
  CheckRerun(c, *view, [&] {
    absl::StatusOr<size_t> swept = c.db->SweepExpired();
    REQUIRE(swept.ok());
    CHECK(*swept == 2);  // both sessions' rows
  });
  CHECK(view->Last().as_array().empty());
}

}  // namespace
