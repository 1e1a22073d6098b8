// stagedb_compare: the same workloads on four stores, in one process, and one table of their
// absolute rates and of stagedb's ratios to each (issue 4, "Benchmarks: one runner, side by
// side"). The stores (bench_backend.h): stagedb through its public API; raw LMDB with
// hand-maintained indexes and Cereal-encoded structs; SQLite with a JSON column and expression
// indexes (sqlite-json); SQLite with typed columns (sqlite-typed). All commit durably.
//
//   stagedb_compare [--docs=N] [--reads=N] [--queries=N] [--commits=N]
//                   [--engines=stagedb,lmdb,sqlite-json,sqlite-typed] [--dir=PATH] [--json=PATH]
//
// Each store gets a fresh directory under a temporary one in --dir (default $TMPDIR or /tmp;
// put it on the disk you care about), removed at the end, and runs, in this order:
//   1. bulk insert: --docs messages (default 200,000) in transactions of 1,000; docs/s
//   2. (untimed) a check of its answers: point reads of a sample, every session's newest 20;
//      a wrong answer stops the run
//   3. point reads by id, each in its own read transaction, decoding the whole document, in a
//      random order over all documents; --reads of them (default: as many as --docs); reads/s
//   4. a session's newest 20 (sessionId = ?, sentAt descending, limit 20, decoded), each its own
//      read transaction, random sessions; --queries of them (default 20,000); queries/s
//   5. its size on disk after the bulk load; bytes
//   6. durable single-document inserts, one per transaction, from 1 thread; --commits of them
//      (default 1,000); commits/s
//   7. the same from 8 threads at once, each with its own writer (connection, statements),
//      --commits / 8 each; commits/s
// The table goes to stdout, progress to stderr; --json=PATH also writes the results as a JSON
// array of {"engine", "workload", "rate", "unit"}, to compare from commit to commit.
#include <lmdb.h>
#include <sched.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <latch>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_backend.h"
#include "nlohmann/json.hpp"
#include "workload.h"

namespace stagedb_bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kThreads = 8;  // for the multi-thread commit workload

struct Params {
  size_t docs = 200'000;
  size_t reads = 0;  // 0: as many as docs
  size_t queries = 20'000;
  size_t commits = 1'000;
  std::string dir;
  std::string json_path;
  std::vector<const BackendInfo*> engines;  // in kBackends' order
};

// The workloads, in the order they run and are shown.
enum WorkloadId {
  kBulkInsert,
  kPointRead,
  kNewestQuery,
  kSizeOnDisk,
  kCommits1,
  kCommits8,
  kNumWorkloads
};

struct WorkloadInfo {
  const char* key;    // in the JSON output
  const char* label;  // in the table
  const char* unit;   // of the rate, in the JSON output
  // How the table shows it: in `shown_unit`, the rate divided by `divisor`.
  const char* shown_unit;
  double divisor;
};

const WorkloadInfo kWorkloads[kNumWorkloads] = {
    {"bulk_insert", "bulk insert, 1,000 per transaction", "docs/s", "docs/s", 1},
    {"point_read", "point read by id", "reads/s", "reads/s", 1},
    {"newest_20", "newest 20 of a session", "queries/s", "queries/s", 1},
    {"size_on_disk", "size on disk after the bulk load", "bytes", "MiB", 1 << 20},
    {"commits_1_thread", "durable 1-doc commits, 1 thread", "commits/s", "commits/s", 1},
    {"commits_8_threads", "durable 1-doc commits, 8 threads", "commits/s", "commits/s", 1},
};

using Rates = std::array<double, kNumWorkloads>;

// What every store is given, generated once so that all get the same.
struct Inputs {
  Messages load;                         // the bulk load
  Messages commits;                      // the single-document commits
  std::vector<uint32_t> read_order;      // message numbers
  std::vector<uint32_t> query_sessions;  // session numbers
};

Inputs MakeInputs(const Params& params) {
  Inputs in;
  in.load = MakeMessages(params.docs, 1);
  in.commits = MakeMessages(params.commits, 2);
  std::vector<uint32_t> shuffled = Shuffled(params.docs, 3);
  in.read_order.resize(params.reads);
  for (size_t i = 0; i < params.reads; ++i) in.read_order[i] = shuffled[i % shuffled.size()];
  in.query_sessions = RandomSequence(params.queries, kSessions, 4);
  return in;
}

