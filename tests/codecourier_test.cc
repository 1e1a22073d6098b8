// The CodeCourier application (stagedb/apps/codecourier.h): membership and roles, API keys
// hashed and provider keys sealed (also in the database file's bytes), paginated lists while
// another thread inserts, live conversations and run steps firing on their own writes only,
// counters equal to the real counts after concurrent creates, the internal callbacks, the
// scheduled learning extraction and the usage summary. Written against the public API only.
#include "stagedb/apps/codecourier.h"

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using namespace stagedb;
using stagedb::testing::CountRuns;
using stagedb::testing::kHangGuard;
using stagedb::testing::MustSucceed;
using stagedb::testing::OpenOrFail;
using stagedb::testing::PollUntil;
using stagedb::testing::Progress;
using stagedb::testing::TempDir;
using stagedb::testing::UpdateCounter;
using Code = absl::StatusCode;

constexpr const char* kKeyHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

codecourier::CodeCourierOptions WithKey(codecourier::CodeCourierOptions options = {}) {
  options.field_key = *FieldKey::FromHex(kKeyHex);
  return options;
}

Auth As(const std::string& clerk_id) { return Auth::User({.subject = clerk_id}); }

struct Courier {
  TempDir dir;
  std::unique_ptr<Database> db;
  explicit Courier(codecourier::CodeCourierOptions options = WithKey()) {
    Open(std::move(options));
  }
  void Open(codecourier::CodeCourierOptions options) {
    db = OpenOrFail({.path = dir.Sub("db"),
                     .schema_json = std::string(codecourier::SchemaJson()),
                     .durability = Durability::kNoSync});
    REQUIRE_OK(codecourier::RegisterFunctions(*db, std::move(options)));
  }
  Value Call(std::string_view name, Object args, const Auth& auth) {
    return MustSucceed(db->Call(name, Value(std::move(args)), auth), name);
  }
  absl::StatusOr<Value> Try(std::string_view name, Object args, const Auth& auth) {
    return db->Call(name, Value(std::move(args)), auth);
  }
  Value Internal(std::string_view name, Object args) {
    return MustSucceed(db->CallInternal(name, Value(std::move(args))), name);
  }
  // A user record for `clerk_id` (email <clerk_id>@example.com, from the Clerk webhook), as
  // the dashboard stores it after sign-in; returns its id.
  std::string NewUser(const std::string& clerk_id) {
    Internal("codecourier/users:upsertFromClerk",
             {{"clerkId", clerk_id}, {"email", clerk_id + "@example.com"}});
    return Call("codecourier/users:store", {}, As(clerk_id)).as_string();
  }
  std::string NewProject(const std::string& owner, const std::string& slug) {
    return Call("codecourier/projects:create", {{"name", slug}, {"slug", slug}}, As(owner))
        .as_string();
  }
  // Makes `member` an active member of `project` (invited by `owner` with `role`).
  void Join(const std::string& project, const std::string& owner, const std::string& member,
            const std::string& role = "member") {
    Call("codecourier/projectMembers:invite",
         {{"projectId", project}, {"email", member + "@example.com"}, {"role", role}}, As(owner));
    Call("codecourier/projectMembers:acceptInvitation", {{"projectId", project}}, As(member));
  }
  // `count` sandboxes of `project` named s0, s1... (created by user_ada); their ids, oldest first.
  std::vector<std::string> NewSandboxes(const std::string& project, int count) {
    std::vector<std::string> ids;
    for (int i = 0; i < count; ++i) {
      ids.push_back(Call("codecourier/sandboxes:create",
                         {{"projectId", project}, {"name", "s" + std::to_string(i)}},
                         As("user_ada"))
                        .as_string());
    }
    return ids;
  }
  std::string NewWorkflow(const std::string& project, const std::string& who) {
    return Call("codecourier/workflows:create",
                {{"projectId", project},
                 {"name", "Ship a feature"},
                 {"pipelineType", "feature"},
                 {"steps", Array{Object{{"name", "design"}, {"kind", "designer"}},
                                 Object{{"name", "check"}, {"kind", "checker"}}}}},
                As(who))
        .as_string();
  }
  Value Counters(const std::string& project, const std::string& who) {
    return Call("codecourier/usage:getProjectUsageSummary",
                {{"projectId", project}, {"startDate", "2000-01-01"}, {"endDate", "2000-01-01"}},
                As(who))["counters"];
  }
  void Settle() { REQUIRE_OK(db->WaitForDelivery(db->LastCommitTimestamp(), kHangGuard)); }
  // Registers the public query "test:counted:<function>" that counts its runs and returns
  // `function`'s result: subscribed to, it shows every re-run, also those whose result did not
  // change (which the engine never delivers), so an over-broad read set shows.
  std::shared_ptr<std::atomic<int>> Counted(const std::string& function) {
    std::string name = function;
    std::replace(name.begin(), name.end(), '/', '_');
    return CountRuns(*db, "test:counted_" + name.substr(name.find(':') + 1), function);
  }
};

Object Page(const std::string& project, double num_items, Value cursor = Value(Undefined{}),
            Value end_cursor = Value(Undefined{})) {
  Object opts{{"numItems", num_items}};
  if (!cursor.is_undefined()) opts["cursor"] = cursor;
  if (!end_cursor.is_undefined()) opts["endCursor"] = end_cursor;
  return {{"projectId", project}, {"paginationOpts", Value(std::move(opts))}};
}

std::vector<std::string> Ids(const Value& documents) {
  std::vector<std::string> ids;
  for (const Value& document : documents.as_array()) ids.push_back(document["_id"].as_string());
  return ids;
}

TEST_CASE("users and projects: the owner's membership, settings and counters come with it") {
  Courier c;
  CHECK_ERROR(c.Try("codecourier/users:store", {}, Auth::Anonymous()), Code::kUnauthenticated);
  const std::string ada = c.NewUser("user_ada");
  CHECK(c.NewUser("user_ada") == ada);  // store is an upsert by Clerk id
  CHECK(c.Call("codecourier/users:current", {}, As("user_ada"))["clerkId"] == Value("user_ada"));
  CHECK(c.Call("codecourier/users:current", {}, As("user_nobody")).is_null());
  c.Internal("codecourier/users:upsertFromClerk", {{"clerkId", "user_ada"},
                                                   {"email", "ada@new.example.com"},
                                                   {"name", "Ada"},
                                                   {"imageUrl", "https://img/ada.png"}});
  CHECK(c.Call("codecourier/users:current", {}, As("user_ada"))["email"] ==
        Value("ada@new.example.com"));
  // An update without name or image (and a later sign-in) keeps them.
  c.Internal("codecourier/users:upsertFromClerk",
             {{"clerkId", "user_ada"}, {"email", "ada@newer.example.com"}});
  CHECK(c.Call("codecourier/users:store", {}, As("user_ada")) == Value(ada));
  Value current = c.Call("codecourier/users:current", {}, As("user_ada"));
  CHECK(current["email"] == Value("ada@newer.example.com"));
  CHECK(current["name"] == Value("Ada"));
  CHECK(current["imageUrl"] == Value("https://img/ada.png"));
  CHECK_ERROR(c.db->CallInternal("codecourier/users:upsertFromClerk",
                                 Value(Object{{"clerkId", "user_x"}, {"email", " "}})),
              Code::kInvalidArgument, "cc_users", "email");
  // Signing in before the webhook arrived: a bare user (no email), completed by the webhook.
  const std::string early = c.Call("codecourier/users:store", {}, As("user_early")).as_string();
  CHECK(c.Call("codecourier/users:current", {}, As("user_early"))["email"].is_undefined());
  CHECK(c.Internal("codecourier/users:upsertFromClerk",
                   {{"clerkId", "user_early"}, {"email", "early@example.com"}}) == Value(early));
  CHECK(c.Call("codecourier/users:current", {}, As("user_early"))["email"] ==
        Value("early@example.com"));

  CHECK_ERROR(
      c.Try("codecourier/projects:create", {{"name", "P"}, {"slug", "p"}}, As("user_nobody")),
      Code::kUnauthenticated, "user_nobody");
  const std::string project = c.NewProject("user_ada", "courier-web");
  CHECK_ERROR(c.Try("codecourier/projects:create", {{"name", "Q"}, {"slug", "courier-web"}},
                    As("user_ada")),
              Code::kAlreadyExists, "by_slug", "courier-web");
  for (const char* bad : {"", "Has Caps", "-edge", "a/b", "x-"}) {
    INFO(bad);
    CHECK_ERROR(
        c.Try("codecourier/projects:create", {{"name", "Q"}, {"slug", bad}}, As("user_ada")),
        Code::kInvalidArgument, "cc_projects", "slug");
  }
  Value mine = c.Call("codecourier/projects:listMine", {}, As("user_ada"));
  REQUIRE(mine.as_array().size() == 1);
  CHECK(mine.as_array()[0]["role"] == Value("owner"));
  CHECK(mine.as_array()[0]["ownerId"] == Value(ada));
  Value counters = c.Counters(project, "user_ada");
  CHECK(
      counters ==
      Value(Object{
          {"memberCount", 1.0}, {"runCount", 0.0}, {"sandboxCount", 0.0}, {"workflowCount", 0.0}}));
  CHECK(c.Call("codecourier/projectSettings:get", {{"projectId", project}},
               As("user_ada"))["projectId"] == Value(project));
  c.Call("codecourier/userSettings:setLastActiveProject", {{"projectId", project}}, As("user_ada"));
  CHECK(c.Call("codecourier/userSettings:get", {}, As("user_ada"))["lastActiveProjectId"] ==
        Value(project));
}

