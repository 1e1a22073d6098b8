#include "functions/function_registry.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "schema/schema.h"
#include "stagedb/database.h"
#include "transactions/transaction_state.h"
#include "util/absl_view.h"

namespace stagedb {

std::string_view FunctionKindName(FunctionKind kind) {
  switch (kind) {
    case FunctionKind::kQuery:
      return "query";
    case FunctionKind::kMutation:
      return "mutation";
    case FunctionKind::kAction:
      return "action";
  }
  return "?";
}

absl::StatusOr<Value> QueryContext::RunQuery(std::string_view name, const Value& args) {
  return internal::FunctionCalls::RunNested(registry_, name, FunctionKind::kQuery, reader_, nullptr,
                                            auth_, args);
}

absl::StatusOr<Value> MutationContext::RunQuery(std::string_view name, const Value& args) {
  return internal::FunctionCalls::RunNested(registry_, name, FunctionKind::kQuery, transaction_,
                                            &transaction_, auth_, args);
}

absl::StatusOr<Value> MutationContext::RunMutation(std::string_view name, const Value& args) {
  return internal::FunctionCalls::RunNested(registry_, name, FunctionKind::kMutation, transaction_,
                                            &transaction_, auth_, args);
}

absl::StatusOr<Value> ActionContext::RunQuery(std::string_view name, const Value& args) {
  return internal::FunctionCalls::CallByName(db_, name, FunctionKind::kQuery, args, auth_);
}

absl::StatusOr<Value> ActionContext::RunMutation(std::string_view name, const Value& args) {
  return internal::FunctionCalls::CallByName(db_, name, FunctionKind::kMutation, args, auth_);
}

absl::StatusOr<Value> ActionContext::RunAction(std::string_view name, const Value& args) {
  return internal::FunctionCalls::CallByName(db_, name, FunctionKind::kAction, args, auth_);
}

Scheduler ActionContext::scheduler() { return db_.scheduler(auth_); }

FileStorage ActionContext::storage() { return db_.files(); }

namespace internal {
namespace {

// "module:function": the module a path of [A-Za-z0-9_./-], the function an identifier.
bool IsFunctionName(std::string_view name) {
  const size_t colon = name.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  for (const char c : name.substr(0, colon)) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '/' || c == '-';
    if (!ok) return false;
  }
  return IsIdentifier(name.substr(colon + 1));
}

// A validator from the JSON text of a FunctionDef member; nullopt when the text is empty.
absl::StatusOr<std::optional<Validator>> ParseValidator(std::string_view text, bool args_fields,
                                                        const std::string& where) {
  if (text.empty()) return std::nullopt;
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: not valid JSON: %s", where, text));
  }
  // The arguments are an object with exactly the declared fields, as a table's documents.
  if (args_fields) json = nlohmann::json{{"type", "object"}, {"fields", std::move(json)}};
  absl::StatusOr<Validator> validator = Validator::FromJson(json, where);
  if (!validator.ok()) return validator.status();
  return *std::move(validator);
}

// A call's row scope: an admin's calls are unscoped; everyone else's are confined to their
// identity's claims (none, for an anonymous caller).
std::optional<RowScope> ScopeOf(const Auth& auth) {
  if (auth.is_admin()) return std::nullopt;
  const Identity* identity = auth.identity();
  if (identity == nullptr) return RowScope{};
  return RowScope{.tenant = identity->tenant_id, .workspace = identity->workspace_id};
}

// Runs `body` between the argument and the return value checks, on the arguments as checked
// (converted by the numbers rule).
absl::StatusOr<Value> Checked(const FunctionRegistry& registry, const RegisteredFunction& function,
                              const Value& args,
                              absl::FunctionRef<absl::StatusOr<Value>(const Value&)> body) {
  std::optional<Value> converted;
  if (absl::Status status = registry.CheckArgs(function, args, &converted); !status.ok()) {
    return status;
  }
  absl::StatusOr<Value> result = body(converted.has_value() ? *converted : args);
  if (!result.ok()) return result;
  if (absl::Status status = registry.CheckReturn(function, &*result); !status.ok()) return status;
  return result;
}

}  // namespace

