#include "transactions/transaction_state.h"

#include <algorithm>
#include <atomic>
#include <iterator>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "queries/pagination_cursor.h"
#include "stagedb/key_codec.h"
#include "util/absl_view.h"
#include "util/unix_millis.h"
#include "values/document_codec.h"
#include "values/document_id_access.h"

namespace stagedb::internal {
namespace {

std::string IndexName(const IndexInfo& index) {
  return absl::StrFormat("%s.%s", index.table->name, index.name);
}

// The `by_id` key suffix (without the index prefix) of an id: also the value of secondary entries.
std::string IdSuffix(const DocumentId& id) { return EncodeKey(Value(id.text())); }

absl::Status LimitError(std::string_view what, size_t amount, size_t limit,
                        std::string_view option) {
  return absl::ResourceExhaustedError(
      absl::StrFormat("transaction %s %d, over the limit of %d (TransactionLimits::%s)", what,
                      amount, limit, option));
}

// Checks the fields given to Insert, Patch or Replace and drops what is not to be written:
// names are identifiers; values are storable. Undefined means "no such field" (as in Convex): an
// Insert or Replace drops it, a Patch removes the field. The system fields may be given to Patch
// and Replace only with the document's own values (so a document read can be written back).
absl::Status CheckUserFields(const TableInfo& table, Object& fields, const Object* existing) {
  for (auto it = fields.begin(); it != fields.end();) {
    const auto& [name, value] = *it;
    if (name == kIdField || name == kCreationTimeField) {
      if (existing != nullptr && existing->find(name)->second == value) {
        it = fields.erase(it);
        continue;
      }
      return absl::InvalidArgumentError(
          absl::StrFormat("table \"%s\": field \"%s\" is a system field: %s", table.name, name,
                          existing != nullptr ? "it cannot be changed" : "the database sets it"));
    }
    if (!IsIdentifier(name) || name[0] == '_') {
      return absl::InvalidArgumentError(absl::StrFormat(
          "table \"%s\": field name \"%s\" is not allowed: top-level field names are identifiers "
          "of at most 64 characters not starting with '_'%s",
          table.name, name,
          name.find('.') != std::string::npos
              ? "; to change a nested field, write its whole top-level field"
              : ""));
    }
    if (value.is_undefined() && existing == nullptr) {
      it = fields.erase(it);
      continue;
    }
    if (!value.is_undefined()) {
      if (absl::Status s = ValidateStoredValue(value, name, 2); !s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("table \"%s\": %s", table.name, s.message()));
      }
    }
    ++it;
  }
  return absl::OkStatus();
}

// Milliseconds since the Unix epoch with microsecond precision, strictly increasing within the
// process even when the clock stalls or steps back, so creation order is unambiguous.
double NextCreationTime() {
  static std::atomic<int64_t> last_micros{0};
  const int64_t now = absl::ToUnixMicros(absl::Now());
  int64_t last = last_micros.load(std::memory_order_relaxed);
  int64_t next;
  do {
    next = std::max(now, last + 1);
  } while (!last_micros.compare_exchange_weak(last, next, std::memory_order_relaxed));
  return static_cast<double>(next) / 1000.0;
}

// Iterates the overlay entries of [lo, hi) forwards or backwards.
class OverlayCursor {
 public:
  using Map = WriteSet;
  OverlayCursor(const Map& map, std::string_view lo, std::string_view hi, bool forward)
      : forward_(forward),
        first_(map.lower_bound(AbslView(lo))),
        last_(map.lower_bound(AbslView(hi))) {
    at_ = forward ? first_ : last_;
  }
  bool valid() const { return forward_ ? at_ != last_ : at_ != first_; }
  const Map::value_type& entry() const { return forward_ ? *at_ : *std::prev(at_); }
  void Advance() { forward_ ? ++at_ : --at_; }

 private:
  bool forward_;
  Map::const_iterator first_, last_, at_;
};

}  // namespace