TEST_CASE("membership: invitations, roles, and non-members refused naming the project") {
  Courier c;
  c.NewUser("user_ada");
  const std::string bob = c.NewUser("user_bob");
  const std::string carol = c.NewUser("user_carol");
  const std::string project = c.NewProject("user_ada", "alpha");
  const Object by_project{{"projectId", project}};

  // A non-member is refused everywhere, with the project named.
  for (const char* fn :
       {"codecourier/projects:get", "codecourier/workflows:listForProject",
        "codecourier/projectMembers:listByProject", "codecourier/projectApiKeys:list"}) {
    INFO(fn);
    CHECK_ERROR(c.Try(fn, by_project, As("user_bob")), Code::kPermissionDenied, project, "user_bob",
                "not a member");
  }
  CHECK_ERROR(c.Try("codecourier/sandboxes:listPaginated", Page(project, 5), As("user_bob")),
              Code::kPermissionDenied, project);
  CHECK_ERROR(c.Try("codecourier/sandboxes:create", {{"projectId", project}, {"name", "s"}},
                    As("user_bob")),
              Code::kPermissionDenied, project);
  CHECK_ERROR(c.Try("codecourier/projects:get", by_project, Auth::Anonymous()),
              Code::kUnauthenticated);
  // A project that does not exist (an id from another database with the same schema).
  Courier other;
  other.NewUser("user_ada");
  const std::string elsewhere = other.NewProject("user_ada", "elsewhere");
  CHECK_ERROR(c.Try("codecourier/projects:get", {{"projectId", elsewhere}}, As("user_ada")),
              Code::kNotFound, "cc_projects", elsewhere);

  // Invitation: pending until accepted; a pending invitee is not yet a member.
  CHECK_ERROR(c.Try("codecourier/projectMembers:invite",
                    {{"projectId", project}, {"email", "nobody@example.com"}, {"role", "member"}},
                    As("user_ada")),
              Code::kNotFound, "nobody@example.com");
  c.Call("codecourier/projectMembers:invite",
         {{"projectId", project}, {"email", "user_bob@example.com"}, {"role", "member"}},
         As("user_ada"));
  CHECK_ERROR(c.Try("codecourier/projectMembers:invite",
                    {{"projectId", project}, {"email", "user_bob@example.com"}, {"role", "admin"}},
                    As("user_ada")),
              Code::kAlreadyExists, "user_bob@example.com");
  CHECK_ERROR(c.Try("codecourier/projects:get", by_project, As("user_bob")),
              Code::kPermissionDenied, "pending");
  CHECK(c.Call("codecourier/notifications:listMine", {{"unreadOnly", true}}, As("user_bob"))
            .as_array()
            .size() == 1);
  CHECK(c.Counters(project, "user_ada")["memberCount"] == Value(1.0));
  c.Call("codecourier/projectMembers:acceptInvitation", by_project, As("user_bob"));
  CHECK_ERROR(c.Try("codecourier/projectMembers:acceptInvitation", by_project, As("user_bob")),
              Code::kFailedPrecondition, "already an active member");
  CHECK(c.Call("codecourier/projects:get", by_project, As("user_bob"))["slug"] == Value("alpha"));
  CHECK(c.Counters(project, "user_ada")["memberCount"] == Value(2.0));

  // Roles: a member may not invite, manage keys or settings; the owner cannot be removed.
  CHECK_ERROR(
      c.Try("codecourier/projectMembers:invite",
            {{"projectId", project}, {"email", "user_carol@example.com"}, {"role", "member"}},
            As("user_bob")),
      Code::kPermissionDenied, "is member", "needs admin");
  CHECK_ERROR(c.Try("codecourier/projectSettings:update",
                    {{"projectId", project}, {"systemPrompt", "x"}}, As("user_bob")),
              Code::kPermissionDenied, project);
  CHECK_ERROR(
      c.Try("codecourier/projectMembers:invite",
            {{"projectId", project}, {"email", "user_carol@example.com"}, {"role", "owner"}},
            As("user_ada")),
      Code::kInvalidArgument, "role");
  const std::string ada_id =
      c.Call("codecourier/users:current", {}, As("user_ada"))["_id"].as_string();
  CHECK_ERROR(c.Try("codecourier/projectMembers:remove",
                    {{"projectId", project}, {"userId", ada_id}}, As("user_ada")),
              Code::kFailedPrecondition, "owner");
  CHECK_ERROR(c.Try("codecourier/projectMembers:remove",
                    {{"projectId", project}, {"userId", ada_id}}, As("user_bob")),
              Code::kPermissionDenied);
  // Carol is invited and declines: the count never included her.
  c.Call("codecourier/projectMembers:invite",
         {{"projectId", project}, {"email", "user_carol@example.com"}, {"role", "admin"}},
         As("user_ada"));
  c.Call("codecourier/projectMembers:remove", {{"projectId", project}, {"userId", carol}},
         As("user_carol"));
  CHECK(c.Call("codecourier/projectMembers:listByProject", by_project, As("user_ada"))
            .as_array()
            .size() == 2);
  CHECK(c.Counters(project, "user_ada")["memberCount"] == Value(2.0));
  // Bob leaves: he loses access and the count drops.
  c.Call("codecourier/projectMembers:remove", {{"projectId", project}, {"userId", bob}},
         As("user_bob"));
  CHECK(c.Counters(project, "user_ada")["memberCount"] == Value(1.0));
  CHECK_ERROR(c.Try("codecourier/projects:get", by_project, As("user_bob")),
              Code::kPermissionDenied, project);
  // An admin may manage settings.
  c.Join(project, "user_ada", "user_carol", "admin");
  c.Call("codecourier/projectSettings:update",
         {{"projectId", project}, {"systemPrompt", "Be terse"}, {"envVars", Object{{"A", "1"}}}},
         As("user_carol"));
  Value settings = c.Call("codecourier/projectSettings:get", by_project, As("user_ada"));
  CHECK(settings["systemPrompt"] == Value("Be terse"));
  CHECK(settings["envVars"] == Value(Object{{"A", "1"}}));
  CHECK(c.Call("codecourier/projectSettings:get", by_project, As("user_carol"))["envVars"] ==
        Value(Object{{"A", "1"}}));
  // A member sees which env vars are set, not their values.
  c.NewUser("user_dan");
  c.Join(project, "user_ada", "user_dan");
  Value seen_by_member = c.Call("codecourier/projectSettings:get", by_project, As("user_dan"));
  CHECK(seen_by_member["envVars"].is_undefined());
  CHECK(seen_by_member["envVarNames"] == Value(Array{Value("A")}));
  CHECK(seen_by_member["systemPrompt"] == Value("Be terse"));
}

TEST_CASE("invitations go to the Clerk-verified email only; a shared email is refused") {
  Courier c;
  const std::string ada = c.NewUser("user_ada");
  const std::string project = c.NewProject("user_ada", "takeover");
  auto invite = [&](const std::string& email) {
    return c.Try("codecourier/projectMembers:invite",
                 {{"projectId", project}, {"email", email}, {"role", "admin"}}, As("user_ada"));
  };
  // Eve signs in and claims Frank's address before Frank has an account: store takes no email,
  // so her record has none and the invitation cannot reach her.
  CHECK_ERROR(c.Try("codecourier/users:store", {{"email", "frank@example.com"}}, As("user_eve")),
              Code::kInvalidArgument, "email");
  const std::string eve = c.Call("codecourier/users:store", {}, As("user_eve")).as_string();
  CHECK(c.Call("codecourier/users:current", {}, As("user_eve"))["email"].is_undefined());
  CHECK_ERROR(invite("frank@example.com"), Code::kNotFound, "frank@example.com");
  // Frank's account arrives through the webhook: the invitation is his.
  const std::string frank = c.Internal("codecourier/users:upsertFromClerk",
                                       {{"clerkId", "user_frank"}, {"email", "frank@example.com"}})
                                .as_string();
  REQUIRE(invite("frank@example.com").ok());
  CHECK_ERROR(c.Try("codecourier/projectMembers:acceptInvitation", {{"projectId", project}},
                    As("user_eve")),
              Code::kNotFound, eve);
  CHECK(c.Call("codecourier/notifications:listMine", {}, As("user_eve")).as_array().empty());
  c.Call("codecourier/projectMembers:acceptInvitation", {{"projectId", project}}, As("user_frank"));
  // Two accounts with one email (say a re-created Clerk account): refused, nothing written.
  c.NewUser("user_gus");
  c.Internal("codecourier/users:upsertFromClerk",
             {{"clerkId", "user_gus_again"}, {"email", "user_gus@example.com"}});
  CHECK_ERROR(invite("user_gus@example.com"), Code::kFailedPrecondition, "cc_users", "email",
              "user_gus@example.com", "more than one");
  Value members =
      c.Call("codecourier/projectMembers:listByProject", {{"projectId", project}}, As("user_ada"));
  std::set<std::string> member_ids;
  for (const Value& member : members.as_array()) member_ids.insert(member["userId"].as_string());
  CHECK(member_ids == std::set<std::string>{ada, frank});
}

