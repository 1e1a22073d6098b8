// Catch2 helpers for absl::Status results, shared by the database tests.
#ifndef STAGEDB_TESTS_TEST_MATCHERS_H_
#define STAGEDB_TESTS_TEST_MATCHERS_H_

#include <atomic>
#include <catch2/catch.hpp>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "stagedb/stagedb.h"
#include "test_util.h"

namespace stagedb::testing {

inline absl::Status StatusOf(const absl::Status& s) { return s; }
template <typename T>
absl::Status StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

inline std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// Checks the code of a status and that its message contains every needle.
inline void CheckError(const absl::Status& s, absl::StatusCode code,
                       std::initializer_list<std::string> needles) {
  INFO("status: " << s.ToString());
  REQUIRE(s.code() == code);
  for (const std::string& needle : needles) {
    INFO("expected in the message: " << needle);
    CHECK(Msg(s).find(needle) != std::string::npos);
  }
}

// Opens a database, failing the test (with the status) when that fails.
inline std::unique_ptr<Database> OpenOrFail(Options options) {
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(std::move(options));
  INFO("Open: " << db.status().ToString());
  REQUIRE(db.ok());
  return *std::move(db);
}

// Waits until `condition` holds (PollUntil), failing the test when the hang guard passes first,
// naming `what` and, when `describe` is given, how things stood then. Test thread only.
inline void WaitFor(const std::function<bool()>& condition, std::string_view what,
                    const std::function<std::string()>& describe = {}) {
  if (PollUntil(condition)) return;
  FAIL("waited " << kHangGuard << " for " << what
                 << (describe ? "; then: " + describe() : std::string()));
}

// Inserts one document in its own mutation, failing the test when that fails.
inline DocumentId MustInsert(Database& db, std::string_view table, const Object& fields) {
  absl::StatusOr<DocumentId> id =
      db.Mutate([&](Transaction& tx) { return tx.Insert(table, fields); });
  INFO("Insert into " << table << ": " << id.status().ToString());
  REQUIRE(id.ok());
  return *id;
}

}  // namespace stagedb::testing

#define REQUIRE_OK(expr)                                        \
  do {                                                          \
    const absl::Status s_ = ::stagedb::testing::StatusOf(expr); \
    INFO("status: " << s_.ToString());                          \
    REQUIRE(s_.ok());                                           \
  } while (0)

#define CHECK_ERROR(expr, code, ...)                                                         \
  do {                                                                                       \
    INFO("expression: " #expr);                                                              \
    ::stagedb::testing::CheckError(::stagedb::testing::StatusOf(expr), code, {__VA_ARGS__}); \
  } while (0)

namespace stagedb::testing {

// A function call's value, failing the test (naming the function and the status) when the call
// failed: the one check behind the app tests' Call helpers.
inline Value MustSucceed(absl::StatusOr<Value> result, std::string_view name) {
  INFO(name << ": " << result.status().ToString());
  REQUIRE(result.ok());
  return *std::move(result);
}

// Registers query `wrapper`, which counts its runs and returns the function `view`'s result, and
// returns the count. Subscribed to, it shows every re-run of the view, also those whose
// unchanged result the engine never delivers, so a read set wider than needed shows.
inline std::shared_ptr<std::atomic<int>> CountRuns(Database& db, const std::string& wrapper,
                                                   const std::string& view) {
  auto runs = std::make_shared<std::atomic<int>>(0);
  REQUIRE_OK(
      db.RegisterQuery({.name = wrapper},
                       [runs, view](QueryContext& ctx, const Value& args) -> absl::StatusOr<Value> {
                         ++*runs;
                         return ctx.RunQuery(view, args);
                       }));
  return runs;
}

// Counts the updates a subscription receives, keeping the last result.
struct UpdateCounter {
  std::mutex mu;
  int updates = 0;
  Value last;
  UpdateSlot Slot() {
    return UpdateSlot([this](const QueryUpdate& update) {
      std::lock_guard<std::mutex> lock(mu);
      ++updates;
      if (update.result.ok()) last = *update.result;
    });
  }
  int count() {
    std::lock_guard<std::mutex> lock(mu);
    return updates;
  }
};

}  // namespace stagedb::testing

#endif  // STAGEDB_TESTS_TEST_MATCHERS_H_
