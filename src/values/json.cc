// ValueToJson / ValueFromJson: stagedb's JSON form of values (see value.h). Parsing uses
// nlohmann::json's SAX interface to build Values directly (no intermediate DOM), which also lets
// the builder track the path of the value being read for error messages and bound the nesting
// depth. Writing is done by hand: the form is simple, and a hand-written writer can render
// undefined (for DebugString) and stop early once a length limit is passed.
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "stagedb/value.h"
#include "values/utf8.h"
#include "values/value_internal.h"

// Kept apart: clang-format would otherwise take json.hpp for this file's own header.
#include "nlohmann/json.hpp"

namespace stagedb {
namespace {

constexpr std::string_view kIntegerKey = "$integer";
constexpr std::string_view kBytesKey = "$bytes";
constexpr std::string_view kFloatKey = "$float";

// ---- Writing ----

class JsonWriter {
 public:
  JsonWriter(size_t limit, std::string* out) : limit_(limit), out_(*out) {}

  void Write(const Value& value) {
    if (Full()) return;
    switch (value.type()) {
      case Type::kUndefined:
        out_ += "undefined";
        return;
      case Type::kNull:
        out_ += "null";
        return;
      case Type::kInt64: {
        char buffer[24];
        const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value.as_int64());
        WriteSpecialForm(kIntegerKey, std::string_view(buffer, result.ptr - buffer));
        return;
      }
      case Type::kFloat64:
        WriteFloat(value.as_float64());
        return;
      case Type::kBoolean:
        out_ += value.as_boolean() ? "true" : "false";
        return;
      case Type::kString:
        WriteString(value.as_string());
        return;
      case Type::kBytes:
        WriteSpecialForm(kBytesKey, absl::Base64Escape(value.as_bytes().data));
        return;
      case Type::kArray: {
        out_ += '[';
        bool first = true;
        for (const Value& element : value.as_array()) {
          if (Full()) return;
          if (!first) out_ += ',';
          first = false;
          Write(element);
        }
        out_ += ']';
        return;
      }
      case Type::kObject: {
        out_ += '{';
        bool first = true;
        for (const auto& [name, field_value] : value.as_object()) {
          if (Full()) return;
          if (!first) out_ += ',';
          first = false;
          WriteString(name);
          out_ += ':';
          Write(field_value);
        }
        out_ += '}';
        return;
      }
    }
  }

 private:
  bool Full() const { return out_.size() > limit_; }

  void WriteSpecialForm(std::string_view key, std::string_view text) {
    out_ += "{\"";
    out_ += key;
    out_ += "\":\"";
    out_ += text;
    out_ += "\"}";
  }

  void WriteFloat(double d) {
    if (std::isnan(d)) return WriteSpecialForm(kFloatKey, "NaN");
    if (std::isinf(d)) return WriteSpecialForm(kFloatKey, d > 0 ? "Infinity" : "-Infinity");
    // std::to_chars without a precision gives the shortest text that reads back as exactly `d`
    // (and is locale-independent). A fraction or exponent marks it as float64 to the reader.
    char buffer[32];
    const auto result = std::to_chars(buffer, buffer + sizeof(buffer), d);
    const std::string_view text(buffer, result.ptr - buffer);
    out_ += text;
    if (text.find_first_of(".e") == std::string_view::npos) out_ += ".0";
  }

  void WriteString(std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    out_ += '"';
    size_t pos = 0;
    while (pos < s.size()) {
      const auto c = static_cast<unsigned char>(s[pos]);
      if (c >= 0x80) {
        // Stored strings are valid UTF-8, but a Value built in memory need not be: replace each
        // ill-formed byte by U+FFFD so the output is always valid JSON text.
        const size_t length = internal::Utf8SequenceLength(s, pos);
        if (length == 0) {
          out_ += "\xEF\xBF\xBD";
          ++pos;
        } else {
          out_.append(s.data() + pos, length);
          pos += length;
        }
        continue;
      }
      switch (c) {
        case '"':
          out_ += "\\\"";
          break;
        case '\\':
          out_ += "\\\\";
          break;
        case '\b':
          out_ += "\\b";
          break;
        case '\f':
          out_ += "\\f";
          break;
        case '\n':
          out_ += "\\n";
          break;
        case '\r':
          out_ += "\\r";
          break;
        case '\t':
          out_ += "\\t";
          break;
        default:
          if (c < 0x20) {
            out_ += "\\u00";
            out_ += kHex[c >> 4];
            out_ += kHex[c & 0xF];
          } else {
            out_ += static_cast<char>(c);
          }
      }
      ++pos;
    }
    out_ += '"';
  }