TEST_CASE("REST API keys: shown once, stored hashed, usage counted, revocable") {
  Courier c;
  c.NewUser("user_ada");
  c.NewUser("user_bob");
  const std::string project = c.NewProject("user_ada", "keys");
  c.Join(project, "user_ada", "user_bob");
  CHECK_ERROR(c.Try("codecourier/projectApiKeys:generate", {{"projectId", project}, {"name", "ci"}},
                    As("user_bob")),
              Code::kPermissionDenied, "needs admin");
  Value generated = c.Call("codecourier/projectApiKeys:generate",
                           {{"projectId", project}, {"name", "ci"}}, As("user_ada"));
  const std::string key = generated["key"].as_string();
  CHECK(key.rfind("cck_", 0) == 0);
  CHECK(generated["lastFour"] == Value(key.substr(key.size() - 4)));
  // The stored record holds the hash, not the key; the listing shows neither.
  absl::StatusOr<std::optional<Document>> stored =
      c.db->Query([&](Reader& r) { return r.Get(generated["keyId"].as_string()); });
  REQUIRE_OK(stored);
  CHECK((**stored)["keyHash"] == Value(HashToken(key).sha256_hex));
  CHECK((**stored).ToJson().find(key) == std::string::npos);
  Value listed =
      c.Call("codecourier/projectApiKeys:list", {{"projectId", project}}, As("user_bob"));
  REQUIRE(listed.as_array().size() == 1);
  CHECK(listed.as_array()[0]["keyHash"].is_undefined());
  CHECK(listed.as_array()[0]["usageCount"] == Value(0.0));

  // Verifying: internal only; counts each use.
  CHECK_ERROR(c.Try("codecourier/projectApiKeys:verify", {{"key", key}}, As("user_ada")),
              Code::kPermissionDenied);
  Value verified = c.Internal("codecourier/projectApiKeys:verify", {{"key", key}});
  CHECK(verified["projectId"] == Value(project));
  c.Internal("codecourier/projectApiKeys:verify", {{"key", key}});
  listed = c.Call("codecourier/projectApiKeys:list", {{"projectId", project}}, As("user_ada"));
  CHECK(listed.as_array()[0]["usageCount"] == Value(2.0));
  CHECK(listed.as_array()[0]["lastUsedAt"].is_float64());
  CHECK_ERROR(
      c.db->CallInternal("codecourier/projectApiKeys:verify", Value(Object{{"key", key + "x"}})),
      Code::kUnauthenticated, "no API key");

  // Revoked: refused, and the refusal writes nothing.
  CHECK_ERROR(
      c.Try("codecourier/projectApiKeys:revoke", {{"keyId", generated["keyId"]}}, As("user_bob")),
      Code::kPermissionDenied);
  CHECK(c.Call("codecourier/projectApiKeys:revoke", {{"keyId", generated["keyId"]}},
               As("user_ada")) == Value(true));
  CHECK(c.Call("codecourier/projectApiKeys:revoke", {{"keyId", generated["keyId"]}},
               As("user_ada")) == Value(false));
  CHECK_ERROR(c.db->CallInternal("codecourier/projectApiKeys:verify", Value(Object{{"key", key}})),
              Code::kPermissionDenied, "revoked", "ci");
  listed = c.Call("codecourier/projectApiKeys:list", {{"projectId", project}}, As("user_ada"));
  CHECK(listed.as_array()[0]["usageCount"] == Value(2.0));
  CHECK(listed.as_array()[0]["revokedAt"].is_float64());
}

TEST_CASE("provider keys: sealed, shown by last four, project keys override user keys") {
  Courier c;
  const std::string ada = c.NewUser("user_ada");
  c.NewUser("user_bob");
  const std::string project = c.NewProject("user_ada", "prov");
  c.Join(project, "user_ada", "user_bob");
  auto resolve = [&](const std::string& provider) {
    return c.Internal("codecourier/providerKeys:resolveEffective",
                      {{"projectId", project}, {"userId", ada}, {"provider", provider}});
  };
  CHECK(resolve("anthropic").is_null());
  Value set = c.Call("codecourier/apiKeys:set",
                     {{"provider", "anthropic"}, {"key", "sk-ant-user-1234"}}, As("user_ada"));
  CHECK(set == Value(Object{{"lastFour", "1234"}, {"provider", "anthropic"}}));
  Value listed = c.Call("codecourier/apiKeys:list", {}, As("user_ada"));
  REQUIRE(listed.as_array().size() == 1);
  CHECK(listed.as_array()[0]["lastFour"] == Value("1234"));
  CHECK(listed.as_array()[0]["encryptedKey"].is_undefined());
  CHECK(resolve("anthropic") == Value(Object{{"key", "sk-ant-user-1234"},
                                             {"lastFour", "1234"},
                                             {"provider", "anthropic"},
                                             {"source", "user"}}));
  // The stored field is a ciphertext.
  absl::StatusOr<std::vector<Document>> rows =
      c.db->Query([](Reader& r) { return r.Table("cc_apiKeys").Collect(); });
  REQUIRE_OK(rows);
  CHECK((*rows)[0]["encryptedKey"].as_string().rfind("v1:", 0) == 0);

  CHECK_ERROR(c.Try("codecourier/projectProviderKeys:set",
                    {{"projectId", project}, {"provider", "anthropic"}, {"key", "sk-proj"}},
                    As("user_bob")),
              Code::kPermissionDenied, "needs admin");
  CHECK_ERROR(c.Try("codecourier/apiKeys:set", {{"provider", "fax"}, {"key", "k"}}, As("user_ada")),
              Code::kInvalidArgument, "provider");
  CHECK_ERROR(c.Try("codecourier/apiKeys:set", {{"provider", "e2b"}, {"key", " "}}, As("user_ada")),
              Code::kInvalidArgument, "key", "empty");
  c.Call("codecourier/projectProviderKeys:set",
         {{"projectId", project}, {"provider", "anthropic"}, {"key", "sk-ant-proj-9876"}},
         As("user_ada"));
  CHECK(resolve("anthropic")["source"] == Value("project"));
  CHECK(resolve("anthropic")["key"] == Value("sk-ant-proj-9876"));
  CHECK(c.Call("codecourier/projectProviderKeys:list", {{"projectId", project}}, As("user_bob"))
            .as_array()[0]["lastFour"] == Value("9876"));
  CHECK(c.Call("codecourier/projectProviderKeys:remove",
               {{"projectId", project}, {"provider", "anthropic"}}, As("user_ada")) == Value(true));
  CHECK(resolve("anthropic")["source"] == Value("user"));
  CHECK(c.Call("codecourier/apiKeys:remove", {{"provider", "anthropic"}}, As("user_ada")) ==
        Value(true));
  CHECK(resolve("anthropic").is_null());
  // Only a member's key serves the project: Eve's key is not resolved for it.
  const std::string eve = c.NewUser("user_eve");
  c.Call("codecourier/apiKeys:set", {{"provider", "anthropic"}, {"key", "sk-eve-5555"}},
         As("user_eve"));
  CHECK_ERROR(
      c.db->CallInternal(
          "codecourier/providerKeys:resolveEffective",
          Value(Object{{"projectId", project}, {"userId", eve}, {"provider", "anthropic"}})),
      Code::kPermissionDenied, "cc_projectMembers", eve, project);
  // Resolving is internal.
  CHECK_ERROR(c.Try("codecourier/providerKeys:resolveEffective",
                    {{"projectId", project}, {"userId", ada}, {"provider", "e2b"}}, As("user_ada")),
              Code::kPermissionDenied);
}

TEST_CASE("without a field key, provider and deploy keys cannot be stored or resolved") {
  Courier c;
  const std::string ada = c.NewUser("user_ada");
  const std::string project = c.NewProject("user_ada", "nokey");
  c.Call("codecourier/apiKeys:set", {{"provider", "openai"}, {"key", "sk-1"}}, As("user_ada"));
  c.Call("codecourier/projectSettings:update", {{"projectId", project}, {"deployKey", "ssh-1"}},
         As("user_ada"));
  // The host restarts without its field key.
  c.db.reset();
  c.Open(codecourier::CodeCourierOptions{});
  CHECK_ERROR(
      c.Try("codecourier/apiKeys:set", {{"provider", "openai"}, {"key", "sk-2"}}, As("user_ada")),
      Code::kFailedPrecondition, "cc_apiKeys", "no field key");
  CHECK_ERROR(c.Try("codecourier/projectSettings:update",
                    {{"projectId", project}, {"deployKey", "ssh-2"}}, As("user_ada")),
              Code::kFailedPrecondition, "cc_projectSettings", "no field key");
  CHECK_ERROR(c.db->CallInternal(
                  "codecourier/providerKeys:resolveEffective",
                  Value(Object{{"projectId", project}, {"userId", ada}, {"provider", "openai"}})),
              Code::kFailedPrecondition, "cc_apiKeys", "no field key");
  CHECK_ERROR(c.db->CallInternal("codecourier/projectSettings:resolveDeployKey",
                                 Value(Object{{"projectId", project}})),
              Code::kFailedPrecondition, "cc_projectSettings", "no field key");
  // What needs no decryption still works.
  CHECK(c.Call("codecourier/apiKeys:list", {}, As("user_ada")).as_array().size() == 1);
  CHECK(c.Call("codecourier/projectSettings:get", {{"projectId", project}},
               As("user_ada"))["deployKeyLastFour"] == Value("sh-1"));
}

