#include "apps/codecourier/common.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace stagedb::codecourier::detail {

std::string DateOf(double ms) {
  return absl::FormatTime("%Y-%m-%d", absl::FromUnixMillis(static_cast<int64_t>(ms)),
                          absl::UTCTimeZone());
}

absl::Status CheckDate(std::string_view table, std::string_view field, std::string_view date) {
  absl::Time parsed;
  std::string error;
  // Round-tripping refuses what ParseTime normalizes ("2024-02-30") or pads ("2024-2-3").
  if (date.size() == 10 &&
      absl::ParseTime("%Y-%m-%d", std::string(date), absl::UTCTimeZone(), &parsed, &error) &&
      absl::FormatTime("%Y-%m-%d", parsed, absl::UTCTimeZone()) == date) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "table \"%s\" field \"%s\": \"%s\" is not a date (YYYY-MM-DD)", table, field, date));
}

absl::Status CheckNonEmpty(std::string_view table, std::string_view field, std::string_view text) {
  if (text.find_first_not_of(" \t\r\n") != std::string_view::npos) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrFormat("table \"%s\" field \"%s\": must not be empty", table, field));
}

absl::StatusOr<Document> Require(Reader& db, std::string_view table, std::string_view what,
                                 const DocumentId& id) {
  absl::StatusOr<std::optional<Document>> found = db.Get(id);
  if (!found.ok()) return found.status();
  if (!found->has_value()) {
    return absl::NotFoundError(
        absl::StrFormat("table \"%s\": no %s \"%s\"", table, what, id.text()));
  }
  return **std::move(found);
}

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kMember:
      return "member";
    case Role::kAdmin:
      return "admin";
    case Role::kOwner:
      return "owner";
  }
  return "member";
}

namespace {

Role RoleOf(std::string_view name) {
  if (name == "owner") return Role::kOwner;
  if (name == "admin") return Role::kAdmin;
  return Role::kMember;
}

}  // namespace

absl::StatusOr<Document> CurrentUser(Reader& db, const Auth& auth) {
  const Identity* identity = auth.identity();
  if (identity == nullptr) {
    return absl::UnauthenticatedError(
        "table \"cc_users\": this function needs a signed-in user (no identity)");
  }
  absl::StatusOr<std::optional<Document>> user =
      db.Table("cc_users").WithIndex("by_clerkId", Eq("clerkId", identity->subject)).First();
  if (!user.ok()) return user.status();
  if (!user->has_value()) {
    return absl::UnauthenticatedError(absl::StrFormat(
        "table \"cc_users\": no user with clerkId \"%s\" (call codecourier/users:store first)",
        identity->subject));
  }
  return **std::move(user);
}

absl::StatusOr<DocumentId> ProjectAccess::UserId() const {
  if (!user.has_value()) {
    return absl::UnauthenticatedError(absl::StrFormat(
        "project \"%s\": this step records who acted and needs a signed-in user, not an admin "
        "call",
        project.id().text()));
  }
  return user->id();
}

absl::StatusOr<ProjectAccess> RequireProject(Reader& db, const Auth& auth,
                                             const DocumentId& project, Role min_role) {
  absl::StatusOr<Document> found = Require(db, "cc_projects", "project", project);
  if (!found.ok()) return found.status();
  if (auth.is_admin()) return ProjectAccess{*std::move(found), std::nullopt, Role::kOwner};
  absl::StatusOr<Document> user = CurrentUser(db, auth);
  if (!user.ok()) return user.status();
  absl::StatusOr<std::optional<Document>> member =
      db.Table("cc_projectMembers")
          .WithIndex("by_project_user", Eq("projectId", Value(project)).Eq("userId", user->id()))
          .First();
  if (!member.ok()) return member.status();
  if (!member->has_value() || (**member)["status"].as_string() != "active") {
    return absl::PermissionDeniedError(absl::StrFormat(
        "table \"cc_projectMembers\": user \"%s\" is not a member of project \"%s\"%s",
        (*user)["clerkId"].as_string(), project.text(),
        member->has_value() ? " (the invitation is pending)" : ""));
  }
  const std::string& role = (**member)["role"].as_string();
  if (RoleOf(role) < min_role) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "table \"cc_projectMembers\": user \"%s\" is %s of project \"%s\"; this needs %s or "
        "higher",
        (*user)["clerkId"].as_string(), role, project.text(), RoleName(min_role)));
  }
  return ProjectAccess{*std::move(found), *std::move(user), RoleOf(role)};
}

absl::StatusOr<ProjectAccess> ProjectArg(Reader& db, const Auth& auth, const Value& args,
                                         Role min_role) {
  absl::StatusOr<DocumentId> project = IdArg(args, "projectId");
  if (!project.ok()) return project.status();
  return RequireProject(db, auth, *project, min_role);
}

