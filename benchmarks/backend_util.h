// What the hand-made stores (raw LMDB, SQLite) share: 16-byte time-ordered ids, made safely from
// several threads at once, and the clock for creation times.
#ifndef STAGEDB_BENCHMARKS_BACKEND_UTIL_H_
#define STAGEDB_BENCHMARKS_BACKEND_UTIL_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>

namespace stagedb_bench {

constexpr size_t kIdBytes = 16;
using Id = std::array<char, kIdBytes>;

inline double NowMs() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline void PutBigEndian(uint64_t v, char* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
}

inline std::string Hex(const Id& id) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (char c : id) {
    out.push_back(kDigits[(static_cast<unsigned char>(c) >> 4) & 0xF]);
    out.push_back(kDigits[static_cast<unsigned char>(c) & 0xF]);
  }
  return out;
}

// Ids like stagedb's: 8 bytes big-endian of (ms since epoch << 16 | sequence), then 8 random
// bytes. Time-ordered, so a table keyed by id is appended to, and index ties sort by creation.
// Thread-safe without a lock: the stamp is claimed with a compare-and-swap, and the random bytes
// are a hash of the (unique) stamp and a per-generator seed, so no generator state is shared.
class IdGenerator {
 public:
  Id Next() {
    uint64_t stamp = NextStamp();
    Id id;
    PutBigEndian(stamp, id.data());
    PutBigEndian(Mix(stamp ^ seed_), id.data() + 8);
    return id;
  }

 private:
  uint64_t NextStamp() {
    uint64_t now = static_cast<uint64_t>(NowMs()) << 16;
    uint64_t last = last_stamp_.load(std::memory_order_relaxed);
    uint64_t next;
    do {
      next = std::max(now, last + 1);
    } while (!last_stamp_.compare_exchange_weak(last, next, std::memory_order_relaxed));
    return next;
  }

  // splitmix64's finalizer: every input bit affects every output bit.
  static uint64_t Mix(uint64_t x) {
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
  }

  const uint64_t seed_ = (uint64_t{std::random_device{}()} << 32) | std::random_device{}();
  std::atomic<uint64_t> last_stamp_{0};
};

}  // namespace stagedb_bench

#endif  // STAGEDB_BENCHMARKS_BACKEND_UTIL_H_
