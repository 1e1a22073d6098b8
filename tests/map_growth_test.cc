// Map growth under load (issue 13.1). LMDB changes a process's map size only while the process
// has no transaction open, so a growing map must get a moment with no transaction open even
// while threads read without pause. These tests start with a tiny map so that writers grow it
// many times, with readers, subscriptions and another process busy on the same file.
//
// Each test waits for the writers with a hang guard (minutes, far above the seconds the work
// takes on a loaded machine): a writer starved by the readers fails the test with the counts
// instead of hanging it, and the readers are then stopped so the test can end.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using stagedb::Database;
using stagedb::Document;
using stagedb::Object;
using stagedb::Reader;
using stagedb::Transaction;
using stagedb::Value;
using stagedb::testing::OpenOrFail;
using stagedb::testing::TempDir;

constexpr const char* kSchema = R"json({
  "tables": {
    "notes": {
      "fields": {"writer": "int64", "seq": "int64", "body": "string"},
      "indexes": [{"name": "by_writer_seq", "fields": ["writer", "seq"]}]
    }
  }
})json";

constexpr size_t kTinyMap = size_t{256} << 10;
constexpr size_t kBodyBytes = 2048;
// Far above what the work takes on a loaded machine; only a starved writer reaches it.
constexpr std::chrono::minutes kHangGuard{4};

Object Note(int64_t writer, int64_t seq) {
  return {{"writer", Value::Int64(writer)},
          {"seq", Value::Int64(seq)},
          {"body", std::string(kBodyBytes, static_cast<char>('a' + seq % 26))}};
}

// Reader threads that query without pause until stopped, counting what they saw and any error.
class BusyReaders {
 public:
  BusyReaders(Database& db, int threads) : db_(db) {
    for (int t = 0; t < threads; ++t) {
      threads_.emplace_back([this, t] { Run(t); });
    }
  }
  ~BusyReaders() { Stop(); }

  void Stop() {
    stop_ = true;
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }
  int64_t queries() const { return queries_.load(); }
  std::string first_error() {
    std::lock_guard<std::mutex> lock(mu_);
    return first_error_;
  }

 private:
  void Run(int t) {
    while (!stop_) {
      // An index range, as in the report: the notes of one writer, in order. The checking runs
      // inside the query too, so that each reader spends nearly all its time in a transaction
      // and the readers' transactions overlap without a gap (what starved the old resize lock).
      absl::StatusOr<std::string> problem =
          db_.Query([&](Reader& r) -> absl::StatusOr<std::string> {
            absl::StatusOr<std::vector<Document>> notes =
                r.Table("notes")
                    .WithIndex("by_writer_seq", stagedb::Eq("writer", Value::Int64(t % 3)))
                    .Collect();
            if (!notes.ok()) return notes.status();
            // Each writer commits its notes in order, one per mutation: a snapshot holds a prefix.
            for (size_t i = 0; i < notes->size(); ++i) {
              if ((*notes)[i]["seq"] != Value::Int64(static_cast<int64_t>(i))) {
                return std::string("a snapshot is missing a committed note");
              }
            }
            return std::string();
          });
      const std::string error = problem.ok() ? *problem : problem.status().ToString();
      if (!error.empty()) {
        std::lock_guard<std::mutex> lock(mu_);
        if (first_error_.empty()) first_error_ = error;
      }
      ++queries_;
    }
  }

  Database& db_;
  std::atomic<bool> stop_ = false;
  std::atomic<int64_t> queries_ = 0;
  std::mutex mu_;
  std::string first_error_;
  std::vector<std::thread> threads_;
};

// Runs `writers` threads that each insert `per_writer` notes, one mutation each, and waits for
// them. Past kHangGuard the writers are starved: that is reported in `error` and `readers` are
// stopped, so that the writers can finish. Returns how many inserts succeeded in time.
int64_t RunWriters(Database& db, int writers, int per_writer, BusyReaders& readers,
                   std::string& error) {
  std::mutex mu;
  std::condition_variable cv;
  int finished = 0;
  std::atomic<int64_t> inserted = 0;
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < per_writer; ++i) {
        absl::StatusOr<stagedb::DocumentId> id =
            db.Mutate([&](Transaction& tx) { return tx.Insert("notes", Note(w, i)); });
        if (!id.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          if (error.empty()) error = id.status().ToString();
          break;
        }
        ++inserted;
      }
      std::lock_guard<std::mutex> lock(mu);
      ++finished;
      cv.notify_all();
    });
  }
  int64_t in_time = 0;
  {
    std::unique_lock<std::mutex> lock(mu);
    const bool done = cv.wait_for(lock, kHangGuard, [&] { return finished == writers; });
    in_time = inserted.load();
    if (!done) {
      error = "writers starved: " + std::to_string(in_time) + " of " +
              std::to_string(writers * per_writer) + " inserts committed in the hang guard";
    }
  }
  if (in_time < writers * per_writer) readers.Stop();
  for (std::thread& thread : threads) thread.join();
  return in_time;
}

