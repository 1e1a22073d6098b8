// Helpers shared by the tests: temporary database directories and Status matchers.
#ifndef STAGEDB_TESTS_TEST_UTIL_H_
#define STAGEDB_TESTS_TEST_UTIL_H_

#include <cstdint>
#include <filesystem>
#include <string>

#include "absl/status/status.h"

namespace stagedb::testing {

// The seed of a randomized test: STAGEDB_TEST_SEED when set, else `fallback` (the test's fixed
// seed). Tests print it on failure.
uint64_t TestSeed(uint64_t fallback);

// A fresh empty directory under the system temp dir, removed when this object is destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // A path inside the directory.
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The repository's root (for schema/ and examples/), from the STAGEDB_SOURCE_DIR variable CTest
// sets, or the current directory.
std::string SourceDir();

}  // namespace stagedb::testing

#endif  // STAGEDB_TESTS_TEST_UTIL_H_
