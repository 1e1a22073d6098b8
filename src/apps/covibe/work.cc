// Covibe's work functions: preflight checks, tasks (planned, started, status changes),
// workstreams (matched or auto-created), overlap warnings between active tasks, work events.
// Every step that changes work state is one mutation made of the helpers below.
#include <algorithm>
#include <cctype>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "apps/common/text.h"
#include "apps/covibe/internal.h"
#include "stagedb/secrets.h"

namespace stagedb::covibe {

namespace {
std::string_view NormalizedView(std::string_view path) {
  while (path.starts_with("./")) path.remove_prefix(2);
  while (path.size() > 1 && path.ends_with('/')) path.remove_suffix(1);
  return path;
}
}  // namespace

bool PathsOverlap(std::string_view a, std::string_view b) {
  a = NormalizedView(a);
  b = NormalizedView(b);
  if (a.size() > b.size()) std::swap(a, b);
  return b.starts_with(a) && (a.size() == b.size() || b[a.size()] == '/');
}

namespace internal {
namespace {

constexpr std::string_view kTaskTypes[] = {"feature", "bug",  "refactor", "chore",
                                           "docs",    "test", "spike"};
constexpr std::string_view kTaskTextFields[] = {"title", "repo",   "branch",    "description",
                                                "scope", "action", "component", "priority"};

// The arguments that describe a task (planTask, startTask; all optional in updatePlannedTask).
constexpr const char* kTaskDescription = R"(
    "task_type": {"type": "optional", "of": "string"},
    "branch": {"type": "optional", "of": "string"},
    "description": {"type": "optional", "of": "string"},
    "scope": {"type": "optional", "of": "string"},
    "action": {"type": "optional", "of": "string"},
    "component": {"type": "optional", "of": "string"},
    "priority": {"type": "optional", "of": "string"},
    "target_files": {"type": "optional", "of": {"type": "array", "items": "string"}})";
constexpr const char* kStatusLiterals = R"({"type": "union", "of": [
    {"type": "literal", "value": "planned"}, {"type": "literal", "value": "active"},
    {"type": "literal", "value": "blocked"}, {"type": "literal", "value": "done"},
    {"type": "literal", "value": "cancelled"}]})";

std::string NewTaskArgs() {
  return std::string(R"({"title": "string", "repo": "string",
      "workstream_id": {"type": "optional", "of": {"type": "id", "table": "covibe_workstreams"}},)") +
         kTaskDescription + "}";
}
std::string TaskIdArgs(std::string_view more = "") {
  return absl::StrFormat(R"({"task_id": {"type": "id", "table": "covibe_tasks"}%s})", more);
}
std::string WorkstreamIdArgs() {
  return R"({"workstream_id": {"type": "id", "table": "covibe_workstreams"}})";
}

absl::StatusOr<std::string> NormalizePath(std::string_view fn, std::string_view path) {
  const std::string_view normal = NormalizedView(path);
  std::string problem;
  if (normal.empty() || normal == "." || normal == "/") {
    problem = "is empty";
  } else if (normal.starts_with('/')) {
    problem = "must be relative to the repository root";
  } else if (apps::Contains(normal, "//") || normal == ".." || normal.starts_with("../") ||
             apps::Contains(normal, "/../") || normal.ends_with("/..") ||
             apps::Contains(normal, "/./")) {
    problem = "must be a normalized path (no empty, '.' or '..' segments)";
  }
  if (problem.empty()) return std::string(normal);
  return BadArg(fn, "target_files", absl::StrFormat("\"%s\" %s", path, problem));
}

// The task_type argument: required for a registration (no default).
absl::StatusOr<std::optional<std::string>> TaskTypeArg(std::string_view fn, const Value& args,
                                                       bool required) {
  const Value& type = args["task_type"];
  if (!type.is_string()) {
    if (!required) return std::nullopt;
    return BadArg(
        fn, "task_type",
        absl::StrFormat("is required (one of %s); there is no default", apps::Join(kTaskTypes)));
  }
  if (std::find(std::begin(kTaskTypes), std::end(kTaskTypes), type.as_string()) ==
      std::end(kTaskTypes)) {
    return BadArg(fn, "task_type",
                  absl::StrFormat("\"%s\" is not a task type (one of %s)", type.as_string(),
                                  apps::Join(kTaskTypes)));
  }
  return type.as_string();
}

// Sets the task fields the arguments give on `fields`; returns the names set. `registration`:
// task_type is required.
absl::StatusOr<std::vector<std::string>> ApplyTaskArgs(std::string_view fn, const Value& args,
                                                       bool registration, Object& fields) {
  std::vector<std::string> set;
  for (std::string_view name : kTaskTextFields) {
    if (!args[name].is_string()) continue;
    if ((name == "title" || name == "repo") && args[name].as_string().empty()) {
      return BadArg(fn, name, "must not be empty");
    }
    fields[name] = args[name];
    set.emplace_back(name);
  }
  absl::StatusOr<std::optional<std::string>> type = TaskTypeArg(fn, args, registration);
  if (!type.ok()) return type.status();
  if (type->has_value()) {
    fields["task_type"] = **type;
    set.emplace_back("task_type");
  }
  if (args["target_files"].is_array()) {
    std::set<std::string> files;
    for (const std::string& path : StringsArg(args, "target_files")) {
      absl::StatusOr<std::string> normal = NormalizePath(fn, path);
      if (!normal.ok()) return normal.status();
      files.insert(*std::move(normal));
    }
    fields["target_files_json"] = StringsJson({files.begin(), files.end()});
    set.emplace_back("target_files");
  }
  return set;
}

absl::StatusOr<std::vector<std::string>> TaskFiles(const Document& task) {
  return ParseStrings(
      task["target_files_json"].as_string(),
      absl::StrFormat("table \"covibe_tasks\" field \"target_files_json\" of \"%s\"",
                      task.id().text()));
}

