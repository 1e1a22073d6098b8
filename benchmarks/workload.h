// What both benchmark programs (stagedb_bench, stagedb_compare) share: the one generator of
// message documents, the stores they run on, the check that a store answers right, and the
// handling of their common flags and temporary directory.
#ifndef STAGEDB_BENCHMARKS_WORKLOAD_H_
#define STAGEDB_BENCHMARKS_WORKLOAD_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench_backend.h"

namespace stagedb_bench {

constexpr int kSessions = 1000;  // every store gets this many sessions first
constexpr size_t kBatch = 1000;  // messages per transaction when loading
constexpr size_t kNewest = 20;   // the range query: a session's newest 20 messages

// Generated messages, the same for every store. The session of docs[i] is number session_of[i]
// of the store's sessions; SetSessions writes that store's ids into the documents.
struct Messages {
  std::vector<MessageDoc> docs;
  std::vector<int> session_of;

  void SetSessions(const std::vector<std::string>& session_ids);
};

// `n` messages from `seed`, spread at random over kSessions sessions: authors from 50 names of
// 10 characters, kind chat (70%), tool (20%) or status, seq counting per session, sentAt whole
// milliseconds increasing with the index, a body of 100 to 140 characters (so that a document
// is about 250 bytes as JSON).
Messages MakeMessages(size_t n, uint64_t seed);

// The average size of the documents as JSON text (the fields only), with a 32-character
// session id (SQLite's hex form) standing in for the store's own.
double AverageJsonBytes(const Messages& messages);

// 0..n-1 in a random order fixed by `seed`.
std::vector<uint32_t> Shuffled(size_t n, uint64_t seed);
// `n` numbers below `bound`, at random, fixed by `seed`.
std::vector<uint32_t> RandomSequence(size_t n, uint32_t bound, uint64_t seed);

using OpenFn = std::unique_ptr<Backend> (*)(const std::string& dir);
struct BackendInfo {
  const char* name;
  OpenFn open;
};
// stagedb, lmdb, sqlite-json, sqlite-typed.
extern const BackendInfo kBackends[4];

// A backend in a fresh directory of its own under `root`, with its kSessions sessions; the
// directory goes with it.
class Store {
 public:
  Store(const BackendInfo& info, const std::string& root);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  Backend& operator*() { return *backend_; }
  Backend* operator->() { return backend_.get(); }
  const std::string& dir() const { return dir_; }
  const std::vector<std::string>& sessions() const { return sessions_; }

 private:
  std::string dir_;
  std::unique_ptr<Backend> backend_;
  std::vector<std::string> sessions_;
};

// Inserts `docs` in transactions of kBatch.
void InsertAll(Backend& backend, const std::vector<MessageDoc>& docs);

// Checks that a store loaded with `messages` (InsertAll, after SetSessions with its sessions)
// answers as the data says it should: their number, point reads of a sample, each session's
// newest kNewest. Throws BenchError naming `name` and the first wrong answer.
void Verify(const std::string& name, Store& store, const Messages& messages);

// A new directory under `parent` (empty: $TMPDIR or /tmp) named `prefix` and a random suffix.
std::string MakeTempRoot(const std::string& parent, const std::string& prefix);

// The value of `arg` when it is `--name=value`.
std::optional<std::string_view> FlagValue(std::string_view arg, std::string_view name);
// A positive decimal count; nullopt when `text` is not one.
std::optional<size_t> ParseCount(std::string_view text);

}  // namespace stagedb_bench

#endif  // STAGEDB_BENCHMARKS_WORKLOAD_H_
