// Committer: the second half of an optimistic mutation. A mutation runs on its own LMDB read
// snapshot at timestamp T, in the calling thread, recording its read set and buffering its writes
// (TransactionState); then Commit validates its read set against the write sets of every commit
// after T (an in-memory write log of recent commits) and writes it.
//
// Group commit (LevelDB's DBImpl::Write shape): callers queue; the first in the queue becomes the
// leader, validates every waiting transaction in order (each also against the ones before it in
// the group), writes the valid ones into one LMDB write transaction with one fsync, gives each the
// next commit timestamp, hands each write set on (subscriptions) in commit order, and wakes the
// others. A transaction that read anything written after its snapshot gets a conflict: the caller
// re-runs it on a newer snapshot.
//
// Commit delay (PostgreSQL's commit_delay): when other mutations of this process are running
// but not yet queued, the leader waits for them, up to `commit_delay`, so that one fsync covers
// them too. The group is then validated most-retried first (see Commit). Without it a
// burst of N threads splits into alternating groups of about N/2 (the ones woken by a fsync re-run
// while the others form the next group), and each thread waits for two fsyncs per commit.
//
// Other processes may commit to the same file; their write sets are unknown here. When the
// stored commit timestamp is ahead of the last commit this process made, every transaction with
// an older snapshot conflicts, so serializability holds across processes too.
#ifndef STAGEDB_SRC_TRANSACTIONS_COMMITTER_H_
#define STAGEDB_SRC_TRANSACTIONS_COMMITTER_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "stagedb/options.h"
#include "stagedb/read_set.h"
#include "storage/lmdb_store.h"
#include "transactions/transaction_state.h"

namespace stagedb::internal {

// The commit delay of durable databases: a few times what queuing a mutation that has just
// finished takes, and small against a fsync (~0.5 ms on an SSD).
inline constexpr absl::Duration kDurableCommitDelay = absl::Microseconds(200);

class Committer {
 public:
  // `on_commit` receives each commit's timestamp and written keys, in commit order, after the
  // commit is durable, on the leader's thread and outside the committer's lock.
  Committer(LmdbStore& store, std::function<void(Timestamp, const CommitKeys&)> on_commit,
            absl::Duration commit_delay);

  // A running transaction: the write-log position it needs, and how many conflicts it has lost.
  struct Ticket {
    Timestamp log_position = 0;
    size_t attempt = 0;
  };
  // Keeps the write log from dropping commits a transaction about to take its snapshot must be
  // validated against. Call before opening the snapshot; EndTransaction after Commit (or when
  // the transaction ends without one). `attempt` as for Commit.
  Ticket BeginTransaction(size_t attempt);
  void EndTransaction(const Ticket& ticket);

  struct Outcome {
    absl::Status status;    // OK, a conflict (Aborted), or a storage error
    bool conflict = false;  // re-run on a newer snapshot
    Timestamp commit = 0;   // when OK
  };
  // Validates and writes one finished transaction read at `snapshot`. Blocks until it is
  // durable (or refused). `attempt` counts the conflicts it has lost so far: within a group the
  // leader validates the most-retried first, so a transaction that keeps losing to the same
  // competitors (a hot counter) wins the next round instead of starving.
  Outcome Commit(Timestamp snapshot, const ReadSet& read_set, const WriteSet& writes,
                 size_t attempt = 0);

 private:
  struct Request {
    Timestamp snapshot;
    const ReadSet* read_set;
    const WriteSet* writes;
    bool holds_transaction;  // its thread has a read transaction open (Mutate inside Query)
    size_t attempt = 0;
    bool done = false;
    Outcome outcome;
  };
  struct LoggedCommit {
    Timestamp timestamp;
    CommitKeys keys;
  };

  // Writes `group` (the leader's request first); fills each outcome.
  void CommitGroup(std::vector<Request*>& group);
  // The first read range of `request` that a commit after its snapshot wrote, described; empty
  // when none did. `group_commits` are the group's members validated before it.
  std::string FindConflict(const Request& request,
                           const std::vector<LoggedCommit>& group_commits) const;
  // Fails, and wakes, the queued requests whose threads hold a read transaction: the map cannot
  // grow while they wait. The caller holds mu_.
  void FailHoldersLocked(const absl::Status& status);
  // The commit delay (see above): waits, up to commit_delay_, until every running transaction
  // of this process is queued; and, up to kStarvationWait, for a running transaction that has
  // lost more conflicts than any queued one (so that it is validated first). The caller holds
  // `lock` on mu_.
  void AwaitRunningLocked(std::unique_lock<std::mutex>& lock);
  // The queued requests that are not done, the most-retried first. The caller holds mu_.
  std::vector<Request*> TakeQueuedLocked();

  LmdbStore& store_;
  const std::function<void(Timestamp, const CommitKeys&)> on_commit_;
  const absl::Duration commit_delay_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable arrivals_;  // a request queued or a transaction ended (commit delay)
  std::deque<Request*> queue_;
  // Only the leader (one at a time, so no lock is needed to read it) reads and changes log_; it
  // changes it under mu_, which orders it with the next leader.
  std::deque<LoggedCommit> log_;
  Timestamp last_commit_ = 0;        // the newest commit this process knows the write set of
  bool known_ = false;               // last_commit_ has been read from the store
  std::multiset<Timestamp> active_;  // the log position each running transaction needs
  std::multiset<size_t> attempts_;   // the attempt of each running transaction
};

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_TRANSACTIONS_COMMITTER_H_
