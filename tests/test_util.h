// Helpers shared by the tests: temporary database directories, and waiting for what another
// thread or process does.
#ifndef STAGEDB_TESTS_TEST_UTIL_H_
#define STAGEDB_TESTS_TEST_UTIL_H_

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace stagedb::testing {

// The seed of a randomized test: STAGEDB_TEST_SEED when set, else `fallback` (the test's fixed
// seed). Tests print it on failure.
uint64_t TestSeed(uint64_t fallback);

// A fresh empty directory under the system temp dir, removed when this object is destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // A path inside the directory.
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The repository's root (for schema/ and examples/), from the STAGEDB_SOURCE_DIR variable CTest
// sets, or the current directory.
std::string SourceDir();

// ---- waiting ----
// A test makes the interleaving it needs happen: it waits for the event it depends on (a
// commit, an update, a thread's arrival), never for a while. Every wait is bounded only by
// kHangGuard, so that a bug fails the test with a message instead of running into ctest's
// timeout; no check relies on the bound, and it is generous because a loaded machine or
// ThreadSanitizer can be very slow.
inline constexpr absl::Duration kHangGuard = absl::Seconds(60);

// A count that threads of a test raise and wait for: commits a writer made, snapshots a reader
// took, threads that arrived at a rendezvous.
class Progress {
 public:
  void Add(int64_t n = 1);
  int64_t value();
  // Waits until value() >= target; false when `guard` passed first.
  [[nodiscard]] bool WaitAtLeast(int64_t target, absl::Duration guard = kHangGuard);
  // When Add follows each unit of another thread's work (a commit, a snapshot): waits until a
  // unit that began after this call is done. That is the second Add from now, since the first
  // may count a unit already under way.
  [[nodiscard]] bool WaitForNewer(absl::Duration guard = kHangGuard) {
    return WaitAtLeast(value() + 2, guard);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t value_ = 0;
};

// A one-shot gate: Wait blocks until Open.
class Gate {
 public:
  void Open() { opened_.Add(); }
  bool is_open() { return opened_.value() > 0; }
  // False when `guard` passed before the gate opened.
  [[nodiscard]] bool Wait(absl::Duration guard = kHangGuard) {
    return opened_.WaitAtLeast(1, guard);
  }

 private:
  Progress opened_;
};

// Opens a gate when the scope ends, so that a failing REQUIRE does not leave another thread
// blocked on it (a callback blocked there would hang the Subscription's and the Database's
// destructors). Declare it after what must outlive the blocked thread.
struct OpenOnExit {
  Gate& gate;
  ~OpenOnExit() { gate.Open(); }
};

// Polls `condition` until it holds; false when `guard` passed first. For what nothing signals
// to the test: another process's writes, or state a thread of the database changes.
[[nodiscard]] bool PollUntil(const std::function<bool()>& condition,
                             absl::Duration guard = kHangGuard);

}  // namespace stagedb::testing

#endif  // STAGEDB_TESTS_TEST_UTIL_H_
