// SQLite, two ways, by one class that only their SQL tells apart:
// - sqlite-json, SQLite as a document store: per table a 16-byte id primary key and the document
//   as JSON text, with expression indexes on the fields stagedb indexes, e.g.
//     CREATE INDEX messages_by_session_sent ON messages(json_extract(doc, '$.sessionId'),
//                                                       json_extract(doc, '$.sentAt'))
//   Reads take the fields out with SQLite's own JSON operator (`->>`, one parse per row), which is
//   faster than returning the text and parsing it in C++; inserts build the text with
//   json_object().
// - sqlite-typed: the same fields as plain typed columns, with ordinary compound indexes.
// Both tables are WITHOUT ROWID, so rows are clustered by id as in LMDB. Session ids are 32-digit
// hex text in both (a JSON document can only hold text; the typed table keeps the same form).
//
// Tuned as a user who cares would: WAL with synchronous=FULL (each commit is durable, as in LMDB
// and stagedb), a 256 MiB page cache, memory-mapped reads, a busy timeout so that connections
// writing at once wait for each other instead of failing, one connection per writing thread.
#include <sqlite3.h>

#include <utility>

#include "backend_util.h"
#include "bench_backend.h"

namespace stagedb_bench {
namespace {

// What tells the two variants apart. Parameters and result columns are the same in both:
//   insert_session   ?1 id, ?2 name, ?3 creation time (ms)
//   insert_message   ?1 id, ?2 sessionId, ?3 author, ?4 kind, ?5 seq, ?6 sentAt, ?7 body,
//                    ?8 creation time (ms)
//   get_message      ?1 id                    -> sessionId, author, kind, seq, sentAt, body
//   newest           ?1 sessionId, ?2 limit   -> the same columns, by sentAt descending
struct SqliteSql {
  const char* create;  // the tables and indexes, several statements
  const char* insert_session;
  const char* insert_message;
  const char* get_message;
  const char* newest;
};

// The index `newest` must walk (checked with EXPLAIN QUERY PLAN).
constexpr char kSessionIndex[] = "messages_by_session_sent";

#define JSON_COLUMNS                                                               \
  "doc ->> '$.sessionId', doc ->> '$.author', doc ->> '$.kind', doc ->> '$.seq', " \
  "doc ->> '$.sentAt', doc ->> '$.body'"

constexpr SqliteSql kJsonSql = {
    .create =
        "CREATE TABLE sessions (id BLOB PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE messages (id BLOB PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID;"
        "CREATE INDEX messages_by_session_sent ON messages("
        "  json_extract(doc, '$.sessionId'), json_extract(doc, '$.sentAt'));"
        "CREATE INDEX messages_by_author_kind ON messages("
        "  json_extract(doc, '$.author'), json_extract(doc, '$.kind'));",
    .insert_session =
        "INSERT INTO sessions (id, doc) VALUES (?1, json_object('name', ?2, '_creationTime', ?3))",
    .insert_message =
        "INSERT INTO messages (id, doc) VALUES (?1, json_object('sessionId', ?2, 'author', ?3, "
        "'kind', ?4, 'seq', ?5, 'sentAt', ?6, 'body', ?7, '_creationTime', ?8))",
    .get_message = "SELECT " JSON_COLUMNS " FROM messages WHERE id = ?1",
    .newest = "SELECT " JSON_COLUMNS
              " FROM messages WHERE json_extract(doc, '$.sessionId') = ?1"
              " ORDER BY json_extract(doc, '$.sentAt') DESC LIMIT ?2",
};

#undef JSON_COLUMNS

constexpr SqliteSql kTypedSql = {
    .create =
        "CREATE TABLE sessions (id BLOB PRIMARY KEY, name TEXT NOT NULL,"
        "  creation_time REAL NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE messages (id BLOB PRIMARY KEY, session_id TEXT NOT NULL,"
        "  author TEXT NOT NULL, kind TEXT NOT NULL, seq INTEGER NOT NULL, sent_at REAL NOT NULL,"
        "  body TEXT NOT NULL, creation_time REAL NOT NULL) WITHOUT ROWID;"
        "CREATE INDEX messages_by_session_sent ON messages(session_id, sent_at);"
        "CREATE INDEX messages_by_author_kind ON messages(author, kind);",
    .insert_session = "INSERT INTO sessions (id, name, creation_time) VALUES (?1, ?2, ?3)",
    .insert_message =
        "INSERT INTO messages (id, session_id, author, kind, seq, sent_at, body, creation_time)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    .get_message =
        "SELECT session_id, author, kind, seq, sent_at, body FROM messages WHERE id = ?1",
    .newest =
        "SELECT session_id, author, kind, seq, sent_at, body FROM messages"
        " WHERE session_id = ?1 ORDER BY sent_at DESC LIMIT ?2",
};

// One connection, opened and tuned. Closed with sqlite3_close_v2, which waits for the last of
// its statements to be finalized, so statements and connection may go in any order.
class Connection {
 public:
  explicit Connection(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
      std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close_v2(db_);
      throw BenchError("sqlite: opening " + path + ": " + message);
    }
    try {
      sqlite3_busy_timeout(db_, 10'000);  // ms; first, so that the pragmas wait too
      Exec("PRAGMA journal_mode=WAL");
      Exec("PRAGMA synchronous=FULL");
      Exec("PRAGMA cache_size=-262144");    // KiB: 256 MiB
      Exec("PRAGMA mmap_size=1073741824");  // 1 GiB: more than the whole database
    } catch (...) {
      sqlite3_close_v2(db_);
      throw;
    }
  }
  ~Connection() { sqlite3_close_v2(db_); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* get() const { return db_; }

  void Exec(const char* sql) {
    char* error = nullptr;
    if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
      std::string message = error != nullptr ? error : "unknown error";
      sqlite3_free(error);
      throw BenchError(std::string("sqlite: ") + sql + ": " + message);
    }
  }

