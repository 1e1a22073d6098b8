#include "storage/lmdb_store.h"

#include <lmdb.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/memory/memory.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace stagedb::internal {
namespace {

absl::Status LmdbError(int rc, std::string_view what) {
  std::string message = absl::StrFormat("lmdb %s: %s", what, mdb_strerror(rc));
  switch (rc) {
    case MDB_MAP_FULL:
    case MDB_MAP_RESIZED:
    case MDB_READERS_FULL:
    case MDB_TXN_FULL:
      return absl::ResourceExhaustedError(message);
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
      return absl::DataLossError(message);
    default:
      return absl::InternalError(message);
  }
}

MDB_val ToVal(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view FromVal(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

// How many transactions of each store this thread has open: a thread enters a store's resize gate
// once, however many transactions it nests (a query inside a mutation), so that a pending resize
// never makes it wait for itself.
struct OpenTransactions {
  const LmdbStore* store;
  int count;
};
thread_local std::vector<OpenTransactions> open_transactions;

int* HeldCount(const LmdbStore* store) {
  for (auto& open : open_transactions) {
    if (open.store == store) return &open.count;
  }
  open_transactions.push_back({store, 0});
  return &open_transactions.back().count;
}

// How long a write transaction waits to adopt another process's map size before handing the
// resize to its caller (Committer), which first fails the queued mutations whose threads hold a
// transaction: they would otherwise wait for the commit while the resize waits for them.
// The smallest map Open falls back to when the address space refuses a larger one.
constexpr size_t kSmallestFallbackMap = size_t{16} << 20;

constexpr absl::Duration kWriterAdoptWait = absl::Milliseconds(100);

absl::Time DeadlineAfter(absl::Duration max_wait) {
  return max_wait == absl::InfiniteDuration() ? absl::InfiniteFuture() : absl::Now() + max_wait;
}

// LMDB forbids opening one environment twice in a process (closing either breaks the other's
// locks), so open paths are registered and a second Open is refused.
absl::Mutex open_paths_mu(absl::kConstInit);
absl::flat_hash_set<std::string>& OpenPaths() ABSL_EXCLUSIVE_LOCKS_REQUIRED(open_paths_mu) {
  static absl::flat_hash_set<std::string> paths;
  return paths;
}

}  // namespace

bool NeedsMapResize(const absl::Status& status) {
  return absl::IsResourceExhausted(status) &&
         (absl::StrContains(status.message(), mdb_strerror(MDB_MAP_FULL)) ||
          absl::StrContains(status.message(), mdb_strerror(MDB_MAP_RESIZED)));
}

// ---- StoreCursor ----

StoreCursor::~StoreCursor() {
  if (cursor_ != nullptr) mdb_cursor_close(cursor_);
}

StoreCursor::StoreCursor(StoreCursor&& other) noexcept
    : cursor_(std::exchange(other.cursor_, nullptr)), key_(other.key_), value_(other.value_) {}

absl::StatusOr<bool> StoreCursor::Move(int op, std::string_view key) {
  MDB_val k = ToVal(key);
  MDB_val v{0, nullptr};
  const int rc = mdb_cursor_get(cursor_, &k, &v, static_cast<MDB_cursor_op>(op));
  if (rc == MDB_NOTFOUND) return false;
  if (rc != 0) return LmdbError(rc, "cursor");
  key_ = FromVal(k);
  value_ = FromVal(v);
  return true;
}

absl::StatusOr<bool> StoreCursor::SeekAtOrAfter(std::string_view key) {
  if (key.empty()) return Move(MDB_FIRST);
  return Move(MDB_SET_RANGE, key);
}

absl::StatusOr<bool> StoreCursor::SeekBefore(std::string_view key) {
  absl::StatusOr<bool> found = SeekAtOrAfter(key);
  if (!found.ok()) return found;
  return *found ? Move(MDB_PREV) : Move(MDB_LAST);
}

absl::StatusOr<bool> StoreCursor::Next() { return Move(MDB_NEXT); }
absl::StatusOr<bool> StoreCursor::Prev() { return Move(MDB_PREV); }

// ---- StoreTxn ----

StoreTxn::StoreTxn(LmdbStore* store, MDB_txn* txn, bool writable)
    : store_(store), txn_(txn), writable_(writable) {}

StoreTxn::~StoreTxn() { End(); }

void StoreTxn::End() {
  if (txn_ != nullptr) {
    mdb_txn_abort(txn_);
    txn_ = nullptr;
  }
  if (counted_) {
    counted_ = false;
    if (--*HeldCount(store_) == 0) store_->LeaveGate();
  }
}

absl::StatusOr<std::optional<std::string_view>> StoreTxn::Get(StoreDb db, std::string_view key) {
  MDB_val k = ToVal(key);
  MDB_val v{0, nullptr};
  const int rc = mdb_get(txn_, store_->Dbi(db), &k, &v);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  if (rc != 0) return LmdbError(rc, "get");
  return FromVal(v);
}

absl::Status StoreTxn::Put(StoreDb db, std::string_view key, std::string_view value) {
  MDB_val k = ToVal(key);
  MDB_val v = ToVal(value);
  const int rc = mdb_put(txn_, store_->Dbi(db), &k, &v, 0);
  return rc == 0 ? absl::OkStatus() : LmdbError(rc, "put");
}

absl::Status StoreTxn::Delete(StoreDb db, std::string_view key) {
  MDB_val k = ToVal(key);
  const int rc = mdb_del(txn_, store_->Dbi(db), &k, nullptr);
  return rc == 0 || rc == MDB_NOTFOUND ? absl::OkStatus() : LmdbError(rc, "delete");
}

absl::StatusOr<StoreCursor> StoreTxn::OpenCursor(StoreDb db) {
  MDB_cursor* cursor = nullptr;
  const int rc = mdb_cursor_open(txn_, store_->Dbi(db), &cursor);
  if (rc != 0) return LmdbError(rc, "cursor open");
  return StoreCursor(cursor);
}

absl::Status StoreTxn::Commit() {
  const int rc = mdb_txn_commit(txn_);
  txn_ = nullptr;  // committed or, on error, freed by LMDB
  End();
  return rc == 0 ? absl::OkStatus() : LmdbError(rc, "commit");
}

constexpr std::string_view kCommitTimestampKey = "commit_ts";

absl::StatusOr<uint64_t> StoreTxn::CommitTimestamp() {
  absl::StatusOr<std::optional<std::string_view>> bytes = Get(StoreDb::kMeta, kCommitTimestampKey);
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) return 0;
  if ((*bytes)->size() != 8) return absl::DataLossError("the commit timestamp is corrupt");
  uint64_t timestamp = 0;
  for (unsigned char c : **bytes) timestamp = (timestamp << 8) | c;
  return timestamp;
}

absl::Status StoreTxn::SetCommitTimestamp(uint64_t timestamp) {
  char bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(timestamp >> (56 - 8 * i));
  return Put(StoreDb::kMeta, kCommitTimestampKey, std::string_view(bytes, 8));
}

// ---- LmdbStore ----

absl::StatusOr<std::unique_ptr<LmdbStore>> LmdbStore::Open(const std::string& path,
                                                           size_t initial_map_size,
                                                           size_t max_map_size, bool sync) {
  if (path.empty()) return absl::InvalidArgumentError("Options::path is empty");
  if (initial_map_size == 0) {
    return absl::InvalidArgumentError("Options::initial_map_size must be above 0");
  }
  // A maximum below the default start is a small database, not an error.
  initial_map_size = std::min(initial_map_size, max_map_size);
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create database directory \"", path, "\": ", strerror(errno)));
  }
  std::error_code error;
  std::string canonical = std::filesystem::canonical(path, error).string();
  if (error) canonical = path;
  {
    absl::MutexLock lock(&open_paths_mu);
    if (!OpenPaths().insert(canonical).second) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "database \"%s\" is already open in this process; share that Database object "
          "(it is thread-safe) instead of opening the path again",
          path));
    }
  }
  auto store = absl::WrapUnique(new LmdbStore(canonical, max_map_size));
  // The map is address space, not disk: the file grows only as pages are written. Where the
  // address space is limited (ulimit -v), a large map fails with ENOMEM: try smaller ones, down
  // to kSmallestFallbackMap, and let the map grow from there.
  int rc = 0;
  for (size_t map_size = initial_map_size;; map_size /= 2) {
    rc = store->OpenEnvironment(map_size, sync);
    if (rc != ENOMEM || map_size / 2 < kSmallestFallbackMap) break;
  }
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot open database \"", path, "\": ", mdb_strerror(rc)));
  }
  if (mdb_env_get_maxkeysize(store->env_) < static_cast<int>(kMaxKeyBytes)) {
    return absl::InternalError("this LMDB build allows shorter keys than stagedb needs");
  }
  store->ReadMapSize();

  MDB_txn* txn = nullptr;
  rc = mdb_txn_begin(store->env_, nullptr, 0, &txn);
  if (rc != 0) return LmdbError(rc, "begin");
  rc = mdb_dbi_open(txn, "data", MDB_CREATE, &store->data_dbi_);
  if (rc == 0) rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &store->meta_dbi_);
  if (rc != 0) {
    mdb_txn_abort(txn);
    return LmdbError(rc, "open named databases");
  }
  rc = mdb_txn_commit(txn);
  if (rc != 0) return LmdbError(rc, "commit");
  return store;
}

