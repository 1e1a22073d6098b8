// The order-preserving key codec: its byte order must be exactly Compare's order, for single
// values and for tuples (compound index keys), it must round-trip, and tuple prefixes must bound
// ranges of keys.
#include "stagedb/key_codec.h"

#include <bit>
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "random_values.h"
#include "stagedb/value.h"

namespace stagedb {
namespace {

using Tuple = std::vector<Value>;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

int Sign(int c) { return (c > 0) - (c < 0); }

int ByteOrder(const std::string& a, const std::string& b) { return Sign(a.compare(b)); }

std::string EncodeTuple(const Tuple& tuple) {
  std::string key;
  for (const Value& v : tuple) EncodeKey(v, &key);
  return key;
}

// Lexicographic by Compare, a proper prefix first: the order compound keys must have.
int CompareTuples(const Tuple& a, const Tuple& b) {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (const int c = Compare(a[i], b[i]); c != 0) return Sign(c);
  }
  return Sign(static_cast<int>(a.size()) - static_cast<int>(b.size()));
}

std::string Hex(const std::string& bytes) { return absl::BytesToHexString(bytes); }

std::string Describe(const Tuple& tuple) {
  std::string out = "(";
  for (const Value& v : tuple) out += DebugString(v, 1000) + ", ";
  return out + ")";
}

Tuple RandomTuple(testing::RandomValueGenerator& gen, int min_size, int max_size) {
  Tuple tuple;
  const int size = gen.Uniform(min_size, max_size);
  for (int i = 0; i < size; ++i) tuple.push_back(gen.Next(2));
  return tuple;
}

// A tuple that often shares a prefix with `a` (and then often differs only slightly).
Tuple NearbyTuple(testing::RandomValueGenerator& gen, const Tuple& a) {
  if (gen.OneIn(4)) return RandomTuple(gen, 1, 4);
  Tuple b(a.begin(), a.begin() + gen.Uniform(0, static_cast<int>(a.size())));
  if (!b.empty() && gen.OneIn(2)) b.back() = gen.Mutate(b.back());
  const int extra = gen.Uniform(0, 2);
  for (int i = 0; i < extra; ++i) b.push_back(gen.Next(2));
  if (b.empty()) b.push_back(gen.Next(2));
  return b;
}

TEST_CASE("EncodeKey writes the documented bytes", "[key_codec]") {
  using namespace std::string_literals;
  CHECK(EncodeKey(Value(Undefined{})) == "\x10"s);
  CHECK(EncodeKey(Value(nullptr)) == "\x20"s);
  CHECK(EncodeKey(Value::Int64(0)) == "\x30\x80\x00\x00\x00\x00\x00\x00\x00"s);
  CHECK(EncodeKey(Value::Int64(-1)) == "\x30\x7f\xff\xff\xff\xff\xff\xff\xff"s);
  CHECK(EncodeKey(Value::Int64(kInt64Min)) == "\x30\x00\x00\x00\x00\x00\x00\x00\x00"s);
  CHECK(EncodeKey(Value(1.0)) == "\x40\xbf\xf0\x00\x00\x00\x00\x00\x00"s);
  CHECK(EncodeKey(Value(-1.0)) == "\x40\x40\x0f\xff\xff\xff\xff\xff\xff"s);
  CHECK(EncodeKey(Value(0.0)) == "\x40\x80\x00\x00\x00\x00\x00\x00\x00"s);
  CHECK(EncodeKey(Value(-0.0)) == "\x40\x7f\xff\xff\xff\xff\xff\xff\xff"s);
  CHECK(EncodeKey(Value(kNaN)) == "\x40\xff\xf8\x00\x00\x00\x00\x00\x00"s);
  CHECK(EncodeKey(Value(false)) == "\x50\x00"s);
  CHECK(EncodeKey(Value(true)) == "\x50\x01"s);
  CHECK(EncodeKey(Value("a\0b"s)) == "\x60\x61\x00\xff\x62\x00"s);
  CHECK(EncodeKey(Value(""s)) == "\x60\x00"s);
  CHECK(EncodeKey(Value(Bytes{"\x00\xff"s})) == "\x70\x00\xff\xff\x00"s);
  CHECK(EncodeKey(Value(Array{})) == "\x80\x00"s);
  CHECK(EncodeKey(Value(Array{Value(nullptr), Value(true)})) == "\x80\x20\x50\x01\x00"s);
  CHECK(EncodeKey(Value(Object{})) == "\x90\x00"s);
  CHECK(EncodeKey(Value(Object{{"a", Value(nullptr)}})) == "\x90\x01\x61\x00\x20\x00"s);

  std::string appended = "prefix";
  EncodeKey(Value(nullptr), &appended);
  CHECK(appended == "prefix\x20"s);
}

TEST_CASE("Every NaN encodes to the canonical NaN", "[key_codec]") {
  const std::string canonical = EncodeKey(Value(kNaN));
  for (const uint64_t bits : {uint64_t{0x7ff0000000000001}, uint64_t{0x7fffffffffffffff},
                              uint64_t{0xfff8000000000000}, uint64_t{0xffffffffffffffff}}) {
    const double nan = std::bit_cast<double>(bits);
    REQUIRE(std::isnan(nan));
    CHECK(EncodeKey(Value(nan)) == canonical);
    CHECK(Compare(Value(nan), Value(kNaN)) == 0);
  }
}

TEST_CASE("Edge cases sort in the documented order, by Compare and by key", "[key_codec]") {
  using namespace std::string_literals;
  const double denorm = std::numeric_limits<double>::denorm_min();
  const double max = std::numeric_limits<double>::max();
  // Strictly ascending.
  const std::vector<Value> ascending = {
      Value(Undefined{}),
      Value(nullptr),
      Value::Int64(kInt64Min),
      Value::Int64(kInt64Min + 1),
      Value::Int64(-1),
      Value::Int64(0),
      Value::Int64(1),
      Value::Int64(kInt64Max),
      Value(-kInf),  // every float64 sorts after every int64
      Value(-max),
      Value(-1.0),
      Value(-denorm),
      Value(-0.0),
      Value(0.0),
      Value(denorm),
      Value(std::numeric_limits<double>::min()),
      Value(1.0),
      Value(max),
      Value(kInf),
      Value(kNaN),
      Value(false),
      Value(true),
      Value(""s),
      Value("\0"s),
      Value("\0\0"s),
      Value("\x01"s),
      Value("a"s),
      Value("a\0"s),
      Value("a\0\0"s),
      Value("a\0b"s),
      Value("a\x01"s),
      Value("ab"s),
      Value("b"s),
      Value("\x7f"s),
      Value("\xc3\xa9"s),
      Value("\xf0\x9f\x98\x80"s),
      Value(Bytes{""s}),
      Value(Bytes{"\0"s}),
      Value(Bytes{"\0\xff"s}),
      Value(Bytes{"\x01"s}),
      Value(Bytes{"\xff"s}),
      Value(Bytes{"\xff\xff"s}),
      Value(Array{}),
      Value(Array{Value(Undefined{})}),
      Value(Array{Value(nullptr)}),
      Value(Array{Value::Int64(0)}),
      Value(Array{Value::Int64(0), Value::Int64(0)}),
      Value(Array{Value(0.0)}),
      Value(Array{Value(""s)}),
      Value(Array{Value(Array{})}),
      Value(Array{Value(Array{}), Value(nullptr)}),
      Value(Array{Value(Array{Value(nullptr)})}),
      Value(Array{Value(Object{})}),
      Value(Object{}),
      Value(Object{{"", Value(nullptr)}}),
      Value(Object{{"a", Value(Undefined{})}}),
      Value(Object{{"a", Value(nullptr)}}),
      Value(Object{{"a", Value(nullptr)}, {"b", Value(nullptr)}}),
      Value(Object{{"a", Value::Int64(1)}}),
      Value(Object{{"a", Value::Int64(2)}}),
      Value(Object{{"a\0"s, Value(nullptr)}}),
      Value(Object{{"ab", Value(nullptr)}}),
      Value(Object{{"b", Value(Undefined{})}}),
  };
  for (size_t i = 0; i < ascending.size(); ++i) {
    INFO("value " << i << ": " << DebugString(ascending[i]));
    CHECK(Compare(ascending[i], ascending[i]) == 0);
    for (size_t j = i + 1; j < ascending.size(); ++j) {
      INFO("vs value " << j << ": " << DebugString(ascending[j]));
      CHECK(Compare(ascending[i], ascending[j]) < 0);
      CHECK(Compare(ascending[j], ascending[i]) > 0);
      CHECK(EncodeKey(ascending[i]) < EncodeKey(ascending[j]));
    }
    auto decoded = DecodeKey(EncodeKey(ascending[i]));
    REQUIRE(decoded.ok());
    REQUIRE(decoded->size() == 1);
    CHECK((*decoded)[0] == ascending[i]);
  }

  // Spelled out, the cases most likely to regress.
  CHECK(EncodeKey(Value(-0.0)) < EncodeKey(Value(0.0)));
  CHECK(EncodeKey(Value::Int64(kInt64Max)) < EncodeKey(Value(-kInf)));
  CHECK(EncodeKey(Value("a"s)) < EncodeKey(Value("a\0"s)));
  CHECK(EncodeKey(Value("a\0"s)) < EncodeKey(Value("a\0\0"s)));
  CHECK(EncodeKey(Value("a\0\0"s)) < EncodeKey(Value("b"s)));
  CHECK(EncodeKey(Value(kInf)) < EncodeKey(Value(kNaN)));
}

TEST_CASE("Byte order of keys equals Compare for random values", "[key_codec]") {
  const uint64_t seed = 20240601;
  CAPTURE(seed);
  testing::RandomValueGenerator gen(seed);
  int equal_pairs = 0;
  for (int i = 0; i < 30000; ++i) {
    const Value a = gen.Next();
    const Value b = gen.OneIn(2) ? gen.Mutate(a) : gen.Next();
    const int by_compare = Sign(Compare(a, b));
    const int by_key = ByteOrder(EncodeKey(a), EncodeKey(b));
    if (by_compare == 0) ++equal_pairs;
    if (by_compare != by_key || Sign(Compare(b, a)) != -by_compare ||
        (a == b) != (by_compare == 0) || ((a <=> b) < 0) != (by_compare < 0)) {
      INFO("a = " << DebugString(a, 1000) << " key " << Hex(EncodeKey(a)));
      INFO("b = " << DebugString(b, 1000) << " key " << Hex(EncodeKey(b)));
      CHECK(by_compare == by_key);
      CHECK(Sign(Compare(b, a)) == -by_compare);
      CHECK((a == b) == (by_compare == 0));
      CHECK(((a <=> b) < 0) == (by_compare < 0));
    }
  }
  // The generator must produce ties, or equality is not being tested.
  CHECK(equal_pairs > 1000);
}

TEST_CASE("Compound keys keep the lexicographic tuple order", "[key_codec]") {
  const uint64_t seed = 77;
  CAPTURE(seed);
  testing::RandomValueGenerator gen(seed);
  int shared_prefix_pairs = 0;
  for (int i = 0; i < 20000; ++i) {
    const Tuple a = RandomTuple(gen, 1, 4);
    const Tuple b = NearbyTuple(gen, a);
    if (!b.empty() && Compare(a[0], b[0]) == 0) ++shared_prefix_pairs;
    const int by_tuple = CompareTuples(a, b);
    const int by_key = ByteOrder(EncodeTuple(a), EncodeTuple(b));
    if (by_tuple != by_key) {
      INFO("a = " << Describe(a) << " key " << Hex(EncodeTuple(a)));
      INFO("b = " << Describe(b) << " key " << Hex(EncodeTuple(b)));
      CHECK(by_tuple == by_key);
    }
  }
  CHECK(shared_prefix_pairs > 5000);
}

TEST_CASE("DecodeKey inverts EncodeKey", "[key_codec]") {
  const uint64_t seed = 4242;
  CAPTURE(seed);
  testing::RandomValueGenerator gen(seed);
  for (int i = 0; i < 20000; ++i) {
    const Tuple tuple = RandomTuple(gen, 1, 4);
    const std::string key = EncodeTuple(tuple);
    auto decoded = DecodeKey(key);
    if (!decoded.ok() || CompareTuples(*decoded, tuple) != 0) {
      INFO("tuple = " << Describe(tuple) << " key " << Hex(key));
      REQUIRE(decoded.ok());
      CHECK(Describe(*decoded) == Describe(tuple));
      CHECK(CompareTuples(*decoded, tuple) == 0);
    }
  }
}

TEST_CASE("Keys with a tuple prefix are exactly the range [P, P + 0xFF)", "[key_codec]") {
  const uint64_t seed = 99;
  CAPTURE(seed);
  testing::RandomValueGenerator gen(seed);
  int inside = 0;
  int outside = 0;
  for (int i = 0; i < 20000; ++i) {
    const Tuple prefix = RandomTuple(gen, 1, 3);
    const std::string low = EncodeTuple(prefix);
    const std::string high = low + "\xff";

    // Any longer tuple starting with the prefix's values is inside.
    Tuple longer = prefix;
    const int extra = gen.Uniform(1, 2);
    for (int j = 0; j < extra; ++j) longer.push_back(gen.Next(2));
    const std::string key = EncodeTuple(longer);
    if (!(low <= key && key < high)) {
      INFO("prefix = " << Describe(prefix) << " key " << Hex(low));
      INFO("tuple = " << Describe(longer) << " key " << Hex(key));
      CHECK(low <= key);
      CHECK(key < high);
    }

    // And a tuple is inside only when it starts with the prefix's values.
    const Tuple other = NearbyTuple(gen, prefix);
    const bool starts_with_prefix =
        other.size() >= prefix.size() &&
        CompareTuples(Tuple(other.begin(), other.begin() + prefix.size()), prefix) == 0;
    const std::string other_key = EncodeTuple(other);
    const bool in_range = low <= other_key && other_key < high;
    (starts_with_prefix ? inside : outside)++;
    if (in_range != starts_with_prefix) {
      INFO("prefix = " << Describe(prefix) << " key " << Hex(low));
      INFO("tuple = " << Describe(other) << " key " << Hex(other_key));
      CHECK(in_range == starts_with_prefix);
    }
  }
  CHECK(inside > 1000);
  CHECK(outside > 1000);
}

TEST_CASE("DecodeKey refuses malformed keys", "[key_codec]") {
  using namespace std::string_literals;
  const std::vector<std::string> malformed = {
      ""s,                                                    // no value
      "\x01"s,                                                // unknown tag
      "\xff"s,                                                // unknown tag
      "\x30\x80\x00"s,                                        // truncated int64
      "\x40\x80"s,                                            // truncated float64
      "\x40\xff\xf8\x00\x00\x00\x00\x00\x01"s,                // non-canonical NaN
      "\x40\xff\xff\xff\xff\xff\xff\xff\xff"s,                // non-canonical NaN
      "\x50"s,                                                // truncated boolean
      "\x50\x02"s,                                            // bad boolean
      "\x60\x61\x62"s,                                        // unterminated string
      "\x70\x00\xff"s,                                        // unterminated bytes (escaped zero)
      "\x80\x20"s,                                            // unterminated array
      "\x80\x02\x00"s,                                        // bad element tag
      "\x90\x01\x61\x00"s,                                    // field without a value
      "\x90\x02\x61\x00\x20\x00"s,                            // bad field marker
      "\x90\x01\x62\x00\x20\x01\x61\x00\x20\x00"s,            // fields out of order
      "\x90\x01\x61\x00\x20\x01\x61\x00\x20\x00"s,            // duplicate field
      "\x20\x01"s,                                            // garbage after a value
      std::string(1000, '\x80') + std::string(1000, '\x00'),  // nested too deeply
  };
  for (const std::string& key : malformed) {
    INFO("key " << Hex(key));
    auto decoded = DecodeKey(key);
    CHECK(decoded.status().code() == absl::StatusCode::kInvalidArgument);
  }
  CHECK(DecodeKey("\x50\x02"s).status().message().find("byte 1") != std::string_view::npos);
}

TEST_CASE("DecodeKey accepts only canonical keys and never crashes", "[key_codec]") {
  // Random byte strings over the bytes that matter to the format, and truncations and byte
  // changes of real keys: each either fails cleanly or decodes to values that re-encode to the
  // very same bytes (so no two keys decode to the same values).
  const uint64_t seed = 31337;
  CAPTURE(seed);
  testing::RandomValueGenerator gen(seed);
  static constexpr char kAlphabet[] = {'\x00', '\x01', '\x10', '\x20', '\x30', '\x40', '\x50',
                                       '\x60', '\x70', '\x80', '\x90', '\xff', 'a',    '\x7f'};
  int decoded_ok = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string key;
    if (gen.OneIn(2)) {
      const int length = gen.Uniform(0, 24);
      for (int j = 0; j < length; ++j) {
        key += kAlphabet[gen.Uniform(0, static_cast<int>(sizeof(kAlphabet)) - 1)];
      }
    } else {
      key = EncodeTuple(RandomTuple(gen, 1, 3));
      if (gen.OneIn(2)) {
        key.resize(gen.Uniform(0, static_cast<int>(key.size())));
      } else {
        key[gen.Uniform(0, static_cast<int>(key.size()) - 1)] =
            kAlphabet[gen.Uniform(0, static_cast<int>(sizeof(kAlphabet)) - 1)];
      }
    }
    auto decoded = DecodeKey(key);
    if (decoded.ok()) {
      ++decoded_ok;
      if (EncodeTuple(*decoded) != key) {
        INFO("key " << Hex(key) << " decoded " << Describe(*decoded));
        CHECK(Hex(EncodeTuple(*decoded)) == Hex(key));
      }
    } else {
      CHECK(decoded.status().code() == absl::StatusCode::kInvalidArgument);
    }
  }
  CHECK(decoded_ok > 100);
}

}  // namespace
}  // namespace stagedb
