// Options for opening a database, and the per-transaction limits.
#ifndef STAGEDB_OPTIONS_H_
#define STAGEDB_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/time/time.h"

namespace stagedb {

// Commit timestamps: each commit gets the next one; 0 is the empty database.
using Timestamp = uint64_t;

// What one transaction (a mutation or a query) may do, as Convex limits it. Exceeding a limit
// fails the transaction with ResourceExhausted naming the limit, the amount and the option.
struct TransactionLimits {
  size_t max_documents_read = 32'000;
  size_t max_bytes_read = size_t{16} << 20;
  size_t max_documents_written = 16'000;
  size_t max_bytes_written = size_t{16} << 20;
  size_t max_read_ranges = 4'096;  // reads: each Get and each query counts one
  // A mutation whose reads were overwritten by a concurrent commit is re-run on a newer
  // snapshot this many times; then Mutate returns Aborted naming the table and index.
  size_t max_conflict_retries = 32;
};

// What a commit waits for before Mutate returns.
enum class Durability {
  // The commit is on disk (fsync): it survives a process kill and a power loss.
  kDurable,
  // The commit is handed to the operating system: it survives a process kill (the kernel writes
  // it out later), but a power loss or OS crash may lose the latest commits. The database stays
  // consistent either way. Much faster commits.
  kNoSync,
};

// Where subscription callbacks run (see subscription.h).
enum class Delivery {
  // On the database's notifier thread, which also re-runs the affected queries.
  kNotifierThread,
  // Only inside Database::DeliverPending, called by the host (a GUI's event loop, say). Re-runs
  // still happen on the notifier thread; their updates queue up until the host delivers them.
  kManual,
};

struct Options {
  // The database directory (LMDB's data.mdb and lock.mdb); created when missing.
  std::string path;
  // Where the schema comes from: every `*.json` file in `schema_dir`, or the text of one schema
  // file in `schema_json`. With neither, the schema stored in the database is used as it is.
  std::string schema_dir;
  std::string schema_json;
  // The LMDB map starts at `initial_map_size` (at most `max_map_size`) and doubles when full, up
  // to `max_map_size`; past that a write fails with ResourceExhausted naming the option, and the
  // database stays as it was. The map is address space, not disk: the file grows only as pages
  // are written (an empty database is 44 KiB and opens as fast with a 64 GiB map as with 16 MiB,
  // measured on ext4), so by default it starts at the maximum and never has to grow. Growing
  // briefly holds back new transactions until the open ones end. Where the address space is
  // limited (ulimit -v), Open falls back to smaller maps, down to 16 MiB.
  size_t initial_map_size = size_t{64} << 30;
  size_t max_map_size = size_t{64} << 30;
  TransactionLimits limits;
  Durability durability = Durability::kDurable;
  Delivery delivery = Delivery::kNotifierThread;
  // How often a thread of the database removes the expired documents of tables with a TTL
  // (schema "ttl"); zero: no thread, the host calls Database::SweepExpired itself.
  absl::Duration ttl_sweep_interval = absl::Seconds(1);
  // Whether this process may run scheduled functions (scheduler.h) on a thread of the database.
  // One process at a time runs a database's jobs: the first Open that takes the scheduler lease
  // (a lock file in the database directory, released when its Database closes or its process
  // dies); the others leave the jobs to it. At that Open, actions a dead process left running
  // are marked failed and files left half-written are removed.
  bool run_scheduler = true;
  // How many scheduled actions may run at once (each on a thread of its own).
  size_t max_running_actions = 4;
  // The largest file FileStorage accepts, in bytes.
  int64_t max_file_size = int64_t{1} << 30;
};

}  // namespace stagedb

#endif  // STAGEDB_OPTIONS_H_
