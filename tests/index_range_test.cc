// Index ranges against a brute-force model: random documents (many ties, missing fields, mixed
// types, -0.0/+0.0, NaN, strings with NUL bytes) in a table with compound indexes, and thousands of
// random range queries (equality prefix, optional lower/upper bound, order, Take, Filter) whose
// results must equal, id for id and in order, the documents of an in-memory model sorted by
// stagedb::Compare on the index tuple (fields, then _creationTime, then _id). Also the errors of
// malformed ranges, unknown tables and indexes.
//
// The random seed is fixed; set STAGEDB_TEST_SEED to try another. It is printed on failure.

#include "stagedb/index_range.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stagedb/database.h"
#include "stagedb/query.h"
#include "stagedb/value.h"
#include "test_util.h"

namespace stagedb {
namespace {

constexpr char kSchema[] = R"json({
  "tables": {
    "t": {
      "fields": {
        "a": "int64",
        "b": {"type": "optional",
              "of": {"type": "union", "of": ["int64", "number", "string", "null"]}},
        "c": "string"
      },
      "indexes": [
        {"name": "by_a_b", "fields": ["a", "b"], "unique": false},
        {"name": "by_b", "fields": ["b"], "unique": false},
        {"name": "by_c_a", "fields": ["c", "a"], "unique": false}
      ]
    },
    "other": {
      "fields": {"a": "int64"},
      "indexes": []
    }
  }
})json";

uint64_t Seed() { return stagedb::testing::TestSeed(20240611); }

const Value kUndefined{Undefined{}};

const Value& FieldOf(const Object& doc, const std::string& field) {
  auto it = doc.find(field);
  return it == doc.end() ? kUndefined : it->second;
}

// The full key fields of each index, as the engine defines them.
struct IndexSpec {
  std::string name;
  std::vector<std::string> fields;
};

const std::vector<IndexSpec>& Indexes() {
  static const std::vector<IndexSpec> indexes = {
      {"by_id", {"_id"}},
      {"by_creation_time", {"_creationTime", "_id"}},
      {"by_a_b", {"a", "b", "_creationTime", "_id"}},
      {"by_b", {"b", "_creationTime", "_id"}},
      {"by_c_a", {"c", "a", "_creationTime", "_id"}},
  };
  return indexes;
}

const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

// Stored values of b (Undefined: the field is missing).
std::vector<Value> BDomain() {
  return {kUndefined,      Value(nullptr),  Value::Int64(-3), Value::Int64(-1),
          Value::Int64(0), Value::Int64(2), Value::Int64(7),  Value(-2.5),
          Value(-0.0),     Value(0.0),      Value(1.0),       Value(2.0),
          Value(3.5),      Value(kInf),     Value(-kInf),     Value(kNaN),
          Value(""),       Value("x"),      Value("xy"),      Value(std::string("x\0y", 3))};
}

std::vector<Value> CDomain() {
  return {Value(""),         Value("a"), Value(std::string("a\0", 2)), Value("ab"), Value("b"),
          Value("\xC3\xA9"), Value("zz")};
}

// Values for queries: the stored domains and values absent from the data (other types too).
std::vector<Value> QueryValues(const std::string& field) {
  std::vector<Value> values;
  auto add = [&](std::vector<Value> more) {
    values.insert(values.end(), more.begin(), more.end());
  };
  add({kUndefined, Value(nullptr), Value(true), Value(false), Value(Bytes{"q"}),
       Value(Array{Value::Int64(1)}), Value(Object{{"k", Value::Int64(1)}})});
  if (field == "a") {
    add({Value::Int64(-1), Value::Int64(0), Value::Int64(1), Value::Int64(2), Value::Int64(3),
         Value::Int64(4), Value::Int64(5), Value(2.0), Value(-0.0), Value("2")});
  } else if (field == "b") {
    add(BDomain());
    add({Value::Int64(-5), Value::Int64(1), Value(0.5), Value(-1e300), Value(1e300), Value("w"),
         Value("xz"), Value(std::string("x\0", 2)), Value(-kNaN)});
  } else if (field == "c") {
    add(CDomain());
    add({Value("aa"), Value("c"), Value(std::string("a\0\0", 3)), Value::Int64(3), Value(1.5)});
  } else if (field == "_creationTime") {
    add({Value(0.0), Value(-1.0), Value(1e15), Value::Int64(1), Value(kInf), Value("t")});
  } else if (field == "_id") {
    add({Value(""), Value("0"), Value("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"), Value::Int64(1)});
  }
  return values;
}

