#include "stagedb/id.h"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "values/value_internal.h"

namespace stagedb {
namespace {

// Crockford's base32 alphabet, lowercase. It is in ascending ASCII order, which is what makes the
// text order of equal-length ids their byte order.
constexpr std::string_view kAlphabet = "0123456789abcdefghjkmnpqrstvwxyz";

constexpr size_t kTimeBytes = 8;
constexpr size_t kRandomBytes = 6;
constexpr size_t kChecksumBytes = 2;
constexpr size_t kMaxVarintBytes = 5;  // a uint32 in LEB128
constexpr size_t kMaxIdBytes = kMaxVarintBytes + kTimeBytes + kRandomBytes + kChecksumBytes;

// -1 for characters outside the alphabet.
constexpr std::array<int8_t, 256> MakeDecodeTable() {
  std::array<int8_t, 256> table{};
  for (auto& entry : table) entry = -1;
  for (size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<uint8_t>(kAlphabet[i])] = static_cast<int8_t>(i);
  }
  return table;
}
constexpr std::array<int8_t, 256> kDecodeTable = MakeDecodeTable();

// Fletcher-16 (both sums modulo 255), written big-endian as sum2 then sum1.
uint16_t Fletcher16(std::string_view bytes) {
  uint32_t sum1 = 0;
  uint32_t sum2 = 0;
  for (const char c : bytes) {
    sum1 = (sum1 + static_cast<uint8_t>(c)) % 255;
    sum2 = (sum2 + sum1) % 255;
  }
  return static_cast<uint16_t>((sum2 << 8) | sum1);
}

size_t Base32Length(size_t num_bytes) { return (num_bytes * 8 + 4) / 5; }

absl::Status InvalidId(std::string_view text, std::string_view reason) {
  // The text may be anything a caller passed in: escape it and keep the message short.
  constexpr size_t kMaxShown = 64;
  std::string shown =
      absl::CHexEscape(absl::string_view(text.data(), std::min(text.size(), kMaxShown)));
  if (text.size() > kMaxShown) shown += "...";
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid document id \"", shown, "\": ", absl::string_view(reason.data(), reason.size())));
}

// The last (ms << 16 | sequence) handed out in this process; each Generate takes a strictly
// larger one, so ids are unique in the process even when the clock stalls or steps back.
std::atomic<uint64_t> last_time_and_sequence{0};

uint64_t NextTimeAndSequence() {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const auto ms =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(now).count());
  const uint64_t candidate = ms << 16;
  uint64_t last = last_time_and_sequence.load(std::memory_order_relaxed);
  for (;;) {
    // More than 65,536 ids in one millisecond borrow from the next millisecond; order is kept.
    const uint64_t next = candidate > last ? candidate : last + 1;
    if (last_time_and_sequence.compare_exchange_weak(last, next, std::memory_order_relaxed)) {
      return next;
    }
  }
}

}  // namespace

namespace internal {

std::string Base32Encode(std::string_view bytes) {
  std::string text;
  text.reserve(Base32Length(bytes.size()));
  uint32_t buffer = 0;
  int bits = 0;
  for (const char c : bytes) {
    buffer = (buffer << 8) | static_cast<uint8_t>(c);
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      text.push_back(kAlphabet[(buffer >> bits) & 0x1F]);
    }
  }
  if (bits > 0) text.push_back(kAlphabet[(buffer << (5 - bits)) & 0x1F]);
  return text;
}

}  // namespace internal

DocumentId DocumentId::Generate(uint32_t table_number) {
  thread_local absl::BitGen bitgen;

  std::string bytes;
  bytes.reserve(kMaxIdBytes);
  uint32_t varint = table_number;
  do {
    const auto low = static_cast<uint8_t>(varint & 0x7F);
    varint >>= 7;
    bytes.push_back(static_cast<char>(varint != 0 ? (low | 0x80) : low));
  } while (varint != 0);

  const uint64_t time_and_sequence = NextTimeAndSequence();
  for (int shift = 56; shift >= 0; shift -= 8) {
    bytes.push_back(static_cast<char>((time_and_sequence >> shift) & 0xFF));
  }
  const uint64_t random = absl::Uniform<uint64_t>(bitgen);
  for (size_t i = 0; i < kRandomBytes; ++i) {
    bytes.push_back(static_cast<char>((random >> (8 * i)) & 0xFF));
  }
  const uint16_t checksum = Fletcher16(bytes);
  bytes.push_back(static_cast<char>(checksum >> 8));
  bytes.push_back(static_cast<char>(checksum & 0xFF));

  return DocumentId(internal::Base32Encode(bytes), table_number);
}

absl::StatusOr<DocumentId> DocumentId::Parse(std::string_view text) {
  if (text.empty()) return InvalidId(text, "empty");
  if (text.size() > Base32Length(kMaxIdBytes)) return InvalidId(text, "too long");

  // Base32 decode, MSB first.
  std::string bytes;
  uint32_t buffer = 0;
  int bits = 0;
  for (const char c : text) {
    const int8_t digit = kDecodeTable[static_cast<uint8_t>(c)];
    if (digit < 0) {
      return InvalidId(text, absl::StrCat("character '", absl::CHexEscape(std::string(1, c)),
                                          "' is not in the id alphabet"));
    }
    buffer = (buffer << 5) | static_cast<uint32_t>(digit);
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  // A well-formed text is the shortest that holds its bytes, padded with zero bits.
  if (Base32Length(bytes.size()) != text.size()) return InvalidId(text, "wrong length");
  if ((buffer & ((1u << bits) - 1)) != 0) return InvalidId(text, "nonzero padding bits");

  // Table number: LEB128, minimal (one encoding per number) and within uint32.
  uint64_t table_number = 0;
  size_t varint_length = 0;
  for (;;) {
    if (varint_length >= bytes.size() || varint_length >= kMaxVarintBytes) {
      return InvalidId(text, "bad table number");
    }
    const auto byte = static_cast<uint8_t>(bytes[varint_length]);
    table_number |= static_cast<uint64_t>(byte & 0x7F) << (7 * varint_length);
    ++varint_length;
    if ((byte & 0x80) == 0) {
      if (byte == 0 && varint_length > 1) return InvalidId(text, "bad table number");
      break;
    }
  }
  if (table_number > UINT32_MAX) return InvalidId(text, "bad table number");
  if (bytes.size() != varint_length + kTimeBytes + kRandomBytes + kChecksumBytes) {
    return InvalidId(text, "wrong length");
  }
  const std::string_view body(bytes.data(), bytes.size() - kChecksumBytes);
  const uint16_t stored =
      static_cast<uint16_t>((static_cast<uint8_t>(bytes[bytes.size() - 2]) << 8) |
                            static_cast<uint8_t>(bytes[bytes.size() - 1]));
  if (Fletcher16(body) != stored) return InvalidId(text, "checksum mismatch");
  if (table_number == 0) return InvalidId(text, "table number 0");

  return DocumentId(std::string(text), static_cast<uint32_t>(table_number));
}

}  // namespace stagedb
