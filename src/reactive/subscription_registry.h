// SubscriptionRegistry: the live subscriptions of one database, their invalidation index, and
// the notifier thread that re-runs and delivers them.
//
// Invalidation. Each subscription's read set is held per index in a RangeTree; Publish (called
// after every commit, in any order) probes each written key and marks the subscriptions it hits
// dirty. A subscription is re-run on a snapshot taken after it was marked, so a burst of commits
// coalesces into one re-run. A run takes time: commits published while it runs are checked
// against its new read set through a short write log (kept only while runs are in flight), and
// the new read set replaces the old one in the same critical section, so no commit is missed.
//
// Read your writes. Each subscription contributes the oldest commit it still owes a result for
// (its "outstanding" timestamp) to a multiset; WaitForDelivery(T) waits until none is <= T.
//
// Locking: one mutex, never held while host code (a query function or a callback) runs.
#ifndef STAGEDB_SRC_REACTIVE_SUBSCRIPTION_REGISTRY_H_
#define STAGEDB_SRC_REACTIVE_SUBSCRIPTION_REGISTRY_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "reactive/range_tree.h"
#include "schema/catalog.h"
#include "stagedb/options.h"
#include "stagedb/read_set.h"
#include "stagedb/reader.h"
#include "stagedb/subscription.h"
#include "storage/lmdb_store.h"
#include "transactions/transaction_state.h"

namespace stagedb::internal {

using QueryFunction = std::function<absl::StatusOr<Value>(Reader&)>;

// What a query run needs from the database; everything outlives the registry's Shutdown.
struct QueryEnvironment {
  LmdbStore* store;
  const Catalog* catalog;
  const TransactionLimits* limits;
  std::string_view cursor_secret;
};

struct SubscriptionState {
  uint64_t id = 0;
  QueryFunction query;  // run by one thread at a time (see `running`)
  UpdateSignal signal;  // thread-safe itself

  // ---- guarded by the registry's mutex ----
  bool active = true;
  bool running = false;         // in a run batch, from its start to its Finish
  bool queued_for_run = false;  // in run_queue_
  bool queued_for_delivery = false;
  std::thread::id executing;   // the thread running `query` now, if any
  std::thread::id delivering;  // the thread running the callbacks now, if any
  Timestamp snapshot = 0;      // of the last finished run
  ReadSet read_set;            // of the last finished run; the RangeTrees view its keys
  // The oldest commit not yet reflected, per stage of the pipeline: marked dirty, being re-run,
  // waiting for delivery, being delivered.
  std::optional<Timestamp> dirty_since, running_since, pending_since, delivering_since;
  std::optional<Timestamp> outstanding;  // the minimum of those, as entered in `outstanding_`
  struct Pending {
    absl::StatusOr<Value> result;
    Timestamp timestamp;
  };
  std::optional<Pending> pending;  // the newest result, not yet delivered
  // The last result delivered: an OK value (also the base of the next change set) or an error.
  bool delivered_any = false;
  bool last_delivered_ok = false;
  std::optional<Value> last_ok;
  absl::Status last_error;
};

class SubscriptionRegistry : public std::enable_shared_from_this<SubscriptionRegistry> {
 public:
  SubscriptionRegistry(QueryEnvironment environment, Delivery delivery);
  ~SubscriptionRegistry();
  SubscriptionRegistry(const SubscriptionRegistry&) = delete;
  SubscriptionRegistry& operator=(const SubscriptionRegistry&) = delete;

  // Runs `query` now on the calling thread and registers it; its first update is queued.
  absl::StatusOr<std::shared_ptr<SubscriptionState>> Subscribe(QueryFunction query,
                                                               const UpdateSlot& slot);
  void Unsubscribe(SubscriptionState& subscription);
  bool IsActive(const SubscriptionState& subscription);

  // Called after every commit with its timestamp and written keys.
  void Publish(Timestamp timestamp, const CommitKeys& keys);

  absl::Status WaitForDelivery(Timestamp timestamp, absl::Duration timeout);
  size_t DeliverPending();
  int delivery_fd() const { return delivery == Delivery::kManual ? pipe_[0] : -1; }
  bool WaitForPending(absl::Duration timeout);

  // Stops the notifier, cancels queued work and waits for callbacks running on other threads;
  // afterwards every call is a no-op. Called by the database before it closes.
  void Shutdown();

  const Delivery delivery;

 private:
  using Lock = std::unique_lock<std::mutex>;
  using StatePtr = std::shared_ptr<SubscriptionState>;
  struct LoggedCommit {
    uint64_t sequence;
    Timestamp timestamp;
    CommitKeys keys;
  };

  void NotifierLoop();
  // Runs each subscription's query on one new snapshot and finishes it. `batch` was marked
  // running and `log_token` registered in the critical section that took it. A failure to open
  // the snapshot is returned; the subscriptions then stay dirty and run again.
  absl::Status RunBatch(const std::vector<StatePtr>& batch, uint64_t log_token, bool initial);
  // Installs a run's result and read set; the caller holds mu_.
  // Queues its first update or its change for delivery, and a re-run when commits came in.
  void Finish(const StatePtr& subscription, Timestamp snapshot, absl::StatusOr<Value> result,
              ReadSet read_set, uint64_t log_token, bool initial);
  void IndexReadSet(SubscriptionState& subscription, bool add);
  void MarkDirty(const StatePtr& subscription, Timestamp commit);
  void QueueRun(const StatePtr& subscription);
  void QueueDelivery(const StatePtr& subscription);
  // Lowers the outstanding timestamps of every stage in flight to `commit`.
  void OweResultFor(SubscriptionState& subscription, Timestamp commit);
  void UpdateOutstanding(SubscriptionState& subscription);
  void ReleaseLogToken(uint64_t log_token);
  // Delivers every queued update on the calling thread; holds `lock` except around callbacks.
  size_t DeliverQueued(Lock& lock);
  void Deactivate(SubscriptionState& subscription);
  bool InCallbackOnThisThread() const;
  // Waits until `subscription` runs no host code on another thread.
  void AwaitQuiet(Lock& lock, const SubscriptionState& subscription);

  const QueryEnvironment environment_;
  std::mutex mu_;
  std::condition_variable work_cv_;   // the notifier: runs or deliveries queued, or stopping
  std::condition_variable state_cv_;  // waiters: outstanding timestamps, deliveries, host code
  bool stopping_ = false;
  std::thread notifier_;
  std::atomic<std::thread::id> notifier_id_;
  uint64_t next_id_ = 1;
  absl::flat_hash_map<uint64_t, StatePtr> subscriptions_;
  absl::flat_hash_map<uint32_t, RangeTree> trees_;  // by index id
  std::vector<StatePtr> run_queue_;
  std::deque<StatePtr> delivery_queue_;
  std::multiset<Timestamp> outstanding_;
  // Commits published while runs are in flight; a run checks those after its snapshot.
  std::deque<LoggedCommit> log_;
  uint64_t next_sequence_ = 0;
  std::multiset<uint64_t> log_tokens_;  // the first sequence each run in flight must check
  int callbacks_running_ = 0;
  int pipe_[2] = {-1, -1};  // Delivery::kManual: readable while updates are queued
};

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_REACTIVE_SUBSCRIPTION_REGISTRY_H_
