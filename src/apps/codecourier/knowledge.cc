// Learnings (extracted from ended sandbox sessions by a scheduled action, or added by hand) with
// their compiled versions, and usage: cost rates, usage records and the project usage summary.
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "apps/codecourier/common.h"

namespace stagedb::codecourier::detail {
namespace {

// Saves a learning and compiles the project's next learning version (every learning, oldest
// first, as a bullet list), so a new session can inject the latest version whole.
Result SaveLearning(Transaction& tx, const DocumentId& project, Value sandbox,
                    std::string_view source, const std::string& content) {
  if (absl::Status s = CheckNonEmpty("cc_learnings", "content", content); !s.ok()) return s;
  const double now = NowMs();
  absl::StatusOr<DocumentId> learning =
      tx.Insert("cc_learnings", {{"projectId", Value(project)},
                                 {"sandboxId", std::move(sandbox)},
                                 {"content", content},
                                 {"source", source},
                                 {"createdAt", now}});
  if (!learning.ok()) return learning.status();
  absl::StatusOr<std::vector<Document>> all =
      tx.Table("cc_learnings").WithIndex("by_project", Eq("projectId", Value(project))).Collect();
  if (!all.ok()) return all.status();
  std::string compiled;
  for (const Document& each : *all) compiled += "- " + each["content"].as_string() + "\n";
  absl::StatusOr<std::optional<Document>> latest =
      tx.Table("cc_learningVersions")
          .WithIndex("by_project", Eq("projectId", Value(project)))
          .Order(SortOrder::kDesc)
          .First();
  if (!latest.ok()) return latest.status();
  const double version = latest->has_value() ? (**latest)["version"].as_float64() + 1 : 1;
  absl::Status s =
      tx.Insert("cc_learningVersions", {{"projectId", Value(project)},
                                        {"version", version},
                                        {"compiled", compiled},
                                        {"learningCount", static_cast<double>(all->size())},
                                        {"createdAt", now}})
          .status();
  if (!s.ok()) return s;
  return Value(*learning);
}

void RegisterLearningFunctions(Registrar& r, const CodeCourierOptions& options) {
  // What the extractor reads: the sandbox's conversation, oldest first (deleted sandboxes too:
  // a session may be deleted before its extraction runs).
  r.Query({.name = "codecourier/learnings:conversationForExtraction",
           .visibility = Visibility::kInternal,
           .args = R"({"sandboxId": {"type": "id", "table": "cc_sandboxes"}})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<std::vector<Document>> messages =
                ctx.db()
                    .Table("cc_sandboxMessages")
                    .WithIndex("by_sandbox", Eq("sandboxId", args["sandboxId"]))
                    .Collect();
            if (!messages.ok()) return messages.status();
            return DocumentsValue(*messages);
          });
  r.Mutation(
      {.name = "codecourier/learnings:saveExtracted",
       .visibility = Visibility::kInternal,
       .args = R"({"sandboxId": {"type": "id", "table": "cc_sandboxes"}, "content": "string"})",
       .returns = R"({"type": "id", "table": "cc_learnings"})"},
      [](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<DocumentId> id = IdArg(args, "sandboxId");
        if (!id.ok()) return id.status();
        absl::StatusOr<std::optional<Document>> sandbox = ctx.db().GetIncludingDeleted(*id);
        if (!sandbox.ok()) return sandbox.status();
        if (!sandbox->has_value()) {
          return absl::NotFoundError(
              absl::StrFormat("table \"cc_sandboxes\": no sandbox \"%s\"", id->text()));
        }
        absl::StatusOr<DocumentId> project = IdArg((*sandbox)->ToValue(), "projectId");
        if (!project.ok()) return project.status();
        return SaveLearning(ctx.db(), *project, Value(*id), "extracted",
                            args["content"].as_string());
      });
  // The scheduled extraction (codecourier/sandboxes:endSession): the host's extractor turns the
  // conversation into learnings text; empty text saves nothing. Returns the learning's id or null.
  r.Action({.name = "codecourier/learnings:extractFromSandbox",
            .visibility = Visibility::kInternal,
            .args = R"({"sandboxId": {"type": "id", "table": "cc_sandboxes"}})"},
           [extract = options.extract_learnings](ActionContext& ctx, const Value& args) -> Result {
             if (!extract) {
               return absl::FailedPreconditionError(
                   "codecourier/learnings:extractFromSandbox: no learning extractor "
                   "(CodeCourierOptions::extract_learnings)");
             }
             absl::StatusOr<Value> conversation =
                 ctx.RunQuery("codecourier/learnings:conversationForExtraction", args);
             if (!conversation.ok()) return conversation.status();
             std::vector<SandboxMessage> messages;
             for (const Value& message : conversation->as_array()) {
               messages.push_back({.role = message["role"].as_string(),
                                   .content = message["content"].as_string(),
                                   .created_at = message["createdAt"].as_float64()});
             }
             absl::StatusOr<std::string> learnings = extract(messages);
             if (!learnings.ok()) return learnings.status();
             if (learnings->find_first_not_of(" \t\r\n") == std::string::npos) {
               return Value(nullptr);
             }
             return ctx.RunMutation(
                 "codecourier/learnings:saveExtracted",
                 Object{{"sandboxId", args["sandboxId"]}, {"content", *learnings}});
           });
  r.Mutation(
      {.name = "codecourier/learnings:add",
       .args = R"({"projectId": {"type": "id", "table": "cc_projects"}, "content": "string"})",
       .returns = R"({"type": "id", "table": "cc_learnings"})"},
      [](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<ProjectAccess> access =
            ProjectArg(ctx.db(), ctx.auth(), args, Role::kMember);
        if (!access.ok()) return access.status();
        const DocumentId& project = access->project.id();
        return SaveLearning(ctx.db(), project, Value(Undefined{}), "manual",
                            args["content"].as_string());
      });
  r.Query({.name = "codecourier/learnings:listForProject", .args = kProjectArg},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<ProjectAccess> access =
                ProjectArg(ctx.db(), ctx.auth(), args, Role::kMember);
            if (!access.ok()) return access.status();
            const DocumentId& project = access->project.id();
            absl::StatusOr<std::vector<Document>> learnings =
                ByProject(ctx.db(), "cc_learnings", project);
            if (!learnings.ok()) return learnings.status();
            return DocumentsValue(*learnings);
          });
  // The latest compiled learning version of the project, or null.
  r.Query({.name = "codecourier/learningVersions:latest", .args = kProjectArg},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<ProjectAccess> access =
                ProjectArg(ctx.db(), ctx.auth(), args, Role::kMember);
            if (!access.ok()) return access.status();
            const DocumentId& project = access->project.id();
            absl::StatusOr<std::optional<Document>> latest =
                ctx.db()
                    .Table("cc_learningVersions")
                    .WithIndex("by_project", Eq("projectId", Value(project)))
                    .Order(SortOrder::kDesc)
                    .First();
            if (!latest.ok()) return latest.status();
            return latest->has_value() ? (*latest)->ToValue() : Value(nullptr);
          });
}