// Filters, as functions of a document's fields (the engine gets the same function).
using FilterFn = std::function<bool(const Object&)>;
struct NamedFilter {
  std::string name;
  FilterFn fn;
};
const std::vector<NamedFilter>& Filters() {
  static const std::vector<NamedFilter> filters = {
      {"a even",
       [](const Object& d) {
         const Value& a = FieldOf(d, "a");
         return a.is_int64() && a.as_int64() % 2 == 0;
       }},
      {"b missing", [](const Object& d) { return FieldOf(d, "b").is_undefined(); }},
      {"c != \"a\"", [](const Object& d) { return Compare(FieldOf(d, "c"), Value("a")) != 0; }},
      {"b is a number",
       [](const Object& d) {
         const Value& b = FieldOf(d, "b");
         return b.is_int64() || b.is_float64();
       }},
      {"none", [](const Object&) { return false; }},
  };
  return filters;
}

int CompareTuples(const std::vector<Value>& x, const std::vector<Value>& y) {
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    if (int c = Compare(x[i], y[i]); c != 0) return c;
  }
  return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
}

std::vector<Value> Tuple(const Object& doc, const IndexSpec& index) {
  std::vector<Value> tuple;
  for (const std::string& field : index.fields) tuple.push_back(FieldOf(doc, field));
  return tuple;
}

using Model = std::map<std::string, Object>;  // id text -> the whole document

// A random query and its description.
struct RandomQuery {
  const IndexSpec* index = nullptr;
  std::vector<std::pair<std::string, Value>> eqs;
  std::optional<std::pair<BoundKind, Value>> lower, upper;
  bool upper_first = false;  // the order the bounds are chained in
  SortOrder order = SortOrder::kAsc;
  int terminal = 0;  // 0 Collect, 1 Take(take), 2 First
  size_t take = 0;
  const NamedFilter* filter = nullptr;

  IndexRange Range() const {
    IndexRange range;
    for (const auto& [field, value] : eqs) range.Eq(field, value);
    const std::string& field = index->fields[eqs.size() < index->fields.size() ? eqs.size() : 0];
    auto add = [&](const std::optional<std::pair<BoundKind, Value>>& bound) {
      if (!bound) return;
      switch (bound->first) {
        case BoundKind::kGt:
          range.Gt(field, bound->second);
          break;
        case BoundKind::kGte:
          range.Gte(field, bound->second);
          break;
        case BoundKind::kLt:
          range.Lt(field, bound->second);
          break;
        case BoundKind::kLte:
          range.Lte(field, bound->second);
          break;
      }
    };
    if (upper_first) {
      add(upper);
      add(lower);
    } else {
      add(lower);
      add(upper);
    }
    return range;
  }

  std::string Describe() const {
    static const char* kKinds[] = {"Gt", "Gte", "Lt", "Lte"};
    std::ostringstream out;
    out << "t." << index->name << " range:";
    for (const auto& [field, value] : eqs)
      out << " Eq(" << field << ", " << DebugString(value) << ")";
    const std::string& field = index->fields[eqs.size() < index->fields.size() ? eqs.size() : 0];
    for (const auto* bound : {&lower, &upper}) {
      if (*bound) {
        out << " " << kKinds[static_cast<int>((*bound)->first)] << "(" << field << ", "
            << DebugString((*bound)->second) << ")";
      }
    }
    out << (upper_first ? " [upper chained first]" : "")
        << (order == SortOrder::kAsc ? " asc" : " desc");
    out << (terminal == 0   ? " Collect()"
            : terminal == 1 ? " Take(" + std::to_string(take) + ")"
                            : " First()");
    if (filter != nullptr) out << " Filter(" << filter->name << ")";
    return out.str();
  }