int LmdbStore::OpenEnvironment(size_t map_size, bool sync) {
  if (env_ != nullptr) mdb_env_close(env_);  // a failed open must be closed before another
  env_ = nullptr;
  int rc = mdb_env_create(&env_);
  if (rc != 0) return rc;
  mdb_env_set_maxdbs(env_, 4);
  mdb_env_set_maxreaders(env_, 512);
  // The file may already be larger (grown before, or by another process): LMDB never shrinks it.
  rc = mdb_env_set_mapsize(env_, map_size);
  if (rc != 0) return rc;
  // MDB_NOTLS: read transactions are tied to our objects, not to threads, so a thread may hold
  // several (a query inside a mutation) and many threads may read at once.
  return mdb_env_open(env_, path_.c_str(), MDB_NOTLS | (sync ? 0 : MDB_NOSYNC), 0644);
}

LmdbStore::~LmdbStore() {
  if (env_ != nullptr) mdb_env_close(env_);
  absl::MutexLock lock(&open_paths_mu);
  OpenPaths().erase(path_);
}

absl::StatusOr<std::unique_ptr<StoreTxn>> LmdbStore::BeginRead() { return Begin(false); }
absl::StatusOr<std::unique_ptr<StoreTxn>> LmdbStore::BeginWrite() { return Begin(true); }

