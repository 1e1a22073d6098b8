#include "reactive/subscription_registry.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_format.h"
#include "reactive/change_set.h"
#include "util/call_guarded.h"

namespace stagedb::internal {
namespace {

// The registries whose callbacks this thread is running, innermost last.
thread_local std::vector<const SubscriptionRegistry*> callbacks_on_thread;

template <typename T>
void LowerTo(std::optional<T>& slot, T value) {
  if (!slot || value < *slot) slot = value;
}

bool SameResult(const SubscriptionState& s, const absl::StatusOr<Value>& result) {
  if (!s.delivered_any) return false;
  if (result.ok()) return s.last_delivered_ok && *s.last_ok == *result;
  return !s.last_delivered_ok && s.last_error == result.status();
}

}  // namespace

SubscriptionRegistry::SubscriptionRegistry(QueryEnvironment environment, Delivery delivery)
    : delivery(delivery), environment_(environment) {
  if (delivery == Delivery::kManual && pipe(pipe_) == 0) {
    for (int fd : pipe_) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
}

SubscriptionRegistry::~SubscriptionRegistry() {
  Shutdown();
  for (int fd : pipe_) {
    if (fd >= 0) close(fd);
  }
}

absl::StatusOr<std::shared_ptr<SubscriptionState>> SubscriptionRegistry::Subscribe(
    QueryFunction query, const UpdateSlot& slot) {
  auto subscription = std::make_shared<SubscriptionState>();
  subscription->query = std::move(query);
  subscription->signal.connect(slot);
  uint64_t log_token;
  {
    Lock lock(mu_);
    if (stopping_) return absl::FailedPreconditionError("the database is closed");
    subscription->id = next_id_++;
    subscription->running = true;
    log_token = next_sequence_;
    log_tokens_.insert(log_token);
    if (!notifier_.joinable()) {
      // The notifier keeps the registry alive until it has left its loop.
      notifier_ = std::thread([self = shared_from_this()] { self->NotifierLoop(); });
      notifier_id_ = notifier_.get_id();
    }
  }
  if (absl::Status s = RunBatch({subscription}, log_token, /*initial=*/true); !s.ok()) return s;
  return subscription;
}

absl::Status SubscriptionRegistry::RunBatch(const std::vector<StatePtr>& batch, uint64_t log_token,
                                            bool initial) {
  absl::StatusOr<std::unique_ptr<StoreTxn>> txn = environment_.store->BeginRead();
  absl::StatusOr<Timestamp> snapshot =
      txn.ok() ? (*txn)->CommitTimestamp() : absl::StatusOr<Timestamp>(txn.status());
  if (!snapshot.ok()) {
    // No snapshot: nothing to deliver (a result must come with a newer timestamp); the
    // subscriptions stay dirty and run again.
    Lock lock(mu_);
    for (const StatePtr& s : batch) {
      s->running = false;
      if (initial || !s->active) continue;
      if (s->running_since) LowerTo(s->dirty_since, *s->running_since);
      s->running_since.reset();
      if (s->dirty_since) QueueRun(s);
      UpdateOutstanding(*s);
    }
    ReleaseLogToken(log_token);
    return snapshot.status();
  }
  struct Outcome {
    absl::StatusOr<Value> result;
    ReadSet read_set;
  };
  std::vector<Outcome> outcomes;
  outcomes.reserve(batch.size());
  for (const StatePtr& subscription : batch) {
    {
      Lock lock(mu_);
      if (!subscription->active) {
        outcomes.push_back({absl::CancelledError("unsubscribed"), ReadSet()});
        continue;
      }
      subscription->executing = std::this_thread::get_id();
    }
    TransactionState state(*environment_.catalog, **txn, *environment_.limits, *snapshot,
                           environment_.cursor_secret);
    absl::StatusOr<Value> result = absl::UnknownError("the query returned nothing");
    absl::Status status = CallGuarded([&] {
      result = subscription->query(state.reader());
      return result.status();
    });
    if (!status.ok()) result = status;
    outcomes.push_back({std::move(result), state.TakeReadSet()});
    Lock lock(mu_);
    subscription->executing = std::thread::id();
    state_cv_.notify_all();
  }
  txn->reset();  // before taking mu_: ending a read transaction may wait on the map resize lock

  Lock lock(mu_);
  for (size_t i = 0; i < batch.size(); ++i) {
    if (initial && !stopping_) subscriptions_.emplace(batch[i]->id, batch[i]);
    Finish(batch[i], *snapshot, std::move(outcomes[i].result), std::move(outcomes[i].read_set),
           log_token, initial);
  }
  ReleaseLogToken(log_token);
  return absl::OkStatus();
}

void SubscriptionRegistry::Finish(const StatePtr& state, Timestamp snapshot,
                                  absl::StatusOr<Value> result, ReadSet read_set,
                                  uint64_t log_token, bool initial) {
  SubscriptionState& s = *state;
  s.running = false;
  if (!s.active || stopping_) return;
  // A first update is owed to every WaitForDelivery, whatever its timestamp.
  if (initial) s.running_since = Timestamp{0};
  IndexReadSet(s, /*add=*/false);
  s.read_set = std::move(read_set);
  IndexReadSet(s, /*add=*/true);
  s.snapshot = snapshot;
  // Commits published while the query ran were checked against the old read set, if at all:
  // check those after the snapshot against the new one.
  for (const LoggedCommit& commit : log_) {
    if (commit.sequence < log_token || commit.timestamp <= snapshot) continue;
    if (FirstRangeWritten(s.read_set, commit.keys) != nullptr) {
      LowerTo(s.dirty_since, commit.timestamp);
    }
  }
  if (s.dirty_since) QueueRun(state);
  if (SameResult(s, result)) {
    s.pending.reset();
    s.pending_since.reset();
  } else {
    s.pending = SubscriptionState::Pending{std::move(result), snapshot};
    if (s.running_since) LowerTo(s.pending_since, *s.running_since);
    QueueDelivery(state);
  }
  s.running_since.reset();
  UpdateOutstanding(s);
}

void SubscriptionRegistry::QueueRun(const StatePtr& s) {
  if (s->queued_for_run) return;
  s->queued_for_run = true;
  run_queue_.push_back(s);
  work_cv_.notify_one();
}

void SubscriptionRegistry::IndexReadSet(SubscriptionState& s, bool add) {
  for (const ReadRange& range : s.read_set.ranges()) {
    if (add) {
      trees_[range.index_id].Insert(range.start, range.end, s.id);
      continue;
    }
    auto tree = trees_.find(range.index_id);
    if (tree == trees_.end()) continue;
    tree->second.Erase(range.start, range.end, s.id);
    if (tree->second.empty()) trees_.erase(tree);
  }
}

void SubscriptionRegistry::MarkDirty(const StatePtr& s, Timestamp commit) {
  LowerTo(s->dirty_since, commit);
  QueueRun(s);
  UpdateOutstanding(*s);
}

void SubscriptionRegistry::OweResultFor(SubscriptionState& s, Timestamp commit) {
  for (std::optional<Timestamp>* since :
       {&s.dirty_since, &s.running_since, &s.pending_since, &s.delivering_since}) {
    if (*since) LowerTo(*since, commit);
  }
  UpdateOutstanding(s);
}

void SubscriptionRegistry::UpdateOutstanding(SubscriptionState& s) {
  // An unsubscribed subscription owes nothing more, except the callback running now: a waiter
  // must not return while it may still write host state.
  std::optional<Timestamp> next = s.delivering_since;
  if (s.active) {
    for (const auto& since : {s.dirty_since, s.running_since, s.pending_since}) {
      if (since) LowerTo(next, *since);
    }
  }
  if (next == s.outstanding) return;
  if (s.outstanding) outstanding_.erase(outstanding_.find(*s.outstanding));
  if (next) outstanding_.insert(*next);
  s.outstanding = next;
  state_cv_.notify_all();
}

void SubscriptionRegistry::ReleaseLogToken(uint64_t log_token) {
  log_tokens_.erase(log_tokens_.find(log_token));
  const uint64_t keep_from = log_tokens_.empty() ? next_sequence_ : *log_tokens_.begin();
  while (!log_.empty() && log_.front().sequence < keep_from) log_.pop_front();
}

void SubscriptionRegistry::Publish(Timestamp timestamp, const CommitKeys& keys) {
  Lock lock(mu_);
  if (subscriptions_.empty() && log_tokens_.empty()) return;
  if (!log_tokens_.empty()) {
    LoggedCommit& commit = log_.emplace_back();
    commit.sequence = next_sequence_++;
    commit.timestamp = timestamp;
    commit.keys = keys;  // kept only while runs are in flight
  }
  if (trees_.empty()) return;
  auto hit = [&](uint64_t owner) {
    const StatePtr& s = subscriptions_.at(owner);
    if (s->running || s->snapshot >= timestamp) {
      // A running subscription checks the log when it finishes; a snapshot at or after the
      // commit (published late: commits may be published out of order) reflects it. Either
      // way the result that does may not be delivered yet: owe it to waiters.
      OweResultFor(*s, timestamp);
      return;
    }
    MarkDirty(s, timestamp);
  };
  for (const std::string& key : keys) {
    if (key.size() < kIndexPrefixBytes) continue;
    auto tree = trees_.find(IndexIdOf(key));
    if (tree == trees_.end()) continue;
    tree->second.ForEachContaining(std::string_view(key).substr(kIndexPrefixBytes), hit);
  }
}

void SubscriptionRegistry::NotifierLoop() {
  Lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] {
      return stopping_ || !run_queue_.empty() ||
             (delivery == Delivery::kNotifierThread && !delivery_queue_.empty());
    });
    if (stopping_) return;
    if (!run_queue_.empty()) {
      std::vector<StatePtr> batch;
      batch.swap(run_queue_);
      for (const StatePtr& s : batch) {
        s->queued_for_run = false;
        s->running = true;
        s->running_since = s->dirty_since;
        s->dirty_since.reset();
      }
      const uint64_t log_token = next_sequence_;
      log_tokens_.insert(log_token);
      lock.unlock();
      const absl::Status status = RunBatch(batch, log_token, /*initial=*/false);
      batch.clear();  // not under mu_: a last reference may destroy host objects
      // A storage failure is delivered as each query's result, and they run again: not at once.
      if (!status.ok()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      lock.lock();
    }
    if (delivery == Delivery::kNotifierThread) DeliverQueued(lock);
  }
}

