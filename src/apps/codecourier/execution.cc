// Execution: sandboxes with their conversations, workflows, runs with their steps, the internal
// callbacks Trigger.dev tasks report through, and notifications. Every create and delete of a
// sandbox, run or workflow adjusts cc_projectCounters in the same transaction.
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "apps/codecourier/common.h"

namespace stagedb::codecourier::detail {
namespace {

// A record a public function names by id: it must exist (soft-deleted ones do not) and the
// caller be a member of its project.
absl::StatusOr<RecordAccess> RecordArg(Reader& db, const Auth& auth, const Value& args,
                                       std::string_view arg, std::string_view table,
                                       std::string_view what, Role min_role = Role::kMember) {
  absl::StatusOr<DocumentId> id = IdArg(args, arg);
  if (!id.ok()) return id.status();
  return RequireRecord(db, auth, table, what, *id, min_role);
}

// Registers "<module>:listPaginated" over a soft-delete table's live documents, newest first.
void RegisterListPaginated(Registrar& r, std::string module, std::string table) {
  r.Query({.name = module + ":listPaginated",
           .args = absl::StrFormat(
               R"({"projectId": {"type": "id", "table": "cc_projects"}, "paginationOpts": %s})",
               kPaginationOptsValidator)},
          [table](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<ProjectAccess> access = ProjectArg(ctx.db(), ctx.auth(), args);
            if (!access.ok()) return access.status();
            return ListProjectPage(ctx.db(), table, access->project.id(), args["paginationOpts"]);
          });
}

// Registers `name` {<arg>}: the record of a project the argument names.
void RegisterGet(Registrar& r, std::string name, std::string arg, std::string table,
                 std::string what) {
  r.Query({.name = std::move(name),
           .args = absl::StrFormat(R"({"%s": {"type": "id", "table": "%s"}})", arg, table)},
          [arg, table, what](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<RecordAccess> record =
                RecordArg(ctx.db(), ctx.auth(), args, arg, table, what);
            if (!record.ok()) return record.status();
            return record->record.ToValue();
          });
}

// Registers "<module>:<function>" {<arg>, name}: renames a record of a project.
void RegisterRename(Registrar& r, std::string name, std::string arg, std::string table,
                    std::string what) {
  r.Mutation(
      {.name = std::move(name),
       .args = absl::StrFormat(R"({"%s": {"type": "id", "table": "%s"}, "name": "string"})", arg,
                               table),
       .returns = R"("null")"},
      [arg, table, what](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<RecordAccess> record =
            RecordArg(ctx.db(), ctx.auth(), args, arg, table, what);
        if (!record.ok()) return record.status();
        if (absl::Status s = CheckNonEmpty(table, "name", args["name"].as_string()); !s.ok()) {
          return s;
        }
        absl::Status s =
            ctx.db().Patch(record->record.id(), {{"name", args["name"]}, {"updatedAt", NowMs()}});
        if (!s.ok()) return s;
        return Value(nullptr);
      });
}

// Registers "<module>:<function>" {<arg>}: soft-deletes a record and takes it off `counter`.
void RegisterSoftDelete(Registrar& r, std::string name, std::string arg, std::string table,
                        std::string what, std::string counter) {
  r.Mutation({.name = std::move(name),
              .args = absl::StrFormat(R"({"%s": {"type": "id", "table": "%s"}})", arg, table),
              .returns = R"("null")"},
             [arg, table, what, counter](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<RecordAccess> record =
                   RecordArg(ctx.db(), ctx.auth(), args, arg, table, what);
               if (!record.ok()) return record.status();
               if (absl::Status s = ctx.db().Delete(record->record.id()); !s.ok()) return s;
               absl::Status s = AdjustCounter(ctx.db(), record->access.project.id(), counter, -1);
               if (!s.ok()) return s;
               return Value(nullptr);
             });
}

// Counts a new sandbox or run: the project's counter and today's stats, in its transaction.
absl::Status CountCreated(Transaction& tx, const DocumentId& project, std::string_view counter,
                          std::string_view daily_field) {
  absl::Status s = AdjustCounter(tx, project, counter, 1);
  return s.ok() ? BumpDailyStat(tx, project, daily_field) : s;
}

// ---- sandboxes and their conversations ----

// Adds the sandbox's learning extraction job (its state, error and end time) to `view`.
absl::Status AddLearningJob(Reader& db, const Document& sandbox, Value* view) {
  Value job_view(nullptr);
  if (sandbox["learningJobId"].is_string()) {
    absl::StatusOr<std::optional<Document>> job = db.Get(sandbox["learningJobId"].as_string());
    if (!job.ok()) return job.status();
    if (job->has_value()) {
      job_view = Compact(Object{{"state", (**job)["state"]},
                                {"error", (**job)["error"]},
                                {"completedTime", (**job)["completedTime"]}});
    }
  }
  view->as_object()["learningExtraction"] = std::move(job_view);
  return absl::OkStatus();
}

absl::Status RequireOpen(const Document& sandbox) {
  if (sandbox["status"].as_string() != "ended") return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrFormat("table \"cc_sandboxes\": sandbox \"%s\" has ended", sandbox.id().text()));
}

// Appends a message to a sandbox's conversation (and counts it in today's stats).
Result AppendMessage(Transaction& tx, const Document& sandbox, const Value& role,
                     const std::string& content, Value author) {
  if (absl::Status s = CheckNonEmpty("cc_sandboxMessages", "content", content); !s.ok()) return s;
  absl::StatusOr<DocumentId> project = IdArg(sandbox.ToValue(), "projectId");
  if (!project.ok()) return project.status();
  absl::StatusOr<DocumentId> message =
      tx.Insert("cc_sandboxMessages", {{"sandboxId", Value(sandbox.id())},
                                       {"projectId", Value(*project)},
                                       {"role", role},
                                       {"content", content},
                                       {"authorId", std::move(author)},
                                       {"createdAt", NowMs()}});
  if (!message.ok()) return message.status();
  if (absl::Status s = BumpDailyStat(tx, *project, "messages"); !s.ok()) return s;
  return Value(*message);
}

constexpr const char* kSandboxArg = R"({"sandboxId": {"type": "id", "table": "cc_sandboxes"}})";
constexpr const char* kRoleValidator = R"({"type": "union", "of": [
    {"type": "literal", "value": "user"}, {"type": "literal", "value": "assistant"},
    {"type": "literal", "value": "system"}, {"type": "literal", "value": "tool"}]})";

