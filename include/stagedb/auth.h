// Auth: who a function call runs as. The host verifies the caller's token (stagedb does not) and
// passes what it learned as an Identity; functions read it from their context
// (QueryContext::auth() and the like, functions.h).
//
//   db->Call("tasks:list", {}, stagedb::Auth::User({.subject = "user_1", .workspace_id = "ws_9"}));
//
// Three kinds of caller:
//   Anonymous: no identity (a public page, a health check);
//   User:      an authenticated identity;
//   Admin:     trusted host code, explicitly unscoped (maintenance, migrations, the scheduler's
//              own bookkeeping). Only Admin may name no identity and still act for everyone.
#ifndef STAGEDB_AUTH_H_
#define STAGEDB_AUTH_H_

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stagedb {

// The claims of a verified token (the fields Convex's UserIdentity and the seeds' auth carry).
struct Identity {
  std::string subject;           // the user, e.g. "user_2x9…" (the token's `sub`)
  std::string issuer;            // who issued the token (`iss`)
  std::string token_identifier;  // unique per identity, e.g. issuer + "|" + subject
  std::string tenant_id;         // empty: the identity belongs to no tenant
  std::string workspace_id;      // empty: to no workspace
  std::vector<std::string> roles;

  bool HasRole(std::string_view role) const {
    return std::find(roles.begin(), roles.end(), role) != roles.end();
  }
  friend bool operator==(const Identity&, const Identity&) = default;
};

class Auth {
 public:
  static Auth Anonymous() { return Auth(Kind::kAnonymous, std::nullopt); }
  static Auth User(Identity identity) { return Auth(Kind::kUser, std::move(identity)); }
  static Auth Admin() { return Auth(Kind::kAdmin, std::nullopt); }

  // The caller's identity; nullptr for Anonymous and Admin.
  const Identity* identity() const { return identity_ ? &*identity_ : nullptr; }
  bool is_admin() const { return kind_ == Kind::kAdmin; }
  bool is_anonymous() const { return kind_ == Kind::kAnonymous; }

  friend bool operator==(const Auth&, const Auth&) = default;

 private:
  enum class Kind { kAnonymous, kUser, kAdmin };
  Auth(Kind kind, std::optional<Identity> identity) : kind_(kind), identity_(std::move(identity)) {}

  Kind kind_;
  std::optional<Identity> identity_;
};

}  // namespace stagedb

#endif  // STAGEDB_AUTH_H_
