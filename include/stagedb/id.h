// DocumentId: the id of a document, unique across the database.
//
// An id carries the number of its table, a time-ordered part (milliseconds since the Unix epoch
// and a per-millisecond sequence), random bits and a Fletcher-16 checksum. Its text form is
// Crockford base32 (digits and lowercase letters without i, l, o, u) of those bytes:
//   varint(table number) | 8 bytes (ms << 16 | sequence), big-endian | 6 random bytes | checksum
// Within one table all ids have the same length, so text order equals byte order, and ids sort
// roughly by creation time (inserts append to the end of `by_id`). Parsing checks the alphabet,
// the length and the checksum, so a mistyped id is refused; the table is checked by the database.
#ifndef STAGEDB_ID_H_
#define STAGEDB_ID_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "stagedb/export.h"

namespace stagedb {

namespace internal {
struct DocumentIdAccess;
}

class STAGEDB_EXPORT DocumentId {
 public:
  DocumentId() = default;

  // Parses the text form; InvalidArgument naming the text when it is not a well-formed id.
  static absl::StatusOr<DocumentId> Parse(std::string_view text);

  // A new id for a table, unique in this process and (by its random bits) across processes.
  static DocumentId Generate(uint32_t table_number);

  const std::string& text() const { return text_; }
  uint32_t table_number() const { return table_number_; }
  bool empty() const { return text_.empty(); }

  friend bool operator==(const DocumentId&, const DocumentId&) = default;
  friend auto operator<=>(const DocumentId& a, const DocumentId& b) { return a.text_ <=> b.text_; }
  template <typename H>
  friend H AbslHashValue(H h, const DocumentId& id) {
    return H::combine(std::move(h), id.text_);
  }

 private:
  friend struct internal::DocumentIdAccess;
  DocumentId(std::string text, uint32_t table_number)
      : text_(std::move(text)), table_number_(table_number) {}

  std::string text_;
  uint32_t table_number_ = 0;
};

}  // namespace stagedb

#endif  // STAGEDB_ID_H_
