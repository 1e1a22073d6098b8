// File storage (file_storage.h): bytes stored with a content type come back whole, in order
// and streamed; size and SHA-256 are recorded; Options::max_file_size refuses a larger file and
// keeps nothing of it; deleted files are gone with their chunks; a file left half-written by a
// killed process is removed at the next Open; `_storage` is queryable and referable by id.
#include <openssl/sha.h>

#include <catch2/catch.hpp>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"
#include "transactions/transaction_state.h"

namespace {

using namespace stagedb;
using stagedb::testing::OpenOrFail;
using stagedb::testing::TempDir;
using Code = absl::StatusCode;

constexpr const char* kSchema = R"json({"tables": {
  "recordings": {"fields": {"title": "string",
                            "storageId": {"type": "id", "table": "_storage"}}}}})json";

constexpr size_t kChunk = size_t{256} << 10;

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string bytes(n, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  return bytes;
}

// OpenSSL's one-shot SHA-256, independent of the engine's incremental one.
std::string Sha256Hex(const std::string& bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

size_t Count(Database& db, std::string_view table) {
  absl::StatusOr<std::vector<Document>> rows =
      db.Query([&](Reader& r) { return r.Table(table).Collect(); });
  REQUIRE_OK(rows);
  return rows->size();
}

TEST_CASE("stored files come back whole with their size, hash and content type") {
  TempDir dir;
  // Small write limits: a large file spans many transactions.
  auto db = OpenOrFail(
      {.path = dir.Sub("db"), .schema_json = kSchema, .limits = {.max_bytes_written = 600 << 10}});
  FileStorage files = db->files();
  for (size_t size : {size_t{0}, size_t{3}, kChunk - 1, kChunk, kChunk + 1, 5 * kChunk + 12345}) {
    INFO("size " << size);
    const std::string bytes = size == 3 ? std::string("abc") : RandomBytes(size, size);
    absl::StatusOr<DocumentId> id = files.Store("application/octet-stream", bytes);
    REQUIRE_OK(id);
    absl::StatusOr<StoredFile> meta = files.Metadata(*id);
    REQUIRE_OK(meta);
    CHECK(meta->id == *id);
    CHECK(meta->size == static_cast<int64_t>(size));
    CHECK(meta->content_type == "application/octet-stream");
    CHECK(meta->sha256 == Sha256Hex(bytes));
    if (size == 3) {
      CHECK(meta->sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
    absl::StatusOr<std::string> back = files.ReadAll(*id);
    REQUIRE_OK(back);
    CHECK(*back == bytes);
  }
}

TEST_CASE("small transaction limits make smaller chunks, not failures") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"),
                        .schema_json = kSchema,
                        .limits = {.max_bytes_read = 100 << 10, .max_bytes_written = 64 << 10}});
  const std::string bytes = RandomBytes(300'000, 5);
  absl::StatusOr<DocumentId> id = db->files().Store("a/b", bytes);
  REQUIRE_OK(id);
  std::vector<size_t> sizes;
  REQUIRE_OK(db->files().Read(*id, [&](std::string_view chunk) {
    sizes.push_back(chunk.size());
    return absl::OkStatus();
  }));
  CHECK(sizes.front() == 32 << 10);
  CHECK(*db->files().ReadAll(*id) == bytes);
  REQUIRE_OK(db->files().Delete(*id));
  CHECK(Count(*db, kStorageChunksTable) == 0);
  CHECK(Count(*db, kStorageTable) == 0);
}

TEST_CASE("files stream in and out in chunks, in order") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  const std::string bytes = RandomBytes(3 * kChunk + 7, 42);
  std::istringstream in(bytes);
  absl::StatusOr<DocumentId> id = db->files().Store("video/webm", in);
  REQUIRE_OK(id);
  std::vector<size_t> sizes;
  std::string back;
  REQUIRE_OK(db->files().Read(*id, [&](std::string_view chunk) {
    sizes.push_back(chunk.size());
    back.append(chunk);
    return absl::OkStatus();
  }));
  CHECK(back == bytes);
  CHECK(sizes == std::vector<size_t>{kChunk, kChunk, kChunk, 7});
  CHECK(db->files().Metadata(*id)->sha256 == Sha256Hex(bytes));

  // A sink's error stops the read and is returned.
  int calls = 0;
  CHECK_ERROR(db->files().Read(*id,
                               [&](std::string_view) {
                                 ++calls;
                                 return absl::CancelledError("enough");
                               }),
              Code::kCancelled, "enough");
  CHECK(calls == 1);
}