template <typename Fn>
double Seconds(Fn&& fn) {
  Clock::time_point start = Clock::now();
  fn();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double PointReads(Backend& backend, const std::vector<uint32_t>& order) {
  MessageDoc doc;
  return static_cast<double>(order.size()) / Seconds([&] {
           for (uint32_t i : order) backend.PointRead(i, &doc);
         });
}

double NewestQueries(Store& store, const std::vector<uint32_t>& sessions) {
  std::vector<MessageDoc> docs;
  return static_cast<double>(sessions.size()) / Seconds([&] {
           for (uint32_t s : sessions) store->RangeQuery(store.sessions()[s], kNewest, &docs);
         });
}

// The bytes of every file in the store's directory. For the LMDB-based stores (stagedb, lmdb)
// that is data.mdb, which LMDB grows page by page and never shrinks: every page the database
// has used, free pages kept for reuse included, plus the few KiB of lock.mdb. For SQLite it is
// the database file once the WAL is checkpointed into it and truncated, plus the 32 KiB -shm.
double SizeOnDisk(Store& store) {
  store->Checkpoint();
  uintmax_t bytes = 0;
  for (const fs::directory_entry& entry : fs::recursive_directory_iterator(store.dir())) {
    if (entry.is_regular_file()) bytes += entry.file_size();
  }
  return static_cast<double>(bytes);
}

// The first exception of several threads, to rethrow on the main one.
class FirstError {
 public:
  void Set(std::exception_ptr error) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!error_) error_ = error;
  }
  void RethrowIfAny() {
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::mutex mutex_;
  std::exception_ptr error_;
};

// `threads` threads, each with its own writer, insert their share of `docs` one per durable
// commit, all starting at once; commits per second from the start to the last one's end.
double Commits(Backend& backend, const std::vector<MessageDoc>& docs, int threads) {
  const size_t per_thread = docs.size() / static_cast<size_t>(threads);
  std::vector<std::unique_ptr<Writer>> writers;  // made before the clock starts
  for (int t = 0; t < threads; ++t) writers.push_back(backend.NewWriter());
  std::latch start(threads + 1);
  FirstError error;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      start.arrive_and_wait();
      try {
        for (size_t k = 0; k < per_thread; ++k) writers[t]->InsertOne(docs[t * per_thread + k]);
      } catch (...) {
        error.Set(std::current_exception());
      }
    });
  }
  double seconds = Seconds([&] {
    start.arrive_and_wait();
    for (std::thread& worker : workers) worker.join();
  });
  error.RethrowIfAny();
  return static_cast<double>(per_thread * threads) / seconds;
}

void Report(const char* engine, WorkloadId workload, double rate) {
  std::cerr << "  " << engine << ": " << kWorkloads[workload].label << ": "
            << static_cast<uint64_t>(rate) << " " << kWorkloads[workload].unit << "\n";
}

// All the workloads on one engine, in a fresh store under `root`. The store's session ids go
// into the inputs' documents.
Rates RunEngine(const BackendInfo& info, Inputs& in, const std::string& root) {
  std::cerr << "[" << info.name << "]\n";
  Rates rates{};
  Store store(info, root);
  in.load.SetSessions(store.sessions());
  in.commits.SetSessions(store.sessions());
  auto run = [&](WorkloadId workload, auto&& fn) {
    rates[workload] = fn();
    Report(info.name, workload, rates[workload]);
  };
  run(kBulkInsert, [&] {
    return static_cast<double>(in.load.docs.size()) /
           Seconds([&] { InsertAll(*store, in.load.docs); });
  });
  Verify(info.name, store, in.load);
  run(kPointRead, [&] { return PointReads(*store, in.read_order); });
  run(kNewestQuery, [&] { return NewestQueries(store, in.query_sessions); });
  run(kSizeOnDisk, [&] { return SizeOnDisk(store); });
  run(kCommits1, [&] { return Commits(*store, in.commits.docs, 1); });
  run(kCommits8, [&] { return Commits(*store, in.commits.docs, kThreads); });
  return rates;
}

// ---- The header: machine and parameters ----

// The CPUs this process may run on (what nproc prints).
int CpuCount() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  return CPU_COUNT(&set);
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("model name")) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

// "ext4 on /dev/vda": the file system of the mount that holds `path` (the longest mount point
// that is a prefix of it, from /proc/mounts).
std::string FileSystemOf(const std::string& path) {
  std::error_code ec;
  std::string target = fs::canonical(path, ec).string();
  std::ifstream in("/proc/mounts");
  std::string device, mount_point, type, best = "unknown file system";
  size_t best_length = 0;
  std::string rest;
  while (in >> device >> mount_point >> type && std::getline(in, rest)) {
    bool contains =
        target == mount_point || mount_point == "/" || target.starts_with(mount_point + "/");
    if (contains && mount_point.size() >= best_length) {
      best_length = mount_point.size();
      best = type + " on " + device;
    }
  }
  return best;
}

