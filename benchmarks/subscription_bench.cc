// Subscription benchmarks (stagedb only: raw LMDB and SQLite have no subscriptions; compare the
// commit numbers with BM_InsertPerDoc/lmdb, /sqlite-json and /sqlite-typed of the same run).
//
//   BM_CommitWithSubscriptions    one commit (insert one message; durable or nosync) while N
//                                 subscriptions watch other sessions' ranges: invalidation cost
//   BM_CommitToCallback           one durable commit into a watched range, then wait for the
//                                 callback; counters: p50/p99 microseconds from Mutate's return
//                                 to the callback, and from Mutate's call to the callback
//   BM_IdleSubscriptionMemory     heap bytes per idle subscription (one index range, Take(10))
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bench_backend.h"
#include "stagedb/stagedb.h"

namespace stagedb_bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kSchema = R"json({
  "tables": {
    "messages": {
      "fields": {"session": "string", "author": "string", "body": "string"},
      "indexes": [{"name": "by_session", "fields": ["session"]}]
    }
  }
})json";

std::string g_dir;
int g_counter = 0;

std::unique_ptr<stagedb::Database> OpenDatabase(
    stagedb::Durability durability = stagedb::Durability::kDurable) {
  const std::string path = g_dir + "/subscriptions-" + std::to_string(++g_counter);
  absl::StatusOr<std::unique_ptr<stagedb::Database>> db =
      stagedb::Database::Open({.path = path, .schema_json = kSchema, .durability = durability});
  if (!db.ok()) throw BenchError(std::string(db.status().message()));
  return *std::move(db);
}

absl::StatusOr<stagedb::Subscription> SubscribeSession(stagedb::Database& db, std::string session,
                                                       const stagedb::UpdateSlot& slot) {
  return db.Subscribe(
      [session = std::move(session)](stagedb::Reader& reader) {
        return reader.Table("messages")
            .WithIndex("by_session", stagedb::Eq("session", session))
            .Order(stagedb::SortOrder::kDesc)
            .Take(10);
      },
      slot);
}

void InsertMessage(stagedb::Database& db, const std::string& session) {
  absl::Status status = db.Mutate([&](stagedb::Transaction& tx) -> absl::Status {
    return tx
        .Insert("messages", {{"session", session},
                             {"author", "bench"},
                             {"body", "a message of about forty characters...."}})
        .status();
  });
  if (!status.ok()) throw BenchError(std::string(status.message()));
}

void BM_CommitWithSubscriptions(benchmark::State& state) {
  const auto count = static_cast<size_t>(state.range(0));
  try {
    std::unique_ptr<stagedb::Database> db =
        OpenDatabase(state.range(1) ? stagedb::Durability::kDurable : stagedb::Durability::kNoSync);
    std::vector<stagedb::Subscription> subscriptions;
    subscriptions.reserve(count);
    std::atomic<size_t> updates = 0;
    for (size_t i = 0; i < count; ++i) {
      absl::StatusOr<stagedb::Subscription> s = SubscribeSession(
          *db, "session-" + std::to_string(i), [&](const stagedb::QueryUpdate&) { ++updates; });
      if (!s.ok()) throw BenchError(std::string(s.status().message()));
      subscriptions.push_back(*std::move(s));
    }
    if (!db->WaitForDelivery(db->LastCommitTimestamp()).ok()) throw BenchError("wait");
    // Between two watched sessions' ranges, so the probe walks the tree down to a gap.
    const std::string unwatched = "session-" + std::to_string(count / 2) + "-unwatched";
    const size_t first_updates = updates;
    for (auto _ : state) InsertMessage(*db, unwatched);
    state.SetItemsProcessed(state.iterations());
    if (!db->WaitForDelivery(db->LastCommitTimestamp()).ok()) throw BenchError("wait");
    if (updates != first_updates) throw BenchError("a commit outside every range re-ran a query");
  } catch (const BenchError& e) {
    state.SkipWithError(e.what());
  }
}

