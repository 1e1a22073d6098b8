// The scheduler (scheduler.h): jobs written with the mutation that schedules them (and gone
// with it), run when due by the database's thread, mutations exactly once (also across a kill
// and a reopen), actions at most once with their states recorded, cancellation, jobs waiting
// for their function to be registered, and the system table `_scheduled_functions` read,
// queried and subscribed to like any table but written only by the engine.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"
#include "transactions/transaction_state.h"
#include "util/unix_millis.h"

namespace {

using namespace stagedb;
using stagedb::testing::Gate;
using stagedb::testing::kHangGuard;
using stagedb::testing::OpenOrFail;
using stagedb::testing::TempDir;
using Code = absl::StatusCode;

constexpr const char* kSchema = R"json({"tables": {
  "effects": {"fields": {"seq": "int64", "note": {"type": "optional", "of": "string"}},
              "indexes": [{"name": "by_seq", "fields": ["seq"]}]},
  "notes": {"fields": {"workspace": "string", "text": "string"},
            "scope": {"workspace": "workspace"}}}})json";

Options DbOptions(const std::string& path, bool run_scheduler = true) {
  return {.path = path, .schema_json = kSchema, .run_scheduler = run_scheduler};
}

// Registers the functions the tests schedule:
//   effects:add (mutation, {seq, note?}): inserts an `effects` row;
//   effects:fail (mutation): inserts a row, then fails (so writes nothing);
//   effects:scheduleThenFail (mutation, {seq}): schedules effects:add, then fails;
//   effects:schedule (mutation, {seq, delayMs}): schedules effects:add, returns the job id;
//   effects:count (query): the number of rows;
//   notes:add (mutation, {workspace, text}): inserts into the scoped table `notes`;
//   work:act (action, {seq}): counts a run in `*action_runs`, adds a row through effects:add;
//   work:actFail (action): fails;
//   work:block (action): opens `blocked`, then waits until `release` opens.
struct Functions {
  std::atomic<int> action_runs{0};
  Gate release;
  Gate blocked;
};

void RegisterFunctions(Database& db, Functions& f) {
  REQUIRE_OK(db.RegisterMutation(
      {.name = "effects:add",
       .visibility = Visibility::kInternal,
       .args = R"({"seq": "int64", "note": {"type": "optional", "of": "string"}})"},
      [](MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        Object row{{"seq", args["seq"]}};
        if (args.as_object().contains("note")) row["note"] = args["note"];
        absl::StatusOr<DocumentId> id = ctx.db().Insert("effects", row);
        if (!id.ok()) return id.status();
        return Value(*id);
      }));
  REQUIRE_OK(db.RegisterMutation(
      {.name = "effects:fail", .args = R"({"seq": "int64"})"},
      [](MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        if (absl::StatusOr<DocumentId> id = ctx.db().Insert("effects", {{"seq", args["seq"]}});
            !id.ok()) {
          return id.status();
        }
        return absl::FailedPreconditionError("effects:fail always fails");
      }));
  REQUIRE_OK(
      db.RegisterMutation({.name = "effects:scheduleThenFail", .args = R"({"seq": "int64"})"},
                          [](MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
                            absl::StatusOr<DocumentId> job = ctx.scheduler().RunAfter(
                                absl::ZeroDuration(), "effects:add", Object{{"seq", args["seq"]}});
                            if (!job.ok()) return job.status();
                            return absl::InvalidArgumentError("changed my mind");
                          }));
  REQUIRE_OK(db.RegisterMutation(
      {.name = "effects:schedule", .args = R"({"seq": "int64", "delayMs": "number"})"},
      [](MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        absl::StatusOr<DocumentId> job =
            ctx.scheduler().RunAfter(absl::Milliseconds(args["delayMs"].as_float64()),
                                     "effects:add", Object{{"seq", args["seq"]}});
        if (!job.ok()) return job.status();
        return Value(*job);
      }));
  REQUIRE_OK(db.RegisterQuery(
      {.name = "effects:count"}, [](QueryContext& ctx, const Value&) -> absl::StatusOr<Value> {
        absl::StatusOr<std::vector<Document>> rows = ctx.db().Table("effects").Collect();
        if (!rows.ok()) return rows.status();
        return Value(static_cast<int64_t>(rows->size()));
      }));
  REQUIRE_OK(db.RegisterMutation(
      {.name = "notes:add", .args = R"({"workspace": "string", "text": "string"})"},
      [](MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        absl::StatusOr<DocumentId> id = ctx.db().Insert("notes", args.as_object());
        if (!id.ok()) return id.status();
        return Value(*id);
      }));
  REQUIRE_OK(
      db.RegisterAction({.name = "work:act", .args = R"({"seq": "int64"})"},
                        [&f](ActionContext& ctx, const Value& args) -> absl::StatusOr<Value> {
                          ++f.action_runs;
                          return ctx.RunMutation(
                              "effects:add", Object{{"seq", args["seq"]}, {"note", "from action"}});
                        }));
  REQUIRE_OK(db.RegisterAction({.name = "work:actFail"},
                               [](ActionContext&, const Value&) -> absl::StatusOr<Value> {
                                 return absl::UnavailableError("the provider is down");
                               }));
  REQUIRE_OK(db.RegisterAction({.name = "work:block"},
                               [&f](ActionContext&, const Value&) -> absl::StatusOr<Value> {
                                 f.blocked.Open();
                                 if (!f.release.Wait()) {
                                   return absl::DeadlineExceededError("work:block never released");
                                 }
                                 return Value(nullptr);
                               }));
}