// 1234567.8 -> "1,234,568"; below 100, one decimal unless it is whole.
std::string FormatNumber(double v) {
  char buffer[64];
  if (v < 100 && v != std::floor(v)) {
    std::snprintf(buffer, sizeof buffer, "%.1f", v);
    return buffer;
  }
  std::string digits = std::to_string(static_cast<uint64_t>(v + 0.5));
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

void PrintHeader(const Params& params, const Inputs& in, const std::string& root) {
  std::cout << "# stagedb_compare\n\n"
            << "- machine: " << CpuCount() << " CPUs (" << CpuModel() << "); stores under " << root
            << " (" << FileSystemOf(root) << ")\n"
            << "- data: " << FormatNumber(static_cast<double>(params.docs)) << " messages (average "
            << FormatNumber(AverageJsonBytes(in.load)) << " bytes as JSON), "
            << FormatNumber(kSessions)
            << " sessions, indexes by_session_sent [sessionId, sentAt] and by_author_kind "
               "[author, kind]\n"
            << "- runs: bulk insert " << FormatNumber(kBatch) << " per transaction; "
            << FormatNumber(static_cast<double>(params.reads)) << " point reads; "
            << FormatNumber(static_cast<double>(params.queries)) << " newest-" << kNewest
            << " queries; " << FormatNumber(static_cast<double>(params.commits))
            << " durable commits from 1 thread, then " << kThreads << " threads × "
            << params.commits / kThreads << "\n"
            << "- SQLite " << sqlite3_libversion()
            << " (WAL, synchronous=FULL, 256 MiB cache, 1 GiB mmap); "
            << mdb_version(nullptr, nullptr, nullptr) << "\n\n";
}

// ---- The table ----

// "0.52x": stagedb's value over another store's; "-" when either is missing.
std::string RatioCell(double stagedb, double other) {
  if (stagedb <= 0 || other <= 0) return "-";
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2fx", stagedb / other);
  return buffer;
}

// Pads each column to its widest cell and prints the rows as a Markdown table (text left,
// numbers right), so that it can be pasted as it is.
void PrintMarkdown(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& row : rows) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    for (size_t c = 0; c < row.size(); ++c) {
      std::string pad(widths[c] - row[c].size(), ' ');
      std::cout << "| " << (c < 2 ? row[c] + pad : pad + row[c]) << " ";
    }
    std::cout << "|\n";
  };
  print_row(rows[0]);
  for (size_t c = 0; c < widths.size(); ++c) {
    std::cout << (c < 2 ? "|-" + std::string(widths[c], '-') + "-"
                        : "|-" + std::string(widths[c], '-') + ":");
  }
  std::cout << "|\n";
  for (size_t r = 1; r < rows.size(); ++r) print_row(rows[r]);
}

bool IsStagedb(const BackendInfo* engine) { return std::string_view(engine->name) == "stagedb"; }

// Rows: the workloads. Columns: each engine's rate, then stagedb's ratio to each other engine
// (when stagedb ran).
void PrintTable(const std::vector<const BackendInfo*>& engines, const std::vector<Rates>& results) {
  auto stagedb = std::find_if(engines.begin(), engines.end(), IsStagedb);
  const Rates* mine = stagedb == engines.end() ? nullptr : &results[stagedb - engines.begin()];
  std::vector<std::vector<std::string>> rows = {{"workload", "unit"}};
  for (const BackendInfo* engine : engines) rows[0].push_back(engine->name);
  for (const BackendInfo* engine : engines) {
    if (mine != nullptr && !IsStagedb(engine))
      rows[0].push_back("stagedb / " + std::string(engine->name));
  }
  for (int w = 0; w < kNumWorkloads; ++w) {
    const WorkloadInfo& info = kWorkloads[w];
    std::vector<std::string>& row = rows.emplace_back();
    row = {info.label, info.shown_unit};
    for (const Rates& rates : results) row.push_back(FormatNumber(rates[w] / info.divisor));
    for (size_t e = 0; e < engines.size(); ++e) {
      if (mine != nullptr && !IsStagedb(engines[e]))
        row.push_back(RatioCell((*mine)[w], results[e][w]));
    }
  }
  PrintMarkdown(rows);
  std::cout << "\nRatios: stagedb's rate over the other store's (above 1: stagedb is faster); for "
               "the size, stagedb's size over the other's (below 1: stagedb is smaller).\n";
}