// ---- usage ----

constexpr std::string_view kDefaultTier = "default";

absl::Status CheckNonNegative(std::string_view table, std::string_view field, double value) {
  if (value >= 0) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrFormat("table \"%s\" field \"%s\": %g is negative", table, field, value));
}

// InvalidArgument unless startDate and endDate are dates and start <= end.
absl::Status CheckDateRange(std::string_view table, const std::string& start,
                            const std::string& end) {
  absl::Status s = CheckDate(table, "startDate", start);
  if (s.ok()) s = CheckDate(table, "endDate", end);
  if (s.ok() && start > end) {
    s = absl::InvalidArgumentError(absl::StrFormat(
        "table \"%s\": startDate \"%s\" is after endDate \"%s\"", table, start, end));
  }
  return s;
}

// The project's rows of a table indexed by_project_date from `start` to `end` (inclusive).
absl::StatusOr<std::vector<Document>> ProjectDays(Reader& db, std::string_view table,
                                                  const DocumentId& project,
                                                  const std::string& start,
                                                  const std::string& end) {
  return db.Table(table)
      .WithIndex("by_project_date",
                 Eq("projectId", Value(project)).Gte("date", start).Lte("date", end))
      .Collect();
}

// The rate of (service, tier), else the service's default tier; nullopt when neither is set.
absl::StatusOr<std::optional<Document>> FindRate(Reader& db, const Value& service,
                                                 const std::string& tier) {
  for (const std::string& each : {tier, std::string(kDefaultTier)}) {
    absl::StatusOr<std::optional<Document>> rate =
        db.Table("cc_usageCostRates")
            .WithIndex("by_service", Eq("service", service).Eq("modelTier", each))
            .First();
    if (!rate.ok() || rate->has_value()) return rate;
  }
  return std::optional<Document>();
}