  const size_t limit_;
  std::string& out_;
};

// ---- Reading ----

// A nlohmann::json SAX handler that builds a Value. Each callback returns false to stop the
// parse; the reason is then in status().
class ValueBuilder {
 public:
  using json = nlohmann::json;

  bool null() { return Add(Value(nullptr)); }
  bool boolean(bool b) { return Add(Value(b)); }
  // A plain JSON number is float64 (as in Convex). nlohmann reports integer tokens separately,
  // non-negative ones as unsigned, so a signed zero here can only come from the text "-0".
  bool number_integer(int64_t i) { return Add(Value(i == 0 ? -0.0 : static_cast<double>(i))); }
  bool number_unsigned(uint64_t u) { return Add(Value(static_cast<double>(u))); }
  // The parser refuses non-finite results ("number overflow") before calling this.
  bool number_float(double d, const std::string& /*text*/) { return Add(Value(d)); }
  bool string(std::string& s) {
    if (!internal::IsValidUtf8(s)) return Fail("string is not valid UTF-8");
    return Add(Value(std::move(s)));
  }
  bool binary(json::binary_t& /*binary*/) { return Fail("binary values are not JSON"); }

  bool start_object(size_t /*elements*/) { return Push(/*is_object=*/true); }
  bool key(std::string& name) {
    if (!internal::IsValidUtf8(name)) return Fail("field name is not valid UTF-8");
    Frame& frame = stack_.back();
    if (frame.object.contains(name)) {
      return Fail(absl::StrCat("duplicate field name \"", name, "\""));
    }
    frame.key = std::move(name);
    return true;
  }
  bool end_object() {
    Object object = std::move(stack_.back().object);
    stack_.pop_back();
    absl::StatusOr<Value> value = ObjectToValue(std::move(object));
    if (!value.ok()) return Fail(std::string(value.status().message()));
    return Add(*std::move(value));
  }

  bool start_array(size_t /*elements*/) { return Push(/*is_object=*/false); }
  bool end_array() {
    Array array = std::move(stack_.back().array);
    stack_.pop_back();
    return Add(Value(std::move(array)));
  }

  bool parse_error(size_t /*position*/, const std::string& /*last_token*/,
                   const json::exception& error) {
    // what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ...";
    // the bracketed id means nothing to a user, the position does.
    std::string_view message = error.what();
    if (!message.empty() && message.front() == '[') {
      if (const size_t end = message.find("] "); end != std::string_view::npos) {
        message.remove_prefix(end + 2);
      }
    }
    status_ =
        absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", internal::AbslView(message)));
    return false;
  }

  // The value read, after a successful parse; the error otherwise.
  absl::StatusOr<Value> Result(bool parsed) {
    if (!status_.ok()) return status_;
    if (!parsed || !root_.has_value()) return absl::InvalidArgumentError("invalid JSON");
    return *std::move(root_);
  }

 private:
  struct Frame {
    bool is_object = false;
    Array array;
    Object object;
    std::string key;  // the field being read, in an object
  };

  bool Push(bool is_object) {
    if (stack_.size() >= static_cast<size_t>(internal::kMaxDecodeNestingDepth)) {
      return Fail(absl::StrCat("nesting deeper than ", internal::kMaxDecodeNestingDepth));
    }
    stack_.emplace_back().is_object = is_object;
    return true;
  }

  bool Add(Value value) {
    if (stack_.empty()) {
      root_ = std::move(value);
    } else if (Frame& frame = stack_.back(); frame.is_object) {
      frame.object.emplace(std::move(frame.key), std::move(value));
      frame.key.clear();
    } else {
      frame.array.push_back(std::move(value));
    }
    return true;
  }