std::optional<Document> GetJob(Database& db, const DocumentId& id) {
  absl::StatusOr<std::optional<Document>> job = db.Query([&](Reader& r) { return r.Get(id); });
  REQUIRE_OK(job);
  return *job;
}

std::string StateOf(Database& db, const DocumentId& id) {
  std::optional<Document> job = GetJob(db, id);
  return job.has_value() ? (*job)["state"].as_string() : "(missing)";
}

// Waits until job `id` is in `state` (the database's thread moves it on).
void AwaitState(Database& db, const DocumentId& id, std::string_view state) {
  testing::WaitFor([&] { return StateOf(db, id) == state; },
                   "job " + id.text() + " to be " + std::string(state),
                   [&] { return "it is " + StateOf(db, id); });
}

std::map<int64_t, int> EffectsBySeq(Database& db) {
  absl::StatusOr<std::vector<Document>> rows =
      db.Query([](Reader& r) { return r.Table("effects").Collect(); });
  REQUIRE_OK(rows);
  std::map<int64_t, int> count;
  for (const Document& row : *rows) ++count[row["seq"].as_int64()];
  return count;
}

DocumentId JobId(const absl::StatusOr<Value>& result) {
  REQUIRE_OK(result);
  absl::StatusOr<DocumentId> id = DocumentId::Parse(result->as_string());
  REQUIRE_OK(id);
  return *id;
}

TEST_CASE("a scheduled mutation runs when due, once, and its job records success") {
  TempDir dir;
  Functions f;
  auto db = OpenOrFail(DbOptions(dir.Sub("db")));
  RegisterFunctions(*db, f);
  const DocumentId later =
      JobId(db->Call("effects:schedule", Object{{"seq", 1}, {"delayMs", 3'600'000.0}}));
  const DocumentId soon =
      JobId(db->Call("effects:schedule", Object{{"seq", 2}, {"delayMs", 20.0}}));
  AwaitState(*db, soon, "success");

  const Document job = *GetJob(*db, soon);
  CHECK(job["name"].as_string() == "effects:add");
  CHECK(job["kind"].as_string() == "mutation");
  CHECK(job["args"] == Value(Object{{"seq", 2}}));
  CHECK(job["completedTime"].as_float64() >= job["scheduledTime"].as_float64());
  CHECK(EffectsBySeq(*db) == std::map<int64_t, int>{{2, 1}});
  // The job an hour away has not run.
  CHECK(StateOf(*db, later) == "pending");
}

TEST_CASE("a job is written with the mutation that schedules it and vanishes with it") {
  TempDir dir;
  Functions f;
  auto db = OpenOrFail(DbOptions(dir.Sub("db")));
  RegisterFunctions(*db, f);
  CHECK_ERROR(db->Call("effects:scheduleThenFail", Object{{"seq", 7}}), Code::kInvalidArgument,
              "changed my mind");
  absl::StatusOr<std::vector<Document>> jobs =
      db->Query([](Reader& r) { return r.Table(kScheduledFunctionsTable).Collect(); });
  REQUIRE_OK(jobs);
  CHECK(jobs->empty());
  // A later job runs; the rolled-back one never does.
  const DocumentId marker =
      JobId(db->Call("effects:schedule", Object{{"seq", 8}, {"delayMs", 0.0}}));
  AwaitState(*db, marker, "success");
  CHECK(EffectsBySeq(*db) == std::map<int64_t, int>{{8, 1}});
}

