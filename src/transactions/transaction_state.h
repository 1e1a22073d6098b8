// TransactionState: everything behind a Reader or Transaction. Reads come from one storage
// snapshot merged with the transaction's own buffered writes; every read is recorded in the read
// set; writes are validated when made and buffered in `overlay_`, which is also the write set:
// every storage key the commit will put or delete, in key order.
#ifndef STAGEDB_SRC_TRANSACTIONS_TRANSACTION_STATE_H_
#define STAGEDB_SRC_TRANSACTIONS_TRANSACTION_STATE_H_

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "schema/catalog.h"
#include "stagedb/options.h"
#include "stagedb/query.h"
#include "stagedb/read_set.h"
#include "stagedb/transaction.h"
#include "storage/lmdb_store.h"

namespace stagedb::internal {

// A storage key's state after the transaction's writes: its value, or deleted (nullopt).
// `stored`: storage already holds exactly this entry (a kept secondary key of a changed
// document), so committing writes nothing for it; it is here for the write set.
struct PendingEntry {
  std::optional<std::string> value;
  bool stored = false;
};

// Every storage key a commit puts or deletes (the old and new key of each written document in
// every index), in key order, with the entry's state after the commit.
using WriteSet = absl::btree_map<std::string, PendingEntry>;

// A committed write set's storage keys, sorted: what the committer's write log and the
// subscriptions' log keep of a commit. (A copy each, not a shared_ptr: TSan reports libstdc++'s
// shared_ptr release as a race when the last two owners are on different threads.)
using CommitKeys = std::vector<std::string>;
CommitKeys KeysOf(const WriteSet& writes);
// The first range of `read_set` that holds one of `keys` (sorted storage keys), or null: whether
// a commit wrote anything a transaction or query read.
const ReadRange* FirstRangeWritten(const ReadSet& read_set, const std::vector<std::string>& keys);

// Row-level scoping of one call (README "Row-level scoping"): the caller's claims. Documents of
// a table that declares scope fields are visible, and writable, only when each of those fields
// holds the caller's claim; an empty claim matches nothing.
struct RowScope {
  std::string tenant;
  std::string workspace;
  const std::string& Claim(std::string_view name) const {
    return name == "tenant" ? tenant : workspace;
  }
};

class TransactionState {
 public:
  // `txn` is the storage snapshot (a write transaction for a mutation); `timestamp` its commit
  // timestamp, read from `txn` when first asked for if not given; `cursor_secret` keys
  // pagination cursors. All must outlive this object.
  TransactionState(const Catalog& catalog, StoreTxn& txn, const TransactionLimits& limits,
                   std::optional<Timestamp> timestamp, std::string_view cursor_secret);

  Reader& reader() { return transaction_; }
  const Catalog& catalog() const { return catalog_; }
  Transaction& transaction() { return transaction_; }
  Timestamp timestamp() const;
  const ReadSet& read_set() const { return read_set_; }
  // Moves the read set out (for a subscription to keep); reads must be over.
  ReadSet TakeReadSet() { return std::move(read_set_); }
  // Confines every later read and write to `scope`; nullopt (the default): unscoped.
  void set_row_scope(std::optional<RowScope> scope) { row_scope_ = std::move(scope); }
  // Whether writes to system tables are allowed: only while the engine itself writes them
  // (the scheduler, file storage), never while user code runs.
  void set_system_writes(bool allowed) { system_writes_ = allowed; }

  // ---- reads ----
  absl::StatusOr<std::optional<Document>> Get(const DocumentId& id, bool include_deleted = false);
  absl::StatusOr<std::vector<Document>> Run(const QuerySpec& spec, size_t limit);
  absl::StatusOr<PaginationResult> Paginate(const QuerySpec& spec,
                                            const PaginationOptions& options);

  // ---- writes ----
  absl::StatusOr<DocumentId> Insert(std::string_view table, Object fields);
  absl::Status Patch(const DocumentId& id, Object fields);
  absl::Status Replace(const DocumentId& id, Object fields);
  // `purge`: removes the document also from a soft-delete table.
  absl::Status Delete(const DocumentId& id, bool purge = false);

  bool has_writes() const { return !overlay_.empty(); }
  // Moves the write set out (for the committer to validate and write); the transaction is over.
  WriteSet TakeWriteSet() { return std::move(overlay_); }

 private:
  // The resolved storage key range [lo, hi) of a query.
  struct KeyRange {
    const TableInfo* table;
    const IndexInfo* index;
    std::string lo;
    std::string hi;
  };
  // Called per entry in scan order with the entry's document; returns whether
  // to go on.
  using Visitor = absl::FunctionRef<absl::StatusOr<bool>(Document document)>;