TransactionState::TransactionState(const Catalog& catalog, StoreTxn& txn,
                                   const TransactionLimits& limits,
                                   std::optional<Timestamp> timestamp,
                                   std::string_view cursor_secret)
    : catalog_(catalog),
      txn_(txn),
      limits_(limits),
      timestamp_(timestamp),
      cursor_secret_(cursor_secret),
      transaction_(this) {}

Timestamp TransactionState::timestamp() const {
  // A snapshot's meta record cannot fail to read short of corruption, which the next data read
  // reports; 0 stands in.
  if (!timestamp_.has_value()) timestamp_ = txn_.CommitTimestamp().value_or(0);
  return *timestamp_;
}

// ---- accounting ----

absl::Status TransactionState::CountRead(size_t bytes) {
  ++documents_read_;
  bytes_read_ += bytes;
  if (documents_read_ > limits_.max_documents_read) {
    return LimitError("read documents:", documents_read_, limits_.max_documents_read,
                      "max_documents_read");
  }
  if (bytes_read_ > limits_.max_bytes_read) {
    return LimitError("read bytes:", bytes_read_, limits_.max_bytes_read, "max_bytes_read");
  }
  return absl::OkStatus();
}

absl::Status TransactionState::CountReadCall() {
  if (++read_calls_ > limits_.max_read_ranges) {
    return LimitError("read ranges:", read_calls_, limits_.max_read_ranges, "max_read_ranges");
  }
  return absl::OkStatus();
}

