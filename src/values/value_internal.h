// Helpers shared by the files of the values layer.
#ifndef STAGEDB_SRC_VALUES_VALUE_INTERNAL_H_
#define STAGEDB_SRC_VALUES_VALUE_INTERNAL_H_

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "stagedb/value.h"
#include "util/absl_view.h"

namespace stagedb::internal {

// The one undefined Value, for lookups that return a reference to "missing".
const Value& UndefinedValue();

// Decoders of untrusted bytes (keys, stored documents, JSON text) refuse values nested deeper than
// this, so that corrupt or hostile input cannot overflow the stack of the recursive decoders.
// Storable values are at most kMaxNestingDepth deep, so this leaves ample room.
inline constexpr int kMaxDecodeNestingDepth = 64;

// The single NaN bit pattern the key codec writes: all NaNs are one value.
inline constexpr uint64_t kCanonicalNanBits = 0x7ff8000000000000ULL;

// The float64 total order as an unsigned integer order: -inf < ... < -0.0 < +0.0 < ... < +inf <
// NaN. Positive values get the sign bit set, negative ones every bit flipped, so that larger
// magnitudes of negative numbers sort first. Compare and the key codec both use this, which is
// what keeps them in agreement.
inline uint64_t OrderedFloatBits(double d) {
  const uint64_t bits = std::isnan(d) ? kCanonicalNanBits : std::bit_cast<uint64_t>(d);
  return (bits & (uint64_t{1} << 63)) != 0 ? ~bits : bits | (uint64_t{1} << 63);
}

// Inverse of OrderedFloatBits (for canonical NaN).
inline double FloatFromOrderedBits(uint64_t ordered) {
  const uint64_t bits =
      (ordered & (uint64_t{1} << 63)) != 0 ? ordered & ~(uint64_t{1} << 63) : ~ordered;
  return std::bit_cast<double>(bits);
}

// Crockford base32 of `bytes` (lowercase, the id alphabet), most significant bit first, the last
// character padded with zero bits: the text of document ids and of generated tokens.
std::string Base32Encode(std::string_view bytes);

// Appends the JSON text of `value` (see ValueToJson) to *out, rendering undefined as the bare
// word `undefined`. Stops early, at a value boundary, once *out is longer than `limit` bytes, so
// DebugString of a large document costs only what it shows.
void AppendJson(const Value& value, size_t limit, std::string* out);

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_VALUES_VALUE_INTERNAL_H_