absl::StatusOr<std::unique_ptr<StoreTxn>> LmdbStore::Begin(bool writable) {
  int* count = HeldCount(this);
  for (int attempt = 0;; ++attempt) {
    if (*count == 0) EnterGate();
    ++*count;
    MDB_txn* txn = nullptr;
    const int rc = mdb_txn_begin(env_, nullptr, writable ? 0 : MDB_RDONLY, &txn);
    if (rc == 0) return absl::WrapUnique(new StoreTxn(this, txn, writable));
    if (--*count == 0) LeaveGate();
    // MDB_MAP_RESIZED: another process grew the map past ours. Adopt its size and try again
    // (a few times: it may grow again meanwhile). A nested transaction cannot: its thread holds
    // one open.
    if (rc != MDB_MAP_RESIZED || attempt == 3 || *count > 0) {
      return LmdbError(rc, *count > 0 ? "begin nested transaction" : "begin transaction");
    }
    // A writer waits briefly, then hands the resize to its caller (see kWriterAdoptWait); a
    // reader holds nothing anyone waits for, so it waits as long as it takes.
    const absl::Status adopted =
        AdoptMapSize(writable ? kWriterAdoptWait : absl::InfiniteDuration());
    if (absl::IsUnavailable(adopted)) return LmdbError(rc, "begin transaction");
    if (!adopted.ok()) return adopted;
  }
}