absl::Status TransactionState::CheckNotScanning() const {
  if (scanning_ == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(
      "a write was made while a query of the same transaction was running (from its Filter); "
      "collect the documents first, then write");
}

void TransactionState::Record(const IndexInfo& index, std::string_view start,
                              std::string_view end) {
  if (start >= end) return;
  start.remove_prefix(index.prefix.size());
  end.remove_prefix(index.prefix.size());
  // Repeated or adjacent reads (the same Get, consecutive pages) extend the last range.
  if (!read_set_.empty()) {
    ReadRange& last = read_set_.last();
    if (last.index_id == index.id && start <= last.end && end >= last.start) {
      if (start < last.start) last.start = std::string(start);
      if (end > last.end) last.end = std::string(end);
      return;
    }
  }
  read_set_.Add(ReadRange{.index_id = index.id,
                          .table = index.table->name,
                          .index = index.name,
                          .start = std::string(start),
                          .end = std::string(end)});
}

// ---- reads ----

absl::StatusOr<Document> TransactionState::DecodeStored(std::string_view bytes,
                                                        const TableInfo& table) {
  if (absl::Status s = CountRead(bytes.size()); !s.ok()) return s;
  absl::StatusOr<Object> fields = DecodeDocument(bytes);
  if (!fields.ok()) return fields.status();
  auto id = fields->find(kIdField);
  if (id == fields->end() || !id->second.is_string()) {
    return absl::DataLossError(
        absl::StrFormat("table \"%s\": a stored document has no _id", table.name));
  }
  return Document(DocumentIdAccess::FromStored(id->second.as_string(), table.number),
                  *std::move(fields));
}

absl::StatusOr<std::optional<Document>> TransactionState::LoadDocument(std::string_view by_id_key,
                                                                       const TableInfo& table) {
  if (auto it = written_.find(AbslView(by_id_key)); it != written_.end()) {
    if (absl::Status s = CountRead(0); !s.ok()) return s;
    return it->second;
  }
  absl::StatusOr<std::optional<std::string_view>> bytes = txn_.Get(StoreDb::kData, by_id_key);
  if (!bytes.ok()) return bytes.status();
  if (!bytes->has_value()) return std::nullopt;
  return DecodeStored(**bytes, table);
}

absl::StatusOr<Document> TransactionState::EntryDocument(const IndexInfo& index,
                                                         std::string_view key,
                                                         std::string_view value) {
  absl::StatusOr<std::optional<Document>> document;
  if (index.primary) {
    auto it = written_.find(AbslView(key));
    if (it == written_.end()) return DecodeStored(value, *index.table);
    document = it->second;
  } else {
    // Secondary entries written by earlier builds hold the `by_id` suffix as their value;
    // the key ends with it either way.
    const std::string_view id_suffix = IdSuffixOf(key);
    if (id_suffix.empty()) {
      return absl::DataLossError(
          absl::StrFormat("index %s has an entry whose key ends with no id", IndexName(index)));
    }
    std::string by_id_key = index.table->by_id->prefix;
    by_id_key.append(id_suffix);
    document = LoadDocument(by_id_key, *index.table);
  }
  if (!document.ok()) return document.status();
  if (!document->has_value()) {
    return absl::DataLossError(
        absl::StrFormat("index %s has an entry for a missing document", IndexName(index)));
  }
  return **std::move(document);
}

absl::StatusOr<std::optional<Document>> TransactionState::Get(const DocumentId& id,
                                                              bool include_deleted) {
  if (absl::Status s = CountReadCall(); !s.ok()) return s;
  absl::StatusOr<std::optional<Document>> document = Fetch(id);
  if (document.ok() && document->has_value() &&
      !Shows(*catalog_.FindTableByNumber(id.table_number()), (*document)->fields(),
             include_deleted)) {
    return std::nullopt;  // another scope's, or a deleted, document is as good as missing
  }
  return document;
}

bool TransactionState::Shows(const TableInfo& table, const Object& document,
                             bool include_deleted) const {
  if (!include_deleted && !table.def->soft_delete_field.empty() &&
      document.contains(table.def->soft_delete_field)) {
    return false;
  }
  return InScope(table, document);
}

const std::pair<const std::string, std::string>* TransactionState::OutOfScope(
    const TableInfo& table, const Object& document) const {
  if (!row_scope_.has_value()) return nullptr;
  for (const auto& entry : table.def->scope) {
    const std::string& expected = row_scope_->Claim(entry.first);
    auto it = document.find(entry.second);
    if (expected.empty() || it == document.end() || !it->second.is_string() ||
        it->second.as_string() != expected) {
      return &entry;
    }
  }
  return nullptr;
}

bool TransactionState::InScope(const TableInfo& table, const Object& document) const {
  return OutOfScope(table, document) == nullptr;
}

absl::Status TransactionState::CheckWriteScope(const TableInfo& table,
                                               const Object& document) const {
  const auto* outside = OutOfScope(table, document);
  if (outside == nullptr) return absl::OkStatus();
  const auto& [claim, field] = *outside;
  const std::string& expected = row_scope_->Claim(claim);
  if (expected.empty()) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "table \"%s\" is scoped by %s (field \"%s\"), and the caller has no %s: only an admin "
        "context may write it",
        table.name, claim, field, claim));
  }
  auto it = document.find(field);
  const std::string got = it == document.end() ? "missing" : DebugString(it->second, 60);
  return absl::PermissionDeniedError(
      absl::StrFormat("table \"%s\": field \"%s\" is %s, outside the caller's %s \"%s\"",
                      table.name, field, got, claim, expected));
}

bool TransactionState::Selects(const TableInfo& table, const QuerySpec& spec,
                               const Document& document) const {
  return Shows(table, document.fields(), spec.include_deleted) &&
         (!spec.filter || spec.filter(document));
}

absl::StatusOr<std::optional<Document>> TransactionState::Fetch(const DocumentId& id) {
  const TableInfo* table = catalog_.FindTableByNumber(id.table_number());
  if (table == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("id \"%s\" belongs to table number %d, which is not in the schema",
                        id.text(), id.table_number()));
  }
  const std::string key = table->by_id->prefix + IdSuffix(id);
  Record(*table->by_id, key, KeySuccessor(key));
  return LoadDocument(key, *table);
}

