// Secrets: API tokens and keys, handled the way a database that may be copied, backed up or read
// by another process should handle them.
//
//   Tokens (agent tokens, API keys, MCP tokens, device codes): generate with GenerateToken, show
//   the token to its owner once, store only HashToken's result (a SHA-256 hash and a display
//   suffix), and check a presented token with TokenMatches, which compares in constant time.
//   Recoverable secrets (a provider's API key the app must send on): EncryptField with a key the
//   host supplies (never stored in the database), DecryptField to get it back. AES-256-GCM
//   (OpenSSL): a tampered or foreign ciphertext is refused, not decrypted to garbage.
#ifndef STAGEDB_SECRETS_H_
#define STAGEDB_SECRETS_H_

#include <array>
#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "stagedb/export.h"

namespace stagedb {

// `prefix` (e.g. "agt_", "sk_live_") then `random_bytes` bytes from the operating system's
// cryptographic random source, as base32 (digits and lowercase letters without i, l, o, u).
// Internal when the random source fails.
STAGEDB_EXPORT absl::StatusOr<std::string> GenerateToken(std::string_view prefix,
                                                         size_t random_bytes = 24);

struct HashedToken {
  std::string sha256_hex;      // what to store and look tokens up by (64 hex digits)
  std::string display_suffix;  // the last 4 characters, to show ("…x7k2") and no more
};
STAGEDB_EXPORT HashedToken HashToken(std::string_view token);

// Whether `token` hashes to `stored_sha256_hex`, comparing the hashes in constant time.
STAGEDB_EXPORT bool TokenMatches(std::string_view token, std::string_view stored_sha256_hex);

// HMAC-SHA256 of `message` under `key`, as lowercase hex: signs what is sent out (a webhook's
// body, with the webhook's secret as key) so the receiver can check it came from the holder of
// the secret. Check a received signature with SignatureMatches (constant time).
STAGEDB_EXPORT std::string HmacSha256Hex(std::string_view key, std::string_view message);
STAGEDB_EXPORT bool SignatureMatches(std::string_view key, std::string_view message,
                                     std::string_view signature_hex);

// A 256-bit key for EncryptField, supplied by the host (a key file, a KMS, an environment
// variable); InvalidArgument unless `bytes` is exactly 32 bytes.
class STAGEDB_EXPORT FieldKey {
 public:
  static absl::StatusOr<FieldKey> FromBytes(std::string_view bytes);
  // 64 hex digits.
  static absl::StatusOr<FieldKey> FromHex(std::string_view hex);
  const std::array<unsigned char, 32>& bytes() const { return bytes_; }

 private:
  FieldKey() = default;
  std::array<unsigned char, 32> bytes_{};
};

// Encrypts `plaintext` for storage in a string field: "v1:" then base64 of a random 12-byte
// nonce, the ciphertext and the 16-byte tag. `context` (e.g. "providerKeys.key") is
// authenticated but not stored: decrypting needs the same context, so a ciphertext copied to
// another field does not decrypt there.
STAGEDB_EXPORT absl::StatusOr<std::string> EncryptField(std::string_view plaintext,
                                                        const FieldKey& key,
                                                        std::string_view context = "");
// InvalidArgument for text that is not EncryptField's output; PermissionDenied when the key or
// context is wrong or the ciphertext was altered.
STAGEDB_EXPORT absl::StatusOr<std::string> DecryptField(std::string_view encrypted,
                                                        const FieldKey& key,
                                                        std::string_view context = "");

}  // namespace stagedb

#endif  // STAGEDB_SECRETS_H_
