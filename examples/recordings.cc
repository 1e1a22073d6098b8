// recordings: file storage and the scheduler, as a studio's drive recordings use them. A host
// stores a recording's bytes (FileStorage), a mutation records it and schedules its
// transcription (an action) in the same transaction, and a subscription to the job's row in
// `_scheduled_functions` prints each state as it commits: pending, inProgress, success. The
// action reads the file back and writes the transcript through a mutation.
//
//   recordings [DB_DIR]
//
// DB_DIR must not exist yet or be empty (default: a fresh directory under the system temp
// directory, removed at the end). Exits 0 when every step behaved as printed, 1 otherwise.
#include <stagedb/stagedb.h>

#include <condition_variable>
#include <iostream>
#include <mutex>
#include <string>

#include "example_support.h"

namespace {

using stagedb_examples::Expect;
using stagedb_examples::Finish;

using stagedb::Object;
using stagedb::Value;

constexpr const char* kSchema = R"json({
  "tables": {
    "recordings": {
      "fields": {"title": "string",
                 "storageId": {"type": "id", "table": "_storage"},
                 "transcript": {"type": "optional", "of": "string"}}
    }
  }
})json";

absl::StatusOr<stagedb::DocumentId> IdArg(const Value& args, std::string_view name) {
  return stagedb::DocumentId::Parse(args[name].as_string());
}

absl::Status RegisterFunctions(stagedb::Database& db) {
  // Public: record a stored file as a recording and schedule its transcription, atomically.
  absl::Status status = db.RegisterMutation(
      {.name = "recordings:add",
       .args = R"({"title": "string", "storageId": {"type": "id", "table": "_storage"}})",
       .returns = R"({"type": "id", "table": "_scheduled_functions"})"},
      [](stagedb::MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        absl::StatusOr<stagedb::DocumentId> id = ctx.db().Insert(
            "recordings", {{"title", args["title"]}, {"storageId", args["storageId"]}});
        if (!id.ok()) return id.status();
        absl::StatusOr<stagedb::DocumentId> job = ctx.scheduler().RunAfter(
            absl::Milliseconds(50), "recordings:transcribe", Object{{"recordingId", Value(*id)}});
        if (!job.ok()) return job.status();
        return Value(*job);
      });
  if (!status.ok()) return status;
  // Internal: the transcription job. An action: outside work (here, reading the file back and
  // "transcribing" it), then a mutation by name to save the result.
  status = db.RegisterAction(
      {.name = "recordings:transcribe",
       .visibility = stagedb::Visibility::kInternal,
       .args = R"({"recordingId": {"type": "id", "table": "recordings"}})"},
      [](stagedb::ActionContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        absl::StatusOr<stagedb::DocumentId> recording_id = IdArg(args, "recordingId");
        if (!recording_id.ok()) return recording_id.status();
        absl::StatusOr<Value> recording =
            ctx.RunQuery("recordings:get", Object{{"id", Value(*recording_id)}});
        if (!recording.ok()) return recording.status();
        absl::StatusOr<stagedb::DocumentId> file = IdArg(*recording, "storageId");
        if (!file.ok()) return file.status();
        size_t bytes = 0;
        absl::Status read = ctx.storage().Read(*file, [&](std::string_view chunk) {
          bytes += chunk.size();
          return absl::OkStatus();
        });
        if (!read.ok()) return read;
        const std::string transcript = "(" + std::to_string(bytes) + " bytes of speech)";
        return ctx.RunMutation("recordings:saveTranscript",
                               Object{{"id", Value(*recording_id)}, {"transcript", transcript}});
      });
  if (!status.ok()) return status;
  status = db.RegisterQuery(
      {.name = "recordings:get",
       .visibility = stagedb::Visibility::kInternal,
       .args = R"({"id": {"type": "id", "table": "recordings"}})"},
      [](stagedb::QueryContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        absl::StatusOr<std::optional<stagedb::Document>> doc = ctx.db().Get(args["id"].as_string());
        if (!doc.ok()) return doc.status();
        if (!doc->has_value()) return absl::NotFoundError("no such recording");
        return (*doc)->ToValue();
      });
  if (!status.ok()) return status;
  return db.RegisterMutation(
      {.name = "recordings:saveTranscript",
       .visibility = stagedb::Visibility::kInternal,
       .args = R"({"id": {"type": "id", "table": "recordings"}, "transcript": "string"})"},
      [](stagedb::MutationContext& ctx, const Value& args) -> absl::StatusOr<Value> {
        absl::StatusOr<stagedb::DocumentId> id = IdArg(args, "id");
        if (!id.ok()) return id.status();
        absl::Status patched = ctx.db().Patch(*id, {{"transcript", args["transcript"]}});
        if (!patched.ok()) return patched;
        return Value(nullptr);
      });
}