void RegisterSandboxes(Registrar& r, absl::Duration extraction_delay) {
  r.Mutation(
      {.name = "codecourier/sandboxes:create",
       .args = R"({"projectId": {"type": "id", "table": "cc_projects"}, "name": "string",
                          "config": {"type": "optional", "of": "any"}})",
       .returns = R"({"type": "id", "table": "cc_sandboxes"})"},
      [](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<ProjectAccess> access = ProjectArg(ctx.db(), ctx.auth(), args);
        if (!access.ok()) return access.status();
        absl::StatusOr<DocumentId> user = access->UserId();
        if (!user.ok()) return user.status();
        if (absl::Status s = CheckNonEmpty("cc_sandboxes", "name", args["name"].as_string());
            !s.ok()) {
          return s;
        }
        const DocumentId& project = access->project.id();
        const double now = NowMs();
        absl::StatusOr<DocumentId> sandbox =
            ctx.db().Insert("cc_sandboxes", {{"projectId", Value(project)},
                                             {"userId", Value(*user)},
                                             {"name", args["name"]},
                                             {"status", "creating"},
                                             {"config", args["config"]},
                                             {"createdAt", now},
                                             {"updatedAt", now}});
        if (!sandbox.ok()) return sandbox.status();
        if (absl::Status s = CountCreated(ctx.db(), project, "sandboxCount", "sandboxesCreated");
            !s.ok()) {
          return s;
        }
        return Value(*sandbox);
      });
  // The sandbox with its learning extraction job's state (from _scheduled_functions); live.
  r.Query({.name = "codecourier/sandboxes:get", .args = kSandboxArg},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<RecordAccess> sandbox =
                RecordArg(ctx.db(), ctx.auth(), args, "sandboxId", "cc_sandboxes", "sandbox");
            if (!sandbox.ok()) return sandbox.status();
            Value view = sandbox->record.ToValue();
            if (absl::Status s = AddLearningJob(ctx.db(), sandbox->record, &view); !s.ok()) {
              return s;
            }
            return view;
          });
  RegisterListPaginated(r, "codecourier/sandboxes", "cc_sandboxes");
  RegisterRename(r, "codecourier/sandboxes:renameSandbox", "id", "cc_sandboxes", "sandbox");
  RegisterSoftDelete(r, "codecourier/sandboxes:deleteSandbox", "id", "cc_sandboxes", "sandbox",
                     "sandboxCount");
  // Ends the session: the sandbox is "ended" and its learning extraction is scheduled, in the
  // same transaction (the job exists exactly when the session ended).
  r.Mutation({.name = "codecourier/sandboxes:endSession",
              .args = kSandboxArg,
              .returns = R"({"type": "id", "table": "_scheduled_functions"})"},
             [extraction_delay](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<RecordAccess> sandbox =
                   RecordArg(ctx.db(), ctx.auth(), args, "sandboxId", "cc_sandboxes", "sandbox");
               if (!sandbox.ok()) return sandbox.status();
               if (absl::Status s = RequireOpen(sandbox->record); !s.ok()) return s;
               absl::StatusOr<DocumentId> job = ctx.scheduler().RunAfter(
                   extraction_delay, "codecourier/learnings:extractFromSandbox",
                   Object{{"sandboxId", Value(sandbox->record.id())}});
               if (!job.ok()) return job.status();
               const double now = NowMs();
               absl::Status s =
                   ctx.db().Patch(sandbox->record.id(), {{"status", "ended"},
                                                         {"endedAt", now},
                                                         {"updatedAt", now},
                                                         {"learningJobId", Value(*job)}});
               if (!s.ok()) return s;
               return Value(*job);
             });

  // The user's side of the conversation.
  r.Mutation(
      {.name = "codecourier/sandboxMessages:send",
       .args = R"({"sandboxId": {"type": "id", "table": "cc_sandboxes"}, "content": "string"})",
       .returns = R"({"type": "id", "table": "cc_sandboxMessages"})"},
      [](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<RecordAccess> sandbox =
            RecordArg(ctx.db(), ctx.auth(), args, "sandboxId", "cc_sandboxes", "sandbox");
        if (!sandbox.ok()) return sandbox.status();
        absl::StatusOr<DocumentId> user = sandbox->access.UserId();
        if (!user.ok()) return user.status();
        if (absl::Status s = RequireOpen(sandbox->record); !s.ok()) return s;
        return AppendMessage(ctx.db(), sandbox->record, Value("user"), args["content"].as_string(),
                             Value(*user));
      });
  // The conversation, oldest first; live: re-runs only on this sandbox's messages.
  r.Query({.name = "codecourier/sandboxMessages:listBySandbox", .args = kSandboxArg},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<RecordAccess> sandbox =
                RecordArg(ctx.db(), ctx.auth(), args, "sandboxId", "cc_sandboxes", "sandbox");
            if (!sandbox.ok()) return sandbox.status();
            absl::StatusOr<std::vector<Document>> messages =
                ctx.db()
                    .Table("cc_sandboxMessages")
                    .WithIndex("by_sandbox", Eq("sandboxId", Value(sandbox->record.id())))
                    .Collect();
            if (!messages.ok()) return messages.status();
            return DocumentsValue(*messages);
          });
}

