// Sha256: SHA-256 (OpenSSL) of bytes fed in pieces, as lowercase hex: tokens (secrets.cc) and
// stored files (file_storage.cc), whose bytes arrive a chunk at a time.
#ifndef STAGEDB_SRC_FUNCTIONS_SHA256_H_
#define STAGEDB_SRC_FUNCTIONS_SHA256_H_

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/escaping.h"

namespace stagedb::internal {

class Sha256 {
 public:
  Sha256() : context_(EVP_MD_CTX_new(), EVP_MD_CTX_free) {
    EVP_DigestInit_ex(context_.get(), EVP_sha256(), nullptr);
  }
  Sha256& Update(std::string_view bytes) {
    EVP_DigestUpdate(context_.get(), bytes.data(), bytes.size());
    return *this;
  }
  // The digest of everything fed so far; the object is spent.
  std::string Hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int length = 0;
    EVP_DigestFinal_ex(context_.get(), digest, &length);
    return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), length));
  }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context_;
};

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_FUNCTIONS_SHA256_H_