absl::Status TransactionState::Scan(const IndexInfo& index, std::string_view lo,
                                    std::string_view hi, SortOrder order, Visitor visit,
                                    std::string* last_key, bool* exhausted) {
  if (exhausted != nullptr) *exhausted = true;
  if (lo >= hi) return absl::OkStatus();
  // The visitor runs user code (a Filter); a write from there would move the overlay under
  // the cursor, so writes are refused until the scan ends.
  ++scanning_;
  struct EndScan {
    int& scanning;
    ~EndScan() { --scanning; }
  } end_scan{scanning_};
  const bool forward = order == SortOrder::kAsc;
  absl::StatusOr<StoreCursor> cursor = txn_.OpenCursor(StoreDb::kData);
  if (!cursor.ok()) return cursor.status();
  absl::StatusOr<bool> stored = forward ? cursor->SeekAtOrAfter(lo) : cursor->SeekBefore(hi);
  auto in_range = [&](const absl::StatusOr<bool>& found) {
    return found.ok() && *found && cursor->key() >= lo && cursor->key() < hi;
  };
  auto advance_stored = [&] { stored = forward ? cursor->Next() : cursor->Prev(); };
  OverlayCursor overlay(overlay_, lo, hi, forward);

  bool stopped = false;
  for (;;) {
    if (!stored.ok()) return stored.status();
    const bool have_stored = in_range(stored);
    if (!have_stored && !overlay.valid()) break;
    std::string_view key, value;
    bool present = true;
    // Take the next key in scan order; where both have it, the overlay (our own write) wins.
    int order_cmp = 0;
    if (have_stored && overlay.valid()) {
      order_cmp = cursor->key().compare(overlay.entry().first);
      if (!forward) order_cmp = -order_cmp;
    }
    if (have_stored && (!overlay.valid() || order_cmp < 0)) {
      key = cursor->key();
      value = cursor->value();
    } else {
      key = overlay.entry().first;
      present = overlay.entry().second.value.has_value();
      if (present) value = *overlay.entry().second.value;
    }
    bool go_on = true;
    if (present) {
      last_key->assign(key);
      absl::StatusOr<Document> document = EntryDocument(index, key, value);
      if (!document.ok()) return document.status();
      absl::StatusOr<bool> visited = visit(*std::move(document));
      if (!visited.ok()) return visited.status();
      go_on = *visited;
    }
    if (have_stored && (!overlay.valid() || order_cmp <= 0)) advance_stored();
    if (overlay.valid() && (!have_stored || order_cmp >= 0)) overlay.Advance();
    if (!go_on) {
      stopped = true;
      if (exhausted != nullptr) {
        if (!stored.ok()) return stored.status();
        *exhausted = !(in_range(stored) || overlay.valid());
        stopped = !*exhausted;
      }
      break;
    }
  }
  if (!stopped) {
    Record(index, lo, hi);
  } else if (forward) {
    Record(index, lo, KeySuccessor(*last_key));
  } else {
    Record(index, *last_key, hi);
  }
  return absl::OkStatus();
}