TEST_CASE("a scheduled mutation that fails writes nothing and its job records the error") {
  TempDir dir;
  Functions f;
  auto db = OpenOrFail(DbOptions(dir.Sub("db")));
  RegisterFunctions(*db, f);
  absl::StatusOr<DocumentId> job =
      db->scheduler().RunAfter(absl::ZeroDuration(), "effects:fail", Object{{"seq", 3}});
  REQUIRE_OK(job);
  AwaitState(*db, *job, "failed");
  const Document done = *GetJob(*db, *job);
  CHECK(done["error"].as_string().find("effects:fail always fails") != std::string::npos);
  CHECK(done["completedTime"].is_float64());
  CHECK(EffectsBySeq(*db).empty());
}

TEST_CASE("scheduling refuses unknown functions, queries and bad arguments") {
  TempDir dir;
  Functions f;
  auto db = OpenOrFail(DbOptions(dir.Sub("db")));
  RegisterFunctions(*db, f);
  Scheduler scheduler = db->scheduler();
  CHECK_ERROR(scheduler.RunAfter(absl::ZeroDuration(), "effects:nope", Object{}), Code::kNotFound,
              "effects:nope");
  CHECK_ERROR(scheduler.RunAfter(absl::ZeroDuration(), "effects:count", Object{}),
              Code::kInvalidArgument, "effects:count", "query");
  CHECK_ERROR(scheduler.RunAfter(absl::ZeroDuration(), "effects:add", Object{{"seq", "one"}}),
              Code::kInvalidArgument, "argument \"seq\"", "int64");
  absl::StatusOr<std::vector<Document>> jobs =
      db->Query([](Reader& r) { return r.Table(kScheduledFunctionsTable).Collect(); });
  REQUIRE_OK(jobs);
  CHECK(jobs->empty());
}

TEST_CASE("only the engine writes the system tables; no schema may declare one") {
  TempDir dir;
  auto db = OpenOrFail(DbOptions(dir.Sub("db")));
  CHECK_ERROR(db->Mutate([](Transaction& tx) {
    return tx.Insert(kScheduledFunctionsTable, {{"name", "x:y"},
                                                {"kind", "mutation"},
                                                {"args", Object{}},
                                                {"auth", nullptr},
                                                {"scheduledTime", 0.0},
                                                {"state", "pending"}});
  }),
              Code::kPermissionDenied, "_scheduled_functions", "system table");
  CHECK_ERROR(Database::Open({.path = dir.Sub("other"),
                              .schema_json = R"({"tables": {"_mine": {"fields": {}}}})"}),
              Code::kInvalidArgument, "_mine", "system");
  // The stored schema text holds only the user's tables.
  CHECK(db->SchemaJson().find("_scheduled_functions") == std::string::npos);
}

