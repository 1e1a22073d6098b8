// The values layer: Value order and equality, DebugString, UTF-8 validation, the JSON form,
// ValidateStoredValue's limits, the document codec, DocumentId and Document.
#include "stagedb/value.h"

#include <algorithm>
#include <bit>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "absl/status/status.h"
#include "random_values.h"
#include "stagedb/document.h"
#include "stagedb/id.h"
#include "values/document_codec.h"
#include "values/utf8.h"

namespace stagedb {
namespace {

using namespace std::string_literals;

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

// Debian's Abseil has its own absl::string_view; compare messages as std::string.
std::string Message(const absl::Status& status) { return std::string(status.message()); }

bool Contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

// Bitwise equality for floats (== on Values treats all NaNs as equal but tells -0.0 from 0.0).
uint64_t Bits(double d) { return std::bit_cast<uint64_t>(d); }

// {"a": {"a": ... {}}}: an object `depth` levels deep (depth 1 is {}).
Value NestedObjects(int depth) {
  Value v = Object{};
  for (int i = 1; i < depth; ++i) v = Object{{"a", v}};
  return v;
}

// ---- Value ----

TEST_CASE("TypeName names every type", "[value]") {
  CHECK(TypeName(Type::kUndefined) == "undefined");
  CHECK(TypeName(Type::kNull) == "null");
  CHECK(TypeName(Type::kInt64) == "int64");
  CHECK(TypeName(Type::kFloat64) == "float64");
  CHECK(TypeName(Type::kBoolean) == "boolean");
  CHECK(TypeName(Type::kString) == "string");
  CHECK(TypeName(Type::kBytes) == "bytes");
  CHECK(TypeName(Type::kArray) == "array");
  CHECK(TypeName(Type::kObject) == "object");
}

TEST_CASE("Constructors pick the documented types", "[value]") {
  CHECK(Value().is_null());
  CHECK(Value(Undefined{}).is_undefined());
  CHECK(Value(3).is_int64());
  CHECK(Value(3L).is_int64());
  CHECK(Value(3LL).is_int64());
  CHECK(Value(3u).is_int64());
  CHECK(Value(3.0).is_float64());
  CHECK(Value(true).is_boolean());
  CHECK(Value("s").is_string());
  CHECK(Value(Bytes{"b"}).is_bytes());
  CHECK(Value(Array{}).is_array());
  CHECK(Value(Object{}).is_object());
}

TEST_CASE("Compare orders types as documented", "[value]") {
  // One representative per type, in the documented order; within-type orders are covered with
  // the key codec (key_codec_test.cc), which must agree with Compare.
  const std::vector<Value> by_type = {
      Value(Undefined{}), Value(nullptr), Value::Int64(kInt64Max), Value(-kInf),    Value(false),
      Value(""),          Value(Bytes{}), Value(Array{}),          Value(Object{}),
  };
  for (size_t i = 0; i < by_type.size(); ++i) {
    CHECK(static_cast<size_t>(by_type[i].type()) == i);
    for (size_t j = 0; j < by_type.size(); ++j) {
      INFO(i << " vs " << j);
      CHECK((Compare(by_type[i], by_type[j]) < 0) == (i < j));
      CHECK((Compare(by_type[i], by_type[j]) == 0) == (i == j));
      CHECK(((by_type[i] <=> by_type[j]) < 0) == (i < j));
    }
  }
}

TEST_CASE("Equality is Compare() == 0", "[value]") {
  CHECK(Value(kNaN) == Value(-kNaN));
  CHECK(Value(kNaN) == Value(std::bit_cast<double>(uint64_t{0x7ff0000000000001})));
  CHECK(Value(0.0) != Value(-0.0));
  CHECK(Value(-0.0) < Value(0.0));
  CHECK(Value(1) != Value(1.0));
  CHECK(Value(1) < Value(0.5));
  CHECK(Value("1") != Value(Bytes{"1"}));
  CHECK(Value(Undefined{}) == Value(Undefined{}));
  CHECK(Value(Undefined{}) != Value(nullptr));
  CHECK(Value(Array{1, "x"}) == Value(Array{1, "x"}));
  CHECK(Value(Object{{"a", 1}, {"b", 2}}) == Value(Object{{"b", 2}, {"a", 1}}));
  CHECK(Value(Object{{"a", 1}}) < Value(Object{{"a", 1}, {"b", 2}}));
  CHECK(Value("\xff"s) > Value("a"s));  // bytewise, as unsigned
}

TEST_CASE("operator[] looks up object fields", "[value]") {
  const Value object = Object{{"a", 1}, {"b", Object{{"c", true}}}};
  CHECK(object["a"] == Value(1));
  CHECK(object["b"]["c"] == Value(true));
  CHECK(object["missing"].is_undefined());
  CHECK(object["a"]["x"].is_undefined());  // not an object
  CHECK(Value(Array{1})["0"].is_undefined());
}

TEST_CASE("DebugString renders JSON, undefined, and truncates", "[value]") {
  CHECK(DebugString(Value(Undefined{})) == "undefined");
  CHECK(DebugString(Value(Array{Value(Undefined{}), 1})) == R"([undefined,{"$integer":"1"}])");
  CHECK(DebugString(Value(Object{{"a", "x"}})) == R"({"a":"x"})");
  const std::string long_text(500, 'x');
  const std::string shown = DebugString(Value(long_text), 20);
  CHECK(shown.size() == 23);
  CHECK(shown == "\"" + std::string(19, 'x') + "...");
  CHECK(DebugString(Value("abc"), 5) == "\"abc\"");  // exactly max_len: not cut
  // Never cut inside a UTF-8 character.
  CHECK(DebugString(Value("\xc3\xa9\xc3\xa9"), 2) == "\"...");
  // A large array is cut without rendering all of it.
  Array big(100000, Value(1.5));
  CHECK(DebugString(Value(big), 40).size() == 43);
}

// ---- UTF-8 ----

TEST_CASE("IsValidUtf8 accepts well-formed and refuses ill-formed UTF-8", "[utf8]") {
  using internal::IsValidUtf8;
  CHECK(IsValidUtf8(""));
  CHECK(IsValidUtf8("plain ascii, long enough to take the 8-byte fast path"));
  CHECK(IsValidUtf8("\0"s));
  CHECK(IsValidUtf8("\xc2\x80"));          // U+0080
  CHECK(IsValidUtf8("\xdf\xbf"));          // U+07FF
  CHECK(IsValidUtf8("\xe0\xa0\x80"));      // U+0800
  CHECK(IsValidUtf8("\xed\x9f\xbf"));      // U+D7FF
  CHECK(IsValidUtf8("\xee\x80\x80"));      // U+E000
  CHECK(IsValidUtf8("\xef\xbf\xbf"));      // U+FFFF
  CHECK(IsValidUtf8("\xf0\x90\x80\x80"));  // U+10000
  CHECK(IsValidUtf8("\xf4\x8f\xbf\xbf"));  // U+10FFFF
  CHECK(
      IsValidUtf8("12345678\xc3\xa9"
                  "12345678"));

  CHECK_FALSE(IsValidUtf8("\x80"));              // stray continuation
  CHECK_FALSE(IsValidUtf8("\xc3"));              // truncated
  CHECK_FALSE(IsValidUtf8("\xc3\x28"));          // bad continuation
  CHECK_FALSE(IsValidUtf8("\xc0\x80"));          // overlong NUL
  CHECK_FALSE(IsValidUtf8("\xc1\xbf"));          // overlong
  CHECK_FALSE(IsValidUtf8("\xe0\x80\x80"));      // overlong
  CHECK_FALSE(IsValidUtf8("\xe0\x9f\xbf"));      // overlong
  CHECK_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate U+D800
  CHECK_FALSE(IsValidUtf8("\xed\xbf\xbf"));      // surrogate U+DFFF
  CHECK_FALSE(IsValidUtf8("\xf0\x80\x80\x80"));  // overlong
  CHECK_FALSE(IsValidUtf8("\xf0\x8f\xbf\xbf"));  // overlong
  CHECK_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  CHECK_FALSE(IsValidUtf8("\xf5\x80\x80\x80"));
  CHECK_FALSE(IsValidUtf8("\xff"));
  CHECK_FALSE(IsValidUtf8("\xe2\x82"));  // truncated
  CHECK_FALSE(IsValidUtf8("12345678abcdefgh\xfe"));
}

// ---- JSON ----

TEST_CASE("ValueToJson writes the documented forms", "[json]") {
  CHECK(ValueToJson(Value(nullptr)) == "null");
  CHECK(ValueToJson(Value(true)) == "true");
  CHECK(ValueToJson(Value(false)) == "false");
  CHECK(ValueToJson(Value(1.0)) == "1.0");
  CHECK(ValueToJson(Value(-0.0)) == "-0.0");
  CHECK(ValueToJson(Value(0.0)) == "0.0");
  CHECK(ValueToJson(Value(0.1)) == "0.1");
  CHECK(ValueToJson(Value(-2.5)) == "-2.5");
  CHECK(ValueToJson(Value(1e300)) == "1e+300");
  CHECK(ValueToJson(Value(100.0)) == "100.0");
  CHECK(ValueToJson(Value(kNaN)) == R"({"$float":"NaN"})");
  CHECK(ValueToJson(Value(-kNaN)) == R"({"$float":"NaN"})");
  CHECK(ValueToJson(Value(kInf)) == R"({"$float":"Infinity"})");
  CHECK(ValueToJson(Value(-kInf)) == R"({"$float":"-Infinity"})");
  CHECK(ValueToJson(Value(-42)) == R"({"$integer":"-42"})");
  CHECK(ValueToJson(Value::Int64(kInt64Min)) == R"({"$integer":"-9223372036854775808"})");
  CHECK(ValueToJson(Value(Bytes{"\x00\xff"s})) == R"({"$bytes":"AP8="})");
  CHECK(ValueToJson(Value(Bytes{})) == R"({"$bytes":""})");
  CHECK(ValueToJson(Value("a\"b\\c\n\t\x01\0\x7f\xc3\xa9"s)) ==
        "\"a\\\"b\\\\c\\n\\t\\u0001\\u0000\x7f\xc3\xa9\"");
  CHECK(ValueToJson(Value(Array{})) == "[]");
  CHECK(ValueToJson(Value(Object{})) == "{}");
  CHECK(ValueToJson(Value(Object{{"b", Array{1.5, "x"}}, {"a", nullptr}})) ==
        R"({"a":null,"b":[1.5,"x"]})");
  // Ill-formed UTF-8 in an in-memory string is replaced, so the output is still valid text.
  CHECK(ValueToJson(Value("a\xff"s)) == "\"a\xef\xbf\xbd\"");
}

TEST_CASE("ValueFromJson reads the documented forms", "[json]") {
  auto read = [](std::string_view json) {
    absl::StatusOr<Value> value = ValueFromJson(json);
    INFO(json << " -> " << value.status().ToString());
    REQUIRE(value.ok());
    return *value;
  };
  CHECK(read("null").is_null());
  CHECK(read(" true ") == Value(true));
  CHECK(read("\"x\"") == Value("x"));
  // A plain number is always float64.
  CHECK(read("1") == Value(1.0));
  CHECK(read("-7") == Value(-7.0));
  CHECK(read("18446744073709551615") == Value(18446744073709551615.0));
  CHECK(read("123456789012345678901234567890") == Value(1.2345678901234568e29));
  CHECK(Bits(read("-0").as_float64()) == Bits(-0.0));
  CHECK(Bits(read("0").as_float64()) == Bits(0.0));
  CHECK(Bits(read("-0.0").as_float64()) == Bits(-0.0));
  CHECK(read("1e-400") == Value(0.0));  // underflow rounds to zero, as in JavaScript
  CHECK(read("4.9e-324") == Value(std::numeric_limits<double>::denorm_min()));
  CHECK(read(R"({"$integer":"-9223372036854775808"})") == Value::Int64(kInt64Min));
  CHECK(read(R"({"$integer":"9223372036854775807"})") == Value::Int64(kInt64Max));
  CHECK(read(R"({"$integer": "0"})") == Value(0));
  CHECK(read(R"({"$bytes":"AP8="})") == Value(Bytes{"\x00\xff"s}));
  CHECK(read(R"({"$bytes":""})") == Value(Bytes{}));
  CHECK(std::isnan(read(R"({"$float":"NaN"})").as_float64()));
  CHECK(read(R"({"$float":"Infinity"})") == Value(kInf));
  CHECK(read(R"({"$float":"-Infinity"})") == Value(-kInf));
  CHECK(read(R"("\u00e9\ud83d\ude00\u0000")") == Value("\xc3\xa9\xf0\x9f\x98\x80\0"s));
  CHECK(read(R"({"":1, "a":[{"$integer":"1"}, {"x":{"$bytes":"YQ=="}}]})") ==
        Value(Object{{"", 1.0}, {"a", Array{1, Object{{"x", Bytes{"a"}}}}}}));
  // '$' is reserved only at the start of a key.
  CHECK(read(R"({"a$":1})") == Value(Object{{"a$", 1.0}}));
}

TEST_CASE("ValueFromJson refuses invalid input with a useful message", "[json]") {
  struct Case {
    std::string json;
    std::string message_part;
  };
  const std::vector<Case> cases = {
      {"", "line 1, column 1"},
      {"[1,", "line 1, column 4"},
      {"{\"a\":\n tru}", "line 2"},
      {"1 2", "column 3"},
      {"[1,]", "column 4"},
      {"NaN", "invalid literal"},
      {"1e400", "number overflow"},
      {"\"\xff\"", "invalid"},       // ill-formed UTF-8
      {R"("\ud800")", "surrogate"},  // lone surrogate
      {"{'a':1}", "invalid"},        // not JSON quotes
      {"// comment\n1", "invalid"},  // no comments
      {R"({"a":1,"a":2})", "duplicate field name \"a\""},
      {R"({"$integer":"1.5"})", "not a canonical decimal integer"},
      {R"({"$integer":" 1"})", "not a canonical decimal integer"},
      {R"({"$integer":"+1"})", "not a canonical decimal integer"},
      {R"({"$integer":""})", "not a canonical decimal integer"},
      {R"({"$integer":"007"})", "not a canonical decimal integer"},
      {R"({"$integer":"-0"})", "not a canonical decimal integer"},
      {R"({"$integer":"9223372036854775808"})", "out of the int64 range"},
      {R"({"$integer":1})", "must be a string, not float64"},
      {R"({"$bytes":"!!!"})", "not standard padded base64"},
      {R"({"$bytes":"AP8"})", "not standard padded base64"},
      {R"({"$bytes":"AP 8="})", "not standard padded base64"},
      {R"({"$bytes":"AP-_"})", "not standard padded base64"},
      {R"({"$float":"nan"})", "is not one of"},
      {R"({"$float":"1.5"})", "is not one of"},
      {R"({"$foo":1})", "field name \"$foo\" is reserved"},
      {R"({"$integer":"1","b":2})", "field name \"$integer\" is reserved"},
      {R"({"a":{"b":[1,{"$x":1}]}})", "at \"a.b[1]\""},
      {R"({"a":[{"$integer":"x"}]})", "at \"a[0]\""},
  };
  for (const Case& c : cases) {
    INFO(c.json);
    absl::StatusOr<Value> value = ValueFromJson(c.json);
    REQUIRE_FALSE(value.ok());
    CHECK(value.status().code() == absl::StatusCode::kInvalidArgument);
    INFO(Message(value.status()));
    CHECK(Contains(Message(value.status()), c.message_part));
  }
  // Very deep nesting is refused, not a stack overflow.
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  absl::StatusOr<Value> value = ValueFromJson(deep);
  REQUIRE_FALSE(value.ok());
  CHECK(Contains(Message(value.status()), "nesting deeper than 64"));
  CHECK(ValueFromJson(std::string(64, '[') + std::string(64, ']')).ok());
}

TEST_CASE("JSON round-trips random values exactly", "[json]") {
  const uint64_t seed = 555;
  CAPTURE(seed);
  testing::RandomValueGenerator gen(
      seed, {.max_depth = 4, .allow_undefined = false, .allow_unstorable_keys = false});
  for (int i = 0; i < 10000; ++i) {
    const Value v = gen.Next();
    const std::string json = ValueToJson(v);
    absl::StatusOr<Value> back = ValueFromJson(json);
    if (!back.ok() || *back != v) {
      INFO(json << " -> " << back.status().ToString());
      REQUIRE(back.ok());
      CHECK(ValueToJson(*back) == json);
      CHECK(*back == v);
    }
  }
}

TEST_CASE("JSON round-trips every float64 bit pattern tried", "[json]") {
  std::mt19937_64 rng(8);
  int failures = 0;
  for (int i = 0; i < 50000; ++i) {
    const double d = std::bit_cast<double>(rng());
    if (std::isnan(d)) continue;
    const std::string json = ValueToJson(Value(d));
    absl::StatusOr<Value> back = ValueFromJson(json);
    if (!back.ok() || !back->is_float64() || Bits(back->as_float64()) != Bits(d)) {
      ++failures;
      INFO(json);
      CHECK(back.ok());
    }
  }
  for (const double d :
       {std::numeric_limits<double>::max(), -std::numeric_limits<double>::max(),
        std::numeric_limits<double>::min(), std::numeric_limits<double>::denorm_min(), -0.0, 5e-324,
        1e21, 1e22, 123456789012345680000.0, 0.30000000000000004}) {
    absl::StatusOr<Value> back = ValueFromJson(ValueToJson(Value(d)));
    REQUIRE(back.ok());
    CHECK(Bits(back->as_float64()) == Bits(d));
  }
  CHECK(failures == 0);
}

// ---- ValidateStoredValue ----

void CheckInvalid(const absl::Status& status, std::string_view expected) {
  INFO(status.ToString());
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK(Message(status) == expected);
}

TEST_CASE("ValidateStoredValue accepts storable values", "[validate]") {
  CHECK(ValidateStoredValue(Value(Object{})).ok());
  CHECK(ValidateStoredValue(Value(Object{{"a", Array{nullptr, 1, 1.5, kNaN, true, "é",
                                                     Bytes{"\0\xff"s}, Object{{"b c", 1}}}}}))
            .ok());
  testing::RandomValueGenerator gen(
      1, {.max_depth = 4, .allow_undefined = false, .allow_unstorable_keys = false});
  for (int i = 0; i < 1000; ++i) CHECK(ValidateStoredValue(Value(gen.NextObject())).ok());
}

TEST_CASE("ValidateStoredValue refuses undefined", "[validate]") {
  CheckInvalid(ValidateStoredValue(Value(Undefined{})), "undefined is not a storable value");
  CheckInvalid(ValidateStoredValue(Value(Object{{"a", Object{{"b", Value(Undefined{})}}}})),
               "undefined is not a storable value (field \"a.b\")");
  CheckInvalid(ValidateStoredValue(Value(Object{{"x", Array{1, Value(Undefined{})}}})),
               "undefined is not a storable value (field \"x[1]\")");
}

TEST_CASE("ValidateStoredValue refuses ill-formed UTF-8 strings", "[validate]") {
  const Value doc = Object{{"meta", Object{{"tags", Array{"a", "b", "\xc3"s}}}}};
  CheckInvalid(ValidateStoredValue(doc), "field \"meta.tags[2]\": string is not valid UTF-8");
  CheckInvalid(ValidateStoredValue(Value(Object{{"k\xff"s, 1}})), "field name is not valid UTF-8");
}

TEST_CASE("ValidateStoredValue enforces the nesting depth", "[validate]") {
  CHECK(ValidateStoredValue(NestedObjects(kMaxNestingDepth)).ok());
  // The 17th object is reached through 16 fields named "a".
  std::string path = "a";
  for (int i = 2; i <= kMaxNestingDepth; ++i) path += ".a";
  CheckInvalid(ValidateStoredValue(NestedObjects(kMaxNestingDepth + 1)),
               "field \"" + path + "\": nesting depth 17 exceeds the limit of 16");
  // A scalar inside the deepest allowed object is fine.
  Value deepest_with_scalar = Object{{"x", 1}};
  for (int i = 1; i < kMaxNestingDepth; ++i) {
    deepest_with_scalar = Object{{"a", deepest_with_scalar}};
  }
  CHECK(ValidateStoredValue(deepest_with_scalar).ok());
  // Arrays count as levels too: {"a": [[...]]} with 15 arrays is 16 deep, with 16 is 17.
  Value arrays = Array{};
  std::string array_path = "a";
  for (int i = 1; i < kMaxNestingDepth - 1; ++i) {
    arrays = Array{arrays};
    array_path += "[0]";
  }
  CHECK(ValidateStoredValue(Value(Object{{"a", arrays}})).ok());
  // The 16th array, 17 deep, is element 0 of the 15th.
  CheckInvalid(ValidateStoredValue(Value(Object{{"a", Array{arrays}}})),
               "field \"" + array_path + "[0]\": nesting depth 17 exceeds the limit of 16");
  // The depth argument counts for the value itself.
  CHECK(ValidateStoredValue(NestedObjects(2), "f", kMaxNestingDepth - 1).ok());
  CHECK_FALSE(ValidateStoredValue(NestedObjects(2), "f", kMaxNestingDepth).ok());
}

TEST_CASE("ValidateStoredValue checks field names", "[validate]") {
  CheckInvalid(ValidateStoredValue(Value(Object{{"", 1}})), "field name \"\" is empty");
  CheckInvalid(ValidateStoredValue(Value(Object{{"$x", 1}})), "field name \"$x\" starts with '$'");
  CheckInvalid(ValidateStoredValue(Value(Object{{"a", Object{{"$x", 1}}}})),
               "field \"a\": field name \"$x\" starts with '$'");
  CHECK(ValidateStoredValue(Value(Object{{"x$", 1}})).ok());

  const std::string at_limit(kMaxFieldNameBytes, 'n');
  CHECK(ValidateStoredValue(Value(Object{{at_limit, 1}})).ok());
  CheckInvalid(ValidateStoredValue(Value(Object{{"m", Object{{at_limit + "n", 1}}}})),
               "field \"m\": field name of 1025 bytes exceeds the limit of 1024");
}

TEST_CASE("ValidateStoredValue limits array sizes", "[validate]") {
  Array array(kMaxArrayElements, Value(1));
  CHECK(ValidateStoredValue(Value(Object{{"list", array}})).ok());
  array.push_back(Value(1));
  CheckInvalid(ValidateStoredValue(Value(Object{{"list", array}})),
               "field \"list\": array of 8193 elements exceeds the limit of 8192");
}

TEST_CASE("ValidateStoredValue limits object sizes", "[validate]") {
  Object object;
  for (size_t i = 0; i < kMaxObjectFields; ++i) object["f" + std::to_string(i)] = Value(1);
  CHECK(ValidateStoredValue(Value(Object{{"o", object}})).ok());
  object["one_more"] = Value(1);
  CheckInvalid(ValidateStoredValue(Value(Object{{"o", object}})),
               "field \"o\": object of 1025 fields exceeds the limit of 1024");
  CheckInvalid(ValidateStoredValue(Value(object)),
               "object of 1025 fields exceeds the limit of 1024");
}

TEST_CASE("ValidateStoredValue prefixes paths with its path argument", "[validate]") {
  CheckInvalid(ValidateStoredValue(Value(Array{1, "\xff"s}), "tags", 2),
               "field \"tags[1]\": string is not valid UTF-8");
  CheckInvalid(ValidateStoredValue(Value(Object{{"b", Value(Undefined{})}}), "a", 2),
               "undefined is not a storable value (field \"a.b\")");
  CheckInvalid(ValidateStoredValue(Value("\xff"s), "s", 2),
               "field \"s\": string is not valid UTF-8");
}

// ---- Document codec ----

TEST_CASE("The document codec round-trips random documents", "[document_codec]") {
  const uint64_t seed = 123;
  CAPTURE(seed);
  testing::RandomValueGenerator gen(seed);
  std::string bytes;
  for (int i = 0; i < 5000; ++i) {
    const Object fields = gen.NextObject();
    internal::EncodeDocument(fields, &bytes);
    REQUIRE(!bytes.empty());
    CHECK(static_cast<uint8_t>(bytes[0]) == internal::kDocumentFormatVersion);
    absl::StatusOr<Object> back = internal::DecodeDocument(bytes);
    REQUIRE(back.ok());
    if (Value(*back) != Value(fields)) {
      INFO(DebugString(Value(fields), 2000));
      CHECK(DebugString(Value(*back), 2000) == DebugString(Value(fields), 2000));
    }
  }
}

TEST_CASE("The document codec keeps float bits", "[document_codec]") {
  const double weird_nan = std::bit_cast<double>(uint64_t{0xfff8000000000123});
  const Object fields = {{"n", weird_nan}, {"z", -0.0}, {"d", 5e-324}};
  std::string bytes;
  internal::EncodeDocument(fields, &bytes);
  absl::StatusOr<Object> back = internal::DecodeDocument(bytes);
  REQUIRE(back.ok());
  CHECK(Bits((*back)["n"].as_float64()) == Bits(weird_nan));
  CHECK(Bits((*back)["z"].as_float64()) == Bits(-0.0));
  CHECK((*back)["d"].as_float64() == 5e-324);
}

TEST_CASE("The document codec refuses unknown versions and corrupt input", "[document_codec]") {
  const Object fields = {{"_id", "x"}, {"a", Array{1, "two", Object{{"b", Bytes{"\0"s}}}}}};
  std::string bytes;
  internal::EncodeDocument(fields, &bytes);

  auto check_data_loss = [](std::string_view input, std::string_view message_part) {
    absl::StatusOr<Object> decoded = internal::DecodeDocument(input);
    INFO(decoded.status().ToString());
    REQUIRE_FALSE(decoded.ok());
    CHECK(decoded.status().code() == absl::StatusCode::kDataLoss);
    CHECK(Contains(Message(decoded.status()), message_part));
  };

  std::string other_version = bytes;
  other_version[0] = static_cast<char>(internal::kDocumentFormatVersion + 1);
  check_data_loss(other_version, "unknown document format version 3");
  check_data_loss("", "empty");
  check_data_loss(bytes + "x", "after the end");
  // Every proper prefix is refused (never read as a shorter document).
  for (size_t length = 0; length < bytes.size(); ++length) {
    INFO("truncated to " << length << " of " << bytes.size() << " bytes");
    check_data_loss(std::string_view(bytes).substr(0, length), "");
  }

  // A huge length must be refused before it is allocated. Layout: version, root type, field
  // count (a one-byte varint), then the first field name's length, replaced by a huge varint.
  REQUIRE(bytes[3] == 3);  // "_id"
  const std::string huge_length =
      bytes.substr(0, 3) + "\xff\xff\xff\xff\xff\xff\xff\xff\x7f" + bytes.substr(4);
  check_data_loss(huge_length, "exceeds the input");
  // A varint longer than 64 bits.
  check_data_loss(bytes.substr(0, 3) + std::string(11, '\xff'), "truncated");

  // A root that is not an object.
  std::string not_object = bytes;
  not_object[1] = static_cast<char>(Type::kNull);
  check_data_loss(not_object.substr(0, 2), "not an object");

  // Random corruption: refused or decoded, never a crash.
  std::mt19937_64 rng(5);
  for (int i = 0; i < 20000; ++i) {
    std::string corrupt = bytes;
    const int changes = 1 + static_cast<int>(rng() % 3);
    for (int j = 0; j < changes; ++j) {
      corrupt[1 + rng() % (corrupt.size() - 1)] = static_cast<char>(rng());
    }
    absl::StatusOr<Object> decoded = internal::DecodeDocument(corrupt);
    if (!decoded.ok()) CHECK(decoded.status().code() == absl::StatusCode::kDataLoss);
  }

  // Deep nesting (as corrupt data could claim) is refused, not a stack overflow.
  std::string deep = bytes.substr(0, 2) +
                     "\x01\x01"
                     "a";  // version, object, one field "a"
  for (int i = 0; i < 100000; ++i) {
    deep += static_cast<char>(Type::kArray);
    deep += '\x01';  // one element
  }
  check_data_loss(deep, "nested too deeply");
}

TEST_CASE("The document codec still reads format version 1 (Cereal)", "[document_codec]") {
  // Written by the version-1 encoder of an earlier build.
  const std::string v1 =
      "\x01\x01\x08\x04\x00\x00\x00\x00\x00\x00\x00\x0d\x00\x00\x00\x00\x00\x00\x00\x5f\x63\x72\x65"
      "\x61\x74\x69\x6f\x6e\x54\x69\x6d\x65\x03\x00\x00\x80\x56\xfe\xbc\x78\x42\x03\x00\x00\x00"
      "\x00\x00\x00\x00\x5f\x69\x64\x05\x05\x00\x00\x00\x00\x00\x00\x00\x6b\x31\x61\x62\x63\x01"
      "\x00\x00\x00\x00\x00\x00\x00\x61\x07\x05\x00\x00\x00\x00\x00\x00\x00\x02\xfb\xff\xff\xff"
      "\xff\xff\xff\xff\x05\x03\x00\x00\x00\x00\x00\x00\x00\x74\x77\x6f\x01\x04\x01\x08\x01\x00"
      "\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x62\x06\x02\x00\x00\x00\x00\x00"
      "\x00\x00\x00\x78\x01\x00\x00\x00\x00\x00\x00\x00\x66\x03\x00\x00\x00\x00\x00\x00\xe0\xbf"s;
  const Object want = {
      {"_creationTime", 1.7e12},
      {"_id", "k1abc"},
      {"a", Array{Value::Int64(-5), "two", nullptr, true, Object{{"b", Bytes{"\0x"s}}}}},
      {"f", -0.5}};
  absl::StatusOr<Object> got = internal::DecodeDocument(v1);
  REQUIRE(got.ok());
  CHECK(Value(*got) == Value(want));
  // Truncated version-1 input is refused, as in the current format.
  for (size_t length = 0; length < v1.size(); ++length) {
    CHECK_FALSE(internal::DecodeDocument(std::string_view(v1).substr(0, length)).ok());
  }
}

TEST_CASE("The document codec is compact", "[document_codec]") {
  // Small counts, lengths and integers take one byte each: no 8-byte length prefixes.
  const Object fields = {{"n", Value::Int64(-3)}, {"s", "abc"}};
  std::string bytes;
  internal::EncodeDocument(fields, &bytes);
  // version, object, count, ("n", int64 tag, zigzag -3), ("s", string tag, length, "abc")
  CHECK(bytes.size() == 3 + (2 + 1 + 1) + (2 + 1 + 1 + 3));
}

// ---- DocumentId ----

constexpr std::string_view kIdAlphabet = "0123456789abcdefghjkmnpqrstvwxyz";

// An independent decoder of the documented id text format, to check Generate against it.
std::string DecodeBase32(std::string_view text) {
  std::string bytes;
  uint32_t buffer = 0;
  int bits = 0;
  for (const char c : text) {
    buffer = (buffer << 5) | static_cast<uint32_t>(kIdAlphabet.find(c));
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes += static_cast<char>((buffer >> bits) & 0xFF);
    }
  }
  return bytes;
}

std::string EncodeBase32(std::string_view bytes) {
  std::string text;
  uint32_t buffer = 0;
  int bits = 0;
  for (const char c : bytes) {
    buffer = (buffer << 8) | static_cast<uint8_t>(c);
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      text += kIdAlphabet[(buffer >> bits) & 0x1F];
    }
  }
  if (bits > 0) text += kIdAlphabet[(buffer << (5 - bits)) & 0x1F];
  return text;
}