TEST_CASE("writers grow a tiny map while readers and subscriptions read without pause",
          "[map_growth]") {
  TempDir dir;
  std::unique_ptr<Database> db =
      OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema, .initial_map_size = kTinyMap});
  const size_t map_before = db->MapSize();
  REQUIRE(map_before < size_t{1} << 20);

  // Subscriptions re-run on every commit of their writer, on the notifier thread.
  std::atomic<int64_t> updates = 0;
  std::vector<stagedb::Subscription> subscriptions;
  for (int w = 0; w < 2; ++w) {
    absl::StatusOr<stagedb::Subscription> sub = db->Subscribe(
        [w](Reader& r) {
          return r.Table("notes")
              .WithIndex("by_writer_seq", stagedb::Eq("writer", Value::Int64(w)))
              .Order(stagedb::SortOrder::kDesc)
              .Take(5);
        },
        [&](const stagedb::QueryUpdate&) { ++updates; });
    REQUIRE_OK(sub);
    subscriptions.push_back(*std::move(sub));
  }

  constexpr int kWriters = 3;
  constexpr int kPerWriter = 120;  // ~740 KB of notes: the map doubles at least twice
  BusyReaders readers(*db, 4);
  // The readers are under way before the first write.
  while (readers.queries() == 0 && readers.first_error().empty()) std::this_thread::yield();
  std::string error;
  const int64_t inserted = RunWriters(*db, kWriters, kPerWriter, readers, error);
  readers.Stop();
  INFO("writer error: " << error << "; reader error: " << readers.first_error() << "; queries "
                        << readers.queries() << "; map " << map_before << " -> " << db->MapSize());
  CHECK(error.empty());
  CHECK(inserted == kWriters * kPerWriter);
  CHECK(readers.first_error().empty());
  CHECK(db->MapSize() >= 4 * map_before);

  absl::StatusOr<std::vector<Document>> all =
      db->Query([](Reader& r) { return r.Table("notes").Collect(); });
  REQUIRE_OK(all);
  CHECK(all->size() == static_cast<size_t>(kWriters * kPerWriter));
}

// The child of the next test: opens the database with the default (large) map and writes far
// past the parent's map.
TEST_CASE("map growth child process", "[.child]") {
  const char* path = std::getenv("STAGEDB_CHILD_PATH");
  if (path == nullptr) return;
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open({.path = path});
  REQUIRE_OK(db);
  for (int i = 0; i < 400; ++i) {
    absl::StatusOr<stagedb::DocumentId> id =
        (*db)->Mutate([&](Transaction& tx) { return tx.Insert("notes", Note(9, i)); });
    REQUIRE_OK(id);
  }
}

TEST_CASE("readers adopt the map another process grew, while they keep reading",
          "[map_growth][process]") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  std::unique_ptr<Database> db =
      OpenOrFail({.path = path, .schema_json = kSchema, .initial_map_size = kTinyMap});
  const size_t map_before = db->MapSize();
  BusyReaders readers(*db, 3);
  while (readers.queries() == 0 && readers.first_error().empty()) std::this_thread::yield();

  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    setenv("STAGEDB_CHILD_PATH", path.c_str(), 1);
    execl("/proc/self/exe", "map_growth_test", "map growth child process", "--reporter", "compact",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);

  // The parent's own writers now write into the file the child grew, readers still busy.
  std::string error;
  const int64_t inserted = RunWriters(*db, 2, 40, readers, error);
  const int64_t queries_before_stop = readers.queries();
  readers.Stop();
  INFO("writer error: " << error << "; reader error: " << readers.first_error() << "; map "
                        << map_before << " -> " << db->MapSize());
  CHECK(error.empty());
  CHECK(inserted == 80);
  CHECK(readers.first_error().empty());
  CHECK(queries_before_stop > 0);
  CHECK(db->MapSize() > map_before);
  absl::StatusOr<std::vector<Document>> child_notes = db->Query([](Reader& r) {
    return r.Table("notes")
        .WithIndex("by_writer_seq", stagedb::Eq("writer", Value::Int64(9)))
        .Collect();
  });
  REQUIRE_OK(child_notes);
  CHECK(child_notes->size() == 400);
}

}  // namespace