// ---- workflows, runs and steps ----

constexpr const char* kStepsValidator =
    R"({"type": "array", "items": {"type": "object", "fields": {"name": "string", "kind": "string"}}})";

absl::Status CheckSteps(const Value& steps) {
  if (steps.as_array().empty()) {
    return absl::InvalidArgumentError(
        "table \"cc_workflows\" field \"steps\": a workflow needs at least one step");
  }
  for (size_t i = 0; i < steps.as_array().size(); ++i) {
    for (const char* field : {"name", "kind"}) {
      if (steps.as_array()[i][field].as_string().empty()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "table \"cc_workflows\" field \"steps[%d].%s\": must not be empty", i, field));
      }
    }
  }
  return absl::OkStatus();
}

constexpr const char* kRunArg = R"({"runId": {"type": "id", "table": "cc_runs"}})";

bool StepFinished(std::string_view status) {
  return status == "completed" || status == "failed" || status == "skipped";
}

bool RunFinished(const Document& run) {
  const std::string& status = run["status"].as_string();
  return status == "completed" || status == "failed" || status == "cancelled";
}

absl::Status RequireUnfinished(const Document& run) {
  if (!RunFinished(run)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrFormat("table \"cc_runs\": run \"%s\" has already finished (%s)", run.id().text(),
                      run["status"].as_string()));
}

absl::StatusOr<std::vector<Document>> StepsOf(Reader& db, const DocumentId& run) {
  return db.Table("cc_runSteps").WithIndex("by_run", Eq("runId", Value(run))).Collect();
}