TEST_CASE("cancel: a pending job never runs; ended jobs cannot be canceled") {
  TempDir dir;
  Functions f;
  auto db = OpenOrFail(DbOptions(dir.Sub("db")));
  RegisterFunctions(*db, f);
  // Scheduled due now and canceled in the same transaction: the runner never sees it pending.
  REQUIRE_OK(
      db->RegisterMutation({.name = "jobs:scheduleAndCancel", .args = R"({"seq": "int64"})"},
                           [](MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
                             absl::StatusOr<DocumentId> job = ctx.scheduler().RunAfter(
                                 absl::ZeroDuration(), "effects:add", Object{{"seq", args["seq"]}});
                             if (!job.ok()) return job.status();
                             if (absl::Status s = ctx.scheduler().Cancel(*job); !s.ok()) return s;
                             return Value(*job);
                           }));
  const DocumentId canceled = JobId(db->Call("jobs:scheduleAndCancel", Object{{"seq", 1}}));
  CHECK(StateOf(*db, canceled) == "canceled");
  Scheduler scheduler = db->scheduler();
  REQUIRE_OK(scheduler.Cancel(canceled));  // again: nothing to do

  // Canceled inside a mutation that then fails: the cancel is rolled back with it.
  absl::StatusOr<DocumentId> kept =
      scheduler.RunAfter(absl::Hours(1), "effects:add", Object{{"seq", 2}});
  REQUIRE_OK(kept);
  REQUIRE_OK(db->RegisterMutation(
      {.name = "jobs:cancelThenFail",
       .args = R"({"job": {"type": "id", "table": "_scheduled_functions"}})"},
      [](MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        absl::StatusOr<DocumentId> job = DocumentId::Parse(args["job"].as_string());
        if (!job.ok()) return job.status();
        if (absl::Status s = ctx.scheduler().Cancel(*job); !s.ok()) return s;
        return absl::AbortedError("not after all");
      }));
  // As Admin (CallInternal): the job was scheduled by Admin.
  CHECK_ERROR(db->CallInternal("jobs:cancelThenFail", Object{{"job", Value(*kept)}}),
              Code::kAborted);
  CHECK(StateOf(*db, *kept) == "pending");

  // A job due after the canceled one runs; the canceled one never did.
  absl::StatusOr<DocumentId> marker =
      scheduler.RunAfter(absl::ZeroDuration(), "effects:add", Object{{"seq", 3}});
  REQUIRE_OK(marker);
  AwaitState(*db, *marker, "success");
  CHECK(StateOf(*db, canceled) == "canceled");
  CHECK(EffectsBySeq(*db) == std::map<int64_t, int>{{3, 1}});
  CHECK_ERROR(scheduler.Cancel(*marker), Code::kFailedPrecondition, "success", "effects:add");

  absl::StatusOr<DocumentId> effect = db->Mutate([](Transaction& tx) {
    return tx.Insert("effects", {{"seq", 9}});
  });
  REQUIRE_OK(effect);
  CHECK_ERROR(scheduler.Cancel(*effect), Code::kNotFound, "_scheduled_functions");
}

TEST_CASE("a caller cancels only jobs scheduled with its own claims") {
  TempDir dir;
  Functions f;
  auto db = OpenOrFail(DbOptions(dir.Sub("db")));
  RegisterFunctions(*db, f);
  const Auth alice = Auth::User({.subject = "alice", .workspace_id = "ws_a"});
  const Auth bob = Auth::User({.subject = "bob", .workspace_id = "ws_b"});
  const Auth carol = Auth::User({.subject = "carol", .workspace_id = "ws_a"});
  absl::StatusOr<DocumentId> job =
      db->scheduler(alice).RunAfter(absl::Hours(1), "effects:add", Object{{"seq", 1}});
  REQUIRE_OK(job);
  absl::StatusOr<DocumentId> admin_job =
      db->scheduler().RunAfter(absl::Hours(1), "effects:add", Object{{"seq", 2}});
  REQUIRE_OK(admin_job);
  CHECK_ERROR(db->scheduler(bob).Cancel(*job), Code::kNotFound, job->text());
  CHECK_ERROR(db->scheduler(alice).Cancel(*admin_job), Code::kNotFound);
  CHECK(StateOf(*db, *job) == "pending");
  REQUIRE_OK(db->scheduler(carol).Cancel(*job));  // same workspace
  CHECK(StateOf(*db, *job) == "canceled");
  REQUIRE_OK(db->scheduler().Cancel(*admin_job));  // Admin cancels any
}

