// The pieces every app's named functions share (src/apps/*): registration that keeps the first
// error, argument and result helpers over stagedb::Value.
#ifndef STAGEDB_SRC_APPS_COMMON_FUNCTIONS_H_
#define STAGEDB_SRC_APPS_COMMON_FUNCTIONS_H_

#include <cmath>
#include <iterator>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "stagedb/database.h"

namespace stagedb::apps {

// Milliseconds since the Unix epoch, as documents hold times (as in Convex).
inline double NowMs() { return absl::ToDoubleMilliseconds(absl::Now() - absl::UnixEpoch()); }

// The id an argument holds (its validator has checked it names the right table).
inline absl::StatusOr<DocumentId> IdArg(const Value& args, std::string_view name) {
  return DocumentId::Parse(args[name].as_string());
}

// `fields` without its undefined members: nested objects must not hold undefined values.
inline Value Compact(Object fields) {
  for (auto it = fields.begin(); it != fields.end();) {
    it = it->second.is_undefined() ? fields.erase(it) : std::next(it);
  }
  return Value(std::move(fields));
}

// A page size or listing limit, declared "number" in every app (so 2 and 2.0 both arrive as
// 2.0 by the numbers rule): a whole number from 1 to `max`, `fallback` when absent.
// InvalidArgument naming `where` (`table "cc_runs"`, `function "covibe:listTasks"`), the
// argument and the value.
inline absl::StatusOr<size_t> PageSizeArg(const Value& value, std::string_view where,
                                          std::string_view name, size_t max, size_t fallback = 0) {
  if (value.is_undefined()) return fallback;
  const double n = value.as_float64();
  if (n >= 1 && n <= static_cast<double>(max) && n == std::floor(n)) {
    return static_cast<size_t>(n);
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "%s: argument \"%s\": %g is not a whole number from 1 to %d", where, name, n, max));
}

// Documents as a function's result: an array of objects.
inline Value DocumentsValue(const std::vector<Document>& documents) {
  Array array;
  array.reserve(documents.size());
  for (const Document& document : documents) array.push_back(document.ToValue());
  return Value(std::move(array));
}

// Registers an app's functions, keeping the first error (so RegisterFunctions reports it). Apps
// whose functions share a wrapper (a caller check, an audit row) derive from it.
class Registrar {
 public:
  explicit Registrar(Database& db) : db_(db) {}
  void Query(FunctionDef def, QueryFunction fn) { Keep(db_.RegisterQuery(def, std::move(fn))); }
  void Mutation(FunctionDef def, MutationFunction fn) {
    Keep(db_.RegisterMutation(def, std::move(fn)));
  }
  void Action(FunctionDef def, ActionFunction fn) { Keep(db_.RegisterAction(def, std::move(fn))); }
  Database& db() { return db_; }
  absl::Status status() const { return status_; }

 protected:
  void Keep(absl::Status s) {
    if (status_.ok()) status_ = std::move(s);
  }

 private:
  Database& db_;
  absl::Status status_;
};

}  // namespace stagedb::apps

#endif  // STAGEDB_SRC_APPS_COMMON_FUNCTIONS_H_
