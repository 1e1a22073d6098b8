#include "stagedb/file_storage.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "functions/sha256.h"
#include "stagedb/database.h"
#include "transactions/transaction_state.h"
#include "util/absl_view.h"

namespace stagedb {
namespace {

// Chunks stay well under the document size limit, and a read or a write of one is a single
// LMDB overflow run.
constexpr size_t kMaxChunkBytes = size_t{256} << 10;
constexpr std::string_view kReady = "ready";

// The chunk size: 256 KiB, or less under small TransactionLimits, so that one transaction can
// always write, read and delete a chunk. (Read does not depend on it: it reads chunks in order
// until it has the file's size.)
size_t ChunkBytes(const TransactionLimits& limits) {
  return std::clamp<size_t>(std::min(limits.max_bytes_written, limits.max_bytes_read) / 2, 1024,
                            kMaxChunkBytes);
}

// How many chunks of `chunk` bytes one transaction may write or read under `limit` bytes
// (between 1 and 16: a transaction of 4 MiB amortizes its commit well enough).
size_t ChunksPerTransaction(size_t limit, size_t chunk) {
  return std::clamp<size_t>(limit / (2 * chunk), 1, 16);
}

absl::Status NoSuchFile(const DocumentId& id) {
  return absl::NotFoundError(absl::StrFormat("table \"%s\": no stored file \"%s\"",
                                             internal::AbslView(kStorageTable), id.text()));
}

// The file's document when `id` names a ready file of `_storage`.
absl::StatusOr<Document> ReadyFile(Reader& reader, const DocumentId& id) {
  if (!internal::IsIdOf(reader, id, kStorageTable)) return NoSuchFile(id);
  absl::StatusOr<std::optional<Document>> file = reader.Get(id);
  if (!file.ok()) return file.status();
  if (!file->has_value() || (**file)["state"].as_string() != kReady) return NoSuchFile(id);
  return **std::move(file);
}

IndexRange ChunksOf(const DocumentId& id) { return Eq("storageId", Value(id)); }

}  // namespace

absl::StatusOr<DocumentId> FileStorage::Store(std::string_view content_type,
                                              std::string_view bytes) {
  // Known up front: refused before anything is written.
  const int64_t max_size = db_->options().max_file_size;
  if (static_cast<int64_t>(bytes.size()) > max_size) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "file storage: a file of %d bytes is over Options::max_file_size (%d bytes)", bytes.size(),
        max_size));
  }
  size_t offset = 0;
  return StoreFrom(content_type, [&](char* buffer, size_t capacity) -> absl::StatusOr<size_t> {
    const size_t n = std::min(capacity, bytes.size() - offset);
    std::memcpy(buffer, bytes.data() + offset, n);
    offset += n;
    return n;
  });
}

absl::StatusOr<DocumentId> FileStorage::Store(std::string_view content_type, std::istream& in) {
  return StoreFrom(content_type, [&](char* buffer, size_t capacity) -> absl::StatusOr<size_t> {
    in.read(buffer, static_cast<std::streamsize>(capacity));
    if (in.bad()) return absl::DataLossError("file storage: the input stream failed");
    return static_cast<size_t>(in.gcount());
  });
}

absl::StatusOr<DocumentId> FileStorage::StoreFrom(
    std::string_view content_type,
    absl::FunctionRef<absl::StatusOr<size_t>(char* buffer, size_t capacity)> read) {
  if (content_type.empty()) {
    return absl::InvalidArgumentError("file storage: the content type is empty");
  }
  const Options& options = db_->options();
  // The file's document comes first ("uploading": invisible to Metadata and Read), so its
  // chunks can refer to it.
  absl::StatusOr<DocumentId> id = db_->Mutate([&](Transaction& tx) {
    internal::SystemWriteScope system(tx);
    return tx.Insert(kStorageTable, Object{{"contentType", Value(content_type)},
                                           {"size", Value(int64_t{0})},
                                           {"sha256", Value("")},
                                           {"state", Value("uploading")}});
  });
  if (!id.ok()) return id.status();
  auto abandon = [&](absl::Status why) {
    (void)Remove(*id);  // a leftover is removed at the next Open
    return why;
  };

  internal::Sha256 sha256;
  int64_t size = 0;
  int64_t index = 0;
  std::vector<std::string> batch;
  const size_t chunk_bytes = ChunkBytes(options.limits);
  const size_t batch_chunks = ChunksPerTransaction(options.limits.max_bytes_written, chunk_bytes);
  auto flush = [&]() -> absl::Status {
    absl::Status s = db_->Mutate([&](Transaction& tx) -> absl::Status {
      internal::SystemWriteScope system(tx);
      int64_t chunk_index = index - static_cast<int64_t>(batch.size());
      for (const std::string& chunk : batch) {
        absl::StatusOr<DocumentId> written =
            tx.Insert(kStorageChunksTable, Object{{"storageId", Value(*id)},
                                                  {"index", Value(chunk_index++)},
                                                  {"data", Value(Bytes{chunk})}});
        if (!written.ok()) return written.status();
      }
      return absl::OkStatus();
    });
    batch.clear();
    return s;
  };
  std::string buffer(chunk_bytes, '\0');
  for (;;) {
    // Fill a whole chunk (a stream may yield less at a time).
    size_t filled = 0;
    while (filled < chunk_bytes) {
      absl::StatusOr<size_t> n = read(buffer.data() + filled, chunk_bytes - filled);
      if (!n.ok()) return abandon(n.status());
      if (*n == 0) break;
      filled += *n;
    }
    if (filled == 0) break;
    size += static_cast<int64_t>(filled);
    if (size > options.max_file_size) {
      return abandon(absl::ResourceExhaustedError(absl::StrFormat(
          "file storage: the file is over Options::max_file_size (%d bytes); %d bytes read so far",
          options.max_file_size, size)));
    }
    sha256.Update(std::string_view(buffer.data(), filled));
    batch.emplace_back(buffer.data(), filled);
    ++index;
    if (batch.size() == batch_chunks) {
      if (absl::Status s = flush(); !s.ok()) return abandon(s);
    }
    if (filled < chunk_bytes) break;
  }
  if (!batch.empty()) {
    if (absl::Status s = flush(); !s.ok()) return abandon(s);
  }
  absl::Status ready = db_->Mutate([&](Transaction& tx) {
    internal::SystemWriteScope system(tx);
    return tx.Patch(
        *id,
        Object{{"size", Value(size)}, {"sha256", Value(sha256.Hex())}, {"state", Value(kReady)}});
  });
  if (!ready.ok()) return abandon(ready);
  return id;
}

