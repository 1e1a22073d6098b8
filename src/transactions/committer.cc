#include "transactions/committer.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_format.h"

namespace stagedb::internal {
namespace {

// Groups are capped so one leader does not hold its callers for too long.
constexpr size_t kMaxGroup = 256;
// A transaction that has lost this many conflicts is starving: leaders wait for it to queue (up
// to kStarvationWait) and validate it first, so it wins the next round.
constexpr size_t kStarvingAttempt = 2;
constexpr absl::Duration kStarvationWait = absl::Milliseconds(20);

}  // namespace

Committer::Committer(LmdbStore& store, std::function<void(Timestamp, const CommitKeys&)> on_commit,
                     absl::Duration commit_delay)
    : store_(store), on_commit_(std::move(on_commit)), commit_delay_(commit_delay) {}

Committer::Ticket Committer::BeginTransaction(size_t attempt) {
  std::lock_guard<std::mutex> lock(mu_);
  active_.insert(last_commit_);
  attempts_.insert(attempt);
  return Ticket{.log_position = last_commit_, .attempt = attempt};
}

void Committer::EndTransaction(const Ticket& ticket) {
  std::lock_guard<std::mutex> lock(mu_);
  active_.erase(active_.find(ticket.log_position));
  attempts_.erase(attempts_.find(ticket.attempt));
  arrivals_.notify_one();
  // The log is trimmed by the leader only (CommitGroup), which reads it without the lock.
}

std::string Committer::FindConflict(const Request& request,
                                    const std::vector<LoggedCommit>& group_commits) const {
  auto written_in = [&](const LoggedCommit& commit) -> const ReadRange* {
    if (commit.timestamp <= request.snapshot) return nullptr;
    return FirstRangeWritten(*request.read_set, commit.keys);
  };
  const ReadRange* hit = nullptr;
  for (const LoggedCommit& commit : log_) {
    if ((hit = written_in(commit)) != nullptr) break;
  }
  for (size_t i = 0; hit == nullptr && i < group_commits.size(); ++i) {
    hit = written_in(group_commits[i]);
  }
  if (hit == nullptr) return "";
  return absl::StrFormat("table \"%s\" index \"%s\"", hit->table, hit->index);
}

std::vector<Committer::Request*> Committer::TakeQueuedLocked() {
  std::vector<Request*> group;
  for (Request* waiting : queue_) {
    if (group.size() == kMaxGroup) break;
    if (!waiting->done) group.push_back(waiting);
  }
  // Any order of validation is a serial order; this one keeps retried transactions from starving.
  std::stable_sort(group.begin(), group.end(),
                   [](const Request* a, const Request* b) { return a->attempt > b->attempt; });
  return group;
}

void Committer::AwaitRunningLocked(std::unique_lock<std::mutex>& lock) {
  const absl::Time start = absl::Now();
  for (;;) {
    // Every running transaction is in active_, the queued ones too; the others are still
    // running their function (or were just woken after their commit and are starting again).
    size_t waiting = 0;
    size_t most_retried_waiting = 0;
    for (const Request* request : queue_) {
      if (request->done) continue;
      ++waiting;
      most_retried_waiting = std::max(most_retried_waiting, request->attempt);
    }
    if (waiting >= active_.size() || queue_.size() >= kMaxGroup) return;
    const size_t most_retried = attempts_.empty() ? 0 : *attempts_.rbegin();
    const bool starving = most_retried >= kStarvingAttempt && most_retried > most_retried_waiting;
    const absl::Time deadline = start + (starving ? kStarvationWait : commit_delay_);
    if (absl::Now() >= deadline) return;
    arrivals_.wait_until(lock, absl::ToChronoTime(deadline));
  }
}

void Committer::FailHoldersLocked(const absl::Status& status) {
  for (Request* request : queue_) {
    if (request->holds_transaction && !request->done) {
      request->outcome.status = status;
      request->done = true;
    }
  }
  cv_.notify_all();
}

Committer::Outcome Committer::Commit(Timestamp snapshot, const ReadSet& read_set,
                                     const WriteSet& writes, size_t attempt) {
  Request request{.snapshot = snapshot,
                  .read_set = &read_set,
                  .writes = &writes,
                  .holds_transaction = store_.ThisThreadHoldsTransaction(),
                  .attempt = attempt};
  std::unique_lock<std::mutex> lock(mu_);
  queue_.push_back(&request);
  arrivals_.notify_one();
  cv_.wait(lock, [&] { return request.done || queue_.front() == &request; });
  if (request.done) {
    // Written by a leader, or failed while queued (a map that had to grow).
    queue_.erase(std::remove(queue_.begin(), queue_.end(), &request), queue_.end());
    cv_.notify_all();
    return request.outcome;
  }
  // The leader: take every waiting request that is not done.
  AwaitRunningLocked(lock);
  std::vector<Request*> group = TakeQueuedLocked();
  lock.unlock();
  CommitGroup(group);
  lock.lock();
  for (Request* member : group) member->done = true;
  queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                              [&](Request* r) {
                                return r == &request ||
                                       std::find(group.begin(), group.end(), r) != group.end();
                              }),
               queue_.end());
  cv_.notify_all();
  return request.outcome;
}