// Lowercase words of three or more letters or digits: what workstream matching compares.
std::set<std::string> Words(std::initializer_list<Value> texts) {
  std::set<std::string> words;
  for (const Value& text : texts) {
    if (!text.is_string()) continue;
    std::string word;
    for (char c : text.as_string() + " ") {
      if (std::isalnum(static_cast<unsigned char>(c))) {
        word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      } else {
        if (word.size() >= 3) words.insert(word);
        word.clear();
      }
    }
  }
  return words;
}

std::string TitleKey(const Value& title) {
  std::string key;
  for (const std::string& word : Words({title})) key += (key.empty() ? "" : "-") + word;
  return key;
}

// FailedPrecondition unless the caller ran a preflight check within the window.
absl::Status RequirePreflight(Reader& db, const Caller& caller, const Env& env,
                              std::string_view fn) {
  const absl::Duration window = env.options.preflight_window;
  const double since = env.NowMs() - absl::ToDoubleMilliseconds(window);
  absl::StatusOr<std::optional<Document>> check =
      db.Table("covibe_preflight_checks")
          .WithIndex("by_developer_created", Eq("workspace_id", Value(caller.workspace_id))
                                                 .Eq("developer_id", Value(caller.developer_id))
                                                 .Gte("created_at", Value(since)))
          .First();
  if (!check.ok()) return check.status();
  if (check->has_value()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrFormat(
      "function \"%s\": table \"covibe_preflight_checks\": developer \"%s\" has no preflight "
      "check in the last %s; call covibe:preflight first",
      fn, caller.developer_id, absl::FormatDuration(window)));
}

struct Overlap {
  Document task;
  std::vector<std::string> files;  // the overlapping paths (the more specific of each pair)
};

// The active tasks of the caller's workspace in `repo` (but `exclude`) whose target files
// overlap `files`.
absl::StatusOr<std::vector<Overlap>> FindOverlaps(Reader& db, const Caller& caller,
                                                  const Value& repo,
                                                  const std::vector<std::string>& files,
                                                  std::string_view exclude) {
  std::vector<Overlap> overlaps;
  if (files.empty()) return overlaps;
  absl::StatusOr<std::vector<Document>> active =
      db.Table("covibe_tasks")
          .WithIndex("by_workspace_status_repo", Eq("workspace_id", Value(caller.workspace_id))
                                                     .Eq("status", "active")
                                                     .Eq("repo", repo))
          .Collect();
  if (!active.ok()) return active.status();
  for (const Document& other : *active) {
    if (other.id().text() == exclude) continue;
    absl::StatusOr<std::vector<std::string>> theirs = TaskFiles(other);
    if (!theirs.ok()) return theirs.status();
    std::set<std::string> common;
    for (const std::string& mine : files) {
      for (const std::string& their : *theirs) {
        if (PathsOverlap(mine, their)) common.insert(mine.size() >= their.size() ? mine : their);
      }
    }
    if (!common.empty()) overlaps.push_back({other, {common.begin(), common.end()}});
  }
  return overlaps;
}

absl::StatusOr<std::vector<Document>> OpenWarningsOf(Reader& db, std::string_view task) {
  std::vector<Document> open;
  for (std::string_view index : {"by_task", "by_other_task"}) {
    const std::string field = index == std::string_view("by_task") ? "task_id" : "other_task_id";
    absl::StatusOr<std::vector<Document>> found =
        db.Table("covibe_overlap_warnings")
            .WithIndex(std::string(index), Eq(field, Value(task)))
            .Filter([](const Document& w) { return w["status"].as_string() == "open"; })
            .Collect();
    if (!found.ok()) return found.status();
    open.insert(open.end(), found->begin(), found->end());
  }
  return open;
}

// Sets a task's overlap_status and keeps its workstream's in step: "warning" while any task of
// the workstream has one, "none" once none has.
absl::Status MarkOverlap(Transaction& tx, const Document& task, std::string_view status) {
  if (absl::Status s = tx.Patch(task.id(), {{"overlap_status", status}}); !s.ok()) return s;
  absl::StatusOr<DocumentId> workstream = DocumentId::Parse(task["workstream_id"].as_string());
  if (!workstream.ok()) return workstream.status();
  if (status == "warning") return tx.Patch(*workstream, {{"overlap_status", "warning"}});
  absl::StatusOr<std::optional<Document>> still_warned =
      tx.Table("covibe_tasks")
          .WithIndex("by_workstream", Eq("workstream_id", Value(*workstream)))
          .Filter([](const Document& t) { return t["overlap_status"].as_string() == "warning"; })
          .First();
  if (!still_warned.ok()) return still_warned.status();
  if (still_warned->has_value()) return absl::OkStatus();
  return tx.Patch(*workstream, {{"overlap_status", "none"}});
}

