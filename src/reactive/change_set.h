// Change sets between two results of a subscribed query, by document `_id`.
#ifndef STAGEDB_SRC_REACTIVE_CHANGE_SET_H_
#define STAGEDB_SRC_REACTIVE_CHANGE_SET_H_

#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "stagedb/subscription.h"
#include "stagedb/value.h"

namespace stagedb::internal {

// The documents of a document result, in order: an array of objects that each have a string
// `_id`, one such object, null (none), or a page ({"page": [...], ...}: its page). nullopt for
// any other value.
std::optional<std::vector<const Value*>> DocumentList(const Value& result);

// The document a result holds (an object with a string `_id`), as a Document.
Document ToDocument(const Value& object);

// The change from `before` (the previous successful result delivered; null pointer: none yet) to
// `after`. An error, or a result that is not made of documents, has no change set.
ChangeSet DiffResults(const Value* before, const absl::StatusOr<Value>& after);

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_REACTIVE_CHANGE_SET_H_
