#include "values/document_codec.h"

#include <bit>
#include <cstdint>
#include <cstring>
#include <exception>
#include <istream>
#include <streambuf>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "cereal/archives/portable_binary.hpp"
#include "values/value_internal.h"

namespace stagedb::internal {
namespace {

// ---- Writing (the current format) ----

void AppendVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// Zigzag: small negative numbers get short varints too.
uint64_t ZigZag(int64_t i) {
  return (static_cast<uint64_t>(i) << 1) ^ static_cast<uint64_t>(i >> 63);
}
int64_t UnZigZag(uint64_t u) { return static_cast<int64_t>(u >> 1) ^ -static_cast<int64_t>(u & 1); }

void AppendBytes(std::string_view s, std::string* out) {
  AppendVarint(s.size(), out);
  out->append(s);
}

void AppendObjectFields(const Object& object, std::string* out);

void AppendValue(const Value& value, std::string* out) {
  out->push_back(static_cast<char>(value.type()));
  switch (value.type()) {
    case Type::kUndefined:
    case Type::kNull:
      return;
    case Type::kInt64:
      AppendVarint(ZigZag(value.as_int64()), out);
      return;
    case Type::kFloat64: {
      // The IEEE bits, little-endian, so -0.0 and NaN payloads survive.
      uint64_t bits = std::bit_cast<uint64_t>(value.as_float64());
      for (int i = 0; i < 8; ++i, bits >>= 8) out->push_back(static_cast<char>(bits & 0xFF));
      return;
    }
    case Type::kBoolean:
      out->push_back(value.as_boolean() ? 1 : 0);
      return;
    case Type::kString:
      AppendBytes(value.as_string(), out);
      return;
    case Type::kBytes:
      AppendBytes(value.as_bytes().data, out);
      return;
    case Type::kArray:
      AppendVarint(value.as_array().size(), out);
      for (const Value& element : value.as_array()) AppendValue(element, out);
      return;
    case Type::kObject:
      AppendObjectFields(value.as_object(), out);
      return;
  }
}

void AppendObjectFields(const Object& object, std::string* out) {
  AppendVarint(object.size(), out);
  for (const auto& [name, field_value] : object) {
    AppendBytes(name, out);
    AppendValue(field_value, out);
  }
}

// ---- Reading ----
// A source reads the primitives of one format version; ValueTreeReader reads the value tree,
// which is the same in every version. A source's methods return false when the input runs out
// or a primitive is malformed.

// The current format: LEB128 varints, zigzag int64, little-endian float64 bits.
class CompactSource {
 public:
  explicit CompactSource(std::string_view bytes)
      : next_(bytes.data()), end_(bytes.data() + bytes.size()) {}

  size_t remaining() const { return static_cast<size_t>(end_ - next_); }

  bool Uint8(uint8_t* b) {
    if (next_ == end_) return false;
    *b = static_cast<uint8_t>(*next_++);
    return true;
  }
  bool Count(uint64_t* v) {
    uint64_t result = 0;
    for (int shift = 0; shift < 64 && next_ != end_; shift += 7) {
      const auto byte = static_cast<uint8_t>(*next_++);
      // The tenth byte holds the last bit of a 64-bit value; anything above it is corrupt.
      if (shift == 63 && byte > 1) return false;
      result |= uint64_t{byte & 0x7Fu} << shift;
      if ((byte & 0x80) == 0) {
        *v = result;
        return true;
      }
    }
    return false;
  }
  bool Int64(int64_t* i) {
    uint64_t u;
    if (!Count(&u)) return false;
    *i = UnZigZag(u);
    return true;
  }
  bool Float64(double* d) {
    if (remaining() < 8) return false;
    uint64_t bits = 0;
    for (int i = 7; i >= 0; --i) bits = (bits << 8) | static_cast<uint8_t>(next_[i]);
    next_ += 8;
    *d = std::bit_cast<double>(bits);
    return true;
  }
  // The caller has checked that `n` bytes remain.
  void Bytes(size_t n, std::string* s) {
    s->assign(next_, n);
    next_ += n;
  }

