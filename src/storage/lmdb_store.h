// The storage layer: one LMDB environment (a directory holding data.mdb and lock.mdb) with two
// named databases, RAII transactions and cursors. Nothing outside src/storage includes lmdb.h.
//
// kData holds every index entry: key = 4-byte big-endian index id + index key. `by_id` entries
// hold the encoded document; other entries hold the `by_id` key suffix of their document.
// kMeta holds the schema, the catalog, the commit timestamp and the cursor secret.
//
// The map grows when full: LMDB only lets a process change its map size while the process has no
// transaction open, so every transaction holds `resize_mu_` shared and Grow takes it exclusive.
#ifndef STAGEDB_SRC_STORAGE_LMDB_STORE_H_
#define STAGEDB_SRC_STORAGE_LMDB_STORE_H_

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

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
  // Write errors: ResourceExhausted with IsMapFull() true when the map is full.
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
  StoreTxn(LmdbStore* store, MDB_txn* txn, bool writable, bool holds_resize_lock);
  void End();

  LmdbStore* store_;
  MDB_txn* txn_;
  bool writable_;
  bool holds_resize_lock_;
};

// True for the error a write returns when the LMDB map is full (the caller grows and retries).
bool IsMapFull(const absl::Status& status);

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

  // Doubles the map, up to the maximum, unless another writer already grew it past
  // `observed_size` (the map_size() seen when the failed write began); ResourceExhausted when it
  // is at the maximum. The calling thread must have no transaction of this store open. It waits
  // for every other transaction of the process to end, at most `max_wait`: then Unavailable.
  absl::Status Grow(size_t observed_size, absl::Duration max_wait = absl::InfiniteDuration());
  // Whether the calling thread has a transaction of this store open.
  bool ThisThreadHoldsTransaction() const;
  size_t map_size() const;
  const std::string& path() const { return path_; }

 private:
  friend class StoreTxn;
  LmdbStore(std::string path, size_t max_map_size)
      : path_(std::move(path)), max_map_size_(max_map_size) {}
  absl::StatusOr<std::unique_ptr<StoreTxn>> Begin(bool writable);
  // Adopts a map size another process set; exclusive like Grow.
  absl::Status AdoptMapSize();
  unsigned Dbi(StoreDb db) const { return db == StoreDb::kData ? data_dbi_ : meta_dbi_; }

  std::string path_;
  size_t max_map_size_;
  MDB_env* env_ = nullptr;
  unsigned data_dbi_ = 0;
  unsigned meta_dbi_ = 0;
  mutable absl::Mutex resize_mu_;
  std::atomic<size_t> map_size_ = 0;  // written under resize_mu_ held exclusive
};

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_STORAGE_LMDB_STORE_H_
