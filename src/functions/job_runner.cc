#include "functions/job_runner.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "stagedb/database.h"
#include "util/call_guarded.h"

namespace stagedb::internal {
namespace {

constexpr std::string_view kStateField = "state";
// Due jobs are read a page at a time, so memory stays bounded however many are due (and a page
// of jobs with arguments near the document size limit stays under max_bytes_read).
constexpr size_t kDuePage = 8;
// The runner looks at the jobs at least this often: jobs scheduled by another process (which
// cannot wake it), and jobs a storage failure (a full disk, say) left pending, run this late.
constexpr absl::Duration kMaxIdle = absl::Seconds(1);

bool InState(const Document& job, JobState state) {
  const Value& value = job[kStateField];
  return value.is_string() && value.as_string() == JobStateName(state);
}

// Whether job `id` is (still) in `state`, read in `tx`: a job may have been canceled, or run by
// an earlier pass, since the runner read it.
absl::StatusOr<bool> StillIn(Transaction& tx, const DocumentId& id, JobState state) {
  absl::StatusOr<std::optional<Document>> job = tx.Get(id);
  if (!job.ok()) return job.status();
  return job->has_value() && InState(**job, state);
}

Object Ended(const absl::Status& outcome) {
  Object patch{
      {std::string(kStateField),
       Value(std::string(JobStateName(outcome.ok() ? JobState::kSuccess : JobState::kFailed)))},
      {"completedTime", Value(NowUnixMillis())}};
  if (!outcome.ok()) patch["error"] = Value(outcome.ToString());
  return patch;
}

// The jobs in `state`, on index by_state_time.
IndexRange JobsInState(JobState state) {
  return Eq(std::string(kStateField), Value(std::string(JobStateName(state))));
}

}  // namespace

Value AuthToValue(const Auth& auth) {
  if (auth.is_admin()) return Value(Object{{"admin", Value(true)}});
  const Identity* identity = auth.identity();
  if (identity == nullptr) return Value(nullptr);
  Array roles;
  for (const std::string& role : identity->roles) roles.push_back(Value(role));
  return Value(Object{{"subject", Value(identity->subject)},
                      {"issuer", Value(identity->issuer)},
                      {"tokenIdentifier", Value(identity->token_identifier)},
                      {"tenantId", Value(identity->tenant_id)},
                      {"workspaceId", Value(identity->workspace_id)},
                      {"roles", Value(std::move(roles))}});
}

Auth AuthFromValue(const Value& value) {
  if (!value.is_object()) return Auth::Anonymous();
  const Object& fields = value.as_object();
  if (fields.contains("admin")) return Auth::Admin();
  auto text = [&fields](std::string_view name) -> std::string {
    auto it = fields.find(name);
    return it != fields.end() && it->second.is_string() ? it->second.as_string() : "";
  };
  Identity identity{.subject = text("subject"),
                    .issuer = text("issuer"),
                    .token_identifier = text("tokenIdentifier"),
                    .tenant_id = text("tenantId"),
                    .workspace_id = text("workspaceId")};
  if (auto roles = fields.find("roles"); roles != fields.end() && roles->second.is_array()) {
    for (const Value& role : roles->second.as_array()) {
      if (role.is_string()) identity.roles.push_back(role.as_string());
    }
  }
  return Auth::User(std::move(identity));
}

JobRunner::JobRunner(Database& db, const FunctionRegistry& registry, const Catalog& catalog,
                     size_t max_running_actions)
    : db_(db),
      registry_(registry),
      jobs_prefix_(catalog.FindTable(kScheduledFunctionsTable)->by_id->prefix),
      max_running_actions_(std::max<size_t>(1, max_running_actions)) {}

bool JobRunner::AcquireLease(const std::string& dir) {
  const std::string path = dir + "/scheduler.lock";
  lease_fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lease_fd_ < 0) return false;
  if (flock(lease_fd_, LOCK_EX | LOCK_NB) == 0) return true;
  close(lease_fd_);
  lease_fd_ = -1;
  return false;
}

absl::Status JobRunner::Recover() {
  absl::Status status = FailInterruptedActions();
  // Files too; the first failure is returned, the rest still tried.
  absl::Status files = db_.files().RemoveIncomplete();
  return status.ok() ? files : status;
}

void JobRunner::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void JobRunner::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::list<RunningAction> actions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    actions.swap(actions_);
  }
  for (RunningAction& action : actions) action.thread.join();
  if (lease_fd_ >= 0) {
    close(lease_fd_);  // releases the lease
    lease_fd_ = -1;
  }
}

void JobRunner::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++wakes_;
  }
  cv_.notify_all();
}

bool JobRunner::Touches(const CommitKeys& keys) const {
  auto it = std::lower_bound(keys.begin(), keys.end(), jobs_prefix_);
  return it != keys.end() && it->compare(0, jobs_prefix_.size(), jobs_prefix_) == 0;
}

void JobRunner::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    const uint64_t seen = wakes_;
    lock.unlock();
    ReapFinishedActions();
    const absl::Time next = std::min(RunDue(), absl::Now() + kMaxIdle);
    lock.lock();
    cv_.wait_until(lock, absl::ToChronoTime(next), [&] { return stopping_ || wakes_ != seen; });
  }
}

absl::Status JobRunner::FailInterruptedActions() {
  constexpr size_t kBatch = 500;
  for (;;) {
    absl::StatusOr<size_t> failed = db_.Mutate([&](Transaction& tx) -> absl::StatusOr<size_t> {
      absl::StatusOr<std::vector<Document>> jobs =
          tx.Table(kScheduledFunctionsTable)
              .WithIndex("by_state_time", JobsInState(JobState::kInProgress))
              .Take(kBatch);
      if (!jobs.ok()) return jobs.status();
      SystemWriteScope system(tx);
      for (const Document& job : *jobs) {
        absl::Status s = tx.Patch(
            job.id(), Ended(absl::AbortedError("the process ended while the action was running "
                                               "(an action runs at most once)")));
        if (!s.ok()) return s;
      }
      return jobs->size();
    });
    if (!failed.ok()) return failed.status();
    if (*failed < kBatch) return absl::OkStatus();
  }
}

