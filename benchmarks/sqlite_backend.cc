// SQLite as a document store: per table, a 16-byte id primary key and the document as JSON text
// (a WITHOUT ROWID table, so rows are clustered by id as in LMDB), with expression indexes on
// the same fields stagedb indexes:
//   CREATE INDEX tasks_by_project_priority ON tasks(json_extract(doc, '$.projectId'),
//                                                   json_extract(doc, '$.priority'))
//   CREATE INDEX tasks_by_status ON tasks(json_extract(doc, '$.status'))
// WAL mode with synchronous=FULL, so each commit is durable as in LMDB and stagedb. Documents are
// written with nlohmann-json; reads take the fields out with SQLite's own JSON operator (`->>`,
// one parse per row), which is faster than returning the text and parsing it in C++.
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <random>

#include "bench_backend.h"
#include "nlohmann/json.hpp"

namespace stagedb_bench {
namespace {

constexpr size_t kIdBytes = 16;
using Id = std::array<char, kIdBytes>;

double NowMs() {
  return std::chrono::duration<double, std::milli>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void PutBigEndian(uint64_t v, char* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
}

std::string Hex(const Id& id) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (char c : id) {
    out.push_back(kDigits[(static_cast<unsigned char>(c) >> 4) & 0xF]);
    out.push_back(kDigits[static_cast<unsigned char>(c) & 0xF]);
  }
  return out;
}

class Statement {
 public:
  Statement() = default;
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
      throw BenchError(std::string("sqlite: preparing ") + sql + ": " + sqlite3_errmsg(db));
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(Statement&& other) noexcept : db_(other.db_), stmt_(other.stmt_) {
    other.stmt_ = nullptr;
  }
  Statement& operator=(Statement&& other) noexcept {
    std::swap(db_, other.db_);
    std::swap(stmt_, other.stmt_);
    return *this;
  }

  sqlite3_stmt* get() const { return stmt_; }
  // Steps once; true when a row is ready, false when done.
  bool Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    std::string message = sqlite3_errmsg(db_);
    sqlite3_reset(stmt_);
    throw BenchError("sqlite: " + message);
  }
  void Run() {
    while (Step()) {
    }
    Reset();
  }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// The columns every read selects, and how they become a TaskDoc.
#define TASK_COLUMNS                                                                       \
  "doc ->> '$.projectId', doc ->> '$.title', doc ->> '$.priority', doc ->> '$.estimate', " \
  "doc ->> '$.status'"

std::string Text(sqlite3_stmt* stmt, int column) {
  const unsigned char* text = sqlite3_column_text(stmt, column);
  if (text == nullptr) throw BenchError("sqlite: a document field is missing");
  return std::string(reinterpret_cast<const char*>(text),
                     static_cast<size_t>(sqlite3_column_bytes(stmt, column)));
}

TaskDoc ReadTask(sqlite3_stmt* stmt) {
  TaskDoc task;
  task.project_id = Text(stmt, 0);
  task.title = Text(stmt, 1);
  task.priority = sqlite3_column_int64(stmt, 2);
  task.estimate = sqlite3_column_double(stmt, 3);
  task.status = Text(stmt, 4);
  return task;
}

class SqliteBackend : public Backend {
 public:
  explicit SqliteBackend(const std::string& dir) : rng_(std::random_device{}()) {
    std::string path = dir + "/tasks.sqlite";
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
      std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      throw BenchError("sqlite: opening " + path + ": " + message);
    }
    try {
      Exec("PRAGMA journal_mode=WAL");
      Exec("PRAGMA synchronous=FULL");
      Exec("CREATE TABLE projects (id BLOB PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID");
      Exec("CREATE TABLE tasks (id BLOB PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID");
      Exec(
          "CREATE INDEX tasks_by_project_priority ON tasks("
          "json_extract(doc, '$.projectId'), json_extract(doc, '$.priority'))");
      Exec("CREATE INDEX tasks_by_status ON tasks(json_extract(doc, '$.status'))");
      begin_ = Statement(db_, "BEGIN");
      commit_ = Statement(db_, "COMMIT");
      rollback_ = Statement(db_, "ROLLBACK");
      insert_project_ = Statement(db_, "INSERT INTO projects (id, doc) VALUES (?1, ?2)");
      insert_task_ = Statement(db_, "INSERT INTO tasks (id, doc) VALUES (?1, ?2)");
      get_task_ = Statement(db_, "SELECT " TASK_COLUMNS " FROM tasks WHERE id = ?1");
      range_ = Statement(db_, kRangeSql);
      CheckRangePlan();
    } catch (...) {
      Close();
      throw;
    }
  }
  ~SqliteBackend() override { Close(); }

