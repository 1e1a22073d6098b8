#include "stagedb/key_codec.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "values/value_internal.h"

namespace stagedb {
namespace {

// Type tags (see key_codec.h). Their order is the order across types.
constexpr uint8_t kUndefinedTag = 0x10;
constexpr uint8_t kNullTag = 0x20;
constexpr uint8_t kInt64Tag = 0x30;
constexpr uint8_t kFloat64Tag = 0x40;
constexpr uint8_t kBooleanTag = 0x50;
constexpr uint8_t kStringTag = 0x60;
constexpr uint8_t kBytesTag = 0x70;
constexpr uint8_t kArrayTag = 0x80;
constexpr uint8_t kObjectTag = 0x90;

// Ends strings, bytes, arrays and objects. It is below every tag and below kFieldMarker, so a
// proper prefix sorts first.
constexpr uint8_t kTerminator = 0x00;
// Follows a 0x00 byte inside a string or bytes payload to tell it from the terminator.
constexpr uint8_t kEscapedZero = 0xFF;
// Starts each field of an object.
constexpr uint8_t kFieldMarker = 0x01;

constexpr uint64_t kSignBit = uint64_t{1} << 63;

void AppendUint64(uint64_t v, std::string* out) {
  char bytes[8];
  for (int i = 7; i >= 0; --i) {
    bytes[i] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
  out->append(bytes, sizeof(bytes));
}

void AppendEscaped(std::string_view s, std::string* out) {
  size_t start = 0;
  for (size_t zero = s.find('\0'); zero != std::string_view::npos; zero = s.find('\0', start)) {
    out->append(s.data() + start, zero + 1 - start);
    out->push_back(static_cast<char>(kEscapedZero));
    start = zero + 1;
  }
  out->append(s.data() + start, s.size() - start);
  out->push_back(static_cast<char>(kTerminator));
}

// Reads the values of a key, refusing any byte string EncodeKey would not produce, so that a
// decoded key always re-encodes to the same bytes.
class KeyDecoder {
 public:
  explicit KeyDecoder(std::string_view key) : key_(key) {}

  absl::StatusOr<std::vector<Value>> DecodeAll() {
    if (key_.empty()) return absl::InvalidArgumentError("malformed key: empty");
    std::vector<Value> values;
    while (pos_ < key_.size()) {
      Value value;
      if (!DecodeValue(/*depth=*/1, &value)) return status_;
      values.push_back(std::move(value));
    }
    return values;
  }

 private:
  bool DecodeValue(int depth, Value* value) {
    if (pos_ >= key_.size()) return Fail("truncated: expected a value");
    const size_t tag_pos = pos_;
    const uint8_t tag = Byte(pos_++);
    switch (tag) {
      case kUndefinedTag:
        *value = Value(Undefined{});
        return true;
      case kNullTag:
        *value = Value(nullptr);
        return true;
      case kInt64Tag: {
        uint64_t bits;
        if (!ReadUint64(&bits)) return false;
        *value = Value::Int64(static_cast<int64_t>(bits ^ kSignBit));
        return true;
      }
      case kFloat64Tag: {
        uint64_t ordered;
        if (!ReadUint64(&ordered)) return false;
        const double d = internal::FloatFromOrderedBits(ordered);
        if (internal::OrderedFloatBits(d) != ordered) return Fail("non-canonical NaN", tag_pos);
        *value = Value(d);
        return true;
      }
      case kBooleanTag: {
        if (pos_ >= key_.size()) return Fail("truncated boolean");
        const uint8_t b = Byte(pos_++);
        if (b > 1) return Fail("boolean byte is neither 0 nor 1", pos_ - 1);
        *value = Value(b == 1);
        return true;
      }
      case kStringTag: {
        std::string s;
        if (!ReadEscaped(&s)) return false;
        *value = Value(std::move(s));
        return true;
      }
      case kBytesTag: {
        std::string s;
        if (!ReadEscaped(&s)) return false;
        *value = Value(Bytes{std::move(s)});
        return true;
      }
      case kArrayTag: {
        if (depth > internal::kMaxDecodeNestingDepth) return Fail("nested too deeply", tag_pos);
        Array array;
        for (;;) {
          if (pos_ >= key_.size()) return Fail("truncated array");
          if (Byte(pos_) == kTerminator) break;
          Value element;
          if (!DecodeValue(depth + 1, &element)) return false;
          array.push_back(std::move(element));
        }
        ++pos_;
        *value = Value(std::move(array));
        return true;
      }
      case kObjectTag: {
        if (depth > internal::kMaxDecodeNestingDepth) return Fail("nested too deeply", tag_pos);
        Object object;
        for (;;) {
          if (pos_ >= key_.size()) return Fail("truncated object");
          const uint8_t marker = Byte(pos_++);
          if (marker == kTerminator) break;
          if (marker != kFieldMarker) return Fail("expected a field or the end of an object");
          const size_t name_pos = pos_;
          std::string name;
          if (!ReadEscaped(&name)) return false;
          // Encoded objects list their fields in strictly ascending name order.
          if (!object.empty() && !(std::prev(object.end())->first < name)) {
            return Fail("object field names out of order", name_pos);
          }
          Value field_value;
          if (!DecodeValue(depth + 1, &field_value)) return false;
          object.emplace(std::move(name), std::move(field_value));
        }
        *value = Value(std::move(object));
        return true;
      }
      default:
        return Fail(absl::StrCat("unknown type tag 0x", absl::Hex(tag, absl::kZeroPad2)), tag_pos);
    }
  }

  bool ReadUint64(uint64_t* v) {
    if (key_.size() - pos_ < 8) return Fail("truncated number");
    uint64_t result = 0;
    for (int i = 0; i < 8; ++i) result = (result << 8) | Byte(pos_++);
    *v = result;
    return true;
  }

  bool ReadEscaped(std::string* s) {
    for (;;) {
      const size_t zero = key_.find('\0', pos_);
      if (zero == std::string_view::npos) return Fail("unterminated string or bytes");
      s->append(key_.data() + pos_, zero - pos_);
      pos_ = zero + 1;
      if (pos_ < key_.size() && Byte(pos_) == kEscapedZero) {
        s->push_back('\0');
        ++pos_;
      } else {
        return true;
      }
    }
  }

  uint8_t Byte(size_t pos) const { return static_cast<uint8_t>(key_[pos]); }

  bool Fail(std::string_view reason) { return Fail(reason, pos_); }
  bool Fail(std::string_view reason, size_t pos) {
    status_ = absl::InvalidArgumentError(
        absl::StrCat("malformed key at byte ", pos, ": ", internal::AbslView(reason)));
    return false;
  }

  const std::string_view key_;
  size_t pos_ = 0;
  absl::Status status_;
};

}  // namespace

void EncodeKey(const Value& value, std::string* out) {
  switch (value.type()) {
    case Type::kUndefined:
      out->push_back(static_cast<char>(kUndefinedTag));
      return;
    case Type::kNull:
      out->push_back(static_cast<char>(kNullTag));
      return;
    case Type::kInt64:
      out->push_back(static_cast<char>(kInt64Tag));
      AppendUint64(static_cast<uint64_t>(value.as_int64()) ^ kSignBit, out);
      return;
    case Type::kFloat64:
      out->push_back(static_cast<char>(kFloat64Tag));
      AppendUint64(internal::OrderedFloatBits(value.as_float64()), out);
      return;
    case Type::kBoolean:
      out->push_back(static_cast<char>(kBooleanTag));
      out->push_back(value.as_boolean() ? 1 : 0);
      return;
    case Type::kString:
      out->push_back(static_cast<char>(kStringTag));
      AppendEscaped(value.as_string(), out);
      return;
    case Type::kBytes:
      out->push_back(static_cast<char>(kBytesTag));
      AppendEscaped(value.as_bytes().data, out);
      return;
    case Type::kArray:
      out->push_back(static_cast<char>(kArrayTag));
      for (const Value& element : value.as_array()) EncodeKey(element, out);
      out->push_back(static_cast<char>(kTerminator));
      return;
    case Type::kObject:
      out->push_back(static_cast<char>(kObjectTag));
      for (const auto& [name, field_value] : value.as_object()) {
        out->push_back(static_cast<char>(kFieldMarker));
        AppendEscaped(name, out);
        EncodeKey(field_value, out);
      }
      out->push_back(static_cast<char>(kTerminator));
      return;
  }
}

std::string EncodeKey(const Value& value) {
  std::string out;
  EncodeKey(value, &out);
  return out;
}

absl::StatusOr<std::vector<Value>> DecodeKey(std::string_view key) {
  return KeyDecoder(key).DecodeAll();
}

}  // namespace stagedb