  std::vector<std::string> Expected(const Model& model) const {
    std::vector<std::pair<std::vector<Value>, const Object*>> matches;
    const size_t k = eqs.size();
    for (const auto& [id, doc] : model) {
      std::vector<Value> tuple = Tuple(doc, *index);
      bool ok = true;
      for (size_t i = 0; i < k && ok; ++i) ok = Compare(tuple[i], eqs[i].second) == 0;
      if (ok && lower) {
        const int c = Compare(tuple[k], lower->second);
        ok = lower->first == BoundKind::kGt ? c > 0 : c >= 0;
      }
      if (ok && upper) {
        const int c = Compare(tuple[k], upper->second);
        ok = upper->first == BoundKind::kLt ? c < 0 : c <= 0;
      }
      if (ok) matches.emplace_back(std::move(tuple), &doc);
    }
    std::sort(matches.begin(), matches.end(),
              [](const auto& x, const auto& y) { return CompareTuples(x.first, y.first) < 0; });
    if (order == SortOrder::kDesc) std::reverse(matches.begin(), matches.end());
    std::vector<std::string> ids;
    for (const auto& [tuple, doc] : matches) {
      if (filter != nullptr && !filter->fn(*doc)) continue;
      ids.push_back(FieldOf(*doc, "_id").as_string());
    }
    const size_t limit = terminal == 0 ? ids.size() : terminal == 1 ? take : 1;
    if (ids.size() > limit) ids.resize(limit);
    return ids;
  }

  absl::StatusOr<std::vector<std::string>> Run(Reader& reader) const {
    Query query = reader.Table("t");
    query.WithIndex(index->name, Range()).Order(order);
    if (filter != nullptr) {
      query.Filter([fn = filter->fn](const Document& d) { return fn(d.fields()); });
    }
    std::vector<Document> docs;
    if (terminal == 0 || terminal == 1) {
      absl::StatusOr<std::vector<Document>> result =
          terminal == 0 ? query.Collect() : query.Take(take);
      if (!result.ok()) return result.status();
      docs = *std::move(result);
    } else {
      absl::StatusOr<std::optional<Document>> first = query.First();
      if (!first.ok()) return first.status();
      if (first->has_value()) docs.push_back(**first);
    }
    std::vector<std::string> ids;
    for (const Document& d : docs) ids.push_back(d.id().text());
    return ids;
  }
};

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}

  size_t Uniform(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  bool Chance(double p) { return std::bernoulli_distribution(p)(rng_); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Uniform(v.size())];
  }

  Object RandomFields() {
    Object fields;
    fields["a"] = Value::Int64(static_cast<int64_t>(Uniform(5)));
    const Value& b = Pick(b_domain_);
    if (!b.is_undefined() && !Chance(0.15)) fields["b"] = b;  // b is often missing
    fields["c"] = Pick(c_domain_);
    return fields;
  }

  // A patch: some of a, b, c changed; b may be removed (Undefined).
  Object RandomPatch() {
    Object patch;
    if (Chance(0.5)) patch["a"] = Value::Int64(static_cast<int64_t>(Uniform(5)));
    if (Chance(0.6)) patch["b"] = Pick(b_domain_);  // Undefined removes it
    if (Chance(0.4)) patch["c"] = Pick(c_domain_);
    return patch;
  }

  Value QueryValue(const std::string& field, const Model& model,
                   const std::vector<std::string>& ids) {
    if (!ids.empty() && Chance(0.5)) {
      return FieldOf(model.at(ids[Uniform(ids.size())]), field);
    }
    if (field == "_creationTime" && !ids.empty() && Chance(0.6)) {
      // Next to an existing creation time.
      const double t = FieldOf(model.at(ids[Uniform(ids.size())]), field).as_float64();
      return Value(t + (Chance(0.5) ? 0.0005 : -0.0005));
    }
    if (field == "_id" && !ids.empty() && Chance(0.6)) {
      std::string id = ids[Uniform(ids.size())];
      return Value(id.substr(0, 1 + Uniform(id.size())));  // a prefix (or the whole id)
    }
    auto it = query_values_.find(field);
    if (it == query_values_.end()) it = query_values_.emplace(field, QueryValues(field)).first;
    return Pick(it->second);
  }

  RandomQuery MakeQuery(const Model& model, const std::vector<std::string>& ids) {
    RandomQuery q;
    q.index = &Pick(Indexes());
    const size_t n = q.index->fields.size();
    // Equalities: usually copied from one existing document, so that they match.
    size_t k = Uniform(n + 1);
    if (k == n && Chance(0.7)) k = Uniform(n);  // full-key equality is rarer
    const bool from_doc = !ids.empty() && Chance(0.75);
    const Object* doc = from_doc ? &model.at(ids[Uniform(ids.size())]) : nullptr;
    for (size_t i = 0; i < k; ++i) {
      const std::string& field = q.index->fields[i];
      q.eqs.emplace_back(field,
                         doc != nullptr ? FieldOf(*doc, field) : QueryValue(field, model, ids));
    }
    if (k < n) {
      const std::string& field = q.index->fields[k];
      switch (Uniform(3)) {
        case 1:
          q.lower.emplace(BoundKind::kGt, QueryValue(field, model, ids));
          break;
        case 2:
          q.lower.emplace(BoundKind::kGte, QueryValue(field, model, ids));
          break;
      }
      switch (Uniform(3)) {
        case 1:
          q.upper.emplace(BoundKind::kLt, QueryValue(field, model, ids));
          break;
        case 2:
          q.upper.emplace(BoundKind::kLte, QueryValue(field, model, ids));
          break;
      }
      q.upper_first = Chance(0.3);
    }
    q.order = Chance(0.5) ? SortOrder::kAsc : SortOrder::kDesc;
    q.terminal = static_cast<int>(Uniform(3));
    q.take = 1 + Uniform(12);
    if (Chance(0.25)) q.filter = &Pick(Filters());
    return q;
  }

 private:
  std::mt19937_64 rng_;
  std::vector<Value> b_domain_ = BDomain();
  std::vector<Value> c_domain_ = CDomain();
  std::map<std::string, std::vector<Value>> query_values_;
};

