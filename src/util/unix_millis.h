// Times as documents hold them: milliseconds since the Unix epoch, a float64 (as in Convex).
#ifndef STAGEDB_SRC_UTIL_UNIX_MILLIS_H_
#define STAGEDB_SRC_UTIL_UNIX_MILLIS_H_

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace stagedb::internal {

inline double ToUnixMillisDouble(absl::Time time) {
  return absl::ToDoubleMilliseconds(time - absl::UnixEpoch());
}

inline double NowUnixMillis() { return ToUnixMillisDouble(absl::Now()); }

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_UTIL_UNIX_MILLIS_H_
