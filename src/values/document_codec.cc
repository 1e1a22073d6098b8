#include "values/document_codec.h"

#include <cstdint>
#include <exception>
#include <istream>
#include <ostream>
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

// Writes straight into a std::string, so encoding needs no intermediate copy.
class StringSink : public std::streambuf {
 public:
  void Reset(std::string* out) { out_ = out; }

 protected:
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      out_->push_back(traits_type::to_char_type(c));
    }
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    out_->append(s, static_cast<size_t>(n));
    return n;
  }

 private:
  std::string* out_ = nullptr;
};

// Reads from borrowed memory without copying it; also tells how many bytes are left, which lets
// the decoder reject a corrupt length before allocating for it.
class MemorySource : public std::streambuf {
 public:
  void Reset(std::string_view bytes) {
    char* begin = const_cast<char*>(bytes.data());  // never written: this is a read-only buffer
    setg(begin, begin, begin + bytes.size());
  }
  size_t remaining() const { return static_cast<size_t>(egptr() - gptr()); }
};

class DocumentWriter {
 public:
  explicit DocumentWriter(std::ostream& stream)
      : archive_(stream, cereal::PortableBinaryOutputArchive::Options::LittleEndian()) {}

  void Write(const Value& value) {
    archive_(static_cast<uint8_t>(value.type()));
    switch (value.type()) {
      case Type::kUndefined:
      case Type::kNull:
        return;
      case Type::kInt64:
        archive_(value.as_int64());
        return;
      case Type::kFloat64:
        archive_(value.as_float64());  // the IEEE bits, so -0.0 and NaN payloads survive
        return;
      case Type::kBoolean:
        archive_(static_cast<uint8_t>(value.as_boolean() ? 1 : 0));
        return;
      case Type::kString:
        WriteBytes(value.as_string());
        return;
      case Type::kBytes:
        WriteBytes(value.as_bytes().data);
        return;
      case Type::kArray:
        archive_(static_cast<uint64_t>(value.as_array().size()));
        for (const Value& element : value.as_array()) Write(element);
        return;
      case Type::kObject:
        WriteObjectFields(value.as_object());
        return;
    }
  }

  // An object as a whole value, type byte first; lets EncodeDocument write the fields without
  // first copying them into a Value.
  void WriteObject(const Object& object) {
    archive_(static_cast<uint8_t>(Type::kObject));
    WriteObjectFields(object);
  }

 private:
  // Length-prefixed bytes (rather than cereal's std::string support) so that the reader can
  // check the length against the input before allocating.
  void WriteBytes(std::string_view s) {
    archive_(static_cast<uint64_t>(s.size()));
    archive_.saveBinary<1>(s.data(), static_cast<std::streamsize>(s.size()));
  }

  void WriteObjectFields(const Object& object) {
    archive_(static_cast<uint64_t>(object.size()));
    for (const auto& [name, field_value] : object) {
      WriteBytes(name);
      Write(field_value);
    }
  }

  cereal::PortableBinaryOutputArchive archive_;
};

// Reads the value tree. Running out of input surfaces as a cereal::Exception (caught by
// DecodeDocument); other corruption as the status returned.
class DocumentReader {
 public:
  DocumentReader(std::istream& stream, const MemorySource& source)
      : archive_(stream), source_(source) {}