std::string Fletcher16(std::string_view bytes) {
  uint32_t sum1 = 0;
  uint32_t sum2 = 0;
  for (const char c : bytes) {
    sum1 = (sum1 + static_cast<uint8_t>(c)) % 255;
    sum2 = (sum2 + sum1) % 255;
  }
  return {static_cast<char>(sum2), static_cast<char>(sum1)};
}

// The text of an id with the given varint bytes, and fixed time and random parts.
std::string MakeIdText(const std::string& varint) {
  const std::string body = varint + std::string("\x00\x00\x01\x90\x00\x00\x00\x00", 8) +
                           std::string("\x01\x02\x03\x04\x05\x06", 6);
  return EncodeBase32(body + Fletcher16(body));
}

TEST_CASE("Generated ids follow the documented format", "[id]") {
  const auto before_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  const DocumentId id = DocumentId::Generate(300);  // varint 0xAC 0x02
  CHECK(id.table_number() == 300);
  CHECK(id.text().size() == (2 + 8 + 6 + 2) * 8 / 5 + 1);  // 18 bytes: 29 characters
  CHECK(id.text().find_first_not_of(kIdAlphabet) == std::string::npos);
  const std::string bytes = DecodeBase32(id.text());
  REQUIRE(bytes.size() == 18);
  CHECK(bytes.substr(0, 2) == "\xac\x02");
  uint64_t time_and_sequence = 0;
  for (int i = 2; i < 10; ++i) time_and_sequence = time_and_sequence << 8 | uint8_t(bytes[i]);
  const auto ms = static_cast<int64_t>(time_and_sequence >> 16);
  CHECK(ms >= before_ms);
  CHECK(ms < before_ms + 60000);
  CHECK(bytes.substr(16) == Fletcher16(bytes.substr(0, 16)));

  // And Parse accepts a hand-made id.
  absl::StatusOr<DocumentId> parsed = DocumentId::Parse(MakeIdText("\x05"));
  REQUIRE(parsed.ok());
  CHECK(parsed->table_number() == 5);
}

