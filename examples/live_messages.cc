// live_messages: a live query. A writer thread posts, edits and deletes messages in a
// collaboration session while a subscription to the session's five latest messages prints each
// change set as it arrives (on the database's notifier thread).
//
//   live_messages [DB_DIR]
//
// DB_DIR must not exist yet or be empty (default: a fresh directory under the system temp
// directory, removed at the end). Exits 0 when the last update delivered equals the session's
// final five latest messages, 1 otherwise.
#include <stagedb/stagedb.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;

constexpr const char* kSchema = R"json({
  "tables": {
    "sessions": {"fields": {"title": "string"}},
    "messages": {
      "fields": {
        "sessionId": {"type": "id", "table": "sessions"},
        "seq": "int64",
        "author": "string",
        "body": "string"
      },
      "indexes": [{"name": "by_session_seq", "fields": ["sessionId", "seq"]}]
    }
  }
})json";

// The query we subscribe to: the session's five latest messages, newest first.
auto LatestMessages(const stagedb::DocumentId& session) {
  return [session](stagedb::Reader& reader) {
    return reader.Table("messages")
        .WithIndex("by_session_seq", stagedb::Eq("sessionId", session))
        .Order(stagedb::SortOrder::kDesc)
        .Take(5);
  };
}

std::string Describe(const stagedb::Document& message) {
  return "#" + std::to_string(message["seq"].as_int64()) + " " + message["author"].as_string() +
         ": " + message["body"].as_string();
}

void PrintUpdate(const stagedb::QueryUpdate& update) {
  std::cout << "update at commit " << update.timestamp << ":\n";
  if (!update.result.ok()) {
    std::cout << "  error: " << update.result.status() << "\n";
    return;
  }
  for (const stagedb::DocumentChange& change : update.changes.added) {
    std::cout << "  + [" << *change.new_position << "] " << Describe(change.document) << "\n";
  }
  for (const stagedb::DocumentChange& change : update.changes.removed) {
    std::cout << "  - [" << *change.old_position << "] " << Describe(change.document) << "\n";
  }
  for (const stagedb::DocumentChange& change : update.changes.changed) {
    std::cout << "  ~ [" << *change.old_position << "->" << *change.new_position << "] "
              << Describe(change.document) << "\n";
  }
}

int Run(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<stagedb::Database>> opened =
      stagedb::Database::Open({.path = dir, .schema_json = kSchema});
  if (!opened.ok()) {
    std::cerr << "open: " << opened.status() << "\n";
    return 1;
  }
  stagedb::Database& db = **opened;

  absl::StatusOr<stagedb::DocumentId> session = db.Mutate([](stagedb::Transaction& tx) {
    return tx.Insert("sessions", {{"title", "pairing on the render pipeline"}});
  });
  if (!session.ok()) {
    std::cerr << "create session: " << session.status() << "\n";
    return 1;
  }

  // The callback runs on the notifier thread; it keeps the last result for the check below.
  std::mutex mu;
  std::vector<stagedb::Document> shown;
  absl::StatusOr<stagedb::Subscription> subscription =
      db.Subscribe(LatestMessages(*session), [&](const stagedb::QueryUpdate& update) {
        PrintUpdate(update);
        std::lock_guard<std::mutex> lock(mu);
        shown = update.documents();
      });
  if (!subscription.ok()) {
    std::cerr << "subscribe: " << subscription.status() << "\n";
    return 1;
  }

  // The writer: eight messages, then an edit and a delete. Each Mutate is one commit.
  stagedb::Timestamp last_commit = 0;
  absl::Status writer_status;
  std::thread writer([&] {
    std::vector<stagedb::DocumentId> posted;
    const char* const authors[] = {"agent-a", "agent-b"};
    for (int seq = 1; seq <= 8 && writer_status.ok(); ++seq) {
      absl::StatusOr<stagedb::DocumentId> id = db.Mutate(
          [&](stagedb::Transaction& tx) {
            return tx.Insert("messages", {{"sessionId", *session},
                                          {"seq", seq},
                                          {"author", authors[seq % 2]},
                                          {"body", "step " + std::to_string(seq) + " done"}});
          },
          &last_commit);
      if (!id.ok()) writer_status = id.status();
      if (id.ok()) posted.push_back(*id);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!writer_status.ok()) return;
    writer_status = db.Mutate(
        [&](stagedb::Transaction& tx) {
          return tx.Patch(posted[6], {{"body", "step 7 done (edited)"}});
        },
        &last_commit);
    if (!writer_status.ok()) return;
    writer_status =
        db.Mutate([&](stagedb::Transaction& tx) { return tx.Delete(posted[7]); }, &last_commit);
  });
  writer.join();
  if (!writer_status.ok()) {
    std::cerr << "writer: " << writer_status << "\n";
    return 1;
  }

  // Read your writes: every update up to the writer's last commit has been delivered.
  if (absl::Status s = db.WaitForDelivery(last_commit); !s.ok()) {
    std::cerr << "wait: " << s << "\n";
    return 1;
  }
  absl::StatusOr<std::vector<stagedb::Document>> now =
      db.Query([&](stagedb::Reader& reader) { return LatestMessages(*session)(reader); });
  if (!now.ok()) {
    std::cerr << "query: " << now.status() << "\n";
    return 1;
  }
  std::lock_guard<std::mutex> lock(mu);
  if (shown != *now || shown.size() != 5 || shown.front()["seq"].as_int64() != 7) {
    std::cerr << "the last update delivered is not the session's latest messages\n";
    return 1;
  }
  std::cout << "the subscription shows the latest five messages, newest #7 (edited)\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::error_code ec;
  std::string dir;
  bool temporary = argc < 2;
  if (temporary) {
    std::string pattern = (fs::temp_directory_path(ec) / "stagedb-live-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      std::cerr << "cannot create a temporary directory\n";
      return 1;
    }
    dir = pattern;
  } else {
    dir = argv[1];
  }
  const int status = Run(dir);
  if (temporary) fs::remove_all(dir, ec);
  return status;
}