std::vector<std::string> Ids(const Model& model) {
  std::vector<std::string> ids;
  for (const auto& [id, doc] : model) ids.push_back(id);
  return ids;
}

// Applies random writes through `tx` and to `model`: inserts, patches, replaces and deletes.
absl::Status RandomWrites(Transaction& tx, Generator& gen, Model& model, int inserts, int patches,
                          int replaces, int deletes) {
  for (int i = 0; i < inserts; ++i) {
    Object fields = gen.RandomFields();
    absl::StatusOr<DocumentId> id = tx.Insert("t", fields);
    if (!id.ok()) return id.status();
    absl::StatusOr<std::optional<Document>> doc = tx.Get(*id);
    if (!doc.ok()) return doc.status();
    if (!doc->has_value()) return absl::InternalError("inserted document not found");
    const Value& ct = (**doc)["_creationTime"];
    if (!ct.is_float64()) return absl::InternalError("_creationTime is not a float64");
    fields["_id"] = Value(id->text());
    fields["_creationTime"] = ct;
    model[id->text()] = std::move(fields);
  }
  std::vector<std::string> ids = Ids(model);
  for (int i = 0; i < patches && !ids.empty(); ++i) {
    const std::string& id_text = ids[gen.Uniform(ids.size())];
    absl::StatusOr<DocumentId> id = DocumentId::Parse(id_text);
    if (!id.ok()) return id.status();
    Object patch = gen.RandomPatch();
    if (absl::Status s = tx.Patch(*id, patch); !s.ok()) return s;
    Object& doc = model[id_text];
    for (const auto& [field, value] : patch) {
      if (value.is_undefined()) {
        doc.erase(field);
      } else {
        doc[field] = value;
      }
    }
  }
  for (int i = 0; i < replaces && !ids.empty(); ++i) {
    const std::string& id_text = ids[gen.Uniform(ids.size())];
    absl::StatusOr<DocumentId> id = DocumentId::Parse(id_text);
    if (!id.ok()) return id.status();
    Object fields = gen.RandomFields();
    if (absl::Status s = tx.Replace(*id, fields); !s.ok()) return s;
    Object& doc = model[id_text];
    fields["_id"] = doc["_id"];
    fields["_creationTime"] = doc["_creationTime"];
    doc = std::move(fields);
  }
  for (int i = 0; i < deletes && !ids.empty(); ++i) {
    const size_t at = gen.Uniform(ids.size());
    absl::StatusOr<DocumentId> id = DocumentId::Parse(ids[at]);
    if (!id.ok()) return id.status();
    if (absl::Status s = tx.Delete(*id); !s.ok()) return s;
    model.erase(ids[at]);
    ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(at));
  }
  return absl::OkStatus();
}