int Run(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<stagedb::Database>> opened =
      stagedb::Database::Open({.path = dir, .schema_json = kSchema});
  if (!opened.ok()) {
    std::cerr << "Open: " << opened.status() << "\n";
    return 1;
  }
  stagedb::Database& db = **opened;
  if (absl::Status s = RegisterFunctions(db); !s.ok()) {
    std::cerr << "register: " << s << "\n";
    return 1;
  }

  std::cout << "1. The host stores a recording's bytes:\n";
  const std::string audio(700'000, '\x42');  // about three chunks of 256 KiB
  absl::StatusOr<stagedb::DocumentId> file = db.files().Store("audio/webm", audio);
  Expect(file.ok(), "stored " + std::to_string(audio.size()) + " bytes");
  if (!file.ok()) return 1;
  absl::StatusOr<stagedb::StoredFile> meta = db.files().Metadata(*file);
  Expect(meta.ok() && meta->size == static_cast<int64_t>(audio.size()),
         "size " + (meta.ok() ? std::to_string(meta->size) : meta.status().ToString()) +
             ", sha256 " + (meta.ok() ? meta->sha256.substr(0, 16) + "..." : ""));

  std::cout << "2. A mutation records it and schedules its transcription:\n";
  absl::StatusOr<Value> job_text =
      db.Call("recordings:add", Object{{"title", "standup"}, {"storageId", Value(*file)}},
              stagedb::Auth::User({.subject = "user_1"}));
  Expect(job_text.ok(), "recordings:add returned job " +
                            (job_text.ok() ? job_text->as_string() : job_text.status().ToString()));
  if (!job_text.ok()) return 1;
  absl::StatusOr<stagedb::DocumentId> job = stagedb::DocumentId::Parse(job_text->as_string());
  if (!job.ok()) return 1;

  std::cout << "3. A subscription to the job prints its state as it commits:\n";
  std::mutex mu;
  std::condition_variable cv;
  std::string state;
  absl::StatusOr<stagedb::Subscription> sub =
      db.Subscribe([id = *job](stagedb::Reader& r) { return r.Get(id); },
                   stagedb::UpdateSlot([&](const stagedb::QueryUpdate& update) {
                     if (!update.result.ok() || !update.result->is_object()) return;
                     std::lock_guard<std::mutex> lock(mu);
                     state = (*update.result)["state"].as_string();
                     std::cout << "     job " << state << "\n";
                     cv.notify_all();
                   }));
  if (!sub.ok()) return 1;
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(30),
                [&] { return state == "success" || state == "failed"; });
    Expect(state == "success", "the transcription job ended: " + state);
  }

  absl::StatusOr<std::vector<stagedb::Document>> recordings =
      db.Query([](stagedb::Reader& r) { return r.Table("recordings").Collect(); });
  Expect(recordings.ok() && recordings->size() == 1 &&
             (*recordings)[0]["transcript"] == Value("(700000 bytes of speech)"),
         "the recording has its transcript");
  return Finish();
}

}  // namespace

int main(int argc, char** argv) {
  return stagedb_examples::RunInDirectory(argc, argv, "stagedb-recordings", Run);
}
