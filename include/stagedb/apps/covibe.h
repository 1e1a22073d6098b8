// Covibe's backend on stagedb: task coordination between developers' coding agents. Tenants,
// workspaces, members and hashed MCP tokens (with a device-flow setup); tasks, workstreams,
// overlap warnings between active tasks, preflight checks, work and usage events; published
// session contexts; share links to frozen weekly summaries; and a schema health check. Named
// functions (functions.h) over the tables of schema/covibe/covibe.json (README "The Covibe
// application").
//
//   auto db = stagedb::Database::Open({.path = "covibe.stagedb",
//                                      .schema_json = std::string(stagedb::covibe::SchemaJson())});
//   stagedb::covibe::RegisterFunctions(**db);
//   auto ids = (*db)->CallInternal("covibe:bootstrapTenant", {...});       // host sign-up
//   auto who = (*db)->CallInternal("covibe:verifyToken", {{"token", t}});  // per MCP request
//   auto auth = stagedb::covibe::AuthFor(*who);                             // StatusOr<Auth>
//   stagedb::covibe::CallTool(**db, "covibe:startTask", args, *auth);
//
// Callers are Auth::User identities whose subject is a covibe_developers id and whose
// tenant_id / workspace_id claims are the caller's tenant and workspace ids; every table with
// those fields is row-scoped by the engine. Entry points that must find a row by a secret
// before anyone is known (token verification, the device flow, the public share read, the
// sign-up) are internal functions the host calls with CallInternal.
//
// Numeric arguments, as in all four apps: page sizes and limits (`num_items`, `limit`) and every
// other number (`ttl_hours`, `duration_ms`; times are ms since the epoch) are "number"
// (float64, as in Convex), so a C++ int and a double both work (the numbers rule converts an
// int64 up to 2^53 in magnitude). Covibe has no int64 argument.
#ifndef STAGEDB_APPS_COVIBE_H_
#define STAGEDB_APPS_COVIBE_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "stagedb/database.h"
#include "stagedb/export.h"

namespace stagedb::covibe {

// The Covibe schema (the text of schema/covibe/covibe.json, built into the library).
STAGEDB_EXPORT std::string_view SchemaJson();

struct CovibeOptions {
  // How recent a developer's preflight check must be for a task or workstream start.
  absl::Duration preflight_window = absl::Minutes(10);
  // How long a device-flow grant may be approved and polled.
  absl::Duration device_grant_ttl = absl::Minutes(15);
  // Session contexts expire this long after publishing unless `ttl_hours` says otherwise.
  absl::Duration context_ttl = absl::Hours(24);
  // Share links expire this long after creation unless `ttl_hours` says otherwise.
  absl::Duration share_link_ttl = absl::Hours(24 * 7);
  // The time every function reads (tests move it); empty: absl::Now.
  std::function<absl::Time()> clock;
};

// Registers Covibe's functions (README "The Covibe application" lists them) on `db`, which
// must have been opened with SchemaJson()'s tables. AlreadyExists when called twice.
STAGEDB_EXPORT absl::Status RegisterFunctions(Database& db, CovibeOptions options = {});

// The identity a verified token stands for: `verified` is covibe:verifyToken's (or
// covibe:pollDeviceSetup's) result ({developer_id, tenant_id, workspace_id, token_id,
// agent_type, ...}). InvalidArgument naming the first of those ids it lacks.
STAGEDB_EXPORT absl::StatusOr<Auth> AuthFor(const Value& verified);

// Calls the public tool function `name` (an MCP tool call) so that it always leaves one
// covibe_usage_events row: tool mutations record theirs in their own transaction when they
// succeed; for tool queries, and for any call that fails, CallTool records one (status "ok"
// or "error") through the internal covibe:recordUsage, run as `auth` (so the row lies in the
// caller's scope). Other functions are called as Database::Call does.
STAGEDB_EXPORT absl::StatusOr<Value> CallTool(Database& db, std::string_view name,
                                              const Value& args, const Auth& auth);

// The names of the functions that are MCP tool calls (CallTool records their usage).
STAGEDB_EXPORT const std::vector<std::string>& ToolNames();

// Schema health, as the seed's /api/health: the tables, fields and indexes Covibe needs,
// compared with the database's schema in force. "ok" when nothing is missing, else "degraded".
// An index whose fields or unique flag differ from Covibe's counts as missing; so does a missing
// or different scope, and a missing or different TTL declaration.
struct STAGEDB_EXPORT HealthReport {
  std::string status;                        // "ok" or "degraded"
  std::vector<std::string> missing_tables;   // "covibe_share_links"
  std::vector<std::string> missing_columns;  // "covibe_tasks.task_type"
  std::vector<std::string> missing_indexes;  // "covibe_overlap_warnings.by_task"
  std::vector<std::string> missing_scopes;   // "covibe_tasks" (no row-level scope declared)
  std::vector<std::string> missing_ttls;     // "covibe_setup_device_grants" (ttl lost/changed)
  Value ToValue() const;
};
STAGEDB_EXPORT absl::StatusOr<HealthReport> Doctor(Database& db);

// Whether two repo-relative paths overlap: equal, or one is a directory prefix of the other
// ("src/api" and "src/api/users.ts"). Leading "./" and trailing "/" are ignored.
STAGEDB_EXPORT bool PathsOverlap(std::string_view a, std::string_view b);

}  // namespace stagedb::covibe

#endif  // STAGEDB_APPS_COVIBE_H_
