// Debian's Abseil has its own string_view class (ABSL_OPTION_USE_STD_STRING_VIEW is 0), which
// std::string_view does not convert to: this adapts one to the other for Abseil's heterogeneous
// lookups and functions.
#ifndef STAGEDB_SRC_UTIL_ABSL_VIEW_H_
#define STAGEDB_SRC_UTIL_ABSL_VIEW_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace stagedb::internal {

inline absl::string_view AbslView(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_UTIL_ABSL_VIEW_H_
