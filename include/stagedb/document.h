// Document: an object stored in a table, with its system fields `_id` (the id's text, a
// string) and `_creationTime` (milliseconds since the Unix epoch, float64, as in Convex).
#ifndef STAGEDB_DOCUMENT_H_
#define STAGEDB_DOCUMENT_H_

#include <string>
#include <string_view>

#include "stagedb/export.h"
#include "stagedb/id.h"
#include "stagedb/value.h"

namespace stagedb {

inline constexpr std::string_view kIdField = "_id";
inline constexpr std::string_view kCreationTimeField = "_creationTime";

class STAGEDB_EXPORT Document {
 public:
  Document() = default;
  // `fields` holds the user fields and both system fields.
  Document(DocumentId id, Object fields) : id_(std::move(id)), fields_(std::move(fields)) {}

  const DocumentId& id() const { return id_; }
  double creation_time() const;
  // The whole document, system fields included.
  const Object& fields() const { return fields_; }
  // A field by top-level name, or by dotted path into nested objects ("meta.owner");
  // undefined when missing.
  const Value& Get(std::string_view path) const;
  const Value& operator[](std::string_view field) const { return Get(field); }
  // The document as a Value (an object), and as JSON text (see value.h).
  Value ToValue() const { return Value(fields_); }
  std::string ToJson() const;

  friend bool operator==(const Document& a, const Document& b) { return a.fields_ == b.fields_; }

 private:
  DocumentId id_;
  Object fields_;
};

}  // namespace stagedb

#endif  // STAGEDB_DOCUMENT_H_