absl::StatusOr<StoredFile> FileStorage::Metadata(const DocumentId& id) {
  return db_->Query([&](Reader& reader) -> absl::StatusOr<StoredFile> {
    absl::StatusOr<Document> file = ReadyFile(reader, id);
    if (!file.ok()) return file.status();
    return StoredFile{.id = id,
                      .content_type = (*file)["contentType"].as_string(),
                      .size = (*file)["size"].as_int64(),
                      .sha256 = (*file)["sha256"].as_string(),
                      .creation_time = file->creation_time()};
  });
}

absl::Status FileStorage::Read(const DocumentId& id,
                               absl::FunctionRef<absl::Status(std::string_view)> sink) {
  absl::StatusOr<StoredFile> file = Metadata(id);
  if (!file.ok()) return file.status();
  int64_t read_bytes = 0;
  for (int64_t index = 0; read_bytes < file->size; ++index) {
    // Each chunk in a snapshot of its own, with the file still there (not being deleted).
    absl::StatusOr<std::string> chunk =
        db_->Query([&](Reader& reader) -> absl::StatusOr<std::string> {
          if (absl::StatusOr<Document> ready = ReadyFile(reader, id); !ready.ok()) {
            return ready.status();
          }
          absl::StatusOr<std::optional<Document>> found =
              reader.Table(kStorageChunksTable)
                  .WithIndex("by_storage", ChunksOf(id).Eq("index", Value(index)))
                  .First();
          if (!found.ok()) return found.status();
          if (!found->has_value()) {
            return absl::DataLossError(
                absl::StrFormat("file storage: file \"%s\" has no chunk %d", id.text(), index));
          }
          return (**found)["data"].as_bytes().data;
        });
    if (!chunk.ok()) return chunk.status();
    if (chunk->empty()) {
      return absl::DataLossError(
          absl::StrFormat("file storage: file \"%s\" has an empty chunk %d", id.text(), index));
    }
    read_bytes += static_cast<int64_t>(chunk->size());
    if (absl::Status s = sink(*chunk); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> FileStorage::ReadAll(const DocumentId& id) {
  std::string bytes;
  absl::Status status = Read(id, [&bytes](std::string_view chunk) {
    bytes.append(chunk);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return bytes;
}

absl::Status FileStorage::Delete(const DocumentId& id) {
  // Gone for readers at once; the chunks follow.
  absl::Status marked = db_->Mutate([&](Transaction& tx) -> absl::Status {
    if (absl::StatusOr<Document> file = ReadyFile(tx, id); !file.ok()) return file.status();
    internal::SystemWriteScope system(tx);
    return tx.Patch(id, Object{{"state", Value("deleting")}});
  });
  if (!marked.ok()) return marked;
  return Remove(id);
}

absl::Status FileStorage::Remove(const DocumentId& id) {
  const TransactionLimits& limits = db_->options().limits;
  const size_t batch = ChunksPerTransaction(limits.max_bytes_read, ChunkBytes(limits));
  for (;;) {
    absl::StatusOr<size_t> removed = db_->Mutate([&](Transaction& tx) -> absl::StatusOr<size_t> {
      absl::StatusOr<std::vector<Document>> chunks =
          tx.Table(kStorageChunksTable).WithIndex("by_storage", ChunksOf(id)).Take(batch);
      if (!chunks.ok()) return chunks.status();
      internal::SystemWriteScope system(tx);
      for (const Document& chunk : *chunks) {
        if (absl::Status s = tx.Delete(chunk.id()); !s.ok()) return s;
      }
      if (chunks->size() < batch) {
        if (absl::Status s = tx.Delete(id); !s.ok() && !absl::IsNotFound(s)) return s;
      }
      return chunks->size();
    });
    if (!removed.ok()) return removed.status();
    if (*removed < batch) return absl::OkStatus();
  }
}

absl::Status FileStorage::RemoveIncomplete() {
  absl::Status first_failure;  // the rest are still tried
  for (std::string_view state : {"uploading", "deleting"}) {
    absl::StatusOr<std::vector<Document>> files = db_->Query([&](Reader& reader) {
      return reader.Table(kStorageTable).WithIndex("by_state", Eq("state", Value(state))).Collect();
    });
    if (!files.ok()) return files.status();
    for (const Document& file : *files) {
      if (absl::Status s = Remove(file.id()); !s.ok() && first_failure.ok()) first_failure = s;
    }
  }
  return first_failure;
}

}  // namespace stagedb