 private:
  sqlite3* db_ = nullptr;
};

class Statement {
 public:
  Statement() = default;
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) {
      throw BenchError(std::string("sqlite: preparing ") + sql + ": " + sqlite3_errmsg(db));
    }
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(Statement&& other) noexcept
      : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)) {}
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

  void BindId(int index, const Id& id) {
    sqlite3_bind_blob(stmt_, index, id.data(), static_cast<int>(id.size()), SQLITE_STATIC);
  }
  void BindText(int index, const std::string& text) {
    sqlite3_bind_text(stmt_, index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
  }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

void AssignText(sqlite3_stmt* stmt, int column, std::string* out) {
  const unsigned char* text = sqlite3_column_text(stmt, column);
  if (text == nullptr) throw BenchError("sqlite: a document field is missing");
  out->assign(reinterpret_cast<const char*>(text),
              static_cast<size_t>(sqlite3_column_bytes(stmt, column)));
}

// Decodes the current row of a get_message or newest statement.
void ReadMessage(sqlite3_stmt* stmt, MessageDoc* doc) {
  AssignText(stmt, 0, &doc->session_id);
  AssignText(stmt, 1, &doc->author);
  AssignText(stmt, 2, &doc->kind);
  doc->seq = sqlite3_column_int64(stmt, 3);
  doc->sent_at = sqlite3_column_double(stmt, 4);
  AssignText(stmt, 5, &doc->body);
}

// Inserts messages through a connection of its own.
class SqliteWriter : public Writer {
 public:
  SqliteWriter(const std::string& path, const SqliteSql& sql, IdGenerator* ids)
      : connection_(path), insert_(connection_.get(), sql.insert_message), ids_(ids) {}

  // Autocommit: the INSERT is its own transaction.
  void InsertOne(const MessageDoc& doc) override { Put(doc); }

  // Inserts one message (in the connection's transaction, if one is open) and returns its id.
  Id Put(const MessageDoc& doc) {
    Id id = ids_->Next();
    insert_.BindId(1, id);
    insert_.BindText(2, doc.session_id);
    insert_.BindText(3, doc.author);
    insert_.BindText(4, doc.kind);
    sqlite3_bind_int64(insert_.get(), 5, doc.seq);
    sqlite3_bind_double(insert_.get(), 6, doc.sent_at);
    insert_.BindText(7, doc.body);
    sqlite3_bind_double(insert_.get(), 8, NowMs());
    insert_.Run();
    return id;
  }

  Connection& connection() { return connection_; }

 private:
  Connection connection_;
  Statement insert_;
  IdGenerator* ids_;
};

class SqliteBackend : public Backend {
 public:
  SqliteBackend(const std::string& dir, const SqliteSql& sql)
      : path_(dir + "/messages.sqlite"), sql_(sql) {
    Connection(path_).Exec(sql.create);
    main_ = std::make_unique<SqliteWriter>(path_, sql_, &ids_);
    sqlite3* db = main_->connection().get();
    begin_ = Statement(db, "BEGIN");
    commit_ = Statement(db, "COMMIT");
    rollback_ = Statement(db, "ROLLBACK");
    insert_session_ = Statement(db, sql.insert_session);
    get_message_ = Statement(db, sql.get_message);
    newest_ = Statement(db, sql.newest);
    CheckNewestPlan();
  }

  std::vector<std::string> CreateSessions(int n) override {
    std::vector<std::string> ids;
    Transaction([&] {
      for (int i = 0; i < n; ++i) {
        Id id = ids_.Next();
        std::string name = "session-" + std::to_string(i);
        insert_session_.BindId(1, id);
        insert_session_.BindText(2, name);
        sqlite3_bind_double(insert_session_.get(), 3, NowMs());
        insert_session_.Run();
        ids.push_back(Hex(id));
      }
    });
    return ids;
  }

  void InsertBatch(std::span<const MessageDoc> docs) override {
    std::vector<Id> batch;
    batch.reserve(docs.size());
    Transaction([&] {
      for (const MessageDoc& doc : docs) batch.push_back(main_->Put(doc));
    });
    message_ids_.insert(message_ids_.end(), batch.begin(), batch.end());
  }

  size_t num_messages() const override { return message_ids_.size(); }

  // Autocommit: each SELECT is its own read transaction.
  void PointRead(size_t i, MessageDoc* doc) override {
    get_message_.BindId(1, message_ids_[i]);
    if (!get_message_.Step()) {
      get_message_.Reset();
      throw BenchError("sqlite: message not found");
    }
    ReadMessage(get_message_.get(), doc);
    get_message_.Reset();
  }

  void RangeQuery(const std::string& session_id, size_t limit,
                  std::vector<MessageDoc>* docs) override {
    newest_.BindText(1, session_id);
    sqlite3_bind_int64(newest_.get(), 2, static_cast<sqlite3_int64>(limit));
    size_t n = 0;
    while (newest_.Step()) ReadMessage(newest_.get(), &Slot(docs, n++));
    newest_.Reset();
    docs->resize(n);
  }

  std::unique_ptr<Writer> NewWriter() override {
    return std::make_unique<SqliteWriter>(path_, sql_, &ids_);
  }

  // The WAL's pages go into the database file, and the WAL is truncated to nothing.
  void Checkpoint() override { main_->connection().Exec("PRAGMA wal_checkpoint(TRUNCATE)"); }

 private:
  // The range query must walk its index, not sort: refuse to benchmark otherwise.
  void CheckNewestPlan() {
    Statement plan(main_->connection().get(),
                   (std::string("EXPLAIN QUERY PLAN ") + sql_.newest).c_str());
    std::string details;
    while (plan.Step()) {
      details += reinterpret_cast<const char*>(sqlite3_column_text(plan.get(), 3));
      details += "; ";
    }
    if (details.find(kSessionIndex) == std::string::npos ||
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

  const std::string path_;
  const SqliteSql& sql_;
  IdGenerator ids_;
  std::unique_ptr<SqliteWriter> main_;  // the connection for reads and batches
  Statement begin_, commit_, rollback_, insert_session_, get_message_, newest_;
  std::vector<Id> message_ids_;
};

}  // namespace

std::unique_ptr<Backend> OpenSqliteJsonBackend(const std::string& dir) {
  return std::make_unique<SqliteBackend>(dir, kJsonSql);
}

std::unique_ptr<Backend> OpenSqliteTypedBackend(const std::string& dir) {
  return std::make_unique<SqliteBackend>(dir, kTypedSql);
}

}  // namespace stagedb_bench
