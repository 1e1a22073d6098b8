// Subscriptions: a query that stays live. Database::Subscribe runs a query function now and
// records exactly what it read (its read set). Every commit that writes inside that read set
// re-runs the query off the committing thread, on a snapshot at or after the commit; a burst of
// commits coalesces into one re-run at the newest snapshot, and a newer result replaces one not
// yet delivered (the first one too, see Database::Subscribe). When the result differs from the
// last one delivered, the subscription's callbacks receive a QueryUpdate: the result (or the
// query's error), its commit timestamp, and the documents added, removed and changed.
//
// Delivery guarantees (README "Design", the guarantees): per subscription, updates arrive one at a
// time, in increasing timestamp order; an unchanged result is not delivered again; after a commit
// that changes a result, a result at or after that commit arrives. Callbacks run outside every
// engine lock, on the notifier thread or in Database::DeliverPending (see Options::delivery); a
// callback may query, mutate, subscribe and unsubscribe (itself included).
#ifndef STAGEDB_SUBSCRIPTION_H_
#define STAGEDB_SUBSCRIPTION_H_

#include <boost/signals2/signal.hpp>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "stagedb/document.h"
#include "stagedb/export.h"
#include "stagedb/options.h"
#include "stagedb/value.h"

namespace stagedb {

namespace internal {
class SubscriptionRegistry;
struct SubscriptionState;
}  // namespace internal

// One document that differs between two results, identified by its `_id`.
struct DocumentChange {
  // Positions in the previous and the new result; added documents have no old position,
  // removed ones no new position.
  std::optional<size_t> old_position;
  std::optional<size_t> new_position;
  // For `changed`: the document changed places relative to the other documents kept (not just
  // shifted by additions and removals), so it must be moved as well as updated.
  bool moved = false;
  Document document;  // as it is now (added, changed), or as it was (removed)
};

// The change from the previous successful result delivered to this one (for the first update:
// from nothing). Computed for document results: a list of documents, one document, null (no
// document), or a page of a paginated query (over its `page`). To apply it to a list: erase
// `removed` and the `moved` ones of `changed` (by old position, highest first), then insert `added`
// and those moved ones (by new position, lowest first), then replace the other `changed` at their
// new position. For any other result (a count, a composite object) `is_document_result` is false
// and the lists are empty: the result is the update. A kept document that only moved (its fields
// are equal) is in `changed` too, with `moved` set. README "Subscriptions" has this recipe as
// code (ApplyChanges), run by tests/readme_snippets_test.cc.
struct ChangeSet {
  bool is_document_result = true;
  std::vector<DocumentChange> added;    // by new position
  std::vector<DocumentChange> removed;  // by old position
  std::vector<DocumentChange> changed;  // same `_id`, other fields or moved; by new position
  bool empty() const { return added.empty() && removed.empty() && changed.empty(); }
};

struct STAGEDB_EXPORT QueryUpdate {
  // The query's result, or the error it returned (an error is delivered like a result: once,
  // until it changes).
  absl::StatusOr<Value> result;
  // The commit timestamp of the snapshot the result was read at.
  Timestamp timestamp = 0;
  // Against the previous successful result delivered: an error in between does not reset it.
  ChangeSet changes;

  // The result as documents: the list, the one document, the page, or none (null, an error, or
  // a result that is not made of documents).
  std::vector<Document> documents() const;
};

// Callbacks are Boost.Signals2 slots. A slot may track the lifetime of the objects it uses
// (`UpdateSlot(fn).track_foreign(weak_ptr)`): it is dropped when one of them is destroyed.
using UpdateSignal = boost::signals2::signal<void(const QueryUpdate&)>;
using UpdateSlot = UpdateSignal::slot_type;

// A live subscription. Move-only; destroying it unsubscribes. A default-constructed handle, a
// moved-from one and one that outlived its database are inert: every call does nothing.
class STAGEDB_EXPORT Subscription {
 public:
  Subscription() = default;
  ~Subscription();
  Subscription(Subscription&& other) noexcept = default;
  Subscription& operator=(Subscription&& other) noexcept;
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  // Adds a callback; it receives the updates delivered after this call. Disconnect it through
  // the returned connection; the subscription stays live.
  boost::signals2::connection Connect(const UpdateSlot& slot);

  // Stops the subscription: when Unsubscribe returns no callback of it runs any more, and one
  // running on another thread has finished (Unsubscribe waits for it, unless called from inside
  // that very callback). Idempotent. So two callbacks running at once on two threads must not
  // unsubscribe each other's subscriptions: each would wait for the other.
  void Unsubscribe();

  // False once unsubscribed, or when the database is closed.
  bool active() const;

 private:
  friend class Database;
  Subscription(std::shared_ptr<internal::SubscriptionState> state,
               std::weak_ptr<internal::SubscriptionRegistry> registry)
      : state_(std::move(state)), registry_(std::move(registry)) {}

  std::shared_ptr<internal::SubscriptionState> state_;
  std::weak_ptr<internal::SubscriptionRegistry> registry_;
};

}  // namespace stagedb

#endif  // STAGEDB_SUBSCRIPTION_H_
