#include "queries/pagination_cursor.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/strings/escaping.h"

namespace stagedb::internal {
namespace {

constexpr char kCursorVersion = 1;
constexpr size_t kMacBytes = 16;

std::string Mac(std::string_view payload, std::string_view fingerprint, std::string_view secret) {
  // Length-prefixed, so no payload and fingerprint pair can pass for another.
  std::string message = std::to_string(payload.size());
  message.push_back(':');
  message.append(payload);
  message.append(fingerprint);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &length);
  return std::string(reinterpret_cast<const char*>(digest), kMacBytes);
}

}  // namespace

std::string EncodeCursor(const CursorPosition& position, std::string_view fingerprint,
                         std::string_view secret) {
  std::string payload;
  payload.push_back(kCursorVersion);
  payload.push_back(position.done ? 1 : 0);
  payload.append(position.key);
  payload.append(Mac(payload, fingerprint, secret));
  return absl::WebSafeBase64Escape(payload);
}

absl::StatusOr<CursorPosition> DecodeCursor(std::string_view text, std::string_view fingerprint,
                                            std::string_view secret) {
  std::string payload;
  if (!absl::WebSafeBase64Unescape(absl::string_view(text.data(), text.size()), &payload) ||
      payload.size() < 2 + kMacBytes || payload[0] != kCursorVersion || (payload[1] & ~1) != 0) {
    return absl::InvalidArgumentError("invalid pagination cursor: not a stagedb cursor");
  }
  const std::string_view body(payload.data(), payload.size() - kMacBytes);
  const std::string expected = Mac(body, fingerprint, secret);
  if (CRYPTO_memcmp(expected.data(), payload.data() + body.size(), kMacBytes) != 0) {
    return absl::InvalidArgumentError(
        "invalid pagination cursor: it was not made by this query on this database, or it was "
        "altered");
  }
  return CursorPosition{.done = payload[1] == 1, .key = std::string(body.substr(2))};
}

}  // namespace stagedb::internal