absl::Time JobRunner::RunDue() {
  const double now_ms = NowUnixMillis();
  IndexRange due = JobsInState(JobState::kPending).Lte("scheduledTime", Value(now_ms));
  PaginationOptions options{.num_items = kDuePage};
  for (;;) {
    absl::StatusOr<PaginationResult> page = db_.Query([&](Reader& reader) {
      return reader.Table(kScheduledFunctionsTable)
          .WithIndex("by_state_time", due)
          .Paginate(options);
    });
    if (!page.ok()) return absl::InfiniteFuture();  // looked at again after kMaxIdle
    for (const Document& job : page->page) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return absl::InfiniteFuture();
      }
      absl::StatusOr<std::shared_ptr<const RegisteredFunction>> function =
          registry_.Find(job["name"].as_string(), std::nullopt, /*allow_internal=*/true);
      if (!function.ok()) continue;  // not registered (yet): Register wakes the runner
      if ((*function)->kind == FunctionKind::kAction) {
        // No free slot: the action waits (an ending action wakes the runner); mutations go on.
        StartActionJob(job, *function);
      } else if ((*function)->kind == FunctionKind::kMutation) {
        RunMutationJob(job, **function);
      }
    }
    if (page->is_done) break;
    options.cursor = page->continue_cursor;
  }
  absl::StatusOr<std::optional<Document>> next = db_.Query([&](Reader& reader) {
    return reader.Table(kScheduledFunctionsTable)
        .WithIndex("by_state_time",
                   JobsInState(JobState::kPending).Gt("scheduledTime", Value(now_ms)))
        .First();
  });
  if (!next.ok()) return absl::InfiniteFuture();
  if (!next->has_value()) return absl::InfiniteFuture();
  return absl::UnixEpoch() + absl::Milliseconds((**next)["scheduledTime"].as_float64());
}

void JobRunner::RunMutationJob(const Document& job, const RegisteredFunction& function) {
  const Auth auth = AuthFromValue(job["auth"]);
  // The function's writes and the job's success commit together: exactly once.
  bool function_failed = false;
  absl::Status status = db_.Mutate([&](Transaction& tx) -> absl::Status {
    function_failed = false;
    absl::StatusOr<bool> pending = StillIn(tx, job.id(), JobState::kPending);
    if (!pending.ok() || !*pending) return pending.status();
    absl::StatusOr<Value> result =
        FunctionCalls::RunMutation(registry_, function, tx, auth, job["args"]);
    ReaderAccess::State(tx).set_row_scope(std::nullopt);
    if (!result.ok()) {
      function_failed = true;
      return result.status();
    }
    SystemWriteScope system(tx);
    return tx.Patch(job.id(), Ended(absl::OkStatus()));
  });
  // The function failed and wrote nothing: record why. The engine failing to commit (conflicts
  // past the retry limit, a full disk) is not the function's failure: the job stays pending
  // and is tried again, as is one whose failure cannot be recorded now.
  if (!status.ok() && function_failed) (void)FinishJob(job.id(), JobState::kPending, status);
}

bool JobRunner::StartActionJob(const Document& job,
                               std::shared_ptr<const RegisteredFunction> function) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (running_actions_ >= max_running_actions_) return false;
  }
  // At most once: the claim commits before the action starts.
  bool claimed = false;
  absl::Status status = db_.Mutate([&](Transaction& tx) -> absl::Status {
    claimed = false;
    absl::StatusOr<bool> pending = StillIn(tx, job.id(), JobState::kPending);
    if (!pending.ok() || !*pending) return pending.status();
    SystemWriteScope system(tx);
    claimed = true;
    return tx.Patch(job.id(), Object{{std::string(kStateField),
                                      Value(std::string(JobStateName(JobState::kInProgress)))}});
  });
  if (!status.ok() || !claimed) return true;
  std::lock_guard<std::mutex> lock(mu_);
  ++running_actions_;
  RunningAction& slot = actions_.emplace_back();
  slot.thread = std::thread([this, &slot, id = job.id(), args = job["args"],
                             auth = AuthFromValue(job["auth"]), function = std::move(function)] {
    absl::StatusOr<Value> result;
    absl::Status outcome = CallGuarded([&] {
      result = FunctionCalls::RunAction(registry_, *function, db_, auth, args);
      return result.status();
    });
    (void)FinishJob(id, JobState::kInProgress, outcome);
    {
      std::lock_guard<std::mutex> lock(mu_);
      slot.done = true;
      --running_actions_;
      ++wakes_;
    }
    cv_.notify_all();
  });
  return true;
}

absl::Status JobRunner::FinishJob(const DocumentId& id, JobState from,
                                  const absl::Status& outcome) {
  return db_.Mutate([&](Transaction& tx) -> absl::Status {
    absl::StatusOr<bool> unchanged = StillIn(tx, id, from);
    if (!unchanged.ok() || !*unchanged) return unchanged.status();
    SystemWriteScope system(tx);
    return tx.Patch(id, Ended(outcome));
  });
}

void JobRunner::ReapFinishedActions() {
  std::list<RunningAction> finished;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = actions_.begin(); it != actions_.end();) {
      auto next = std::next(it);
      if (it->done) finished.splice(finished.end(), actions_, it);
      it = next;
    }
  }
  for (RunningAction& action : finished) action.thread.join();
}

}  // namespace stagedb::internal