absl::StatusOr<TransactionState::KeyRange> TransactionState::Resolve(const QuerySpec& spec) const {
  const TableInfo* table = catalog_.FindTable(spec.table);
  if (table == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("unknown table \"%s\": it is not in the schema", spec.table));
  }
  const IndexInfo* index = catalog_.FindIndex(*table, spec.index);
  if (index == nullptr) {
    std::vector<std::string> names;
    for (const IndexInfo* i : table->indexes) names.push_back(i->name);
    return absl::InvalidArgumentError(
        absl::StrFormat("table \"%s\" has no index \"%s\" (its indexes: %s)", table->name,
                        spec.index, absl::StrJoin(names, ", ")));
  }
  const std::string index_desc =
      absl::StrFormat("index %s [%s]", IndexName(*index), absl::StrJoin(index->key_fields, ", "));
  const IndexRange& range = spec.range;
  if (range.eq_after_bound().has_value()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("range on %s: Eq(\"%s\") follows a bound; Eq must come before "
                        "Gt/Gte/Lt/Lte",
                        index_desc, *range.eq_after_bound()));
  }
  std::string prefix = index->prefix;
  const auto& equalities = range.equalities();
  for (size_t i = 0; i < equalities.size(); ++i) {
    if (i >= index->key_fields.size() || equalities[i].first != index->key_fields[i]) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "range on %s: Eq(\"%s\") is not allowed here; equalities must name the index fields in "
          "order%s",
          index_desc, equalities[i].first,
          i < index->key_fields.size() ? absl::StrFormat(" (expected \"%s\")", index->key_fields[i])
                                       : std::string()));
    }
    EncodeKey(equalities[i].second, &prefix);
  }
  KeyRange resolved{table, index, prefix, PrefixEnd(prefix)};
  const IndexBound* lower = nullptr;
  const IndexBound* upper = nullptr;
  for (const IndexBound& bound : range.bounds()) {
    const size_t position = equalities.size();
    if (position >= index->key_fields.size() || bound.field != index->key_fields[position]) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "range on %s: a bound on \"%s\" is not allowed here; bounds go on the field after the "
          "equalities%s",
          index_desc, bound.field,
          position < index->key_fields.size()
              ? absl::StrFormat(" (\"%s\")", index->key_fields[position])
              : std::string()));
    }
    const bool is_lower = bound.kind == BoundKind::kGt || bound.kind == BoundKind::kGte;
    const IndexBound*& slot = is_lower ? lower : upper;
    if (slot != nullptr) {
      return absl::InvalidArgumentError(absl::StrFormat("range on %s: two %s bounds on \"%s\"",
                                                        index_desc, is_lower ? "lower" : "upper",
                                                        bound.field));
    }
    slot = &bound;
    std::string key = prefix;
    EncodeKey(bound.value, &key);
    const bool inclusive_end = bound.kind == BoundKind::kGt || bound.kind == BoundKind::kLte;
    (is_lower ? resolved.lo : resolved.hi) = inclusive_end ? PrefixEnd(key) : key;
  }
  return resolved;
}

absl::StatusOr<std::vector<Document>> TransactionState::Run(const QuerySpec& spec, size_t limit) {
  absl::StatusOr<KeyRange> range = Resolve(spec);
  if (!range.ok()) return range.status();
  if (absl::Status s = CountReadCall(); !s.ok()) return s;
  std::vector<Document> results;
  std::string last_key;
  absl::Status status = Scan(
      *range->index, range->lo, range->hi, spec.order,
      [&](Document document) -> absl::StatusOr<bool> {
        if (Selects(*range->table, spec, document)) results.push_back(std::move(document));
        return limit == 0 || results.size() < limit;
      },
      &last_key);
  if (!status.ok()) return status;
  return results;
}

