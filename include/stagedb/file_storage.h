// FileStorage: files (bytes with a content type) stored in the database, as Convex's file
// storage.
//
//   stagedb::FileStorage files = db->files();
//   absl::StatusOr<stagedb::DocumentId> id = files.Store("audio/webm", bytes);
//   absl::StatusOr<stagedb::StoredFile> meta = files.Metadata(*id);   // size, sha256, ...
//   files.Read(*id, [&](std::string_view chunk) { out.write(...); return absl::OkStatus(); });
//
// Each file is a document of the system table `_storage` (kStorageTable; fields contentType,
// size (int64), sha256 (lowercase hex), state): a document's field {"type": "id", "table":
// "_storage"} refers to one, and queries and subscriptions read `_storage` like any table (only
// "ready" files are complete). The bytes are kept in chunks of 256 KiB in `_storage_chunks`.
// A file is written in several transactions (a large file does not fit one; see
// TransactionLimits) and becomes visible, "ready", with the last; a file left half-written by a
// killed process is removed at the next Open (with Options::run_scheduler). Files are
// immutable: store a new one and delete the old. At most Options::max_file_size bytes each.
#ifndef STAGEDB_FILE_STORAGE_H_
#define STAGEDB_FILE_STORAGE_H_

#include <cstdint>
#include <istream>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stagedb/export.h"
#include "stagedb/id.h"

namespace stagedb {

class Database;
namespace internal {
class JobRunner;
}  // namespace internal

inline constexpr std::string_view kStorageTable = "_storage";
inline constexpr std::string_view kStorageChunksTable = "_storage_chunks";

struct StoredFile {
  DocumentId id;
  std::string content_type;
  int64_t size = 0;
  std::string sha256;  // lowercase hex of the SHA-256 of the bytes
  double creation_time = 0;
};

// Obtained from Database::files() or ActionContext::storage(); cheap to copy. Thread-safe.
class STAGEDB_EXPORT FileStorage {
 public:
  // Stores `bytes` (or everything `in` yields, read in chunks: memory stays bounded) as a file
  // of `content_type`; returns its id once it is ready. ResourceExhausted naming the size and
  // Options::max_file_size when the file is larger (nothing is kept); InvalidArgument for an
  // empty content type; DataLoss when `in` fails.
  absl::StatusOr<DocumentId> Store(std::string_view content_type, std::string_view bytes);
  absl::StatusOr<DocumentId> Store(std::string_view content_type, std::istream& in);

  // A ready file's metadata. NotFound naming the id when there is no such (ready) file.
  absl::StatusOr<StoredFile> Metadata(const DocumentId& id);
  // Streams a ready file's bytes to `sink`, chunk by chunk in order (each chunk read in its own
  // snapshot: memory stays bounded). NotFound as Metadata, also when the file is deleted while
  // it is read; an error from `sink` stops the read and is returned.
  absl::Status Read(const DocumentId& id, absl::FunctionRef<absl::Status(std::string_view)> sink);
  // The whole file in memory.
  absl::StatusOr<std::string> ReadAll(const DocumentId& id);
  // Deletes a file: it is gone (NotFound) from the first transaction on, its chunks follow.
  // NotFound when there is no such file.
  absl::Status Delete(const DocumentId& id);

 private:
  friend class Database;
  friend class internal::JobRunner;
  explicit FileStorage(Database& db) : db_(&db) {}
  // Stores what `read(buffer, capacity)` yields (how many bytes it put in `buffer`; 0 at the
  // end): both Store overloads.
  absl::StatusOr<DocumentId> StoreFrom(
      std::string_view content_type,
      absl::FunctionRef<absl::StatusOr<size_t>(char* buffer, size_t capacity)> read);
  // Removes the files a killed process left "uploading" or "deleting" (at Open).
  absl::Status RemoveIncomplete();
  // Removes file `id`'s chunks, then its document, a transaction per batch.
  absl::Status Remove(const DocumentId& id);

  Database* db_;
};

}  // namespace stagedb

#endif  // STAGEDB_FILE_STORAGE_H_