TEST_CASE("a scheduled action runs at most once and its states are recorded and live") {
  TempDir dir;
  Functions f;
  DocumentId job;
  {
    auto db = OpenOrFail(DbOptions(dir.Sub("db"), /*run_scheduler=*/false));
    RegisterFunctions(*db, f);
    absl::StatusOr<DocumentId> scheduled =
        db->scheduler().RunAfter(absl::ZeroDuration(), "work:block", Object{});
    REQUIRE_OK(scheduled);
    job = *scheduled;
  }
  // Reopened with the scheduler but before work:block is registered: the job waits, pending,
  // while the subscription starts.
  auto db = OpenOrFail(DbOptions(dir.Sub("db")));
  std::mutex mu;
  std::vector<std::string> seen;
  absl::StatusOr<Subscription> sub = db->Subscribe(
      [id = job](Reader& r) { return r.Get(id); }, UpdateSlot([&](const QueryUpdate& update) {
        if (!update.result.ok() || !update.result->is_object()) return;
        std::lock_guard<std::mutex> lock(mu);
        const std::string state = (*update.result)["state"].as_string();
        if (seen.empty() || seen.back() != state) seen.push_back(state);
      }));
  REQUIRE_OK(sub);
  // The first update ("pending") delivered before the job can move on (updates coalesce).
  REQUIRE_OK(db->WaitForDelivery(db->LastCommitTimestamp(), kHangGuard));
  RegisterFunctions(*db, f);
  AwaitState(*db, job, "inProgress");
  // Delivered before the action may end (else the two commits could reach it as one update).
  REQUIRE_OK(db->WaitForDelivery(db->LastCommitTimestamp(), kHangGuard));
  REQUIRE(f.blocked.Wait());
  f.release.Open();
  AwaitState(*db, job, "success");
  REQUIRE_OK(db->WaitForDelivery(db->LastCommitTimestamp(), kHangGuard));
  {
    std::lock_guard<std::mutex> lock(mu);
    CHECK(seen == std::vector<std::string>{"pending", "inProgress", "success"});
  }

  absl::StatusOr<DocumentId> act =
      db->scheduler().RunAfter(absl::ZeroDuration(), "work:act", Object{{"seq", 4}});
  REQUIRE_OK(act);
  AwaitState(*db, *act, "success");
  CHECK(f.action_runs == 1);
  CHECK(EffectsBySeq(*db) == std::map<int64_t, int>{{4, 1}});

  absl::StatusOr<DocumentId> failing =
      db->scheduler().RunAfter(absl::ZeroDuration(), "work:actFail", Object{});
  REQUIRE_OK(failing);
  AwaitState(*db, *failing, "failed");
  CHECK((*GetJob(*db, *failing))["error"].as_string().find("the provider is down") !=
        std::string::npos);
}

TEST_CASE("canceling a running action keeps its job canceled when it ends") {
  TempDir dir;
  Functions f;
  auto db = OpenOrFail(DbOptions(dir.Sub("db")));
  RegisterFunctions(*db, f);
  absl::StatusOr<DocumentId> job =
      db->scheduler().RunAfter(absl::ZeroDuration(), "work:block", Object{});
  REQUIRE_OK(job);
  AwaitState(*db, *job, "inProgress");
  REQUIRE_OK(db->scheduler().Cancel(*job));
  f.release.Open();
  // A later job's success shows the runner has moved on; the canceled one stays canceled.
  absl::StatusOr<DocumentId> marker =
      db->scheduler().RunAfter(absl::ZeroDuration(), "work:act", Object{{"seq", 1}});
  REQUIRE_OK(marker);
  AwaitState(*db, *marker, "success");
  db.reset();  // waits for the action
  auto reopened = OpenOrFail(DbOptions(dir.Sub("db"), /*run_scheduler=*/false));
  CHECK(StateOf(*reopened, *job) == "canceled");
}

TEST_CASE("jobs run as the auth that scheduled them, row scope included") {
  TempDir dir;
  Functions f;
  auto db = OpenOrFail(DbOptions(dir.Sub("db")));
  RegisterFunctions(*db, f);
  const Auth alice = Auth::User({.subject = "alice", .workspace_id = "ws_a"});
  Scheduler scheduler = db->scheduler(alice);
  absl::StatusOr<DocumentId> own = scheduler.RunAfter(
      absl::ZeroDuration(), "notes:add", Object{{"workspace", "ws_a"}, {"text", "mine"}});
  absl::StatusOr<DocumentId> foreign = scheduler.RunAfter(
      absl::ZeroDuration(), "notes:add", Object{{"workspace", "ws_b"}, {"text", "theirs"}});
  REQUIRE_OK(own);
  REQUIRE_OK(foreign);
  AwaitState(*db, *own, "success");
  AwaitState(*db, *foreign, "failed");
  const Document failed = *GetJob(*db, *foreign);
  CHECK(failed["error"].as_string().find("PERMISSION_DENIED") != std::string::npos);
  CHECK(failed["auth"]["workspaceId"] == Value("ws_a"));
  absl::StatusOr<std::vector<Document>> notes =
      db->Query([](Reader& r) { return r.Table("notes").Collect(); });
  REQUIRE_OK(notes);
  REQUIRE(notes->size() == 1);
  CHECK((*notes)[0]["workspace"] == Value("ws_a"));
}