// Every document of the table, by id, as the engine sees it through `reader`.
absl::StatusOr<Model> ReadAll(Reader& reader) {
  absl::StatusOr<std::vector<Document>> docs = reader.Table("t").WithIndex("by_id").Collect();
  if (!docs.ok()) return docs.status();
  Model all;
  for (const Document& d : *docs) all[d.id().text()] = d.fields();
  return all;
}

// Values compare with Compare (NaN == NaN, -0.0 != 0.0), field by field.
bool SameModel(const Model& x, const Model& y, std::string* why) {
  if (x.size() != y.size()) {
    *why = "sizes " + std::to_string(x.size()) + " vs " + std::to_string(y.size());
    return false;
  }
  for (auto xi = x.begin(), yi = y.begin(); xi != x.end(); ++xi, ++yi) {
    if (xi->first != yi->first) {
      *why = "ids " + xi->first + " vs " + yi->first;
      return false;
    }
    if (Compare(Value(xi->second), Value(yi->second)) != 0) {
      *why = "document " + xi->first + ": " + DebugString(Value(xi->second), 300) + " vs " +
             DebugString(Value(yi->second), 300);
      return false;
    }
  }
  return true;
}

// How many checked queries returned something, and how many returned more than one document
// (so that the test does not pass on mostly empty results).
struct QueryStats {
  int queries = 0;
  int non_empty = 0;
  int several = 0;
};

// Runs `count` random queries through `reader` and checks each against `model`.
void CheckQueries(Reader& reader, Generator& gen, const Model& model, int count,
                  QueryStats* stats) {
  const std::vector<std::string> ids = Ids(model);
  for (int i = 0; i < count; ++i) {
    const RandomQuery q = gen.MakeQuery(model, ids);
    INFO("query #" << i << ": " << q.Describe());
    absl::StatusOr<std::vector<std::string>> got = q.Run(reader);
    INFO("status: " << got.status().ToString());
    REQUIRE(got.ok());
    const std::vector<std::string> expected = q.Expected(model);
    ++stats->queries;
    stats->non_empty += expected.empty() ? 0 : 1;
    stats->several += expected.size() > 1 ? 1 : 0;
    if (*got != expected) {
      std::ostringstream detail;
      detail << "expected " << expected.size() << " ids, got " << got->size() << "\n";
      for (size_t j = 0; j < std::max(expected.size(), got->size()); ++j) {
        auto describe = [&](const std::vector<std::string>& v) -> std::string {
          if (j >= v.size()) return "-";
          auto it = model.find(v[j]);
          return v[j] + " " +
                 (it == model.end() ? "(not in model)" : DebugString(Value(it->second), 200));
        };
        detail << "  [" << j << "] expected " << describe(expected) << "\n        got      "
               << describe(*got) << "\n";
      }
      INFO(detail.str());
      CHECK(*got == expected);
      return;
    }
  }
}

