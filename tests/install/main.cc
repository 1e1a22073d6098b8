// Uses an installed stagedb through its public headers only, as a user would. Built twice by
// run_install_test.sh: with find_package(stagedb) and with pkg-config. Checks the library's
// version against the headers'; opens a database in a temporary directory with an inline
// schema, inserts a document and reads it back; then opens one with the four installed app
// schema files combined (STAGEDB_SCHEMA_DIR, from the package), registers every app's functions
// and calls one function of each. Exits 0 on success.
#include <stagedb/apps/codecourier.h>
#include <stagedb/apps/collab.h>
#include <stagedb/apps/covibe.h>
#include <stagedb/apps/stage.h>
#include <stagedb/stagedb.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>

#ifndef STAGEDB_SCHEMA_DIR
#error "define STAGEDB_SCHEMA_DIR as the installed schema directory (stagedb_SCHEMA_DIR)"
#endif

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

// The runtime library is the one the headers describe.
int CheckVersion() {
  const std::string header = std::to_string(STAGEDB_VERSION_MAJOR) + "." +
                             std::to_string(STAGEDB_VERSION_MINOR) + "." +
                             std::to_string(STAGEDB_VERSION_PATCH);
  if (header != STAGEDB_VERSION_STRING || stagedb::Version() != STAGEDB_VERSION_STRING) {
    return Fail("version: headers " + header + " (" + STAGEDB_VERSION_STRING + "), library " +
                std::string(stagedb::Version()));
  }
  std::cout << "install consumer: stagedb " << stagedb::Version() << "\n";
  return 0;
}

int RunEngine(const std::string& dir) {
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

// An app library as a host uses it: its schema, its functions and one call into it.
struct App {
  std::string_view name;
  std::string_view (*schema_json)();
  absl::Status (*register_functions)(stagedb::Database& db);
  absl::Status (*call_one)(stagedb::Database& db);
};

absl::Status StatusOf(const absl::StatusOr<stagedb::Value>& result) { return result.status(); }

constexpr App kApps[] = {
    {"stage", stagedb::stage::SchemaJson,
     [](stagedb::Database& db) { return stagedb::stage::RegisterFunctions(db); },
     [](stagedb::Database& db) {
       return StatusOf(db.Call("stage:createSession", stagedb::Object{}));
     }},
    {"collab", stagedb::collab::SchemaJson,
     [](stagedb::Database& db) { return stagedb::collab::RegisterFunctions(db); },
     [](stagedb::Database& db) {
       return StatusOf(db.Call("collab:createSession",
                               stagedb::Object{{"name", "install"}, {"agentId", "consumer"}}));
     }},
    {"covibe", stagedb::covibe::SchemaJson,
     [](stagedb::Database& db) { return stagedb::covibe::RegisterFunctions(db); },
     [](stagedb::Database& db) {
       absl::StatusOr<stagedb::covibe::HealthReport> health = stagedb::covibe::Doctor(db);
       if (!health.ok()) return health.status();
       return health->status == "ok" ? absl::OkStatus()
                                     : absl::InternalError("health " + health->status);
     }},
    {"codecourier", stagedb::codecourier::SchemaJson,
     [](stagedb::Database& db) { return stagedb::codecourier::RegisterFunctions(db); },
     [](stagedb::Database& db) {
       return StatusOf(
           db.CallInternal("codecourier/users:upsertFromClerk",
                           stagedb::Object{{"clerkId", "user_1"}, {"email", "ada@example.com"}}));
     }},
};

int RunApps(const std::string& dir) {
  for (const App& app : kApps) {
    const std::filesystem::path file =
        std::filesystem::path(STAGEDB_SCHEMA_DIR) / (std::string(app.name) + ".json");
    std::ifstream in(file);
    std::stringstream text;
    text << in.rdbuf();
    if (!in || text.str() != app.schema_json()) {
      return Fail(file.string() + " is missing or differs from the library's SchemaJson()");
    }
  }
  // The installed schema files together: one database for every app.
  absl::StatusOr<std::unique_ptr<stagedb::Database>> db =
      stagedb::Database::Open({.path = dir + "/apps", .schema_dir = STAGEDB_SCHEMA_DIR});
  if (!db.ok()) return Fail("open with " STAGEDB_SCHEMA_DIR ": " + db.status().ToString());
  for (const App& app : kApps) {
    if (absl::Status s = app.register_functions(**db); !s.ok()) {
      return Fail(std::string(app.name) + ": RegisterFunctions: " + s.ToString());
    }
    if (absl::Status s = app.call_one(**db); !s.ok()) {
      return Fail(std::string(app.name) + ": call: " + s.ToString());
    }
    std::cout << "install consumer: " << app.name << " registered and called\n";
  }
  return 0;
}

}  // namespace

int main() {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "stagedb-install-consumer-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) return Fail("cannot create a temporary directory");
  int rc = CheckVersion();
  if (rc == 0) rc = RunEngine(pattern);
  if (rc == 0) rc = RunApps(pattern);
  std::error_code ec;
  std::filesystem::remove_all(pattern, ec);
  return rc;
}