// Warns about every active task that overlaps the now-active `task_id` (once per pair while a
// warning is open): a warning row, both tasks and their workstreams marked, and feedback for
// the caller. Returns the warnings as the tool shows them.
absl::StatusOr<Array> CreateWarnings(Transaction& tx, const Caller& caller, double now,
                                     std::string_view tool, const DocumentId& task_id,
                                     std::string* feedback_type) {
  absl::StatusOr<Document> task = RequireDoc(tx, "covibe_tasks", Value(task_id));
  if (!task.ok()) return task.status();
  absl::StatusOr<std::vector<std::string>> files = TaskFiles(*task);
  if (!files.ok()) return files.status();
  absl::StatusOr<std::vector<Overlap>> overlaps =
      FindOverlaps(tx, caller, (*task)["repo"], *files, task_id.text());
  if (!overlaps.ok()) return overlaps.status();
  absl::StatusOr<std::vector<Document>> open = OpenWarningsOf(tx, task_id.text());
  if (!open.ok()) return open.status();
  Array shown;
  for (const Overlap& overlap : *overlaps) {
    const std::string other = overlap.task.id().text();
    const bool already = std::any_of(open->begin(), open->end(), [&](const Document& w) {
      return w["task_id"].as_string() == other || w["other_task_id"].as_string() == other;
    });
    if (already) continue;
    const std::string files_json = StringsJson(overlap.files);
    Object fields = caller.Scoped({{"task_id", Value(task_id)},
                                   {"other_task_id", other},
                                   {"developer_id", (*task)["developer_id"]},
                                   {"other_developer_id", overlap.task["developer_id"]},
                                   {"repo", (*task)["repo"]},
                                   {"files_json", files_json},
                                   {"status", "open"},
                                   {"created_at", now}});
    absl::StatusOr<DocumentId> warning = tx.Insert("covibe_overlap_warnings", std::move(fields));
    if (!warning.ok()) return warning.status();
    if (absl::Status s = MarkOverlap(tx, overlap.task, "warning"); !s.ok()) return s;
    const std::string message =
        absl::StrFormat("task \"%s\" overlaps active task \"%s\" of developer \"%s\" on %s",
                        (*task)["title"].as_string(), overlap.task["title"].as_string(),
                        overlap.task["developer_id"].as_string(), files_json);
    absl::Status s =
        WriteFeedback(tx, caller, now, tool, "overlap_warning", message, Value(*warning));
    if (!s.ok()) return s;
    shown.push_back(Object{{"warning_id", Value(*warning)},
                           {"other_task_id", other},
                           {"other_developer_id", overlap.task["developer_id"]},
                           {"files", Value(Array(overlap.files.begin(), overlap.files.end()))},
                           {"message", message}});
  }
  if (!shown.empty()) {
    if (absl::Status s = MarkOverlap(tx, *task, "warning"); !s.ok()) return s;
    *feedback_type = "overlap_warning";
  }
  return shown;
}

// Resolves the open warnings of a task that stopped (done, cancelled); a task left without open
// warnings goes back to overlap_status "none".
absl::Status ResolveWarnings(Transaction& tx, const Document& task, double now) {
  absl::StatusOr<std::vector<Document>> open = OpenWarningsOf(tx, task.id().text());
  if (!open.ok()) return open.status();
  std::set<std::string> others;
  for (const Document& warning : *open) {
    absl::Status s = tx.Patch(warning.id(), {{"status", "resolved"}, {"resolved_at", now}});
    if (!s.ok()) return s;
    others.insert(warning["task_id"].as_string() == task.id().text()
                      ? warning["other_task_id"].as_string()
                      : warning["task_id"].as_string());
  }
  for (const std::string& other : others) {
    absl::StatusOr<std::vector<Document>> left = OpenWarningsOf(tx, other);
    if (!left.ok()) return left.status();
    if (!left->empty()) continue;
    absl::StatusOr<Document> doc = RequireDoc(tx, "covibe_tasks", Value(other));
    if (!doc.ok()) return doc.status();
    if (absl::Status s = MarkOverlap(tx, *doc, "none"); !s.ok()) return s;
  }
  return open->empty() ? absl::OkStatus() : MarkOverlap(tx, task, "none");
}

// Marks the task for re-embedding: its content hash changes with what it says.
absl::Status Reembed(Transaction& tx, const Caller& caller, const Document& task, double now) {
  std::string text;
  for (std::string_view name :
       {"title", "description", "scope", "action", "component", "task_type", "target_files_json"}) {
    if (task[name].is_string()) text += std::string(name) + "=" + task[name].as_string() + "\n";
  }
  const std::string hash = HashToken(text).sha256_hex;
  absl::StatusOr<std::optional<Document>> existing =
      tx.Table("covibe_work_embeddings")
          .WithIndex("by_task", Eq("task_id", Value(task.id())))
          .First();
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) {
    if ((**existing)["workstream_id"] != task["workstream_id"]) {
      absl::Status s = tx.Patch((*existing)->id(), {{"workstream_id", task["workstream_id"]}});
      if (!s.ok()) return s;
    }
    if ((**existing)["content_hash"].as_string() == hash) return absl::OkStatus();
    return tx.Patch((*existing)->id(), {{"content_hash", hash},
                                        {"status", "pending"},
                                        {"vector_json", Value(Undefined{})},
                                        {"updated_at", now}});
  }
  Object fields = caller.Scoped({{"task_id", Value(task.id())},
                                 {"workstream_id", task["workstream_id"]},
                                 {"content_hash", hash},
                                 {"status", "pending"},
                                 {"created_at", now},
                                 {"updated_at", now}});
  return tx.Insert("covibe_work_embeddings", std::move(fields)).status();
}

// The workstream `id` names, unless it is finished (done or cancelled): FailedPrecondition
// naming table, workstream and status then.
absl::StatusOr<Document> RequireOpenWorkstream(Reader& db, std::string_view fn, const Value& id) {
  absl::StatusOr<Document> ws = RequireDoc(db, "covibe_workstreams", id);
  if (!ws.ok()) return ws;
  const std::string& status = (*ws)["status"].as_string();
  if (status == "done" || status == "cancelled") {
    return absl::FailedPreconditionError(absl::StrFormat(
        "function \"%s\": table \"covibe_workstreams\" field \"status\": workstream \"%s\" is %s",
        fn, ws->id().text(), status));
  }
  return ws;
}

struct ResolvedWorkstream {
  DocumentId id;
  bool auto_created = false;
};