void RegisterWorkflows(Registrar& r) {
  r.Mutation({.name = "codecourier/workflows:create",
              .args = absl::StrFormat(R"({"projectId": {"type": "id", "table": "cc_projects"},
                                   "name": "string", "pipelineType": "string", "steps": %s,
                                   "defaultConfig": {"type": "optional", "of": "any"}})",
                                      kStepsValidator),
              .returns = R"({"type": "id", "table": "cc_workflows"})"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<ProjectAccess> access = ProjectArg(ctx.db(), ctx.auth(), args);
               if (!access.ok()) return access.status();
               absl::StatusOr<DocumentId> user = access->UserId();
               if (!user.ok()) return user.status();
               absl::Status s = CheckNonEmpty("cc_workflows", "name", args["name"].as_string());
               if (s.ok()) s = CheckSteps(args["steps"]);
               if (!s.ok()) return s;
               const double now = NowMs();
               absl::StatusOr<DocumentId> workflow =
                   ctx.db().Insert("cc_workflows", {{"projectId", Value(access->project.id())},
                                                    {"name", args["name"]},
                                                    {"pipelineType", args["pipelineType"]},
                                                    {"steps", args["steps"]},
                                                    {"defaultConfig", args["defaultConfig"]},
                                                    {"createdBy", Value(*user)},
                                                    {"createdAt", now},
                                                    {"updatedAt", now}});
               if (!workflow.ok()) return workflow.status();
               if (s = AdjustCounter(ctx.db(), access->project.id(), "workflowCount", 1); !s.ok()) {
                 return s;
               }
               return Value(*workflow);
             });
  r.Mutation({.name = "codecourier/workflows:update",
              .args = absl::StrFormat(R"({"workflowId": {"type": "id", "table": "cc_workflows"},
                                          "name": {"type": "optional", "of": "string"},
                                          "pipelineType": {"type": "optional", "of": "string"},
                                          "steps": {"type": "optional", "of": %s},
                                          "defaultConfig": {"type": "optional", "of": "any"}})",
                                      kStepsValidator),
              .returns = R"("null")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<RecordAccess> workflow =
                   RecordArg(ctx.db(), ctx.auth(), args, "workflowId", "cc_workflows", "workflow");
               if (!workflow.ok()) return workflow.status();
               absl::Status s = absl::OkStatus();
               if (args["name"].is_string()) {
                 s = CheckNonEmpty("cc_workflows", "name", args["name"].as_string());
               }
               if (s.ok() && args["steps"].is_array()) s = CheckSteps(args["steps"]);
               if (!s.ok()) return s;
               Object patch{{"updatedAt", NowMs()}};
               for (const char* field : {"name", "pipelineType", "steps", "defaultConfig"}) {
                 if (!args[field].is_undefined()) patch[field] = args[field];
               }
               if (s = ctx.db().Patch(workflow->record.id(), std::move(patch)); !s.ok()) return s;
               return Value(nullptr);
             });
  RegisterGet(r, "codecourier/workflows:get", "workflowId", "cc_workflows", "workflow");
  r.Query({.name = "codecourier/workflows:listForProject",
           .args = R"({"projectId": {"type": "id", "table": "cc_projects"}})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<ProjectAccess> access = ProjectArg(ctx.db(), ctx.auth(), args);
            if (!access.ok()) return access.status();
            absl::StatusOr<std::vector<Document>> workflows =
                ListProjectLive(ctx.db(), "cc_workflows", access->project.id());
            if (!workflows.ok()) return workflows.status();
            return DocumentsValue(*workflows);
          });
  RegisterSoftDelete(r, "codecourier/workflows:deleteWorkflow", "workflowId", "cc_workflows",
                     "workflow", "workflowCount");
}

