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
// becomes an Unknown status naming it). A mutation's function may run more than once (when it
// is retried), so it should have no effects outside the transaction.
#ifndef STAGEDB_DATABASE_H_
#define STAGEDB_DATABASE_H_

#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stagedb/options.h"
#include "stagedb/reader.h"
#include "stagedb/transaction.h"

namespace stagedb {

namespace internal {
class DatabaseImpl;
template <typename T>
struct IsStatusOr : std::false_type {};
template <typename T>
struct IsStatusOr<absl::StatusOr<T>> : std::true_type {};
}  // namespace internal

class Database {
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
  // Mutate returns, and `*commit_timestamp` (when given) is the commit's timestamp.
  template <typename Fn>
  auto Mutate(Fn&& fn, Timestamp* commit_timestamp = nullptr)
      -> std::invoke_result_t<Fn&, Transaction&>;

  // Runs `fn(Reader&)` on a snapshot of the latest commit. `fn` returns absl::Status or
  // absl::StatusOr<T>; Query returns the same type. Inside a mutation of this database, read
  // through its Transaction instead: Query (and Mutate) there fail with FailedPrecondition.
  // A Mutate inside Query works, but cannot grow a full map (the Query holds it).
  template <typename Fn>
  auto Query(Fn&& fn) -> std::invoke_result_t<Fn&, Reader&>;

  // The timestamp of the latest commit.
  Timestamp LastCommitTimestamp() const;
  // The schema in force, as the JSON text of one schema file.
  std::string SchemaJson() const;
  // The current size of the LMDB map, in bytes.
  size_t MapSize() const;

 private:
  explicit Database(std::unique_ptr<internal::DatabaseImpl> impl);
  absl::Status RunMutation(absl::FunctionRef<absl::Status(Transaction&)> fn,
                           Timestamp* commit_timestamp);
  absl::Status RunQuery(absl::FunctionRef<absl::Status(Reader&)> fn);

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
    -> std::invoke_result_t<Fn&, Transaction&> {
  using R = std::invoke_result_t<Fn&, Transaction&>;
  std::optional<R> result;
  auto adapted = Adapt<R, Transaction>(fn, result);
  absl::Status status = RunMutation(adapted, commit_timestamp);
  if (!status.ok()) return status;
  return std::move(*result);
}

template <typename Fn>
auto Database::Query(Fn&& fn) -> std::invoke_result_t<Fn&, Reader&> {
  using R = std::invoke_result_t<Fn&, Reader&>;
  std::optional<R> result;
  auto adapted = Adapt<R, Reader>(fn, result);
  absl::Status status = RunQuery(adapted);
  if (!status.ok()) return status;
  return std::move(*result);
}

}  // namespace stagedb

#endif  // STAGEDB_DATABASE_H_
