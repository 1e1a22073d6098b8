// Database: an open stagedb database. Thread-safe: any number of threads may call Query and
// Mutate at once.
//
//   auto db = stagedb::Database::Open({.path = "app.stagedb", .schema_dir = "schema"});
//   absl::StatusOr<stagedb::DocumentId> id = (*db)->Mutate([&](stagedb::Transaction& tx) {
//     return tx.Insert("stage_files", {{"sessionId", sid}, {"path", "/app/App.tsx"}});
//   });
//
// Mutations are serializable (guarantee 1) and atomic (guarantee 2): a function that returns an
// error, or throws, leaves nothing behind, and Mutate returns that error (a thrown exception
// becomes an Unknown status naming it). Mutations run optimistically and in parallel, each on
// its own snapshot; one whose reads a concurrent commit overwrote runs again on a newer
// snapshot, so a mutation's function may run more than once and should have no effects outside
// the transaction. Past TransactionLimits::max_conflict_retries re-runs, Mutate returns Aborted
// naming the table and index of the conflict. Concurrent commits share one fsync.
#ifndef STAGEDB_DATABASE_H_
#define STAGEDB_DATABASE_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "stagedb/auth.h"
#include "stagedb/export.h"
#include "stagedb/file_storage.h"
#include "stagedb/functions.h"
#include "stagedb/options.h"
#include "stagedb/reader.h"
#include "stagedb/scheduler.h"
#include "stagedb/subscription.h"
#include "stagedb/transaction.h"

namespace stagedb {

namespace internal {
class DatabaseImpl;
class JobRunner;
struct RegisteredFunction;
template <typename T>
struct IsStatusOr : std::false_type {};
template <typename T>
struct IsStatusOr<absl::StatusOr<T>> : std::true_type {};
// The rule for the functions given to Mutate and Query: they return absl::Status or
// absl::StatusOr<T>. (A lambda without a return statement returns void.)
template <typename R>
inline constexpr bool kReturnsStatus = IsStatusOr<R>::value || std::is_same_v<R, absl::Status>;
// What Mutate and Query return: R, or absl::Status when R breaks the rule, so that the
// static_assert naming the rule is the one error the caller sees.
template <typename R>
using StatusResult = std::conditional_t<kReturnsStatus<R>, R, absl::Status>;

// A subscribed query's result as a Value: documents become objects (a list an array, a missing
// document null).
inline Value ToResultValue(Value value) { return value; }
inline Value ToResultValue(const Document& document) { return document.ToValue(); }
inline Value ToResultValue(const std::optional<Document>& document) {
  return document ? document->ToValue() : Value(nullptr);
}
inline Value ToResultValue(const std::vector<Document>& documents) {
  Array array;
  array.reserve(documents.size());
  for (const Document& document : documents) array.push_back(document.ToValue());
  return Value(std::move(array));
}
// A page: {"page": [...], "continueCursor": ..., "isDone": ...}; change sets cover its page.
inline Value ToResultValue(const PaginationResult& result) {
  return Value(Object{{"page", ToResultValue(result.page)},
                      {"continueCursor", result.continue_cursor},
                      {"isDone", result.is_done}});
}
}  // namespace internal

class STAGEDB_EXPORT Database {
 public:
  // Opens (creating when missing) the database at options.path and loads its schema: see
  // Options. A schema that differs from the stored one is applied when the stored documents
  // satisfy it (new indexes are backfilled); otherwise Open fails with FailedPrecondition
  // listing every offending table and field, and the database is unchanged.
  static absl::StatusOr<std::unique_ptr<Database>> Open(Options options);

  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Runs `fn(Transaction&)` as one serializable transaction. `fn` returns absl::Status or
  // absl::StatusOr<T>; Mutate returns the same type. On success the writes are durable when
  // Mutate returns, and `*commit_timestamp` (when given) is the commit's timestamp. A mutation
  // that wrote nothing commits nothing: `*commit_timestamp` is then the timestamp of the
  // snapshot it read (the latest commit when it ran; an earlier mutation may have the same), so
  // WaitForDelivery(*commit_timestamp) still waits for what it saw. On failure it is unchanged.
  template <typename Fn>
  auto Mutate(Fn&& fn, Timestamp* commit_timestamp = nullptr)
      -> internal::StatusResult<std::invoke_result_t<Fn&, Transaction&>>;