std::string FileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST_CASE("the clear API key, provider key and deploy key are not in the database file") {
  Courier c;
  c.NewUser("user_ada");
  const std::string project = c.NewProject("user_ada", "bytes");
  const std::string key = c.Call("codecourier/projectApiKeys:generate",
                                 {{"projectId", project}, {"name", "ci"}}, As("user_ada"))["key"]
                              .as_string();
  const std::string provider_key = "sk-ant-CLEARTEXT-provider-0123456789";
  const std::string deploy_key = "ssh-ed25519 CLEARTEXT-deploy-key-abcdef";
  c.Call("codecourier/apiKeys:set", {{"provider", "anthropic"}, {"key", provider_key}},
         As("user_ada"));
  c.Call("codecourier/projectProviderKeys:set",
         {{"projectId", project}, {"provider", "github"}, {"key", provider_key + "-p"}},
         As("user_ada"));
  c.Call("codecourier/projectSettings:update", {{"projectId", project}, {"deployKey", deploy_key}},
         As("user_ada"));
  CHECK(c.Call("codecourier/projectSettings:get", {{"projectId", project}},
               As("user_ada"))["encryptedDeployKey"]
            .is_undefined());
  // The callback side unseals it (internal only).
  CHECK(c.Internal("codecourier/projectSettings:resolveDeployKey", {{"projectId", project}}) ==
        Value(Object{{"key", deploy_key}, {"lastFour", "cdef"}}));
  CHECK_ERROR(c.Try("codecourier/projectSettings:resolveDeployKey", {{"projectId", project}},
                    As("user_ada")),
              Code::kPermissionDenied);
  const std::string keyless = c.NewProject("user_ada", "bytes-keyless");
  CHECK(c.Internal("codecourier/projectSettings:resolveDeployKey", {{"projectId", keyless}})
            .is_null());
  c.db.reset();
  const std::string bytes = FileBytes(c.dir.Sub("db") + "/data.mdb");
  REQUIRE(!bytes.empty());
  CHECK(bytes.find(HashToken(key).sha256_hex) != std::string::npos);  // the search works
  CHECK(bytes.find(key) == std::string::npos);
  CHECK(bytes.find(key.substr(4)) == std::string::npos);
  CHECK(bytes.find("CLEARTEXT") == std::string::npos);
}

TEST_CASE("sandboxes: paginated newest first, soft-deleted ones left out, rename") {
  Courier c;
  c.NewUser("user_ada");
  const std::string project = c.NewProject("user_ada", "sbx");
  const std::string other = c.NewProject("user_ada", "sbx-other");
  const std::vector<std::string> created = c.NewSandboxes(project, 23);
  c.Call("codecourier/sandboxes:create", {{"projectId", other}, {"name", "elsewhere"}},
         As("user_ada"));
  c.Call("codecourier/sandboxes:deleteSandbox", {{"id", created[22]}}, As("user_ada"));
  c.Call("codecourier/sandboxes:deleteSandbox", {{"id", created[5]}}, As("user_ada"));
  CHECK_ERROR(c.Try("codecourier/sandboxes:deleteSandbox", {{"id", created[5]}}, As("user_ada")),
              Code::kNotFound, "cc_sandboxes", created[5]);
  CHECK_ERROR(c.Try("codecourier/sandboxes:get", {{"sandboxId", created[5]}}, As("user_ada")),
              Code::kNotFound, created[5]);
  c.Call("codecourier/sandboxes:renameSandbox", {{"id", created[0]}, {"name", "renamed"}},
         As("user_ada"));
  CHECK_ERROR(c.Try("codecourier/sandboxes:renameSandbox", {{"id", created[0]}, {"name", ""}},
                    As("user_ada")),
              Code::kInvalidArgument, "name");

  std::vector<std::string> seen;
  Value cursor(Undefined{});
  int pages = 0;
  for (;;) {
    Value page =
        c.Call("codecourier/sandboxes:listPaginated", Page(project, 8, cursor), As("user_ada"));
    for (const std::string& id : Ids(page["page"])) seen.push_back(id);
    ++pages;
    if (page["isDone"] == Value(true)) break;
    cursor = page["continueCursor"];
    REQUIRE(pages < 10);
  }
  std::vector<std::string> expected;
  for (int i = 21; i >= 0; --i) {
    if (i != 5) expected.push_back(created[i]);
  }
  CHECK(seen == expected);  // newest first, no deleted, no other project's
  CHECK(pages == 3);
  Value first = c.Call("codecourier/sandboxes:get", {{"sandboxId", created[0]}}, As("user_ada"));
  CHECK(first["name"] == Value("renamed"));
  CHECK(first["learningExtraction"].is_null());
  CHECK(c.Counters(project, "user_ada")["sandboxCount"] == Value(21.0));

  CHECK_ERROR(c.Try("codecourier/sandboxes:listPaginated", Page(project, 0), As("user_ada")),
              Code::kInvalidArgument, "numItems");
  CHECK_ERROR(c.Try("codecourier/sandboxes:listPaginated", Page(project, 2.5), As("user_ada")),
              Code::kInvalidArgument, "numItems");
  CHECK_ERROR(c.Try("codecourier/sandboxes:listPaginated", Page(project, 5, Value("garbage")),
                    As("user_ada")),
              Code::kInvalidArgument, "cursor");
  // A cursor of another project's listing is refused, not misapplied.
  Value other_page = c.Call("codecourier/sandboxes:listPaginated", Page(other, 1), As("user_ada"));
  CHECK_ERROR(c.Try("codecourier/sandboxes:listPaginated",
                    Page(project, 5, other_page["continueCursor"]), As("user_ada")),
              Code::kInvalidArgument, "cursor");
}

TEST_CASE("a member of another project cannot reach this project's records by id") {
  Courier c;
  c.NewUser("user_ada");
  c.NewUser("user_mal");
  const std::string project = c.NewProject("user_ada", "guarded");
  c.NewProject("user_mal", "mallory");  // Mal is an owner, just not of this project
  const std::string sandbox = c.Call("codecourier/sandboxes:create",
                                     {{"projectId", project}, {"name", "secret"}}, As("user_ada"))
                                  .as_string();
  const std::string workflow = c.NewWorkflow(project, "user_ada");
  const std::string run = c.Call("codecourier/runs:create",
                                 {{"projectId", project}, {"workflowId", workflow}}, As("user_ada"))
                              .as_string();
  const Value key = c.Call("codecourier/projectApiKeys:generate",
                           {{"projectId", project}, {"name", "ci"}}, As("user_ada"))["keyId"];
  const std::vector<std::pair<const char*, Object>> attempts = {
      {"codecourier/sandboxes:get", {{"sandboxId", sandbox}}},
      {"codecourier/sandboxMessages:listBySandbox", {{"sandboxId", sandbox}}},
      {"codecourier/sandboxMessages:send", {{"sandboxId", sandbox}, {"content", "hi"}}},
      {"codecourier/sandboxes:endSession", {{"sandboxId", sandbox}}},
      {"codecourier/runSteps:listByRun", {{"runId", run}}},
      {"codecourier/runs:get", {{"runId", run}}},
      {"codecourier/runs:renameRun", {{"id", run}, {"name", "mine now"}}},
      {"codecourier/runs:deleteRun", {{"id", run}}},
      {"codecourier/sandboxes:renameSandbox", {{"id", sandbox}, {"name", "mine now"}}},
      {"codecourier/sandboxes:deleteSandbox", {{"id", sandbox}}},
      {"codecourier/workflows:get", {{"workflowId", workflow}}},
      {"codecourier/workflows:update", {{"workflowId", workflow}, {"name", "mine now"}}},
      {"codecourier/workflows:deleteWorkflow", {{"workflowId", workflow}}},
      {"codecourier/projectApiKeys:revoke", {{"keyId", key}}}};
  for (const auto& [fn, args] : attempts) {
    INFO(fn);
    CHECK_ERROR(c.Try(fn, args, As("user_mal")), Code::kPermissionDenied, "user_mal", project,
                "not a member");
  }
  // Nothing changed.
  CHECK(c.Call("codecourier/sandboxes:get", {{"sandboxId", sandbox}}, As("user_ada"))["name"] ==
        Value("secret"));
  CHECK(c.Call("codecourier/workflows:get", {{"workflowId", workflow}}, As("user_ada"))["name"] ==
        Value("Ship a feature"));
  CHECK(c.Call("codecourier/runs:get", {{"runId", run}}, As("user_ada"))["name"] ==
        Value("Ship a feature"));
  CHECK(c.Call("codecourier/projectApiKeys:list", {{"projectId", project}}, As("user_ada"))
            .as_array()[0]["revokedAt"]
            .is_undefined());
  CHECK(
      c.Call("codecourier/sandboxMessages:listBySandbox", {{"sandboxId", sandbox}}, As("user_ada"))
          .as_array()
          .empty());
  Value counters = c.Counters(project, "user_ada");
  CHECK(counters["sandboxCount"] == Value(1.0));
  CHECK(counters["runCount"] == Value(1.0));
  CHECK(counters["workflowCount"] == Value(1.0));
}

