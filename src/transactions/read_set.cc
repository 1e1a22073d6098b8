#include "stagedb/read_set.h"

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "stagedb/key_codec.h"

namespace stagedb {
namespace {

// A range end is a whole key, a key's successor (key + 0x00) or a prefix end (prefix + 0xFF).
std::string DescribeKey(const std::string& key) {
  if (key.empty()) return "[]";
  auto render = [](const std::vector<Value>& values) {
    std::vector<std::string> parts;
    for (const Value& value : values) parts.push_back(DebugString(value, 60));
    return absl::StrFormat("[%s]", absl::StrJoin(parts, ", "));
  };
  if (absl::StatusOr<std::vector<Value>> values = DecodeKey(key); values.ok()) {
    return render(*values);
  }
  const std::string_view head(key.data(), key.size() - 1);
  if (absl::StatusOr<std::vector<Value>> values = DecodeKey(head); values.ok() || head.empty()) {
    const std::string rendered = head.empty() ? "[]" : render(*values);
    return key.back() == '\xFF' ? rendered + "+prefix-end" : rendered + "+successor";
  }
  return "<undecodable>";
}

}  // namespace

std::string ReadSet::DebugString() const {
  std::string out;
  for (const ReadRange& range : ranges_) {
    absl::StrAppendFormat(&out, "%s.%s [%s, %s)\n", range.table, range.index,
                          DescribeKey(range.start), DescribeKey(range.end));
  }
  return out;
}

}  // namespace stagedb
