// The document codec: a document's fields (system fields included) as bytes for storage.
// Format: one version byte (kDocumentFormatVersion), then the value tree: per value a type byte
// (stagedb::Type), then its payload: int64 as a zigzag LEB128 varint, float64 as its 8 IEEE bytes
// little-endian, boolean as one byte, string and bytes as a varint length and the bytes, array as
// a varint count and the elements, object as a varint count and (name as string, value) pairs in
// ascending name order. Varints keep small documents small (no 8-byte length prefixes).
// The version byte lets the format evolve: a reader refuses versions it does not know instead of
// misreading them. Version 1 (a Cereal portable-binary archive with 8-byte counts) is still read.
#ifndef STAGEDB_SRC_VALUES_DOCUMENT_CODEC_H_
#define STAGEDB_SRC_VALUES_DOCUMENT_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "stagedb/value.h"

namespace stagedb::internal {

inline constexpr uint8_t kDocumentFormatVersion = 2;
inline constexpr uint8_t kCerealDocumentFormatVersion = 1;  // read, no longer written

// Replaces *out with the encoding of `fields`.
void EncodeDocument(const Object& fields, std::string* out);
// DataLoss when the bytes are not a document this version can read.
absl::StatusOr<Object> DecodeDocument(std::string_view bytes);

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_VALUES_DOCUMENT_CODEC_H_