  std::vector<std::string> CreateProjects(int n) override {
    std::vector<std::string> ids;
    Transaction([&] {
      for (int i = 0; i < n; ++i) {
        Id id = NewId();
        json_ = nlohmann::json{{"name", "project-" + std::to_string(i)}, {"_creationTime", NowMs()}}
                    .dump();
        BindId(insert_project_, 1, id);
        sqlite3_bind_text(insert_project_.get(), 2, json_.data(), static_cast<int>(json_.size()),
                          SQLITE_STATIC);
        insert_project_.Run();
        ids.push_back(Hex(id));
      }
    });
    return ids;
  }

  void InsertBatch(std::span<const TaskDoc> docs) override {
    size_t first = ids_.size();
    try {
      Transaction([&] {
        for (const TaskDoc& doc : docs) Put(doc);
      });
    } catch (...) {
      ids_.resize(first);
      throw;
    }
  }

  // Autocommit: the INSERT is its own transaction.
  void InsertOne(const TaskDoc& doc) override { Put(doc); }

  size_t num_tasks() const override { return ids_.size(); }

  int64_t PointRead(size_t i) override {
    BindId(get_task_, 1, ids_[i]);
    if (!get_task_.Step()) {
      get_task_.Reset();
      throw BenchError("sqlite: task not found");
    }
    TaskDoc task = ReadTask(get_task_.get());
    get_task_.Reset();
    return task.priority;
  }

  void RangeQuery(const std::string& project_id, size_t limit,
                  std::vector<int64_t>* priorities) override {
    sqlite3_bind_text(range_.get(), 1, project_id.data(), static_cast<int>(project_id.size()),
                      SQLITE_STATIC);
    sqlite3_bind_int64(range_.get(), 2, static_cast<sqlite3_int64>(limit));
    while (range_.Step()) {
      TaskDoc task = ReadTask(range_.get());
      priorities->push_back(task.priority);
    }
    range_.Reset();
  }

 private:
  static constexpr const char* kRangeSql =
      "SELECT " TASK_COLUMNS
      " FROM tasks WHERE json_extract(doc, '$.projectId') = ?1 "
      "ORDER BY json_extract(doc, '$.priority') DESC LIMIT ?2";

  void Exec(const char* sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
      std::string message = error != nullptr ? error : "unknown error";
      sqlite3_free(error);
      throw BenchError(std::string("sqlite: ") + sql + ": " + message);
    }
  }

  void Close() {
    begin_ = {};
    commit_ = {};
    rollback_ = {};
    insert_project_ = {};
    insert_task_ = {};
    get_task_ = {};
    range_ = {};
    sqlite3_close(db_);
    db_ = nullptr;
  }

  // The range query must walk the expression index, not sort: refuse to benchmark otherwise.
  void CheckRangePlan() {
    Statement plan(db_, (std::string("EXPLAIN QUERY PLAN ") + kRangeSql).c_str());
    std::string details;
    while (plan.Step()) {
      details += reinterpret_cast<const char*>(sqlite3_column_text(plan.get(), 3));
      details += "; ";
    }
    if (details.find("tasks_by_project_priority") == std::string::npos ||
        details.find("TEMP B-TREE") != std::string::npos) {
      throw BenchError("sqlite: the range query does not use its index: " + details);
    }
  }

  template <typename Fn>
  void Transaction(Fn&& fn) {
    begin_.Run();
    try {
      fn();
      commit_.Run();
    } catch (...) {
      rollback_.Run();
      throw;
    }
  }

  Id NewId() {
    uint64_t ms = static_cast<uint64_t>(NowMs());
    uint64_t stamp = std::max(ms << 16, last_stamp_ + 1);
    last_stamp_ = stamp;
    Id id;
    PutBigEndian(stamp, id.data());
    PutBigEndian(rng_(), id.data() + 8);
    return id;
  }

  static void BindId(Statement& stmt, int index, const Id& id) {
    sqlite3_bind_blob(stmt.get(), index, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
  }

  void Put(const TaskDoc& doc) {
    Id id = NewId();
    json_ = nlohmann::json{{"projectId", doc.project_id}, {"title", doc.title},
                           {"priority", doc.priority},    {"estimate", doc.estimate},
                           {"status", doc.status},        {"_creationTime", NowMs()}}
                .dump();
    BindId(insert_task_, 1, id);
    sqlite3_bind_text(insert_task_.get(), 2, json_.data(), static_cast<int>(json_.size()),
                      SQLITE_STATIC);
    insert_task_.Run();
    ids_.push_back(id);
  }

  sqlite3* db_ = nullptr;
  Statement begin_, commit_, rollback_, insert_project_, insert_task_, get_task_, range_;
  std::mt19937_64 rng_;
  uint64_t last_stamp_ = 0;
  std::vector<Id> ids_;
  std::string json_;
};

}  // namespace

std::unique_ptr<Backend> OpenSqliteBackend(const std::string& dir) {
  return std::make_unique<SqliteBackend>(dir);
}

}  // namespace stagedb_bench