void RegisterRuns(Registrar& r) {
  // A run of a workflow: queued, with one pending step per workflow step, counted.
  r.Mutation({.name = "codecourier/runs:create",
              .args = R"({"projectId": {"type": "id", "table": "cc_projects"},
                          "workflowId": {"type": "id", "table": "cc_workflows"},
                          "name": {"type": "optional", "of": "string"}})",
              .returns = R"({"type": "id", "table": "cc_runs"})"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<ProjectAccess> access = ProjectArg(ctx.db(), ctx.auth(), args);
               if (!access.ok()) return access.status();
               absl::StatusOr<DocumentId> user = access->UserId();
               if (!user.ok()) return user.status();
               const DocumentId& project = access->project.id();
               absl::StatusOr<DocumentId> workflow_id = IdArg(args, "workflowId");
               if (!workflow_id.ok()) return workflow_id.status();
               absl::StatusOr<Document> workflow =
                   Require(ctx.db(), "cc_workflows", "workflow", *workflow_id);
               if (!workflow.ok()) return workflow.status();
               if ((*workflow)["projectId"] != Value(project)) {
                 return absl::InvalidArgumentError(absl::StrFormat(
                     "table \"cc_runs\" field \"workflowId\": workflow \"%s\" belongs to project "
                     "\"%s\", not \"%s\"",
                     workflow_id->text(), (*workflow)["projectId"].as_string(), project.text()));
               }
               const double now = NowMs();
               if (args["name"].is_string()) {
                 absl::Status s = CheckNonEmpty("cc_runs", "name", args["name"].as_string());
                 if (!s.ok()) return s;
               }
               const Value name = args["name"].is_string() ? args["name"] : (*workflow)["name"];
               absl::StatusOr<DocumentId> run =
                   ctx.db().Insert("cc_runs", {{"projectId", Value(project)},
                                               {"workflowId", Value(*workflow_id)},
                                               {"name", name},
                                               {"status", "queued"},
                                               {"progress", 0.0},
                                               {"createdBy", Value(*user)},
                                               {"createdAt", now},
                                               {"updatedAt", now}});
               if (!run.ok()) return run.status();
               const Array& steps = (*workflow)["steps"].as_array();
               for (size_t i = 0; i < steps.size(); ++i) {
                 absl::Status s = ctx.db()
                                      .Insert("cc_runSteps", {{"runId", Value(*run)},
                                                              {"projectId", Value(project)},
                                                              {"order", static_cast<double>(i)},
                                                              {"name", steps[i]["name"]},
                                                              {"kind", steps[i]["kind"]},
                                                              {"status", "pending"}})
                                      .status();
                 if (!s.ok()) return s;
               }
               if (absl::Status s = CountCreated(ctx.db(), project, "runCount", "runsCreated");
                   !s.ok()) {
                 return s;
               }
               return Value(*run);
             });
  RegisterGet(r, "codecourier/runs:get", "runId", "cc_runs", "run");
  RegisterListPaginated(r, "codecourier/runs", "cc_runs");
  RegisterRename(r, "codecourier/runs:renameRun", "id", "cc_runs", "run");
  RegisterSoftDelete(r, "codecourier/runs:deleteRun", "id", "cc_runs", "run", "runCount");
  // The run's steps in order; live: re-runs only on this run's steps.
  r.Query({.name = "codecourier/runSteps:listByRun", .args = kRunArg},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<RecordAccess> run =
                RecordArg(ctx.db(), ctx.auth(), args, "runId", "cc_runs", "run");
            if (!run.ok()) return run.status();
            absl::StatusOr<std::vector<Document>> steps = StepsOf(ctx.db(), run->record.id());
            if (!steps.ok()) return steps.status();
            return DocumentsValue(*steps);
          });
}

// ---- notifications ----

void RegisterNotifications(Registrar& r) {
  r.Query({.name = "codecourier/notifications:listMine",
           .args = R"({"unreadOnly": {"type": "optional", "of": "boolean"}})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<Document> user = CurrentUser(ctx.db(), ctx.auth());
            if (!user.ok()) return user.status();
            IndexRange range = Eq("userId", user->id());
            if (args["unreadOnly"] == Value(true)) range.Eq("read", false);
            absl::StatusOr<std::vector<Document>> notifications =
                ctx.db().Table("cc_notifications").WithIndex("by_user", range).Collect();
            if (!notifications.ok()) return notifications.status();
            return DocumentsValue(*notifications);
          });
  r.Mutation({.name = "codecourier/notifications:markRead",
              .args = R"({"notificationId": {"type": "id", "table": "cc_notifications"}})",
              .returns = R"("null")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<Document> user = CurrentUser(ctx.db(), ctx.auth());
               if (!user.ok()) return user.status();
               absl::StatusOr<DocumentId> id = IdArg(args, "notificationId");
               if (!id.ok()) return id.status();
               absl::StatusOr<Document> notification =
                   Require(ctx.db(), "cc_notifications", "notification", *id);
               // Another user's notification is as good as missing.
               if (notification.ok() && (*notification)["userId"] != Value(user->id())) {
                 notification = absl::NotFoundError(absl::StrFormat(
                     "table \"cc_notifications\": no notification \"%s\"", id->text()));
               }
               if (!notification.ok()) return notification.status();
               if (absl::Status s = ctx.db().Patch(*id, {{"read", true}}); !s.ok()) return s;
               return Value(nullptr);
             });
}

}  // namespace

