#include "values/utf8.h"

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace stagedb::internal {

size_t Utf8SequenceLength(std::string_view text, size_t pos) {
  const size_t size = text.size();
  if (pos >= size) return 0;
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t b0 = byte(pos);
  if (b0 < 0x80) return 1;
  // The lead byte fixes the length and, for the second byte, a narrower range than 80..BF that
  // excludes overlong forms (E0, F0), surrogates (ED) and code points past U+10FFFF (F4)
  // (Unicode 15, table 3-7).
  size_t length;
  uint8_t lo = 0x80;
  uint8_t hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    length = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    length = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    length = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;  // a continuation byte, C0/C1 (always overlong) or F5..FF
  }
  if (size - pos < length) return 0;
  if (byte(pos + 1) < lo || byte(pos + 1) > hi) return 0;
  for (size_t i = 2; i < length; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) return 0;
  }
  return length;
}

bool IsValidUtf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    // Most text is ASCII: skip it eight bytes at a time.
    while (pos + 8 <= text.size()) {
      uint64_t chunk;
      std::memcpy(&chunk, text.data() + pos, sizeof(chunk));
      if ((chunk & 0x8080808080808080ULL) != 0) break;
      pos += 8;
    }
    if (pos >= text.size()) break;
    const size_t length = Utf8SequenceLength(text, pos);
    if (length == 0) return false;
    pos += length;
  }
  return true;
}

}  // namespace stagedb::internal
