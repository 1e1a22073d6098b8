// quickstart: a tour of stagedb's public API on the example schema (schema/example.json).
//
//   quickstart [DB_DIR [SCHEMA_DIR]]
//
// DB_DIR must not exist yet or be empty (default: a fresh directory under the system temp
// directory, removed at the end). SCHEMA_DIR defaults to the repository's schema/ directory.
// Exits 0 when every step behaved as described, 1 on anything unexpected.
#include <stagedb/stagedb.h>
#include <stdlib.h>

#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#ifndef STAGEDB_SCHEMA_DIR
#define STAGEDB_SCHEMA_DIR "schema"
#endif

namespace {

namespace fs = std::filesystem;
using stagedb::Array;
using stagedb::Document;
using stagedb::DocumentId;
using stagedb::Object;
using stagedb::Reader;
using stagedb::SortOrder;
using stagedb::Transaction;
using stagedb::Value;

// Thrown on anything the tour did not expect; main prints it and exits 1.
struct Unexpected : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void Check(const absl::Status& status, std::string_view what) {
  if (!status.ok()) throw Unexpected(std::string(what) + ": " + status.ToString());
}

template <typename T>
T Check(absl::StatusOr<T> result, std::string_view what) {
  Check(result.status(), what);
  return *std::move(result);
}

void Expect(bool condition, std::string_view what) {
  if (!condition) throw Unexpected(std::string(what));
}

void Step(std::string_view title) { std::cout << "\n== " << title << "\n"; }

// A value for people: strings without quotes, int64 as a plain number.
std::string Show(const Value& value) {
  switch (value.type()) {
    case stagedb::Type::kUndefined:
      return "(missing)";
    case stagedb::Type::kString:
      return value.as_string();
    case stagedb::Type::kInt64:
      return std::to_string(value.as_int64());
    default:
      return stagedb::DebugString(value);
  }
}

void PrintTask(const Document& task) {
  std::cout << "   priority " << Show(task["priority"]) << "  " << Show(task["title"]) << " ("
            << Show(task["status"]) << ", estimate " << Show(task["estimate"]) << "h";
  if (!task["meta"].is_undefined()) std::cout << ", from " << Show(task["meta"]["source"]);
  std::cout << ")\n";
}

struct TaskSeed {
  const char* title;
  int64_t priority;
  double estimate;
  const char* status;
  std::vector<std::string> tags;
  const char* source;  // meta.source, or nullptr for no `meta` field
  const char* area;
};

const std::vector<TaskSeed>& Seeds() {
  static const auto* seeds = new std::vector<TaskSeed>{
      {"Design the landing page", 3, 5.0, "todo", {"design"}, "figma", "marketing"},
      {"Set up CI", 2, 1.5, "done", {"infra"}, nullptr, "engineering"},
      {"Write the pricing copy", 1, 2.0, "todo", {"copy"}, nullptr, "marketing"},
      {"Fix the signup form", 4, 0.5, "todo", {"bug", "frontend"}, "support", "engineering"},
      {"Add dark mode", 0, 3.0, "todo", {"frontend"}, nullptr, "engineering"},
      {"Migrate analytics", 2, 4.0, "todo", {"infra", "data"}, nullptr, "engineering"},
      {"Compress hero images", 1, 0.75, "done", {"perf"}, nullptr, "engineering"},
      {"Prepare the launch checklist", 3, 1.0, "todo", {}, nullptr, "marketing"},
  };
  return *seeds;
}

Object TaskFields(const DocumentId& project, const TaskSeed& seed) {
  Array tags;
  for (const std::string& tag : seed.tags) tags.push_back(tag);
  Object fields{
      {"projectId", project.text()},  // an id field holds the id's text
      {"title", seed.title},
      {"priority", Value::Int64(seed.priority)},  // int64: the schema says "int64"
      {"estimate", seed.estimate},                // float64: the schema says "number"
      {"status", seed.status},
      {"tags", std::move(tags)},
      // A record: any string keys, any values.
      {"labels", Object{{"area", seed.area}, {"points", Value::Int64(seed.priority * 2)}}},
  };
  if (seed.source != nullptr) fields["meta"] = Object{{"source", seed.source}};
  return fields;
}

// Every task, in creation order.
std::vector<Document> AllTasks(stagedb::Database& db) {
  return Check(db.Query([](Reader& r) { return r.Table("tasks").Collect(); }), "reading all tasks");
}

struct Seeded {
  DocumentId project;
  std::vector<DocumentId> tasks;
};

int Run(const std::string& db_dir, const std::string& schema_dir) {
  Step("1. Open a database");
  auto db = Check(stagedb::Database::Open({.path = db_dir, .schema_dir = schema_dir}),
                  "opening the database");
  std::cout << "Opened a new database in " << db_dir << "\nwith the schema files in " << schema_dir
            << " (tables `projects` and `tasks`).\n";

  Step("2. Insert a project and its tasks in one mutation");
  // The function may run more than once (on a conflict it is retried), so it only touches `tx`
  // and its own locals. If it returns an error, nothing it wrote is kept.
  stagedb::Timestamp commit_ts = 0;
  Seeded seeded = Check(
      db->Mutate(
          [&](Transaction& tx) -> absl::StatusOr<Seeded> {
            Seeded out;
            absl::StatusOr<DocumentId> project =
                tx.Insert("projects", {{"name", "Website"}, {"owner", "ada"}, {"archived", false}});
            if (!project.ok()) return project.status();
            out.project = *project;
            for (const TaskSeed& seed : Seeds()) {
              absl::StatusOr<DocumentId> task = tx.Insert("tasks", TaskFields(out.project, seed));
              if (!task.ok()) return task.status();
              out.tasks.push_back(*task);
            }
            return out;
          },
          &commit_ts),
      "inserting the project and its tasks");
  std::cout << "Inserted project \"Website\" and " << seeded.tasks.size()
            << " tasks, all in one transaction, committed at timestamp " << commit_ts << ".\n"
            << "The project's id is " << seeded.project.text()
            << " (Crockford base32: table number, time, random bits, checksum).\n";
  Expect(seeded.tasks.size() == Seeds().size(), "one id per inserted task");
  Expect(db->LastCommitTimestamp() == commit_ts, "the last commit is ours");

  std::optional<Document> first =
      Check(db->Query([&](Reader& r) { return r.Get(seeded.tasks[0]); }), "reading a task by id");
  Expect(first.has_value(), "the first task exists");
  std::cout << "One task read back by id, in stagedb's JSON form (int64 as {\"$integer\": ...};\n"
               "_id and _creationTime are system fields):\n   "
            << first->ToJson() << "\n";

  Step("3. Query an index: priority >= 2 in this project, highest first, top 3");
  absl::StatusOr<std::vector<Document>> top_or = db->Query([&](Reader& r) {
    return r.Table("tasks")
        .WithIndex("by_project_priority",
                   stagedb::Eq("projectId", seeded.project.text()).Gte("priority", Value::Int64(2)))
        .Order(SortOrder::kDesc)
        .Take(3);
  });
  std::vector<Document> top = Check(std::move(top_or), "querying by_project_priority");
  std::cout << "Index by_project_priority = [projectId, priority] (then _creationTime, _id):\n";
  for (const Document& task : top) PrintTask(task);
  Expect(top.size() == 3, "three tasks with priority >= 2");
  for (size_t i = 0; i < top.size(); ++i) {
    Expect(top[i]["priority"].as_int64() >= 2, "priority >= 2");
    if (i > 0) {
      Expect(top[i - 1]["priority"].as_int64() >= top[i]["priority"].as_int64(), "descending");
    }
  }
  std::cout << "Ties in priority come latest-created first: descending order reverses the whole\n"
               "index key, and every index ends with _creationTime.\n";

  Step("4. Paginate all tasks, 3 per page");
  // Each page is its own query, as it would be for a client asking page after page; the cursor
  // is opaque and only valid for the same query.
  std::optional<std::string> cursor;
  size_t seen = 0;
  for (int page_number = 1;; ++page_number) {
    Expect(page_number <= 10, "pagination ends");
    absl::StatusOr<stagedb::PaginationResult> page_or = db->Query(
        [&](Reader& r) { return r.Table("tasks").Paginate({.num_items = 3, .cursor = cursor}); });
    stagedb::PaginationResult page = Check(std::move(page_or), "reading a page of tasks");
    std::cout << "Page " << page_number << " (" << page.page.size() << " tasks"
              << (page.is_done ? ", the last page" : "") << "):\n";
    for (const Document& task : page.page) PrintTask(task);
    seen += page.page.size();
    if (page.is_done) break;
    cursor = page.continue_cursor;
  }
  std::cout << "Saw " << seen << " tasks in all.\n";
  Expect(seen == Seeds().size(), "pagination returns every task exactly once");

  Step("5. Patch a task: set a field and remove one");
  const DocumentId& signup_task = seeded.tasks[3];  // "Fix the signup form", has `meta`
  absl::Status patch = db->Mutate([&](Transaction& tx) {
    return tx.Patch(signup_task, {{"status", "done"}, {"meta", stagedb::Undefined{}}});
  });
  Check(patch, "patching a task");
  std::optional<Document> patched =
      Check(db->Query([&](Reader& r) { return r.Get(signup_task); }), "reading the patched task");
  Expect(patched.has_value(), "the patched task exists");
  std::cout << "Patched \"Fix the signup form\": status set to done, and `meta` removed by\n"
               "passing stagedb::Undefined{} (an optional field may be missing). Now:\n";
  PrintTask(*patched);
  Expect(Show((*patched)["status"]) == "done", "status is done");
  Expect((*patched)["meta"].is_undefined(), "meta is gone");

  Step("6. A unique index refuses a duplicate");
  absl::StatusOr<DocumentId> duplicate = db->Mutate([&](Transaction& tx) {
    return tx.Insert("projects", {{"name", "Website"}, {"archived", false}});
  });
  Expect(!duplicate.ok(), "a second project named Website is refused");
  Expect(absl::IsAlreadyExists(duplicate.status()), "the duplicate is AlreadyExists");
  std::cout << "Inserting a second project named \"Website\" (projects.by_name is unique) fails:\n"
            << "   " << duplicate.status() << "\n";

  Step("7. The schema refuses a wrong type, and the failed mutation leaves nothing behind");
  size_t tasks_before = AllTasks(*db).size();
  absl::Status bad = db->Mutate([&](Transaction& tx) -> absl::Status {
    // A valid insert first: it must vanish with the rest of the mutation.
    TaskSeed ok_seed{"Write the changelog", 1, 1.0, "todo", {}, nullptr, "marketing"};
    absl::StatusOr<DocumentId> ok_insert = tx.Insert("tasks", TaskFields(seeded.project, ok_seed));
    if (!ok_insert.ok()) return ok_insert.status();
    // priority is declared "int64"; 5.0 is a float64, a different type in stagedb.
    Object wrong = TaskFields(seeded.project, ok_seed);
    wrong["title"] = "Priority as a float";
    wrong["priority"] = 5.0;
    return tx.Insert("tasks", std::move(wrong)).status();
  });
  Expect(!bad.ok(), "a float64 priority is refused");
  std::cout << "A mutation inserted a valid task, then one with priority 5.0 (float64, but the\n"
               "schema says int64). The insert failed with:\n   "
            << bad << "\nThe mutation returned that error, so it was rolled back whole.\n";
  std::vector<Document> tasks_after = AllTasks(*db);
  for (const Document& task : tasks_after) {
    Expect(Show(task["title"]) != "Write the changelog", "the valid insert was rolled back");
  }
  Expect(tasks_after.size() == tasks_before, "no task was added");
  absl::StatusOr<std::optional<Document>> website_or = db->Query([](Reader& r) {
    return r.Table("projects").WithIndex("by_name", stagedb::Eq("name", "Website")).Unique();
  });
  std::optional<Document> website = Check(std::move(website_or), "looking up the project by name");
  Expect(website.has_value() && website->id() == seeded.project, "exactly one Website project");
  std::cout << "Still " << tasks_after.size()
            << " tasks, no \"Write the changelog\", and exactly one project named Website.\n";

  Step("8. What a query read: its read set");
  absl::StatusOr<std::string> read_set_or =
      db->Query([&](Reader& r) -> absl::StatusOr<std::string> {
        absl::StatusOr<std::vector<Document>> docs =
            r.Table("tasks")
                .WithIndex("by_project_priority", stagedb::Eq("projectId", seeded.project.text())
                                                      .Gte("priority", Value::Int64(2)))
                .Order(SortOrder::kDesc)
                .Take(3);
        if (!docs.ok()) return docs.status();
        absl::StatusOr<std::optional<Document>> project = r.Get(seeded.project);
        if (!project.ok()) return project.status();
        return r.read_set().DebugString();
      });
  std::string read_set = Check(std::move(read_set_or), "reading a read set");
  std::cout << "The query of step 3 plus a get of the project by id depended on exactly these\n"
               "key ranges (a scan records only the part it consumed; a get records one key):\n"
            << read_set << (read_set.empty() || read_set.back() != '\n' ? "\n" : "")
            << "A commit that writes outside these ranges cannot change this result.\n";
  Expect(!read_set.empty(), "the read set is not empty");

  Step("Done");
  std::cout << "Every step behaved as described. Last commit timestamp: "
            << db->LastCommitTimestamp() << ".\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string schema_dir = argc > 2 ? argv[2] : STAGEDB_SCHEMA_DIR;
  std::string db_dir;
  bool remove_at_end = false;
  std::error_code ec;
  if (argc > 1) {
    db_dir = argv[1];
    if (fs::exists(db_dir, ec) && !fs::is_empty(db_dir, ec)) {
      std::cerr << "quickstart: " << db_dir
                << " is not empty; give a new or empty directory (the tour expects an empty "
                   "database)\n";
      return 2;
    }
  } else {
    std::string pattern = (fs::temp_directory_path(ec) / "stagedb-quickstart-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      std::cerr << "quickstart: cannot create a temporary directory from " << pattern << "\n";
      return 1;
    }
    db_dir = pattern;
    remove_at_end = true;
  }

  int rc = 1;
  try {
    rc = Run(db_dir, schema_dir);
  } catch (const Unexpected& e) {
    std::cerr << "\nquickstart: UNEXPECTED: " << e.what() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "\nquickstart: exception: " << e.what() << "\n";
  }
  if (remove_at_end) fs::remove_all(db_dir, ec);
  return rc;
}