TEST_CASE("jobs survive close and reopen, and wait for their function to be registered") {
  TempDir dir;
  Functions f;
  DocumentId job;
  {
    auto db = OpenOrFail(DbOptions(dir.Sub("db"), /*run_scheduler=*/false));
    RegisterFunctions(*db, f);
    job = JobId(db->Call("effects:schedule", Object{{"seq", 5}, {"delayMs", 0.0}}));
    // No scheduler in this process: the job stays pending. (The pause is only a window in
    // which a wrong run could show; no check depends on its length.)
    absl::SleepFor(absl::Milliseconds(20));
    CHECK(StateOf(*db, job) == "pending");
  }
  auto db = OpenOrFail(DbOptions(dir.Sub("db")));
  // The runner found the due job, but effects:add is not registered yet.
  REQUIRE_OK(db->RegisterAction(
      {.name = "probe:noop"},
      [](ActionContext&, const Value&) -> absl::StatusOr<Value> { return Value(nullptr); }));
  absl::StatusOr<DocumentId> probe =
      db->scheduler().RunAfter(absl::ZeroDuration(), "probe:noop", Object{});
  REQUIRE_OK(probe);
  AwaitState(*db, *probe, "success");
  CHECK(StateOf(*db, job) == "pending");
  RegisterFunctions(*db, f);
  AwaitState(*db, job, "success");
  CHECK(EffectsBySeq(*db) == std::map<int64_t, int>{{5, 1}});
}

TEST_CASE("ended jobs are kept seven days, then swept; pending ones stay") {
  TempDir dir;
  Functions f;
  Options options = DbOptions(dir.Sub("db"));
  options.ttl_sweep_interval = absl::ZeroDuration();
  auto db = OpenOrFail(options);
  RegisterFunctions(*db, f);
  const DocumentId old_job =
      JobId(db->Call("effects:schedule", Object{{"seq", 1}, {"delayMs", 0.0}}));
  const DocumentId recent_job =
      JobId(db->Call("effects:schedule", Object{{"seq", 2}, {"delayMs", 0.0}}));
  const DocumentId pending_job =
      JobId(db->Call("effects:schedule", Object{{"seq", 3}, {"delayMs", 3'600'000.0}}));
  AwaitState(*db, old_job, "success");
  AwaitState(*db, recent_job, "success");
  // Age one ended job past the retention (only the engine may write the table).
  REQUIRE_OK(db->Mutate([&](Transaction& tx) {
    internal::SystemWriteScope system(tx);
    const double eight_days_ago = internal::ToUnixMillisDouble(absl::Now() - absl::Hours(24 * 8));
    return tx.Patch(old_job, {{"completedTime", eight_days_ago}});
  }));
  absl::StatusOr<size_t> removed = db->SweepExpired();
  REQUIRE_OK(removed);
  CHECK(*removed == 1);
  CHECK_FALSE(GetJob(*db, old_job).has_value());
  CHECK(StateOf(*db, recent_job) == "success");
  CHECK(StateOf(*db, pending_job) == "pending");
}

// ---- kill and reopen ----

constexpr int kKillJobs = 60;

// Runs the scheduler on `path` until killed; never returns into Catch2.
[[noreturn]] void SchedulerChild(const std::string& path, pid_t parent) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(5);
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(DbOptions(path));
  if (!db.ok()) _exit(2);
  Functions f;
  // As RegisterFunctions, without Catch2 (whose REQUIRE cannot run in the child).
  absl::Status s = (*db)->RegisterMutation(
      {.name = "effects:add",
       .visibility = Visibility::kInternal,
       .args = R"({"seq": "int64", "note": {"type": "optional", "of": "string"}})"},
      [](MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        // The first third run; the next one blocks until the kill, so that the kill lands inside
        // a running mutation job with exactly a third done, however loaded the machine.
        if (args["seq"].as_int64() >= kKillJobs / 3) {
          for (;;) pause();
        }
        absl::StatusOr<DocumentId> id = ctx.db().Insert("effects", {{"seq", args["seq"]}});
        if (!id.ok()) return id.status();
        return Value(*id);
      });
  if (!s.ok()) _exit(3);
  s = (*db)->RegisterAction({.name = "work:block"},
                            [](ActionContext&, const Value&) -> absl::StatusOr<Value> {
                              for (;;) pause();
                            });
  if (!s.ok()) _exit(3);
  for (;;) pause();
}