double Percentile(std::vector<double> samples, double p) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  return samples[std::min(samples.size() - 1, static_cast<size_t>(p * samples.size()))];
}

void BM_CommitToCallback(benchmark::State& state) {
  try {
    std::unique_ptr<stagedb::Database> db = OpenDatabase();
    std::mutex mu;
    std::condition_variable delivered;
    size_t updates = 0;
    Clock::time_point last_callback;
    absl::StatusOr<stagedb::Subscription> s =
        SubscribeSession(*db, "watched", [&](const stagedb::QueryUpdate&) {
          const Clock::time_point now = Clock::now();
          std::lock_guard<std::mutex> lock(mu);
          last_callback = now;
          ++updates;
          delivered.notify_all();
        });
    if (!s.ok()) throw BenchError(std::string(s.status().message()));
    if (!db->WaitForDelivery(db->LastCommitTimestamp()).ok()) throw BenchError("wait");
    std::vector<double> from_return, from_call;
    for (auto _ : state) {
      size_t before;
      {
        std::lock_guard<std::mutex> lock(mu);
        before = updates;
      }
      const Clock::time_point call = Clock::now();
      InsertMessage(*db, "watched");
      const Clock::time_point returned = Clock::now();
      std::unique_lock<std::mutex> lock(mu);
      delivered.wait(lock, [&] { return updates > before; });
      auto micros = [](Clock::duration d) {
        return std::max(0.0, std::chrono::duration<double, std::micro>(d).count());
      };
      from_return.push_back(micros(last_callback - returned));
      from_call.push_back(micros(last_callback - call));
    }
    state.counters["return_to_callback_p50_us"] = Percentile(from_return, 0.50);
    state.counters["return_to_callback_p99_us"] = Percentile(from_return, 0.99);
    state.counters["call_to_callback_p50_us"] = Percentile(from_call, 0.50);
    state.counters["call_to_callback_p99_us"] = Percentile(from_call, 0.99);
  } catch (const BenchError& e) {
    state.SkipWithError(e.what());
  }
}

void BM_IdleSubscriptionMemory(benchmark::State& state) {
  constexpr size_t kCount = 10'000;
  try {
    std::unique_ptr<stagedb::Database> db = OpenDatabase();
    for (auto _ : state) {
      std::vector<stagedb::Subscription> subscriptions;
      subscriptions.reserve(kCount);
      if (!db->WaitForDelivery(db->LastCommitTimestamp()).ok()) throw BenchError("wait");
      const size_t before = mallinfo2().uordblks;
      for (size_t i = 0; i < kCount; ++i) {
        absl::StatusOr<stagedb::Subscription> s = SubscribeSession(
            *db, "session-" + std::to_string(i), [](const stagedb::QueryUpdate&) {});
        if (!s.ok()) throw BenchError(std::string(s.status().message()));
        subscriptions.push_back(*std::move(s));
      }
      // Idle: first results delivered, nothing queued.
      if (!db->WaitForDelivery(db->LastCommitTimestamp()).ok()) throw BenchError("wait");
      const size_t after = mallinfo2().uordblks;
      state.counters["bytes_per_subscription"] =
          static_cast<double>(after - before) / static_cast<double>(kCount);
    }
  } catch (const BenchError& e) {
    state.SkipWithError(e.what());
  }
}

}  // namespace

void RegisterSubscriptionBenchmarks(const std::string& dir) {
  g_dir = dir;
  // Args: subscriptions, durable (1) or nosync (0). The nosync runs show the invalidation cost
  // itself; with fsync it drowns in the disk's noise.
  benchmark::RegisterBenchmark("BM_CommitWithSubscriptions", BM_CommitWithSubscriptions)
      ->ArgNames({"subscriptions", "durable"})
      ->ArgsProduct({{0, 1'000, 100'000}, {0, 1}})
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_CommitToCallback", BM_CommitToCallback)
      ->Unit(benchmark::kMicrosecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_IdleSubscriptionMemory", BM_IdleSubscriptionMemory)
      ->Iterations(1)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

}  // namespace stagedb_bench
