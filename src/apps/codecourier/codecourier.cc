// CodeCourier's named functions (stagedb/apps/codecourier.h), registered by area; each is written
// against the public API only.
#include "stagedb/apps/codecourier.h"

#include "apps/codecourier/common.h"

namespace stagedb::codecourier {

absl::Status RegisterFunctions(Database& db, CodeCourierOptions options) {
  detail::Registrar r(db);
  detail::RegisterIdentity(r, options);
  detail::RegisterKeys(r, options);
  detail::RegisterExecution(r, options);
  detail::RegisterCallbacks(r);
  detail::RegisterLearnings(r, options);
  detail::RegisterUsage(r);
  return r.status();
}

}  // namespace stagedb::codecourier
