// Raw LMDB, as an application would use it without stagedb: one named database per table keyed
// by a 16-byte time-ordered id (backend_util.h), values Cereal-encoded structs, and
// hand-maintained secondary index databases whose keys are compound:
//   messages.by_session_sent: sessionId (16 bytes) | sentAt (8 bytes, order-preserving)
//                             | message id (16 bytes)                      -> empty
//   messages.by_author_kind:  author | 0x00 | kind | 0x00 | message id      -> empty
// Ids are time-ordered, so index ties sort by creation as in stagedb. Every commit is durable
// (LMDB's default: fsync per commit). Session ids are the raw 16 bytes.
#include <lmdb.h>

#include <cstring>
#include <istream>
#include <ostream>
#include <streambuf>

#include "backend_util.h"
#include "bench_backend.h"
#include "cereal/archives/binary.hpp"
#include "cereal/types/string.hpp"

namespace stagedb_bench {

// Cereal's encoding of a message (found by argument-dependent lookup, so not in the anonymous
// namespace).
template <class Archive>
void serialize(Archive& ar, MessageDoc& doc) {
  ar(doc.session_id, doc.author, doc.kind, doc.seq, doc.sent_at, doc.body);
}

namespace {

// Cereal archives over a std::string (writing) and a byte range (reading), each built once and
// pointed at new memory per record, so encoding and decoding copy no more than they must.
class Encoder {
 public:
  template <typename... T>
  const std::string& operator()(const T&... fields) {
    out_.clear();
    archive_(fields...);
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
  template <typename... T>
  void operator()(const MDB_val& val, T&... fields) {
    source_.Point(val.mv_data, val.mv_size);
    stream_.clear();
    archive_(fields...);
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

// A double's bytes, big-endian, such that byte order is numeric order: positive numbers get the
// sign bit set, negative ones are inverted whole.
void PutSortableDouble(double d, char* out) {
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  constexpr uint64_t kSign = uint64_t{1} << 63;
  PutBigEndian((bits & kSign) != 0 ? ~bits : bits | kSign, out);
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

// The environment and its databases, shared by the backend and its writers.
struct Env {
  MDB_env* env = nullptr;
  MDB_dbi sessions = 0, messages = 0, by_session_sent = 0, by_author_kind = 0;
  IdGenerator ids;
};

// Writes messages with their index entries; each thread has its own (the encoder and key
// buffer are its state; LMDB itself lets one write transaction in at a time).
class LmdbWriter : public Writer {
 public:
  explicit LmdbWriter(Env* env) : env_(env) {}

  void InsertOne(const MessageDoc& doc) override {
    Txn txn(env_->env, 0);
    Put(txn.get(), doc);
    txn.Commit();
  }

  // Inserts one message into `txn` and returns its id.
  Id Put(MDB_txn* txn, const MessageDoc& doc) {
    if (doc.session_id.size() != kIdBytes) throw BenchError("lmdb: bad session id");
    Id id = env_->ids.Next();
    double creation_time = NowMs();
    MDB_val key = Val(id.data(), id.size()), val = Val(encode_(creation_time, doc));
    Check(mdb_put(txn, env_->messages, &key, &val, MDB_NOOVERWRITE), "put message");

    char sent_at[8];
    PutSortableDouble(doc.sent_at, sent_at);
    key_.assign(doc.session_id).append(sent_at, 8).append(id.data(), id.size());
    PutIndexEntry(txn, env_->by_session_sent, "put by_session_sent");

    key_.assign(doc.author).push_back('\0');
    key_.append(doc.kind).push_back('\0');
    key_.append(id.data(), id.size());
    PutIndexEntry(txn, env_->by_author_kind, "put by_author_kind");
    return id;
  }

  // A session record, encoded as the messages are.
  void PutSession(MDB_txn* txn, const Id& id, const std::string& name) {
    MDB_val key = Val(id.data(), id.size()), val = Val(encode_(name, NowMs()));
    Check(mdb_put(txn, env_->sessions, &key, &val, MDB_NOOVERWRITE), "put session");
  }

 private:
  // Puts key_ (with an empty value) into the index database `dbi`.
  void PutIndexEntry(MDB_txn* txn, MDB_dbi dbi, const char* what) {
    MDB_val key = Val(key_), empty = Val("", 0);
    Check(mdb_put(txn, dbi, &key, &empty, 0), what);
  }

  Env* env_;
  Encoder encode_;
  std::string key_;
};

// Closes a cursor when it goes out of scope.
struct CursorCloser {
  void operator()(MDB_cursor* cursor) const { mdb_cursor_close(cursor); }
};
using Cursor = std::unique_ptr<MDB_cursor, CursorCloser>;

class LmdbBackend : public Backend {
 public:
  explicit LmdbBackend(const std::string& dir) {
    Check(mdb_env_create(&env_.env), "mdb_env_create");
    try {
      Check(mdb_env_set_maxdbs(env_.env, 8), "mdb_env_set_maxdbs");
      Check(mdb_env_set_mapsize(env_.env, size_t{8} << 30), "mdb_env_set_mapsize");
      Check(mdb_env_open(env_.env, dir.c_str(), 0, 0644), "mdb_env_open");
      Txn txn(env_.env, 0);
      OpenDb(txn, "sessions", &env_.sessions);
      OpenDb(txn, "messages", &env_.messages);
      OpenDb(txn, "messages.by_session_sent", &env_.by_session_sent);
      OpenDb(txn, "messages.by_author_kind", &env_.by_author_kind);
      txn.Commit();
    } catch (...) {
      mdb_env_close(env_.env);
      throw;
    }
  }
  ~LmdbBackend() override { mdb_env_close(env_.env); }

  std::vector<std::string> CreateSessions(int n) override {
    std::vector<std::string> ids;
    Txn txn(env_.env, 0);
    for (int i = 0; i < n; ++i) {
      Id id = env_.ids.Next();
      batch_writer_.PutSession(txn.get(), id, "session-" + std::to_string(i));
      ids.emplace_back(id.data(), id.size());
    }
    txn.Commit();
    return ids;
  }

  void InsertBatch(std::span<const MessageDoc> docs) override {
    std::vector<Id> batch;
    batch.reserve(docs.size());
    Txn txn(env_.env, 0);
    for (const MessageDoc& doc : docs) batch.push_back(batch_writer_.Put(txn.get(), doc));
    txn.Commit();
    ids_.insert(ids_.end(), batch.begin(), batch.end());
  }

  size_t num_messages() const override { return ids_.size(); }

  void PointRead(size_t i, MessageDoc* doc) override {
    Txn txn(env_.env, MDB_RDONLY);
    MDB_val key = Val(ids_[i].data(), kIdBytes), val;
    Check(mdb_get(txn.get(), env_.messages, &key, &val), "get message");
    double creation_time;
    decode_(val, creation_time, *doc);
  }

  void RangeQuery(const std::string& session_id, size_t limit,
                  std::vector<MessageDoc>* docs) override {
    if (session_id.size() != kIdBytes) throw BenchError("lmdb: bad session id");
    Txn txn(env_.env, MDB_RDONLY);
    MDB_cursor* raw = nullptr;
    Check(mdb_cursor_open(txn.get(), env_.by_session_sent, &raw), "mdb_cursor_open");
    Cursor cursor(raw);
    // Start after the last key with this session prefix, and walk backwards.
    std::string seek = session_id + std::string(1, '\xFF');
    MDB_val key = Val(seek), val;
    int rc = mdb_cursor_get(raw, &key, &val, MDB_SET_RANGE);
    rc = mdb_cursor_get(raw, &key, &val, rc == MDB_NOTFOUND ? MDB_LAST : MDB_PREV);
    size_t n = 0;
    double creation_time;
    while (rc == MDB_SUCCESS && n < limit && key.mv_size == 2 * kIdBytes + 8 &&
           std::memcmp(key.mv_data, session_id.data(), kIdBytes) == 0) {
      MDB_val id = Val(static_cast<const char*>(key.mv_data) + kIdBytes + 8, kIdBytes), doc;
      Check(mdb_get(txn.get(), env_.messages, &id, &doc), "get message from index");
      decode_(doc, creation_time, Slot(docs, n++));
      rc = mdb_cursor_get(raw, &key, &val, MDB_PREV);
    }
    docs->resize(n);
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) Check(rc, "mdb_cursor_get");
  }

  std::unique_ptr<Writer> NewWriter() override { return std::make_unique<LmdbWriter>(&env_); }

 private:
  static void OpenDb(Txn& txn, const char* name, MDB_dbi* dbi) {
    Check(mdb_dbi_open(txn.get(), name, MDB_CREATE, dbi), name);
  }

  Env env_;
  LmdbWriter batch_writer_{&env_};  // InsertBatch's and CreateSessions' encoder
  std::vector<Id> ids_;
  Decoder decode_;
};

}  // namespace

std::unique_ptr<Backend> OpenLmdbBackend(const std::string& dir) {
  return std::make_unique<LmdbBackend>(dir);
}

}  // namespace stagedb_bench
