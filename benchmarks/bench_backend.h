// The stores compared by stagedb_bench, behind one small interface: stagedb itself, raw LMDB
// (hand-maintained secondary indexes, Cereal-encoded records) and SQLite (a JSON text column with
// expression indexes). Each runs the same workloads on the same "tasks" documents.
#ifndef STAGEDB_BENCHMARKS_BENCH_BACKEND_H_
#define STAGEDB_BENCHMARKS_BENCH_BACKEND_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace stagedb_bench {

// A task document. `project_id` is a project id in the backend's own form (CreateProjects).
struct TaskDoc {
  std::string project_id;
  std::string title;  // about 40 characters
  int64_t priority = 0;
  double estimate = 0;
  std::string status;
};

// Any failure inside a backend; the benchmark reports it with SkipWithError.
struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Inserts `n` projects in one transaction and returns their ids, in the form the tasks'
  // `project_id` holds.
  virtual std::vector<std::string> CreateProjects(int n) = 0;
  // Inserts `docs` into `tasks` in one transaction: one durable commit.
  virtual void InsertBatch(std::span<const TaskDoc> docs) = 0;
  // Inserts one task in its own transaction: one durable commit.
  virtual void InsertOne(const TaskDoc& doc) = 0;
  // How many tasks were inserted; they are numbered 0.. in insertion order.
  virtual size_t num_tasks() const = 0;
  // Reads task number `i` by its id, in its own read transaction, decoding the whole document;
  // returns its priority.
  virtual int64_t PointRead(size_t i) = 0;
  // In one read transaction: the tasks of `project_id` by descending priority (ties: latest
  // created first), at most `limit`, each decoded; appends their priorities to `priorities`.
  virtual void RangeQuery(const std::string& project_id, size_t limit,
                          std::vector<int64_t>* priorities) = 0;
};

// Each opens a new store in the existing, empty directory `dir`. Durable commits throughout:
// stagedb's default sync mode, LMDB's default (fsync per commit), SQLite WAL + synchronous=FULL.
std::unique_ptr<Backend> OpenStagedbBackend(const std::string& dir);
std::unique_ptr<Backend> OpenLmdbBackend(const std::string& dir);
std::unique_ptr<Backend> OpenSqliteBackend(const std::string& dir);

// The names of the secondary indexes every backend maintains on tasks:
//   by_project_priority [projectId, priority] and by_status [status].

}  // namespace stagedb_bench

#endif  // STAGEDB_BENCHMARKS_BENCH_BACKEND_H_