// The workstream a new task joins: the one it names (which must be open), else the caller's
// best matching active workstream of the same repo (most words in common between the task's
// title, scope and component and the workstream's title and scope; ties: the most recently
// updated), else a new auto-created one.
absl::StatusOr<ResolvedWorkstream> ResolveWorkstream(Transaction& tx, const Caller& caller,
                                                     double now, std::string_view fn,
                                                     const Value& args, const Object& task) {
  if (args["workstream_id"].is_string()) {
    absl::StatusOr<Document> named = RequireOpenWorkstream(tx, fn, args["workstream_id"]);
    if (!named.ok()) return named.status();
    return ResolvedWorkstream{named->id(), false};
  }
  const Value title = task.find("title")->second;
  const Value scope = task.contains("scope") ? task.find("scope")->second : Value(Undefined{});
  const Value component =
      task.contains("component") ? task.find("component")->second : Value(Undefined{});
  const std::set<std::string> wanted = Words({title, scope, component});
  absl::StatusOr<std::vector<Document>> candidates =
      tx.Table("covibe_workstreams")
          .WithIndex("by_workspace_owner_status", Eq("workspace_id", Value(caller.workspace_id))
                                                      .Eq("owner_id", Value(caller.developer_id))
                                                      .Eq("status", "active"))
          .Collect();
  if (!candidates.ok()) return candidates.status();
  const Document* best = nullptr;
  size_t best_score = 0;
  for (const Document& candidate : *candidates) {
    if (candidate["repo"] != task.find("repo")->second) continue;
    const std::set<std::string> have = Words({candidate["title"], candidate["scope"]});
    const size_t score = std::count_if(wanted.begin(), wanted.end(),
                                       [&](const std::string& w) { return have.contains(w); });
    if (score > best_score ||
        (score == best_score && score > 0 &&
         candidate["updated_at"].as_float64() >= (*best)["updated_at"].as_float64())) {
      best = &candidate;
      best_score = score;
    }
  }
  if (best != nullptr) return ResolvedWorkstream{best->id(), false};
  Object fields = caller.Scoped({{"owner_id", caller.developer_id},
                                 {"title", title},
                                 {"scope", scope},
                                 {"status", "active"},
                                 {"overlap_status", "none"},
                                 {"auto_created", true},
                                 {"repo", task.find("repo")->second},
                                 {"started_at", now},
                                 {"completed_at", nullptr},
                                 {"created_at", now},
                                 {"updated_at", now}});
  absl::StatusOr<DocumentId> created = tx.Insert("covibe_workstreams", std::move(fields));
  if (!created.ok()) return created.status();
  absl::Status s = WriteWorkEvent(tx, caller, now, "workstream.auto_created", Value(Undefined{}),
                                  Value(*created), title.as_string(), Object{}, args["session_id"]);
  if (!s.ok()) return s;
  return ResolvedWorkstream{*created, true};
}

// planTask and startTask: a new task, planned or active (after its preflight), in a resolved
// workstream; an active one is checked for overlaps.
absl::StatusOr<Value> RegisterTask(MutationContext& ctx, const Env& env, const Caller& caller,
                                   std::string_view fn, const Value& args, bool start,
                                   std::string* feedback) {
  Transaction& tx = ctx.db();
  const double now = env.NowMs();
  Object task = caller.Scoped({});
  absl::StatusOr<std::vector<std::string>> set = ApplyTaskArgs(fn, args, true, task);
  if (!set.ok()) return set.status();
  if (start) {
    if (absl::Status s = RequirePreflight(tx, caller, env, fn); !s.ok()) return s;
  }
  absl::StatusOr<ResolvedWorkstream> workstream =
      ResolveWorkstream(tx, caller, now, fn, args, task);
  if (!workstream.ok()) return workstream.status();
  task.emplace("target_files_json", "[]");  // kept when the arguments named files
  for (auto& [name, value] : Object{{"developer_id", caller.developer_id},
                                    {"session_id", args["session_id"]},
                                    {"workstream_id", Value(workstream->id)},
                                    {"status", start ? "active" : "planned"},
                                    {"overlap_status", "none"},
                                    {"started_at", start ? Value(now) : Value(nullptr)},
                                    {"completed_at", nullptr},
                                    {"created_at", now},
                                    {"updated_at", now}}) {
    task[name] = value;
  }
  const Value title = task["title"];
  absl::StatusOr<DocumentId> id = tx.Insert("covibe_tasks", std::move(task));
  if (!id.ok()) return id.status();
  Array warnings;
  if (start) {
    absl::StatusOr<Array> created = CreateWarnings(tx, caller, now, fn, *id, feedback);
    if (!created.ok()) return created.status();
    warnings = *std::move(created);
  } else {
    absl::StatusOr<Document> doc = RequireDoc(tx, "covibe_tasks", Value(*id));
    if (!doc.ok()) return doc.status();
    if (absl::Status s = Reembed(tx, caller, *doc, now); !s.ok()) return s;
  }
  absl::Status s = WriteWorkEvent(
      tx, caller, now, start ? "task.started" : "task.planned", Value(*id), Value(workstream->id),
      title.as_string(), Object{{"warnings", Value(static_cast<int64_t>(warnings.size()))}},
      args["session_id"]);
  if (!s.ok()) return s;
  return Value(Object{{"task_id", Value(*id)},
                      {"workstream_id", Value(workstream->id)},
                      {"workstream_auto_created", workstream->auto_created},
                      {"warnings", Value(std::move(warnings))}});
}

