#include "reactive/change_set.h"

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"

namespace stagedb::internal {
namespace {

bool IsDocument(const Value& value) { return value.is_object() && value[kIdField].is_string(); }

// Marks the entries of a longest subsequence whose old positions increase: those documents keep
// their relative order, so only the others moved. O(n log n) (patience sorting).
std::vector<bool> InLongestIncreasingRun(const std::vector<std::pair<size_t, size_t>>& positions) {
  std::vector<size_t> tails;                               // index of each pile's top entry
  std::vector<size_t> parent(positions.size(), SIZE_MAX);  // previous entry of its run
  for (size_t k = 0; k < positions.size(); ++k) {
    auto pile = std::lower_bound(
        tails.begin(), tails.end(), positions[k].second,
        [&](size_t entry, size_t old_position) { return positions[entry].second < old_position; });
    if (pile != tails.begin()) parent[k] = *(pile - 1);
    if (pile == tails.end()) {
      tails.push_back(k);
    } else {
      *pile = k;
    }
  }
  std::vector<bool> in_run(positions.size(), false);
  for (size_t k = tails.empty() ? SIZE_MAX : tails.back(); k != SIZE_MAX; k = parent[k]) {
    in_run[k] = true;
  }
  return in_run;
}

}  // namespace

std::optional<std::vector<const Value*>> DocumentList(const Value& result) {
  std::vector<const Value*> documents;
  if (result.is_null()) return documents;
  if (IsDocument(result)) {
    documents.push_back(&result);
    return documents;
  }
  if (result.is_object() && result["page"].is_array()) return DocumentList(result["page"]);
  if (!result.is_array()) return std::nullopt;
  documents.reserve(result.as_array().size());
  for (const Value& element : result.as_array()) {
    if (!IsDocument(element)) return std::nullopt;
    documents.push_back(&element);
  }
  return documents;
}

Document ToDocument(const Value& object) {
  // Ids in results come from the database, but a query function may have built the object
  // itself: an unparsable `_id` still makes a Document, with an empty id.
  absl::StatusOr<DocumentId> id = DocumentId::Parse(object[kIdField].as_string());
  return Document(id.ok() ? *std::move(id) : DocumentId(), object.as_object());
}

ChangeSet DiffResults(const Value* before, const absl::StatusOr<Value>& after) {
  ChangeSet changes;
  std::optional<std::vector<const Value*>> next;
  if (after.ok()) next = DocumentList(*after);
  if (!next) {
    changes.is_document_result = false;
    return changes;
  }
  std::vector<const Value*> previous;
  if (before != nullptr) previous = DocumentList(*before).value_or(std::vector<const Value*>{});

  absl::flat_hash_map<std::string_view, size_t> previous_position;
  previous_position.reserve(previous.size());
  for (size_t i = 0; i < previous.size(); ++i) {
    previous_position.emplace((*previous[i])[kIdField].as_string(), i);
  }
  // Kept documents, in new order, with their old positions.
  std::vector<bool> kept(previous.size(), false);
  std::vector<std::pair<size_t, size_t>> kept_positions;  // (new, old)
  for (size_t i = 0; i < next->size(); ++i) {
    const Value& document = *(*next)[i];
    auto found = previous_position.find(document[kIdField].as_string());
    if (found == previous_position.end()) {
      changes.added.push_back({.new_position = i, .document = ToDocument(document)});
      continue;
    }
    kept[found->second] = true;
    kept_positions.emplace_back(i, found->second);
  }
  const std::vector<bool> stays = InLongestIncreasingRun(kept_positions);
  for (size_t k = 0; k < kept_positions.size(); ++k) {
    const auto [new_position, old_position] = kept_positions[k];
    const Value& document = *(*next)[new_position];
    if (!stays[k] || *previous[old_position] != document) {
      changes.changed.push_back({.old_position = old_position,
                                 .new_position = new_position,
                                 .moved = !stays[k],
                                 .document = ToDocument(document)});
    }
  }
  for (size_t i = 0; i < previous.size(); ++i) {
    if (!kept[i])
      changes.removed.push_back({.old_position = i, .document = ToDocument(*previous[i])});
  }
  return changes;
}

}  // namespace stagedb::internal
