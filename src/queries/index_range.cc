#include "stagedb/index_range.h"

namespace stagedb {

IndexRange& IndexRange::Eq(std::string field, Value value) {
  if (!bounds_.empty() && !eq_after_bound_.has_value()) eq_after_bound_ = field;
  equalities_.emplace_back(std::move(field), std::move(value));
  return *this;
}

IndexRange& IndexRange::AddBound(BoundKind kind, std::string& field, Value& value) {
  bounds_.push_back(IndexBound{kind, std::move(field), std::move(value)});
  return *this;
}

IndexRange Eq(std::string field, Value value) {
  return std::move(IndexRange().Eq(std::move(field), std::move(value)));
}
IndexRange Gt(std::string field, Value value) {
  return std::move(IndexRange().Gt(std::move(field), std::move(value)));
}
IndexRange Gte(std::string field, Value value) {
  return std::move(IndexRange().Gte(std::move(field), std::move(value)));
}
IndexRange Lt(std::string field, Value value) {
  return std::move(IndexRange().Lt(std::move(field), std::move(value)));
}
IndexRange Lte(std::string field, Value value) {
  return std::move(IndexRange().Lte(std::move(field), std::move(value)));
}

}  // namespace stagedb