absl::StatusOr<PaginationResult> TransactionState::Paginate(const QuerySpec& spec,
                                                            const PaginationOptions& options) {
  absl::StatusOr<KeyRange> range = Resolve(spec);
  if (!range.ok()) return range.status();
  if (options.num_items == 0 && !options.end_cursor) {
    return absl::InvalidArgumentError(
        absl::StrFormat("Paginate on %s: num_items must be at least 1", IndexName(*range->index)));
  }
  // The fingerprint binds a cursor to this query: table, index, range and order.
  std::string fingerprint;
  for (std::string_view part :
       {std::string_view(range->table->name), std::string_view(range->index->name),
        std::string_view(range->lo), std::string_view(range->hi)}) {
    EncodeKey(Value(std::string(part)), &fingerprint);
  }
  fingerprint.push_back(spec.order == SortOrder::kAsc ? 'a' : 'd');

  auto decode = [&](const std::string& cursor,
                    std::string_view which) -> absl::StatusOr<CursorPosition> {
    absl::StatusOr<CursorPosition> position = DecodeCursor(cursor, fingerprint, cursor_secret_);
    if (!position.ok()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "Paginate on %s: %s: %s", IndexName(*range->index), which, position.status().message()));
    }
    return position;
  };
  PaginationResult result;
  std::optional<CursorPosition> end;
  if (options.end_cursor.has_value()) {
    absl::StatusOr<CursorPosition> position = decode(*options.end_cursor, "end_cursor");
    if (!position.ok()) return position.status();
    end = *std::move(position);
    // Up to and including the end cursor's key; a "done" end cursor: the rest of the range.
    if (!end->done && spec.order == SortOrder::kAsc) {
      range->hi = std::min(range->hi, KeySuccessor(end->key));
    } else if (!end->done) {
      range->lo = std::max(range->lo, end->key);
    }
  }
  if (options.cursor.has_value()) {
    absl::StatusOr<CursorPosition> position = decode(*options.cursor, "cursor");
    if (!position.ok()) return position.status();
    if (position->done) {
      result.is_done = true;
      result.continue_cursor = *options.cursor;
      return result;
    }
    // Resume strictly after the last key returned.
    if (spec.order == SortOrder::kAsc) {
      range->lo = std::max(range->lo, KeySuccessor(position->key));
    } else {
      range->hi = std::min(range->hi, position->key);
    }
  }
  std::string last_key;
  absl::Status status = Scan(
      *range->index, range->lo, range->hi, spec.order,
      [&](Document document) -> absl::StatusOr<bool> {
        if (Selects(*range->table, spec, document)) result.page.push_back(std::move(document));
        return end.has_value() || result.page.size() < options.num_items;
      },
      &last_key, &result.is_done);
  if (!status.ok()) return status;
  if (end.has_value()) {
    // The page ends where it ended before: the next page starts after the same key.
    result.is_done = end->done;
    result.continue_cursor = *options.end_cursor;
    return result;
  }
  result.continue_cursor =
      EncodeCursor(CursorPosition{.done = result.is_done, .key = result.is_done ? "" : last_key},
                   fingerprint, cursor_secret_);
  return result;
}

// ---- writes ----

absl::StatusOr<std::pair<const TableInfo*, Document>> TransactionState::GetExisting(
    const DocumentId& id) {
  if (absl::Status s = CheckNotScanning(); !s.ok()) return s;
  absl::StatusOr<std::optional<Document>> document = Fetch(id);
  if (!document.ok()) return document.status();
  const TableInfo* table = catalog_.FindTableByNumber(id.table_number());
  // Another scope's document is as good as missing (its existence is not revealed).
  if (!document->has_value() || !InScope(*table, (*document)->fields())) {
    return absl::NotFoundError(
        absl::StrFormat("table \"%s\": document \"%s\" does not exist%s", table->name, id.text(),
                        row_scope_.has_value() ? " in the caller's scope" : ""));
  }
  return std::make_pair(table, **std::move(document));
}

absl::StatusOr<DocumentId> TransactionState::Insert(std::string_view table_name, Object fields) {
  if (absl::Status s = CheckNotScanning(); !s.ok()) return s;
  const TableInfo* table = catalog_.FindTable(table_name);
  if (table == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("unknown table \"%s\": it is not in the schema", table_name));
  }
  if (absl::Status s = CheckUserFields(*table, fields, nullptr); !s.ok()) return s;
  const DocumentId id = DocumentId::Generate(table->number);
  fields[std::string(kIdField)] = Value(id.text());
  fields[std::string(kCreationTimeField)] = Value(NextCreationTime());
  if (absl::Status s = WriteDocument(*table, id, nullptr, std::move(fields)); !s.ok()) return s;
  return id;
}

