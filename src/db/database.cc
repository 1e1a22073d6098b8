#include "stagedb/database.h"

#include <openssl/rand.h>

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/memory/memory.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "functions/function_registry.h"
#include "functions/job_runner.h"
#include "reactive/subscription_registry.h"
#include "schema/catalog.h"
#include "schema/schema.h"
#include "stagedb/key_codec.h"
#include "storage/lmdb_store.h"
#include "transactions/committer.h"
#include "transactions/transaction_state.h"
#include "util/call_guarded.h"
#include "util/unix_millis.h"
#include "values/document_codec.h"

namespace stagedb {
namespace internal {
namespace {

constexpr std::string_view kSchemaKey = "schema";
constexpr std::string_view kCatalogKey = "catalog";
constexpr std::string_view kCursorSecretKey = "cursor_secret";
constexpr std::string_view kSystemSchemaKey = "system_schema";

// Calls `fn` for every entry of [prefix, PrefixEnd(prefix)) with its key and value, in key
// order. Entries are copied out in batches of bounded size, so `fn` may write to `txn` (which
// would invalidate views into LMDB's pages) and memory stays bounded however large the range.
absl::Status ForEachEntry(StoreTxn& txn, const std::string& prefix,
                          absl::FunctionRef<absl::Status(std::string_view, std::string_view)> fn) {
  constexpr size_t kBatchBytes = size_t{4} << 20;
  const std::string end = PrefixEnd(prefix);
  std::string resume = prefix;
  std::vector<std::pair<std::string, std::string>> batch;
  for (;;) {
    batch.clear();
    size_t batch_bytes = 0;
    bool done = false;
    {
      absl::StatusOr<StoreCursor> cursor = txn.OpenCursor(StoreDb::kData);
      if (!cursor.ok()) return cursor.status();
      for (absl::StatusOr<bool> found = cursor->SeekAtOrAfter(resume);; found = cursor->Next()) {
        if (!found.ok()) return found.status();
        if (!*found || cursor->key() >= end) {
          done = true;
          break;
        }
        batch.emplace_back(cursor->key(), cursor->value());
        batch_bytes += cursor->key().size() + cursor->value().size();
        if (batch_bytes >= kBatchBytes) break;
      }
    }
    for (const auto& [key, value] : batch) {
      if (absl::Status s = fn(key, value); !s.ok()) return s;
    }
    if (done || batch.empty()) return absl::OkStatus();
    resume = KeySuccessor(batch.back().first);
  }
}

// Problems of one kind (a field, an index) found in many documents: counted, with the first as
// the example, so a refusal stays short however many documents share a problem.
struct Tally {
  size_t count = 0;
  std::string example;
  void Add(absl::FunctionRef<std::string()> describe) {
    if (count++ == 0) example = describe();
  }
};

// Applies the change from `old` (null for a new database) to `next` inside `txn`: checks that
// stored documents satisfy changed tables, backfills new indexes and drops removed ones. Every
// violation is collected so the refusal names them all.
absl::Status Evolve(StoreTxn& txn, const Catalog* old, const Catalog& next) {
  if (old == nullptr) return absl::OkStatus();
  std::vector<std::string> problems;
  absl::flat_hash_set<uint32_t> next_index_ids;
  for (const TableInfo& table : next.tables()) {
    for (const IndexInfo* index : table.indexes) next_index_ids.insert(index->id);
  }
  absl::flat_hash_set<uint32_t> old_index_ids;
  for (const TableInfo& table : old->tables()) {
    for (const IndexInfo* index : table.indexes) old_index_ids.insert(index->id);
    if (next.FindTable(table.name) != nullptr) continue;
    size_t count = 0;
    absl::Status s = ForEachEntry(txn, table.by_id->prefix, [&](auto, auto) {
      ++count;
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    if (count > 0) {
      problems.push_back(absl::StrFormat(
          "table \"%s\": it has %d documents but is not in the new schema", table.name, count));
    }
  }
  auto table_number = [&next](std::string_view name) { return next.TableNumber(name); };

  for (const TableInfo& table : next.tables()) {
    const TableInfo* before = old->FindTable(table.name);
    if (before == nullptr) continue;  // a new table is empty
    const bool fields_changed = before->def->document.ToJson() != table.def->document.ToJson();
    std::vector<const IndexInfo*> new_indexes;
    for (const IndexInfo* index : table.indexes) {
      if (!old_index_ids.contains(index->id)) new_indexes.push_back(index);
    }
    if (!fields_changed && new_indexes.empty()) continue;

    // One pass over the table: validate each document and write its new index entries
    // (undone with the transaction if a problem refuses the change).
    std::map<std::string, Tally> field_problems;  // by field path
    std::map<std::string, Tally> duplicates;      // by index name
    std::map<std::string, Tally> oversized_keys;  // by index name
    absl::Status s =
        ForEachEntry(txn, table.by_id->prefix, [&](std::string_view key, std::string_view bytes) {
          absl::StatusOr<Object> document = DecodeDocument(bytes);
          if (!document.ok()) return document.status();
          const std::string& id_text = (*document)["_id"].as_string();
          if (fields_changed) {
            std::vector<Violation> violations;
            table.def->document.CheckDocument(*document, table_number, &violations);
            for (const Violation& violation : violations) {
              field_problems[violation.path].Add([&] {
                return absl::StrFormat("document \"%s\": %s", id_text, violation.message);
              });
            }
          }
          for (const IndexInfo* index : new_indexes) {
            std::string index_key = index->KeyFor(*document);
            if (absl::Status size = index->CheckKeySize(index_key, *document); !size.ok()) {
              oversized_keys[index->name].Add([&] { return std::string(size.message()); });
              continue;
            }
            if (index->ConstrainsUnique(*document)) {
              // Entries written so far are in the store: a neighbour with the same unique part
              // is a duplicate.
              const std::string unique_prefix =
                  index->KeyPrefixFor(*document, index->declared_fields);
              absl::StatusOr<StoreCursor> cursor = txn.OpenCursor(StoreDb::kData);
              if (!cursor.ok()) return cursor.status();
              absl::StatusOr<bool> found = cursor->SeekAtOrAfter(unique_prefix);
              if (!found.ok()) return found.status();
              if (*found && cursor->key() < PrefixEnd(unique_prefix)) {
                duplicates[index->name].Add([&] { return index->DescribeValues(*document); });
              }
            }
            if (absl::Status put = txn.Put(StoreDb::kData, index_key, ""); !put.ok()) {
              return put;
            }
          }
          return absl::OkStatus();
        });
    if (!s.ok()) return s;
    for (const auto& [index_name, duplicate] : duplicates) {
      problems.push_back(absl::StrFormat(
          "table \"%s\": new unique index \"%s\" would have %d duplicate(s), e.g. two "
          "documents with %s",
          table.name, index_name, duplicate.count, duplicate.example));
    }
    for (const auto& [index_name, oversized] : oversized_keys) {
      problems.push_back(
          absl::StrFormat("%s (%d document(s) in all)", oversized.example, oversized.count));
    }
    for (const auto& [path, problem] : field_problems) {
      problems.push_back(absl::StrFormat(
          "table \"%s\" field \"%s\": %d document(s) violate the new schema, e.g. %s", table.name,
          path, problem.count, problem.example));
    }
  }
  if (!problems.empty()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("schema change refused; the stored documents do not fit it:\n  %s",
                        absl::StrJoin(problems, "\n  ")));
  }
  // Drop the entries of indexes (and tables) that are gone or changed.
  for (uint32_t id : old_index_ids) {
    if (next_index_ids.contains(id)) continue;
    absl::Status s = ForEachEntry(txn, IndexPrefix(id), [&](std::string_view key, auto) {
      return txn.Delete(StoreDb::kData, key);
    });
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// Runs `body` in a write transaction and commits it when `body` returns true (false: nothing to
// commit). When the map is full, nothing was written: the map grows and `body` runs again, so
// `body` must start from scratch each time.
absl::Status RunWriteTransaction(LmdbStore& store,
                                 absl::FunctionRef<absl::StatusOr<bool>(StoreTxn&)> body) {
  for (;;) {
    absl::StatusOr<std::unique_ptr<StoreTxn>> txn = store.BeginWrite();
    if (!txn.ok()) return txn.status();
    const size_t observed_map_size = store.map_size();
    absl::StatusOr<bool> commit = body(**txn);
    absl::Status status = commit.status();
    if (status.ok() && !*commit) return absl::OkStatus();
    if (status.ok()) status = (*txn)->Commit();
    if (status.ok() || !NeedsMapResize(status)) return status;
    txn->reset();
    if (absl::Status grown = store.Grow(observed_map_size); !grown.ok()) return grown;
  }
}

// The databases this thread is running a mutation on: a nested Mutate on the same one would
// wait for its own write lock.
thread_local std::vector<const DatabaseImpl*> mutating;

}  // namespace

class DatabaseImpl {
 public:
  Options options;
  std::unique_ptr<LmdbStore> store;
  std::unique_ptr<Catalog> catalog;
  std::string cursor_secret;
  std::unique_ptr<FunctionRegistry> functions;
  // Shared with the subscription handles (weakly) and the notifier thread.
  std::shared_ptr<SubscriptionRegistry> registry;
  std::unique_ptr<Committer> committer;  // hands each commit's write set to `registry`
  // Runs scheduled functions (Options::run_scheduler); woken by commits that write a job.
  std::unique_ptr<JobRunner> runner;
  // The TTL sweep thread (Database::StartSweeper), stopped first on close.
  std::thread sweeper;
  std::mutex sweeper_mu;
  std::condition_variable sweeper_cv;
  bool closing = false;
};

}  // namespace internal

using internal::DatabaseImpl;
using internal::StoreDb;

namespace internal {
namespace {

// Loads the stored schema and catalog, applies the schema of `options` (checking and migrating
// stored documents), and stores the result: the body of Open's write transaction.
absl::Status LoadSchema(StoreTxn& txn, const Options& options, DatabaseImpl& impl) {
  auto meta = [&](std::string_view key) -> absl::StatusOr<std::optional<std::string>> {
    absl::StatusOr<std::optional<std::string_view>> value = txn.Get(StoreDb::kMeta, key);
    if (!value.ok()) return value.status();
    if (!value->has_value()) return std::nullopt;
    return std::string(**value);
  };
  absl::StatusOr<std::optional<std::string>> stored_schema = meta(kSchemaKey);
  absl::StatusOr<std::optional<std::string>> stored_catalog = meta(kCatalogKey);
  absl::StatusOr<std::optional<std::string>> secret = meta(kCursorSecretKey);
  absl::StatusOr<std::optional<std::string>> stored_system = meta(kSystemSchemaKey);
  for (const auto* s : {&stored_schema, &stored_catalog, &secret, &stored_system}) {
    if (!s->ok()) return s->status();
  }

  std::unique_ptr<Catalog> old_catalog;
  nlohmann::json catalog_json;
  if (stored_schema->has_value()) {
    absl::StatusOr<Schema> old_schema =
        Schema::FromJsonText(**stored_schema, "stored in the database");
    if (!old_schema.ok()) return old_schema.status();
    // A database from before system tables has none: they are new, and empty.
    if (stored_system->has_value()) {
      if (absl::Status s = old_schema->AddSystemTables(**stored_system); !s.ok()) return s;
    }
    catalog_json = nlohmann::json::parse(stored_catalog->value_or("{}"), nullptr, false);
    old_catalog = Catalog::Build(*std::move(old_schema), catalog_json);
  }

  absl::StatusOr<Schema> schema = Schema{};
  if (!options.schema_dir.empty()) {
    schema = Schema::FromDirectory(options.schema_dir);
  } else if (!options.schema_json.empty()) {
    schema = Schema::FromJsonText(options.schema_json, "Options::schema_json");
  } else if (stored_schema->has_value()) {
    schema = Schema::FromJsonText(**stored_schema, "stored in the database");
  }
  if (!schema.ok()) return schema.status();
  if (absl::Status s = schema->AddSystemTables(SystemSchemaText()); !s.ok()) return s;
  if (absl::Status s = schema->CheckReferences(); !s.ok()) return s;
  impl.catalog = Catalog::Build(*std::move(schema), catalog_json);
  if (absl::Status s = Evolve(txn, old_catalog.get(), *impl.catalog); !s.ok()) return s;

  if (secret->has_value()) {
    impl.cursor_secret = **secret;
  } else {
    impl.cursor_secret.resize(32);
    if (RAND_bytes(reinterpret_cast<unsigned char*>(impl.cursor_secret.data()), 32) != 1) {
      return absl::InternalError("no random bytes for the cursor secret");
    }
  }
  for (const auto& [key, value] : {std::pair{kSchemaKey, impl.catalog->schema().ToJsonText()},
                                   std::pair{kCatalogKey, impl.catalog->ToJson().dump()},
                                   std::pair{kCursorSecretKey, impl.cursor_secret},
                                   std::pair{kSystemSchemaKey, std::string(SystemSchemaText())}}) {
    if (absl::Status s = txn.Put(StoreDb::kMeta, key, value); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace internal

absl::StatusOr<std::unique_ptr<Database>> Database::Open(Options options) {
  auto impl = std::make_unique<DatabaseImpl>();
  absl::StatusOr<std::unique_ptr<internal::LmdbStore>> store =
      internal::LmdbStore::Open(options.path, options.initial_map_size, options.max_map_size,
                                options.durability == Durability::kDurable);
  if (!store.ok()) return store.status();
  impl->store = *std::move(store);
  absl::Status status = internal::RunWriteTransaction(
      *impl->store, [&](internal::StoreTxn& txn) -> absl::StatusOr<bool> {
        if (absl::Status s = internal::LoadSchema(txn, options, *impl); !s.ok()) return s;
        return true;
      });
  if (!status.ok()) return status;
  impl->options = std::move(options);
  impl->registry = std::make_shared<internal::SubscriptionRegistry>(
      internal::QueryEnvironment{.store = impl->store.get(),
                                 .catalog = impl->catalog.get(),
                                 .limits = &impl->options.limits,
                                 .cursor_secret = impl->cursor_secret},
      impl->options.delivery);
  impl->functions = std::make_unique<internal::FunctionRegistry>(*impl->catalog);
  impl->committer = std::make_unique<internal::Committer>(
      *impl->store,
      [impl = impl.get()](Timestamp timestamp, const internal::CommitKeys& keys) {
        // `runner` is set before any other thread of the database commits (in Open, before
        // the runner and the TTL sweeper start).
        if (impl->runner != nullptr && impl->runner->Touches(keys)) impl->runner->Wake();
        impl->registry->Publish(timestamp, keys);
      },
      // Waiting for a fsync's company pays only when there is a fsync.
      impl->options.durability == Durability::kDurable ? internal::kDurableCommitDelay
                                                       : absl::ZeroDuration());
  std::unique_ptr<Database> db = absl::WrapUnique(new Database(std::move(impl)));
  DatabaseImpl& opened = *db->impl_;
  if (opened.options.run_scheduler) {
    auto runner = std::make_unique<internal::JobRunner>(*db, *opened.functions, *opened.catalog,
                                                        opened.options.max_running_actions);
    // Without the lease another process runs the jobs.
    if (runner->AcquireLease(opened.options.path)) {
      if (absl::Status s = runner->Recover(); !s.ok()) return s;
      opened.runner = std::move(runner);
      opened.runner->Start();
    }
  }
  db->StartSweeper();
  return db;
}

Database::Database(std::unique_ptr<DatabaseImpl> impl) : impl_(std::move(impl)) {}

Database::~Database() {
  // Running actions finish first: they may still use everything below.
  if (impl_->runner != nullptr) impl_->runner->Stop();
  if (impl_->sweeper.joinable()) {
    {
      std::lock_guard<std::mutex> lock(impl_->sweeper_mu);
      impl_->closing = true;
    }
    impl_->sweeper_cv.notify_all();
    impl_->sweeper.join();
  }
  // Subscriptions stop (and their callbacks finish) before the store closes.
  impl_->registry->Shutdown();
}

void Database::StartSweeper() {
  const absl::Duration interval = impl_->options.ttl_sweep_interval;
  const auto& tables = impl_->catalog->schema().tables();
  const bool any_ttl = std::any_of(tables.begin(), tables.end(), [](const auto& entry) {
    return !entry.second.ttl_field.empty();
  });
  if (!any_ttl || interval <= absl::ZeroDuration()) return;
  impl_->sweeper = std::thread([this, interval] {
    std::unique_lock<std::mutex> lock(impl_->sweeper_mu);
    while (!impl_->sweeper_cv.wait_for(lock, absl::ToChronoMilliseconds(interval),
                                       [this] { return impl_->closing; })) {
      lock.unlock();
      // A failed sweep (a full disk, say) is tried again at the next interval.
      (void)SweepExpired();
      lock.lock();
    }
  });
}

absl::StatusOr<size_t> Database::SweepExpired() {
  constexpr size_t kSweepBatch = 500;
  const double now_ms = internal::NowUnixMillis();
  size_t removed = 0;
  for (const auto& [name, table] : impl_->catalog->schema().tables()) {
    if (table.ttl_field.empty()) continue;
    // Only numbers sort from -infinity up (a missing field, null and int64 sort below): a
    // document without the field never expires.
    const IndexRange expired = Gte(table.ttl_field, -std::numeric_limits<double>::infinity())
                                   .Lt(table.ttl_field, now_ms - table.ttl_seconds * 1000);
    for (;;) {
      absl::StatusOr<size_t> batch = Mutate([&](Transaction& tx) -> absl::StatusOr<size_t> {
        absl::StatusOr<std::vector<Document>> documents =
            tx.Table(name).WithIndex(table.ttl_index, expired).Take(kSweepBatch);
        if (!documents.ok()) return documents.status();
        // The engine's own sweep may remove system tables' documents (ended jobs).
        internal::SystemWriteScope system(tx);
        for (const Document& document : *documents) {
          if (absl::Status s = tx.Delete(document.id()); !s.ok()) return s;
        }
        return documents->size();
      });
      if (!batch.ok()) return batch.status();
      removed += *batch;
      if (*batch < kSweepBatch) break;
    }
  }
  return removed;
}

absl::Status Database::RunMutation(absl::FunctionRef<absl::Status(Transaction&)> fn,
                                   Timestamp* commit_timestamp) {
  std::vector<const DatabaseImpl*>& mutating = internal::mutating;
  if (std::find(mutating.begin(), mutating.end(), impl_.get()) != mutating.end()) {
    return absl::FailedPreconditionError(
        "Mutate was called from inside a mutation of the same database; use the Transaction "
        "it was given");
  }
  mutating.push_back(impl_.get());
  struct Pop {
    std::vector<const DatabaseImpl*>& stack;
    ~Pop() { stack.pop_back(); }
  } pop{mutating};

  // Optimistic: run on a snapshot, then validate and commit; a conflict re-runs the function
  // on a newer snapshot, up to the limit.
  absl::Status conflict;
  const size_t attempts = std::max<size_t>(1, impl_->options.limits.max_conflict_retries + 1);
  for (size_t attempt = 0; attempt < attempts; ++attempt) {
    internal::Committer& committer = *impl_->committer;
    const internal::Committer::Ticket ticket = committer.BeginTransaction(attempt);
    struct End {
      internal::Committer& committer;
      const internal::Committer::Ticket& ticket;
      ~End() { committer.EndTransaction(ticket); }
    } end{committer, ticket};
    absl::StatusOr<std::unique_ptr<internal::StoreTxn>> txn = impl_->store->BeginRead();
    if (!txn.ok()) return txn.status();
    absl::StatusOr<Timestamp> snapshot = (*txn)->CommitTimestamp();
    if (!snapshot.ok()) return snapshot.status();
    internal::TransactionState state(*impl_->catalog, **txn, impl_->options.limits, *snapshot,
                                     impl_->cursor_secret);
    if (absl::Status s = internal::CallGuarded([&] { return fn(state.transaction()); }); !s.ok()) {
      return s;
    }
    if (!state.has_writes()) {
      // Read-only: serializable at its snapshot, nothing to commit.
      if (commit_timestamp != nullptr) *commit_timestamp = *snapshot;
      return absl::OkStatus();
    }
    const ReadSet read_set = state.TakeReadSet();
    const internal::WriteSet writes = state.TakeWriteSet();
    txn->reset();  // a leader may need to grow the map: hold no transaction while queued
    internal::Committer::Outcome outcome = committer.Commit(*snapshot, read_set, writes, attempt);
    if (outcome.conflict) {
      conflict = outcome.status;
      continue;
    }
    if (!outcome.status.ok()) return outcome.status;
    if (commit_timestamp != nullptr) *commit_timestamp = outcome.commit;
    return absl::OkStatus();
  }
  return absl::AbortedError(
      absl::StrFormat("the mutation conflicted %d times (TransactionLimits::max_conflict_retries "
                      "is %d); last: %s",
                      attempts, impl_->options.limits.max_conflict_retries, conflict.message()));
}

namespace internal {
namespace {

// A read of its own inside a mutation would see another snapshot than the mutation's, without
// its writes, and outside its read set: a serializability hole.
absl::Status CheckNotMutating(const DatabaseImpl* impl, std::string_view call) {
  const std::vector<const DatabaseImpl*>& stack = mutating;
  if (std::find(stack.begin(), stack.end(), impl) == stack.end()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrFormat("%s was called from inside a mutation of the same database; read through the "
                      "Transaction (it is a Reader)",
                      call));
}

}  // namespace
}  // namespace internal

absl::Status Database::RunQuery(absl::FunctionRef<absl::Status(Reader&)> fn) {
  if (absl::Status s = internal::CheckNotMutating(impl_.get(), "Query"); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<internal::StoreTxn>> txn = impl_->store->BeginRead();
  if (!txn.ok()) return txn.status();
  // The snapshot's timestamp is read only if the query asks for it.
  internal::TransactionState state(*impl_->catalog, **txn, impl_->options.limits, std::nullopt,
                                   impl_->cursor_secret);
  return internal::CallGuarded([&] { return fn(state.reader()); });
}

absl::Status Database::RegisterQuery(const FunctionDef& def, QueryFunction fn) {
  return Register(def, {.kind = FunctionKind::kQuery, .query = std::move(fn)});
}

absl::Status Database::RegisterMutation(const FunctionDef& def, MutationFunction fn) {
  return Register(def, {.kind = FunctionKind::kMutation, .mutation = std::move(fn)});
}

absl::Status Database::RegisterAction(const FunctionDef& def, ActionFunction fn) {
  return Register(def, {.kind = FunctionKind::kAction, .action = std::move(fn)});
}

absl::Status Database::Register(const FunctionDef& def, internal::RegisteredFunction function) {
  absl::Status status = impl_->functions->Register(def, std::move(function));
  // Jobs waiting for this function may run now.
  if (status.ok() && impl_->runner != nullptr) impl_->runner->Wake();
  return status;
}

Scheduler Database::scheduler(const Auth& auth) {
  return Scheduler(*impl_->functions, nullptr, this, auth);
}

const Options& Database::options() const { return impl_->options; }

absl::StatusOr<Value> Database::Call(std::string_view name, const Value& args, const Auth& auth) {
  return CallFunction(name, std::nullopt, args, auth, /*allow_internal=*/false);
}

absl::StatusOr<Value> Database::CallInternal(std::string_view name, const Value& args,
                                             const Auth& auth) {
  return CallFunction(name, std::nullopt, args, auth, /*allow_internal=*/true);
}

absl::StatusOr<Value> Database::CallFunction(std::string_view name,
                                             std::optional<FunctionKind> kind, const Value& args,
                                             const Auth& auth, bool allow_internal) {
  const internal::FunctionRegistry& functions = *impl_->functions;
  absl::StatusOr<std::shared_ptr<const internal::RegisteredFunction>> found =
      functions.Find(name, kind, allow_internal);
  if (!found.ok()) return found.status();
  const internal::RegisteredFunction& function = **found;
  switch (function.kind) {
    case FunctionKind::kQuery:
      return Query([&](Reader& reader) {
        return internal::FunctionCalls::RunQuery(functions, function, reader, auth, args);
      });
    case FunctionKind::kMutation:
      return Mutate([&](Transaction& transaction) {
        return internal::FunctionCalls::RunMutation(functions, function, transaction, auth, args);
      });
    case FunctionKind::kAction:
      return internal::FunctionCalls::RunAction(functions, function, *this, auth, args);
  }
  return absl::InternalError("unknown function kind");
}

absl::StatusOr<Subscription> Database::SubscribeFunction(std::string_view name, const Value& args,
                                                         const UpdateSlot& callback,
                                                         const Auth& auth) {
  const internal::FunctionRegistry* functions = impl_->functions.get();
  absl::StatusOr<std::shared_ptr<const internal::RegisteredFunction>> function =
      functions->Find(name, FunctionKind::kQuery, /*allow_internal=*/false);
  if (!function.ok()) return function.status();
  if (absl::Status status = functions->CheckArgs(**function, args); !status.ok()) return status;
  return SubscribeValue(
      [functions, function = *std::move(function), args, auth](Reader& reader) {
        return internal::FunctionCalls::RunQuery(*functions, *function, reader, auth, args);
      },
      callback);
}

absl::StatusOr<Subscription> Database::SubscribeValue(
    std::function<absl::StatusOr<Value>(Reader&)> query, const UpdateSlot& callback) {
  if (absl::Status s = internal::CheckNotMutating(impl_.get(), "Subscribe"); !s.ok()) return s;
  absl::StatusOr<std::shared_ptr<internal::SubscriptionState>> state =
      impl_->registry->Subscribe(std::move(query), callback);
  if (!state.ok()) return state.status();
  return Subscription(*std::move(state), impl_->registry);
}

// These may run callbacks, and a callback may destroy the database: the copy of the registry
// keeps it alive until the call returns.
absl::Status Database::WaitForDelivery(Timestamp timestamp, absl::Duration timeout) {
  const std::shared_ptr<internal::SubscriptionRegistry> registry = impl_->registry;
  return registry->WaitForDelivery(timestamp, timeout);
}

size_t Database::DeliverPending() {
  const std::shared_ptr<internal::SubscriptionRegistry> registry = impl_->registry;
  return registry->DeliverPending();
}

int Database::DeliveryFd() const { return impl_->registry->delivery_fd(); }

bool Database::WaitForPending(absl::Duration timeout) {
  return impl_->registry->WaitForPending(timeout);
}

Timestamp Database::LastCommitTimestamp() const {
  absl::StatusOr<std::unique_ptr<internal::StoreTxn>> txn = impl_->store->BeginRead();
  if (!txn.ok()) return 0;
  return (*txn)->CommitTimestamp().value_or(0);
}

std::string Database::SchemaJson() const { return impl_->catalog->schema().ToJsonText(); }

size_t Database::MapSize() const { return impl_->store->map_size(); }

}  // namespace stagedb
