// Named functions: queries, mutations and actions registered on a Database by name
// ("stage:upsertAppChannel"), each with an argument validator and a return validator in the
// schema validator language (README "Schema files") and a visibility, called by name with
// arguments as a Value object (Database::Call, CallInternal, SubscribeFunction).
//
//   db->RegisterMutation(
//       {.name = "tasks:rename",
//        .args = R"({"id": {"type": "id", "table": "tasks"}, "title": "string"})",
//        .returns = R"("null")"},
//       [](stagedb::MutationContext& ctx, const stagedb::Value& args) -> absl::StatusOr<Value> {
//         ...ctx.db().Patch(...)...
//       });
//   db->Call("tasks:rename", stagedb::Object{{"id", id}, {"title", "Ship it"}}, auth);
//
// Kinds, as in Convex:
//   query:    reads one snapshot (a Reader); may be subscribed to by name.
//   mutation: one serializable transaction (it may run more than once on conflicts, see Mutate).
//   action:   not transactional; may do outside work and call queries, mutations and actions by
//             name, each call its own transaction.
// Visibility: a public function may be called from the public entry points (Call,
// SubscribeFunction); an internal one only from other functions, the scheduler and trusted
// host code (CallInternal).
#ifndef STAGEDB_FUNCTIONS_H_
#define STAGEDB_FUNCTIONS_H_

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "stagedb/auth.h"
#include "stagedb/export.h"
#include "stagedb/file_storage.h"
#include "stagedb/reader.h"
#include "stagedb/scheduler.h"
#include "stagedb/transaction.h"
#include "stagedb/value.h"

namespace stagedb {

class Database;
namespace internal {
class FunctionRegistry;
struct FunctionCalls;
}  // namespace internal

enum class FunctionKind { kQuery, kMutation, kAction };
enum class Visibility { kPublic, kInternal };

// "query", "mutation", "action": for messages.
STAGEDB_EXPORT std::string_view FunctionKindName(FunctionKind kind);

struct FunctionDef {
  // "module:function": the module a path of [A-Za-z0-9_./-], the function an identifier.
  std::string name;
  Visibility visibility = Visibility::kPublic;
  // The arguments' fields, as a table's "fields" in a schema file (JSON text), e.g.
  // R"({"sessionId": {"type": "id", "table": "stage_sessions"}, "limit": {"type": "optional",
  // "of": "int64"}})": the arguments are an object with exactly these fields. Empty: any object.
  std::string args;
  // The validator of the return value (JSON text), e.g. R"("null")" or R"({"type": "array",
  // "items": "any"})". Empty: any value.
  std::string returns;
};

// What a query function gets: a snapshot to read, the caller, and other queries by name (run on
// the same snapshot; internal ones too).
class STAGEDB_EXPORT QueryContext {
 public:
  Reader& db() { return reader_; }
  const Auth& auth() const { return auth_; }
  absl::StatusOr<Value> RunQuery(std::string_view name, const Value& args);

 private:
  friend struct internal::FunctionCalls;
  QueryContext(Reader& reader, const Auth& auth, const internal::FunctionRegistry& registry)
      : reader_(reader), auth_(auth), registry_(registry) {}

  Reader& reader_;
  const Auth& auth_;
  const internal::FunctionRegistry& registry_;
};

// What a mutation function gets: its transaction, the caller, and queries and mutations by name,
// run inside this same transaction (as Convex's ctx.runQuery / ctx.runMutation in a mutation).
class STAGEDB_EXPORT MutationContext {
 public:
  Transaction& db() { return transaction_; }
  const Auth& auth() const { return auth_; }
  absl::StatusOr<Value> RunQuery(std::string_view name, const Value& args);
  absl::StatusOr<Value> RunMutation(std::string_view name, const Value& args);
  // Schedules functions in this transaction (scheduler.h): the jobs commit with it, or vanish.
  Scheduler scheduler() { return Scheduler(registry_, &transaction_, nullptr, auth_); }

 private:
  friend struct internal::FunctionCalls;
  MutationContext(Transaction& transaction, const Auth& auth,
                  const internal::FunctionRegistry& registry)
      : transaction_(transaction), auth_(auth), registry_(registry) {}

  Transaction& transaction_;
  const Auth& auth_;
  const internal::FunctionRegistry& registry_;
};

// What an action gets: the caller, and functions by name, each call its own transaction, run as
// the same caller (internal functions too).
class STAGEDB_EXPORT ActionContext {
 public:
  const Auth& auth() const { return auth_; }
  absl::StatusOr<Value> RunQuery(std::string_view name, const Value& args);
  absl::StatusOr<Value> RunMutation(std::string_view name, const Value& args);
  absl::StatusOr<Value> RunAction(std::string_view name, const Value& args);
  // Schedules functions (scheduler.h), each job in a transaction of its own, run as this caller.
  Scheduler scheduler();
  // The database's file storage (file_storage.h).
  FileStorage storage();

 private:
  friend struct internal::FunctionCalls;
  ActionContext(Database& db, const Auth& auth) : db_(db), auth_(auth) {}

  Database& db_;
  const Auth& auth_;
};

// The functions themselves. `args` has passed the argument validator; the value returned must
// pass the return validator, or the call fails (and a mutation writes nothing).
using QueryFunction = std::function<absl::StatusOr<Value>(QueryContext&, const Value& args)>;
using MutationFunction = std::function<absl::StatusOr<Value>(MutationContext&, const Value& args)>;
using ActionFunction = std::function<absl::StatusOr<Value>(ActionContext&, const Value& args)>;

}  // namespace stagedb

#endif  // STAGEDB_FUNCTIONS_H_