  // Runs `fn(Reader&)` on a snapshot of the latest commit. `fn` returns absl::Status or
  // absl::StatusOr<T>; Query returns the same type. Inside a mutation of this database, read
  // through its Transaction instead: Query (and Mutate) there fail with FailedPrecondition.
  // A Mutate inside Query works, but fails with ResourceExhausted if the map must grow first
  // (it cannot while the Query's snapshot is open).
  template <typename Fn>
  auto Query(Fn&& fn) -> internal::StatusResult<std::invoke_result_t<Fn&, Reader&>>;

  // Subscribes to `query(Reader&)`, which returns absl::StatusOr of a std::vector<Document>,
  // a std::optional<Document>, a Document, a PaginationResult (see PaginationOptions::end_cursor
  // to keep a subscribed page's range) or a Value, and may read anything (several queries,
  // gets). It runs now, on the calling thread, and its result is queued for `callback` as the
  // first update (every document `added`); every change after that is a further update (see
  // subscription.h). Updates coalesce, the first one too: if a commit writes inside what this
  // run read before its result is delivered, the first update is the re-run's later result
  // instead (with its timestamp, every document `added`), and this run's result is never
  // delivered. Either way there is one first update (none once unsubscribed), read at or after
  // this run's snapshot; it may arrive before Subscribe returns (on the notifier thread), and
  // WaitForDelivery waits for it. A query that fails is still subscribed: its error is
  // delivered, and it re-runs when what it read changes. The function is copied and re-run on
  // the notifier thread, so it must be safe to call there and free of side effects. Fails only
  // when the storage does.
  template <typename Fn>
  absl::StatusOr<Subscription> Subscribe(Fn query, const UpdateSlot& callback);

  // Read your writes: waits until every subscription that a commit at or before `timestamp`
  // affected has been delivered a result at or after it (or found it unchanged), and every
  // subscription made before the call has had its first update delivered. With
  // Delivery::kManual the calling thread delivers pending updates itself while it waits.
  // DeadlineExceeded after `timeout`; FailedPrecondition when called from a callback.
  absl::Status WaitForDelivery(Timestamp timestamp,
                               absl::Duration timeout = absl::InfiniteDuration());

  // Delivery::kManual: runs the callbacks of every update queued so far, on the calling thread,
  // and returns how many updates were delivered. Does nothing with Delivery::kNotifierThread.
  size_t DeliverPending();
  // Delivery::kManual: a file descriptor that is readable while updates are queued (for poll,
  // select or a GUI toolkit's socket notifier); DeliverPending empties it. -1 otherwise.
  int DeliveryFd() const;
  // Delivery::kManual: waits until an update is queued, at most `timeout`; true when one is.
  bool WaitForPending(absl::Duration timeout);

  // ---- Named functions (functions.h) ----
  // Registers a function; InvalidArgument for a malformed name or validator (naming it),
  // AlreadyExists when the name is taken. Registration may happen at any time, from any thread.
  absl::Status RegisterQuery(const FunctionDef& def, QueryFunction fn);
  absl::Status RegisterMutation(const FunctionDef& def, MutationFunction fn);
  absl::Status RegisterAction(const FunctionDef& def, ActionFunction fn);
  // The public entry point: runs the public function `name` with `args` (an object) as `auth`:
  // a query on a snapshot, a mutation as Mutate does, an action outside any transaction.
  // NotFound for an unknown name, PermissionDenied for an internal function, InvalidArgument
  // naming the argument a validator refused, Internal when the return value is refused (a
  // mutation then writes nothing), otherwise the function's own result or error.
  absl::StatusOr<Value> Call(std::string_view name, const Value& args,
                             const Auth& auth = Auth::Anonymous());
  // Trusted host code: as Call, and internal functions may be called too.
  absl::StatusOr<Value> CallInternal(std::string_view name, const Value& args,
                                     const Auth& auth = Auth::Admin());
  // Subscribes to the public query `name` with `args` as `auth` (as Subscribe does; the result
  // is the function's return value). Errors of the name and the arguments are returned here.
  absl::StatusOr<Subscription> SubscribeFunction(std::string_view name, const Value& args,
                                                 const UpdateSlot& callback,
                                                 const Auth& auth = Auth::Anonymous());

  // Schedules functions as `auth` (scheduler.h), each job in a transaction of its own; also
  // cancels jobs.
  Scheduler scheduler(const Auth& auth = Auth::Admin());
  // Stored files (file_storage.h).
  FileStorage files() { return FileStorage(*this); }

  // Removes now the documents of every table with a TTL (schema "ttl") whose TTL field is older
  // than the table's TTL, in mutations of at most 500 documents (subscriptions see them go);
  // returns how many it removed. A thread does this every Options::ttl_sweep_interval.
  absl::StatusOr<size_t> SweepExpired();