TEST_CASE("a file over the maximum size is refused and nothing of it is kept") {
  TempDir dir;
  // A chunk per transaction: chunks are written before the stream passes the limit.
  auto db = OpenOrFail({.path = dir.Sub("db"),
                        .schema_json = kSchema,
                        .limits = {.max_bytes_written = 600 << 10},
                        .max_file_size = 300'000});
  CHECK_ERROR(db->files().Store("text/plain", std::string(300'001, 'x')), Code::kResourceExhausted,
              "300001 bytes", "Options::max_file_size", "300000");
  // Streamed, the size is found out only on the way: what was written is removed.
  std::istringstream in(RandomBytes(4 * kChunk, 7));
  CHECK_ERROR(db->files().Store("text/plain", in), Code::kResourceExhausted,
              "Options::max_file_size", "300000");
  CHECK(Count(*db, kStorageTable) == 0);
  CHECK(Count(*db, kStorageChunksTable) == 0);
  // At the limit is fine.
  REQUIRE_OK(db->files().Store("text/plain", std::string(300'000, 'x')));
  CHECK_ERROR(db->files().Store("", "abc"), Code::kInvalidArgument, "content type");
}

TEST_CASE("a deleted file is gone, chunks and all") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  FileStorage files = db->files();
  absl::StatusOr<DocumentId> kept = files.Store("a/b", RandomBytes(kChunk + 1, 1));
  absl::StatusOr<DocumentId> doomed = files.Store("a/b", RandomBytes(3 * kChunk, 2));
  REQUIRE_OK(kept);
  REQUIRE_OK(doomed);
  CHECK(Count(*db, kStorageChunksTable) == 5);
  REQUIRE_OK(files.Delete(*doomed));
  CHECK_ERROR(files.Metadata(*doomed), Code::kNotFound, "_storage", doomed->text());
  CHECK_ERROR(files.ReadAll(*doomed), Code::kNotFound, doomed->text());
  CHECK_ERROR(files.Delete(*doomed), Code::kNotFound, doomed->text());
  CHECK(Count(*db, kStorageTable) == 1);
  CHECK(Count(*db, kStorageChunksTable) == 2);
  CHECK(files.ReadAll(*kept)->size() == kChunk + 1);

  // An id of another table is no file.
  absl::StatusOr<DocumentId> recording = db->Mutate([&](Transaction& tx) {
    return tx.Insert("recordings", {{"title", "t"}, {"storageId", Value(*kept)}});
  });
  REQUIRE_OK(recording);
  CHECK_ERROR(files.Metadata(*recording), Code::kNotFound, "_storage");
  // Users cannot write the system tables themselves.
  CHECK_ERROR(db->Mutate([&](Transaction& tx) { return tx.Delete(*kept); }),
              Code::kPermissionDenied, "_storage", "FileStorage");
}

TEST_CASE("documents refer to files by id; _storage is queryable and live") {
  TempDir dir;
  auto db = OpenOrFail({.path = dir.Sub("db"), .schema_json = kSchema});
  std::mutex mu;
  std::vector<size_t> sizes_seen;
  absl::StatusOr<Subscription> sub = db->Subscribe(
      [](Reader& r) {
        return r.Table(kStorageTable).WithIndex("by_state", Eq("state", "ready")).Collect();
      },
      UpdateSlot([&](const QueryUpdate& update) {
        std::lock_guard<std::mutex> lock(mu);
        if (update.result.ok()) sizes_seen.push_back(update.result->as_array().size());
      }));
  REQUIRE_OK(sub);
  // The first update delivered before the store commits (updates coalesce).
  REQUIRE_OK(db->WaitForDelivery(db->LastCommitTimestamp(), testing::kHangGuard));
  absl::StatusOr<DocumentId> id = db->files().Store("audio/webm", "recording bytes");
  REQUIRE_OK(id);
  REQUIRE_OK(db->WaitForDelivery(db->LastCommitTimestamp(), testing::kHangGuard));
  {
    std::lock_guard<std::mutex> lock(mu);
    REQUIRE(!sizes_seen.empty());
    CHECK(sizes_seen.front() == 0);
    CHECK(sizes_seen.back() == 1);
  }

  // A storage id validates as id(_storage); another table's id does not.
  REQUIRE_OK(db->Mutate([&](Transaction& tx) {
    return tx.Insert("recordings", {{"title", "ok"}, {"storageId", Value(*id)}});
  }));
  absl::StatusOr<DocumentId> recording = db->Mutate([&](Transaction& tx) {
    return tx.Insert("recordings", {{"title", "r"}, {"storageId", Value(*id)}});
  });
  REQUIRE_OK(recording);
  CHECK_ERROR(db->Mutate([&](Transaction& tx) {
    return tx.Insert("recordings", {{"title", "bad"}, {"storageId", Value(*recording)}});
  }),
              Code::kInvalidArgument, "storageId", "_storage");
}

TEST_CASE("a file left half-written by a killed process is removed at the next Open") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  DocumentId ready;
  {
    auto db = OpenOrFail({.path = path, .schema_json = kSchema, .run_scheduler = false});
    absl::StatusOr<DocumentId> stored = db->files().Store("a/b", "complete");
    REQUIRE_OK(stored);
    ready = *stored;
    // What a process killed in the middle of Store leaves behind.
    REQUIRE_OK(db->Mutate([](Transaction& tx) -> absl::Status {
      internal::SystemWriteScope system(tx);
      absl::StatusOr<DocumentId> file = tx.Insert(
          kStorageTable,
          {{"contentType", "a/b"}, {"size", int64_t{0}}, {"sha256", ""}, {"state", "uploading"}});
      if (!file.ok()) return file.status();
      return tx
          .Insert(kStorageChunksTable,
                  {{"storageId", Value(*file)}, {"index", int64_t{0}}, {"data", Bytes{"xy"}}})
          .status();
    }));
    CHECK(Count(*db, kStorageTable) == 2);
  }
  auto db = OpenOrFail({.path = path, .schema_json = kSchema});
  // The database's thread removes it.
  testing::WaitFor([&] { return Count(*db, kStorageTable) == 1; },
                   "the half-written file to be removed",
                   [&] { return std::to_string(Count(*db, kStorageTable)) + " files"; });
  CHECK(Count(*db, kStorageChunksTable) == 1);
  CHECK(*db->files().ReadAll(ready) == "complete");
}

}  // namespace