TEST_CASE("Generated ids are unique, parse back and sort by creation", "[id]") {
  std::unordered_set<std::string> seen;
  std::string previous;
  size_t length = 0;
  for (int i = 0; i < 100000; ++i) {
    const DocumentId id = DocumentId::Generate(7);
    if (i == 0) length = id.text().size();
    CHECK(id.text().size() == length);
    const bool unique = seen.insert(id.text()).second;
    if (!unique) CHECK(unique);
    if (!(previous < id.text())) CHECK(previous < id.text());
    previous = id.text();
    if (i % 1000 == 0) {
      absl::StatusOr<DocumentId> parsed = DocumentId::Parse(id.text());
      REQUIRE(parsed.ok());
      CHECK(*parsed == id);
      CHECK(parsed->table_number() == 7);
    }
  }
  CHECK(seen.size() == 100000);
}

TEST_CASE("Ids generated on many threads are unique", "[id]") {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 25000;
  std::vector<std::vector<std::string>> texts(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&texts, t] {
      for (int i = 0; i < kPerThread; ++i) texts[t].push_back(DocumentId::Generate(1).text());
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::set<std::string> all;
  for (const auto& list : texts) {
    CHECK(std::is_sorted(list.begin(), list.end()));
    all.insert(list.begin(), list.end());
  }
  CHECK(all.size() == kThreads * kPerThread);
}

TEST_CASE("Table numbers of every varint length round-trip", "[id]") {
  for (const uint32_t table :
       {1u, 127u, 128u, 16383u, 16384u, 2097151u, 2097152u, 268435455u, 268435456u, 4294967295u}) {
    const DocumentId id = DocumentId::Generate(table);
    absl::StatusOr<DocumentId> parsed = DocumentId::Parse(id.text());
    INFO(table << " " << id.text());
    REQUIRE(parsed.ok());
    CHECK(parsed->table_number() == table);
    CHECK(*parsed == id);
  }
}

TEST_CASE("DocumentId::Parse refuses malformed ids", "[id]") {
  const std::string good = DocumentId::Generate(42).text();
  REQUIRE(DocumentId::Parse(good).ok());

  auto check_invalid = [](const std::string& text) {
    absl::StatusOr<DocumentId> parsed = DocumentId::Parse(text);
    INFO("\"" << text << "\" -> " << parsed.status().ToString());
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.status().code() == absl::StatusCode::kInvalidArgument);
    if (text.size() < 60 && text.find_first_not_of(kIdAlphabet) == std::string::npos) {
      CHECK(Contains(Message(parsed.status()), text));  // names the text
    }
  };

  check_invalid("");
  check_invalid(std::string(1000, '0'));
  // Alphabet: uppercase, the excluded letters, other characters.
  for (const char c : {'A', 'i', 'l', 'o', 'u', '-', ' ', '\0', '\xff'}) {
    std::string text = good;
    text[3] = c;
    check_invalid(text);
  }
  // Length.
  check_invalid(good.substr(0, good.size() - 1));
  check_invalid(good + "0");
  check_invalid(good.substr(1));
  // Every single-character substitution is caught (by the checksum, the padding or the
  // length of the table number).
  int substitutions = 0;
  for (size_t i = 0; i < good.size(); ++i) {
    for (const char c : kIdAlphabet) {
      if (c == good[i]) continue;
      std::string text = good;
      text[i] = c;
      check_invalid(text);
      ++substitutions;
    }
  }
  CHECK(substitutions == static_cast<int>(good.size()) * 31);
  // Nonzero padding bits: 16 + 1 bytes = 136 bits = 27.2 characters, so 4 padding bits.
  const std::string padded = MakeIdText("\x01");
  REQUIRE(DocumentId::Parse(padded).ok());
  std::string bad_padding = padded;
  bad_padding.back() = kIdAlphabet[kIdAlphabet.find(bad_padding.back()) | 1];
  check_invalid(bad_padding);
  // Table number 0 (with a valid checksum), and a non-minimal varint for table 1.
  check_invalid(MakeIdText(std::string(1, '\0')));
  check_invalid(MakeIdText("\x81\x00"));
  // A table number past uint32.
  check_invalid(MakeIdText("\xff\xff\xff\xff\x7f"));
}

