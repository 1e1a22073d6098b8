// JobRunner: the thread that runs scheduled functions (scheduler.h) when they are due, and the
// encoding of a job's auth. One per database whose Options::run_scheduler is set.
#ifndef STAGEDB_SRC_FUNCTIONS_JOB_RUNNER_H_
#define STAGEDB_SRC_FUNCTIONS_JOB_RUNNER_H_

#include <condition_variable>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "functions/function_registry.h"
#include "schema/catalog.h"
#include "stagedb/auth.h"
#include "stagedb/document.h"
#include "stagedb/scheduler.h"
#include "transactions/transaction_state.h"
#include "util/unix_millis.h"

namespace stagedb {
class Database;
}

namespace stagedb::internal {

// A job's `auth` field: null (anonymous), {"admin": true} or the identity's claims.
Value AuthToValue(const Auth& auth);
Auth AuthFromValue(const Value& value);

class JobRunner {
 public:
  JobRunner(Database& db, const FunctionRegistry& registry, const Catalog& catalog,
            size_t max_running_actions);
  ~JobRunner() { Stop(); }
  JobRunner(const JobRunner&) = delete;
  JobRunner& operator=(const JobRunner&) = delete;

  // Takes the database's scheduler lease (an flock on `dir`/scheduler.lock, released when this
  // process ends): one process runs a database's jobs. False when another holds it.
  bool AcquireLease(const std::string& dir);
  // With the lease, before Start (and before Open returns, so nothing of this process is mistaken
  // for a leftover): marks the actions the last holder left "inProgress" as failed and removes
  // files left half-written.
  absl::Status Recover();
  // Starts the thread that runs due jobs.
  void Start();
  // Stops the thread and waits for running actions to finish. Idempotent.
  void Stop();
  // Looks at the jobs again: a job was written, a function registered, an action ended.
  void Wake();
  // Whether a commit of `keys` wrote a job.
  bool Touches(const CommitKeys& keys) const;

 private:
  struct RunningAction {
    std::thread thread;
    bool done = false;  // guarded by mu_
  };

  void Loop();
  // Marks the actions left "inProgress" by a process that ended as failed.
  absl::Status FailInterruptedActions();
  // Runs (or starts) every due job whose function is registered, while action slots last;
  // returns when the next pending job is due (InfiniteFuture: none, or wait for a slot).
  absl::Time RunDue();
  void RunMutationJob(const Document& job, const RegisteredFunction& function);
  // Claims the job ("inProgress") and starts its action on a thread of its own; false when
  // every action slot is taken.
  bool StartActionJob(const Document& job, std::shared_ptr<const RegisteredFunction> function);
  // Ends job `id` with `outcome` when it is still in state `from` (a canceled job stays so).
  absl::Status FinishJob(const DocumentId& id, JobState from, const absl::Status& outcome);
  void ReapFinishedActions();

  Database& db_;
  const FunctionRegistry& registry_;
  const std::string jobs_prefix_;  // the by_id prefix of the jobs table
  const size_t max_running_actions_;

  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t wakes_ = 0;
  bool stopping_ = false;
  size_t running_actions_ = 0;
  std::list<RunningAction> actions_;
  std::thread thread_;
  int lease_fd_ = -1;
};

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_FUNCTIONS_JOB_RUNNER_H_
