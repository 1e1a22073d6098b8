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

void Progress::Add(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  value_ += n;
  cv_.notify_all();
}

int64_t Progress::value() {
  std::lock_guard<std::mutex> lock(mu_);
  return value_;
}

bool Progress::WaitAtLeast(int64_t target, absl::Duration guard) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, absl::ToChronoNanoseconds(guard), [&] { return value_ >= target; });
}

bool PollUntil(const std::function<bool()>& condition, absl::Duration guard) {
  const absl::Time deadline = absl::Now() + guard;
  for (;;) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    // Only the pace of polling: what the caller waits for is the condition.
    absl::SleepFor(absl::Milliseconds(1));
  }
}

}  // namespace stagedb::testing
