// The public Reader and Transaction: thin forwards to TransactionState.
#include "stagedb/transaction.h"

#include "stagedb/reader.h"
#include "transactions/transaction_state.h"
#include "util/absl_view.h"

namespace stagedb {

absl::StatusOr<std::optional<Document>> Reader::Get(const DocumentId& id) {
  return state_->Get(id);
}

absl::StatusOr<std::optional<Document>> Reader::GetIncludingDeleted(const DocumentId& id) {
  return state_->Get(id, /*include_deleted=*/true);
}

absl::StatusOr<std::optional<Document>> Reader::Get(std::string_view id_text) {
  absl::StatusOr<DocumentId> id = DocumentId::Parse(id_text);
  if (!id.ok()) return id.status();
  return state_->Get(*id);
}

absl::StatusOr<std::vector<Document>> Reader::Run(const QuerySpec& spec, size_t limit) {
  return state_->Run(spec, limit);
}

Timestamp Reader::timestamp() const { return state_->timestamp(); }
const ReadSet& Reader::read_set() const { return state_->read_set(); }

absl::StatusOr<DocumentId> Transaction::Insert(std::string_view table, Object fields) {
  return state_->Insert(table, std::move(fields));
}
absl::Status Transaction::Patch(const DocumentId& id, Object fields) {
  return state_->Patch(id, std::move(fields));
}
absl::Status Transaction::Replace(const DocumentId& id, Object fields) {
  return state_->Replace(id, std::move(fields));
}
absl::Status Transaction::Delete(const DocumentId& id) { return state_->Delete(id); }

absl::Status Transaction::Purge(const DocumentId& id) { return state_->Delete(id, /*purge=*/true); }

}  // namespace stagedb
