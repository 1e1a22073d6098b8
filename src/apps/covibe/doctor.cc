// Covibe's schema health check (stagedb/apps/covibe.h Doctor): the seed's `npm run doctor`,
// comparing what Covibe's schema declares with the schema the database has in force.
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/str_format.h"
#include "stagedb/apps/covibe.h"

namespace stagedb::covibe {
namespace {

Value Strings(const std::vector<std::string>& items) {
  return Value(Array(items.begin(), items.end()));
}

absl::StatusOr<nlohmann::json> ParseSchema(std::string_view text, std::string_view what) {
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!json.is_object() || !json["tables"].is_object()) {
    return absl::InternalError(absl::StrFormat("covibe doctor: %s is not a schema", what));
  }
  return json;
}

// An index as the doctor compares it: its fields and its unique flag (absent: false). Null
// when `table` has no index named `name`.
nlohmann::json IndexShape(const nlohmann::json& table, const std::string& name) {
  if (table.contains("indexes")) {
    for (const nlohmann::json& index : table["indexes"]) {
      if (index["name"] != name) continue;
      return {{"fields", index["fields"]},
              {"unique", index.contains("unique") && index["unique"].get<bool>()}};
    }
  }
  return nullptr;
}

}  // namespace

Value HealthReport::ToValue() const {
  return Value(Object{{"status", status},
                      {"missing_tables", Strings(missing_tables)},
                      {"missing_columns", Strings(missing_columns)},
                      {"missing_indexes", Strings(missing_indexes)},
                      {"missing_scopes", Strings(missing_scopes)},
                      {"missing_ttls", Strings(missing_ttls)}});
}

absl::StatusOr<HealthReport> Doctor(Database& db) {
  absl::StatusOr<nlohmann::json> wanted = ParseSchema(SchemaJson(), "Covibe's schema");
  if (!wanted.ok()) return wanted.status();
  absl::StatusOr<nlohmann::json> in_force = ParseSchema(db.SchemaJson(), "the database's schema");
  if (!in_force.ok()) return in_force.status();
  HealthReport report;
  const nlohmann::json& have_tables = (*in_force)["tables"];
  for (const auto& [name, table] : (*wanted)["tables"].items()) {
    if (!have_tables.contains(name)) {
      report.missing_tables.push_back(name);
      continue;
    }
    const nlohmann::json& have = have_tables[name];
    for (const auto& [field, validator] : table["fields"].items()) {
      if (!have["fields"].contains(field)) report.missing_columns.push_back(name + "." + field);
    }
    if (table.contains("indexes")) {
      for (const nlohmann::json& index : table["indexes"]) {
        const std::string index_name = index["name"].get<std::string>();
        if (IndexShape(have, index_name) != IndexShape(table, index_name)) {
          report.missing_indexes.push_back(name + "." + index_name);
        }
      }
    }
    if (table.contains("scope") && (!have.contains("scope") || have["scope"] != table["scope"])) {
      report.missing_scopes.push_back(name);
    }
    if (table.contains("ttl") && (!have.contains("ttl") || have["ttl"] != table["ttl"])) {
      report.missing_ttls.push_back(name);
    }
  }
  const bool ok = report.missing_tables.empty() && report.missing_columns.empty() &&
                  report.missing_indexes.empty() && report.missing_scopes.empty() &&
                  report.missing_ttls.empty();
  report.status = ok ? "ok" : "degraded";
  return report;
}

}  // namespace stagedb::covibe
