// stagedb_bench: the same workloads on stagedb, raw LMDB and SQLite, in one run, so the ratios
// can be read off directly (BM_PointRead/stagedb vs BM_PointRead/lmdb vs BM_PointRead/sqlite).
//
//   stagedb_bench [--docs=N] [--dir=PATH] [Google Benchmark flags, e.g. --benchmark_filter=Read]
//
// Workloads, on "tasks" documents (projectId, a ~40-character title, int64 priority, float64
// estimate, status) with two secondary indexes, by_project_priority [projectId, priority] and
// by_status [status], over 100 projects:
//   BM_InsertBatch1000   one transaction (one durable commit) inserts 1,000 tasks; rate = tasks/s
//   BM_InsertPerDoc      one transaction (one durable commit) per task;           rate = tasks/s
//   BM_PointRead         get one task by id (random order), decode it;            rate = reads/s
//   BM_RangeQuery        a project's tasks by priority descending, first 20;      rate = queries/s
// plus the stagedb-only subscription workloads of subscription_bench.cc.
// The insert workloads start from a new, empty store; the read workloads share one store per
// backend preloaded with --docs tasks (default 10,000) whose results are checked first. Times are
// wall-clock (commits wait on fsync). Stores live in a temporary directory under --dir (default
// $TMPDIR or /tmp), removed at the end.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "bench_backend.h"

