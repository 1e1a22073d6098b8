// What Covibe's function files share: the clock and options, the caller (a member of a
// workspace), registration with usage recording for tool calls, and small helpers over a
// Transaction so a composite step stays one mutation.
#ifndef STAGEDB_SRC_APPS_COVIBE_INTERNAL_H_
#define STAGEDB_SRC_APPS_COVIBE_INTERNAL_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "apps/common/functions.h"
#include "stagedb/apps/covibe.h"

namespace stagedb::covibe::internal {

using Result = absl::StatusOr<Value>;
using apps::Compact;
using apps::DocumentsValue;

struct Env {
  CovibeOptions options;
  absl::Time Now() const { return options.clock ? options.clock() : absl::Now(); }
  double NowMs() const { return absl::ToDoubleMilliseconds(Now() - absl::UnixEpoch()); }
};
using EnvPtr = std::shared_ptr<const Env>;

// An active member of a workspace, as the identity's claims name them.
struct Caller {
  std::string developer_id;
  std::string tenant_id;
  std::string workspace_id;
  bool workspace_admin = false;
  // `fields` with the scope fields (tenant_id, workspace_id) every scoped row of the caller
  // carries.
  Object Scoped(Object fields) const {
    fields["tenant_id"] = tenant_id;
    fields["workspace_id"] = workspace_id;
    return fields;
  }
};

// Unauthenticated without a user identity or one of its claims; PermissionDenied when the
// developer is not an active member of the claimed workspace.
absl::StatusOr<Caller> RequireMember(Reader& db, const Auth& auth);
// The membership of `developer_id` in `workspace_id`, if any.
absl::StatusOr<std::optional<Document>> FindMembership(Reader& db, std::string_view workspace_id,
                                                       std::string_view developer_id);

// The document an id argument names in `table`: NotFound naming table and id when it does not
// exist or lies in another workspace (row scope hides it).
absl::StatusOr<Document> RequireDoc(Reader& db, std::string_view table, const Value& id);
// The row of `table` whose `field` (indexed by "by_<field>") is the hash of `secret`; `missing`
// when there is none.
absl::StatusOr<Document> RequireByHash(Reader& db, std::string_view table, std::string_view field,
                                       std::string_view secret, absl::Status missing);
// Sets revoked_at (and updated_at where the row has it) on row `id` of `table`, for its owner
// (`owner_field`) or, when `admins_too`, a workspace admin. True when it was not revoked yet.
Result Revoke(Transaction& tx, const Caller& caller, std::string_view table, const Value& id,
              std::string_view owner_field, bool admins_too, double now);
// PermissionDenied unless the caller is the row's owner (`owner_field`).
absl::Status RequireOwner(const Document& doc, std::string_view table, std::string_view owner_field,
                          const Caller& caller);

// A work event (covibe_work_events) in the caller's workspace; `task` / `workstream` may be
// undefined.
absl::Status WriteWorkEvent(Transaction& tx, const Caller& caller, double now,
                            std::string_view event_type, const Value& task, const Value& workstream,
                            std::string_view summary, const Value& payload,
                            const Value& session = Value(Undefined{}));
absl::Status WriteFeedback(Transaction& tx, const Caller& caller, double now, std::string_view tool,
                           std::string_view feedback_type, std::string_view message,
                           const Value& warning);
absl::Status WriteUsage(Transaction& tx, const Caller& caller, double now, std::string_view tool,
                        std::string_view status, std::string_view feedback_type, double duration_ms,
                        const Value& session);

// InvalidArgument `function "<fn>": argument "<arg>": <what>`.
absl::Status BadArg(std::string_view fn, std::string_view arg, std::string_view what);
// A JSON array of strings as text, and back (InvalidArgument naming `what` for other text).
std::string StringsJson(const std::vector<std::string>& items);
absl::StatusOr<std::vector<std::string>> ParseStrings(std::string_view json, std::string_view what);
// An optional array-of-strings argument (undefined: empty).
std::vector<std::string> StringsArg(const Value& args, std::string_view name);
// The document without the fields named in `hidden`.
Value Without(const Document& doc, std::initializer_list<std::string_view> hidden);
absl::StatusOr<double> TtlHoursArg(std::string_view fn, const Value& args, absl::Duration fallback);

// Registration: the first failure is kept. Tool functions get the caller, and tool mutations
// write their usage event in their own transaction when they succeed.
using ToolMutationFn = std::function<Result(MutationContext&, const Value& args,
                                            const Caller& caller, std::string* feedback_type)>;
using ToolQueryFn = std::function<Result(QueryContext&, const Value& args, const Caller& caller)>;
using MemberMutationFn =
    std::function<Result(MutationContext&, const Value& args, const Caller& caller)>;

class Registrar : public apps::Registrar {
 public:
  Registrar(Database& db, EnvPtr env) : apps::Registrar(db), env_(std::move(env)) {}
  const EnvPtr& env() const { return env_; }
  // A mutation for an active member (not a tool call: no usage event).
  void MemberMutation(FunctionDef def, MemberMutationFn fn);
  // `def.args` lists the tool's own fields; "session_id" (optional string, the agent session
  // the usage event names) is added.
  void ToolMutation(FunctionDef def, ToolMutationFn fn);
  void ToolQuery(FunctionDef def, ToolQueryFn fn);

 private:
  EnvPtr env_;
};

void RegisterIdentity(Registrar& r);
void RegisterWork(Registrar& r);
void RegisterSharing(Registrar& r);

}  // namespace stagedb::covibe::internal

#endif  // STAGEDB_SRC_APPS_COVIBE_INTERNAL_H_