void SubscriptionRegistry::QueueDelivery(const StatePtr& s) {
  if (!s->active || !s->pending || s->queued_for_delivery) return;
  s->queued_for_delivery = true;
  delivery_queue_.push_back(s);
  if (delivery == Delivery::kNotifierThread) work_cv_.notify_one();
  if (delivery == Delivery::kManual && delivery_queue_.size() == 1) {
    const char byte = 1;
    if (write(pipe_[1], &byte, 1) < 0) {
      // Full pipe: already readable, which is all the host needs to know.
    }
  }
  state_cv_.notify_all();
}

size_t SubscriptionRegistry::DeliverQueued(Lock& lock) {
  if (delivery == Delivery::kManual) {
    // Everything queued now is delivered below; a later QueueDelivery writes again.
    char buffer[64];
    while (read(pipe_[0], buffer, sizeof(buffer)) > 0) {
    }
  }
  size_t delivered = 0;
  while (!delivery_queue_.empty() && !stopping_) {
    StatePtr s = std::move(delivery_queue_.front());
    delivery_queue_.pop_front();
    s->queued_for_delivery = false;
    if (!s->active || !s->pending) continue;
    // Being delivered by another call: that call queues the newer update when it is done.
    if (s->delivering != std::thread::id()) continue;
    QueryUpdate update{.result = std::move(s->pending->result), .timestamp = s->pending->timestamp};
    s->pending.reset();
    s->delivering_since = s->pending_since;
    s->pending_since.reset();
    s->delivering = std::this_thread::get_id();
    // Record the result as delivered now, so a run finishing meanwhile compares against it.
    std::optional<Value> previous_ok;
    s->delivered_any = true;
    s->last_delivered_ok = update.result.ok();
    if (update.result.ok()) {
      previous_ok = std::exchange(s->last_ok, *update.result);
    } else {
      s->last_error = update.result.status();
    }
    ++callbacks_running_;
    lock.unlock();
    // The change set is computed against the previous successful result.
    update.changes = DiffResults(previous_ok ? &*previous_ok : nullptr, update.result);
    callbacks_on_thread.push_back(this);
    CallGuarded([&] {
      s->signal(update);
      return absl::OkStatus();
    }).IgnoreError();  // a callback's exception has nowhere to go
    callbacks_on_thread.pop_back();
    lock.lock();
    --callbacks_running_;
    s->delivering = std::thread::id();
    s->delivering_since.reset();
    QueueDelivery(s);  // a newer result that came in meanwhile
    UpdateOutstanding(*s);
    state_cv_.notify_all();
    ++delivered;
  }
  return delivered;
}

