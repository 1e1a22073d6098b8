// Transaction: the Reader of a mutation, plus writes. Writes are validated against the schema
// when made (a failed write returns its error and changes nothing) and buffered; reads see them.
// They reach the database only when the mutation's function returns OK, all at once.
//
// Errors: a value the schema refuses, a bad field name or an oversized document is
// InvalidArgument naming table, field and value (`table "tasks": field "priority": expected
// int64, got float64 5.0`); an unknown table is InvalidArgument; a missing document NotFound; a
// unique-index duplicate AlreadyExists; a TransactionLimits limit ResourceExhausted.
#ifndef STAGEDB_TRANSACTION_H_
#define STAGEDB_TRANSACTION_H_

#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stagedb/export.h"
#include "stagedb/id.h"
#include "stagedb/reader.h"
#include "stagedb/value.h"

namespace stagedb {

class STAGEDB_EXPORT Transaction : public Reader {
 public:
  // Inserts a document (user fields only; `_id` and `_creationTime` are assigned) and returns
  // its id. Unique indexes are checked here: a duplicate is AlreadyExists naming index and value.
  // A field given Undefined{} is left out (as in Convex).
  absl::StatusOr<DocumentId> Insert(std::string_view table, Object fields);
  // Shallow merge of top-level fields: each given field is set; a field given Undefined{} is
  // removed.
  absl::Status Patch(const DocumentId& id, Object fields);
  // Replaces all user fields (Undefined{} ones left out); system fields stay.
  // Patch and Replace accept `_id` and `_creationTime` when they hold the document's own values,
  // so a document read can be written back; other values are InvalidArgument.
  absl::Status Replace(const DocumentId& id, Object fields);
  // Deletes the document; NotFound when it does not exist. On a table with soft delete (schema
  // "soft_delete") it only sets the deletion time.
  absl::Status Delete(const DocumentId& id);
  // Removes the document for good, on a soft-delete table too, deleted or not (retention, an
  // erasure request); NotFound when it does not exist. Elsewhere the same as Delete.
  absl::Status Purge(const DocumentId& id);

 private:
  friend class internal::TransactionState;
  explicit Transaction(internal::TransactionState* state) : Reader(state) {}
};

}  // namespace stagedb

#endif  // STAGEDB_TRANSACTION_H_
