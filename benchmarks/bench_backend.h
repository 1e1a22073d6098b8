// The stores the benchmarks compare, behind one small interface: stagedb itself, raw LMDB
// (hand-maintained secondary indexes, Cereal-encoded records) and SQLite (a JSON text column with
// expression indexes, or plain typed columns). Each runs the same workloads on the same
// "messages" documents (workload.h generates them):
//   messages {sessionId: id of sessions, author: string, kind: string, seq: int64,
//             sentAt: float64 (ms), body: string}
// with two compound secondary indexes, by_session_sent [sessionId, sentAt] and
// by_author_kind [author, kind].
#ifndef STAGEDB_BENCHMARKS_BENCH_BACKEND_H_
#define STAGEDB_BENCHMARKS_BENCH_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace stagedb_bench {

// A message document. `session_id` is a session id in the backend's own form (CreateSessions).
struct MessageDoc {
  std::string session_id;
  std::string author;  // about 10 characters, one of about 50 authors
  std::string kind;    // chat, tool or status
  int64_t seq = 0;     // the message's number within its session
  double sent_at = 0;  // milliseconds since the epoch, whole, increasing
  std::string body;

  friend bool operator==(const MessageDoc&, const MessageDoc&) = default;
};

// Any failure inside a backend.
struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One thread's way to insert single messages, with its own state (connection, statements,
// encoder). Several writers of one backend may insert at once, each from its own thread.
class Writer {
 public:
  virtual ~Writer() = default;
  // Inserts one message in its own transaction: one durable commit.
  virtual void InsertOne(const MessageDoc& doc) = 0;
};

// Everything but NewWriter's writers is for one thread at a time.
class Backend {
 public:
  virtual ~Backend() = default;

  // Inserts `n` sessions in one transaction and returns their ids, in the form the messages'
  // `session_id` holds.
  virtual std::vector<std::string> CreateSessions(int n) = 0;
  // Inserts `docs` into `messages` in one transaction: one durable commit.
  virtual void InsertBatch(std::span<const MessageDoc> docs) = 0;
  // How many messages InsertBatch inserted; they are numbered 0.. in insertion order.
  virtual size_t num_messages() const = 0;
  // Reads message number `i` by its id, in its own read transaction, decoding the whole
  // document into `*doc` (whose strings' storage is reused).
  virtual void PointRead(size_t i, MessageDoc* doc) = 0;
  // In one read transaction: the messages of `session_id` by descending sentAt, at most
  // `limit`, each decoded; they replace the contents of `*docs` (whose storage is reused).
  virtual void RangeQuery(const std::string& session_id, size_t limit,
                          std::vector<MessageDoc>* docs) = 0;
  // A writer for one thread (see Writer); it must not outlive the backend.
  virtual std::unique_ptr<Writer> NewWriter() = 0;
  // Moves whatever is pending into the store's main files, so that their sizes are the
  // database's size (SQLite: checkpoints and truncates the WAL). Most stores have nothing to do.
  virtual void Checkpoint() {}
};

// The document slot number `n` of `*docs` for a RangeQuery to decode into: an existing one
// (its strings keep their storage) or a new one at the end.
inline MessageDoc& Slot(std::vector<MessageDoc>* docs, size_t n) {
  if (n == docs->size()) docs->emplace_back();
  return (*docs)[n];
}

// Each opens a new store in the existing, empty directory `dir`. Durable commits throughout:
// stagedb's default durability, LMDB's default (fsync per commit), SQLite WAL +
// synchronous=FULL.
std::unique_ptr<Backend> OpenStagedbBackend(const std::string& dir);
std::unique_ptr<Backend> OpenLmdbBackend(const std::string& dir);
std::unique_ptr<Backend> OpenSqliteJsonBackend(const std::string& dir);
std::unique_ptr<Backend> OpenSqliteTypedBackend(const std::string& dir);

}  // namespace stagedb_bench

#endif  // STAGEDB_BENCHMARKS_BENCH_BACKEND_H_