namespace stagedb_bench {

// subscription_bench.cc, commit_bench.cc: stagedb-only workloads, stores under `dir`.
void RegisterSubscriptionBenchmarks(const std::string& dir);
void RegisterCommitBenchmarks(const std::string& dir);

namespace {

namespace fs = std::filesystem;

constexpr int kProjects = 100;
constexpr size_t kBatch = 1000;
constexpr size_t kRangeLimit = 20;

struct Flags {
  size_t docs = 10'000;
  std::string dir;
};
Flags g_flags;
std::string g_root;  // this run's temporary directory

using OpenFn = std::unique_ptr<Backend> (*)(const std::string& dir);
struct BackendInfo {
  const char* name;
  OpenFn open;
};
const BackendInfo kBackends[] = {
    {"stagedb", OpenStagedbBackend},
    {"lmdb", OpenLmdbBackend},
    {"sqlite", OpenSqliteBackend},
};

// A task before it belongs to a store: the project is an index into the store's projects.
struct TaskSpec {
  int project;
  std::string title;
  int64_t priority;
  double estimate;
  const char* status;
};

// `n` tasks, the same for every backend.
std::vector<TaskSpec> MakeSpecs(size_t n, uint64_t seed) {
  static const char* const kStatuses[] = {"todo", "in_progress", "done"};
  static const char* const kWords[] = {"review", "update",  "fix",     "the",    "release",
                                       "notes",  "billing", "search",  "page",   "flow",
                                       "cache",  "docs",    "onboard", "export", "retry"};
  std::mt19937_64 rng(seed);
  std::vector<TaskSpec> specs;
  specs.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    std::string title = "Task " + std::to_string(i) + ":";
    while (title.size() < 40) {
      title += ' ';
      title += kWords[rng() % std::size(kWords)];
    }
    title.resize(40);
    specs.push_back(TaskSpec{static_cast<int>(rng() % kProjects), std::move(title),
                             static_cast<int64_t>(rng() % 10), static_cast<double>(rng() % 64) / 4,
                             kStatuses[rng() % std::size(kStatuses)]});
  }
  return specs;
}

std::vector<TaskDoc> ToDocs(const std::vector<TaskSpec>& specs,
                            const std::vector<std::string>& projects) {
  std::vector<TaskDoc> docs;
  docs.reserve(specs.size());
  for (const TaskSpec& spec : specs) {
    docs.push_back(
        TaskDoc{projects.at(spec.project), spec.title, spec.priority, spec.estimate, spec.status});
  }
  return docs;
}

// A backend in a directory of its own, with its projects; the directory goes with it.
class Store {
 public:
  explicit Store(const BackendInfo& info) {
    static int counter = 0;
    dir_ = g_root + "/" + info.name + "-" + std::to_string(++counter);
    fs::create_directories(dir_);
    backend_ = info.open(dir_);
    projects_ = backend_->CreateProjects(kProjects);
  }
  ~Store() {
    backend_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  Backend* operator->() { return backend_.get(); }
  const std::vector<std::string>& projects() const { return projects_; }

 private:
  std::string dir_;
  std::unique_ptr<Backend> backend_;
  std::vector<std::string> projects_;
};

const std::vector<TaskSpec>& PreloadSpecs() {
  static const auto* specs = new std::vector<TaskSpec>(MakeSpecs(g_flags.docs, 1));
  return *specs;
}

// A random order of reads, the same for every backend.
const std::vector<uint32_t>& ReadOrder() {
  static const auto* order = [] {
    auto* v = new std::vector<uint32_t>(PreloadSpecs().size());
    for (uint32_t i = 0; i < v->size(); ++i) (*v)[i] = i;
    std::shuffle(v->begin(), v->end(), std::mt19937_64(2));
    return v;
  }();
  return *order;
}

// Checks that a preloaded store answers like the data says it should.
void Verify(const char* name, Store& store) {
  const std::vector<TaskSpec>& specs = PreloadSpecs();
  auto fail = [&](const std::string& what) {
    throw BenchError(std::string(name) + " gave a wrong answer: " + what);
  };
  if (store->num_tasks() != specs.size()) fail("task count");
  for (size_t i = 0; i < specs.size(); i += 97) {
    if (store->PointRead(i) != specs[i].priority) fail("point read of task " + std::to_string(i));
  }
  std::vector<std::vector<int64_t>> by_project(kProjects);
  for (const TaskSpec& spec : specs) by_project[spec.project].push_back(spec.priority);
  std::vector<int64_t> got;
  for (int p = 0; p < kProjects; ++p) {
    std::vector<int64_t> want = by_project[p];
    std::sort(want.begin(), want.end(), std::greater<>());
    if (want.size() > kRangeLimit) want.resize(kRangeLimit);
    got.clear();
    store->RangeQuery(store.projects()[p], kRangeLimit, &got);
    if (got != want) fail("range query of project " + std::to_string(p));
  }
}

// The stores the read workloads share, per backend: made, loaded and checked on first use.
std::map<std::string, std::unique_ptr<Store>> g_preloaded;

Store& Preloaded(const BackendInfo& info) {
  std::unique_ptr<Store>& store = g_preloaded[info.name];
  if (store == nullptr) {
    std::cerr << "(preloading " << PreloadSpecs().size() << " tasks into " << info.name << ")\n";
    auto fresh = std::make_unique<Store>(info);
    std::vector<TaskDoc> docs = ToDocs(PreloadSpecs(), fresh->projects());
    for (size_t i = 0; i < docs.size(); i += kBatch) {
      size_t n = std::min(kBatch, docs.size() - i);
      (*fresh)->InsertBatch(std::span<const TaskDoc>(docs.data() + i, n));
    }
    Verify(info.name, *fresh);
    store = std::move(fresh);
  }
  return *store;
}

void BM_InsertBatch1000(benchmark::State& state, const BackendInfo* info) {
  try {
    Store store(*info);
    std::vector<TaskDoc> docs = ToDocs(MakeSpecs(kBatch, 3), store.projects());
    for (auto _ : state) store->InsertBatch(docs);
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void BM_InsertPerDoc(benchmark::State& state, const BackendInfo* info) {
  try {
    Store store(*info);
    std::vector<TaskDoc> docs = ToDocs(MakeSpecs(kBatch, 4), store.projects());
    size_t i = 0;
    for (auto _ : state) store->InsertOne(docs[i++ % docs.size()]);
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
  }
}

void BM_PointRead(benchmark::State& state, const BackendInfo* info) {
  try {
    Store& store = Preloaded(*info);
    const std::vector<uint32_t>& order = ReadOrder();
    size_t i = 0;
    int64_t sum = 0;
    for (auto _ : state) sum += store->PointRead(order[i++ % order.size()]);
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
    std::vector<int64_t> priorities;
    priorities.reserve(kRangeLimit);
    size_t i = 0, returned = 0;
    for (auto _ : state) {
      priorities.clear();
      store->RangeQuery(store.projects()[order[i++ % order.size()] % kProjects], kRangeLimit,
                        &priorities);
      returned += priorities.size();
      benchmark::DoNotOptimize(priorities.data());
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
    if (arg.starts_with("--docs=")) {
      char* end = nullptr;
      unsigned long long docs = std::strtoull(argv[i] + 7, &end, 10);
      if (end == argv[i] + 7 || *end != '\0' || docs == 0) return false;
      g_flags.docs = docs;
    } else if (arg.starts_with("--dir=")) {
      g_flags.dir = std::string(arg.substr(6));
    } else {
      argv[out++] = argv[i];
    }
  }
  *argc = out;
  return true;
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

  std::error_code ec;
  fs::path parent = g_flags.dir.empty() ? fs::temp_directory_path(ec) : fs::path(g_flags.dir);
  std::string pattern = (parent / "stagedb-bench-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    std::cerr << "stagedb_bench: cannot create a directory from " << pattern << ": "
              << std::strerror(errno) << "\n";
    return 1;
  }
  g_root = pattern;

  benchmark::AddCustomContext("stores", g_root);
  benchmark::AddCustomContext("preloaded_tasks", std::to_string(g_flags.docs));
  benchmark::AddCustomContext("projects", std::to_string(kProjects));
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
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  g_preloaded.clear();
  fs::remove_all(g_root, ec);
  return 0;
}
