// stagedb_bench: the same workloads on stagedb, raw LMDB and SQLite (JSON and typed columns),
// in one run, so the ratios can be read off directly (BM_PointRead/stagedb vs
// BM_PointRead/lmdb vs BM_PointRead/sqlite-json vs BM_PointRead/sqlite-typed). For one table of
// all the stores' rates and ratios, run stagedb_compare (compare.cc) instead.
//
//   stagedb_bench [--docs=N] [--dir=PATH] [Google Benchmark flags, e.g. --benchmark_filter=Read]
//
// Workloads, on the "messages" documents of bench_backend.h (sessionId, author, kind, seq,
// sentAt, body; about 250 bytes as JSON) with two compound secondary indexes,
// by_session_sent [sessionId, sentAt] and by_author_kind [author, kind], over 1,000 sessions:
//   BM_InsertBatch1000   one transaction (one durable commit) inserts 1,000 messages;
//                        rate = messages/s
//   BM_InsertPerDoc      one transaction (one durable commit) per message; rate = messages/s
//   BM_PointRead         get one message by id (random order), decode it; rate = reads/s
//   BM_RangeQuery        a session's newest 20 messages (sentAt descending); rate = queries/s
// plus the stagedb-only subscription and group-commit workloads of subscription_bench.cc and
// commit_bench.cc. The insert workloads start from a new, empty store; the read workloads share
// one store per backend preloaded with --docs messages (default 50,000, so that most sessions
// have 20) whose answers are checked first. Times are wall-clock (commits wait on fsync). Stores
// live in a temporary directory under --dir (default $TMPDIR or /tmp), removed at the end.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <exception>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "bench_backend.h"
#include "workload.h"

namespace stagedb_bench {

// subscription_bench.cc, commit_bench.cc: stagedb-only workloads, stores under `dir`.
void RegisterSubscriptionBenchmarks(const std::string& dir);
void RegisterCommitBenchmarks(const std::string& dir);

namespace {

struct Flags {
  size_t docs = 50'000;
  std::string dir;
};
Flags g_flags;
std::string g_root;  // this run's temporary directory

const Messages& PreloadMessages() {
  static const auto* messages = new Messages(MakeMessages(g_flags.docs, 1));
  return *messages;
}

// A random order of reads, the same for every backend.
const std::vector<uint32_t>& ReadOrder() {
  static const auto* order = new std::vector<uint32_t>(Shuffled(PreloadMessages().docs.size(), 2));
  return *order;
}

// The stores the read workloads share, per backend: made, loaded and checked on first use.
std::map<std::string, std::unique_ptr<Store>> g_preloaded;

Store& Preloaded(const BackendInfo& info) {
  std::unique_ptr<Store>& store = g_preloaded[info.name];
  if (store == nullptr) {
    std::cerr << "(preloading " << g_flags.docs << " messages into " << info.name << ")\n";
    auto fresh = std::make_unique<Store>(info, g_root);
    Messages messages = PreloadMessages();
    messages.SetSessions(fresh->sessions());
    InsertAll(**fresh, messages.docs);
    Verify(info.name, *fresh, messages);
    store = std::move(fresh);
  }
  return *store;
}

// `n` new messages for `store`'s sessions.
std::vector<MessageDoc> NewDocs(const Store& store, size_t n, uint64_t seed) {
  Messages messages = MakeMessages(n, seed);
  messages.SetSessions(store.sessions());
  return std::move(messages.docs);
}

void BM_InsertBatch1000(benchmark::State& state, const BackendInfo* info) {
  try {
    Store store(*info, g_root);
    std::vector<MessageDoc> docs = NewDocs(store, kBatch, 3);
    for (auto _ : state) store->InsertBatch(docs);
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void BM_InsertPerDoc(benchmark::State& state, const BackendInfo* info) {
  try {
    Store store(*info, g_root);
    std::vector<MessageDoc> docs = NewDocs(store, kBatch, 4);
    std::unique_ptr<Writer> writer = store->NewWriter();
    size_t i = 0;
    for (auto _ : state) writer->InsertOne(docs[i++ % docs.size()]);
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void BM_PointRead(benchmark::State& state, const BackendInfo* info) {
  try {
    Store& store = Preloaded(*info);
    const std::vector<uint32_t>& order = ReadOrder();
    MessageDoc doc;
    size_t i = 0;
    int64_t sum = 0;
    for (auto _ : state) {
      store->PointRead(order[i++ % order.size()], &doc);
      sum += doc.seq;
    }
    benchmark::DoNotOptimize(sum);
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void BM_RangeQuery(benchmark::State& state, const BackendInfo* info) {
  try {
    Store& store = Preloaded(*info);
    const std::vector<uint32_t>& order = ReadOrder();
    std::vector<MessageDoc> docs;
    size_t i = 0, returned = 0;
    for (auto _ : state) {
      store->RangeQuery(store.sessions()[order[i++ % order.size()] % kSessions], kNewest, &docs);
      returned += docs.size();
      benchmark::DoNotOptimize(docs.data());
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
    state.counters["docs_per_query"] =
        state.iterations() == 0 ? 0.0 : static_cast<double>(returned) / state.iterations();
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

struct Workload {
  const char* name;
  void (*fn)(benchmark::State&, const BackendInfo*);
  benchmark::TimeUnit unit;
};
const Workload kWorkloads[] = {
    {"BM_InsertBatch1000", BM_InsertBatch1000, benchmark::kMillisecond},
    {"BM_InsertPerDoc", BM_InsertPerDoc, benchmark::kMicrosecond},
    {"BM_PointRead", BM_PointRead, benchmark::kMicrosecond},
    {"BM_RangeQuery", BM_RangeQuery, benchmark::kMicrosecond},
};

// Takes --docs=N and --dir=PATH out of argv; false on a malformed value.
bool ParseFlags(int* argc, char** argv) {
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    std::string_view arg = argv[i];
    if (std::optional<std::string_view> docs = FlagValue(arg, "docs")) {
      std::optional<size_t> n = ParseCount(*docs);
      if (!n) return false;
      g_flags.docs = *n;
    } else if (std::optional<std::string_view> dir = FlagValue(arg, "dir")) {
      g_flags.dir = std::string(*dir);
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  return true;
}

void RegisterBenchmarks() {
  benchmark::AddCustomContext("stores", g_root);
  benchmark::AddCustomContext("preloaded_messages", std::to_string(g_flags.docs));
  benchmark::AddCustomContext("sessions", std::to_string(kSessions));
  for (const Workload& workload : kWorkloads) {
    for (const BackendInfo& backend : kBackends) {
      std::string name = std::string(workload.name) + "/" + backend.name;
      benchmark::RegisterBenchmark(name.c_str(), workload.fn, &backend)
          ->Unit(workload.unit)
          ->UseRealTime();
    }
  }
  RegisterSubscriptionBenchmarks(g_root);
  RegisterCommitBenchmarks(g_root);
}

}  // namespace
}  // namespace stagedb_bench

int main(int argc, char** argv) {
  using namespace stagedb_bench;
  if (!ParseFlags(&argc, argv)) {
    std::cerr << "stagedb_bench: --docs needs a positive number\n";
    return 2;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  try {
    g_root = MakeTempRoot(g_flags.dir, "stagedb-bench");
  } catch (const BenchError& e) {
    std::cerr << "stagedb_bench: " << e.what() << "\n";
    return 1;
  }
  RegisterBenchmarks();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_preloaded.clear();
  std::error_code ec;
  std::filesystem::remove_all(g_root, ec);
  return 0;
}
