// The order-preserving key codec: for any values a and b, Compare(a, b) < 0 exactly when
// EncodeKey(a) < EncodeKey(b) as byte strings, and the same for tuples of values encoded one
// after another (compound index keys). Each value is a type tag byte and a payload:
//   undefined 0x10 | null 0x20 | int64 0x30 + 8 bytes big-endian, sign bit flipped |
//   float64 0x40 + 8 bytes: sign bit flipped when positive, every bit flipped when negative
//   (NaN canonical, after +inf) | boolean 0x50 + 0x00/0x01 | string 0x60, bytes 0x70: the bytes
//   with 0x00 written as 0x00 0xFF, then 0x00 | array 0x80: elements, then 0x00 |
//   object 0x90: per field 0x01, name as a string payload, value; then 0x00.
// Encodings are self-delimiting, and no encoded tuple continues with 0xFF after a whole
// element, so the keys starting with a tuple prefix P are exactly the range [P, P + "\xFF").
#ifndef STAGEDB_KEY_CODEC_H_
#define STAGEDB_KEY_CODEC_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "stagedb/export.h"
#include "stagedb/value.h"

namespace stagedb {

// Appends the encoding of `value` to `out`.
STAGEDB_EXPORT void EncodeKey(const Value& value, std::string* out);
STAGEDB_EXPORT std::string EncodeKey(const Value& value);

// Decodes a whole key made of one or more encoded values.
STAGEDB_EXPORT absl::StatusOr<std::vector<Value>> DecodeKey(std::string_view key);

}  // namespace stagedb

#endif  // STAGEDB_KEY_CODEC_H_