TEST_CASE("sandboxes: rows deleted while paging leave no gap or duplicate in later pages") {
  Courier c;
  c.NewUser("user_ada");
  const std::string project = c.NewProject("user_ada", "paging-deletes");
  const std::vector<std::string> created = c.NewSandboxes(project, 12);
  Value first = c.Call("codecourier/sandboxes:listPaginated", Page(project, 5), As("user_ada"));
  CHECK(Ids(first["page"]) ==
        std::vector<std::string>{created[11], created[10], created[9], created[8], created[7]});
  // Deleted: one already shown, the first page's last row (the cursor's), one of the next
  // page and the oldest.
  for (int i : {9, 7, 4, 0}) {
    c.Call("codecourier/sandboxes:deleteSandbox", {{"id", created[i]}}, As("user_ada"));
  }
  std::vector<std::string> rest;
  Value cursor = first["continueCursor"];
  for (int pages = 0; pages < 10; ++pages) {
    Value page =
        c.Call("codecourier/sandboxes:listPaginated", Page(project, 5, cursor), As("user_ada"));
    for (const std::string& id : Ids(page["page"])) rest.push_back(id);
    if (page["isDone"] == Value(true)) break;
    cursor = page["continueCursor"];
  }
  CHECK(rest ==
        std::vector<std::string>{created[6], created[5], created[3], created[2], created[1]});
  CHECK(c.Counters(project, "user_ada")["sandboxCount"] == Value(8.0));
}

TEST_CASE("numbers: paginationOpts.numItems and numeric arguments take C++ ints") {
  Courier c;
  c.NewUser("user_ada");
  const std::string project = c.NewProject("user_ada", "nums");
  for (const char* name : {"a", "b", "c"}) {
    c.Call("codecourier/sandboxes:create", {{"projectId", project}, {"name", name}},
           As("user_ada"));
  }
  // Refused before the numbers rule ("expected float64, got int64 2").
  Value page =
      c.Call("codecourier/sandboxes:listPaginated",
             {{"projectId", project}, {"paginationOpts", Object{{"numItems", 2}}}}, As("user_ada"));
  CHECK(page["page"].as_array().size() == 2);
  CHECK(page["isDone"] == Value(false));
  Value id = c.Internal("codecourier/usage:recordUsage", {{"projectId", project},
                                                          {"service", "claude_code"},
                                                          {"quantity", 3},
                                                          {"inputTokens", 1200},
                                                          {"date", "2026-03-01"}});
  absl::StatusOr<std::optional<Document>> usage =
      c.db->Query([&](Reader& r) { return r.Get(id.as_string()); });
  REQUIRE_OK(usage);
  REQUIRE(usage->has_value());
  CHECK((**usage)["quantity"] == Value(3.0));
}

TEST_CASE("runs: paging while another thread inserts shows no gaps or duplicates") {
  Courier c;
  c.NewUser("user_ada");
  c.NewUser("user_bob");
  const std::string project = c.NewProject("user_ada", "runs");
  c.Join(project, "user_ada", "user_bob");
  const std::string workflow = c.NewWorkflow(project, "user_ada");
  auto new_run = [&](const std::string& who) {
    return c
        .Call("codecourier/runs:create", {{"projectId", project}, {"workflowId", workflow}},
              As(who))
        .as_string();
  };
  std::vector<std::string> before;
  for (int i = 0; i < 30; ++i) before.push_back(new_run("user_ada"));

  // The first page, subscribed with its own end cursor: it keeps its range, so runs created
  // while paging (newest first: before the first page's end) land in it, never in later pages.
  Value first = c.Call("codecourier/runs:listPaginated", Page(project, 7), As("user_ada"));
  std::mutex mu;
  Value live_first;
  absl::StatusOr<Subscription> sub =
      c.db->SubscribeFunction("codecourier/runs:listPaginated",
                              Value(Page(project, 7, Value(Undefined{}), first["continueCursor"])),
                              UpdateSlot([&](const QueryUpdate& update) {
                                std::lock_guard<std::mutex> lock(mu);
                                if (update.result.ok()) live_first = *update.result;
                              }),
                              As("user_ada"));
  REQUIRE_OK(sub);

  // The writer starts after the first later page and the pager waits for some of its runs
  // after each page, so the inserts land between pages.
  std::vector<std::string> added;
  Progress pages_read, inserted;
  std::thread writer([&] {
    if (!pages_read.WaitAtLeast(1)) return;  // the pager's REQUIRE below reports it
    for (int i = 0; i < 20; ++i) {
      added.push_back(new_run("user_bob"));
      inserted.Add();
    }
  });
  std::vector<std::string> rest;
  Value cursor = first["continueCursor"];
  bool writer_kept_pace = true;
  for (bool done = false; !done;) {
    Value page = c.Call("codecourier/runs:listPaginated", Page(project, 7, cursor), As("user_ada"));
    for (const std::string& id : Ids(page["page"])) rest.push_back(id);
    done = page["isDone"] == Value(true);
    cursor = page["continueCursor"];
    pages_read.Add();
    writer_kept_pace =
        writer_kept_pace && inserted.WaitAtLeast(std::min<int64_t>(20, 6 * pages_read.value()));
  }
  writer.join();
  REQUIRE(writer_kept_pace);
  c.Settle();

  // Later pages: exactly the runs older than the first page, in order, untouched by the writer.
  std::vector<std::string> older(before.rbegin() + 7, before.rend());
  CHECK(rest == older);
  // The live first page: every new run (newest first), then the original seven.
  std::vector<std::string> expected_first(added.rbegin(), added.rend());
  for (int i = 29; i >= 23; --i) expected_first.push_back(before[i]);
  {
    std::lock_guard<std::mutex> lock(mu);
    CHECK(Ids(live_first["page"]) == expected_first);
  }
  std::set<std::string> all;
  for (const auto* part : {&expected_first, &rest}) all.insert(part->begin(), part->end());
  CHECK(all.size() == 50);
  CHECK(c.Counters(project, "user_ada")["runCount"] == Value(50.0));
}

TEST_CASE("live conversation and run steps fire on their own writes, not on others'") {
  Courier c;
  c.NewUser("user_ada");
  const std::string project = c.NewProject("user_ada", "live");
  auto sandbox = [&](const char* name) {
    return c
        .Call("codecourier/sandboxes:create", {{"projectId", project}, {"name", name}},
              As("user_ada"))
        .as_string();
  };
  const std::string mine = sandbox("mine");
  const std::string theirs = sandbox("theirs");
  const std::string workflow = c.NewWorkflow(project, "user_ada");
  auto run = [&] {
    return c
        .Call("codecourier/runs:create", {{"projectId", project}, {"workflowId", workflow}},
              As("user_ada"))
        .as_string();
  };
  const std::string my_run = run();
  const std::string other_run = run();

  // Subscribed through counting wrappers: a re-run shows even when its result is unchanged.
  auto message_runs = c.Counted("codecourier/sandboxMessages:listBySandbox");
  auto step_runs = c.Counted("codecourier/runSteps:listByRun");
  UpdateCounter messages, steps;
  absl::StatusOr<Subscription> messages_sub =
      c.db->SubscribeFunction("test:counted_listBySandbox", Value(Object{{"sandboxId", mine}}),
                              messages.Slot(), As("user_ada"));
  absl::StatusOr<Subscription> steps_sub = c.db->SubscribeFunction(
      "test:counted_listByRun", Value(Object{{"runId", my_run}}), steps.Slot(), As("user_ada"));
  REQUIRE_OK(messages_sub);
  REQUIRE_OK(steps_sub);
  c.Settle();
  int messages_seen = *message_runs, steps_seen = *step_runs;
  REQUIRE(messages_seen >= 1);
  auto step = [&](const char* what, bool messages_fire, bool steps_fire, auto&& act) {
    INFO(what);
    act();
    c.Settle();
    CHECK((*message_runs > messages_seen) == messages_fire);
    CHECK((*step_runs > steps_seen) == steps_fire);
    messages_seen = *message_runs;
    steps_seen = *step_runs;
  };
  step("a message in another sandbox", false, false, [&] {
    c.Internal("codecourier/callbacks:appendSandboxMessage",
               {{"sandboxId", theirs}, {"role", "assistant"}, {"content", "hi there"}});
  });
  step("another run's step", false, false, [&] {
    c.Internal("codecourier/callbacks:updateRunStep",
               {{"runId", other_run}, {"order", 0.0}, {"status", "running"}});
  });
  step("the user writes in the sandbox", true, false, [&] {
    c.Call("codecourier/sandboxMessages:send", {{"sandboxId", mine}, {"content", "Fix the bug"}},
           As("user_ada"));
  });
  step("the agent answers through the callback", true, false, [&] {
    c.Internal("codecourier/callbacks:appendSandboxMessage",
               {{"sandboxId", mine}, {"role", "assistant"}, {"content", "On it"}});
  });
  step("this run's step starts", false, true, [&] {
    c.Internal("codecourier/callbacks:updateRunStep",
               {{"runId", my_run}, {"order", 0.0}, {"status", "running"}});
  });
  step("another sandbox is renamed", false, false, [&] {
    c.Call("codecourier/sandboxes:renameSandbox", {{"id", theirs}, {"name", "x"}}, As("user_ada"));
  });
  step("another run is renamed", false, false, [&] {
    c.Call("codecourier/runs:renameRun", {{"id", other_run}, {"name", "y"}}, As("user_ada"));
  });
  step("a sandbox and a run are created", false, false, [&] {
    sandbox("third");
    run();
  });
  step("this run's step completes", false, true, [&] {
    c.Internal("codecourier/callbacks:updateRunStep",
               {{"runId", my_run}, {"order", 0.0}, {"status", "completed"}, {"output", "done"}});
  });
  {
    std::lock_guard<std::mutex> lock(messages.mu);
    REQUIRE(messages.last.as_array().size() == 2);
    CHECK(messages.last.as_array()[0]["content"] == Value("Fix the bug"));
    CHECK(messages.last.as_array()[1]["role"] == Value("assistant"));
  }
  {
    std::lock_guard<std::mutex> lock(steps.mu);
    CHECK(steps.last.as_array()[0]["status"] == Value("completed"));
    CHECK(steps.last.as_array()[0]["output"] == Value("done"));
    CHECK(steps.last.as_array()[0]["completedAt"].is_float64());
  }
  CHECK(c.Call("codecourier/runs:get", {{"runId", my_run}}, As("user_ada"))["progress"] ==
        Value(0.5));
}