void RegisterUsageFunctions(Registrar& r) {
  // Sets the cost of one unit of a service (per model tier; "default" when none is given).
  r.Mutation(
      {.name = "codecourier/usage:upsertCostRate",
       .visibility = Visibility::kInternal,
       .args = R"({"service": "string",
                          "rateType": {"type": "union", "of": [
                            {"type": "literal", "value": "per_unit"},
                            {"type": "literal", "value": "per_1k_tokens"},
                            {"type": "literal", "value": "per_second"},
                            {"type": "literal", "value": "per_run"}]},
                          "modelTier": {"type": "optional", "of": "string"},
                          "unitCost": "number"})",
       .returns = R"({"type": "id", "table": "cc_usageCostRates"})"},
      [](MutationContext& ctx, const Value& args) -> Result {
        absl::Status s = CheckNonEmpty("cc_usageCostRates", "service", args["service"].as_string());
        if (s.ok()) {
          s = CheckNonNegative("cc_usageCostRates", "unitCost", args["unitCost"].as_float64());
        }
        if (!s.ok()) return s;
        const Value tier = args["modelTier"].is_string() ? args["modelTier"] : Value(kDefaultTier);
        absl::StatusOr<std::optional<Document>> existing =
            ctx.db()
                .Table("cc_usageCostRates")
                .WithIndex("by_service", Eq("service", args["service"]).Eq("modelTier", tier))
                .First();
        if (!existing.ok()) return existing.status();
        Object fields{{"service", args["service"]},
                      {"rateType", args["rateType"]},
                      {"modelTier", tier},
                      {"unitCost", args["unitCost"]},
                      {"updatedAt", NowMs()}};
        if (existing->has_value()) {
          if (s = ctx.db().Replace((*existing)->id(), std::move(fields)); !s.ok()) return s;
          return Value((*existing)->id());
        }
        absl::StatusOr<DocumentId> id = ctx.db().Insert("cc_usageCostRates", std::move(fields));
        if (!id.ok()) return id.status();
        return Value(*id);
      });
  // Records usage of a service by a project (Trigger.dev tasks and the sandbox runner report
  // it); the cost is quantity x the service's rate for the tier (0 when no rate is set).
  r.Mutation(
      {.name = "codecourier/usage:recordUsage",
       .visibility = Visibility::kInternal,
       .args = R"({"projectId": {"type": "id", "table": "cc_projects"}, "service": "string",
                   "quantity": "number",
                   "date": {"type": "optional", "of": "string"},
                   "modelTier": {"type": "optional", "of": "string"},
                   "modelId": {"type": "optional", "of": "string"},
                   "inputTokens": {"type": "optional", "of": "number"},
                   "outputTokens": {"type": "optional", "of": "number"},
                   "runId": {"type": "optional", "of": {"type": "id", "table": "cc_runs"}},
                   "runStepId": {"type": "optional", "of": {"type": "id", "table": "cc_runSteps"}},
                   "sandboxId": {"type": "optional", "of": {"type": "id", "table": "cc_sandboxes"}}})",
       .returns = R"({"type": "id", "table": "cc_usageRecords"})"},
      [](MutationContext& ctx, const Value& args) -> Result {
        absl::StatusOr<DocumentId> project = IdArg(args, "projectId");
        if (!project.ok()) return project.status();
        if (auto found = Require(ctx.db(), "cc_projects", "project", *project); !found.ok()) {
          return found.status();
        }
        const double now = NowMs();
        const std::string date = args["date"].is_string() ? args["date"].as_string() : DateOf(now);
        absl::Status s = CheckDate("cc_usageRecords", "date", date);
        if (s.ok()) s = CheckNonEmpty("cc_usageRecords", "service", args["service"].as_string());
        if (s.ok()) {
          s = CheckNonNegative("cc_usageRecords", "quantity", args["quantity"].as_float64());
        }
        if (!s.ok()) return s;
        const std::string tier = args["modelTier"].is_string() ? args["modelTier"].as_string()
                                                               : std::string(kDefaultTier);
        absl::StatusOr<std::optional<Document>> rate = FindRate(ctx.db(), args["service"], tier);
        if (!rate.ok()) return rate.status();
        const double unit_cost = rate->has_value() ? (**rate)["unitCost"].as_float64() : 0;
        Object fields = args.as_object();
        fields["date"] = Value(date);
        fields["modelTier"] = Value(tier);
        fields["cost"] = Value(args["quantity"].as_float64() * unit_cost);
        fields["createdAt"] = Value(now);
        absl::StatusOr<DocumentId> id = ctx.db().Insert("cc_usageRecords", std::move(fields));
        if (!id.ok()) return id.status();
        return Value(*id);
      });
  // Totals per service of the project's usage records from startDate to endDate (inclusive,
  // YYYY-MM-DD), with the project's counters; live.
  r.Query({.name = "codecourier/usage:getProjectUsageSummary",
           .args = R"({"projectId": {"type": "id", "table": "cc_projects"},
                       "startDate": "string", "endDate": "string"})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<ProjectAccess> access =
                ProjectArg(ctx.db(), ctx.auth(), args, Role::kMember);
            if (!access.ok()) return access.status();
            const DocumentId& project = access->project.id();
            const std::string& start = args["startDate"].as_string();
            const std::string& end = args["endDate"].as_string();
            if (absl::Status s = CheckDateRange("cc_usageRecords", start, end); !s.ok()) return s;
            absl::StatusOr<std::vector<Document>> records =
                ProjectDays(ctx.db(), "cc_usageRecords", project, start, end);
            if (!records.ok()) return records.status();
            struct Total {
              double quantity = 0, cost = 0, records = 0;
            };
            std::map<std::string, Total> totals;  // by service, sorted
            double total_cost = 0;
            for (const Document& record : *records) {
              Total& total = totals[record["service"].as_string()];
              total.quantity += record["quantity"].as_float64();
              total.cost += record["cost"].as_float64();
              total.records += 1;
              total_cost += record["cost"].as_float64();
            }
            Array services;
            for (const auto& [service, total] : totals) {
              services.push_back(Value(Object{{"service", service},
                                              {"quantity", total.quantity},
                                              {"cost", total.cost},
                                              {"records", total.records}}));
            }
            absl::StatusOr<Document> counters = Counters(ctx.db(), project);
            if (!counters.ok()) return counters.status();
            Object counts;
            for (const char* field : {"sandboxCount", "runCount", "workflowCount", "memberCount"}) {
              counts[field] = (*counters)[field];
            }
            // Run outcomes over the range, from the daily stats (cancelled is not failed).
            absl::StatusOr<std::vector<Document>> days =
                ProjectDays(ctx.db(), "cc_dailyStats", project, start, end);
            if (!days.ok()) return days.status();
            Object runs;
            for (auto [field, stat] :
                 {std::pair{"created", "runsCreated"}, std::pair{"completed", "runsCompleted"},
                  std::pair{"failed", "runsFailed"}, std::pair{"cancelled", "runsCancelled"}}) {
              double sum = 0;
              for (const Document& day : *days) sum += day[stat].as_float64();
              runs[field] = Value(sum);
            }
            return Value(Object{{"projectId", Value(project)},
                                {"startDate", start},
                                {"endDate", end},
                                {"services", Value(std::move(services))},
                                {"totalCost", total_cost},
                                {"counters", Value(std::move(counts))},
                                {"runs", Value(std::move(runs))}});
          });
  // The project's daily activity rows (sandboxes and runs created, runs completed, messages)
  // from startDate to endDate (inclusive), oldest first; days without activity have no row.
  r.Query({.name = "codecourier/usage:getDailyStats",
           .args = R"({"projectId": {"type": "id", "table": "cc_projects"},
                       "startDate": "string", "endDate": "string"})"},
          [](QueryContext& ctx, const Value& args) -> Result {
            absl::StatusOr<ProjectAccess> access = ProjectArg(ctx.db(), ctx.auth(), args);
            if (!access.ok()) return access.status();
            const std::string& start = args["startDate"].as_string();
            const std::string& end = args["endDate"].as_string();
            if (absl::Status s = CheckDateRange("cc_dailyStats", start, end); !s.ok()) return s;
            absl::StatusOr<std::vector<Document>> days =
                ProjectDays(ctx.db(), "cc_dailyStats", access->project.id(), start, end);
            if (!days.ok()) return days.status();
            return DocumentsValue(*days);
          });
}

}  // namespace

void RegisterLearnings(Registrar& r, const CodeCourierOptions& options) {
  RegisterLearningFunctions(r, options);
}

void RegisterUsage(Registrar& r) { RegisterUsageFunctions(r); }

}  // namespace stagedb::codecourier::detail
