#include "stagedb/scheduler.h"

#include <optional>
#include <string>

#include "absl/strings/str_format.h"
#include "functions/function_registry.h"
#include "functions/job_runner.h"
#include "stagedb/database.h"
#include "util/absl_view.h"

namespace stagedb {

std::string_view JobStateName(JobState state) {
  switch (state) {
    case JobState::kPending:
      return "pending";
    case JobState::kInProgress:
      return "inProgress";
    case JobState::kSuccess:
      return "success";
    case JobState::kFailed:
      return "failed";
    case JobState::kCanceled:
      return "canceled";
  }
  return "?";
}

absl::StatusOr<DocumentId> Scheduler::RunAfter(absl::Duration delay, std::string_view name,
                                               const Value& args) {
  return RunAt(absl::Now() + delay, name, args);
}

absl::StatusOr<DocumentId> Scheduler::RunAt(absl::Time time, std::string_view name,
                                            const Value& args) {
  // Checked now, where the caller can act on the error, not when the job comes due.
  absl::StatusOr<std::shared_ptr<const internal::RegisteredFunction>> function =
      registry_.Find(name, std::nullopt, /*allow_internal=*/true);
  if (!function.ok()) return function.status();
  const FunctionKind kind = (*function)->kind;
  if (kind == FunctionKind::kQuery) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "function \"%s\" is a query: only mutations and actions can be scheduled", name));
  }
  std::optional<Value> converted;  // the job keeps the arguments as the function will see them
  if (absl::Status s = registry_.CheckArgs(**function, args, &converted); !s.ok()) return s;
  Object job{{"name", Value(std::string(name))},
             {"kind", Value(std::string(FunctionKindName(kind)))},
             {"args", converted.has_value() ? *converted : args},
             {"auth", internal::AuthToValue(auth_)},
             {"scheduledTime", Value(internal::ToUnixMillisDouble(time))},
             {"state", Value(std::string(JobStateName(JobState::kPending)))}};
  auto write = [&job](Transaction& tx) -> absl::StatusOr<DocumentId> {
    internal::SystemWriteScope system(tx);
    return tx.Insert(kScheduledFunctionsTable, job);
  };
  if (transaction_ != nullptr) return write(*transaction_);
  return db_->Mutate(write);
}

absl::Status Scheduler::Cancel(const DocumentId& job) {
  auto cancel = [this, &job](Transaction& tx) -> absl::Status {
    auto not_found = [&job] {
      return absl::NotFoundError(absl::StrFormat("table \"%s\": no scheduled job \"%s\"",
                                                 internal::AbslView(kScheduledFunctionsTable),
                                                 job.text()));
    };
    if (!internal::IsIdOf(tx, job, kScheduledFunctionsTable)) return not_found();
    absl::StatusOr<std::optional<Document>> current = tx.Get(job);
    if (!current.ok()) return current.status();
    if (!current->has_value()) return not_found();
    // A caller that is not Admin cancels only jobs scheduled with its own tenant and workspace
    // claims (as row scoping would let it touch them); another's job is as good as missing.
    if (!auth_.is_admin()) {
      const Auth owner = internal::AuthFromValue((**current)["auth"]);
      auto claims = [](const Auth& auth) {
        const Identity* identity = auth.identity();
        return identity == nullptr ? std::pair<std::string, std::string>()
                                   : std::pair(identity->tenant_id, identity->workspace_id);
      };
      if (owner.is_admin() != auth_.is_admin() || claims(owner) != claims(auth_)) {
        return not_found();
      }
    }
    const std::string& state = (**current)["state"].as_string();
    if (state == JobStateName(JobState::kCanceled)) return absl::OkStatus();
    if (state == JobStateName(JobState::kSuccess) || state == JobStateName(JobState::kFailed)) {
      return absl::FailedPreconditionError(
          absl::StrFormat("scheduled job \"%s\" (function \"%s\") cannot be canceled: it has "
                          "already ended (state \"%s\")",
                          job.text(), (**current)["name"].as_string(), state));
    }
    internal::SystemWriteScope system(tx);
    return tx.Patch(job, Object{{"state", Value(std::string(JobStateName(JobState::kCanceled)))},
                                {"completedTime", Value(internal::NowUnixMillis())}});
  };
  if (transaction_ != nullptr) return cancel(*transaction_);
  return db_->Mutate(cancel);
}

}  // namespace stagedb
