// stagedb through its public API only, with an inline schema (the messages of bench_backend.h,
// indexes by_session_sent [sessionId, sentAt] and by_author_kind [author, kind]) and default
// options: durable commits. Database::Mutate is thread-safe (optimistic concurrency, group
// commit), so a writer needs no state of its own.
#include <stagedb/stagedb.h>

#include "bench_backend.h"

namespace stagedb_bench {
namespace {

constexpr char kSchema[] = R"json({
  "tables": {
    "sessions": {
      "fields": {"name": "string"},
      "indexes": []
    },
    "messages": {
      "fields": {
        "sessionId": {"type": "id", "table": "sessions"},
        "author": "string",
        "kind": "string",
        "seq": "int64",
        "sentAt": "number",
        "body": "string"
      },
      "indexes": [
        {"name": "by_session_sent", "fields": ["sessionId", "sentAt"]},
        {"name": "by_author_kind", "fields": ["author", "kind"]}
      ]
    }
  }
})json";

void Check(const absl::Status& status, const char* what) {
  if (!status.ok()) throw BenchError(std::string("stagedb: ") + what + ": " + status.ToString());
}

stagedb::Object MessageFields(const MessageDoc& doc) {
  return stagedb::Object{
      {"sessionId", doc.session_id},
      {"author", doc.author},
      {"kind", doc.kind},
      {"seq", stagedb::Value::Int64(doc.seq)},
      {"sentAt", stagedb::Value::Float64(doc.sent_at)},
      {"body", doc.body},
  };
}

// Copies a document's fields into the application's struct, as a caller of stagedb would.
void ReadMessage(const stagedb::Document& from, MessageDoc* doc) {
  doc->session_id = from["sessionId"].as_string();
  doc->author = from["author"].as_string();
  doc->kind = from["kind"].as_string();
  doc->seq = from["seq"].as_int64();
  doc->sent_at = from["sentAt"].as_float64();
  doc->body = from["body"].as_string();
}

class StagedbWriter : public Writer {
 public:
  explicit StagedbWriter(stagedb::Database* db) : db_(db) {}

  void InsertOne(const MessageDoc& doc) override {
    absl::StatusOr<stagedb::DocumentId> id = db_->Mutate(
        [&](stagedb::Transaction& tx) { return tx.Insert("messages", MessageFields(doc)); });
    Check(id.status(), "insert");
  }

 private:
  stagedb::Database* db_;
};

class StagedbBackend : public Backend {
 public:
  explicit StagedbBackend(const std::string& dir) {
    stagedb::Options options;
    options.path = dir;
    options.schema_json = kSchema;
    absl::StatusOr<std::unique_ptr<stagedb::Database>> db = stagedb::Database::Open(options);
    Check(db.status(), "open");
    db_ = *std::move(db);
  }

  std::vector<std::string> CreateSessions(int n) override {
    absl::StatusOr<std::vector<std::string>> ids =
        db_->Mutate([&](stagedb::Transaction& tx) -> absl::StatusOr<std::vector<std::string>> {
          std::vector<std::string> out;
          for (int i = 0; i < n; ++i) {
            absl::StatusOr<stagedb::DocumentId> id =
                tx.Insert("sessions", {{"name", "session-" + std::to_string(i)}});
            if (!id.ok()) return id.status();
            out.push_back(id->text());
          }
          return out;
        });
    Check(ids.status(), "insert sessions");
    return *std::move(ids);
  }

  void InsertBatch(std::span<const MessageDoc> docs) override {
    // The function may run again on a conflict, so it starts from scratch each time.
    std::vector<stagedb::DocumentId> batch;
    absl::Status status = db_->Mutate([&](stagedb::Transaction& tx) -> absl::Status {
      batch.clear();
      for (const MessageDoc& doc : docs) {
        absl::StatusOr<stagedb::DocumentId> id = tx.Insert("messages", MessageFields(doc));
        if (!id.ok()) return id.status();
        batch.push_back(*std::move(id));
      }
      return absl::OkStatus();
    });
    Check(status, "insert batch");
    ids_.insert(ids_.end(), std::make_move_iterator(batch.begin()),
                std::make_move_iterator(batch.end()));
  }

  size_t num_messages() const override { return ids_.size(); }

  void PointRead(size_t i, MessageDoc* doc) override {
    absl::StatusOr<std::optional<stagedb::Document>> found =
        db_->Query([&](stagedb::Reader& r) { return r.Get(ids_[i]); });
    Check(found.status(), "get");
    if (!found->has_value()) throw BenchError("stagedb: message not found");
    ReadMessage(**found, doc);
  }

  void RangeQuery(const std::string& session_id, size_t limit,
                  std::vector<MessageDoc>* docs) override {
    absl::StatusOr<std::vector<stagedb::Document>> found = db_->Query([&](stagedb::Reader& r) {
      return r.Table("messages")
          .WithIndex("by_session_sent", stagedb::Eq("sessionId", session_id))
          .Order(stagedb::SortOrder::kDesc)
          .Take(limit);
    });
    Check(found.status(), "range query");
    for (size_t n = 0; n < found->size(); ++n) ReadMessage((*found)[n], &Slot(docs, n));
    docs->resize(found->size());
  }

  std::unique_ptr<Writer> NewWriter() override {
    return std::make_unique<StagedbWriter>(db_.get());
  }

 private:
  std::unique_ptr<stagedb::Database> db_;
  std::vector<stagedb::DocumentId> ids_;
};

}  // namespace

std::unique_ptr<Backend> OpenStagedbBackend(const std::string& dir) {
  return std::make_unique<StagedbBackend>(dir);
}

}  // namespace stagedb_bench
