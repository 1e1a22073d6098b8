// A seeded generator of random Values for property tests, weighted toward the cases that break
// codecs and comparisons: extreme and special numbers, empty and NUL-laden strings and bytes,
// shared prefixes, and nested arrays and objects.
//
// Deterministic for a given seed (std::mt19937_64 and hand-rolled distributions, whose results,
// unlike std::uniform_int_distribution's, do not depend on the standard library).
#ifndef STAGEDB_TESTS_RANDOM_VALUES_H_
#define STAGEDB_TESTS_RANDOM_VALUES_H_

#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stagedb/value.h"

namespace stagedb::testing {

struct RandomValueOptions {
  // Nesting of arrays and objects below the generated value (0: scalars only).
  int max_depth = 4;
  // Generate undefined (not storable, no JSON form).
  bool allow_undefined = true;
  // Generate the object keys "" and "$x" (not storable; "$x" has no JSON form either).
  bool allow_unstorable_keys = true;
};

class RandomValueGenerator {
 public:
  explicit RandomValueGenerator(uint64_t seed, RandomValueOptions options = {})
      : rng_(seed), options_(options) {}

  // A value of any type.
  Value Next() { return Next(options_.max_depth); }

  // A value with at most `max_depth` levels of arrays and objects (scalars only at 0 or less).
  Value Next(int max_depth) {
    const int container_weight = max_depth > 0 ? 2 : 0;
    switch (Uniform(0, 8 + 2 * container_weight)) {
      case 0:
        return options_.allow_undefined ? Value(Undefined{}) : Value(nullptr);
      case 1:
        return Value(nullptr);
      case 2:
      case 3:
        return Value::Int64(Int64());
      case 4:
      case 5:
        return Value(Float64());
      case 6:
        return Value(OneIn(2));
      case 7:
        return Value(String());
      case 8:
        return Value(ByteString());
      case 9:
      case 10:
        return Value(RandomArray(max_depth - 1));
      default:
        return Value(RandomObject(max_depth - 1));
    }
  }

  // An object suitable as a document's fields (its keys follow the options).
  Object NextObject() { return RandomObject(options_.max_depth - 1); }

  // A value close to `v`: equal, or differing in one leaf, one element or one field, so that
  // comparisons get past long common prefixes.
  Value Mutate(const Value& v, int max_depth = 3) {
    if (v.is_array() && !v.as_array().empty() && !OneIn(4)) {
      Array array = v.as_array();
      const size_t i = Uniform(0, static_cast<int>(array.size()) - 1);
      switch (Uniform(0, 2)) {
        case 0:
          array[i] = Mutate(array[i], max_depth - 1);
          break;
        case 1:
          array.erase(array.begin() + static_cast<std::ptrdiff_t>(i));
          break;
        default:
          array.insert(array.begin() + static_cast<std::ptrdiff_t>(i), Next(max_depth - 1));
      }
      return Value(std::move(array));
    }
    if (v.is_object() && !v.as_object().empty() && !OneIn(4)) {
      Object object = v.as_object();
      auto it = object.begin();
      std::advance(it, Uniform(0, static_cast<int>(object.size()) - 1));
      switch (Uniform(0, 2)) {
        case 0:
          it->second = Mutate(it->second, max_depth - 1);
          break;
        case 1:
          object.erase(it);
          break;
        default:
          object[Key()] = Next(max_depth - 1);
      }
      return Value(std::move(object));
    }
    if (v.is_string() && OneIn(2)) return Value(v.as_string() + String());
    if (v.is_bytes() && OneIn(2)) return Value(Bytes{v.as_bytes().data + ByteString().data});
    if (v.is_int64() && OneIn(2)) {
      return Value::Int64(static_cast<int64_t>(static_cast<uint64_t>(v.as_int64()) +
                                               static_cast<uint64_t>(Uniform(-1, 1))));
    }
    if (v.is_float64() && OneIn(2)) {
      return Value(std::nextafter(v.as_float64(), OneIn(2) ? -INFINITY : INFINITY));
    }
    return OneIn(3) ? v : Next(max_depth);
  }

