// Scheduler: runs named mutations and actions (functions.h) later, durably.
//
//   // In a mutation: the job commits with the mutation, or vanishes with it.
//   absl::StatusOr<stagedb::DocumentId> job = ctx.scheduler().RunAfter(
//       absl::Minutes(5), "recordings:transcribe", stagedb::Object{{"recordingId", id}});
//
// Each job is a document of the system table `_scheduled_functions` (kScheduledFunctionsTable):
//   name, kind ("mutation" | "action"), args, auth (who it runs as), scheduledTime (ms since
//   the epoch), state, completedTime and error (once it ended).
// The table can be read, queried (index "by_state_time" on state then scheduledTime, index
// "by_scheduled_time") and subscribed to like any table, but only the engine writes it. It is
// not row-scoped.
//
// A thread of the database (Options::run_scheduler) runs due jobs, oldest first, as the auth
// that scheduled them:
//   - a mutation runs exactly once: its effects and its job's "success" commit in one
//     transaction; a process killed before that commit runs it again after reopening, never
//     twice. A mutation that returns an error writes nothing and its job is "failed" with the
//     error.
//   - an action runs at most once: its job goes "pending" -> "inProgress" (committed before it
//     starts) -> "success" or "failed". An action interrupted by the end of the process is
//     "failed" after reopening; it is not run again.
// A job whose function is not registered (yet: functions are registered after Open) waits,
// pending, until it is.
#ifndef STAGEDB_SCHEDULER_H_
#define STAGEDB_SCHEDULER_H_

#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "stagedb/auth.h"
#include "stagedb/export.h"
#include "stagedb/id.h"
#include "stagedb/value.h"

namespace stagedb {

class Database;
class Transaction;
namespace internal {
class FunctionRegistry;
}  // namespace internal

inline constexpr std::string_view kScheduledFunctionsTable = "_scheduled_functions";

// A job's `state` field holds one of these names.
enum class JobState { kPending, kInProgress, kSuccess, kFailed, kCanceled };
// "pending", "inProgress", "success", "failed", "canceled".
STAGEDB_EXPORT std::string_view JobStateName(JobState state);

// Obtained from MutationContext::scheduler() (jobs written in the mutation's transaction),
// ActionContext::scheduler() or Database::scheduler() (each call its own transaction). Jobs run
// as the auth of the context (or the one given to Database::scheduler).
class STAGEDB_EXPORT Scheduler {
 public:
  // Schedules the mutation or action `name` (internal ones too) with `args` to run `delay` from
  // now (or at `time`); returns the job's id. NotFound for an unknown function,
  // InvalidArgument for a query or for arguments its validator refuses (naming the argument).
  absl::StatusOr<DocumentId> RunAfter(absl::Duration delay, std::string_view name,
                                      const Value& args);
  absl::StatusOr<DocumentId> RunAt(absl::Time time, std::string_view name, const Value& args);
  // Cancels a pending job (it never runs) or a running action (it finishes, but its job stays
  // "canceled"). Canceling a canceled job does nothing; FailedPrecondition for a job that
  // already succeeded or failed, NotFound for an id that is no job, or (unless this scheduler
  // is Admin's) a job scheduled with other tenant or workspace claims, or by Admin.
  absl::Status Cancel(const DocumentId& job);

 private:
  friend class Database;
  friend class MutationContext;
  friend class ActionContext;
  Scheduler(const internal::FunctionRegistry& registry, Transaction* transaction, Database* db,
            const Auth& auth)
      : registry_(registry), transaction_(transaction), db_(db), auth_(auth) {}

  const internal::FunctionRegistry& registry_;
  Transaction* transaction_;  // the mutation's, or null: each call its own transaction on `db_`
  Database* db_;
  Auth auth_;
};

}  // namespace stagedb

#endif  // STAGEDB_SCHEDULER_H_