// The caller's own task, in one of `allowed` statuses (FailedPrecondition naming the status
// otherwise).
absl::StatusOr<Document> OwnTask(Reader& db, const Caller& caller, const Value& id,
                                 std::string_view fn, const std::vector<std::string_view>& allowed,
                                 std::string_view why) {
  absl::StatusOr<Document> task = RequireDoc(db, "covibe_tasks", id);
  if (!task.ok()) return task.status();
  if (absl::Status s = RequireOwner(*task, "covibe_tasks", "developer_id", caller); !s.ok()) {
    return s;
  }
  const std::string& status = (*task)["status"].as_string();
  if (std::find(allowed.begin(), allowed.end(), status) == allowed.end()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("function \"%s\": table \"covibe_tasks\" field \"status\": task \"%s\" is "
                        "%s; %s",
                        fn, task->id().text(), status, why));
  }
  return task;
}

absl::StatusOr<Value> ActivatedResult(Transaction& tx, const Caller& caller, double now,
                                      std::string_view fn, const Document& task,
                                      const Value& session, std::string* feedback) {
  absl::StatusOr<Array> warnings = CreateWarnings(tx, caller, now, fn, task.id(), feedback);
  if (!warnings.ok()) return warnings.status();
  absl::Status s =
      WriteWorkEvent(tx, caller, now, "task.started", Value(task.id()), task["workstream_id"],
                     task["title"].as_string(),
                     Object{{"warnings", Value(static_cast<int64_t>(warnings->size()))}}, session);
  if (!s.ok()) return s;
  return Value(Object{{"task_id", Value(task.id())},
                      {"workstream_id", task["workstream_id"]},
                      {"warnings", Value(*std::move(warnings))}});
}

void RegisterPreflight(Registrar& r) {
  // The "check" step: records a preflight check (what task and workstream starts require) and
  // reports the active tasks the proposed work would overlap, without creating anything else.
  r.ToolMutation(
      {.name = "covibe:preflight", .args = R"({"title": "string",
                   "check_kind": {"type": "optional", "of": {"type": "union", "of": [
                       {"type": "literal", "value": "task"},
                       {"type": "literal", "value": "workstream"}]}},
                   "task_type": {"type": "optional", "of": "string"},
                   "repo": {"type": "optional", "of": "string"},
                   "target_files": {"type": "optional", "of": {"type": "array", "items": "string"}}})"},
      [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller,
                      std::string* feedback) -> Result {
        constexpr std::string_view fn = "covibe:preflight";
        const std::string kind =
            args["check_kind"].is_string() ? args["check_kind"].as_string() : "task";
        Object proposed;
        absl::StatusOr<std::vector<std::string>> set =
            ApplyTaskArgs(fn, args, kind == "task", proposed);
        if (!set.ok()) return set.status();
        std::vector<std::string> files;
        if (proposed.contains("target_files_json")) {
          absl::StatusOr<std::vector<std::string>> parsed =
              ParseStrings(proposed["target_files_json"].as_string(), "target_files");
          if (!parsed.ok()) return parsed.status();
          files = *std::move(parsed);
        }
        Array overlaps;
        if (args["repo"].is_string()) {
          absl::StatusOr<std::vector<Overlap>> found =
              FindOverlaps(ctx.db(), caller, args["repo"], files, "");
          if (!found.ok()) return found.status();
          for (const Overlap& o : *found) {
            overlaps.push_back(Object{{"task_id", Value(o.task.id())},
                                      {"developer_id", o.task["developer_id"]},
                                      {"title", o.task["title"]},
                                      {"files", Value(Array(o.files.begin(), o.files.end()))}});
          }
        }
        const double now = env->NowMs();
        Object check = caller.Scoped({{"developer_id", caller.developer_id},
                                      {"check_kind", kind},
                                      {"title_key", TitleKey(args["title"])},
                                      {"created_at", now}});
        absl::StatusOr<DocumentId> id =
            ctx.db().Insert("covibe_preflight_checks", std::move(check));
        if (!id.ok()) return id.status();
        if (!overlaps.empty()) {
          *feedback = "preflight_overlap";
          absl::Status s =
              WriteFeedback(ctx.db(), caller, now, fn, "preflight_overlap",
                            absl::StrFormat("\"%s\" would overlap %d active task(s)",
                                            args["title"].as_string(), overlaps.size()),
                            Value(Undefined{}));
          if (!s.ok()) return s;
        }
        return Value(Object{{"check_id", Value(*id)}, {"overlaps", Value(std::move(overlaps))}});
      });
}

