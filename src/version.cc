#include "stagedb/version.h"

namespace stagedb {

std::string_view Version() { return STAGEDB_VERSION_STRING; }

}  // namespace stagedb