absl::Status TransactionState::Patch(const DocumentId& id, Object fields) {
  absl::StatusOr<std::pair<const TableInfo*, Document>> existing = GetExisting(id);
  if (!existing.ok()) return existing.status();
  const auto& [table, old] = *existing;
  if (absl::Status s = CheckUserFields(*table, fields, &old.fields()); !s.ok()) return s;
  Object next = old.fields();
  for (auto& [name, value] : fields) {
    if (value.is_undefined()) {
      next.erase(name);
    } else {
      next[name] = std::move(value);
    }
  }
  return WriteDocument(*table, id, &old.fields(), std::move(next));
}

absl::Status TransactionState::Replace(const DocumentId& id, Object fields) {
  absl::StatusOr<std::pair<const TableInfo*, Document>> existing = GetExisting(id);
  if (!existing.ok()) return existing.status();
  const auto& [table, old] = *existing;
  if (absl::Status s = CheckUserFields(*table, fields, &old.fields()); !s.ok()) return s;
  for (auto it = fields.begin(); it != fields.end();) {
    it = it->second.is_undefined() ? fields.erase(it) : std::next(it);
  }
  for (std::string_view system : {kIdField, kCreationTimeField}) {
    fields[std::string(system)] = old[system];
  }
  return WriteDocument(*table, id, &old.fields(), std::move(fields));
}

absl::Status TransactionState::Delete(const DocumentId& id, bool purge) {
  absl::StatusOr<std::pair<const TableInfo*, Document>> existing = GetExisting(id);
  if (!existing.ok()) return existing.status();
  const auto& [table, old] = *existing;
  const std::string& soft_delete_field = table->def->soft_delete_field;
  if (soft_delete_field.empty() || purge) {
    return WriteDocument(*table, id, &old.fields(), std::nullopt);
  }
  // Soft delete: the document stays, marked with its (first) deletion time.
  if (old.fields().contains(soft_delete_field)) return absl::OkStatus();
  Object next = old.fields();
  next[soft_delete_field] = Value(NowUnixMillis());
  return WriteDocument(*table, id, &old.fields(), std::move(next));
}

absl::Status TransactionState::CheckUnique(const IndexInfo& index, const Object& document,
                                           std::string_view id_suffix) {
  const std::string prefix = index.KeyPrefixFor(document, index.declared_fields);
  std::string conflicting;
  std::string last_key;
  absl::Status status = Scan(
      index, prefix, PrefixEnd(prefix), SortOrder::kAsc,
      [&](Document other) -> absl::StatusOr<bool> {
        if (IdSuffix(other.id()) == id_suffix) return true;
        conflicting = other.id().text();
        return false;
      },
      &last_key);
  if (!status.ok()) return status;
  if (conflicting.empty()) return absl::OkStatus();
  return absl::AlreadyExistsError(
      absl::StrFormat("unique index %s already has a document with %s (document \"%s\")",
                      IndexName(index), index.DescribeValues(document), conflicting));
}