void WriteJson(const std::string& path, const std::vector<const BackendInfo*>& engines,
               const std::vector<Rates>& results) {
  nlohmann::json out = nlohmann::json::array();
  for (size_t e = 0; e < engines.size(); ++e) {
    for (int w = 0; w < kNumWorkloads; ++w) {
      out.push_back({{"engine", engines[e]->name},
                     {"workload", kWorkloads[w].key},
                     {"rate", results[e][w]},
                     {"unit", kWorkloads[w].unit}});
    }
  }
  std::ofstream file(path);
  file << out.dump(2) << "\n";
  if (!file) throw BenchError("cannot write " + path);
}

// ---- Flags ----

constexpr char kUsage[] =
    "usage: stagedb_compare [--docs=N] [--reads=N] [--queries=N] [--commits=N]\n"
    "                       [--engines=stagedb,lmdb,sqlite-json,sqlite-typed] [--dir=PATH]\n"
    "                       [--json=PATH]\n";

// The engines named in a comma-separated list, in kBackends' order; empty on an unknown name.
std::vector<const BackendInfo*> ParseEngines(std::string_view list) {
  std::vector<std::string_view> names;
  for (size_t start = 0; start <= list.size();) {
    size_t comma = std::min(list.find(',', start), list.size());
    names.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  std::vector<const BackendInfo*> engines;
  for (const BackendInfo& info : kBackends) {
    if (std::find(names.begin(), names.end(), info.name) != names.end()) engines.push_back(&info);
  }
  if (engines.size() != names.size()) engines.clear();
  return engines;
}

// Sets `*count` from `--name=N`; false when `arg` is another flag. Throws on a bad number.
bool TakeCount(std::string_view arg, std::string_view name, size_t* count) {
  std::optional<std::string_view> value = FlagValue(arg, name);
  if (!value) return false;
  std::optional<size_t> n = ParseCount(*value);
  if (!n) throw BenchError("--" + std::string(name) + " needs a positive number");
  *count = *n;
  return true;
}

Params ParseFlags(int argc, char** argv) {
  Params params;
  for (const BackendInfo& info : kBackends) params.engines.push_back(&info);
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (TakeCount(arg, "docs", &params.docs) || TakeCount(arg, "reads", &params.reads) ||
        TakeCount(arg, "queries", &params.queries) || TakeCount(arg, "commits", &params.commits)) {
      continue;
    }
    if (std::optional<std::string_view> engines = FlagValue(arg, "engines")) {
      params.engines = ParseEngines(*engines);
      if (params.engines.empty())
        throw BenchError("unknown engine in --engines=" + std::string(*engines));
    } else if (std::optional<std::string_view> dir = FlagValue(arg, "dir")) {
      params.dir = std::string(*dir);
    } else if (std::optional<std::string_view> json = FlagValue(arg, "json")) {
      params.json_path = std::string(*json);
    } else {
      throw BenchError("unknown flag " + std::string(arg));
    }
  }
  if (params.reads == 0) params.reads = params.docs;
  if (params.commits < kThreads) throw BenchError("--commits must be at least 8");
  return params;
}

// Removes the run's temporary directory however the run ends.
class TempRoot {
 public:
  explicit TempRoot(const std::string& parent) : path_(MakeTempRoot(parent, "stagedb-compare")) {}
  ~TempRoot() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempRoot(const TempRoot&) = delete;
  TempRoot& operator=(const TempRoot&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

int Run(const Params& params) {
  Clock::time_point start = Clock::now();
  TempRoot root(params.dir);
  Inputs in = MakeInputs(params);
  PrintHeader(params, in, root.path());
  std::vector<Rates> results;
  for (const BackendInfo* engine : params.engines) {
    try {
      results.push_back(RunEngine(*engine, in, root.path()));
    } catch (const std::exception& e) {
      std::cerr << "stagedb_compare: stopped at " << engine->name << ": " << e.what() << "\n";
      return 1;
    }
  }
  PrintTable(params.engines, results);
  if (!params.json_path.empty()) WriteJson(params.json_path, params.engines, results);
  std::cout << "\n(the run took "
            << std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count()
            << " s)\n";
  return 0;
}

}  // namespace
}  // namespace stagedb_bench

int main(int argc, char** argv) {
  using namespace stagedb_bench;
  if (argc == 2 && std::string_view(argv[1]) == "--help") {
    std::cout << kUsage;
    return 0;
  }
  Params params;
  try {
    params = ParseFlags(argc, argv);
  } catch (const BenchError& e) {
    std::cerr << "stagedb_compare: " << e.what() << "\n" << kUsage;
    return 2;
  }
  try {
    return Run(params);
  } catch (const std::exception& e) {
    std::cerr << "stagedb_compare: " << e.what() << "\n";
    return 1;
  }
}
