// What the example programs share: each prints its steps and checks them (Expect), ends with
// Finish (exit status 1 when a step surprised it, so CTest runs the examples as tests), and
// runs in the directory given as its argument or in a fresh temporary one, removed at the end.
#ifndef STAGEDB_EXAMPLES_EXAMPLE_SUPPORT_H_
#define STAGEDB_EXAMPLES_EXAMPLE_SUPPORT_H_

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <iostream>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "stagedb/value.h"

namespace stagedb_examples {

// Atomic: a step may be checked on a callback's thread.
inline std::atomic<bool>& AnyStepFailed() {
  static std::atomic<bool> failed{false};
  return failed;
}

// Prints one checked step.
inline void Expect(bool ok, const std::string& what) {
  std::cout << (ok ? "  ok: " : "  UNEXPECTED: ") << what << "\n";
  if (!ok) AnyStepFailed() = true;
}

// A call's value; when the call failed, a failed step naming `name` and the error, and null.
inline stagedb::Value ValueOrReport(absl::StatusOr<stagedb::Value> result, std::string_view name) {
  if (result.ok()) return *std::move(result);
  Expect(false, std::string(name) + ": " + result.status().ToString());
  return stagedb::Value(nullptr);
}

// The example's exit status: 0 when every step behaved as printed.
inline int Finish() {
  std::cout << (AnyStepFailed() ? "some steps did not behave as expected\n" : "done\n");
  return AnyStepFailed() ? 1 : 0;
}

// Runs `run(dir)` on argv[1] (a directory that does not exist yet or is empty) or on a fresh
// temporary directory named after `name`, removed afterwards.
template <typename Run>
int RunInDirectory(int argc, char** argv, std::string_view name, Run run) {
  if (argc > 1) return run(std::string(argv[1]));
  namespace fs = std::filesystem;
  std::string pattern = (fs::temp_directory_path() / (std::string(name) + "-XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) {
    std::cerr << "cannot create a temporary directory\n";
    return 1;
  }
  const int status = run(pattern);
  std::error_code ignored;
  fs::remove_all(pattern, ignored);
  return status;
}

}  // namespace stagedb_examples

#endif  // STAGEDB_EXAMPLES_EXAMPLE_SUPPORT_H_