void RegisterExecution(Registrar& r, const CodeCourierOptions& options) {
  RegisterSandboxes(r, options.learning_extraction_delay);
  RegisterWorkflows(r);
  RegisterRuns(r);
  RegisterNotifications(r);
}

// ---- internal callbacks (Trigger.dev tasks report through these) ----

void RegisterCallbacks(Registrar& r) {
  r.Mutation({.name = "codecourier/callbacks:appendSandboxMessage",
              .visibility = Visibility::kInternal,
              .args = absl::StrFormat(R"({"sandboxId": {"type": "id", "table": "cc_sandboxes"},
                                          "role": %s, "content": "string"})",
                                      kRoleValidator),
              .returns = R"({"type": "id", "table": "cc_sandboxMessages"})"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<DocumentId> id = IdArg(args, "sandboxId");
               if (!id.ok()) return id.status();
               absl::StatusOr<Document> sandbox = Require(ctx.db(), "cc_sandboxes", "sandbox", *id);
               if (!sandbox.ok()) return sandbox.status();
               // The conversation is closed once the session ended (its learnings are extracted).
               if (absl::Status s = RequireOpen(*sandbox); !s.ok()) return s;
               return AppendMessage(ctx.db(), *sandbox, args["role"], args["content"].as_string(),
                                    Value(Undefined{}));
             });
  // The sandbox's lifecycle as E2B reports it (not "ended": that is endSession's, with its
  // learning extraction).
  r.Mutation({.name = "codecourier/callbacks:updateSandboxStatus",
              .visibility = Visibility::kInternal,
              .args = R"({"sandboxId": {"type": "id", "table": "cc_sandboxes"},
                          "status": {"type": "union", "of": [
                            {"type": "literal", "value": "running"},
                            {"type": "literal", "value": "paused"},
                            {"type": "literal", "value": "error"}]},
                          "e2bSandboxId": {"type": "optional", "of": "string"}})",
              .returns = R"("null")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<DocumentId> id = IdArg(args, "sandboxId");
               if (!id.ok()) return id.status();
               absl::StatusOr<Document> sandbox = Require(ctx.db(), "cc_sandboxes", "sandbox", *id);
               if (!sandbox.ok()) return sandbox.status();
               if (absl::Status s = RequireOpen(*sandbox); !s.ok()) return s;
               absl::Status s = ctx.db().Patch(
                   *id,
                   {{"status", args["status"]},
                    {"e2bSandboxId", args["e2bSandboxId"].is_string() ? args["e2bSandboxId"]
                                                                      : (*sandbox)["e2bSandboxId"]},
                    {"updatedAt", NowMs()}});
               if (!s.ok()) return s;
               return Value(nullptr);
             });
  // A step's progress: "running" sets startedAt (and the run is running), a finished status sets
  // completedAt; the run's progress is the share of finished steps.
  r.Mutation({.name = "codecourier/callbacks:updateRunStep",
              .visibility = Visibility::kInternal,
              .args = R"({"runId": {"type": "id", "table": "cc_runs"}, "order": "number",
                   "status": {"type": "union", "of": [
                     {"type": "literal", "value": "running"},
                     {"type": "literal", "value": "completed"},
                     {"type": "literal", "value": "failed"},
                     {"type": "literal", "value": "skipped"}]},
                   "output": {"type": "optional", "of": "string"}})",
              .returns = R"("null")"},
             [](MutationContext& ctx, const Value& args) -> Result {
               absl::StatusOr<DocumentId> run_id = IdArg(args, "runId");
               if (!run_id.ok()) return run_id.status();
               absl::StatusOr<Document> run = Require(ctx.db(), "cc_runs", "run", *run_id);
               if (!run.ok()) return run.status();
               if (absl::Status s = RequireUnfinished(*run); !s.ok()) return s;
               absl::StatusOr<std::vector<Document>> steps = StepsOf(ctx.db(), *run_id);
               if (!steps.ok()) return steps.status();
               const double order = args["order"].as_float64();
               const Document* step = nullptr;
               for (const Document& candidate : *steps) {
                 if (candidate["order"].as_float64() == order) step = &candidate;
               }
               if (step == nullptr) {
                 return absl::NotFoundError(
                     absl::StrFormat("table \"cc_runSteps\": run \"%s\" has no step %g (it has %d)",
                                     run_id->text(), order, steps->size()));
               }
               // A finished step stays finished: a late or replayed "running" must not undo it.
               const std::string& current = (*step)["status"].as_string();
               if (StepFinished(current) && args["status"] != (*step)["status"]) {
                 return absl::FailedPreconditionError(absl::StrFormat(
                     "table \"cc_runSteps\": step %g of run \"%s\" has finished (%s) and cannot "
                     "become %s",
                     order, run_id->text(), current, args["status"].as_string()));
               }
               const bool running = args["status"] == Value("running");
               const double now = NowMs();
               Object patch{{"status", args["status"]}, {"output", args["output"]}};
               patch[running ? "startedAt" : "completedAt"] = Value(now);
               if (absl::Status s = ctx.db().Patch(step->id(), std::move(patch)); !s.ok()) return s;
               double finished = 0;
               for (const Document& other : *steps) {
                 const Value& status = &other == step ? args["status"] : other["status"];
                 if (status != Value("pending") && status != Value("running")) ++finished;
               }
               absl::Status s = ctx.db().Patch(*run_id, {{"status", "running"},
                                                         {"progress", finished / steps->size()},
                                                         {"updatedAt", now}});
               if (!s.ok()) return s;
               return Value(nullptr);
             });
  // The run finished: its status and PR, a notification for whoever started it, today's stats.
  r.Mutation(
      {.name = "codecourier/callbacks:completeRun",
       .visibility = Visibility::kInternal,
       .args = R"({"runId": {"type": "id", "table": "cc_runs"},
                   "status": {"type": "union", "of": [
                     {"type": "literal", "value": "completed"},
                     {"type": "literal", "value": "failed"},
                     {"type": "literal", "value": "cancelled"}]},
                   "prUrl": {"type": "optional", "of": "string"},
                   "prNumber": {"type": "optional", "of": "number"},
                   "error": {"type": "optional", "of": "string"}})",
       .returns = R"("null")"},
      [](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<DocumentId> run_id = IdArg(args, "runId");
        if (!run_id.ok()) return run_id.status();
        absl::StatusOr<Document> run = Require(ctx.db(), "cc_runs", "run", *run_id);
        if (!run.ok()) return run.status();
        if (absl::Status s = RequireUnfinished(*run); !s.ok()) return s;
        const bool completed = args["status"] == Value("completed");
        const double now = NowMs();
        absl::Status s =
            ctx.db().Patch(*run_id, {{"status", args["status"]},
                                     {"progress", completed ? Value(1.0) : (*run)["progress"]},
                                     {"prUrl", args["prUrl"]},
                                     {"prNumber", args["prNumber"]},
                                     {"error", args["error"]},
                                     {"completedAt", now},
                                     {"updatedAt", now}});
        if (!s.ok()) return s;
        absl::StatusOr<DocumentId> project = IdArg(run->ToValue(), "projectId");
        absl::StatusOr<DocumentId> creator = IdArg(run->ToValue(), "createdBy");
        if (!project.ok() || !creator.ok())
          return project.ok() ? creator.status() : project.status();
        const std::string& name = (*run)["name"].as_string();
        const std::string& status = args["status"].as_string();
        s = Notify(ctx.db(), *creator, *project, "run_" + status,
                   absl::StrFormat("Run \"%s\" %s", name, status), Value(*run_id));
        if (s.ok() && args["prUrl"].is_string()) {
          s = Notify(ctx.db(), *creator, *project, "pr_opened",
                     absl::StrFormat("Run \"%s\" opened %s", name, args["prUrl"].as_string()),
                     Value(*run_id));
        }
        // Each outcome has its own daily count: runsCompleted, runsFailed, runsCancelled.
        if (s.ok()) {
          s = BumpDailyStat(ctx.db(), *project,
                            completed            ? "runsCompleted"
                            : status == "failed" ? "runsFailed"
                                                 : "runsCancelled");
        }
        if (!s.ok()) return s;
        return Value(nullptr);
      });
}

}  // namespace stagedb::codecourier::detail