  // The timestamp of the latest commit.
  Timestamp LastCommitTimestamp() const;
  // The schema in force, as the JSON text of one schema file.
  std::string SchemaJson() const;
  // The current size of the LMDB map, in bytes.
  size_t MapSize() const;

 private:
  friend struct internal::FunctionCalls;
  friend class FileStorage;
  friend class internal::JobRunner;
  explicit Database(std::unique_ptr<internal::DatabaseImpl> impl);
  // Starts the TTL sweep thread when a table has a TTL and the interval is not zero.
  void StartSweeper();
  // RegisterQuery, RegisterMutation and RegisterAction.
  absl::Status Register(const FunctionDef& def, internal::RegisteredFunction function);
  const Options& options() const;
  // Call and CallInternal, and an action's calls (which also name the kind they expect).
  absl::StatusOr<Value> CallFunction(std::string_view name, std::optional<FunctionKind> kind,
                                     const Value& args, const Auth& auth, bool allow_internal);
  absl::Status RunMutation(absl::FunctionRef<absl::Status(Transaction&)> fn,
                           Timestamp* commit_timestamp);
  absl::Status RunQuery(absl::FunctionRef<absl::Status(Reader&)> fn);
  absl::StatusOr<Subscription> SubscribeValue(std::function<absl::StatusOr<Value>(Reader&)> query,
                                              const UpdateSlot& callback);

  // Adapts a function returning Status or StatusOr<T> to one returning Status.
  template <typename R, typename Ctx, typename Fn>
  static auto Adapt(Fn& fn, std::optional<R>& result) {
    return [&fn, &result](Ctx& ctx) -> absl::Status {
      if constexpr (internal::IsStatusOr<R>::value) {
        result.emplace(fn(ctx));
        return result->status();
      } else {
        static_assert(std::is_same_v<R, absl::Status>,
                      "the function must return absl::Status or absl::StatusOr<T>");
        result.emplace(fn(ctx));
        return *result;
      }
    };
  }

  std::unique_ptr<internal::DatabaseImpl> impl_;
};

template <typename Fn>
auto Database::Mutate(Fn&& fn, Timestamp* commit_timestamp)
    -> internal::StatusResult<std::invoke_result_t<Fn&, Transaction&>> {
  using R = std::invoke_result_t<Fn&, Transaction&>;
  if constexpr (!internal::kReturnsStatus<R>) {
    static_assert(internal::kReturnsStatus<R>,
                  "the function given to Mutate must return absl::Status or absl::StatusOr<T> "
                  "(a lambda without a return statement returns void)");
    return absl::InternalError("unreachable");
  } else {
    std::optional<R> result;
    auto adapted = Adapt<R, Transaction>(fn, result);
    absl::Status status = RunMutation(adapted, commit_timestamp);
    if (!status.ok()) return status;
    return std::move(*result);
  }
}

template <typename Fn>
auto Database::Query(Fn&& fn) -> internal::StatusResult<std::invoke_result_t<Fn&, Reader&>> {
  using R = std::invoke_result_t<Fn&, Reader&>;
  if constexpr (!internal::kReturnsStatus<R>) {
    static_assert(internal::kReturnsStatus<R>,
                  "the function given to Query must return absl::Status or absl::StatusOr<T> "
                  "(a lambda without a return statement returns void)");
    return absl::InternalError("unreachable");
  } else {
    std::optional<R> result;
    auto adapted = Adapt<R, Reader>(fn, result);
    absl::Status status = RunQuery(adapted);
    if (!status.ok()) return status;
    return std::move(*result);
  }
}

template <typename Fn>
absl::StatusOr<Subscription> Database::Subscribe(Fn query, const UpdateSlot& callback) {
  using R = std::invoke_result_t<Fn&, Reader&>;
  if constexpr (!internal::IsStatusOr<R>::value) {
    // Alone in its branch, so that it is the one error the caller sees.
    static_assert(internal::IsStatusOr<R>::value,
                  "the query must return absl::StatusOr<std::vector<Document>>, "
                  "absl::StatusOr<std::optional<Document>>, absl::StatusOr<Document>, "
                  "absl::StatusOr<PaginationResult> or absl::StatusOr<Value>");
    return absl::InternalError("unreachable");
  } else {
    return SubscribeValue(
        [query = std::move(query)](Reader& reader) mutable -> absl::StatusOr<Value> {
          R result = query(reader);
          if (!result.ok()) return result.status();
          return internal::ToResultValue(*std::move(result));
        },
        callback);
  }
}

}  // namespace stagedb

#endif  // STAGEDB_DATABASE_H_