void LmdbStore::EnterGate() {
  for (;;) {
    open_threads_.fetch_add(1);
    // Both sides use sequentially consistent operations: a resizer sets resize_pending_ and then
    // reads open_threads_, so either it sees this thread or this thread sees it pending.
    if (!resize_pending_.load()) return;
    LeaveGate();
    absl::MutexLock lock(&gate_mu_);
    gate_mu_.Await(absl::Condition(this, &LmdbStore::NoResizePending));
  }
}

void LmdbStore::LeaveGate() {
  if (open_threads_.fetch_sub(1) == 1 && resize_pending_.load()) {
    // The resizer waits on gate_mu_ for open_threads_ to reach 0: Abseil re-checks a waiter's
    // condition when the mutex is released, so taking and releasing it wakes the resizer.
    absl::MutexLock lock(&gate_mu_);
  }
}

absl::Status LmdbStore::RunWithGateClosed(absl::Time deadline,
                                          absl::FunctionRef<absl::Status()> resize) {
  absl::MutexLock lock(&gate_mu_);
  if (!gate_mu_.AwaitWithDeadline(absl::Condition(this, &LmdbStore::NoResizePending), deadline)) {
    return absl::UnavailableError(
        absl::StrCat("database \"", path_, "\": another resize of the map is under way"));
  }
  resize_pending_.store(true);
  absl::Status status =
      gate_mu_.AwaitWithDeadline(absl::Condition(this, &LmdbStore::NoTransactionOpen), deadline)
          ? resize()
          : absl::UnavailableError(absl::StrCat(
                "database \"", path_, "\": the map cannot be resized while transactions are open"));
  resize_pending_.store(false);  // waiters re-check when the lock is released
  return status;
}

void LmdbStore::ReadMapSize() {
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  map_size_ = info.me_mapsize;
}

absl::Status LmdbStore::AdoptMapSize(absl::Duration max_wait) {
  return RunWithGateClosed(DeadlineAfter(max_wait), [&] {
    // Size 0: the size the file's newest meta page records (never below what is in use).
    const int rc = mdb_env_set_mapsize(env_, 0);
    if (rc != 0) return LmdbError(rc, "adopt map size");
    ReadMapSize();
    return absl::OkStatus();
  });
}

bool LmdbStore::ThisThreadHoldsTransaction() const { return *HeldCount(this) > 0; }

absl::Status LmdbStore::Grow(size_t observed_size, absl::Duration max_wait) {
  if (*HeldCount(this) > 0) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "database \"%s\" is full and cannot grow while this thread has a transaction open "
        "(is Mutate called from inside Query?)",
        path_));
  }
  return RunWithGateClosed(DeadlineAfter(max_wait), [&]() -> absl::Status {
    // Writers that failed together on a full map each call Grow: the first grows, the rest retry.
    if (map_size_ > observed_size) return absl::OkStatus();
    // Another process may have grown the map (the file may need more than ours): adopt that.
    if (const int rc = mdb_env_set_mapsize(env_, 0); rc != 0)
      return LmdbError(rc, "adopt map size");
    ReadMapSize();
    if (map_size_ > observed_size) return absl::OkStatus();
    if (observed_size >= max_map_size_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("database \"", path_, "\" is full: the map is ", observed_size,
                       " bytes, the limit set by Options::max_map_size; raise it to store more"));
    }
    const size_t target = std::min(max_map_size_, std::max(observed_size, map_size_.load()) * 2);
    if (const int rc = mdb_env_set_mapsize(env_, target); rc != 0) return LmdbError(rc, "grow map");
    ReadMapSize();
    return absl::OkStatus();
  });
}

size_t LmdbStore::map_size() const { return map_size_.load(); }

}  // namespace stagedb::internal
