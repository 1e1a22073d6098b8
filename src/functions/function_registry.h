// FunctionRegistry: the named functions of one database, with their validators; FunctionCalls:
// the one way a registered function is run (arguments checked, context built, return value
// checked), whether from a public entry point, another function or a subscription.
#ifndef STAGEDB_SRC_FUNCTIONS_FUNCTION_REGISTRY_H_
#define STAGEDB_SRC_FUNCTIONS_FUNCTION_REGISTRY_H_

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "schema/catalog.h"
#include "schema/validator.h"
#include "stagedb/functions.h"

namespace stagedb::internal {

struct RegisteredFunction {
  std::string name;
  FunctionKind kind = FunctionKind::kQuery;
  Visibility visibility = Visibility::kPublic;
  std::optional<Validator> args;     // an object validator; none: any object
  std::optional<Validator> returns;  // none: any value
  // The one of these that `kind` names.
  QueryFunction query;
  MutationFunction mutation;
  ActionFunction action;
};

class FunctionRegistry {
 public:
  explicit FunctionRegistry(const Catalog& catalog) : catalog_(catalog) {}

  // Parses the validators of `def` and adds `function` (whose handler matches its kind).
  // InvalidArgument naming the function for a malformed name or validator; AlreadyExists when
  // the name is taken.
  absl::Status Register(const FunctionDef& def, RegisteredFunction function);

  // The function called `name`. NotFound naming it; PermissionDenied when it is internal and
  // `allow_internal` is false; FailedPrecondition when `kind` is given and it is another kind.
  absl::StatusOr<std::shared_ptr<const RegisteredFunction>> Find(std::string_view name,
                                                                 std::optional<FunctionKind> kind,
                                                                 bool allow_internal) const;

  // InvalidArgument naming the function, the argument and what was expected. When the
  // arguments pass only by the numbers rule (an int64 given for a number), `converted` (if
  // given) receives them converted, as the function is to see them.
  absl::Status CheckArgs(const RegisteredFunction& function, const Value& args,
                         std::optional<Value>* converted = nullptr) const;
  // Internal naming the function and what its returns validator expected; converts `result`
  // in place by the numbers rule.
  absl::Status CheckReturn(const RegisteredFunction& function, Value* result) const;

 private:
  // What `validator` finds wrong with `value`, converting it by the numbers rule (id(table)
  // checked against this database).
  std::vector<Violation> Violations(const Validator& validator, Value* value) const;
  // id(table) checks against this database's tables.
  TableNumberLookup Tables() const {
    return [this](std::string_view table) { return catalog_.TableNumber(table); };
  }

  const Catalog& catalog_;
  // A std::mutex, not absl::Mutex: the scheduler's thread reads the map while the host
  // registers, and ThreadSanitizer sees only the standard library's synchronization.
  mutable std::mutex mu_;  // guards functions_
  absl::flat_hash_map<std::string, std::shared_ptr<const RegisteredFunction>> functions_;
};

struct FunctionCalls {
  static absl::StatusOr<Value> RunQuery(const FunctionRegistry& registry,
                                        const RegisteredFunction& function, Reader& reader,
                                        const Auth& auth, const Value& args);
  static absl::StatusOr<Value> RunMutation(const FunctionRegistry& registry,
                                           const RegisteredFunction& function,
                                           Transaction& transaction, const Auth& auth,
                                           const Value& args);
  static absl::StatusOr<Value> RunAction(const FunctionRegistry& registry,
                                         const RegisteredFunction& function, Database& db,
                                         const Auth& auth, const Value& args);
  // A query's or mutation's call by name: the same snapshot (`reader`) or transaction
  // (`transaction`, needed for a mutation), internal functions allowed.
  static absl::StatusOr<Value> RunNested(const FunctionRegistry& registry, std::string_view name,
                                         FunctionKind kind, Reader& reader,
                                         Transaction* transaction, const Auth& auth,
                                         const Value& args);
  // An action's call by name: its own transaction, internal functions allowed.
  static absl::StatusOr<Value> CallByName(Database& db, std::string_view name,
                                          std::optional<FunctionKind> kind, const Value& args,
                                          const Auth& auth);
};

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_FUNCTIONS_FUNCTION_REGISTRY_H_
