// Query: a read over one table's index range, built from Reader::Table and run by one of the
// terminal calls (Take, Collect, First, Unique, Paginate). Without WithIndex a query walks
// `by_creation_time`. Errors in building (unknown table or index, bad range) are reported by the
// terminal call. A Query is bound to the Reader that made it and must not outlive it.
#ifndef STAGEDB_QUERY_H_
#define STAGEDB_QUERY_H_

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "stagedb/document.h"
#include "stagedb/export.h"
#include "stagedb/index_range.h"

namespace stagedb {

class Reader;

enum class SortOrder { kAsc, kDesc };

struct PaginationOptions {
  size_t num_items = 0;               // at least 1 (unless end_cursor is given)
  std::optional<std::string> cursor;  // a continue_cursor from an earlier page of this query
  // Ends the page exactly where an earlier run of it ended (that run's continue_cursor),
  // however many documents that now is; num_items is then ignored. This is how a subscribed
  // page keeps its key range while documents come and go, so neighbouring pages never overlap
  // or leave a gap (as Convex's paginated queries do): subscribe to the first run's page with
  // its continue_cursor as end_cursor.
  std::optional<std::string> end_cursor;
};

struct PaginationResult {
  std::vector<Document> page;
  // Where the next page starts. Opaque and bound to this query (table, index, range, order): a
  // cursor from another query, or altered, is refused with InvalidArgument.
  std::string continue_cursor;
  bool is_done = false;
};

// What a query reads, independent of any Reader: subscriptions and named functions keep these.
struct QuerySpec {
  std::string table;
  std::string index = "by_creation_time";
  IndexRange range;
  SortOrder order = SortOrder::kAsc;
  std::function<bool(const Document&)> filter;  // empty: every document in range
  bool include_deleted = false;                 // see Query::IncludeDeleted
};

class STAGEDB_EXPORT Query {
 public:
  Query& WithIndex(std::string index, IndexRange range = {});
  Query& Order(SortOrder order);
  // Keeps only documents for which `predicate` is true. The filtered-out documents still count
  // as read (their index range is in the read set).
  Query& Filter(std::function<bool(const Document&)> predicate);
  // On a table with soft delete (schema "soft_delete"), also returns the deleted documents,
  // which queries skip otherwise.
  Query& IncludeDeleted();

  absl::StatusOr<std::vector<Document>> Take(size_t n);
  absl::StatusOr<std::vector<Document>> Collect();
  absl::StatusOr<std::optional<Document>> First();
  // The only document, none, or FailedPrecondition when more than one matches.
  absl::StatusOr<std::optional<Document>> Unique();
  absl::StatusOr<PaginationResult> Paginate(const PaginationOptions& options);

  const QuerySpec& spec() const { return spec_; }

 private:
  friend class Reader;
  Query(Reader* reader, std::string table) : reader_(reader) { spec_.table = std::move(table); }

  Reader* reader_;
  QuerySpec spec_;
};

}  // namespace stagedb

#endif  // STAGEDB_QUERY_H_
