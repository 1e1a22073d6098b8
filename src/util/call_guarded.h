// Runs host code (a mutation, query or callback) so that an exception it throws cannot cross
// into the engine: it becomes an Unknown status naming it.
#ifndef STAGEDB_SRC_UTIL_CALL_GUARDED_H_
#define STAGEDB_SRC_UTIL_CALL_GUARDED_H_

#include <exception>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace stagedb::internal {

inline absl::Status CallGuarded(absl::FunctionRef<absl::Status()> fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return absl::UnknownError(absl::StrFormat("the function threw an exception: %s", e.what()));
  } catch (...) {
    return absl::UnknownError("the function threw a non-standard exception");
  }
}

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_UTIL_CALL_GUARDED_H_
