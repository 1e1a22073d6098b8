// Raw LMDB, as an application would use it without stagedb: one named database per table keyed
// by a 16-byte id (8 bytes of time-ordered counter, 8 random bytes), values Cereal-encoded
// structs, and hand-maintained secondary index databases whose keys are composite:
//   tasks.by_project_priority: projectId (16 bytes) | priority (8 bytes, big-endian, sign bit
//                              flipped) | task id (16 bytes)        -> empty
//   tasks.by_status:           status | 0x00 | task id (16 bytes)  -> empty
// Ids are time-ordered, so index ties sort by creation as in stagedb. Every commit is durable
// (LMDB's default: fsync per commit).
#include <lmdb.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <istream>
#include <ostream>
#include <random>
#include <streambuf>

#include "bench_backend.h"
#include "cereal/archives/binary.hpp"
#include "cereal/types/string.hpp"

namespace stagedb_bench {
namespace {

constexpr size_t kIdBytes = 16;
using Id = std::array<char, kIdBytes>;

struct TaskRecord {
  std::string project_id;
  std::string title;
  int64_t priority = 0;
  double estimate = 0;
  std::string status;
  double creation_time = 0;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(project_id, title, priority, estimate, status, creation_time);
  }
};

struct ProjectRecord {
  std::string name;
  double creation_time = 0;

  template <class Archive>
  void serialize(Archive& ar) {
    ar(name, creation_time);
  }
};

// Cereal archives over a std::string (writing) and a byte range (reading), each built once and
// pointed at new memory per record, so encoding and decoding copy no more than they must.
class Encoder {
 public:
  template <typename T>
  const std::string& operator()(const T& record) {
    out_.clear();
    archive_(record);
    return out_;
  }

 private:
  class Sink : public std::streambuf {
   public:
    explicit Sink(std::string* out) : out_(out) {}

   protected:
    std::streamsize xsputn(const char* s, std::streamsize n) override {
      out_->append(s, static_cast<size_t>(n));
      return n;
    }
    int_type overflow(int_type c) override {
      if (c != traits_type::eof()) out_->push_back(static_cast<char>(c));
      return traits_type::not_eof(c);
    }

   private:
    std::string* out_;
  };

  std::string out_;
  Sink sink_{&out_};
  std::ostream stream_{&sink_};
  cereal::BinaryOutputArchive archive_{stream_};
};

class Decoder {
 public:
  template <typename T>
  void operator()(const MDB_val& val, T* record) {
    source_.Point(val.mv_data, val.mv_size);
    stream_.clear();
    archive_(*record);
  }

 private:
  class Source : public std::streambuf {
   public:
    void Point(const void* data, size_t size) {
      char* p = static_cast<char*>(const_cast<void*>(data));
      setg(p, p, p + size);
    }
  };

  Source source_;
  std::istream stream_{&source_};
  cereal::BinaryInputArchive archive_{stream_};
};

void Check(int rc, const char* what) {
  if (rc != MDB_SUCCESS) throw BenchError(std::string("lmdb: ") + what + ": " + mdb_strerror(rc));
}

MDB_val Val(const void* data, size_t size) { return MDB_val{size, const_cast<void*>(data)}; }
MDB_val Val(const std::string& s) { return Val(s.data(), s.size()); }

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

// Aborts a transaction that was not committed.
class Txn {
 public:
  Txn(MDB_env* env, unsigned flags) {
    Check(mdb_txn_begin(env, nullptr, flags, &txn_), "mdb_txn_begin");
  }
  ~Txn() {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  MDB_txn* get() const { return txn_; }
  void Commit() {
    MDB_txn* txn = txn_;
    txn_ = nullptr;
    Check(mdb_txn_commit(txn), "mdb_txn_commit");
  }

 private:
  MDB_txn* txn_ = nullptr;
};

class LmdbBackend : public Backend {
 public:
  explicit LmdbBackend(const std::string& dir) : rng_(std::random_device{}()) {
    Check(mdb_env_create(&env_), "mdb_env_create");
    try {
      Check(mdb_env_set_maxdbs(env_, 8), "mdb_env_set_maxdbs");
      Check(mdb_env_set_mapsize(env_, size_t{8} << 30), "mdb_env_set_mapsize");
      Check(mdb_env_open(env_, dir.c_str(), 0, 0644), "mdb_env_open");
      Txn txn(env_, 0);
      Check(mdb_dbi_open(txn.get(), "projects", MDB_CREATE, &projects_), "open projects");
      Check(mdb_dbi_open(txn.get(), "tasks", MDB_CREATE, &tasks_), "open tasks");
      Check(mdb_dbi_open(txn.get(), "tasks.by_project_priority", MDB_CREATE, &by_project_priority_),
            "open tasks.by_project_priority");
      Check(mdb_dbi_open(txn.get(), "tasks.by_status", MDB_CREATE, &by_status_),
            "open tasks.by_status");
      txn.Commit();
    } catch (...) {
      mdb_env_close(env_);
      throw;
    }
  }
  ~LmdbBackend() override { mdb_env_close(env_); }

