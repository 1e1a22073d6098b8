// ReadSet: exactly what a transaction or query depended on, as half-open key intervals
// [start, end) per index. Keys are index keys without the index's own prefix: the key-codec
// encoding (key_codec.h) of the index fields, then `_creationTime` and `_id` for user indexes
// (`_id` alone for `by_id`). A Get by id is the one-key interval of that id on `by_id`, recorded
// even when the document is missing; a scan records only the part of its range it consumed.
#ifndef STAGEDB_READ_SET_H_
#define STAGEDB_READ_SET_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "stagedb/export.h"

namespace stagedb {

struct ReadRange {
  uint32_t index_id = 0;   // stable numeric id of the index
  std::string_view table;  // names, valid while the database is open
  std::string_view index;
  std::string start;  // inclusive
  std::string end;    // exclusive
};

class STAGEDB_EXPORT ReadSet {
 public:
  const std::vector<ReadRange>& ranges() const { return ranges_; }
  bool empty() const { return ranges_.empty(); }
  size_t size() const { return ranges_.size(); }
  void Add(ReadRange range) { ranges_.push_back(std::move(range)); }
  ReadRange& last() { return ranges_.back(); }
  // Every range, decoded, one per line: `table.index [start, end)`.
  std::string DebugString() const;

 private:
  std::vector<ReadRange> ranges_;
};

}  // namespace stagedb

#endif  // STAGEDB_READ_SET_H_
