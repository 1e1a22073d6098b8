// For the engine only: makes a DocumentId from the text of an id it stored itself, skipping the
// parse and checksum that untrusted text needs (a hot path: every document read has one).
#ifndef STAGEDB_SRC_VALUES_DOCUMENT_ID_ACCESS_H_
#define STAGEDB_SRC_VALUES_DOCUMENT_ID_ACCESS_H_

#include <cstdint>
#include <string>

#include "stagedb/id.h"

namespace stagedb::internal {

struct DocumentIdAccess {
  static DocumentId FromStored(std::string text, uint32_t table_number) {
    return DocumentId(std::move(text), table_number);
  }
};

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_VALUES_DOCUMENT_ID_ACCESS_H_