TEST_CASE("index ranges match a brute-force model", "[index_range]") {
  const uint64_t seed = Seed();
  INFO("seed " << seed << " (set STAGEDB_TEST_SEED to change)");
  Generator gen(seed);
  testing::TempDir dir;
  auto db = Database::Open({.path = dir.path(), .schema_json = kSchema});
  INFO("open: " << db.status().ToString());
  REQUIRE(db.ok());
  Model model;

  // Several mutations of inserts, then patches, replaces and deletes across more mutations.
  auto mutate = [&](int inserts, int patches, int replaces, int deletes) {
    Model next;
    absl::Status status = (*db)->Mutate([&](Transaction& tx) -> absl::Status {
      next = model;  // the function may run more than once
      return RandomWrites(tx, gen, next, inserts, patches, replaces, deletes);
    });
    INFO("mutation: " << status.ToString());
    REQUIRE(status.ok());
    model = std::move(next);
  };
  for (int i = 0; i < 6; ++i) mutate(50, 0, 0, 0);
  mutate(0, 60, 10, 40);
  mutate(40, 30, 10, 20);
  mutate(0, 40, 0, 30);
  mutate(20, 10, 5, 10);
  REQUIRE(model.size() > 200);

  SECTION("the stored documents equal the model") {
    absl::StatusOr<Model> stored = (*db)->Query([](Reader& r) { return ReadAll(r); });
    REQUIRE(stored.ok());
    std::string why;
    const bool same = SameModel(*stored, model, &why);
    INFO(why);
    CHECK(same);
  }

  SECTION("random queries on snapshots") {
    QueryStats stats;
    for (int batch = 0; batch < 60; ++batch) {
      absl::Status status = (*db)->Query([&](Reader& reader) -> absl::Status {
        CheckQueries(reader, gen, model, 100, &stats);
        return absl::OkStatus();
      });
      REQUIRE(status.ok());
    }
    INFO(stats.queries << " queries, " << stats.non_empty << " non-empty, " << stats.several
                       << " with several documents");
    CHECK(stats.non_empty * 2 > stats.queries);
    CHECK(stats.several * 6 > stats.queries);
  }

  SECTION("random queries inside a mutation see its own writes") {
    // Writes buffered in the transaction (inserts, patches that move index entries, deletes)
    // merge with the snapshot in every scan, in both directions. The mutation is then abandoned.
    QueryStats stats;
    for (int round = 0; round < 4; ++round) {
      absl::Status status = (*db)->Mutate([&](Transaction& tx) -> absl::Status {
        Model mine = model;
        if (absl::Status s = RandomWrites(tx, gen, mine, 25, 40, 10, 30); !s.ok()) return s;
        CheckQueries(tx, gen, mine, 300, &stats);
        return absl::CancelledError("test: abandon the mutation");
      });
      REQUIRE(status.code() == absl::StatusCode::kCancelled);
    }
    INFO(stats.queries << " queries, " << stats.non_empty << " non-empty");
    CHECK(stats.non_empty * 2 > stats.queries);
    absl::StatusOr<Model> stored = (*db)->Query([](Reader& r) { return ReadAll(r); });
    REQUIRE(stored.ok());
    std::string why;
    const bool same = SameModel(*stored, model, &why);
    INFO("the abandoned mutations left changes: " << why);
    CHECK(same);
  }
}

// ---- errors ----

struct ErrorFixture {
  testing::TempDir dir;
  std::unique_ptr<Database> db;
  ErrorFixture() {
    auto opened = Database::Open({.path = dir.path(), .schema_json = kSchema});
    REQUIRE(opened.ok());
    db = *std::move(opened);
    absl::Status s = db->Mutate([](Transaction& tx) -> absl::Status {
      for (int i = 0; i < 5; ++i) {
        absl::StatusOr<DocumentId> id =
            tx.Insert("t", {{"a", Value::Int64(i)}, {"b", Value::Int64(i)}, {"c", Value("c")}});
        if (!id.ok()) return id.status();
      }
      return absl::OkStatus();
    });
    REQUIRE(s.ok());
  }

  // The status of running each terminal call on the query.
  std::vector<absl::Status> RunAll(const std::string& table, const std::string& index,
                                   const IndexRange& range) {
    std::vector<absl::Status> statuses;
    absl::Status s = db->Query([&](Reader& r) -> absl::Status {
      auto q = [&] { return r.Table(table).WithIndex(index, range); };
      statuses.push_back(q().Collect().status());
      statuses.push_back(q().Take(3).status());
      statuses.push_back(q().First().status());
      statuses.push_back(q().Unique().status());
      statuses.push_back(q().Paginate({.num_items = 2}).status());
      return absl::OkStatus();
    });
    REQUIRE(s.ok());
    return statuses;
  }
};

void ExpectInvalid(const std::vector<absl::Status>& statuses,
                   const std::vector<std::string>& mentions) {
  const char* kCalls[] = {"Collect", "Take", "First", "Unique", "Paginate"};
  for (size_t i = 0; i < statuses.size(); ++i) {
    INFO(kCalls[i] << "(): " << statuses[i].ToString());
    CHECK(statuses[i].code() == absl::StatusCode::kInvalidArgument);
    const std::string message(statuses[i].message());
    for (const std::string& mention : mentions) {
      INFO("the message should mention " << mention);
      CHECK(message.find(mention) != std::string::npos);
    }
  }
}