// [fork]: not under ThreadSanitizer, which does not support threads in a forked child.
TEST_CASE("scheduled mutations run exactly once across a kill and a reopen", "[fork]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  Functions f;
  std::vector<DocumentId> jobs;
  DocumentId blocking_action;
  {
    auto db = OpenOrFail(DbOptions(path, /*run_scheduler=*/false));
    RegisterFunctions(*db, f);
    absl::StatusOr<DocumentId> action =
        db->scheduler().RunAfter(absl::ZeroDuration(), "work:block", Object{});
    REQUIRE_OK(action);
    blocking_action = *action;
    // After the action (jobs run in scheduled order): the kill lands while they run.
    for (int seq = 0; seq < kKillJobs; ++seq) {
      jobs.push_back(JobId(db->Call("effects:schedule", Object{{"seq", seq}, {"delayMs", 0.0}})));
    }
  }

  const pid_t parent = getpid();
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) SchedulerChild(path, parent);

  // Watch from this process (no scheduler here) until a third of the jobs ran and the action
  // is running, then kill the child.
  size_t done = 0;
  bool watched = false;
  {
    auto watcher = OpenOrFail(DbOptions(path, /*run_scheduler=*/false));
    watched = testing::PollUntil([&] {
      done = 0;
      for (const DocumentId& job : jobs) done += StateOf(*watcher, job) == "success";
      return done >= kKillJobs / 3 && StateOf(*watcher, blocking_action) == "inProgress";
    });
  }
  REQUIRE(kill(pid, SIGKILL) == 0);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  INFO("jobs done before the kill: " << done);
  REQUIRE(watched);
  REQUIRE(WIFSIGNALED(status));
  CHECK(done == static_cast<size_t>(kKillJobs / 3));  // the next one was running

  auto db = OpenOrFail(DbOptions(path));
  RegisterFunctions(*db, f);
  for (const DocumentId& job : jobs) AwaitState(*db, job, "success");
  // Every job's effect exactly once: none lost at the kill, none run twice after it.
  const std::map<int64_t, int> effects = EffectsBySeq(*db);
  CHECK(effects.size() == static_cast<size_t>(kKillJobs));
  for (const auto& [seq, count] : effects) {
    INFO("seq " << seq);
    CHECK(count == 1);
  }
  // The action the kill interrupted is failed, not run again.
  AwaitState(*db, blocking_action, "failed");
  CHECK((*GetJob(*db, blocking_action))["error"].as_string().find("process ended") !=
        std::string::npos);
  CHECK_FALSE(f.blocked.is_open());
}

// Holds the scheduler lease on `path` (run_scheduler, no functions) until killed.
[[noreturn]] void LeaseHolderChild(const std::string& path, pid_t parent, int ready_fd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(5);
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(DbOptions(path));
  if (!db.ok()) _exit(2);
  if (write(ready_fd, "r", 1) != 1) _exit(3);
  for (;;) pause();
}

TEST_CASE("one process at a time runs a database's jobs (the scheduler lease)", "[fork]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  { auto created = OpenOrFail(DbOptions(path, /*run_scheduler=*/false)); }
  int pipe_fds[2];
  REQUIRE(pipe(pipe_fds) == 0);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) LeaseHolderChild(path, parent, pipe_fds[1]);
  char ready = 0;
  REQUIRE(read(pipe_fds[0], &ready, 1) == 1);
  close(pipe_fds[0]);
  close(pipe_fds[1]);

  Functions f;
  DocumentId job;
  {
    // The child holds the lease: this process has the function but runs no jobs.
    auto db = OpenOrFail(DbOptions(path));
    RegisterFunctions(*db, f);
    job = JobId(db->Call("effects:schedule", Object{{"seq", 1}, {"delayMs", 0.0}}));
    // Only a window in which a wrong run could show; no check depends on its length.
    absl::SleepFor(absl::Milliseconds(300));
    CHECK(StateOf(*db, job) == "pending");
  }
  REQUIRE(kill(pid, SIGKILL) == 0);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  // The lease died with its holder: the next Open takes it and runs the job.
  auto db = OpenOrFail(DbOptions(path));
  RegisterFunctions(*db, f);
  AwaitState(*db, job, "success");
  CHECK(EffectsBySeq(*db) == std::map<int64_t, int>{{1, 1}});
}

}  // namespace