  std::vector<std::string> CreateProjects(int n) override {
    std::vector<std::string> ids;
    Txn txn(env_, 0);
    for (int i = 0; i < n; ++i) {
      ProjectRecord project{"project-" + std::to_string(i), NowMs()};
      Id id = NewId();
      MDB_val key = Val(id.data(), id.size()), val = Val(encode_(project));
      Check(mdb_put(txn.get(), projects_, &key, &val, MDB_NOOVERWRITE), "put project");
      ids.emplace_back(id.data(), id.size());
    }
    txn.Commit();
    return ids;
  }

  void InsertBatch(std::span<const TaskDoc> docs) override {
    size_t first = ids_.size();
    try {
      Txn txn(env_, 0);
      for (const TaskDoc& doc : docs) Put(txn.get(), doc);
      txn.Commit();
    } catch (...) {
      ids_.resize(first);
      throw;
    }
  }

  void InsertOne(const TaskDoc& doc) override { InsertBatch({&doc, 1}); }

  size_t num_tasks() const override { return ids_.size(); }

  int64_t PointRead(size_t i) override {
    Txn txn(env_, MDB_RDONLY);
    MDB_val key = Val(ids_[i].data(), kIdBytes), val;
    Check(mdb_get(txn.get(), tasks_, &key, &val), "get task");
    TaskRecord task;
    decode_(val, &task);
    return task.priority;
  }

  void RangeQuery(const std::string& project_id, size_t limit,
                  std::vector<int64_t>* priorities) override {
    if (project_id.size() != kIdBytes) throw BenchError("lmdb: bad project id");
    Txn txn(env_, MDB_RDONLY);
    MDB_cursor* cursor = nullptr;
    Check(mdb_cursor_open(txn.get(), by_project_priority_, &cursor), "mdb_cursor_open");
    // Start after the last key with this project prefix, and walk backwards.
    std::string seek = project_id + std::string(1, '\xFF');
    MDB_val key = Val(seek), val;
    int rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
    rc = mdb_cursor_get(cursor, &key, &val, rc == MDB_NOTFOUND ? MDB_LAST : MDB_PREV);
    TaskRecord task;
    size_t n = 0;
    while (rc == MDB_SUCCESS && n < limit && key.mv_size == 2 * kIdBytes + 8 &&
           std::memcmp(key.mv_data, project_id.data(), kIdBytes) == 0) {
      MDB_val id = Val(static_cast<const char*>(key.mv_data) + kIdBytes + 8, kIdBytes), doc;
      int get_rc = mdb_get(txn.get(), tasks_, &id, &doc);
      if (get_rc != MDB_SUCCESS) {
        mdb_cursor_close(cursor);
        Check(get_rc, "get task from index");
      }
      decode_(doc, &task);
      priorities->push_back(task.priority);
      ++n;
      rc = mdb_cursor_get(cursor, &key, &val, MDB_PREV);
    }
    mdb_cursor_close(cursor);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) Check(rc, "mdb_cursor_get");
  }

 private:
  // A new id: 8 bytes big-endian of (ms since epoch << 16 | sequence), then 8 random bytes.
  Id NewId() {
    uint64_t ms = static_cast<uint64_t>(NowMs());
    uint64_t stamp = std::max(ms << 16, last_stamp_ + 1);
    last_stamp_ = stamp;
    Id id;
    PutBigEndian(stamp, id.data());
    PutBigEndian(rng_(), id.data() + 8);
    return id;
  }

  void Put(MDB_txn* txn, const TaskDoc& doc) {
    if (doc.project_id.size() != kIdBytes) throw BenchError("lmdb: bad project id");
    Id id = NewId();
    TaskRecord task{doc.project_id, doc.title, doc.priority, doc.estimate, doc.status, NowMs()};
    MDB_val key = Val(id.data(), id.size()), val = Val(encode_(task)), empty = Val("", 0);
    Check(mdb_put(txn, tasks_, &key, &val, MDB_NOOVERWRITE), "put task");

    key_.assign(doc.project_id);
    char priority[8];
    PutBigEndian(static_cast<uint64_t>(doc.priority) ^ (uint64_t{1} << 63), priority);
    key_.append(priority, 8).append(id.data(), id.size());
    key = Val(key_);
    Check(mdb_put(txn, by_project_priority_, &key, &empty, 0), "put by_project_priority");

    key_.assign(doc.status).push_back('\0');
    key_.append(id.data(), id.size());
    key = Val(key_);
    Check(mdb_put(txn, by_status_, &key, &empty, 0), "put by_status");
    ids_.push_back(id);
  }

  MDB_env* env_ = nullptr;
  MDB_dbi projects_ = 0, tasks_ = 0, by_project_priority_ = 0, by_status_ = 0;
  std::mt19937_64 rng_;
  uint64_t last_stamp_ = 0;
  std::vector<Id> ids_;
  Encoder encode_;
  Decoder decode_;
  std::string key_;
};

}  // namespace

std::unique_ptr<Backend> OpenLmdbBackend(const std::string& dir) {
  return std::make_unique<LmdbBackend>(dir);
}

}  // namespace stagedb_bench
