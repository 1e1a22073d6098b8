// Secrets (secrets.h): generated tokens, their stored hashes and constant-time checks, and field
// encryption; and that neither a token nor an encrypted key reaches the database file in clear.
#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using namespace stagedb;
using stagedb::testing::OpenOrFail;
using stagedb::testing::TempDir;
using Code = absl::StatusCode;

FieldKey TestKey(char fill = 'k') { return *FieldKey::FromBytes(std::string(32, fill)); }

TEST_CASE("generated tokens carry their prefix and are random") {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    absl::StatusOr<std::string> token = GenerateToken("agt_");
    REQUIRE_OK(token);
    REQUIRE(token->starts_with("agt_"));
    CHECK(token->size() == 4 + 39);  // 24 random bytes in base32
    CHECK(token->find_first_not_of("0123456789abcdefghjkmnpqrstvwxyz", 4) == std::string::npos);
    seen.insert(*token);
  }
  CHECK(seen.size() == 1000);
  CHECK(GenerateToken("obs_", 8)->size() == 4 + 13);
}

TEST_CASE("a token is stored as its SHA-256 and a display suffix, and checked in constant time") {
  const HashedToken abc = HashToken("abc");
  CHECK(abc.sha256_hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(abc.display_suffix == "abc");
  const HashedToken hashed = HashToken("sk_live_1234wxyz");
  CHECK(hashed.display_suffix == "wxyz");
  CHECK(TokenMatches("sk_live_1234wxyz", hashed.sha256_hex));
  CHECK_FALSE(TokenMatches("sk_live_1234wxyZ", hashed.sha256_hex));
  CHECK_FALSE(TokenMatches("sk_live_1234wxyz", hashed.sha256_hex.substr(1)));
  CHECK_FALSE(TokenMatches("", hashed.sha256_hex));
}

TEST_CASE("field encryption round-trips and refuses a wrong key, context or altered text") {
  const FieldKey key = TestKey();
  absl::StatusOr<std::string> sealed = EncryptField("sk-provider-secret", key, "providerKeys.key");
  REQUIRE_OK(sealed);
  CHECK(sealed->starts_with("v1:"));
  CHECK(sealed->find("sk-provider-secret") == std::string::npos);
  absl::StatusOr<std::string> opened = DecryptField(*sealed, key, "providerKeys.key");
  REQUIRE_OK(opened);
  CHECK(*opened == "sk-provider-secret");
  // A fresh nonce each time.
  CHECK(*EncryptField("sk-provider-secret", key, "providerKeys.key") != *sealed);
  // Empty plaintext.
  CHECK(*DecryptField(*EncryptField("", key), key) == "");

  CHECK_ERROR(DecryptField(*sealed, TestKey('x'), "providerKeys.key"), Code::kPermissionDenied,
              "does not decrypt");
  CHECK_ERROR(DecryptField(*sealed, key, "other.field"), Code::kPermissionDenied);
  std::string altered = *sealed;
  altered[10] = altered[10] == 'A' ? 'B' : 'A';
  CHECK_ERROR(DecryptField(altered, key, "providerKeys.key"), Code::kPermissionDenied);
  CHECK_ERROR(DecryptField("sk-provider-secret", key), Code::kInvalidArgument, "v1:");
  CHECK_ERROR(DecryptField("v1:AAAA", key), Code::kInvalidArgument);

  CHECK_ERROR(FieldKey::FromBytes("short"), Code::kInvalidArgument, "32", "5");
  CHECK_ERROR(FieldKey::FromHex("zz"), Code::kInvalidArgument, "64 hex digits");
  absl::StatusOr<FieldKey> from_hex = FieldKey::FromHex(std::string(64, 'a'));
  REQUIRE_OK(from_hex);
  CHECK(from_hex->bytes()[0] == 0xaa);
}

// The whole database directory as bytes.
std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST_CASE("tokens and encrypted keys never reach the database file in clear") {
  TempDir dir;
  const std::string path = dir.Sub("db");
  std::string token;
  std::string hash;
  const std::string provider_key = "sk-ant-api03-" + std::string(40, 'q');
  {
    auto db = OpenOrFail(
        {.path = path,
         .schema_json = R"({"tables": {"api_keys": {"fields": {"name": "string", "hash": "string",
            "suffix": "string", "provider_key": "string"},
            "indexes": [{"name": "by_hash", "fields": ["hash"], "unique": true}]}}})"});
    token = *GenerateToken("sk_");
    const HashedToken hashed = HashToken(token);
    hash = hashed.sha256_hex;
    const std::string sealed = *EncryptField(provider_key, TestKey(), "api_keys.provider_key");
    REQUIRE_OK(db->Mutate([&](Transaction& tx) {
      return tx.Insert("api_keys", {{"name", "ci"},
                                    {"hash", hashed.sha256_hex},
                                    {"suffix", hashed.display_suffix},
                                    {"provider_key", sealed}});
    }));
    // Looking a presented token up by its hash finds the key.
    absl::StatusOr<std::optional<Document>> found = db->Query([&](Reader& r) {
      return r.Table("api_keys")
          .WithIndex("by_hash", Eq("hash", HashToken(token).sha256_hex))
          .Unique();
    });
    REQUIRE_OK(found);
    REQUIRE(found->has_value());
    CHECK(*DecryptField((**found)["provider_key"].as_string(), TestKey(),
                        "api_keys.provider_key") == provider_key);
  }
  const std::string bytes = FileBytes(path + "/data.mdb");
  REQUIRE(!bytes.empty());
  CHECK(bytes.find(hash) != std::string::npos);  // the search works on this file
  CHECK(bytes.find(token) == std::string::npos);
  CHECK(bytes.find(token.substr(3)) == std::string::npos);  // not even without its prefix
  CHECK(bytes.find(provider_key) == std::string::npos);
}

TEST_CASE("HMAC-SHA256 signatures: RFC 4231 vector, constant-time check") {
  // RFC 4231, test case 2.
  const std::string signature = stagedb::HmacSha256Hex("Jefe", "what do ya want for nothing?");
  CHECK(signature == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(stagedb::SignatureMatches("Jefe", "what do ya want for nothing?", signature));
  CHECK_FALSE(stagedb::SignatureMatches("Jefe", "what do ya want for nothing!", signature));
  CHECK_FALSE(stagedb::SignatureMatches("jefe", "what do ya want for nothing?", signature));
  CHECK_FALSE(
      stagedb::SignatureMatches("Jefe", "what do ya want for nothing?", signature.substr(0, 63)));
}

}  // namespace
