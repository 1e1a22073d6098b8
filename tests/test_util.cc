#include "test_util.h"

#include <cstdlib>
#include <random>

namespace stagedb::testing {

TempDir::TempDir() {
  std::random_device rd;
  const auto base = std::filesystem::temp_directory_path();
  for (;;) {
    auto candidate = base / ("stagedb-test-" + std::to_string(rd()) + std::to_string(rd()));
    if (std::filesystem::create_directory(candidate)) {
      path_ = candidate.string();
      return;
    }
  }
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string SourceDir() {
  const char* dir = std::getenv("STAGEDB_SOURCE_DIR");
  return dir != nullptr ? dir : ".";
}

uint64_t TestSeed(uint64_t fallback) {
  const char* env = std::getenv("STAGEDB_TEST_SEED");
  return env != nullptr ? std::strtoull(env, nullptr, 10) : fallback;
}

}  // namespace stagedb::testing