TEST_CASE("malformed ranges are InvalidArgument naming the index and the field", "[index_range]") {
  ErrorFixture f;

  SECTION("a bound before an equality") {
    ExpectInvalid(f.RunAll("t", "by_a_b", Gte("a", Value::Int64(1)).Eq("b", Value::Int64(2))),
                  {"by_a_b", "\"b\""});
  }
  SECTION("an equality on a field out of index order") {
    ExpectInvalid(f.RunAll("t", "by_a_b", Eq("b", Value::Int64(1))), {"by_a_b", "\"b\""});
    ExpectInvalid(f.RunAll("t", "by_c_a", Eq("a", Value::Int64(1)).Eq("c", Value("c"))),
                  {"by_c_a", "\"a\""});
  }
  SECTION("an equality on a field not in the index") {
    ExpectInvalid(f.RunAll("t", "by_b", Eq("c", Value("c"))), {"by_b", "\"c\""});
  }
  SECTION("more equalities than index fields") {
    ExpectInvalid(f.RunAll("t", "by_b",
                           Eq("b", Value::Int64(1))
                               .Eq("_creationTime", Value(1.0))
                               .Eq("_id", Value("x"))
                               .Eq("extra", Value::Int64(1))),
                  {"by_b", "\"extra\""});
  }
  SECTION("a bound on a field that is not next") {
    ExpectInvalid(f.RunAll("t", "by_a_b", Gte("b", Value::Int64(1))), {"by_a_b", "\"b\""});
    ExpectInvalid(f.RunAll("t", "by_a_b", Eq("a", Value::Int64(1)).Lt("a", Value::Int64(3))),
                  {"by_a_b", "\"a\""});
    ExpectInvalid(f.RunAll("t", "by_c_a", Eq("c", Value("c")).Gt("b", Value::Int64(3))),
                  {"by_c_a", "\"b\""});
    ExpectInvalid(f.RunAll("t", "by_id", Eq("_id", Value("x")).Gt("_id", Value("y"))),
                  {"by_id", "\"_id\""});
  }
  SECTION("two lower bounds") {
    ExpectInvalid(f.RunAll("t", "by_a_b", Gt("a", Value::Int64(1)).Gte("a", Value::Int64(2))),
                  {"by_a_b", "\"a\""});
    ExpectInvalid(f.RunAll("t", "by_b", Gte("b", Value::Int64(1)).Gte("b", Value::Int64(1))),
                  {"by_b", "\"b\""});
  }
  SECTION("two upper bounds") {
    ExpectInvalid(f.RunAll("t", "by_c_a",
                           Eq("c", Value("c")).Lt("a", Value::Int64(1)).Lte("a", Value::Int64(4))),
                  {"by_c_a", "\"a\""});
  }
  SECTION("unknown index") {
    ExpectInvalid(f.RunAll("t", "by_nope", IndexRange()), {"\"t\"", "by_nope"});
    // An index of another table is unknown here.
    ExpectInvalid(f.RunAll("other", "by_a_b", IndexRange()), {"\"other\"", "by_a_b"});
  }
  SECTION("unknown table") {
    ExpectInvalid(f.RunAll("nope", "by_id", IndexRange()), {"\"nope\""});
    ExpectInvalid(f.RunAll("nope", "by_creation_time", IndexRange()), {"\"nope\""});
  }
  SECTION("errors inside a mutation change nothing and the transaction goes on") {
    absl::Status s = f.db->Mutate([&](Transaction& tx) -> absl::Status {
      absl::StatusOr<std::vector<Document>> bad =
          tx.Table("t").WithIndex("by_a_b", Eq("b", Value::Int64(1))).Collect();
      CHECK(bad.status().code() == absl::StatusCode::kInvalidArgument);
      absl::StatusOr<std::vector<Document>> good =
          tx.Table("t").WithIndex("by_a_b", Eq("a", Value::Int64(1))).Collect();
      CHECK(good.ok());
      CHECK(good->size() == 1);
      return absl::OkStatus();
    });
    CHECK(s.ok());
  }
}