  // The path of the value being read ("a.b[2]"), for error messages.
  std::string CurrentPath() const {
    std::string path;
    for (const Frame& frame : stack_) {
      if (frame.is_object) {
        if (!path.empty()) path += '.';
        path += frame.key;
      } else {
        absl::StrAppend(&path, "[", frame.array.size(), "]");
      }
    }
    return path;
  }

  bool Fail(std::string message) {
    const std::string path = CurrentPath();
    status_ = absl::InvalidArgumentError(
        path.empty() ? absl::StrCat("invalid JSON value: ", message)
                     : absl::StrCat("invalid JSON value at \"", path, "\": ", message));
    return false;
  }

  // Turns the special forms {"$integer": ...}, {"$bytes": ...} and {"$float": ...} into their
  // values; any other object with a key starting with '$' is refused.
  static absl::StatusOr<Value> ObjectToValue(Object object) {
    if (object.size() == 1) {
      const auto& [key, value] = *object.begin();
      if (key == kIntegerKey || key == kBytesKey || key == kFloatKey) {
        if (!value.is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat("the value of \"", key, "\" must be a string, not ",
                           internal::AbslView(TypeName(value.type()))));
        }
        return SpecialFormToValue(key, value.as_string());
      }
    }
    for (const auto& [key, value] : object) {
      if (!key.empty() && key.front() == '$') {
        return absl::InvalidArgumentError(absl::StrCat(
            "field name \"", key,
            "\" is reserved: '$' starts only {\"$integer\": ...}, {\"$bytes\": ...} and "
            "{\"$float\": ...}, each alone in its object"));
      }
    }
    return Value(std::move(object));
  }

  static absl::StatusOr<Value> SpecialFormToValue(std::string_view key, const std::string& text) {
    if (key == kIntegerKey) {
      int64_t i = 0;
      const char* end = text.data() + text.size();
      const auto result = std::from_chars(text.data(), end, i);
      if (result.ec == std::errc::result_out_of_range) {
        return absl::InvalidArgumentError(
            absl::StrCat("$integer \"", text, "\" is out of the int64 range"));
      }
      // Canonical decimal only ("-0" and leading zeros are refused), as ValueToJson writes it.
      if (text.empty() || result.ec != std::errc() || result.ptr != end ||
          absl::StrCat(i) != text) {
        return absl::InvalidArgumentError(
            absl::StrCat("$integer \"", text, "\" is not a canonical decimal integer"));
      }
      return Value::Int64(i);
    }
    if (key == kBytesKey) {
      std::string bytes;
      // absl also accepts whitespace and missing padding; only the canonical text is taken, so
      // that the text form of bytes is unique.
      if (!absl::Base64Unescape(text, &bytes) || absl::Base64Escape(bytes) != text) {
        return absl::InvalidArgumentError(
            absl::StrCat("$bytes \"", text, "\" is not standard padded base64"));
      }
      return Value(Bytes{std::move(bytes)});
    }
    if (text == "NaN") return Value(std::numeric_limits<double>::quiet_NaN());
    if (text == "Infinity") return Value(std::numeric_limits<double>::infinity());
    if (text == "-Infinity") return Value(-std::numeric_limits<double>::infinity());
    return absl::InvalidArgumentError(absl::StrCat(
        "$float \"", text, "\" is not one of \"NaN\", \"Infinity\" and \"-Infinity\""));
  }

  std::vector<Frame> stack_;
  std::optional<Value> root_;
  absl::Status status_;
};

}  // namespace

namespace internal {

void AppendJson(const Value& value, size_t limit, std::string* out) {
  JsonWriter(limit, out).Write(value);
}

}  // namespace internal

std::string ValueToJson(const Value& value) {
  std::string out;
  internal::AppendJson(value, std::numeric_limits<size_t>::max(), &out);
  return out;
}

absl::StatusOr<Value> ValueFromJson(std::string_view json) {
  ValueBuilder builder;
  bool parsed = false;
  try {
    parsed = nlohmann::json::sax_parse(json.begin(), json.end(), &builder);
  } catch (const std::exception& e) {
    // The SAX parser reports errors through parse_error(); this is only a safety net so that no
    // exception escapes.
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", e.what()));
  }
  return builder.Result(parsed);
}

}  // namespace stagedb
