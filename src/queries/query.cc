#include "stagedb/query.h"

#include "absl/strings/str_format.h"
#include "stagedb/reader.h"
#include "transactions/transaction_state.h"

namespace stagedb {

Query& Query::WithIndex(std::string index, IndexRange range) {
  spec_.index = std::move(index);
  spec_.range = std::move(range);
  return *this;
}

Query& Query::Order(SortOrder order) {
  spec_.order = order;
  return *this;
}

Query& Query::IncludeDeleted() {
  spec_.include_deleted = true;
  return *this;
}

Query& Query::Filter(std::function<bool(const Document&)> predicate) {
  if (spec_.filter) {
    // Filters chain: a document must pass every one.
    spec_.filter = [first = std::move(spec_.filter), second = std::move(predicate)](
                       const Document& document) { return first(document) && second(document); };
  } else {
    spec_.filter = std::move(predicate);
  }
  return *this;
}

absl::StatusOr<std::vector<Document>> Query::Take(size_t n) {
  if (n == 0) return std::vector<Document>{};
  return reader_->Run(spec_, n);
}

absl::StatusOr<std::vector<Document>> Query::Collect() { return reader_->Run(spec_, 0); }

absl::StatusOr<std::optional<Document>> Query::First() {
  absl::StatusOr<std::vector<Document>> found = reader_->Run(spec_, 1);
  if (!found.ok()) return found.status();
  if (found->empty()) return std::nullopt;
  return std::move(found->front());
}

absl::StatusOr<std::optional<Document>> Query::Unique() {
  absl::StatusOr<std::vector<Document>> found = reader_->Run(spec_, 2);
  if (!found.ok()) return found.status();
  if (found->empty()) return std::nullopt;
  if (found->size() > 1) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "Unique() on table \"%s\" index \"%s\": more than one document matches (\"%s\" and "
        "\"%s\")",
        spec_.table, spec_.index, (*found)[0].id().text(), (*found)[1].id().text()));
  }
  return std::move(found->front());
}

absl::StatusOr<PaginationResult> Query::Paginate(const PaginationOptions& options) {
  return reader_->state_->Paginate(spec_, options);
}

}  // namespace stagedb
