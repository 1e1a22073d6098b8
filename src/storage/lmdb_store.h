// The storage layer: one LMDB environment (a directory holding data.mdb and lock.mdb) with two
// named databases, RAII transactions and cursors. Nothing outside src/storage includes lmdb.h.
//
// kData holds every index entry: key = 4-byte big-endian index id + index key. `by_id` entries
// hold the encoded document; other entries hold the `by_id` key suffix of their document.
// kMeta holds the schema, the catalog, the commit timestamp and the cursor secret.
//
// The map grows when full. LMDB lets a process change its map size only while the process has no
// transaction open, so transactions pass a gate (see LmdbStore): once a resize is pending, threads
// that have no transaction open wait at the gate, and the resize runs as soon as the transactions
// already open end. A reader-writer lock polled with TryLock instead starves the resize forever
// under steady reads (their shared holds always overlap).
#ifndef STAGEDB_SRC_STORAGE_LMDB_STORE_H_
#define STAGEDB_SRC_STORAGE_LMDB_STORE_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

struct MDB_env;
struct MDB_txn;
struct MDB_cursor;

namespace stagedb::internal {

enum class StoreDb { kData, kMeta };

// LMDB's limit on key size (its default build): index keys longer than this are refused.
inline constexpr size_t kMaxKeyBytes = 511;

class LmdbStore;

// A cursor over one named database; positions are keys in byte order.
class StoreCursor {
 public:
  ~StoreCursor();
  StoreCursor(StoreCursor&& other) noexcept;
  StoreCursor& operator=(StoreCursor&&) = delete;

  // Positions at the first key >= `key`; false when there is none.
  absl::StatusOr<bool> SeekAtOrAfter(std::string_view key);
  // Positions at the last key < `key`; false when there is none.
  absl::StatusOr<bool> SeekBefore(std::string_view key);
  absl::StatusOr<bool> Next();
  absl::StatusOr<bool> Prev();
  // The current entry; views are valid until the transaction ends or writes.
  std::string_view key() const { return key_; }
  std::string_view value() const { return value_; }

 private:
  friend class StoreTxn;
  explicit StoreCursor(MDB_cursor* cursor) : cursor_(cursor) {}
  absl::StatusOr<bool> Move(int op, std::string_view key = {});

  MDB_cursor* cursor_;
  std::string_view key_;
  std::string_view value_;
};

// A read or write transaction. Ends (aborting, unless committed) when destroyed.
class StoreTxn {
 public:
  ~StoreTxn();
  StoreTxn(const StoreTxn&) = delete;
  StoreTxn& operator=(const StoreTxn&) = delete;

  bool writable() const { return writable_; }
  // The value, or nullopt; the view is valid until the transaction ends or writes.
  absl::StatusOr<std::optional<std::string_view>> Get(StoreDb db, std::string_view key);
  // Write errors: ResourceExhausted with NeedsMapResize() true when the map is full.
  absl::Status Put(StoreDb db, std::string_view key, std::string_view value);
  // Deleting a missing key is not an error.
  absl::Status Delete(StoreDb db, std::string_view key);
  absl::StatusOr<StoreCursor> OpenCursor(StoreDb db);
  absl::Status Commit();

  // The timestamp of the last commit (0 for a new database), kept in kMeta.
  absl::StatusOr<uint64_t> CommitTimestamp();
  absl::Status SetCommitTimestamp(uint64_t timestamp);

 private:
  friend class LmdbStore;
  StoreTxn(LmdbStore* store, MDB_txn* txn, bool writable);
  void End();

  LmdbStore* store_;
  MDB_txn* txn_;
  bool writable_;
  bool counted_ = true;  // counted in this thread's open transactions until End
};

// True for the errors that ask the caller to call LmdbStore::Grow and retry: a write found the map
// full, or a write transaction could not adopt the larger map another process set.
bool NeedsMapResize(const absl::Status& status);

class LmdbStore {
 public:
  // `sync`: each commit waits for fsync (durable); otherwise commits reach the OS only
  // (MDB_NOSYNC: they survive a process kill, not a power loss).
  static absl::StatusOr<std::unique_ptr<LmdbStore>> Open(const std::string& path,
                                                         size_t initial_map_size,
                                                         size_t max_map_size, bool sync = true);
  ~LmdbStore();

  absl::StatusOr<std::unique_ptr<StoreTxn>> BeginRead();
  // Blocks while another write transaction (of any thread or process) is open.
  absl::StatusOr<std::unique_ptr<StoreTxn>> BeginWrite();

  // Adopts the larger map another process set or else doubles the map, up to the maximum, unless
  // another writer already grew it past `observed_size` (the map_size() seen when the failed
  // write began); ResourceExhausted when it is at the maximum. The calling thread must have no
  // transaction of this store open. New transactions of the process wait while it waits for the
  // ones already open to end, at most `max_wait`: then Unavailable, and nothing changed.
  absl::Status Grow(size_t observed_size, absl::Duration max_wait = absl::InfiniteDuration());
  // Whether the calling thread has a transaction of this store open.
  bool ThisThreadHoldsTransaction() const;
  size_t map_size() const;
  const std::string& path() const { return path_; }

 private:
  friend class StoreTxn;
  LmdbStore(std::string path, size_t max_map_size)
      : path_(std::move(path)), max_map_size_(max_map_size) {}
  // Creates and opens env_ with a map of `map_size` bytes; an LMDB error code.
  int OpenEnvironment(size_t map_size, bool sync);
  absl::StatusOr<std::unique_ptr<StoreTxn>> Begin(bool writable);
  // Adopts the map size another process set (MDB_MAP_RESIZED), through the gate like Grow.
  absl::Status AdoptMapSize(absl::Duration max_wait);
  // Reads the map size LMDB uses now into map_size_. Call with the gate closed.
  void ReadMapSize();

  // The resize gate. A thread enters when it opens its first transaction of this store and
  // leaves when it closes its last (nested ones pass freely, so a thread never waits on itself).
  void EnterGate();
  void LeaveGate();
  // Closes the gate, waits (until `deadline`) for every open transaction to end, runs `resize`
  // and opens the gate again. One resize at a time; Unavailable when the deadline passes first.
  absl::Status RunWithGateClosed(absl::Time deadline, absl::FunctionRef<absl::Status()> resize);
  bool NoResizePending() const { return !resize_pending_.load(); }
  bool NoTransactionOpen() const { return open_threads_.load() == 0; }
  unsigned Dbi(StoreDb db) const { return db == StoreDb::kData ? data_dbi_ : meta_dbi_; }

  std::string path_;
  size_t max_map_size_;
  MDB_env* env_ = nullptr;
  unsigned data_dbi_ = 0;
  unsigned meta_dbi_ = 0;
  // Entering is two atomic operations when no resize is pending; gate_mu_ is taken only to wait
  // (and, by the last thread to leave while a resize waits, to wake it).
  absl::Mutex gate_mu_;
  std::atomic<int> open_threads_ = 0;         // threads with a transaction of this store open
  std::atomic<bool> resize_pending_ = false;  // set and cleared under gate_mu_
  std::atomic<size_t> map_size_ = 0;          // written with the gate closed
};

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_STORAGE_LMDB_STORE_H_
