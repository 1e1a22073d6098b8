// stagedb through its public API only, with an inline schema: tasks with indexes
// by_project_priority [projectId, priority] and by_status [status]; default (durable) options.
#include <stagedb/stagedb.h>

#include "bench_backend.h"

namespace stagedb_bench {
namespace {

constexpr char kSchema[] = R"json({
  "tables": {
    "projects": {
      "fields": {"name": "string"},
      "indexes": []
    },
    "tasks": {
      "fields": {
        "projectId": {"type": "id", "table": "projects"},
        "title": "string",
        "priority": "int64",
        "estimate": "number",
        "status": "string"
      },
      "indexes": [
        {"name": "by_project_priority", "fields": ["projectId", "priority"]},
        {"name": "by_status", "fields": ["status"]}
      ]
    }
  }
})json";

void Check(const absl::Status& status, const char* what) {
  if (!status.ok()) throw BenchError(std::string("stagedb: ") + what + ": " + status.ToString());
}

stagedb::Object TaskFields(const TaskDoc& doc) {
  return stagedb::Object{
      {"projectId", doc.project_id},
      {"title", doc.title},
      {"priority", stagedb::Value::Int64(doc.priority)},
      {"estimate", stagedb::Value::Float64(doc.estimate)},
      {"status", doc.status},
  };
}

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

  std::vector<std::string> CreateProjects(int n) override {
    absl::StatusOr<std::vector<std::string>> ids =
        db_->Mutate([&](stagedb::Transaction& tx) -> absl::StatusOr<std::vector<std::string>> {
          std::vector<std::string> out;
          for (int i = 0; i < n; ++i) {
            absl::StatusOr<stagedb::DocumentId> id =
                tx.Insert("projects", {{"name", "project-" + std::to_string(i)}});
            if (!id.ok()) return id.status();
            out.push_back(id->text());
          }
          return out;
        });
    Check(ids.status(), "insert projects");
    return *std::move(ids);
  }

  void InsertBatch(std::span<const TaskDoc> docs) override {
    // The function may run again on a conflict, so it starts from scratch each time.
    std::vector<stagedb::DocumentId> batch;
    absl::Status status = db_->Mutate([&](stagedb::Transaction& tx) -> absl::Status {
      batch.clear();
      for (const TaskDoc& doc : docs) {
        absl::StatusOr<stagedb::DocumentId> id = tx.Insert("tasks", TaskFields(doc));
        if (!id.ok()) return id.status();
        batch.push_back(*std::move(id));
      }
      return absl::OkStatus();
    });
    Check(status, "insert batch");
    ids_.insert(ids_.end(), std::make_move_iterator(batch.begin()),
                std::make_move_iterator(batch.end()));
  }

  void InsertOne(const TaskDoc& doc) override {
    absl::StatusOr<stagedb::DocumentId> id =
        db_->Mutate([&](stagedb::Transaction& tx) { return tx.Insert("tasks", TaskFields(doc)); });
    Check(id.status(), "insert");
    ids_.push_back(*std::move(id));
  }

  size_t num_tasks() const override { return ids_.size(); }

  int64_t PointRead(size_t i) override {
    absl::StatusOr<std::optional<stagedb::Document>> doc =
        db_->Query([&](stagedb::Reader& r) { return r.Get(ids_[i]); });
    Check(doc.status(), "get");
    if (!doc->has_value()) throw BenchError("stagedb: task not found");
    return (**doc)["priority"].as_int64();
  }

  void RangeQuery(const std::string& project_id, size_t limit,
                  std::vector<int64_t>* priorities) override {
    absl::StatusOr<std::vector<stagedb::Document>> docs = db_->Query([&](stagedb::Reader& r) {
      return r.Table("tasks")
          .WithIndex("by_project_priority", stagedb::Eq("projectId", project_id))
          .Order(stagedb::SortOrder::kDesc)
          .Take(limit);
    });
    Check(docs.status(), "range query");
    for (const stagedb::Document& doc : *docs) priorities->push_back(doc["priority"].as_int64());
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