size_t SubscriptionRegistry::DeliverPending() {
  if (delivery != Delivery::kManual) return 0;
  Lock lock(mu_);
  return DeliverQueued(lock);
}

bool SubscriptionRegistry::WaitForPending(absl::Duration timeout) {
  Lock lock(mu_);
  return state_cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [&] {
    return stopping_ || !delivery_queue_.empty();
  }) && !delivery_queue_.empty();
}

absl::Status SubscriptionRegistry::WaitForDelivery(Timestamp timestamp, absl::Duration timeout) {
  if (InCallbackOnThisThread() || std::this_thread::get_id() == notifier_id_.load()) {
    return absl::FailedPreconditionError(
        "WaitForDelivery was called from a subscription callback or query; it would wait for "
        "itself");
  }
  const absl::Time deadline = absl::Now() + timeout;
  Lock lock(mu_);
  for (;;) {
    if (stopping_) return absl::FailedPreconditionError("the database is closed");
    if (outstanding_.empty() || *outstanding_.begin() > timestamp) return absl::OkStatus();
    if (delivery == Delivery::kManual && !delivery_queue_.empty() && DeliverQueued(lock) > 0) {
      continue;
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "WaitForDelivery(%d): %d subscription(s) still owe a result for commit %d or later "
          "after %s",
          timestamp, outstanding_.size(), *outstanding_.begin(), absl::FormatDuration(timeout)));
    }
    state_cv_.wait_for(lock, absl::ToChronoNanoseconds(std::min(left, absl::Seconds(1))));
  }
}