TEST_CASE("system fields: _creationTime equality and by_id ranges", "[index_range]") {
  testing::TempDir dir;
  auto db = Database::Open({.path = dir.path(), .schema_json = kSchema});
  REQUIRE(db.ok());
  std::vector<Document> docs;
  for (int m = 0; m < 3; ++m) {
    absl::Status s = (*db)->Mutate([&](Transaction& tx) -> absl::Status {
      for (int i = 0; i < 5; ++i) {
        absl::StatusOr<DocumentId> id = tx.Insert("t", {{"a", Value::Int64(i)}, {"c", Value("c")}});
        if (!id.ok()) return id.status();
      }
      return absl::OkStatus();
    });
    REQUIRE(s.ok());
  }
  absl::StatusOr<std::vector<Document>> all =
      (*db)->Query([](Reader& r) { return r.Table("t").Collect(); });
  REQUIRE(all.ok());
  docs = *all;
  REQUIRE(docs.size() == 15);

  // Collect() without an index walks by_creation_time: ascending (creation time, id).
  for (size_t i = 1; i < docs.size(); ++i) {
    const std::vector<Value> x = {docs[i - 1]["_creationTime"], Value(docs[i - 1].id().text())};
    const std::vector<Value> y = {docs[i]["_creationTime"], Value(docs[i].id().text())};
    CHECK(CompareTuples(x, y) < 0);
  }

  SECTION("Eq on _creationTime via by_creation_time") {
    for (const Document& doc : docs) {
      const Value ct = doc["_creationTime"];
      REQUIRE(ct.is_float64());
      absl::StatusOr<std::vector<Document>> found = (*db)->Query([&](Reader& r) {
        return r.Table("t").WithIndex("by_creation_time", Eq("_creationTime", ct)).Collect();
      });
      REQUIRE(found.ok());
      size_t expected = 0;
      for (const Document& other : docs) {
        if (Compare(other["_creationTime"], ct) == 0) ++expected;
      }
      CHECK(found->size() == expected);
      bool contains = false;
      for (const Document& d : *found) contains = contains || d.id() == doc.id();
      CHECK(contains);
      // The creation time and id together name exactly one document.
      absl::StatusOr<std::optional<Document>> unique = (*db)->Query([&](Reader& r) {
        return r.Table("t")
            .WithIndex("by_creation_time", Eq("_creationTime", ct).Eq("_id", doc.id().text()))
            .Unique();
      });
      REQUIRE(unique.ok());
      REQUIRE(unique->has_value());
      CHECK((*unique)->id() == doc.id());
    }
    // An int64 with the same number is another value: it matches nothing.
    absl::StatusOr<std::vector<Document>> none = (*db)->Query([&](Reader& r) {
      return r.Table("t")
          .WithIndex("by_creation_time",
                     Eq("_creationTime",
                        Value::Int64(static_cast<int64_t>(docs[0]["_creationTime"].as_float64()))))
          .Collect();
    });
    REQUIRE(none.ok());
    CHECK(none->empty());
  }

  SECTION("by_id ranges on _id") {
    std::vector<std::string> ids;
    for (const Document& d : docs) ids.push_back(d.id().text());
    std::sort(ids.begin(), ids.end());
    auto run = [&](IndexRange range, SortOrder order) {
      absl::StatusOr<std::vector<Document>> found = (*db)->Query([&](Reader& r) {
        return r.Table("t").WithIndex("by_id", std::move(range)).Order(order).Collect();
      });
      REQUIRE(found.ok());
      std::vector<std::string> got;
      for (const Document& d : *found) got.push_back(d.id().text());
      return got;
    };
    CHECK(run(IndexRange(), SortOrder::kAsc) == ids);
    std::vector<std::string> middle(ids.begin() + 3, ids.begin() + 9);
    CHECK(run(Gte("_id", ids[3]).Lt("_id", ids[9]), SortOrder::kAsc) == middle);
    CHECK(run(Gt("_id", ids[2]).Lte("_id", ids[8]), SortOrder::kAsc) == middle);
    std::reverse(middle.begin(), middle.end());
    CHECK(run(Lt("_id", ids[9]).Gte("_id", ids[3]), SortOrder::kDesc) == middle);
    CHECK(run(Eq("_id", ids[5]), SortOrder::kAsc) == std::vector<std::string>{ids[5]});
    CHECK(run(Eq("_id", ids[5] + "0"), SortOrder::kAsc).empty());
    // A proper prefix of an id is a smaller string than the id.
    const std::string prefix = ids[5].substr(0, ids[5].size() - 1);
    std::vector<std::string> expected;
    for (const std::string& id : ids) {
      if (id >= prefix && id < ids[6]) expected.push_back(id);
    }
    CHECK(run(Gte("_id", prefix).Lt("_id", ids[6]), SortOrder::kAsc) == expected);
    CHECK(std::find(expected.begin(), expected.end(), ids[5]) != expected.end());
  }
}

}  // namespace
}  // namespace stagedb