  int64_t Int64() {
    static constexpr int64_t kSpecial[] = {
        std::numeric_limits<int64_t>::min(),
        std::numeric_limits<int64_t>::min() + 1,
        std::numeric_limits<int64_t>::max(),
        std::numeric_limits<int64_t>::max() - 1,
        -1,
        0,
        1,
        255,
        256,
        -256,
        int64_t{1} << 53,
        (int64_t{1} << 53) + 1,
    };
    switch (Uniform(0, 2)) {
      case 0:
        return kSpecial[Uniform(0, static_cast<int>(std::size(kSpecial)) - 1)];
      case 1:
        return Uniform(-10, 10);
      default:
        return static_cast<int64_t>(rng_());
    }
  }

  double Float64() {
    static const double kSpecial[] = {
        0.0,
        -0.0,
        std::numeric_limits<double>::infinity(),
        -std::numeric_limits<double>::infinity(),
        std::numeric_limits<double>::quiet_NaN(),
        -std::numeric_limits<double>::quiet_NaN(),
        std::bit_cast<double>(uint64_t{0x7ff0000000000001}),  // signaling NaN payload
        std::bit_cast<double>(uint64_t{0xfff8000000000123}),  // negative NaN with payload
        std::numeric_limits<double>::denorm_min(),
        -std::numeric_limits<double>::denorm_min(),
        std::numeric_limits<double>::min(),
        -std::numeric_limits<double>::min(),
        std::numeric_limits<double>::max(),
        -std::numeric_limits<double>::max(),
        std::numeric_limits<double>::epsilon(),
        1.0,
        -1.0,
        0.1,
        1e21,
        9007199254740993.0,
    };
    switch (Uniform(0, 3)) {
      case 0:
        return kSpecial[Uniform(0, static_cast<int>(std::size(kSpecial)) - 1)];
      case 1:
        return static_cast<double>(Uniform(-10, 10)) / 4;
      default:
        // Any bit pattern: covers every exponent, denormals and NaN payloads.
        return std::bit_cast<double>(rng_());
    }
  }

  // Valid UTF-8 built from a small alphabet of pieces, so that random strings often share
  // prefixes or are equal; includes "" and embedded NULs.
  std::string String() {
    static constexpr std::string_view kPieces[] = {
        "a",
        "b",
        std::string_view("\0", 1),
        "\x01",
        "\x7f",
        "\xc3\xa9" /* é */,
        "\xe2\x82\xac" /* € */,
        "\xf0\x9f\x98\x80" /* 😀 */,
        "$",
        ".",
        "\"",
        "\\",
        "\n",
        "ab",
        "_",
        "Z",
    };
    std::string s;
    const int pieces = Uniform(0, 5);
    for (int i = 0; i < pieces; ++i) {
      s += kPieces[Uniform(0, static_cast<int>(std::size(kPieces)) - 1)];
    }
    return s;
  }

  Bytes ByteString() {
    static constexpr char kBytes[] = {'\x00', '\xff', '\x01', '\xfe', 'a', '\x80'};
    std::string s;
    const int length = Uniform(0, 6);
    for (int i = 0; i < length; ++i) {
      s += kBytes[Uniform(0, static_cast<int>(std::size(kBytes)) - 1)];
    }
    return Bytes{std::move(s)};
  }

  // Object keys from a small set (with prefixes of each other) to force equal-key comparisons.
  std::string Key() {
    static constexpr std::string_view kKeys[] = {
        "a", "b",  "ab", "a b", "_id", "Z", "\xc3\xa9", "x.y", "\x7f", std::string_view("a\0", 2),
        "",  "$x",
    };
    // The last two are not storable.
    const size_t count = std::size(kKeys) - (options_.allow_unstorable_keys ? 0 : 2);
    return std::string(kKeys[Uniform(0, static_cast<int>(count) - 1)]);
  }

  // Uniform integer in [lo, hi].
  int Uniform(int lo, int hi) {
    return lo + static_cast<int>(rng_() % static_cast<uint64_t>(hi - lo + 1));
  }
  bool OneIn(int n) { return rng_() % static_cast<uint64_t>(n) == 0; }
  std::mt19937_64& rng() { return rng_; }

 private:
  Array RandomArray(int max_depth) {
    Array array;
    const int size = Uniform(0, 4);
    for (int i = 0; i < size; ++i) array.push_back(Next(max_depth));
    return array;
  }

  Object RandomObject(int max_depth) {
    Object object;
    const int size = Uniform(0, 4);
    for (int i = 0; i < size; ++i) object[Key()] = Next(max_depth);
    return object;
  }

  std::mt19937_64 rng_;
  RandomValueOptions options_;
};

}  // namespace stagedb::testing

#endif  // STAGEDB_TESTS_RANDOM_VALUES_H_