bool SubscriptionRegistry::InCallbackOnThisThread() const {
  return std::find(callbacks_on_thread.begin(), callbacks_on_thread.end(), this) !=
         callbacks_on_thread.end();
}

void SubscriptionRegistry::AwaitQuiet(Lock& lock, const SubscriptionState& s) {
  const std::thread::id self = std::this_thread::get_id();
  state_cv_.wait(lock, [&] {
    return (s.delivering == std::thread::id() || s.delivering == self) &&
           (s.executing == std::thread::id() || s.executing == self);
  });
}

void SubscriptionRegistry::Deactivate(SubscriptionState& s) {
  if (!s.active) return;
  IndexReadSet(s, /*add=*/false);
  s.active = false;
  s.pending.reset();
  UpdateOutstanding(s);
  subscriptions_.erase(s.id);
}

void SubscriptionRegistry::Unsubscribe(SubscriptionState& s) {
  QueryFunction query;  // destroyed after the lock is released: it may hold host objects
  {
    Lock lock(mu_);
    Deactivate(s);
    AwaitQuiet(lock, s);
    query = std::move(s.query);
  }
  s.signal.disconnect_all_slots();
}

bool SubscriptionRegistry::IsActive(const SubscriptionState& s) {
  Lock lock(mu_);
  return s.active && !stopping_;
}

void SubscriptionRegistry::Shutdown() {
  Lock lock(mu_);
  if (stopping_) return;
  stopping_ = true;
  work_cv_.notify_all();
  state_cv_.notify_all();
  std::vector<StatePtr> subscriptions;
  for (auto& [id, s] : subscriptions_) subscriptions.push_back(s);
  for (const StatePtr& s : subscriptions) Deactivate(*s);
  // Dropped after the lock is released: a last reference may destroy host objects.
  std::vector<StatePtr> run_queue = std::move(run_queue_);
  std::deque<StatePtr> delivery_queue = std::move(delivery_queue_);
  run_queue_.clear();
  delivery_queue_.clear();
  // Host code running on other threads finishes before the database goes away; a callback on
  // this very thread (closing the database from inside it) cannot be waited for.
  const int own =
      static_cast<int>(std::count(callbacks_on_thread.begin(), callbacks_on_thread.end(), this));
  state_cv_.wait(lock, [&] { return callbacks_running_ <= own; });
  for (const StatePtr& s : subscriptions) AwaitQuiet(lock, *s);
  lock.unlock();
  if (notifier_.joinable()) {
    if (notifier_.get_id() == std::this_thread::get_id()) {
      notifier_.detach();  // closed from a callback: the loop ends when the callback returns
    } else {
      notifier_.join();
    }
  }
}

}  // namespace stagedb::internal