TEST_CASE("callbacks are internal; runs finish once, with notifications") {
  Courier c;
  c.NewUser("user_ada");
  const std::string project = c.NewProject("user_ada", "cb");
  const std::string workflow = c.NewWorkflow(project, "user_ada");
  const std::string run = c.Call("codecourier/runs:create",
                                 {{"projectId", project}, {"workflowId", workflow}}, As("user_ada"))
                              .as_string();
  const std::string sandbox = c.Call("codecourier/sandboxes:create",
                                     {{"projectId", project}, {"name", "s"}}, As("user_ada"))
                                  .as_string();
  CHECK_ERROR(
      c.Try("codecourier/callbacks:appendSandboxMessage",
            {{"sandboxId", sandbox}, {"role", "assistant"}, {"content", "x"}}, As("user_ada")),
      Code::kPermissionDenied);
  CHECK_ERROR(c.Try("codecourier/callbacks:completeRun", {{"runId", run}, {"status", "completed"}},
                    As("user_ada")),
              Code::kPermissionDenied);
  CHECK_ERROR(c.Try("codecourier/callbacks:updateRunStep",
                    {{"runId", run}, {"order", 0.0}, {"status", "running"}}, Auth::Admin()),
              Code::kPermissionDenied);
  CHECK_ERROR(
      c.db->CallInternal("codecourier/callbacks:updateRunStep",
                         Value(Object{{"runId", run}, {"order", 7.0}, {"status", "running"}})),
      Code::kNotFound, "no step 7");
  c.Internal("codecourier/callbacks:updateSandboxStatus",
             {{"sandboxId", sandbox}, {"status", "running"}, {"e2bSandboxId", "e2b_1"}});
  CHECK(c.Call("codecourier/sandboxes:get", {{"sandboxId", sandbox}},
               As("user_ada"))["e2bSandboxId"] == Value("e2b_1"));
  Value steps = c.Call("codecourier/runSteps:listByRun", {{"runId", run}}, As("user_ada"));
  REQUIRE(steps.as_array().size() == 2);
  CHECK(steps.as_array()[1]["kind"] == Value("checker"));
  CHECK(steps.as_array()[1]["status"] == Value("pending"));
  // A finished step stays finished (a late "running" is refused); repeating its status is not.
  c.Internal("codecourier/callbacks:updateRunStep",
             {{"runId", run}, {"order", 0.0}, {"status", "completed"}, {"output", "ok"}});
  for (const char* later : {"running", "failed", "skipped"}) {
    INFO(later);
    CHECK_ERROR(
        c.db->CallInternal("codecourier/callbacks:updateRunStep",
                           Value(Object{{"runId", run}, {"order", 0.0}, {"status", later}})),
        Code::kFailedPrecondition, "cc_runSteps", "step 0", run, "completed", later);
  }
  c.Internal("codecourier/callbacks:updateRunStep",
             {{"runId", run}, {"order", 0.0}, {"status", "completed"}, {"output", "ok"}});
  c.Internal("codecourier/callbacks:updateRunStep",
             {{"runId", run}, {"order", 1.0}, {"status", "skipped"}});
  CHECK_ERROR(
      c.db->CallInternal("codecourier/callbacks:updateRunStep",
                         Value(Object{{"runId", run}, {"order", 1.0}, {"status", "running"}})),
      Code::kFailedPrecondition, "step 1", "skipped", "running");
  steps = c.Call("codecourier/runSteps:listByRun", {{"runId", run}}, As("user_ada"));
  CHECK(steps.as_array()[0]["status"] == Value("completed"));
  CHECK(steps.as_array()[1]["status"] == Value("skipped"));

  c.Internal("codecourier/callbacks:completeRun", {{"runId", run},
                                                   {"status", "completed"},
                                                   {"prUrl", "https://github.com/acme/web/pull/7"},
                                                   {"prNumber", 7.0}});
  Value done = c.Call("codecourier/runs:get", {{"runId", run}}, As("user_ada"));
  CHECK(done["status"] == Value("completed"));
  CHECK(done["progress"] == Value(1.0));
  CHECK(done["prNumber"] == Value(7.0));
  CHECK_ERROR(c.db->CallInternal("codecourier/callbacks:completeRun",
                                 Value(Object{{"runId", run}, {"status", "failed"}})),
              Code::kFailedPrecondition, "already finished");
  CHECK_ERROR(
      c.db->CallInternal("codecourier/callbacks:updateRunStep",
                         Value(Object{{"runId", run}, {"order", 1.0}, {"status", "running"}})),
      Code::kFailedPrecondition, run);
  Value notes = c.Call("codecourier/notifications:listMine", {}, As("user_ada"));
  REQUIRE(notes.as_array().size() == 2);
  std::set<std::string> kinds;
  for (const Value& note : notes.as_array()) kinds.insert(note["kind"].as_string());
  CHECK(kinds == std::set<std::string>{"pr_opened", "run_completed"});
  c.Call("codecourier/notifications:markRead", {{"notificationId", notes.as_array()[0]["_id"]}},
         As("user_ada"));
  CHECK(c.Call("codecourier/notifications:listMine", {{"unreadOnly", true}}, As("user_ada"))
            .as_array()
            .size() == 1);
  c.NewUser("user_eve");
  CHECK_ERROR(c.Try("codecourier/notifications:markRead",
                    {{"notificationId", notes.as_array()[1]["_id"]}}, As("user_eve")),
              Code::kNotFound, "cc_notifications");

  // Failed and cancelled runs: their own notification kinds and daily counts.
  for (const char* outcome : {"failed", "cancelled"}) {
    const std::string other =
        c.Call("codecourier/runs:create", {{"projectId", project}, {"workflowId", workflow}},
               As("user_ada"))
            .as_string();
    c.Internal("codecourier/callbacks:completeRun", {{"runId", other}, {"status", outcome}});
    CHECK(c.Call("codecourier/runs:get", {{"runId", other}}, As("user_ada"))["status"] ==
          Value(outcome));
  }
  kinds.clear();
  notes = c.Call("codecourier/notifications:listMine", {}, As("user_ada"));
  for (const Value& note : notes.as_array()) kinds.insert(note["kind"].as_string());
  CHECK(kinds ==
        std::set<std::string>{"pr_opened", "run_completed", "run_failed", "run_cancelled"});
  Value summary =
      c.Call("codecourier/usage:getProjectUsageSummary",
             {{"projectId", project}, {"startDate", "2000-01-01"}, {"endDate", "2999-12-31"}},
             As("user_ada"));
  CHECK(summary["runs"] ==
        Value(Object{{"cancelled", 1.0}, {"completed", 1.0}, {"created", 3.0}, {"failed", 1.0}}));

  // An ended sandbox takes no callback messages or status changes.
  c.Call("codecourier/sandboxes:endSession", {{"sandboxId", sandbox}}, As("user_ada"));
  CHECK_ERROR(
      c.db->CallInternal(
          "codecourier/callbacks:appendSandboxMessage",
          Value(Object{{"sandboxId", sandbox}, {"role", "assistant"}, {"content", "too late"}})),
      Code::kFailedPrecondition, "cc_sandboxes", sandbox, "has ended");
  CHECK_ERROR(c.db->CallInternal("codecourier/callbacks:updateSandboxStatus",
                                 Value(Object{{"sandboxId", sandbox}, {"status", "running"}})),
              Code::kFailedPrecondition, "cc_sandboxes", sandbox, "has ended");
  CHECK(
      c.Call("codecourier/sandboxMessages:listBySandbox", {{"sandboxId", sandbox}}, As("user_ada"))
          .as_array()
          .empty());
  CHECK(c.Call("codecourier/sandboxes:get", {{"sandboxId", sandbox}}, As("user_ada"))["status"] ==
        Value("ended"));

  // A run is deleted once; the second delete finds nothing and changes no counter.
  c.Call("codecourier/runs:deleteRun", {{"id", run}}, As("user_ada"));
  CHECK_ERROR(c.Try("codecourier/runs:deleteRun", {{"id", run}}, As("user_ada")), Code::kNotFound,
              "cc_runs", run);
  CHECK(c.Counters(project, "user_ada")["runCount"] == Value(2.0));
}

