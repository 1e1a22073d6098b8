// ValidateWorkflowManifest: the checks behind writing /app/shift.workflows.json.
#include <string>
#include <string_view>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "apps/common/text.h"
#include "nlohmann/json.hpp"
#include "stagedb/apps/stage.h"

namespace stagedb::stage {
namespace {

// The step kinds Stage's workflow runner executes: the seed's Google Sheets operations, billing
// items, Pulse tracking, ledger audit events, message delivery and templated responses.
constexpr std::string_view kStepKinds[] = {
    "sheets.appendRow", "sheets.updateRow", "billing.createItem", "pulse.track",
    "ledger.audit",     "message.send",     "response.template"};

absl::Status ManifestError(std::string_view where, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrFormat("workflow manifest \"%s\": %s: %s", kWorkflowManifestPath, where, what));
}

}  // namespace

absl::Status ValidateWorkflowManifest(std::string_view text) {
  nlohmann::json manifest;
  try {
    manifest = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    return ManifestError(absl::StrFormat("byte %d", e.byte), "not valid JSON");
  }
  if (!manifest.is_object()) return ManifestError("(top level)", "must be an object");
  for (const auto& [member, unused] : manifest.items()) {
    if (member != "version" && member != "workflows") {
      return ManifestError(member, "unknown member (allowed: version, workflows)");
    }
  }
  if (!manifest.contains("version") || manifest["version"] != 1) {
    return ManifestError("version",
                         absl::StrFormat("must be 1, got %s", manifest.contains("version")
                                                                  ? manifest["version"].dump()
                                                                  : std::string("nothing")));
  }
  if (!manifest.contains("workflows") || !manifest["workflows"].is_object()) {
    return ManifestError("workflows", "must be an object of workflow definitions by name");
  }
  for (const auto& [name, workflow] : manifest["workflows"].items()) {
    const std::string where = "workflows." + name;
    if (!workflow.is_object()) return ManifestError(where, "must be an object");
    if (!workflow.contains("steps") || !workflow["steps"].is_array() || workflow["steps"].empty()) {
      return ManifestError(where + ".steps", "must be a non-empty array of steps");
    }
    for (size_t i = 0; i < workflow["steps"].size(); ++i) {
      const nlohmann::json& step = workflow["steps"][i];
      const std::string step_where = absl::StrFormat("%s.steps[%d]", where, i);
      if (!step.is_object()) return ManifestError(step_where, "must be an object");
      if (!step.contains("kind") || !step["kind"].is_string()) {
        return ManifestError(step_where + ".kind", "missing (a string)");
      }
      const std::string kind = step["kind"].get<std::string>();
      bool known = false;
      for (std::string_view k : kStepKinds) known = known || k == kind;
      if (!known) {
        return ManifestError(step_where + ".kind",
                             absl::StrFormat("\"%s\" is not a step kind (expected one of %s)", kind,
                                             apps::Join(kStepKinds)));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace stagedb::stage
