// CodeCourier's backend on stagedb: users synced from Clerk, projects with members and
// invitations, provider keys (encrypted) and REST API keys (hashed), sandboxes with their live
// conversations, workflows, runs with their steps, learnings extracted when a sandbox session
// ends, usage records with cost rates, denormalized project counters and notifications, as named
// functions (functions.h) over the `cc_` tables of schema/codecourier/codecourier.json (README
// "The CodeCourier application").
//
//   auto key = stagedb::FieldKey::FromHex(getenv("CODECOURIER_FIELD_KEY"));
//   auto db = stagedb::Database::Open(
//       {.path = "codecourier.stagedb",
//        .schema_json = std::string(stagedb::codecourier::SchemaJson())});
//   stagedb::codecourier::RegisterFunctions(**db, {.field_key = *key,
//                                                  .extract_learnings = my_llm_extractor});
//   // Clerk's webhook (trusted host code) is the only source of a user's email, name and image.
//   (*db)->CallInternal("codecourier/users:upsertFromClerk",
//                       stagedb::Object{{"clerkId", "user_2x9"}, {"email", "ada@example.com"}});
//   auto me = stagedb::Auth::User({.subject = "user_2x9"});   // the Clerk user id
//   (*db)->Call("codecourier/users:store", stagedb::Object{}, me);
//
// Every function is one transaction (queries one snapshot); a mutation that fails writes
// nothing. Callers are read from ctx.auth(): Unauthenticated without an identity (or without a
// user record for it), NotFound naming a missing project or record, PermissionDenied naming the
// project for a non-member or a member whose role is too low, FailedPrecondition for a step the
// lifecycle does not allow (ending an ended sandbox, completing a finished run). Admin callers
// (CallInternal, trusted host code) pass every membership check.
//
// Numeric arguments, as in all four apps: page sizes (`paginationOpts.numItems`) and every other
// number (`order`, `prNumber`, `quantity`, `unitCost`, token counts; times are ms since the
// epoch) are "number" (float64, as in Convex), so a C++ int and a double both work (the numbers
// rule converts an int64 up to 2^53 in magnitude). CodeCourier has no int64 argument.
#ifndef STAGEDB_APPS_CODECOURIER_H_
#define STAGEDB_APPS_CODECOURIER_H_

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "stagedb/database.h"
#include "stagedb/export.h"
#include "stagedb/secrets.h"

namespace stagedb::codecourier {

// The CodeCourier schema (the text of schema/codecourier/codecourier.json, built into the
// library).
STAGEDB_EXPORT std::string_view SchemaJson();

// One message of a sandbox conversation, as the learning extractor sees it (oldest first).
struct SandboxMessage {
  std::string role;  // "user", "assistant", "system" or "tool"
  std::string content;
  double created_at = 0;  // ms since the epoch
};

struct CodeCourierOptions {
  // Seals provider keys (apiKeys, projectProviderKeys) and deploy keys; never stored. Empty:
  // storing or resolving a provider key fails with FailedPrecondition ("no field key").
  std::optional<FieldKey> field_key;
  // Turns an ended sandbox's conversation into learnings text (the host's LLM call); called by
  // the scheduled internal action "codecourier/learnings:extractFromSandbox". Empty text: no
  // learning is saved. Unset: the job fails with FailedPrecondition ("no learning extractor").
  std::function<absl::StatusOr<std::string>(const std::vector<SandboxMessage>& messages)>
      extract_learnings;
  // How long after a sandbox session ends its learning extraction is due.
  absl::Duration learning_extraction_delay = absl::ZeroDuration();
};

// Registers CodeCourier's functions (README "The CodeCourier application" lists them) on `db`,
// which must have been opened with SchemaJson()'s tables. AlreadyExists when called twice on one
// database.
STAGEDB_EXPORT absl::Status RegisterFunctions(Database& db, CodeCourierOptions options = {});

}  // namespace stagedb::codecourier

#endif  // STAGEDB_APPS_CODECOURIER_H_