TEST_CASE("workflows: validated, listed, soft-deleted; runs need a workflow of the project") {
  Courier c;
  c.NewUser("user_ada");
  const std::string project = c.NewProject("user_ada", "wf");
  const std::string other = c.NewProject("user_ada", "wf-other");
  CHECK_ERROR(
      c.Try("codecourier/workflows:create",
            {{"projectId", project}, {"name", "w"}, {"pipelineType", "t"}, {"steps", Array{}}},
            As("user_ada")),
      Code::kInvalidArgument, "steps", "at least one");
  CHECK_ERROR(c.Try("codecourier/workflows:create",
                    {{"projectId", project},
                     {"name", "w"},
                     {"pipelineType", "t"},
                     {"steps", Array{Object{{"name", ""}, {"kind", "designer"}}}}},
                    As("user_ada")),
              Code::kInvalidArgument, "steps[0].name");
  const std::string workflow = c.NewWorkflow(project, "user_ada");
  const std::string foreign = c.NewWorkflow(other, "user_ada");
  c.Call("codecourier/workflows:update",
         {{"workflowId", workflow},
          {"name", "Renamed"},
          {"steps", Array{Object{{"name", "only"}, {"kind", "optimizer"}}}}},
         As("user_ada"));
  Value listed =
      c.Call("codecourier/workflows:listForProject", {{"projectId", project}}, As("user_ada"));
  REQUIRE(listed.as_array().size() == 1);
  CHECK(listed.as_array()[0]["name"] == Value("Renamed"));
  CHECK_ERROR(c.Try("codecourier/runs:create", {{"projectId", project}, {"workflowId", foreign}},
                    As("user_ada")),
              Code::kInvalidArgument, "workflowId", foreign);
  CHECK_ERROR(
      c.Try("codecourier/runs:create",
            {{"projectId", project}, {"workflowId", workflow}, {"name", "  "}}, As("user_ada")),
      Code::kInvalidArgument, "cc_runs", "name", "empty");
  const std::string run = c.Call("codecourier/runs:create",
                                 {{"projectId", project}, {"workflowId", workflow}}, As("user_ada"))
                              .as_string();
  CHECK(c.Call("codecourier/runSteps:listByRun", {{"runId", run}}, As("user_ada"))
            .as_array()
            .size() == 1);
  c.Call("codecourier/runs:renameRun", {{"id", run}, {"name", "Friday"}}, As("user_ada"));
  CHECK(c.Call("codecourier/runs:get", {{"runId", run}}, As("user_ada"))["name"] ==
        Value("Friday"));
  c.Call("codecourier/workflows:deleteWorkflow", {{"workflowId", workflow}}, As("user_ada"));
  CHECK(c.Call("codecourier/workflows:listForProject", {{"projectId", project}}, As("user_ada"))
            .as_array()
            .empty());
  CHECK_ERROR(c.Try("codecourier/runs:create", {{"projectId", project}, {"workflowId", workflow}},
                    As("user_ada")),
              Code::kNotFound, "cc_workflows", workflow);
  // A deleted record is kept (soft delete), reachable only with IncludeDeleted.
  absl::StatusOr<std::vector<Document>> kept = c.db->Query([&](Reader& r) {
    return r.Table("cc_workflows")
        .WithIndex("by_deleted", Gt("deletedAt", Value(nullptr)))
        .IncludeDeleted()
        .Collect();
  });
  REQUIRE_OK(kept);
  REQUIRE(kept->size() == 1);
  CHECK((*kept)[0].id().text() == workflow);
  Value counters = c.Counters(project, "user_ada");
  CHECK(counters["workflowCount"] == Value(0.0));
  CHECK(counters["runCount"] == Value(1.0));
}

TEST_CASE("counters equal the real counts after mixed and concurrent operations") {
  Courier c;
  c.NewUser("user_ada");
  c.NewUser("user_bob");
  c.NewUser("user_carol");
  const std::string project = c.NewProject("user_ada", "count");
  c.Join(project, "user_ada", "user_bob");
  const std::string workflow = c.NewWorkflow(project, "user_ada");
  c.NewWorkflow(project, "user_bob");

  std::atomic<int> failures{0};
  auto worker = [&](const std::string& who) {
    for (int i = 0; i < 12; ++i) {
      absl::StatusOr<Value> sandbox = c.db->Call(
          "codecourier/sandboxes:create",
          Value(Object{{"projectId", project}, {"name", who + std::to_string(i)}}), As(who));
      absl::StatusOr<Value> run =
          c.db->Call("codecourier/runs:create",
                     Value(Object{{"projectId", project}, {"workflowId", workflow}}), As(who));
      if (!sandbox.ok() || !run.ok()) {
        ++failures;
        continue;
      }
      if (i % 3 == 0) {
        const bool ok =
            c.db->Call("codecourier/sandboxes:deleteSandbox", Value(Object{{"id", *sandbox}}),
                       As(who))
                .ok() &&
            c.db->Call("codecourier/runs:deleteRun", Value(Object{{"id", *run}}), As(who)).ok();
        if (!ok) ++failures;
      }
    }
  };
  std::thread a(worker, "user_ada");
  std::thread b(worker, "user_bob");
  a.join();
  b.join();
  CHECK(failures == 0);
  c.Join(project, "user_ada", "user_carol");
  c.Call("codecourier/projectMembers:remove",
         {{"projectId", project},
          {"userId", c.Call("codecourier/users:current", {}, As("user_bob"))["_id"]}},
         As("user_ada"));
  // A failed create (bad name) changes no counter.
  CHECK_ERROR(c.Try("codecourier/sandboxes:create", {{"projectId", project}, {"name", " "}},
                    As("user_ada")),
              Code::kInvalidArgument, "name");

  absl::StatusOr<Value> real = c.db->Query([&](Reader& r) -> absl::StatusOr<Value> {
    Object counts;
    for (auto [table, field] :
         {std::pair{"cc_sandboxes", "sandboxCount"}, std::pair{"cc_runs", "runCount"},
          std::pair{"cc_workflows", "workflowCount"}}) {
      absl::StatusOr<std::vector<Document>> live =
          r.Table(table)
              .WithIndex("by_project_deleted",
                         Eq("projectId", project).Eq("deletedAt", Undefined{}))
              .Collect();
      if (!live.ok()) return live.status();
      counts[field] = Value(static_cast<double>(live->size()));
    }
    absl::StatusOr<std::vector<Document>> members =
        r.Table("cc_projectMembers")
            .WithIndex("by_project", Eq("projectId", project).Eq("status", "active"))
            .Collect();
    if (!members.ok()) return members.status();
    counts["memberCount"] = Value(static_cast<double>(members->size()));
    return Value(std::move(counts));
  });
  REQUIRE_OK(real);
  CHECK(c.Counters(project, "user_ada") == *real);
  CHECK((*real)["sandboxCount"] == Value(16.0));  // 24 created, 8 deleted
  CHECK((*real)["runCount"] == Value(16.0));
  CHECK((*real)["workflowCount"] == Value(2.0));
  CHECK((*real)["memberCount"] == Value(2.0));  // ada and carol
}

// Waits for the sandbox's learning extraction job to end (the scheduler's thread runs it);
// returns the sandbox.
Value WaitForExtraction(Courier& c, const std::string& sandbox) {
  Value view;
  REQUIRE(PollUntil([&] {
    view = c.Call("codecourier/sandboxes:get", {{"sandboxId", sandbox}}, As("user_ada"));
    const Value& state = view["learningExtraction"]["state"];
    return state == Value("success") || state == Value("failed");
  }));
  return view;
}

TEST_CASE("ending a session schedules learning extraction; learnings are saved and compiled") {
  std::mutex mu;
  std::vector<std::vector<codecourier::SandboxMessage>> calls;
  Courier c(WithKey({.extract_learnings = [&](const std::vector<codecourier::SandboxMessage>& m)
                         -> absl::StatusOr<std::string> {
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back(m);
    if (m.empty()) return std::string();
    if (m[0].content == "fail please") return absl::UnavailableError("the LLM is down");
    return "Run the tests with ctest before pushing";
  }}));
  c.NewUser("user_ada");
  const std::string project = c.NewProject("user_ada", "learn");
  c.Call("codecourier/learnings:add", {{"projectId", project}, {"content", "Use pnpm"}},
         As("user_ada"));
  const std::string sandbox = c.Call("codecourier/sandboxes:create",
                                     {{"projectId", project}, {"name", "s"}}, As("user_ada"))
                                  .as_string();
  c.Call("codecourier/sandboxMessages:send", {{"sandboxId", sandbox}, {"content", "Add a test"}},
         As("user_ada"));
  c.Internal("codecourier/callbacks:appendSandboxMessage",
             {{"sandboxId", sandbox}, {"role", "assistant"}, {"content", "Added; ran ctest"}});
  const Value job =
      c.Call("codecourier/sandboxes:endSession", {{"sandboxId", sandbox}}, As("user_ada"));
  Value ended = WaitForExtraction(c, sandbox);
  CHECK(ended["status"] == Value("ended"));
  CHECK(ended["learningExtraction"]["state"] == Value("success"));
  CHECK(ended["learningJobId"] == job);
  // The job is a document of _scheduled_functions.
  absl::StatusOr<std::optional<Document>> job_doc =
      c.db->Query([&](Reader& r) { return r.Get(job.as_string()); });
  REQUIRE_OK(job_doc);
  REQUIRE(job_doc->has_value());
  CHECK((**job_doc)["name"] == Value("codecourier/learnings:extractFromSandbox"));
  CHECK((**job_doc)["state"] == Value("success"));
  {
    std::lock_guard<std::mutex> lock(mu);
    REQUIRE(calls.size() == 1);
    REQUIRE(calls[0].size() == 2);
    CHECK(calls[0][0].role == "user");
    CHECK(calls[0][1].content == "Added; ran ctest");
  }
  Value learnings =
      c.Call("codecourier/learnings:listForProject", {{"projectId", project}}, As("user_ada"));
  REQUIRE(learnings.as_array().size() == 2);
  CHECK(learnings.as_array()[1]["source"] == Value("extracted"));
  CHECK(learnings.as_array()[1]["sandboxId"] == Value(sandbox));
  Value version =
      c.Call("codecourier/learningVersions:latest", {{"projectId", project}}, As("user_ada"));
  CHECK(version["version"] == Value(2.0));
  CHECK(version["learningCount"] == Value(2.0));
  CHECK(version["compiled"] == Value("- Use pnpm\n- Run the tests with ctest before pushing\n"));

  // An ended session takes no more messages and cannot end twice.
  CHECK_ERROR(c.Try("codecourier/sandboxes:endSession", {{"sandboxId", sandbox}}, As("user_ada")),
              Code::kFailedPrecondition, "has ended");
  CHECK_ERROR(c.Try("codecourier/sandboxMessages:send", {{"sandboxId", sandbox}, {"content", "x"}},
                    As("user_ada")),
              Code::kFailedPrecondition, sandbox);
  CHECK_ERROR(
      c.Try("codecourier/learnings:extractFromSandbox", {{"sandboxId", sandbox}}, As("user_ada")),
      Code::kPermissionDenied);

  // The extractor's error is the job's; an empty conversation saves nothing.
  const std::string failing = c.Call("codecourier/sandboxes:create",
                                     {{"projectId", project}, {"name", "f"}}, As("user_ada"))
                                  .as_string();
  c.Call("codecourier/sandboxMessages:send", {{"sandboxId", failing}, {"content", "fail please"}},
         As("user_ada"));
  c.Call("codecourier/sandboxes:endSession", {{"sandboxId", failing}}, As("user_ada"));
  Value failed = WaitForExtraction(c, failing);
  CHECK(failed["learningExtraction"]["state"] == Value("failed"));
  CHECK(failed["learningExtraction"]["error"].as_string().find("the LLM is down") !=
        std::string::npos);
  const std::string quiet = c.Call("codecourier/sandboxes:create",
                                   {{"projectId", project}, {"name", "q"}}, As("user_ada"))
                                .as_string();
  c.Call("codecourier/sandboxes:endSession", {{"sandboxId", quiet}}, As("user_ada"));
  CHECK(WaitForExtraction(c, quiet)["learningExtraction"]["state"] == Value("success"));
  CHECK(c.Call("codecourier/learnings:listForProject", {{"projectId", project}}, As("user_ada"))
            .as_array()
            .size() == 2);
}