absl::StatusOr<std::vector<Document>> ByProject(Reader& db, std::string_view table,
                                                const DocumentId& project) {
  return db.Table(table).WithIndex("by_project", Eq("projectId", Value(project))).Collect();
}

absl::StatusOr<RecordAccess> RequireRecord(Reader& db, const Auth& auth, std::string_view table,
                                           std::string_view what, const DocumentId& id,
                                           Role min_role) {
  absl::StatusOr<Document> record = Require(db, table, what, id);
  if (!record.ok()) return record.status();
  absl::StatusOr<DocumentId> project = IdArg(record->ToValue(), "projectId");
  if (!project.ok()) return project.status();
  absl::StatusOr<ProjectAccess> access = RequireProject(db, auth, *project, min_role);
  if (!access.ok()) return access.status();
  return RecordAccess{*std::move(record), *std::move(access)};
}

absl::StatusOr<Document> Counters(Reader& db, const DocumentId& project) {
  absl::StatusOr<std::optional<Document>> counters =
      db.Table("cc_projectCounters")
          .WithIndex("by_project", Eq("projectId", Value(project)))
          .First();
  if (!counters.ok()) return counters.status();
  if (!counters->has_value()) {
    return absl::NotFoundError(absl::StrFormat(
        "table \"cc_projectCounters\": no counters for project \"%s\"", project.text()));
  }
  return **std::move(counters);
}

absl::Status AdjustCounter(Transaction& tx, const DocumentId& project, std::string_view field,
                           double delta) {
  absl::StatusOr<Document> counters = Counters(tx, project);
  if (!counters.ok()) return counters.status();
  return tx.Patch(counters->id(), {{std::string(field), (*counters)[field].as_float64() + delta}});
}

absl::Status BumpDailyStat(Transaction& tx, const DocumentId& project, std::string_view field) {
  const std::string today = DateOf(NowMs());
  absl::StatusOr<std::optional<Document>> row =
      tx.Table("cc_dailyStats")
          .WithIndex("by_project_date", Eq("projectId", Value(project)).Eq("date", today))
          .First();
  if (!row.ok()) return row.status();
  if (row->has_value()) {
    return tx.Patch((*row)->id(), {{std::string(field), (**row)[field].as_float64() + 1}});
  }
  Object fields{{"projectId", Value(project)}, {"date", today},        {"sandboxesCreated", 0.0},
                {"runsCreated", 0.0},          {"runsCompleted", 0.0}, {"runsFailed", 0.0},
                {"runsCancelled", 0.0},        {"messages", 0.0}};
  fields[field] = Value(1.0);
  return tx.Insert("cc_dailyStats", std::move(fields)).status();
}

absl::Status Notify(Transaction& tx, const DocumentId& user, const DocumentId& project,
                    std::string_view kind, std::string title, Value run) {
  return tx
      .Insert("cc_notifications", {{"userId", Value(user)},
                                   {"projectId", Value(project)},
                                   {"kind", kind},
                                   {"title", std::move(title)},
                                   {"runId", std::move(run)},
                                   {"read", false},
                                   {"createdAt", NowMs()}})
      .status();
}

namespace {

// Live documents only: deletedAt missing sorts first in by_project_deleted, so the range is
// exactly the project's undeleted documents and a scan never walks deleted ones.
IndexRange LiveOf(const DocumentId& project) {
  return Eq("projectId", Value(project)).Eq("deletedAt", Value(Undefined{}));
}

}  // namespace

Result ListProjectPage(Reader& db, std::string_view table, const DocumentId& project,
                       const Value& pagination_opts) {
  absl::StatusOr<size_t> num_items =
      apps::PageSizeArg(pagination_opts["numItems"], absl::StrFormat("table \"%s\"", table),
                        "paginationOpts.numItems", 1000);
  if (!num_items.ok()) return num_items.status();
  PaginationOptions options{.num_items = *num_items};
  if (pagination_opts["cursor"].is_string()) options.cursor = pagination_opts["cursor"].as_string();
  if (pagination_opts["endCursor"].is_string()) {
    options.end_cursor = pagination_opts["endCursor"].as_string();
  }
  absl::StatusOr<PaginationResult> page = db.Table(table)
                                              .WithIndex("by_project_deleted", LiveOf(project))
                                              .Order(SortOrder::kDesc)
                                              .Paginate(options);
  if (!page.ok()) return page.status();
  return Value(Object{{"page", DocumentsValue(page->page)},
                      {"continueCursor", page->continue_cursor},
                      {"isDone", page->is_done}});
}

absl::StatusOr<std::vector<Document>> ListProjectLive(Reader& db, std::string_view table,
                                                      const DocumentId& project) {
  return db.Table(table).WithIndex("by_project_deleted", LiveOf(project)).Collect();
}

}  // namespace stagedb::codecourier::detail