absl::Status TransactionState::WriteDocument(const TableInfo& table, const DocumentId& id,
                                             const Object* old, std::optional<Object> next) {
  if (IsSystemTable(table.name) && !system_writes_) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "table \"%s\" is a system table: only the engine writes it (schedule and cancel jobs "
        "with a Scheduler, store and delete files with FileStorage)",
        table.name));
  }
  std::string encoded;
  if (next.has_value()) {
    if (absl::Status s = CheckWriteScope(table, *next); !s.ok()) return s;
    std::vector<Violation> violations;
    // Converts in place (the numbers rule), so what is encoded and indexed below is the
    // converted document.
    table.def->document.CheckAndConvertDocument(
        &*next, [this](std::string_view name) { return catalog_.TableNumber(name); }, &violations);
    if (!violations.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("table \"%s\": field \"%s\": %s",
                                                        table.name, violations[0].path,
                                                        DescribeViolations(violations)));
    }
    EncodeDocument(*next, &encoded);
    if (encoded.size() > kMaxDocumentBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "table \"%s\": document \"%s\" is %d bytes encoded, over the limit of %d bytes",
          table.name, id.text(), encoded.size(), kMaxDocumentBytes));
    }
  }
  if (documents_written_ + 1 > limits_.max_documents_written) {
    return LimitError("wrote documents:", documents_written_ + 1, limits_.max_documents_written,
                      "max_documents_written");
  }
  if (bytes_written_ + encoded.size() > limits_.max_bytes_written) {
    return LimitError("wrote bytes:", bytes_written_ + encoded.size(), limits_.max_bytes_written,
                      "max_bytes_written");
  }
  const std::string id_suffix = IdSuffix(id);
  std::vector<std::string> next_keys;
  if (next.has_value()) {
    for (const IndexInfo* index : table.indexes) {
      next_keys.push_back(index->KeyFor(*next));
      if (absl::Status s = index->CheckKeySize(next_keys.back(), *next); !s.ok()) return s;
    }
    for (const IndexInfo* index : table.indexes) {
      if (!index->ConstrainsUnique(*next)) continue;
      // Unchanged unique fields cannot newly collide.
      if (old != nullptr && index->KeyPrefixFor(*old, index->declared_fields) ==
                                index->KeyPrefixFor(*next, index->declared_fields)) {
        continue;
      }
      if (absl::Status s = CheckUnique(*index, *next, id_suffix); !s.ok()) return s;
    }
  }

  // Every check passed: buffer the change. A secondary key the new version keeps is named in
  // the write set (the document it points at changed) but needs no storage write, unless this
  // transaction already changed it.
  ++documents_written_;
  bytes_written_ += encoded.size();
  const std::string by_id_key = table.by_id->prefix + id_suffix;
  std::vector<bool> kept(table.indexes.size(), false);
  if (old != nullptr) {
    for (size_t i = 0; i < table.indexes.size(); ++i) {
      std::string old_key = table.indexes[i]->KeyFor(*old);
      if (next.has_value() && !table.indexes[i]->primary && old_key == next_keys[i]) {
        kept[i] = true;
        overlay_.try_emplace(std::move(old_key), PendingEntry{std::string(), /*stored=*/true});
      } else {
        overlay_[std::move(old_key)] = PendingEntry{};
      }
    }
  }
  if (next.has_value()) {
    for (size_t i = 0; i < table.indexes.size(); ++i) {
      if (kept[i]) continue;
      overlay_[std::move(next_keys[i])] =
          PendingEntry{table.indexes[i]->primary ? std::move(encoded) : std::string()};
    }
    written_[by_id_key] = Document(id, *std::move(next));
  } else {
    written_[by_id_key] = std::nullopt;
  }
  return absl::OkStatus();
}

CommitKeys KeysOf(const WriteSet& writes) {
  CommitKeys keys;
  keys.reserve(writes.size());
  for (const auto& [key, entry] : writes) keys.push_back(key);
  return keys;
}

const ReadRange* FirstRangeWritten(const ReadSet& read_set, const std::vector<std::string>& keys) {
  // Storage keys order by index id (the big-endian prefix), then by the index key.
  auto before = [](const std::string& key, uint32_t index_id, std::string_view index_key) {
    const uint32_t id = IndexIdOf(key);
    if (id != index_id) return id < index_id;
    return std::string_view(key).substr(kIndexPrefixBytes) < index_key;
  };
  for (const ReadRange& range : read_set.ranges()) {
    auto key = std::partition_point(keys.begin(), keys.end(), [&](const std::string& k) {
      return before(k, range.index_id, range.start);
    });
    if (key != keys.end() && before(*key, range.index_id, range.end)) return &range;
  }
  return nullptr;
}

}  // namespace stagedb::internal