 private:
  const char* next_;
  const char* end_;
};

// Reads from borrowed memory without copying it (format version 1 goes through a std::istream).
class MemorySource : public std::streambuf {
 public:
  void Reset(std::string_view bytes) {
    char* begin = const_cast<char*>(bytes.data());  // never written: this is a read-only buffer
    setg(begin, begin, begin + bytes.size());
  }
  size_t remaining() const { return static_cast<size_t>(egptr() - gptr()); }
};

// Format version 1, written by earlier builds: a Cereal portable-binary archive (a byte-order
// flag, then 8-byte counts and lengths). Kept so that their databases stay readable.
class CerealSource {
 public:
  explicit CerealSource(std::string_view bytes) : archive_(Reset(bytes)) {}

  size_t remaining() const { return source_.remaining(); }
  bool Uint8(uint8_t* b) { return Load(b); }
  bool Count(uint64_t* v) { return Load(v); }
  bool Int64(int64_t* i) { return Load(i); }
  bool Float64(double* d) { return Load(d); }
  void Bytes(size_t n, std::string* s) {
    s->resize(n);
    source_.sgetn(s->data(), static_cast<std::streamsize>(n));
  }

 private:
  std::istream& Reset(std::string_view bytes) {
    source_.Reset(bytes);
    return stream_;
  }
  template <typename T>
  bool Load(T* v) {
    try {
      archive_(*v);
      return true;
    } catch (const std::exception&) {  // cereal::Exception: the input ran out
      return false;
    }
  }

  MemorySource source_;
  std::istream stream_{&source_};
  cereal::PortableBinaryInputArchive archive_;
};

absl::Status Truncated() { return absl::DataLossError("corrupt document: truncated"); }

template <typename Source>
class ValueTreeReader {
 public:
  explicit ValueTreeReader(Source& source) : source_(source) {}

  absl::Status Read(int depth, Value* value) {
    uint8_t type;
    if (!source_.Uint8(&type)) return Truncated();
    switch (static_cast<Type>(type)) {
      case Type::kUndefined:
        *value = Value(Undefined{});
        return absl::OkStatus();
      case Type::kNull:
        *value = Value(nullptr);
        return absl::OkStatus();
      case Type::kInt64: {
        int64_t i;
        if (!source_.Int64(&i)) return Truncated();
        *value = Value::Int64(i);
        return absl::OkStatus();
      }
      case Type::kFloat64: {
        double d;
        if (!source_.Float64(&d)) return Truncated();
        *value = Value(d);
        return absl::OkStatus();
      }
      case Type::kBoolean: {
        uint8_t b;
        if (!source_.Uint8(&b)) return Truncated();
        if (b > 1) return absl::DataLossError("corrupt document: bad boolean");
        *value = Value(b == 1);
        return absl::OkStatus();
      }
      case Type::kString: {
        std::string s;
        if (absl::Status status = ReadBytes(&s); !status.ok()) return status;
        *value = Value(std::move(s));
        return absl::OkStatus();
      }
      case Type::kBytes: {
        std::string s;
        if (absl::Status status = ReadBytes(&s); !status.ok()) return status;
        *value = Value(Bytes{std::move(s)});
        return absl::OkStatus();
      }
      case Type::kArray: {
        if (depth > kMaxDecodeNestingDepth) {
          return absl::DataLossError("corrupt document: nested too deeply");
        }
        uint64_t size = 0;
        if (absl::Status status = ReadCount(&size); !status.ok()) return status;
        Array array;
        array.reserve(size);
        for (uint64_t i = 0; i < size; ++i) {
          if (absl::Status status = Read(depth + 1, &array.emplace_back()); !status.ok()) {
            return status;
          }
        }
        *value = Value(std::move(array));
        return absl::OkStatus();
      }
      case Type::kObject: {
        if (depth > kMaxDecodeNestingDepth) {
          return absl::DataLossError("corrupt document: nested too deeply");
        }
        Object object;
        if (absl::Status status = ReadObjectFields(depth, &object); !status.ok()) return status;
        *value = Value(std::move(object));
        return absl::OkStatus();
      }
    }
    return absl::DataLossError(absl::StrCat("corrupt document: unknown value type ", type));
  }

