// The document codec: a document's fields (system fields included) as bytes for storage.
// Format: one version byte (kDocumentFormatVersion), then a Cereal portable-binary archive of the
// value tree (a type byte per value, then its payload). The version byte lets the format evolve:
// a reader refuses versions it does not know instead of misreading them.
#ifndef STAGEDB_SRC_VALUES_DOCUMENT_CODEC_H_
#define STAGEDB_SRC_VALUES_DOCUMENT_CODEC_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "stagedb/value.h"

namespace stagedb::internal {

inline constexpr uint8_t kDocumentFormatVersion = 1;

// Replaces *out with the encoding of `fields`.
void EncodeDocument(const Object& fields, std::string* out);
// DataLoss when the bytes are not a document this version can read.
absl::StatusOr<Object> DecodeDocument(std::string_view bytes);

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_VALUES_DOCUMENT_CODEC_H_
