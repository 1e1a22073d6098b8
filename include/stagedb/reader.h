// Reader: reads one consistent snapshot of the database (guarantee 4). Handed to the function
// given to Database::Query, and (as Transaction) to Database::Mutate, where it also sees the
// transaction's own writes. Every read is recorded in read_set(). Not thread-safe; valid only
// inside the call that handed it out.
#ifndef STAGEDB_READER_H_
#define STAGEDB_READER_H_

#include <optional>
#include <string_view>

#include "absl/status/statusor.h"
#include "stagedb/document.h"
#include "stagedb/export.h"
#include "stagedb/id.h"
#include "stagedb/options.h"
#include "stagedb/query.h"
#include "stagedb/read_set.h"

namespace stagedb {

namespace internal {
class TransactionState;
struct ReaderAccess;
}  // namespace internal

class STAGEDB_EXPORT Reader {
 public:
  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  // The document, or nullopt when it does not exist. InvalidArgument when the id's table is
  // not in the schema.
  absl::StatusOr<std::optional<Document>> Get(const DocumentId& id);
  // Parses `id_text` first; a malformed id is InvalidArgument.
  absl::StatusOr<std::optional<Document>> Get(std::string_view id_text);
  // As Get, and a soft-deleted document (schema "soft_delete") is returned too; Get treats it
  // as missing.
  absl::StatusOr<std::optional<Document>> GetIncludingDeleted(const DocumentId& id);

  Query Table(std::string_view table) { return Query(this, std::string(table)); }

  // Runs a query described by `spec` with at most `limit` results (0: no limit).
  absl::StatusOr<std::vector<Document>> Run(const QuerySpec& spec, size_t limit = 0);

  // The commit timestamp of the snapshot this reader sees.
  Timestamp timestamp() const;
  const ReadSet& read_set() const;

 protected:
  explicit Reader(internal::TransactionState* state) : state_(state) {}
  ~Reader() = default;

  internal::TransactionState* state_;

 private:
  friend class Query;
  friend class internal::TransactionState;
  friend struct internal::ReaderAccess;
};

}  // namespace stagedb

#endif  // STAGEDB_READER_H_
