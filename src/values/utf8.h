#ifndef STAGEDB_SRC_VALUES_UTF8_H_
#define STAGEDB_SRC_VALUES_UTF8_H_

#include <cstddef>
#include <string_view>

namespace stagedb::internal {

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or code points past
// U+10FFFF).
bool IsValidUtf8(std::string_view text);

// The length (1 to 4) of the well-formed UTF-8 sequence starting at text[pos], or 0 when the
// bytes there are not one (or pos is past the end).
size_t Utf8SequenceLength(std::string_view text, size_t pos);

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_VALUES_UTF8_H_