TEST_CASE("without an extractor the extraction job fails with a clear error") {
  Courier c;
  c.NewUser("user_ada");
  const std::string project = c.NewProject("user_ada", "nolearn");
  const std::string sandbox = c.Call("codecourier/sandboxes:create",
                                     {{"projectId", project}, {"name", "s"}}, As("user_ada"))
                                  .as_string();
  c.Call("codecourier/sandboxes:endSession", {{"sandboxId", sandbox}}, As("user_ada"));
  Value view = WaitForExtraction(c, sandbox);
  CHECK(view["learningExtraction"]["state"] == Value("failed"));
  CHECK(view["learningExtraction"]["error"].as_string().find("no learning extractor") !=
        std::string::npos);
}

TEST_CASE("usage: cost rates, records and the project summary over a date range") {
  Courier c;
  c.NewUser("user_ada");
  c.NewUser("user_bob");
  const std::string project = c.NewProject("user_ada", "usage");
  const std::string other = c.NewProject("user_ada", "usage-other");
  CHECK_ERROR(
      c.Try("codecourier/usage:upsertCostRate",
            {{"service", "e2b"}, {"rateType", "per_second"}, {"unitCost", 0.001}}, As("user_ada")),
      Code::kPermissionDenied);
  c.Internal("codecourier/usage:upsertCostRate",
             {{"service", "claude_code"}, {"rateType", "per_1k_tokens"}, {"unitCost", 0.01}});
  c.Internal("codecourier/usage:upsertCostRate", {{"service", "claude_code"},
                                                  {"rateType", "per_1k_tokens"},
                                                  {"modelTier", "opus"},
                                                  {"unitCost", 0.05}});
  c.Internal("codecourier/usage:upsertCostRate",
             {{"service", "e2b"}, {"rateType", "per_second"}, {"unitCost", 0.5}});
  c.Internal("codecourier/usage:upsertCostRate",  // replaces the e2b rate
             {{"service", "e2b"}, {"rateType", "per_second"}, {"unitCost", 0.25}});
  CHECK_ERROR(c.db->CallInternal(
                  "codecourier/usage:upsertCostRate",
                  Value(Object{{"service", "x"}, {"rateType", "per_run"}, {"unitCost", -1.0}})),
              Code::kInvalidArgument, "unitCost");
  auto record = [&](const std::string& p, const char* service, double quantity, const char* date,
                    Value tier = Value(Undefined{})) {
    Object args{{"projectId", p}, {"service", service}, {"quantity", quantity}, {"date", date}};
    if (!tier.is_undefined()) args["modelTier"] = tier;
    c.Internal("codecourier/usage:recordUsage", std::move(args));
  };
  record(project, "claude_code", 100, "2026-03-01");
  record(project, "claude_code", 10, "2026-03-02", "opus");
  record(project, "e2b", 40, "2026-03-02");
  record(project, "e2b", 1000, "2026-04-01");       // out of range
  record(other, "e2b", 1000, "2026-03-02");         // another project
  record(project, "trigger_dev", 3, "2026-03-31");  // no rate: cost 0
  CHECK_ERROR(
      c.db->CallInternal("codecourier/usage:recordUsage", Value(Object{{"projectId", project},
                                                                       {"service", "e2b"},
                                                                       {"quantity", 1.0},
                                                                       {"date", "2026-02-30"}})),
      Code::kInvalidArgument, "date", "2026-02-30");
  auto today = [] { return absl::FormatTime("%Y-%m-%d", absl::Now(), absl::UTCTimeZone()); };
  const std::string first_day = today();
  c.Call("codecourier/sandboxes:create", {{"projectId", project}, {"name", "s"}}, As("user_ada"));

  Value summary =
      c.Call("codecourier/usage:getProjectUsageSummary",
             {{"projectId", project}, {"startDate", "2026-03-01"}, {"endDate", "2026-03-31"}},
             As("user_ada"));
  const Array& services = summary["services"].as_array();
  REQUIRE(services.size() == 3);
  CHECK(services[0] == Value(Object{{"service", "claude_code"},
                                    {"quantity", 110.0},
                                    {"cost", 100 * 0.01 + 10 * 0.05},
                                    {"records", 2.0}}));
  CHECK(services[1]["cost"] == Value(10.0));
  CHECK(services[2]["cost"] == Value(0.0));
  CHECK(summary["totalCost"] == Value(100 * 0.01 + 10 * 0.05 + 10.0));
  CHECK(summary["counters"]["sandboxCount"] == Value(1.0));
  // The day's activity row counted the sandbox (a range, in case midnight passed meanwhile).
  const std::string last_day = today();
  Value days = c.Call("codecourier/usage:getDailyStats",
                      {{"projectId", project}, {"startDate", first_day}, {"endDate", last_day}},
                      As("user_ada"));
  REQUIRE(days.as_array().size() == 1);
  CHECK(days.as_array()[0]["sandboxesCreated"] == Value(1.0));
  CHECK(days.as_array()[0]["runsCreated"] == Value(0.0));
  CHECK_ERROR(c.Try("codecourier/usage:getDailyStats",
                    {{"projectId", project}, {"startDate", last_day}, {"endDate", "2000-01-01"}},
                    As("user_ada")),
              Code::kInvalidArgument, "cc_dailyStats", "after");
  CHECK(summary["counters"]["memberCount"] == Value(1.0));

  CHECK_ERROR(
      c.Try("codecourier/usage:getProjectUsageSummary",
            {{"projectId", project}, {"startDate", "2026-04-01"}, {"endDate", "2026-03-01"}},
            As("user_ada")),
      Code::kInvalidArgument, "after");
  CHECK_ERROR(c.Try("codecourier/usage:getProjectUsageSummary",
                    {{"projectId", project}, {"startDate", "March"}, {"endDate", "2026-03-01"}},
                    As("user_ada")),
              Code::kInvalidArgument, "startDate", "March");
  CHECK_ERROR(
      c.Try("codecourier/usage:getProjectUsageSummary",
            {{"projectId", project}, {"startDate", "2026-03-01"}, {"endDate", "2026-03-31"}},
            As("user_bob")),
      Code::kPermissionDenied, project);

  // The summary is live: a record in its range re-runs it; records of another project or out of
  // its range, and another project's activity, do not (counted through a wrapper, as an
  // unchanged result is never delivered).
  auto summary_runs = c.Counted("codecourier/usage:getProjectUsageSummary");
  UpdateCounter live;
  absl::StatusOr<Subscription> sub = c.db->SubscribeFunction(
      "test:counted_getProjectUsageSummary",
      Value(Object{{"projectId", project}, {"startDate", "2026-03-01"}, {"endDate", "2026-03-31"}}),
      live.Slot(), As("user_ada"));
  REQUIRE_OK(sub);
  c.Settle();
  const int seen = *summary_runs;
  REQUIRE(seen >= 1);
  record(other, "e2b", 5, "2026-03-05");
  c.Settle();
  CHECK(*summary_runs == seen);
  record(project, "e2b", 5, "2026-04-05");
  c.Settle();
  CHECK(*summary_runs == seen);
  c.Call("codecourier/sandboxes:create", {{"projectId", other}, {"name", "s"}}, As("user_ada"));
  c.Settle();
  CHECK(*summary_runs == seen);
  record(project, "e2b", 4, "2026-03-05");
  c.Settle();
  CHECK(*summary_runs > seen);
  std::lock_guard<std::mutex> lock(live.mu);
  CHECK(live.last["services"].as_array()[1]["quantity"] == Value(44.0));
}

}  // namespace
