// Collaboration sessions on stagedb: two agents (A creates, B joins with an invite code) and
// observers working in a session with messages, versioned notes, files, presence and an
// append-only activity log, plus agent profiles with ratings, webhooks, workspaces ("Spaces"),
// session templates and per-session compute credits, as named functions (functions.h) over the
// tables of schema/collab/collab.json (README "The collaboration application").
//
//   auto db = stagedb::Database::Open({.path = "collab.stagedb",
//                                      .schema_json = std::string(stagedb::collab::SchemaJson())});
//   stagedb::collab::RegisterFunctions(**db, {.send_webhook = post_to_url});
//   stagedb::Value s = *(*db)->Call("collab:createSession",
//                                   stagedb::Object{{"name", "Refactor"}, {"agentId", "claude"}});
//   // s: {sessionId: "ses_…", agentToken: "agt_…", observerToken: "obs_…", inviteCode, ...}
//   (*db)->Call("collab:sendMessage", stagedb::Object{{"sessionId", s["sessionId"]},
//                                                    {"token", s["agentToken"]},
//                                                    {"content", "hello"}});
//
// Sessions are named by their `sid` ("ses_…"); callers prove their role in a session with the
// token they were given (agent A, agent B or observer), which is stored only hashed. Every
// function is one transaction; a mutation that fails writes nothing, its activity row included.
// Errors: InvalidArgument for bad input (naming the field and value), NotFound naming the
// missing session, note, file, template, workspace or webhook, PermissionDenied for a wrong
// token, invite code or role, FailedPrecondition for a step the rules refuse (a status
// transition, joining a session that is not waiting, an expired or used invite, an overdrawn
// compute pool), Aborted ("conflict") for a stale note version, and AlreadyExists for a second
// rating of the same agent in the same session. Errors reachable with an invite code alone
// name the table and field, never the session or its agents.
//
// Numeric arguments, as in all four apps: page sizes and limits (`paginationOpts.numItems`,
// `limit`) are "number", so `2` and `2.0` both work; an argument that carries a stored value has
// that field's type. Here the seed's integer columns are int64 (`afterSeq`, `expectedVersion`,
// `rating`, `credits`, `cost`): pass a C++ int or stagedb::Value::Int64, not a double. Times are
// float64 ms since the epoch.
#ifndef STAGEDB_APPS_COLLAB_H_
#define STAGEDB_APPS_COLLAB_H_

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "stagedb/database.h"
#include "stagedb/export.h"

namespace stagedb::collab {

// The collaboration schema (the text of schema/collab/collab.json, built into the library).
STAGEDB_EXPORT std::string_view SchemaJson();

// One webhook call: POST `body` (JSON) to `url` with the header
// `X-Collab-Signature: <signature>`, where signature is "sha256=" + HMAC-SHA256 hex of the body
// under the webhook's secret (stagedb::HmacSha256Hex).
struct WebhookDelivery {
  std::string url;
  std::string event;  // the activity action, e.g. "message.created"
  std::string body;
  std::string signature;
};

struct CollabOptions {
  // Sends one webhook (the host's HTTP client); called by the scheduled action
  // "collab:deliverWebhooks", outside any transaction. Empty: deliveries fail with
  // FailedPrecondition ("no webhook sender") and their jobs are marked failed.
  std::function<absl::Status(const WebhookDelivery&)> send_webhook;
  // How long an invite code stays valid after the session is created.
  absl::Duration invite_ttl = absl::Hours(24);
  // The clock of every timestamp the functions write (createdAt, lastSeenAt, invite expiry)
  // and of presence staleness (listPresence hides rows older than the 120 s TTL by it).
  // Empty: absl::Now. Tests move it to expire invites and presence.
  std::function<absl::Time()> now;
};

// A memorable invite code, ADJECTIVE-NOUN-NN ("RAPID-DAWN-69"), drawn from the operating
// system's cryptographic random source (stagedb::GenerateToken).
STAGEDB_EXPORT absl::StatusOr<std::string> NewInviteCode();

// Registers the collaboration functions (README "The collaboration application" lists them) on
// `db`, which must have been opened with SchemaJson()'s tables. AlreadyExists when called twice
// on one database.
STAGEDB_EXPORT absl::Status RegisterFunctions(Database& db, CollabOptions options = {});

}  // namespace stagedb::collab

#endif  // STAGEDB_APPS_COLLAB_H_
