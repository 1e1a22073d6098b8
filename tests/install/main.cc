// Uses an installed stagedb through its public header only: opens a database in a temporary
// directory with an inline schema, inserts a document and reads it back. Exits 0 on success.
#include <stagedb/stagedb.h>
#include <stdlib.h>

#include <filesystem>
#include <iostream>
#include <optional>
#include <string>

namespace {

constexpr char kSchema[] = R"json({
  "tables": {
    "notes": {
      "fields": {"title": "string", "stars": "int64"},
      "indexes": [{"name": "by_title", "fields": ["title"]}]
    }
  }
})json";

int Fail(const std::string& what) {
  std::cerr << "install consumer: " << what << "\n";
  return 1;
}

int Run(const std::string& dir) {
  stagedb::Options options;
  options.path = dir + "/db";
  options.schema_json = kSchema;
  absl::StatusOr<std::unique_ptr<stagedb::Database>> db = stagedb::Database::Open(options);
  if (!db.ok()) return Fail("open: " + db.status().ToString());

  absl::StatusOr<stagedb::DocumentId> id = (*db)->Mutate([](stagedb::Transaction& tx) {
    return tx.Insert("notes", {{"title", "hello"}, {"stars", stagedb::Value::Int64(5)}});
  });
  if (!id.ok()) return Fail("insert: " + id.status().ToString());

  absl::StatusOr<std::optional<stagedb::Document>> by_id =
      (*db)->Query([&](stagedb::Reader& r) { return r.Get(*id); });
  if (!by_id.ok()) return Fail("get: " + by_id.status().ToString());
  if (!by_id->has_value()) return Fail("get: the inserted document is missing");
  const stagedb::Document& doc = **by_id;
  if (doc.id() != *id || doc["title"] != stagedb::Value("hello") ||
      doc["stars"] != stagedb::Value::Int64(5)) {
    return Fail("get: unexpected document " + doc.ToJson());
  }

  absl::StatusOr<std::optional<stagedb::Document>> by_title = (*db)->Query([](stagedb::Reader& r) {
    return r.Table("notes").WithIndex("by_title", stagedb::Eq("title", "hello")).Unique();
  });
  if (!by_title.ok()) return Fail("query: " + by_title.status().ToString());
  if (!by_title->has_value() || (*by_title)->id() != *id) return Fail("query: wrong result");

  std::cout << "install consumer: inserted and read back " << doc.ToJson() << "\n";
  return 0;
}

}  // namespace

int main() {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "stagedb-install-consumer-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) return Fail("cannot create a temporary directory");
  int rc = Run(pattern);
  std::error_code ec;
  std::filesystem::remove_all(pattern, ec);
  return rc;
}