absl::Status FunctionRegistry::Register(const FunctionDef& def, RegisteredFunction function) {
  if (!IsFunctionName(def.name)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "function name \"%s\" is not of the form \"module:function\" (module: letters, digits, "
        "_ . / -; function: an identifier)",
        def.name));
  }
  const std::string where = absl::StrFormat("function \"%s\"", def.name);
  absl::StatusOr<std::optional<Validator>> args =
      ParseValidator(def.args, /*args_fields=*/true, where + " args");
  if (!args.ok()) return args.status();
  absl::StatusOr<std::optional<Validator>> returns =
      ParseValidator(def.returns, /*args_fields=*/false, where + " returns");
  if (!returns.ok()) return returns.status();
  // id(table) validators must name tables of this database.
  for (const std::optional<Validator>* validator : {&*args, &*returns}) {
    if (!validator->has_value()) continue;
    std::vector<std::string> tables;
    (*validator)->CollectIdTables(&tables);
    for (const std::string& table : tables) {
      if (catalog_.FindTable(table) == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrFormat("%s: id(%s) names a table that is not in the schema", where, table));
      }
    }
  }
  function.name = def.name;
  function.visibility = def.visibility;
  function.args = *std::move(args);
  function.returns = *std::move(returns);
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] =
      functions_.try_emplace(def.name, std::make_shared<const RegisteredFunction>(function));
  if (!inserted) {
    return absl::AlreadyExistsError(
        absl::StrFormat("a function named \"%s\" is already registered (a %s)", def.name,
                        AbslView(FunctionKindName(it->second->kind))));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<const RegisteredFunction>> FunctionRegistry::Find(
    std::string_view name, std::optional<FunctionKind> kind, bool allow_internal) const {
  std::shared_ptr<const RegisteredFunction> function;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = functions_.find(AbslView(name));
    if (it != functions_.end()) function = it->second;
  }
  if (function == nullptr) {
    return absl::NotFoundError(absl::StrFormat("no function named \"%s\" is registered", name));
  }
  if (function->visibility == Visibility::kInternal && !allow_internal) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "function \"%s\" is internal: only other functions, the scheduler and trusted host code "
        "(CallInternal) may call it",
        name));
  }
  if (kind.has_value() && function->kind != *kind) {
    return absl::FailedPreconditionError(absl::StrFormat("function \"%s\" is a %s, not a %s", name,
                                                         AbslView(FunctionKindName(function->kind)),
                                                         AbslView(FunctionKindName(*kind))));
  }
  return function;
}

std::vector<Violation> FunctionRegistry::Violations(const Validator& validator,
                                                    Value* value) const {
  std::vector<Violation> violations;
  validator.CheckAndConvert(value, "", Tables(), &violations);
  return violations;
}

absl::Status FunctionRegistry::CheckArgs(const RegisteredFunction& function, const Value& args,
                                         std::optional<Value>* converted) const {
  if (!args.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("function \"%s\": the arguments must be an object, got %s %s",
                        function.name, AbslView(TypeName(args.type())), DebugString(args, 60)));
  }
  if (!function.args.has_value()) return absl::OkStatus();
  // Only arguments the exact check refuses can need converting: checking first spares every
  // other call a copy of its arguments (which may hold a file's content).
  std::vector<Violation> exact;
  function.args->Check(args, "", Tables(), &exact);
  if (exact.empty()) return absl::OkStatus();
  Value copy = args;
  const std::vector<Violation> violations = Violations(*function.args, &copy);
  if (violations.empty()) {
    if (converted != nullptr) *converted = std::move(copy);
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrFormat("function \"%s\": argument \"%s\": %s",
                                                    function.name, violations[0].path,
                                                    DescribeViolations(violations)));
}

absl::Status FunctionRegistry::CheckReturn(const RegisteredFunction& function,
                                           Value* result) const {
  if (!function.returns.has_value()) return absl::OkStatus();
  const std::vector<Violation> violations = Violations(*function.returns, result);
  if (violations.empty()) return absl::OkStatus();
  const std::string where =
      violations[0].path.empty() ? "" : absl::StrFormat(" at \"%s\"", violations[0].path);
  return absl::InternalError(
      absl::StrFormat("function \"%s\" returned a value its returns validator refuses%s: %s",
                      function.name, where, DescribeViolations(violations)));
}

absl::StatusOr<Value> FunctionCalls::RunQuery(const FunctionRegistry& registry,
                                              const RegisteredFunction& function, Reader& reader,
                                              const Auth& auth, const Value& args) {
  ReaderAccess::State(reader).set_row_scope(ScopeOf(auth));
  QueryContext context(reader, auth, registry);
  return Checked(registry, function, args,
                 [&](const Value& checked) { return function.query(context, checked); });
}

absl::StatusOr<Value> FunctionCalls::RunMutation(const FunctionRegistry& registry,
                                                 const RegisteredFunction& function,
                                                 Transaction& transaction, const Auth& auth,
                                                 const Value& args) {
  ReaderAccess::State(transaction).set_row_scope(ScopeOf(auth));
  MutationContext context(transaction, auth, registry);
  return Checked(registry, function, args,
                 [&](const Value& checked) { return function.mutation(context, checked); });
}

absl::StatusOr<Value> FunctionCalls::RunAction(const FunctionRegistry& registry,
                                               const RegisteredFunction& function, Database& db,
                                               const Auth& auth, const Value& args) {
  ActionContext context(db, auth);
  return Checked(registry, function, args,
                 [&](const Value& checked) { return function.action(context, checked); });
}

absl::StatusOr<Value> FunctionCalls::RunNested(const FunctionRegistry& registry,
                                               std::string_view name, FunctionKind kind,
                                               Reader& reader, Transaction* transaction,
                                               const Auth& auth, const Value& args) {
  absl::StatusOr<std::shared_ptr<const RegisteredFunction>> function =
      registry.Find(name, kind, /*allow_internal=*/true);
  if (!function.ok()) return function.status();
  if (kind == FunctionKind::kMutation) {
    return RunMutation(registry, **function, *transaction, auth, args);
  }
  return RunQuery(registry, **function, reader, auth, args);
}

absl::StatusOr<Value> FunctionCalls::CallByName(Database& db, std::string_view name,
                                                std::optional<FunctionKind> kind, const Value& args,
                                                const Auth& auth) {
  return db.CallFunction(name, kind, args, auth, /*allow_internal=*/true);
}

}  // namespace internal
}  // namespace stagedb