  // The fields of an object whose type byte has been read.
  absl::Status ReadObjectFields(int depth, Object* object) {
    uint64_t size = 0;
    if (absl::Status status = ReadCount(&size); !status.ok()) return status;
    object->reserve(size);
    std::string name;
    for (uint64_t i = 0; i < size; ++i) {
      if (absl::Status status = ReadBytes(&name); !status.ok()) return status;
      // The writer emits fields in the object's (strictly ascending) order.
      if (!object->empty() && !(std::prev(object->end())->first < name)) {
        return absl::DataLossError("corrupt document: field names out of order");
      }
      auto [field, inserted] = object->emplace(std::move(name), Value());
      if (absl::Status status = Read(depth + 1, &field->second); !status.ok()) return status;
    }
    return absl::OkStatus();
  }

 private:
  // An element count: each element takes at least one byte, so a count beyond the bytes left is
  // corrupt (and must not be used to reserve memory).
  absl::Status ReadCount(uint64_t* count) {
    if (!source_.Count(count)) return Truncated();
    if (*count > source_.remaining()) {
      return absl::DataLossError("corrupt document: count exceeds the input");
    }
    return absl::OkStatus();
  }

  absl::Status ReadBytes(std::string* s) {
    uint64_t size = 0;
    if (absl::Status status = ReadCount(&size); !status.ok()) return status;
    source_.Bytes(size, s);
    return absl::OkStatus();
  }

  Source& source_;
};

// The root must be an object, and the whole input must be used.
template <typename Source>
absl::StatusOr<Object> ReadDocument(Source& source) {
  uint8_t type;
  if (!source.Uint8(&type)) return Truncated();
  if (type != static_cast<uint8_t>(Type::kObject)) {
    const std::string_view name =
        type <= static_cast<uint8_t>(Type::kObject) ? TypeName(static_cast<Type>(type)) : "?";
    return absl::DataLossError(
        absl::StrCat("corrupt document: the root is ", AbslView(name), ", not an object"));
  }
  Object fields;
  ValueTreeReader<Source> reader(source);
  if (absl::Status status = reader.ReadObjectFields(/*depth=*/1, &fields); !status.ok()) {
    return status;
  }
  if (source.remaining() != 0) {
    return absl::DataLossError(
        absl::StrCat("corrupt document: ", source.remaining(), " bytes after the end"));
  }
  return fields;
}

}  // namespace

void EncodeDocument(const Object& fields, std::string* out) {
  out->clear();
  out->push_back(static_cast<char>(kDocumentFormatVersion));
  out->push_back(static_cast<char>(Type::kObject));
  AppendObjectFields(fields, out);
}

absl::StatusOr<Object> DecodeDocument(std::string_view bytes) {
  if (bytes.empty()) return absl::DataLossError("corrupt document: empty");
  const auto version = static_cast<uint8_t>(bytes[0]);
  if (version == kDocumentFormatVersion) {
    CompactSource source(bytes.substr(1));
    return ReadDocument(source);
  }
  if (version == kCerealDocumentFormatVersion) {
    // Cereal's portable archive starts with a byte-order flag (0 big, 1 little endian).
    if (bytes.size() < 2 || static_cast<uint8_t>(bytes[1]) > 1) {
      return absl::DataLossError("corrupt document: bad archive header");
    }
    CerealSource source(bytes.substr(1));
    return ReadDocument(source);
  }
  return absl::DataLossError(
      absl::StrCat("unknown document format version ", version, " (this build reads versions ",
                   kCerealDocumentFormatVersion, " and ", kDocumentFormatVersion, ")"));
}

}  // namespace stagedb::internal