  absl::StatusOr<KeyRange> Resolve(const QuerySpec& spec) const;
  // Walks [lo, hi) of `index` over the snapshot merged with the overlay, in `order`, until
  // `visit` says stop, and records the part consumed in the read set: up to the last key visited
  // when stopped, else all of [lo, hi). `*last_key` is the last key visited. With `exhausted`
  // given, a stopped scan also looks whether anything is left, sets it, and when nothing is,
  // records the whole range (an answer "nothing more" depends on all of it).
  absl::Status Scan(const IndexInfo& index, std::string_view lo, std::string_view hi,
                    SortOrder order, Visitor visit, std::string* last_key,
                    bool* exhausted = nullptr);
  // The document of an index entry (decoding a `by_id` value, or following a secondary entry).
  absl::StatusOr<Document> EntryDocument(const IndexInfo& index, std::string_view key,
                                         std::string_view value);
  absl::StatusOr<std::optional<Document>> LoadDocument(std::string_view by_id_key,
                                                       const TableInfo& table);
  absl::StatusOr<Document> DecodeStored(std::string_view bytes, const TableInfo& table);
  // Looks up the table of `id` and its current document (recording the read).
  absl::StatusOr<std::pair<const TableInfo*, Document>> GetExisting(const DocumentId& id);
  // Validates `next` (when present) and buffers the change from `old` to `next`.
  absl::Status WriteDocument(const TableInfo& table, const DocumentId& id, const Object* old,
                             std::optional<Object> next);
  absl::Status CheckUnique(const IndexInfo& index, const Object& document,
                           std::string_view id_suffix);
  absl::Status CountRead(size_t bytes);
  // Counts one user-level read (Get or query) against max_read_ranges; the engine's own probes
  // (unique checks, the read behind Patch) do not count, as in Convex.
  absl::Status CountReadCall();
  absl::Status CheckNotScanning() const;
  // Get without counting: also the read behind Patch, Replace and Delete.
  absl::StatusOr<std::optional<Document>> Fetch(const DocumentId& id);
  void Record(const IndexInfo& index, std::string_view start, std::string_view end);
  // Whether `document` of `table` is inside the row scope (always, when unscoped).
  bool InScope(const TableInfo& table, const Object& document) const;
  // Whether a read shows `document`: in scope, and not soft-deleted unless `include_deleted`.
  bool Shows(const TableInfo& table, const Object& document, bool include_deleted) const;
  // The first (claim, field) of `table`'s scope that `document` does not satisfy; null when it is
  // inside the row scope (always, when unscoped).
  const std::pair<const std::string, std::string>* OutOfScope(const TableInfo& table,
                                                              const Object& document) const;
  // Whether a query returns `document` of `table`: Shows it, and the spec's filter accepts it.
  bool Selects(const TableInfo& table, const QuerySpec& spec, const Document& document) const;
  // PermissionDenied naming the table, the field and both values when `document`, about to be
  // written, is outside the row scope.
  absl::Status CheckWriteScope(const TableInfo& table, const Object& document) const;

  const Catalog& catalog_;
  StoreTxn& txn_;
  const TransactionLimits& limits_;
  mutable std::optional<Timestamp> timestamp_;
  const std::string_view cursor_secret_;
  Transaction transaction_;
  ReadSet read_set_;
  WriteSet overlay_;
  // `by_id` storage key -> the document as written (nullopt: deleted).
  absl::flat_hash_map<std::string, std::optional<Document>> written_;
  std::optional<RowScope> row_scope_;
  bool system_writes_ = false;
  size_t read_calls_ = 0;
  int scanning_ = 0;  // scans in progress (their visitors run user code)
  size_t documents_read_ = 0;
  size_t bytes_read_ = 0;
  size_t documents_written_ = 0;
  size_t bytes_written_ = 0;
};

// The state behind a Reader or Transaction handed to user code (to scope a function call).
struct ReaderAccess {
  static TransactionState& State(Reader& reader) { return *reader.state_; }
};

// Lets the engine write system tables through `reader`'s transaction while this lives (never
// while user code runs in it): the scheduler, file storage and the TTL sweep.
class SystemWriteScope {
 public:
  explicit SystemWriteScope(Reader& reader) : state_(ReaderAccess::State(reader)) {
    state_.set_system_writes(true);
  }
  ~SystemWriteScope() { state_.set_system_writes(false); }
  SystemWriteScope(const SystemWriteScope&) = delete;
  SystemWriteScope& operator=(const SystemWriteScope&) = delete;

 private:
  TransactionState& state_;
};

// Whether `id` is a document id of `table`.
inline bool IsIdOf(Reader& reader, const DocumentId& id, std::string_view table) {
  const uint32_t number = ReaderAccess::State(reader).catalog().TableNumber(table);
  return number != 0 && id.table_number() == number;
}

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_TRANSACTIONS_TRANSACTION_STATE_H_
