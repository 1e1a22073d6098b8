// Stage's backend on stagedb: sessions with a virtual filesystem and render state, snapshots,
// the app catalog with versions and preview/production channels, Google OAuth scopes and drive
// recordings with their transcription jobs, as named functions (functions.h) over the tables
// of schema/stage/stage.json (README "The Stage application").
//
//   auto db = stagedb::Database::Open({.path = "studio.stagedb",
//                                      .schema_json = std::string(stagedb::stage::SchemaJson())});
//   stagedb::stage::RegisterFunctions(**db, {.transcribe = my_speech_to_text});
//   auto session = (*db)->Call("stage:createSession", stagedb::Object{});
//   (*db)->Call("stage:writeFile", stagedb::Object{{"sessionId", ...}, {"path", "/app/App.tsx"},
//                                                  {"content", "..."}});
//
// The functions and their arguments are listed in README "The Stage application". Numeric
// arguments, as in all four apps: every number Stage takes (`version`, `sizeBytes`,
// `recordedAt`, `lastPushedAt`; times are ms since the epoch) is "number" (float64, as in
// Convex), so a C++ int and a double both work (`{"version", 2}` is `{"version", 2.0}`: the
// numbers rule converts an int64 up to 2^53 in magnitude); results hold float64. Stage has no
// int64 argument.
//
// Every function is one transaction (queries one snapshot); a mutation that fails writes
// nothing. Errors are InvalidArgument for bad input (naming the argument and the value),
// NotFound naming the missing session, file, app, version or recording, FailedPrecondition
// for a step the workflow does not allow yet (promoting without a preview version, rolling back
// with no earlier version).
#ifndef STAGEDB_APPS_STAGE_H_
#define STAGEDB_APPS_STAGE_H_

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stagedb/database.h"
#include "stagedb/export.h"
#include "stagedb/file_storage.h"

namespace stagedb::stage {

// The Stage schema (the text of schema/stage/stage.json, built into the library).
STAGEDB_EXPORT std::string_view SchemaJson();

// The path of a session's workflow manifest; writing it validates it (ValidateWorkflowManifest).
inline constexpr std::string_view kWorkflowManifestPath = "/app/shift.workflows.json";

// Checks the text of a workflow manifest: JSON, {"version": 1, "workflows": {name: {"steps":
// [{"kind": K, ...}, ...]}}} with K one of the step kinds Stage runs ("sheets.appendRow",
// "sheets.updateRow", "billing.createItem", "pulse.track", "ledger.audit", "message.send",
// "response.template"). InvalidArgument saying where (`workflows.onSignup.steps[2].kind`) and
// what was expected.
STAGEDB_EXPORT absl::Status ValidateWorkflowManifest(std::string_view text);

struct StageOptions {
  // Turns a drive recording's bytes into text (the host's speech-to-text service); called by the
  // scheduled action "stage:transcribeRecording". Empty: transcription jobs fail with
  // FailedPrecondition ("no transcriber").
  std::function<absl::StatusOr<std::string>(const StoredFile& file, std::string_view bytes)>
      transcribe;
  // How long after a recording is stored its transcription job is due.
  absl::Duration transcription_delay = absl::ZeroDuration();
};

// Registers Stage's functions (README "The Stage application" lists them) on `db`, which must
// have been opened with SchemaJson()'s tables. AlreadyExists when called twice on one database.
STAGEDB_EXPORT absl::Status RegisterFunctions(Database& db, StageOptions options = {});

}  // namespace stagedb::stage

#endif  // STAGEDB_APPS_STAGE_H_
