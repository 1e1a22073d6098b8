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

constexpr int kMapFullCode = MDB_MAP_FULL;

absl::Status LmdbError(int rc, std::string_view what) {
  std::string message = absl::StrFormat("lmdb %s: %s", what, mdb_strerror(rc));
  switch (rc) {
    case MDB_MAP_FULL:
      return absl::ResourceExhaustedError(message);
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

// How many transactions of each store this thread has open: a thread holds a store's resize lock
// shared once, however many transactions it nests (a query inside a mutation), so that a waiting
// Grow cannot deadlock it against itself.
struct HeldResizeLock {
  const LmdbStore* store;
  int count;
};
thread_local std::vector<HeldResizeLock> held_resize_locks;

int* HeldCount(const LmdbStore* store) {
  for (auto& held : held_resize_locks) {
    if (held.store == store) return &held.count;
  }
  held_resize_locks.push_back({store, 0});
  return &held_resize_locks.back().count;
}

// LMDB forbids opening one environment twice in a process (closing either breaks the other's
// locks), so open paths are registered and a second Open is refused.
absl::Mutex open_paths_mu(absl::kConstInit);
absl::flat_hash_set<std::string>& OpenPaths() ABSL_EXCLUSIVE_LOCKS_REQUIRED(open_paths_mu) {
  static absl::flat_hash_set<std::string> paths;
  return paths;
}

}  // namespace

bool IsMapFull(const absl::Status& status) {
  return absl::IsResourceExhausted(status) &&
         absl::StrContains(status.message(), mdb_strerror(kMapFullCode));
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

StoreTxn::StoreTxn(LmdbStore* store, MDB_txn* txn, bool writable, bool holds_resize_lock)
    : store_(store), txn_(txn), writable_(writable), holds_resize_lock_(holds_resize_lock) {}

StoreTxn::~StoreTxn() { End(); }

void StoreTxn::End() {
  if (txn_ != nullptr) {
    mdb_txn_abort(txn_);
    txn_ = nullptr;
  }
  if (holds_resize_lock_) {
    holds_resize_lock_ = false;
    int* count = HeldCount(store_);
    if (--*count == 0) store_->resize_mu_.ReaderUnlock();
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
  int rc = mdb_env_create(&store->env_);
  if (rc != 0) return LmdbError(rc, "env create");
  if (mdb_env_get_maxkeysize(store->env_) < static_cast<int>(kMaxKeyBytes)) {
    return absl::InternalError("this LMDB build allows shorter keys than stagedb needs");
  }
  mdb_env_set_maxdbs(store->env_, 4);
  mdb_env_set_maxreaders(store->env_, 512);
  // The file may already be larger (grown before, or by another process): never shrink it.
  rc = mdb_env_set_mapsize(store->env_, initial_map_size);
  if (rc != 0) return LmdbError(rc, "set map size");
  // MDB_NOTLS: read transactions are tied to our objects, not to threads, so a thread may hold
  // several (a query inside a mutation) and many threads may read at once.
  rc = mdb_env_open(store->env_, path.c_str(), MDB_NOTLS | (sync ? 0 : MDB_NOSYNC), 0644);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot open database \"", path, "\": ", mdb_strerror(rc)));
  }
  MDB_envinfo info;
  mdb_env_info(store->env_, &info);
  store->map_size_ = info.me_mapsize;

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

LmdbStore::~LmdbStore() {
  if (env_ != nullptr) mdb_env_close(env_);
  absl::MutexLock lock(&open_paths_mu);
  OpenPaths().erase(path_);
}

absl::StatusOr<std::unique_ptr<StoreTxn>> LmdbStore::BeginRead() { return Begin(false); }
absl::StatusOr<std::unique_ptr<StoreTxn>> LmdbStore::BeginWrite() { return Begin(true); }

absl::StatusOr<std::unique_ptr<StoreTxn>> LmdbStore::Begin(bool writable) {
  for (int attempt = 0;; ++attempt) {
    int* count = HeldCount(this);
    if (*count == 0) resize_mu_.ReaderLock();
    ++*count;
    MDB_txn* txn = nullptr;
    const int rc = mdb_txn_begin(env_, nullptr, writable ? 0 : MDB_RDONLY, &txn);
    if (rc == 0) return absl::WrapUnique(new StoreTxn(this, txn, writable, true));
    if (--*count == 0) resize_mu_.ReaderUnlock();
    if (rc != MDB_MAP_RESIZED || attempt > 0) return LmdbError(rc, "begin transaction");
    // Another process grew the map: adopt its size, then try once more.
    if (*count > 0) return LmdbError(rc, "begin nested transaction");
    if (absl::Status s = AdoptMapSize(); !s.ok()) return s;
  }
}

absl::Status LmdbStore::AdoptMapSize() {
  absl::MutexLock lock(&resize_mu_);
  const int rc = mdb_env_set_mapsize(env_, 0);
  if (rc != 0) return LmdbError(rc, "adopt map size");
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  map_size_ = info.me_mapsize;
  return absl::OkStatus();
}

bool LmdbStore::ThisThreadHoldsTransaction() const { return *HeldCount(this) > 0; }

absl::Status LmdbStore::Grow(size_t observed_size, absl::Duration max_wait) {
  if (*HeldCount(this) > 0) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "database \"%s\" is full and cannot grow while this thread has a transaction open "
        "(is Mutate called from inside Query?)",
        path_));
  }
  if (max_wait == absl::InfiniteDuration()) {
    resize_mu_.Lock();
  } else {
    const absl::Time deadline = absl::Now() + max_wait;
    while (!resize_mu_.TryLock()) {
      if (absl::Now() >= deadline) {
        return absl::UnavailableError("the map cannot grow while transactions are open");
      }
      absl::SleepFor(absl::Microseconds(200));
    }
  }
  struct Unlock {
    absl::Mutex& mu;
    ~Unlock() { mu.Unlock(); }
  } unlock{resize_mu_};
  // Writers that failed together on a full map each call Grow: the first grows, the rest retry.
  if (map_size_ > observed_size) return absl::OkStatus();
  if (map_size_ >= max_map_size_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("database \"", path_, "\" is full: the map is ", map_size_.load(),
                     " bytes, the limit set by ", "Options::max_map_size; raise it to store more"));
  }
  const size_t target = std::min(max_map_size_, map_size_ * 2);
  const int rc = mdb_env_set_mapsize(env_, target);
  if (rc != 0) return LmdbError(rc, "grow map");
  MDB_envinfo info;
  mdb_env_info(env_, &info);
  map_size_ = info.me_mapsize;
  return absl::OkStatus();
}

size_t LmdbStore::map_size() const { return map_size_.load(); }

}  // namespace stagedb::internal
