// The pieces CodeCourier's functions share: the caller and project-access checks, the
// denormalized counters, argument helpers and registration. Helpers work on a Reader or a
// Transaction, so a composite step (create a run with its steps, counters and daily stats) is
// one mutation made of them.
#ifndef STAGEDB_SRC_APPS_CODECOURIER_COMMON_H_
#define STAGEDB_SRC_APPS_CODECOURIER_COMMON_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "apps/common/functions.h"
#include "stagedb/apps/codecourier.h"
#include "stagedb/stagedb.h"

namespace stagedb::codecourier::detail {

using Result = absl::StatusOr<Value>;
using apps::Compact;
using apps::DocumentsValue;
using apps::IdArg;
using apps::NowMs;
using apps::Registrar;

// "YYYY-MM-DD" (UTC) of a time in ms since the epoch: the key of daily stats and usage records.
std::string DateOf(double ms);
// InvalidArgument naming `table`.`field` unless `date` is a "YYYY-MM-DD" calendar date.
absl::Status CheckDate(std::string_view table, std::string_view field, std::string_view date);
// InvalidArgument naming `table`.`field` when `text` is empty (after trimming spaces).
absl::Status CheckNonEmpty(std::string_view table, std::string_view field, std::string_view text);

// A document that must exist: NotFound `table "T": no <what> "<id>"` otherwise.
absl::StatusOr<Document> Require(Reader& db, std::string_view table, std::string_view what,
                                 const DocumentId& id);

// Project roles, lowest first: each includes the rights of those below it.
enum class Role { kMember, kAdmin, kOwner };
std::string_view RoleName(Role role);

// The caller's cc_users record (by its Clerk id, the identity's subject). Unauthenticated for an
// anonymous or admin caller, or an identity without a user record.
absl::StatusOr<Document> CurrentUser(Reader& db, const Auth& auth);

// Who may act on a project: its document, and the caller's user record (none for Admin).
struct ProjectAccess {
  Document project;
  std::optional<Document> user;
  // The caller's role in the project; kOwner for Admin.
  Role role = Role::kOwner;
  // The acting user's id; Unauthenticated for Admin, which acts for no one.
  absl::StatusOr<DocumentId> UserId() const;
};
// The project, which must exist (NotFound naming it), and the caller an active member of it with
// at least `min_role` (PermissionDenied naming the user, the project and the role). Admin passes.
absl::StatusOr<ProjectAccess> RequireProject(Reader& db, const Auth& auth,
                                             const DocumentId& project, Role min_role);

// RequireProject for the project the "projectId" argument names.
absl::StatusOr<ProjectAccess> ProjectArg(Reader& db, const Auth& auth, const Value& args,
                                         Role min_role = Role::kMember);
// The rows of a project in a table whose index "by_project" starts with projectId.
absl::StatusOr<std::vector<Document>> ByProject(Reader& db, std::string_view table,
                                                const DocumentId& project);

// A record of a project (a sandbox, run, workflow...): it must exist (NotFound naming it) and the
// caller have `min_role` in its project.
struct RecordAccess {
  Document record;
  ProjectAccess access;
};
absl::StatusOr<RecordAccess> RequireRecord(Reader& db, const Auth& auth, std::string_view table,
                                           std::string_view what, const DocumentId& id,
                                           Role min_role);

// The project's counters document (cc_projectCounters), created with the project.
absl::StatusOr<Document> Counters(Reader& db, const DocumentId& project);
// Adds `delta` to one counter of the project, in the caller's transaction, so the count changes
// with the write it counts or not at all.
absl::Status AdjustCounter(Transaction& tx, const DocumentId& project, std::string_view field,
                           double delta);
// Adds one to a field of today's cc_dailyStats row of the project (created on first use).
absl::Status BumpDailyStat(Transaction& tx, const DocumentId& project, std::string_view field);

// A notification for `user` (cc_notifications, unread).
absl::Status Notify(Transaction& tx, const DocumentId& user, const DocumentId& project,
                    std::string_view kind, std::string title, Value run = Value(Undefined{}));

constexpr const char* kProjectArg = R"({"projectId": {"type": "id", "table": "cc_projects"}})";

// The Convex paginationOpts argument: {numItems, cursor?, endCursor?}.
inline constexpr const char* kPaginationOptsValidator =
    R"({"type": "object", "fields": {"numItems": "number",
        "cursor": {"type": "optional", "of": {"type": "union", "of": ["string", "null"]}},
        "endCursor": {"type": "optional", "of": {"type": "union", "of": ["string", "null"]}}}})";
// The live documents of a project in a soft-delete table (index by_project_deleted, deletedAt
// missing), newest first, one page: {page, continueCursor, isDone}.
Result ListProjectPage(Reader& db, std::string_view table, const DocumentId& project,
                       const Value& pagination_opts);
// Every live document of a project in a soft-delete table, oldest first.
absl::StatusOr<std::vector<Document>> ListProjectLive(Reader& db, std::string_view table,
                                                      const DocumentId& project);

// Registration, by area (access.cc, execution.cc, knowledge.cc).
void RegisterIdentity(Registrar& r, const CodeCourierOptions& options);
void RegisterKeys(Registrar& r, const CodeCourierOptions& options);
void RegisterExecution(Registrar& r, const CodeCourierOptions& options);
void RegisterCallbacks(Registrar& r);
void RegisterLearnings(Registrar& r, const CodeCourierOptions& options);
void RegisterUsage(Registrar& r);

}  // namespace stagedb::codecourier::detail

#endif  // STAGEDB_SRC_APPS_CODECOURIER_COMMON_H_
