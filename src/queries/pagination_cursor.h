// Pagination cursors: where the next page of a query starts, as opaque URL-safe text.
// Layout before base64: version byte | flags (bit 0: the range is exhausted) | the last key
// returned | HMAC-SHA256 (first 16 bytes) over all of that and the query's fingerprint, keyed by
// the database's secret. So a cursor only works for the query (and database) that made it, and
// an altered one is refused.
#ifndef STAGEDB_SRC_QUERIES_PAGINATION_CURSOR_H_
#define STAGEDB_SRC_QUERIES_PAGINATION_CURSOR_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace stagedb::internal {

struct CursorPosition {
  bool done = false;
  std::string key;  // storage key of the last document returned (empty when done)
};

std::string EncodeCursor(const CursorPosition& position, std::string_view fingerprint,
                         std::string_view secret);
// InvalidArgument when the text is not a cursor of this query and database.
absl::StatusOr<CursorPosition> DecodeCursor(std::string_view text, std::string_view fingerprint,
                                            std::string_view secret);

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_QUERIES_PAGINATION_CURSOR_H_