void Committer::CommitGroup(std::vector<Request*>& group) {
  for (;;) {
    std::vector<LoggedCommit> committed;  // this group's, in order
    absl::Status failure;
    const size_t observed_map_size = store_.map_size();
    {
      absl::StatusOr<std::unique_ptr<StoreTxn>> txn = store_.BeginWrite();
      if (!txn.ok()) {
        failure = txn.status();
      } else {
        absl::StatusOr<Timestamp> stored = (*txn)->CommitTimestamp();
        if (!stored.ok()) failure = stored.status();
        Timestamp next = stored.value_or(0);
        // Commits by other processes since ours: their writes are unknown here.
        const Timestamp unknown_through = next != last_commit_ ? next : 0;
        for (Request* request : group) {
          if (!failure.ok()) break;
          request->outcome = Outcome{};
          std::string conflict;
          if (request->snapshot < unknown_through) {
            conflict = "a commit by another process";
          } else {
            conflict = FindConflict(*request, committed);
          }
          if (!conflict.empty()) {
            request->outcome.conflict = true;
            request->outcome.status = absl::AbortedError(absl::StrFormat(
                "conflict: %s was written by a concurrent commit after this mutation read it",
                conflict));
            continue;
          }
          for (const auto& [key, entry] : *request->writes) {
            if (entry.stored) continue;
            failure = entry.value.has_value() ? (*txn)->Put(StoreDb::kData, key, *entry.value)
                                              : (*txn)->Delete(StoreDb::kData, key);
            if (!failure.ok()) break;
          }
          if (!failure.ok()) break;
          request->outcome.commit = ++next;
          committed.push_back({next, KeysOf(*request->writes)});
        }
        if (failure.ok() && !committed.empty()) {
          failure = (*txn)->SetCommitTimestamp(next);
          if (failure.ok()) failure = (*txn)->Commit();
        }
      }
    }
    if (failure.ok()) {
      // The next leader starts after this one returns, so the order of these two steps is free.
      for (const LoggedCommit& commit : committed) on_commit_(commit.timestamp, commit.keys);
      std::lock_guard<std::mutex> lock(mu_);
      for (LoggedCommit& commit : committed) {
        last_commit_ = commit.timestamp;
        log_.push_back(std::move(commit));
      }
      // Kept only while a running transaction may need it: one whose snapshot is older.
      const Timestamp keep_after = active_.empty() ? last_commit_ : *active_.begin();
      while (!log_.empty() && log_.front().timestamp <= keep_after) log_.pop_front();
      return;
    }
    if (!NeedsMapResize(failure)) {
      for (Request* request : group) request->outcome = Outcome{.status = failure};
      return;
    }
    // The map is full and nothing was written: grow it and write the group again. Growing
    // waits for every transaction of this process to end, so queued callers that hold one
    // (a Mutate inside a Query) are failed first, or they would wait for us forever.
    const absl::Status full = absl::ResourceExhaustedError(absl::StrFormat(
        "database \"%s\" is full and cannot grow while this thread has a transaction open "
        "(is Mutate called from inside Query?)",
        store_.path()));
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        FailHoldersLocked(full);
      }
      std::erase_if(group, [](Request* r) { return r->holds_transaction; });
      if (group.empty()) return;
      // A holder may queue while we wait: give up after a while, fail it, and wait again.
      const absl::Status grown = store_.Grow(observed_map_size, absl::Milliseconds(100));
      if (absl::IsUnavailable(grown)) continue;
      if (!grown.ok()) {
        for (Request* request : group) request->outcome = Outcome{.status = grown};
        return;
      }
      break;
    }
  }
}

}  // namespace stagedb::internal
