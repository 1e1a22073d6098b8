// Concurrency tests: many threads running mutations and queries against one database at once.
// A Mutate that ends in Aborted (a conflict that outlasted the retries) is counted as "did not
// happen", never as a failure. The interleavings a check needs are made to happen, whatever the
// scheduling: readers take snapshots between each writer's commits (writers wait for them), and
// the two doctors of the write-skew test both read before either writes. Covered: bank transfers
// (conservation, no overdraft, snapshot sums), write skew (two on-call doctors), lost updates on
// one counter, races on a unique index, and readers (queries and read-only mutations) that must
// never see half of a transaction.
//
// Iteration counts scale with STAGEDB_TEST_SCALE (default 1; e.g. 0.2 under ThreadSanitizer).
// The random seed is fixed; set STAGEDB_TEST_SEED to try another. Set STAGEDB_TEST_VERBOSE to
// print each test's counts.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using stagedb::Database;
using stagedb::Document;
using stagedb::DocumentId;
using stagedb::Object;
using stagedb::Reader;
using stagedb::Timestamp;
using stagedb::Transaction;
using stagedb::Value;
using stagedb::testing::MustInsert;
using stagedb::testing::OpenOrFail;
using stagedb::testing::Progress;
using stagedb::testing::TempDir;

constexpr const char* kSchema = R"json({
  "tables": {
    "accounts": {
      "fields": {"name": "string", "balance": "int64"},
      "indexes": [{"name": "by_name", "fields": ["name"], "unique": true}]
    },
    "transfers": {
      "fields": {"from": "string", "to": "string", "amount": "int64"},
      "indexes": []
    },
    "doctors": {
      "fields": {"name": "string", "on_call": "boolean"},
      "indexes": [{"name": "by_on_call", "fields": ["on_call"]}]
    },
    "counters": {
      "fields": {"name": "string", "value": "int64"},
      "indexes": [{"name": "by_name", "fields": ["name"], "unique": true}]
    },
    "members": {
      "fields": {"name": "string", "thread": "int64"},
      "indexes": [{"name": "by_name", "fields": ["name"], "unique": true}]
    },
    "pairs": {
      "fields": {"pair": "int64", "member": "int64"},
      "indexes": [{"name": "by_pair", "fields": ["pair"]}]
    }
  }
})json";

double Scale() {
  if (const char* env = std::getenv("STAGEDB_TEST_SCALE"); env != nullptr) {
    const double scale = std::strtod(env, nullptr);
    if (scale > 0) return scale;
  }
  return 1.0;
}

// `n` scaled by STAGEDB_TEST_SCALE, at least `min`.
int Scaled(int n, int min = 1) {
  return std::max(min, static_cast<int>(static_cast<double>(n) * Scale() + 0.5));
}

uint64_t Seed() { return stagedb::testing::TestSeed(20240611); }

bool Verbose() { return std::getenv("STAGEDB_TEST_VERBOSE") != nullptr; }

std::unique_ptr<Database> OpenDb(const std::string& path) {
  return OpenOrFail(
      {.path = path, .schema_json = kSchema, .durability = stagedb::Durability::kNoSync});
}

// What a worker thread saw. Catch2's assertions are not thread-safe, so workers record and the
// test thread checks after joining.
struct Tally {
  int64_t ok = 0;
  int64_t aborted = 0;
  std::vector<std::string> errors;  // anything unexpected, with context

  void Error(std::string message) {
    if (errors.size() < 20) errors.push_back(std::move(message));
  }
};

// Every worker's unexpected outcomes, each reported.
void CheckNoErrors(const std::vector<Tally>& tallies) {
  for (size_t t = 0; t < tallies.size(); ++t) {
    for (const std::string& error : tallies[t].errors) {
      INFO("thread " << t << ": " << error);
      CHECK(error.empty());
    }
  }
}