// ---- Document ----

TEST_CASE("Document reads fields by dotted path", "[document]") {
  const DocumentId id = DocumentId::Generate(3);
  const Document doc(id, Object{{"_id", id.text()},
                                {"_creationTime", 1700000000123.5},
                                {"name", "n"},
                                {"meta", Object{{"owner", Object{{"name", "o"}}}, {"n", 1}}},
                                {"list", Array{1, 2}}});
  CHECK(doc.id() == id);
  CHECK(doc.creation_time() == 1700000000123.5);
  CHECK(doc.Get("name") == Value("n"));
  CHECK(doc["name"] == Value("n"));
  CHECK(doc.Get("meta.n") == Value(1));
  CHECK(doc.Get("meta.owner.name") == Value("o"));
  CHECK(doc.Get("meta.owner").is_object());
  CHECK(doc.Get("missing").is_undefined());
  CHECK(doc.Get("meta.missing").is_undefined());
  CHECK(doc.Get("meta.n.deeper").is_undefined());  // through a non-object
  CHECK(doc.Get("list.0").is_undefined());         // paths do not index arrays
  CHECK(doc.Get("").is_undefined());
  CHECK(doc.Get("meta.").is_undefined());
  CHECK(doc.ToValue()["name"] == Value("n"));
  CHECK(doc.ToJson() == ValueToJson(doc.ToValue()));
  CHECK(Contains(doc.ToJson(), R"("meta":{"n":{"$integer":"1"},"owner":{"name":"o"}})"));
  CHECK(Document().creation_time() == 0);
}

}  // namespace
}  // namespace stagedb