void RegisterTasks(Registrar& r) {
  for (bool start : {false, true}) {
    const std::string name = start ? "covibe:startTask" : "covibe:planTask";
    r.ToolMutation({.name = name, .args = NewTaskArgs()},
                   [env = r.env(), name, start](MutationContext& ctx, const Value& args,
                                                const Caller& caller, std::string* feedback) {
                     return RegisterTask(ctx, *env, caller, name, args, start, feedback);
                   });
  }
  // The owner edits a planned task until it starts; each edit writes task.planned_updated and
  // marks the task for re-embedding. A new repo that its workstream does not cover (the
  // workstream names another repo) re-matches the workstream as a new task's would be.
  r.ToolMutation(
      {.name = "covibe:updatePlannedTask",
       .args = TaskIdArgs(absl::StrFormat(R"(, "title": {"type": "optional", "of": "string"},
                   "repo": {"type": "optional", "of": "string"}, %s)",
                                          kTaskDescription))},
      [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller,
                      std::string*) -> Result {
        constexpr std::string_view fn = "covibe:updatePlannedTask";
        absl::StatusOr<Document> task =
            OwnTask(ctx.db(), caller, args["task_id"], fn, {"planned"},
                    "planned tasks can be edited only until they start");
        if (!task.ok()) return task.status();
        Object fields = task->fields();
        absl::StatusOr<std::vector<std::string>> set = ApplyTaskArgs(fn, args, false, fields);
        if (!set.ok()) return set.status();
        if (set->empty()) return BadArg(fn, "task_id", "no field to update was given");
        const double now = env->NowMs();
        if (fields["repo"] != (*task)["repo"]) {
          absl::StatusOr<Document> ws =
              RequireDoc(ctx.db(), "covibe_workstreams", (*task)["workstream_id"]);
          if (!ws.ok()) return ws.status();
          if ((*ws)["repo"].is_string() && (*ws)["repo"] != fields["repo"]) {
            absl::StatusOr<ResolvedWorkstream> rematched =
                ResolveWorkstream(ctx.db(), caller, now, fn, args, fields);
            if (!rematched.ok()) return rematched.status();
            fields["workstream_id"] = Value(rematched->id);
          }
        }
        fields["updated_at"] = now;
        if (absl::Status s = ctx.db().Replace(task->id(), std::move(fields)); !s.ok()) return s;
        absl::StatusOr<Document> updated = RequireDoc(ctx.db(), "covibe_tasks", args["task_id"]);
        if (!updated.ok()) return updated.status();
        if (absl::Status s = Reembed(ctx.db(), caller, *updated, now); !s.ok()) return s;
        absl::Status s = WriteWorkEvent(
            ctx.db(), caller, now, "task.planned_updated", Value(task->id()),
            (*updated)["workstream_id"], (*updated)["title"].as_string(),
            Object{{"fields", Value(Array(set->begin(), set->end()))}}, args["session_id"]);
        if (!s.ok()) return s;
        return updated->ToValue();
      });
  r.ToolMutation({.name = "covibe:deletePlannedTask", .args = TaskIdArgs()},
                 [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller,
                                 std::string*) -> Result {
                   constexpr std::string_view fn = "covibe:deletePlannedTask";
                   absl::StatusOr<Document> task =
                       OwnTask(ctx.db(), caller, args["task_id"], fn, {"planned"},
                               "only planned tasks can be deleted (cancel others)");
                   if (!task.ok()) return task.status();
                   absl::StatusOr<std::optional<Document>> embedding =
                       ctx.db()
                           .Table("covibe_work_embeddings")
                           .WithIndex("by_task", Eq("task_id", Value(task->id())))
                           .First();
                   if (!embedding.ok()) return embedding.status();
                   if (embedding->has_value()) {
                     if (absl::Status s = ctx.db().Delete((*embedding)->id()); !s.ok()) return s;
                   }
                   if (absl::Status s = ctx.db().Delete(task->id()); !s.ok()) return s;
                   absl::Status s = WriteWorkEvent(
                       ctx.db(), caller, env->NowMs(), "task.planned_deleted", Value(Undefined{}),
                       (*task)["workstream_id"], (*task)["title"].as_string(),
                       Object{{"task_id", Value(task->id())}}, args["session_id"]);
                   if (!s.ok()) return s;
                   return Value(nullptr);
                 });
  // Starts a planned task with its stored task_type (after a preflight check).
  r.ToolMutation(
      {.name = "covibe:startPlannedTask", .args = TaskIdArgs()},
      [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller,
                      std::string* feedback) -> Result {
        constexpr std::string_view fn = "covibe:startPlannedTask";
        absl::StatusOr<Document> task = OwnTask(ctx.db(), caller, args["task_id"], fn, {"planned"},
                                                "only planned tasks can be started this way");
        if (!task.ok()) return task.status();
        if (!(*task)["task_type"].is_string()) {
          return absl::FailedPreconditionError(absl::StrFormat(
              "function \"%s\": table \"covibe_tasks\" field \"task_type\": task \"%s\" has none "
              "(set it with covibe:updatePlannedTask)",
              fn, task->id().text()));
        }
        absl::StatusOr<Document> ws = RequireOpenWorkstream(ctx.db(), fn, (*task)["workstream_id"]);
        if (!ws.ok()) return ws.status();
        if (absl::Status s = RequirePreflight(ctx.db(), caller, *env, fn); !s.ok()) return s;
        const double now = env->NowMs();
        absl::Status s = ctx.db().Patch(
            task->id(), {{"status", "active"}, {"started_at", now}, {"updated_at", now}});
        if (!s.ok()) return s;
        return ActivatedResult(ctx.db(), caller, now, fn, *task, args["session_id"], feedback);
      });
  // Status changes: active <-> blocked, active/blocked -> done/cancelled, planned -> cancelled.
  // A task that stops resolves its open warnings; one that becomes active again is checked for
  // overlaps.
  r.ToolMutation(
      {.name = "covibe:setTaskStatus",
       .args = TaskIdArgs(absl::StrFormat(R"(, "status": %s)", kStatusLiterals))},
      [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller,
                      std::string* feedback) -> Result {
        constexpr std::string_view fn = "covibe:setTaskStatus";
        const std::string& to = args["status"].as_string();
        std::vector<std::string_view> from = {"active"};
        if (to == "active") from = {"blocked"};
        if (to == "done") from = {"active", "blocked"};
        if (to == "cancelled") from = {"planned", "active", "blocked"};
        if (to == "planned") from = {};
        absl::StatusOr<Document> task =
            OwnTask(ctx.db(), caller, args["task_id"], fn, from,
                    absl::StrFormat("it cannot become %s (planned tasks start with "
                                    "covibe:startPlannedTask)",
                                    to));
        if (!task.ok()) return task.status();
        const double now = env->NowMs();
        Transaction& tx = ctx.db();
        const std::string was = (*task)["status"].as_string();
        absl::Status s =
            tx.Patch(task->id(), {{"status", to},
                                  {"updated_at", now},
                                  {"completed_at", to == "done" ? Value(now) : Value(nullptr)}});
        if (!s.ok()) return s;
        Value warnings = Value(Array{});
        if (to == "done" || to == "cancelled") {
          if (absl::Status s = ResolveWarnings(tx, *task, now); !s.ok()) return s;
        } else if (to == "active") {
          absl::StatusOr<Array> created = CreateWarnings(tx, caller, now, fn, task->id(), feedback);
          if (!created.ok()) return created.status();
          warnings = Value(*std::move(created));
        }
        s = WriteWorkEvent(tx, caller, now, "task.status_changed", Value(task->id()),
                           (*task)["workstream_id"], (*task)["title"].as_string(),
                           Object{{"from", was}, {"to", to}}, args["session_id"]);
        if (!s.ok()) return s;
        return Value(
            Object{{"task_id", Value(task->id())}, {"status", to}, {"warnings", warnings}});
      });
}

