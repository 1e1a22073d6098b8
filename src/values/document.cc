#include "stagedb/document.h"

#include <string>
#include <string_view>

#include "stagedb/value.h"
#include "values/value_internal.h"

namespace stagedb {

double Document::creation_time() const {
  const auto it = fields_.find(kCreationTimeField);
  if (it == fields_.end()) return 0;
  if (it->second.is_float64()) return it->second.as_float64();
  if (it->second.is_int64()) return static_cast<double>(it->second.as_int64());
  return 0;
}

const Value& Document::Get(std::string_view path) const {
  // Top-level field names cannot contain '.', so the first segment is always a field name; the
  // rest walk into nested objects. (A nested key that itself contains '.' is not reachable this
  // way; ToValue() gives the whole tree.)
  const Object* object = &fields_;
  for (;;) {
    const size_t dot = path.find('.');
    const auto it = object->find(path.substr(0, dot));
    if (it == object->end()) return internal::UndefinedValue();
    if (dot == std::string_view::npos) return it->second;
    if (!it->second.is_object()) return internal::UndefinedValue();
    object = &it->second.as_object();
    path.remove_prefix(dot + 1);
  }
}

std::string Document::ToJson() const { return ValueToJson(Value(fields_)); }

}  // namespace stagedb
