// Group commit: durable single-document mutations from 1 and from 8 threads (stagedb only; for
// the same from 8 threads on raw LMDB and SQLite side by side, run stagedb_compare).
//
//   BM_DurableCommits/threads:N   each iteration: N threads each commit 25 one-document
//                                 mutations (durable, fsync); items/s = commits per second
//   BM_OpenNew/map_mib:N          each iteration: open (create) a database with an initial map
//                                 of N MiB, commit one document, close it; counter file_bytes =
//                                 data.mdb's size after (what a large default map costs)
#include <benchmark/benchmark.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "bench_backend.h"
#include "stagedb/stagedb.h"

namespace stagedb_bench {
namespace {

constexpr int kCommitsPerThread = 25;
std::string g_commit_dir;
int g_commit_counter = 0;

void BM_DurableCommits(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const std::string path = g_commit_dir + "/commits-" + std::to_string(++g_commit_counter);
  absl::StatusOr<std::unique_ptr<stagedb::Database>> db = stagedb::Database::Open(
      {.path = path,
       .schema_json = R"({"tables": {"events": {"fields": {"thread": "int64", "n": "int64",
                          "body": "string"}}}})"});
  if (!db.ok()) {
    state.SkipWithError(std::string(db.status().message()).c_str());
    return;
  }
  for (auto _ : state) {
    std::vector<std::thread> workers;
    std::atomic<int> failures = 0;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        for (int n = 0; n < kCommitsPerThread; ++n) {
          absl::Status s = (*db)->Mutate([&](stagedb::Transaction& tx) -> absl::Status {
            return tx.Insert("events", {{"thread", t}, {"n", n}, {"body", std::string(200, 'x')}})
                .status();
          });
          if (!s.ok()) ++failures;
        }
      });
    }
    for (std::thread& worker : workers) worker.join();
    if (failures > 0) state.SkipWithError("a commit failed");
  }
  state.SetItemsProcessed(state.iterations() * threads * kCommitsPerThread);
}

void BM_OpenNew(benchmark::State& state) {
  const size_t map_size = static_cast<size_t>(state.range(0)) << 20;
  std::string path;
  for (auto _ : state) {
    path = g_commit_dir + "/open-" + std::to_string(++g_commit_counter);
    absl::StatusOr<std::unique_ptr<stagedb::Database>> db = stagedb::Database::Open(
        {.path = path,
         .schema_json = R"({"tables": {"events": {"fields": {"n": "int64"}}}})",
         .initial_map_size = map_size});
    if (!db.ok()) {
      state.SkipWithError(std::string(db.status().message()).c_str());
      return;
    }
    absl::Status s = (*db)->Mutate([&](stagedb::Transaction& tx) -> absl::Status {
      return tx.Insert("events", {{"n", stagedb::Value::Int64(1)}}).status();
    });
    if (!s.ok()) state.SkipWithError(std::string(s.message()).c_str());
  }
  state.counters["file_bytes"] =
      static_cast<double>(std::filesystem::file_size(path + "/data.mdb"));
}

}  // namespace

void RegisterCommitBenchmarks(const std::string& dir) {
  g_commit_dir = dir;
  benchmark::RegisterBenchmark("BM_DurableCommits", BM_DurableCommits)
      ->ArgName("threads")
      ->Arg(1)
      ->Arg(8)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  benchmark::RegisterBenchmark("BM_OpenNew", BM_OpenNew)
      ->ArgName("map_mib")
      ->Arg(16)
      ->Arg(64 << 10)
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

}  // namespace stagedb_bench
