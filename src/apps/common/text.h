// Small string helpers of the apps (src/apps/*) over std::string_view (Debian's Abseil has its own
// absl::string_view, which the public API's std::string_view does not convert to).
#ifndef STAGEDB_SRC_APPS_COMMON_TEXT_H_
#define STAGEDB_SRC_APPS_COMMON_TEXT_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace stagedb::apps {

inline bool Contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// "a, b, c": for the lists of allowed values that errors name.
template <size_t N>
std::string Join(const std::string_view (&items)[N]) {
  std::string joined;
  for (std::string_view item : items) {
    if (!joined.empty()) joined += ", ";
    joined += item;
  }
  return joined;
}

}  // namespace stagedb::apps

#endif  // STAGEDB_SRC_APPS_COMMON_TEXT_H_