  absl::Status Read(int depth, Value* value) {
    const uint8_t type = ReadUint8();
    switch (static_cast<Type>(type)) {
      case Type::kUndefined:
        *value = Value(Undefined{});
        return absl::OkStatus();
      case Type::kNull:
        *value = Value(nullptr);
        return absl::OkStatus();
      case Type::kInt64: {
        int64_t i;
        archive_(i);
        *value = Value::Int64(i);
        return absl::OkStatus();
      }
      case Type::kFloat64: {
        double d;
        archive_(d);
        *value = Value(d);
        return absl::OkStatus();
      }
      case Type::kBoolean: {
        const uint8_t b = ReadUint8();
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
        uint64_t size;
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
        uint64_t size;
        if (absl::Status status = ReadCount(&size); !status.ok()) return status;
        Object object;
        object.reserve(size);
        for (uint64_t i = 0; i < size; ++i) {
          std::string name;
          if (absl::Status status = ReadBytes(&name); !status.ok()) return status;
          // The writer emits fields in the map's (strictly ascending) order.
          if (!object.empty() && !(std::prev(object.end())->first < name)) {
            return absl::DataLossError("corrupt document: field names out of order");
          }
          Value field_value;
          if (absl::Status status = Read(depth + 1, &field_value); !status.ok()) return status;
          object.emplace(std::move(name), std::move(field_value));
        }
        *value = Value(std::move(object));
        return absl::OkStatus();
      }
    }
    return absl::DataLossError(absl::StrCat("corrupt document: unknown value type ", type));
  }

 private:
  uint8_t ReadUint8() {
    uint8_t b;
    archive_(b);
    return b;
  }

  // An element count: each element takes at least one byte, so a count beyond the bytes left is
  // corrupt (and must not be used to reserve memory).
  absl::Status ReadCount(uint64_t* count) {
    archive_(*count);
    if (*count > source_.remaining()) {
      return absl::DataLossError("corrupt document: count exceeds the input");
    }
    return absl::OkStatus();
  }

  absl::Status ReadBytes(std::string* s) {
    uint64_t size;
    if (absl::Status status = ReadCount(&size); !status.ok()) return status;
    s->resize(size);
    archive_.loadBinary<1>(s->data(), static_cast<std::streamsize>(size));
    return absl::OkStatus();
  }

  cereal::PortableBinaryInputArchive archive_;
  const MemorySource& source_;
};

// Streams are costly to construct (locale set-up), and documents are encoded and decoded on every
// write and read: each thread keeps one pair and points it at the bytes of the moment.
struct ThreadStreams {
  StringSink sink;
  std::ostream out{&sink};
  MemorySource source;
  std::istream in{&source};
};
ThreadStreams& Streams() {
  thread_local ThreadStreams streams;
  return streams;
}

}  // namespace

void EncodeDocument(const Object& fields, std::string* out) {
  out->clear();
  out->push_back(static_cast<char>(kDocumentFormatVersion));
  ThreadStreams& streams = Streams();
  streams.sink.Reset(out);
  streams.out.clear();
  DocumentWriter writer(streams.out);
  writer.WriteObject(fields);
  streams.sink.Reset(nullptr);
}

absl::StatusOr<Object> DecodeDocument(std::string_view bytes) {
  if (bytes.empty()) return absl::DataLossError("corrupt document: empty");
  const auto version = static_cast<uint8_t>(bytes[0]);
  if (version != kDocumentFormatVersion) {
    return absl::DataLossError(absl::StrCat("unknown document format version ", version,
                                            " (this build reads version ", kDocumentFormatVersion,
                                            ")"));
  }
  // Cereal's portable archive starts with a byte-order flag (0 big, 1 little endian).
  if (bytes.size() < 2 || static_cast<uint8_t>(bytes[1]) > 1) {
    return absl::DataLossError("corrupt document: bad archive header");
  }
  ThreadStreams& streams = Streams();
  MemorySource& source = streams.source;
  std::istream& stream = streams.in;
  source.Reset(bytes.substr(1));
  stream.clear();
  try {
    DocumentReader reader(stream, source);
    Value root;
    if (absl::Status status = reader.Read(/*depth=*/1, &root); !status.ok()) return status;
    if (!root.is_object()) {
      return absl::DataLossError(absl::StrCat("corrupt document: the root is ",
                                              AbslView(TypeName(root.type())), ", not an object"));
    }
    if (source.remaining() != 0) {
      return absl::DataLossError(
          absl::StrCat("corrupt document: ", source.remaining(), " bytes after the end"));
    }
    return std::move(root.as_object());
  } catch (const cereal::Exception& e) {
    return absl::DataLossError(absl::StrCat("corrupt document: ", e.what()));
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("corrupt document: ", e.what()));
  }
}

}  // namespace stagedb::internal
