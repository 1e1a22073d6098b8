// IndexRange: which part of an index a query reads. Equality on a prefix of the index's fields,
// in the index's order, then at most one lower bound (Gt or Gte) and one upper bound (Lt or Lte)
// on the next field. Built by chaining: Eq("sessionId", sid).Gte("createdAt", t0).Lt("createdAt",
// t1) The range is checked against the index when the query runs: a field out of order, a bound
// before an equality, or two bounds of one kind is an InvalidArgument naming index and field.
#ifndef STAGEDB_INDEX_RANGE_H_
#define STAGEDB_INDEX_RANGE_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "stagedb/export.h"
#include "stagedb/value.h"

namespace stagedb {

enum class BoundKind { kGt, kGte, kLt, kLte };

struct IndexBound {
  BoundKind kind;
  std::string field;
  Value value;
};

class STAGEDB_EXPORT IndexRange {
 public:
  IndexRange& Eq(std::string field, Value value);
  IndexRange& Gt(std::string field, Value value) { return AddBound(BoundKind::kGt, field, value); }
  IndexRange& Gte(std::string field, Value value) {
    return AddBound(BoundKind::kGte, field, value);
  }
  IndexRange& Lt(std::string field, Value value) { return AddBound(BoundKind::kLt, field, value); }
  IndexRange& Lte(std::string field, Value value) {
    return AddBound(BoundKind::kLte, field, value);
  }

  const std::vector<std::pair<std::string, Value>>& equalities() const { return equalities_; }
  const std::vector<IndexBound>& bounds() const { return bounds_; }
  // The field of the first Eq that followed a bound, if any (refused when the query runs).
  const std::optional<std::string>& eq_after_bound() const { return eq_after_bound_; }

 private:
  IndexRange& AddBound(BoundKind kind, std::string& field, Value& value);

  std::vector<std::pair<std::string, Value>> equalities_;
  std::vector<IndexBound> bounds_;  // in the order given; checked when the query runs
  std::optional<std::string> eq_after_bound_;
};

// Starting points for a chain.
STAGEDB_EXPORT IndexRange Eq(std::string field, Value value);
STAGEDB_EXPORT IndexRange Gt(std::string field, Value value);
STAGEDB_EXPORT IndexRange Gte(std::string field, Value value);
STAGEDB_EXPORT IndexRange Lt(std::string field, Value value);
STAGEDB_EXPORT IndexRange Lte(std::string field, Value value);

}  // namespace stagedb

#endif  // STAGEDB_INDEX_RANGE_H_