void RegisterWorkstreams(Registrar& r) {
  // A workstream by hand: planned (auto_created false, started_at null) or started at once
  // (which needs a preflight check).
  r.ToolMutation(
      {.name = "covibe:createWorkstream",
       .args = R"({"title": "string", "scope": {"type": "optional", "of": "string"},
                   "repo": {"type": "optional", "of": "string"},
                   "expected_duration": {"type": "optional", "of": "string"},
                   "start": {"type": "optional", "of": "boolean"}})"},
      [env = r.env()](MutationContext& ctx, const Value& args, const Caller& caller,
                      std::string*) -> Result {
        constexpr std::string_view fn = "covibe:createWorkstream";
        if (args["title"].as_string().empty()) return BadArg(fn, "title", "must not be empty");
        const bool start = args["start"].is_boolean() && args["start"].as_boolean();
        if (start) {
          if (absl::Status s = RequirePreflight(ctx.db(), caller, *env, fn); !s.ok()) return s;
        }
        const double now = env->NowMs();
        Object fields = caller.Scoped({{"owner_id", caller.developer_id},
                                       {"title", args["title"]},
                                       {"scope", args["scope"]},
                                       {"repo", args["repo"]},
                                       {"expected_duration", args["expected_duration"]},
                                       {"status", start ? "active" : "planned"},
                                       {"overlap_status", "none"},
                                       {"auto_created", false},
                                       {"started_at", start ? Value(now) : Value(nullptr)},
                                       {"completed_at", nullptr},
                                       {"created_at", now},
                                       {"updated_at", now}});
        absl::StatusOr<DocumentId> id = ctx.db().Insert("covibe_workstreams", std::move(fields));
        if (!id.ok()) return id.status();
        absl::Status s =
            WriteWorkEvent(ctx.db(), caller, now,
                           start ? "workstream.started" : "workstream.planned", Value(Undefined{}),
                           Value(*id), args["title"].as_string(), Object{}, args["session_id"]);
        if (!s.ok()) return s;
        return Value(*id);
      });
  struct Transition {
    const char* name;
    std::vector<std::string_view> from;
    const char* to;
    const char* why;
  };
  static const Transition kTransitions[] = {
      {"covibe:startWorkstream", {"planned"}, "active", "only planned workstreams start"},
      {"covibe:cancelWorkstream", {"planned"}, "cancelled", "cancel is planned-only"},
      {"covibe:completeWorkstream",
       {"active", "blocked"},
       "done",
       "only active or blocked workstreams complete"},
  };
  for (const Transition& t : kTransitions) {
    r.ToolMutation(
        {.name = t.name, .args = WorkstreamIdArgs()},
        [env = r.env(), &t](MutationContext& ctx, const Value& args, const Caller& caller,
                            std::string*) -> Result {
          absl::StatusOr<Document> ws =
              RequireDoc(ctx.db(), "covibe_workstreams", args["workstream_id"]);
          if (!ws.ok()) return ws.status();
          if (absl::Status s = RequireOwner(*ws, "covibe_workstreams", "owner_id", caller);
              !s.ok()) {
            return s;
          }
          const std::string& status = (*ws)["status"].as_string();
          if (std::find(t.from.begin(), t.from.end(), status) == t.from.end()) {
            return absl::FailedPreconditionError(absl::StrFormat(
                "function \"%s\": table \"covibe_workstreams\" field \"status\": workstream "
                "\"%s\" is %s; %s",
                t.name, ws->id().text(), status, t.why));
          }
          const std::string_view to = t.to;
          if (to == "active") {
            if (absl::Status s = RequirePreflight(ctx.db(), caller, *env, t.name); !s.ok()) {
              return s;
            }
          }
          const double now = env->NowMs();
          Object patch{{"status", to}, {"updated_at", now}};
          if (to == "active") patch["started_at"] = now;
          if (to == "done") patch["completed_at"] = now;
          if (absl::Status s = ctx.db().Patch(ws->id(), std::move(patch)); !s.ok()) return s;
          absl::Status s = WriteWorkEvent(
              ctx.db(), caller, now, "workstream." + std::string(to == "active" ? "started" : to),
              Value(Undefined{}), Value(ws->id()), (*ws)["title"].as_string(),
              Object{{"from", status}}, args["session_id"]);
          if (!s.ok()) return s;
          return Value(to);
        });
  }
}

// The optional `limit` argument of a listing: 1 to 1000, `fallback` when absent.
absl::StatusOr<size_t> LimitArg(std::string_view fn, const Value& args, size_t fallback = 100) {
  return apps::PageSizeArg(args["limit"], absl::StrFormat("function \"%s\"", fn), "limit", 1000,
                           fallback);
}

Value PageValue(const PaginationResult& page) {
  return Value(Object{{"page", DocumentsValue(page.page)},
                      {"continueCursor", page.continue_cursor},
                      {"isDone", page.is_done}});
}

