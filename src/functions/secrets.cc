#include "stagedb/secrets.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "functions/sha256.h"
#include "values/value_internal.h"

namespace stagedb {
namespace {

constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr std::string_view kFieldPrefix = "v1:";

// Compares in time that depends only on the lengths, not on where the texts differ.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string Sha256Hex(std::string_view bytes) { return internal::Sha256().Update(bytes).Hex(); }

using CipherContext = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

CipherContext NewCipherContext() {
  return CipherContext(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
}

const unsigned char* UnsignedData(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

absl::StatusOr<std::string> GenerateToken(std::string_view prefix, size_t random_bytes) {
  std::string random(random_bytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(random.data()),
                 static_cast<int>(random.size())) != 1) {
    return absl::InternalError("the cryptographic random source failed");
  }
  return absl::StrCat(absl::string_view(prefix.data(), prefix.size()),
                      internal::Base32Encode(random));
}

HashedToken HashToken(std::string_view token) {
  const size_t shown = std::min<size_t>(4, token.size());
  return HashedToken{.sha256_hex = Sha256Hex(token),
                     .display_suffix = std::string(token.substr(token.size() - shown))};
}

bool TokenMatches(std::string_view token, std::string_view stored_sha256_hex) {
  return ConstantTimeEquals(Sha256Hex(token), stored_sha256_hex);
}

std::string HmacSha256Hex(std::string_view key, std::string_view message) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &length);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), length));
}

bool SignatureMatches(std::string_view key, std::string_view message,
                      std::string_view signature_hex) {
  return ConstantTimeEquals(HmacSha256Hex(key, message), signature_hex);
}

absl::StatusOr<FieldKey> FieldKey::FromBytes(std::string_view bytes) {
  FieldKey key;
  if (bytes.size() != key.bytes_.size()) {
    return absl::InvalidArgumentError(absl::StrFormat("a field encryption key is %d bytes, not %d",
                                                      key.bytes_.size(), bytes.size()));
  }
  std::copy(bytes.begin(), bytes.end(), key.bytes_.begin());
  return key;
}

absl::StatusOr<FieldKey> FieldKey::FromHex(std::string_view hex) {
  const bool is_hex = hex.size() == 64 && std::all_of(hex.begin(), hex.end(), [](char c) {
                        return std::isxdigit(static_cast<unsigned char>(c));
                      });
  if (!is_hex) {
    return absl::InvalidArgumentError("a field encryption key in hex is 64 hex digits (32 bytes)");
  }
  return FromBytes(absl::HexStringToBytes(absl::string_view(hex.data(), hex.size())));
}

absl::StatusOr<std::string> EncryptField(std::string_view plaintext, const FieldKey& key,
                                         std::string_view context) {
  std::string sealed(kNonceBytes + plaintext.size() + kTagBytes, '\0');
  unsigned char* nonce = reinterpret_cast<unsigned char*>(sealed.data());
  unsigned char* out = nonce + kNonceBytes;
  if (RAND_bytes(nonce, static_cast<int>(kNonceBytes)) != 1) {
    return absl::InternalError("the cryptographic random source failed");
  }
  CipherContext ctx = NewCipherContext();
  int written = 0;
  int final_written = 0;
  const bool ok =
      ctx != nullptr &&
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.bytes().data(), nonce) == 1 &&
      EVP_EncryptUpdate(ctx.get(), nullptr, &written, UnsignedData(context),
                        static_cast<int>(context.size())) == 1 &&
      EVP_EncryptUpdate(ctx.get(), out, &written, UnsignedData(plaintext),
                        static_cast<int>(plaintext.size())) == 1 &&
      EVP_EncryptFinal_ex(ctx.get(), out + written, &final_written) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagBytes),
                          out + plaintext.size()) == 1;
  if (!ok) return absl::InternalError("AES-256-GCM encryption failed (OpenSSL)");
  return absl::StrCat(absl::string_view(kFieldPrefix.data(), kFieldPrefix.size()),
                      absl::Base64Escape(sealed));
}

absl::StatusOr<std::string> DecryptField(std::string_view encrypted, const FieldKey& key,
                                         std::string_view context) {
  std::string sealed;
  if (!encrypted.starts_with(kFieldPrefix) ||
      !absl::Base64Unescape(absl::string_view(encrypted.data() + kFieldPrefix.size(),
                                              encrypted.size() - kFieldPrefix.size()),
                            &sealed) ||
      sealed.size() < kNonceBytes + kTagBytes) {
    return absl::InvalidArgumentError(
        "not an encrypted field (EncryptField's output starts with \"v1:\" then base64)");
  }
  const unsigned char* nonce = UnsignedData(sealed);
  const unsigned char* ciphertext = nonce + kNonceBytes;
  const size_t length = sealed.size() - kNonceBytes - kTagBytes;
  std::string plaintext(length, '\0');
  CipherContext ctx = NewCipherContext();
  int written = 0;
  int final_written = 0;
  const bool ok =
      ctx != nullptr &&
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.bytes().data(), nonce) == 1 &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &written, UnsignedData(context),
                        static_cast<int>(context.size())) == 1 &&
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(plaintext.data()), &written,
                        ciphertext, static_cast<int>(length)) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagBytes),
                          const_cast<unsigned char*>(ciphertext + length)) == 1 &&
      EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(plaintext.data()) + written,
                          &final_written) == 1;
  if (!ok) {
    return absl::PermissionDeniedError(
        "the encrypted field does not decrypt: a wrong key or context, or altered ciphertext");
  }
  return plaintext;
}

}  // namespace stagedb