// An Aborted status should name the table it conflicted on.
void CheckAbortMessage(Tally& tally, const absl::Status& s, const std::string& table) {
  if (std::string(s.message()).find(table) == std::string::npos) {
    tally.Error("an Aborted status does not name table \"" + table + "\": " + s.ToString());
  }
}

std::vector<Document> All(Database& db, const std::string& table) {
  absl::StatusOr<std::vector<Document>> docs =
      db.Query([&](Reader& r) { return r.Table(table).Collect(); });
  INFO("query " << table << ": " << docs.status().ToString());
  REQUIRE(docs.ok());
  return *std::move(docs);
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("concurrent bank transfers conserve money and never overdraw", "[concurrency]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  constexpr int kAccounts = 20;
  constexpr int64_t kInitial = 100;
  constexpr int64_t kTotal = kAccounts * kInitial;
  constexpr int kThreads = 8;
  const int transfers_per_thread = Scaled(300, 10);

  std::vector<std::string> names;
  std::vector<DocumentId> ids;
  for (int i = 0; i < kAccounts; ++i) {
    names.push_back("acct" + std::to_string(i));
    ids.push_back(
        MustInsert(*db, "accounts", {{"name", names.back()}, {"balance", Value::Int64(kInitial)}}));
  }
  const Timestamp start_ts = db->LastCommitTimestamp();

  std::vector<Tally> tallies(kThreads);
  std::vector<int64_t> overdrafts(kThreads, 0);
  std::atomic<int> writers_running{kThreads};

  // The reader: every snapshot sums to kTotal, with no negative balance. It runs until the
  // writers are done, and every kSnapshotEvery transfers each writer waits for a snapshot newer
  // than its last commit, so that snapshots fall between commits however threads are scheduled.
  constexpr int kSnapshotEvery = 10;
  Tally reader_tally;
  int64_t snapshots = 0;
  Progress snapshots_taken;
  std::thread reader([&] {
    do {
      absl::StatusOr<int64_t> sum = db->Query([&](Reader& r) -> absl::StatusOr<int64_t> {
        absl::StatusOr<std::vector<Document>> docs = r.Table("accounts").Collect();
        if (!docs.ok()) return docs.status();
        if (docs->size() != kAccounts) {
          return absl::InternalError("saw " + std::to_string(docs->size()) + " accounts");
        }
        int64_t total = 0;
        for (const Document& doc : *docs) {
          const int64_t balance = doc.Get("balance").as_int64();
          if (balance < 0) {
            return absl::InternalError("negative balance " + std::to_string(balance) + " in " +
                                       doc.ToJson());
          }
          total += balance;
        }
        return total;
      });
      ++snapshots;
      if (!sum.ok()) {
        reader_tally.Error("query: " + sum.status().ToString());
      } else if (*sum != kTotal) {
        reader_tally.Error("a snapshot sums to " + std::to_string(*sum) + " at snapshot " +
                           std::to_string(snapshots));
      }
      snapshots_taken.Add();
    } while (writers_running.load() > 0);
  });

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(Seed() + t);
      std::uniform_int_distribution<int> pick(0, kAccounts - 1);
      std::uniform_int_distribution<int64_t> amount_of(1, 50);
      Tally& tally = tallies[t];
      for (int i = 0; i < transfers_per_thread; ++i) {
        const int from = pick(rng);
        int to = pick(rng);
        while (to == from) to = pick(rng);
        const int64_t amount = amount_of(rng);
        absl::Status s = db->Mutate([&](Transaction& tx) -> absl::Status {
          // The source by its unique name, the destination by id: both kinds of read.
          absl::StatusOr<std::optional<Document>> source =
              tx.Table("accounts").WithIndex("by_name", stagedb::Eq("name", names[from])).Unique();
          if (!source.ok()) return source.status();
          absl::StatusOr<std::optional<Document>> dest = tx.Get(ids[to]);
          if (!dest.ok()) return dest.status();
          if (!source->has_value() || !dest->has_value()) {
            return absl::InternalError("an account vanished");
          }
          if ((*source)->id() != ids[from]) return absl::InternalError("by_name found another");
          const int64_t source_balance = (*source)->Get("balance").as_int64();
          const int64_t dest_balance = (*dest)->Get("balance").as_int64();
          if (source_balance < amount) {
            return absl::FailedPreconditionError("overdraft: " + names[from] + " has " +
                                                 std::to_string(source_balance));
          }
          if (absl::Status p =
                  tx.Patch(ids[from], {{"balance", Value::Int64(source_balance - amount)}});
              !p.ok()) {
            return p;
          }
          if (absl::Status p =
                  tx.Patch(ids[to], {{"balance", Value::Int64(dest_balance + amount)}});
              !p.ok()) {
            return p;
          }
          return tx
              .Insert("transfers",
                      {{"from", names[from]}, {"to", names[to]}, {"amount", Value::Int64(amount)}})
              .status();
        });
        if (s.ok()) {
          ++tally.ok;
        } else if (s.code() == absl::StatusCode::kFailedPrecondition &&
                   std::string(s.message()).find("overdraft") != std::string::npos) {
          ++overdrafts[t];
        } else if (absl::IsAborted(s)) {
          ++tally.aborted;
          CheckAbortMessage(tally, s, "accounts");
        } else {
          tally.Error("transfer: " + s.ToString());
        }
        if (i % kSnapshotEvery == kSnapshotEvery - 1 && !snapshots_taken.WaitForNewer()) {
          tally.Error("no snapshot of the reader within the hang guard");
          break;
        }
      }
      --writers_running;
    });
  }
  for (std::thread& thread : threads) thread.join();
  reader.join();

  CheckNoErrors(tallies);
  CheckNoErrors({reader_tally});
  int64_t ok = 0, aborted = 0, refused = 0;
  for (int t = 0; t < kThreads; ++t) {
    ok += tallies[t].ok;
    aborted += tallies[t].aborted;
    refused += overdrafts[t];
  }
  INFO("transfers ok " << ok << ", overdrafts " << refused << ", aborted " << aborted
                       << ", reader snapshots " << snapshots);
  if (Verbose()) {
    std::printf("bank: ok %lld, overdrafts %lld, aborted %lld, reader snapshots %lld\n",
                static_cast<long long>(ok), static_cast<long long>(refused),
                static_cast<long long>(aborted), static_cast<long long>(snapshots));
  }
  CHECK(ok + refused + aborted == int64_t{kThreads} * transfers_per_thread);
  CHECK(ok > 0);
  CHECK(snapshots > 0);

  // Final balances: conserved, non-negative, and exactly the initial ones plus the logged
  // transfers (one log row per successful transfer).
  const std::vector<Document> accounts = All(*db, "accounts");
  REQUIRE(accounts.size() == kAccounts);
  std::map<std::string, int64_t> balance;
  int64_t total = 0;
  for (const Document& doc : accounts) {
    const int64_t b = doc.Get("balance").as_int64();
    INFO(doc.ToJson());
    CHECK(b >= 0);
    balance[doc.Get("name").as_string()] = b;
    total += b;
  }
  CHECK(total == kTotal);
  const std::vector<Document> log = All(*db, "transfers");
  CHECK(static_cast<int64_t>(log.size()) == ok);
  std::map<std::string, int64_t> replayed;
  for (const std::string& name : names) replayed[name] = kInitial;
  for (const Document& row : log) {
    replayed[row.Get("from").as_string()] -= row.Get("amount").as_int64();
    replayed[row.Get("to").as_string()] += row.Get("amount").as_int64();
  }
  CHECK(replayed.size() == balance.size());
  for (const std::string& name : names) {
    INFO("account " << name);
    CHECK(replayed[name] == balance[name]);
  }
  // Each successful transfer is one commit; refused and aborted ones commit nothing.
  CHECK(db->LastCommitTimestamp() - start_ts == static_cast<Timestamp>(ok));
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("write skew: two on-call doctors never both go off call", "[concurrency]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const DocumentId alice = MustInsert(*db, "doctors", {{"name", "alice"}, {"on_call", true}});
  const DocumentId bob = MustInsert(*db, "doctors", {{"name", "bob"}, {"on_call", true}});
  const int rounds = Scaled(50, 5);
  int aborted = 0, retried = 0;

  for (int round = 0; round < rounds; ++round) {
    REQUIRE_OK(db->Mutate([&](Transaction& tx) -> absl::Status {
      if (absl::Status s = tx.Patch(alice, {{"on_call", true}}); !s.ok()) return s;
      return tx.Patch(bob, {{"on_call", true}});
    }));
    // Both doctors meet inside their first attempts, after reading and before writing: mutations
    // run concurrently (optimistic), so both read two doctors on call.
    Progress arrived;
    struct Result {
      absl::StatusOr<bool> went_off = absl::UnknownError("not run");
      int attempts = 0;
      bool met = false;
    };
    Result results[2];
    auto doctor = [&](int me) {
      const DocumentId& my_id = me == 0 ? alice : bob;
      Result& result = results[me];
      result.went_off = db->Mutate([&](Transaction& tx) -> absl::StatusOr<bool> {
        const bool first_attempt = ++result.attempts == 1;
        absl::StatusOr<std::vector<Document>> on_call =
            tx.Table("doctors").WithIndex("by_on_call", stagedb::Eq("on_call", true)).Collect();
        if (!on_call.ok()) return on_call.status();
        if (first_attempt) {
          arrived.Add();
          result.met = arrived.WaitAtLeast(2);
        }
        if (on_call->size() < 2) return false;
        if (absl::Status s = tx.Patch(my_id, {{"on_call", false}}); !s.ok()) return s;
        return true;
      });
    };
    std::thread a(doctor, 0);
    std::thread b(doctor, 1);
    a.join();
    b.join();

    INFO("round " << round);
    INFO("doctors met: " << results[0].met << " " << results[1].met);
    REQUIRE((results[0].met && results[1].met));
    int succeeded = 0, went_off = 0;
    for (int me = 0; me < 2; ++me) {
      const absl::StatusOr<bool>& r = results[me].went_off;
      INFO("doctor " << me << ": " << r.status().ToString() << ", attempts "
                     << results[me].attempts);
      CHECK((r.ok() || absl::IsAborted(r.status())));
      if (r.ok()) {
        ++succeeded;
        went_off += *r ? 1 : 0;
      } else if (absl::IsAborted(r.status())) {
        ++aborted;
        INFO(r.status().ToString());
        CHECK(std::string(r.status().message()).find("doctors") != std::string::npos);
      }
      if (results[me].attempts > 1) ++retried;
    }
    const std::vector<Document> on_call = [&] {
      absl::StatusOr<std::vector<Document>> docs = db->Query([&](Reader& r) {
        return r.Table("doctors").WithIndex("by_on_call", stagedb::Eq("on_call", true)).Collect();
      });
      INFO(docs.status().ToString());
      REQUIRE(docs.ok());
      return *std::move(docs);
    }();
    // At least one stays on call; exactly one went off when either mutation committed, and
    // the one that went off is the one whose mutation said so.
    REQUIRE(on_call.size() >= 1);
    CHECK(on_call.size() == (succeeded > 0 ? 1u : 2u));
    CHECK(went_off == 2 - static_cast<int>(on_call.size()));
    for (int me = 0; me < 2; ++me) {
      const bool stayed = std::any_of(on_call.begin(), on_call.end(), [&](const Document& d) {
        return d.id() == (me == 0 ? alice : bob);
      });
      const absl::StatusOr<bool>& r = results[me].went_off;
      if (r.ok()) CHECK(stayed == !*r);
    }
  }
  if (Verbose()) {
    std::printf("write skew: %d rounds, %d aborted, %d retried\n", rounds, aborted, retried);
  }
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("concurrent increments of one counter lose no update", "[concurrency]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  const DocumentId counter =
      MustInsert(*db, "counters", {{"name", "hits"}, {"value", Value::Int64(0)}});
  constexpr int kThreads = 8;
  const int per_thread = Scaled(500, 10);
  const Timestamp start_ts = db->LastCommitTimestamp();
  std::vector<Tally> tallies(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Tally& tally = tallies[t];
      for (int i = 0; i < per_thread; ++i) {
        absl::StatusOr<int64_t> s = db->Mutate([&](Transaction& tx) -> absl::StatusOr<int64_t> {
          // Even threads read by id, odd ones through the unique index.
          absl::StatusOr<std::optional<Document>> doc =
              t % 2 == 0
                  ? tx.Get(counter)
                  : tx.Table("counters").WithIndex("by_name", stagedb::Eq("name", "hits")).Unique();
          if (!doc.ok()) return doc.status();
          if (!doc->has_value()) return absl::InternalError("the counter vanished");
          const int64_t value = (*doc)->Get("value").as_int64() + 1;
          if (absl::Status p = tx.Patch(counter, {{"value", Value::Int64(value)}}); !p.ok()) {
            return p;
          }
          return value;
        });
        if (s.ok()) {
          ++tally.ok;
        } else if (absl::IsAborted(s.status())) {
          ++tally.aborted;
          CheckAbortMessage(tally, s.status(), "counters");
        } else {
          tally.Error("increment: " + s.status().ToString());
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CheckNoErrors(tallies);
  int64_t ok = 0, aborted = 0;
  for (const Tally& tally : tallies) {
    ok += tally.ok;
    aborted += tally.aborted;
  }
  INFO("increments ok " << ok << ", aborted " << aborted);
  if (Verbose()) {
    std::printf("lost update: ok %lld, aborted %lld\n", static_cast<long long>(ok),
                static_cast<long long>(aborted));
  }
  CHECK(ok + aborted == int64_t{kThreads} * per_thread);
  CHECK(ok > 0);
  absl::StatusOr<std::optional<Document>> doc =
      db->Query([&](Reader& r) { return r.Get(counter); });
  REQUIRE_OK(doc);
  REQUIRE(doc->has_value());
  REQUIRE((*doc)->Get("value").is_int64());
  CHECK((*doc)->Get("value").as_int64() == ok);
  CHECK(db->LastCommitTimestamp() - start_ts == static_cast<Timestamp>(ok));
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("racing inserts of the same names into a unique index keep each name once",
          "[concurrency]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  constexpr int kThreads = 8;
  const int num_names = Scaled(200, 10);
  std::vector<std::string> names;
  for (int i = 0; i < num_names; ++i) names.push_back("name" + std::to_string(i));

  // Per name: which thread's insert succeeded (-1: none), how many succeeded and aborted.
  std::vector<std::atomic<int>> winner(num_names);
  std::vector<std::atomic<int>> successes(num_names);
  std::vector<std::atomic<int>> aborts(num_names);
  for (int i = 0; i < num_names; ++i) winner[i] = -1;
  std::vector<Tally> tallies(kThreads);
  std::vector<int64_t> duplicates(kThreads, 0);
  Progress ready;  // the threads start inserting together
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<int> order(num_names);
      for (int i = 0; i < num_names; ++i) order[i] = i;
      std::mt19937_64 rng(Seed() * 31 + t);
      std::shuffle(order.begin(), order.end(), rng);
      Tally& tally = tallies[t];
      ready.Add();
      if (!ready.WaitAtLeast(kThreads)) {
        tally.Error("the other threads did not start within the hang guard");
        return;
      }
      for (int i : order) {
        absl::StatusOr<DocumentId> id = db->Mutate([&](Transaction& tx) {
          return tx.Insert("members", {{"name", names[i]}, {"thread", Value::Int64(t)}});
        });
        if (id.ok()) {
          ++tally.ok;
          ++successes[i];
          winner[i] = t;
        } else if (id.status().code() == absl::StatusCode::kAlreadyExists) {
          ++duplicates[t];
          const std::string message(id.status().message());
          if (message.find("by_name") == std::string::npos ||
              message.find(names[i]) == std::string::npos) {
            tally.Error("AlreadyExists does not name the index and value: " +
                        id.status().ToString());
          }
        } else if (absl::IsAborted(id.status())) {
          ++tally.aborted;
          ++aborts[i];
          CheckAbortMessage(tally, id.status(), "members");
        } else {
          tally.Error("insert " + names[i] + ": " + id.status().ToString());
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CheckNoErrors(tallies);
  int64_t ok = 0, aborted = 0, dups = 0;
  for (int t = 0; t < kThreads; ++t) {
    ok += tallies[t].ok;
    aborted += tallies[t].aborted;
    dups += duplicates[t];
  }
  INFO("inserts ok " << ok << ", AlreadyExists " << dups << ", aborted " << aborted);
  if (Verbose()) {
    std::printf("unique: ok %lld, AlreadyExists %lld, aborted %lld\n", static_cast<long long>(ok),
                static_cast<long long>(dups), static_cast<long long>(aborted));
  }
  CHECK(ok + dups + aborted == int64_t{kThreads} * num_names);

  const std::vector<Document> members = All(*db, "members");
  std::map<std::string, std::vector<int64_t>> stored;  // name -> thread field of each document
  for (const Document& doc : members) {
    stored[doc.Get("name").as_string()].push_back(doc.Get("thread").as_int64());
  }
  int all_aborted = 0;
  for (int i = 0; i < num_names; ++i) {
    INFO("name " << names[i] << ": successes " << successes[i].load() << ", aborts "
                 << aborts[i].load());
    auto it = stored.find(names[i]);
    if (it == stored.end()) {
      // Absent only when every thread's insert of it was aborted.
      CHECK(successes[i].load() == 0);
      CHECK(aborts[i].load() == kThreads);
      ++all_aborted;
      continue;
    }
    REQUIRE(it->second.size() == 1);
    CHECK(successes[i].load() == 1);
    CHECK(it->second[0] == winner[i].load());
    // Each name is also found, once, through the unique index.
    absl::StatusOr<std::optional<Document>> by_name = db->Query([&](Reader& r) {
      return r.Table("members").WithIndex("by_name", stagedb::Eq("name", names[i])).Unique();
    });
    REQUIRE_OK(by_name);
    CHECK(by_name->has_value());
  }
  CHECK(stored.size() + all_aborted == static_cast<size_t>(num_names));
  CHECK(members.size() == stored.size());
  CHECK(ok == num_names - all_aborted);
}

// ---------------------------------------------------------------------------------------------

// Checks, within one snapshot, that every pair value appears exactly twice (members 0 and 1)
// and that a scan by creation time and a scan of the by_pair index see the same documents.
// Returns the number of pairs seen, or an Internal error describing what was wrong.
absl::StatusOr<int64_t> CheckPairs(Reader& r) {
  absl::StatusOr<std::vector<Document>> by_time = r.Table("pairs").Collect();
  if (!by_time.ok()) return by_time.status();
  absl::StatusOr<std::vector<Document>> by_pair =
      r.Table("pairs").WithIndex("by_pair", stagedb::IndexRange{}).Collect();
  if (!by_pair.ok()) return by_pair.status();
  std::map<int64_t, std::set<int64_t>> members;
  for (const Document& doc : *by_time) {
    const int64_t pair = doc.Get("pair").as_int64();
    if (!members[pair].insert(doc.Get("member").as_int64()).second) {
      return absl::InternalError("pair " + std::to_string(pair) + " has a member twice");
    }
  }
  for (const auto& [pair, of_pair] : members) {
    if (of_pair != std::set<int64_t>{0, 1}) {
      return absl::InternalError("pair " + std::to_string(pair) + " appears " +
                                 std::to_string(of_pair.size()) + " times at snapshot " +
                                 std::to_string(r.timestamp()));
    }
  }
  std::set<std::string> time_ids, pair_ids;
  for (const Document& doc : *by_time) time_ids.insert(doc.id().text());
  for (const Document& doc : *by_pair) pair_ids.insert(doc.id().text());
  if (time_ids != pair_ids || by_pair->size() != by_time->size()) {
    return absl::InternalError("by_creation_time and by_pair disagree at snapshot " +
                               std::to_string(r.timestamp()));
  }
  return static_cast<int64_t>(members.size());
}

TEST_CASE("queries and read-only mutations never see part of a transaction", "[concurrency]") {
  TempDir dir;
  auto db = OpenDb(dir.Sub("db"));
  constexpr int kWriters = 2;
  constexpr int kQueryReaders = 2;
  constexpr int kLag = 4;  // a writer deletes the pair it inserted kLag pairs earlier
  const int pairs_per_writer = Scaled(600, 20);

  std::vector<Tally> writer_tallies(kWriters);
  std::vector<std::set<int64_t>> live(kWriters);  // the pairs each writer believes exist
  std::atomic<int> writers_running{kWriters};
  // Readers: queries, and read-only mutations (which fail with the inconsistency as an error).
  // They run until the writers are done, and every kSnapshotEvery steps each writer waits for a
  // snapshot of each reader newer than its last commit, so that snapshots fall between commits
  // however threads are scheduled.
  constexpr int kReaders = kQueryReaders + 1;
  constexpr int kSnapshotEvery = 20;
  std::vector<Progress> snapshots_taken(kReaders);
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      Tally& tally = writer_tallies[w];
      const int64_t base = int64_t{w} * 1'000'000;
      for (int i = 0; i < pairs_per_writer + kLag; ++i) {
        if (i < pairs_per_writer) {
          const int64_t pair = base + i;
          absl::Status s = db->Mutate([&](Transaction& tx) -> absl::Status {
            for (int64_t member : {0, 1}) {
              absl::Status inserted =
                  tx.Insert("pairs", {{"pair", Value::Int64(pair)}, {"member", member}}).status();
              if (!inserted.ok()) return inserted;
            }
            return absl::OkStatus();
          });
          if (s.ok()) {
            ++tally.ok;
            live[w].insert(pair);
          } else if (absl::IsAborted(s)) {
            ++tally.aborted;
          } else {
            tally.Error("insert pair: " + s.ToString());
          }
        }
        // Every 10th pair is left alive, so the final state is not empty.
        if (i >= kLag && (i - kLag) % 10 != 0) {
          const int64_t pair = base + i - kLag;
          absl::StatusOr<int64_t> deleted =
              db->Mutate([&](Transaction& tx) -> absl::StatusOr<int64_t> {
                absl::StatusOr<std::vector<Document>> docs =
                    tx.Table("pairs").WithIndex("by_pair", stagedb::Eq("pair", pair)).Collect();
                if (!docs.ok()) return docs.status();
                if (docs->size() != 0 && docs->size() != 2) {
                  return absl::InternalError("the writer sees pair " + std::to_string(pair) + " " +
                                             std::to_string(docs->size()) + " times");
                }
                for (const Document& doc : *docs) {
                  if (absl::Status s = tx.Delete(doc.id()); !s.ok()) return s;
                }
                return static_cast<int64_t>(docs->size());
              });
          if (deleted.ok()) {
            ++tally.ok;
            const bool was_live = live[w].erase(pair) == 1;
            if (was_live != (*deleted == 2)) {
              tally.Error("deleting pair " + std::to_string(pair) + " found " +
                          std::to_string(*deleted) +
                          " documents; inserted: " + (was_live ? "yes" : "no"));
            }
          } else if (absl::IsAborted(deleted.status())) {
            ++tally.aborted;
          } else {
            tally.Error("delete pair: " + deleted.status().ToString());
          }
        }
        if (i % kSnapshotEvery == kSnapshotEvery - 1) {
          for (Progress& reader : snapshots_taken) {
            if (!reader.WaitForNewer()) {
              tally.Error("no snapshot of a reader within the hang guard");
            }
          }
        }
      }
      --writers_running;
    });
  }

  std::vector<Tally> reader_tallies(kReaders);
  std::vector<int64_t> nonempty_snapshots(kReaders, 0);
  for (int r = 0; r < kReaders; ++r) {
    threads.emplace_back([&, r] {
      Tally& tally = reader_tallies[r];
      const bool use_mutation = r >= kQueryReaders;
      // The last snapshot begins after the writers are done: nothing can conflict with it.
      for (bool last = false; !last;) {
        last = writers_running.load() == 0;
        absl::StatusOr<int64_t> seen =
            use_mutation ? db->Mutate([&](Transaction& tx) { return CheckPairs(tx); })
                         : db->Query([&](Reader& reader) { return CheckPairs(reader); });
        if (seen.ok()) {
          ++tally.ok;
          if (*seen > 0) ++nonempty_snapshots[r];
        } else if (use_mutation && absl::IsAborted(seen.status())) {
          ++tally.aborted;
        } else {
          tally.Error((use_mutation ? "read-only mutation: " : "query: ") +
                      seen.status().ToString());
        }
        snapshots_taken[r].Add();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  CheckNoErrors(writer_tallies);
  CheckNoErrors(reader_tallies);

  int64_t writes_ok = 0, writes_aborted = 0;
  for (const Tally& tally : writer_tallies) {
    writes_ok += tally.ok;
    writes_aborted += tally.aborted;
  }
  INFO("writes ok " << writes_ok << ", aborted " << writes_aborted);
  if (Verbose()) {
    std::printf("pairs: writes ok %lld, aborted %lld;", static_cast<long long>(writes_ok),
                static_cast<long long>(writes_aborted));
    for (int r = 0; r < kReaders; ++r) {
      std::printf(" reader %d: %lld snapshots (%lld non-empty), %lld aborted;", r,
                  static_cast<long long>(reader_tallies[r].ok),
                  static_cast<long long>(nonempty_snapshots[r]),
                  static_cast<long long>(reader_tallies[r].aborted));
    }
    std::printf("\n");
  }
  int64_t deletions_per_writer = 0;
  for (int i = 0; i < pairs_per_writer; ++i) deletions_per_writer += i % 10 != 0 ? 1 : 0;
  CHECK(writes_ok + writes_aborted ==
        int64_t{kWriters} * (pairs_per_writer + deletions_per_writer));
  for (int r = 0; r < kReaders; ++r) {
    INFO("reader " << r);
    CHECK(reader_tallies[r].ok > 0);
  }

  // The final state: exactly the pairs the writers left alive, each complete.
  absl::StatusOr<int64_t> final_pairs = db->Query([&](Reader& r) { return CheckPairs(r); });
  REQUIRE_OK(final_pairs);
  std::set<int64_t> expected;
  for (const std::set<int64_t>& pairs : live) expected.insert(pairs.begin(), pairs.end());
  std::set<int64_t> actual;
  for (const Document& doc : All(*db, "pairs")) actual.insert(doc.Get("pair").as_int64());
  CHECK(!expected.empty());
  CHECK(actual == expected);
  CHECK(*final_pairs == static_cast<int64_t>(expected.size()));
}

}  // namespace