void RegisterWorkQueries(Registrar& r) {
  r.ToolQuery({.name = "covibe:getTask", .args = TaskIdArgs()},
              [](QueryContext& ctx, const Value& args, const Caller&) -> Result {
                absl::StatusOr<std::optional<Document>> task =
                    ctx.db().Get(args["task_id"].as_string());
                if (!task.ok()) return task.status();
                return task->has_value() ? (*task)->ToValue() : Value(nullptr);
              });
  // The workspace's tasks (optionally of one status), a page at a time, oldest first.
  r.ToolQuery({.name = "covibe:listTasks",
               .args = absl::StrFormat(R"({"status": {"type": "optional", "of": %s},
                   "num_items": "number",
                   "cursor": {"type": "optional", "of": {"type": "union", "of": ["string", "null"]}},
                   "end_cursor": {"type": "optional", "of": "string"}})",
                                       kStatusLiterals)},
              [](QueryContext& ctx, const Value& args, const Caller& caller) -> Result {
                absl::StatusOr<size_t> n = apps::PageSizeArg(
                    args["num_items"], "function \"covibe:listTasks\"", "num_items", 500);
                if (!n.ok()) return n.status();
                IndexRange range = Eq("workspace_id", Value(caller.workspace_id));
                std::string index = "by_workspace";
                if (args["status"].is_string()) {
                  range.Eq("status", args["status"]);
                  index = "by_workspace_status";
                }
                PaginationOptions options{.num_items = *n};
                if (args["cursor"].is_string()) options.cursor = args["cursor"].as_string();
                if (args["end_cursor"].is_string())
                  options.end_cursor = args["end_cursor"].as_string();
                absl::StatusOr<PaginationResult> page =
                    ctx.db().Table("covibe_tasks").WithIndex(index, range).Paginate(options);
                if (!page.ok()) return page.status();
                return PageValue(*page);
              });
  // The workspace's overlap warnings of one status: "open" (the default) oldest first, the live
  // view of who collides with whom; "resolved" newest first. At most `limit` (default 100).
  r.ToolQuery({.name = "covibe:listOverlapWarnings",
               .args = R"({"status": {"type": "optional", "of": {"type": "union", "of": [
                      {"type": "literal", "value": "open"},
                      {"type": "literal", "value": "resolved"}]}},
                   "limit": {"type": "optional", "of": "number"}})"},
              [](QueryContext& ctx, const Value& args, const Caller& caller) -> Result {
                absl::StatusOr<size_t> limit = LimitArg("covibe:listOverlapWarnings", args);
                if (!limit.ok()) return limit.status();
                const Value status = args["status"].is_string() ? args["status"] : Value("open");
                absl::StatusOr<std::vector<Document>> warnings =
                    ctx.db()
                        .Table("covibe_overlap_warnings")
                        .WithIndex(
                            "by_workspace_status",
                            Eq("workspace_id", Value(caller.workspace_id)).Eq("status", status))
                        .Order(status == Value("open") ? SortOrder::kAsc : SortOrder::kDesc)
                        .Take(*limit);
                if (!warnings.ok()) return warnings.status();
                return DocumentsValue(*warnings);
              });
  // Work events, newest first: of one task, or of the workspace.
  r.ToolQuery(
      {.name = "covibe:listWorkEvents",
       .args = R"({"task_id": {"type": "optional", "of": {"type": "id", "table": "covibe_tasks"}},
                   "limit": {"type": "optional", "of": "number"}})"},
      [](QueryContext& ctx, const Value& args, const Caller& caller) -> Result {
        absl::StatusOr<size_t> limit = LimitArg("covibe:listWorkEvents", args, 50);
        if (!limit.ok()) return limit.status();
        Query query = ctx.db().Table("covibe_work_events");
        if (args["task_id"].is_string()) {
          query.WithIndex("by_task", Eq("task_id", args["task_id"]));
        } else {
          query.WithIndex("by_workspace_created", Eq("workspace_id", Value(caller.workspace_id)));
        }
        absl::StatusOr<std::vector<Document>> events = query.Order(SortOrder::kDesc).Take(*limit);
        if (!events.ok()) return events.status();
        return DocumentsValue(*events);
      });
  // The workspace's workstreams (of one status, or of every status), newest first, at most
  // `limit` (default 100): each status is read newest first and bounded by the limit.
  r.ToolQuery(
      {.name = "covibe:listWorkstreams",
       .args = absl::StrFormat(R"({"status": {"type": "optional", "of": %s},
                                   "limit": {"type": "optional", "of": "number"}})",
                               kStatusLiterals)},
      [](QueryContext& ctx, const Value& args, const Caller& caller) -> Result {
        absl::StatusOr<size_t> limit = LimitArg("covibe:listWorkstreams", args);
        if (!limit.ok()) return limit.status();
        std::vector<std::string> statuses = {"planned", "active", "blocked", "done", "cancelled"};
        if (args["status"].is_string()) statuses = {args["status"].as_string()};
        std::vector<Document> all;
        for (const std::string& status : statuses) {
          absl::StatusOr<std::vector<Document>> some =
              ctx.db()
                  .Table("covibe_workstreams")
                  .WithIndex("by_workspace_status",
                             Eq("workspace_id", Value(caller.workspace_id)).Eq("status", status))
                  .Order(SortOrder::kDesc)
                  .Take(*limit);
          if (!some.ok()) return some.status();
          all.insert(all.end(), some->begin(), some->end());
        }
        std::stable_sort(all.begin(), all.end(), [](const Document& a, const Document& b) {
          return a["created_at"].as_float64() > b["created_at"].as_float64();
        });
        if (all.size() > *limit) all.resize(*limit);
        return DocumentsValue(all);
      });
}

}  // namespace

void RegisterWork(Registrar& r) {
  RegisterPreflight(r);
  RegisterTasks(r);
  RegisterWorkstreams(r);
  RegisterWorkQueries(r);
}

}  // namespace internal
}  // namespace stagedb::covibe
