// Read sets: what each read records, exactly (DESIGN "Reactivity"). A Get is a one-key interval
// on by_id even for a missing document; a scan records only the part of its range it consumed
// (Take(5) ends right after the fifth key, a desc scan starts at its last key); filtered-out
// documents count as read; Unique() reads at most two entries; a unique-index probe during Insert
// records the probed prefix. Keys are index keys without the index prefix: EncodeKey of the index
// fields, then of _creationTime and _id.

#include "stagedb/read_set.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "stagedb/database.h"
#include "stagedb/index_range.h"
#include "stagedb/key_codec.h"
#include "stagedb/query.h"
#include "stagedb/value.h"
#include "test_util.h"

namespace stagedb {
namespace {

constexpr char kSchema[] = R"json({
  "tables": {
    "r": {
      "fields": {"a": "int64", "g": "string", "n": {"type": "optional", "of": "string"}},
      "indexes": [
        {"name": "by_a", "fields": ["a"], "unique": false},
        {"name": "by_g_a", "fields": ["g", "a"], "unique": false}
      ]
    },
    "u": {
      "fields": {"email": "string", "name": "string"},
      "indexes": [{"name": "by_email", "fields": ["email"], "unique": true}]
    }
  }
})json";

std::string Enc(std::initializer_list<Value> values) {
  std::string key;
  for (const Value& v : values) EncodeKey(v, &key);
  return key;
}

// A copy of a recorded range whose names outlive nothing.
struct Range {
  uint32_t index_id;
  std::string table, index, start, end;
  bool Contains(const std::string& key) const { return key >= start && key < end; }
};

std::vector<Range> Ranges(const ReadSet& set) {
  std::vector<Range> out;
  for (const ReadRange& r : set.ranges()) {
    out.push_back({r.index_id, std::string(r.table), std::string(r.index), r.start, r.end});
  }
  return out;
}

std::string Hex(const std::string& bytes) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::string Describe(const std::vector<Range>& ranges) {
  std::string out;
  for (const Range& r : ranges) {
    out += r.table + "." + r.index + " #" + std::to_string(r.index_id) + " [" + Hex(r.start) +
           ", " + Hex(r.end) + ")\n";
  }
  return out;
}

struct Doc {
  std::string id;
  int64_t a;
  std::string g;
  double ct;
  std::string KeyA() const { return Enc({Value::Int64(a), Value(ct), Value(id)}); }
  std::string KeyGA() const { return Enc({Value(g), Value::Int64(a), Value(ct), Value(id)}); }
};

class Fixture {
 public:
  Fixture() {
    auto opened = Database::Open({.path = dir_.path(), .schema_json = kSchema});
    INFO(opened.status().ToString());
    REQUIRE(opened.ok());
    db = *std::move(opened);
    // 20 documents with a = 0, 10, ..., 190, inserted out of order; g = "x" for all.
    std::vector<int64_t> as;
    for (int i = 0; i < 20; ++i) as.push_back((i * 7 % 20) * 10);
    for (int64_t a : as) docs.push_back(Insert(a, "x"));
    std::sort(docs.begin(), docs.end(), [](const Doc& x, const Doc& y) { return x.a < y.a; });
  }

  Doc Insert(int64_t a, const std::string& g) {
    absl::StatusOr<DocumentId> id = db->Mutate([&](Transaction& tx) {
      return tx.Insert("r", {{"a", Value::Int64(a)}, {"g", Value(g)}});
    });
    REQUIRE(id.ok());
    absl::StatusOr<std::optional<Document>> doc = db->Query([&](Reader& r) { return r.Get(*id); });
    REQUIRE(doc.ok());
    REQUIRE(doc->has_value());
    return {id->text(), a, g, (**doc)["_creationTime"].as_float64()};
  }

  // Runs `fn` in a query and returns what it recorded.
  template <typename Fn>
  std::vector<Range> Record(Fn fn) {
    std::vector<Range> ranges;
    absl::Status s = db->Query([&](Reader& r) -> absl::Status {
      fn(r);
      ranges = Ranges(r.read_set());
      return absl::OkStatus();
    });
    REQUIRE(s.ok());
    return ranges;
  }

  testing::TempDir dir_;
  std::unique_ptr<Database> db;
  std::vector<Doc> docs;  // by a
};

TEST_CASE("Get records one by_id key, present or not", "[read_set]") {
  Fixture f;
  const Doc& doc = f.docs[3];
  absl::StatusOr<DocumentId> id = DocumentId::Parse(doc.id);
  REQUIRE(id.ok());
  const DocumentId missing = DocumentId::Generate(id->table_number());

  for (const DocumentId& target : {*id, missing}) {
    INFO("id " << target.text());
    const std::string start = EncodeKey(Value(target.text()));
    auto check = [&](const std::vector<Range>& ranges) {
      INFO(Describe(ranges));
      REQUIRE(ranges.size() == 1);
      CHECK(ranges[0].table == "r");
      CHECK(ranges[0].index == "by_id");
      CHECK(Hex(ranges[0].start) == Hex(start));
      CHECK(Hex(ranges[0].end) == Hex(start + std::string(1, '\0')));
      CHECK(ranges[0].index_id != 0);
    };
    bool found = false;
    check(f.Record([&](Reader& r) {
      absl::StatusOr<std::optional<Document>> got = r.Get(target);
      REQUIRE(got.ok());
      found = got->has_value();
    }));
    CHECK(found == (target == *id));
    // By text too.
    check(f.Record([&](Reader& r) { REQUIRE(r.Get(target.text()).ok()); }));
    // And in a mutation.
    std::vector<Range> in_tx;
    absl::Status s = f.db->Mutate([&](Transaction& tx) -> absl::Status {
      absl::StatusOr<std::optional<Document>> got = tx.Get(target);
      if (!got.ok()) return got.status();
      in_tx = Ranges(tx.read_set());
      return absl::OkStatus();
    });
    REQUIRE(s.ok());
    check(in_tx);
  }

  // A document deleted in the same transaction: still a one-key interval.
  std::vector<Range> after_delete;
  absl::Status s = f.db->Mutate([&](Transaction& tx) -> absl::Status {
    if (absl::Status d = tx.Delete(*id); !d.ok()) return d;
    const size_t before = tx.read_set().size();
    absl::StatusOr<std::optional<Document>> got = tx.Get(*id);
    if (!got.ok()) return got.status();
    CHECK(!got->has_value());
    after_delete = Ranges(tx.read_set());
    // The Delete already read this key: the Get's interval merges into that one.
    CHECK(after_delete.size() == before);
    return absl::CancelledError("test: abandon");
  });
  CHECK(s.code() == absl::StatusCode::kCancelled);
  REQUIRE(!after_delete.empty());
  CHECK(after_delete.back().index == "by_id");
  CHECK(Hex(after_delete.back().start) == Hex(EncodeKey(Value(doc.id))));
  CHECK(Hex(after_delete.back().end) == Hex(EncodeKey(Value(doc.id)) + std::string(1, '\0')));
}

TEST_CASE("Take(5) records the range up to the fifth key", "[read_set]") {
  Fixture f;
  const std::vector<Doc>& docs = f.docs;
  REQUIRE(docs.size() == 20);

  SECTION("ascending") {
    std::vector<std::string> got;
    std::vector<Range> ranges = f.Record([&](Reader& r) {
      absl::StatusOr<std::vector<Document>> taken = r.Table("r").WithIndex("by_a").Take(5);
      REQUIRE(taken.ok());
      for (const Document& d : *taken) got.push_back(d.id().text());
    });
    INFO(Describe(ranges));
    REQUIRE(got.size() == 5);
    CHECK(got[4] == docs[4].id);
    REQUIRE(ranges.size() == 1);
    const Range& range = ranges[0];
    CHECK(range.table == "r");
    CHECK(range.index == "by_a");
    CHECK(range.start.empty());  // the start of the whole index
    CHECK(Hex(range.end) == Hex(docs[4].KeyA() + std::string(1, '\0')));
    for (size_t i = 0; i < docs.size(); ++i) {
      INFO("document a=" << docs[i].a);
      CHECK(range.Contains(docs[i].KeyA()) == (i < 5));
    }
    // Would-be inserts: after the fifth document (a = 45, or a = 40 created later) fall outside,
    // before it (a = 35) inside.
    const double later = docs.back().ct + 1000;
    const std::string some_id = docs[0].id;
    CHECK(!range.Contains(Enc({Value::Int64(45), Value(later), Value(some_id)})));
    CHECK(!range.Contains(Enc({Value::Int64(40), Value(later), Value(some_id)})));
    CHECK(range.Contains(Enc({Value::Int64(35), Value(later), Value(some_id)})));
    CHECK(range.Contains(Enc({Value::Int64(-5), Value(later), Value(some_id)})));
    // Real inserts agree.
    const Doc after = f.Insert(45, "y");
    const Doc same_a = f.Insert(40, "y");
    const Doc before = f.Insert(35, "y");
    CHECK(!range.Contains(after.KeyA()));
    CHECK(!range.Contains(same_a.KeyA()));
    CHECK(range.Contains(before.KeyA()));
  }

  SECTION("descending") {
    std::vector<std::string> got;
    std::vector<Range> ranges = f.Record([&](Reader& r) {
      absl::StatusOr<std::vector<Document>> taken =
          r.Table("r").WithIndex("by_a").Order(SortOrder::kDesc).Take(5);
      REQUIRE(taken.ok());
      for (const Document& d : *taken) got.push_back(d.id().text());
    });
    INFO(Describe(ranges));
    REQUIRE(got.size() == 5);
    CHECK(got[4] == docs[15].id);
    REQUIRE(ranges.size() == 1);
    const Range& range = ranges[0];
    CHECK(range.index == "by_a");
    CHECK(Hex(range.start) == Hex(docs[15].KeyA()));
    CHECK(Hex(range.end) == Hex("\xFF"));  // the end of the whole index
    for (size_t i = 0; i < docs.size(); ++i) {
      INFO("document a=" << docs[i].a);
      CHECK(range.Contains(docs[i].KeyA()) == (i >= 15));
    }
    const Doc below = f.Insert(145, "y");
    const Doc above = f.Insert(155, "y");
    const Doc same_a_later = f.Insert(150, "y");  // after the fifth from the top: inside
    CHECK(!range.Contains(below.KeyA()));
    CHECK(range.Contains(above.KeyA()));
    CHECK(range.Contains(same_a_later.KeyA()));
  }

  SECTION("a range Take(5) ends after its fifth key") {
    std::vector<Range> ranges = f.Record([&](Reader& r) {
      REQUIRE(r.Table("r").WithIndex("by_g_a", Eq("g", "x").Gte("a", 30)).Take(5).value().size() ==
              5);
    });
    INFO(Describe(ranges));
    REQUIRE(ranges.size() == 1);
    CHECK(ranges[0].index == "by_g_a");
    CHECK(Hex(ranges[0].start) == Hex(Enc({Value("x"), Value::Int64(30)})));
    CHECK(Hex(ranges[0].end) == Hex(docs[7].KeyGA() + std::string(1, '\0')));
  }
}

TEST_CASE("whole ranges are recorded as their bounds", "[read_set]") {
  Fixture f;
  const Doc one = f.Insert(1, "z");

  SECTION("Collect over Eq(a, 1)") {
    std::vector<Range> ranges = f.Record([&](Reader& r) {
      absl::StatusOr<std::vector<Document>> got =
          r.Table("r").WithIndex("by_a", Eq("a", 1)).Collect();
      REQUIRE(got.ok());
      REQUIRE(got->size() == 1);
      CHECK(got->front().id().text() == one.id);
    });
    INFO(Describe(ranges));
    REQUIRE(ranges.size() == 1);
    CHECK(ranges[0].index == "by_a");
    CHECK(Hex(ranges[0].start) == Hex(EncodeKey(Value::Int64(1))));
    CHECK(Hex(ranges[0].end) == Hex(EncodeKey(Value::Int64(1)) + "\xFF"));
    // Desc reads the same range.
    std::vector<Range> desc = f.Record([&](Reader& r) {
      REQUIRE(r.Table("r").WithIndex("by_a", Eq("a", 1)).Order(SortOrder::kDesc).Collect().ok());
    });
    INFO(Describe(desc));
    REQUIRE(desc.size() == 1);
    CHECK(Hex(desc[0].start) == Hex(ranges[0].start));
    CHECK(Hex(desc[0].end) == Hex(ranges[0].end));
  }

  SECTION("Gte/Lt and Gt/Lte after an equality prefix") {
    const std::string prefix = EncodeKey(Value("x"));
    struct Case {
      IndexRange range;
      std::string start, end;
    };
    const std::vector<Case> cases = {
        {Eq("g", "x").Gte("a", 30).Lt("a", 70), prefix + Enc({Value::Int64(30)}),
         prefix + Enc({Value::Int64(70)})},
        {Eq("g", "x").Gt("a", 30).Lte("a", 70), prefix + Enc({Value::Int64(30)}) + "\xFF",
         prefix + Enc({Value::Int64(70)}) + "\xFF"},
        {Eq("g", "x").Lt("a", 70).Gte("a", 35), prefix + Enc({Value::Int64(35)}),
         prefix + Enc({Value::Int64(70)})},
        {Eq("g", "x").Gte("a", 30), prefix + Enc({Value::Int64(30)}), prefix + "\xFF"},
        {Eq("g", "x").Lt("a", 70), prefix, prefix + Enc({Value::Int64(70)})},
    };
    for (const Case& c : cases) {
      for (SortOrder order : {SortOrder::kAsc, SortOrder::kDesc}) {
        size_t count = 0;
        std::vector<Range> ranges = f.Record([&](Reader& r) {
          absl::StatusOr<std::vector<Document>> got =
              r.Table("r").WithIndex("by_g_a", c.range).Order(order).Collect();
          REQUIRE(got.ok());
          count = got->size();
        });
        INFO(Describe(ranges));
        CHECK(count > 0);
        REQUIRE(ranges.size() == 1);
        CHECK(ranges[0].index == "by_g_a");
        CHECK(Hex(ranges[0].start) == Hex(c.start));
        CHECK(Hex(ranges[0].end) == Hex(c.end));
      }
    }
    // Without an equality prefix.
    std::vector<Range> ranges = f.Record([&](Reader& r) {
      REQUIRE(r.Table("r").WithIndex("by_a", Gte("a", 30).Lt("a", 70)).Collect().ok());
    });
    INFO(Describe(ranges));
    REQUIRE(ranges.size() == 1);
    CHECK(Hex(ranges[0].start) == Hex(EncodeKey(Value::Int64(30))));
    CHECK(Hex(ranges[0].end) == Hex(EncodeKey(Value::Int64(70))));
  }

  SECTION("Unique() reads at most two entries") {
    std::vector<Range> ranges = f.Record([&](Reader& r) {
      absl::StatusOr<std::optional<Document>> got =
          r.Table("r").WithIndex("by_g_a", Eq("g", "x")).Unique();
      CHECK(got.status().code() == absl::StatusCode::kFailedPrecondition);
    });
    INFO(Describe(ranges));
    REQUIRE(ranges.size() == 1);
    CHECK(ranges[0].index == "by_g_a");
    CHECK(Hex(ranges[0].start) == Hex(EncodeKey(Value("x"))));
    CHECK(Hex(ranges[0].end) == Hex(f.docs[1].KeyGA() + std::string(1, '\0')));
    size_t inside = 0;
    for (const Doc& d : f.docs) inside += ranges[0].Contains(d.KeyGA()) ? 1 : 0;
    CHECK(inside == 2);

    // A single match reads its whole range (a second match could appear anywhere in it).
    ranges = f.Record([&](Reader& r) {
      absl::StatusOr<std::optional<Document>> got =
          r.Table("r").WithIndex("by_g_a", Eq("g", "z")).Unique();
      REQUIRE(got.ok());
      REQUIRE(got->has_value());
      CHECK((*got)->id().text() == one.id);
    });
    INFO(Describe(ranges));
    REQUIRE(ranges.size() == 1);
    CHECK(Hex(ranges[0].start) == Hex(EncodeKey(Value("z"))));
    CHECK(Hex(ranges[0].end) == Hex(EncodeKey(Value("z")) + "\xFF"));
  }

  SECTION("First() on an empty range records the whole range") {
    std::vector<Range> ranges = f.Record([&](Reader& r) {
      absl::StatusOr<std::optional<Document>> got =
          r.Table("r").WithIndex("by_g_a", Eq("g", "nothing")).First();
      REQUIRE(got.ok());
      CHECK(!got->has_value());
    });
    INFO(Describe(ranges));
    REQUIRE(ranges.size() == 1);
    CHECK(Hex(ranges[0].start) == Hex(EncodeKey(Value("nothing"))));
    CHECK(Hex(ranges[0].end) == Hex(EncodeKey(Value("nothing")) + "\xFF"));

    ranges = f.Record([&](Reader& r) {
      absl::StatusOr<std::optional<Document>> got =
          r.Table("r").WithIndex("by_a", Gt("a", 500)).Order(SortOrder::kDesc).First();
      REQUIRE(got.ok());
      CHECK(!got->has_value());
    });
    INFO(Describe(ranges));
    REQUIRE(ranges.size() == 1);
    CHECK(Hex(ranges[0].start) == Hex(EncodeKey(Value::Int64(500)) + "\xFF"));
    CHECK(Hex(ranges[0].end) == Hex("\xFF"));

    // First() on a non-empty range: up to the first key.
    ranges = f.Record(
        [&](Reader& r) { REQUIRE(r.Table("r").WithIndex("by_g_a", Eq("g", "x")).First().ok()); });
    INFO(Describe(ranges));
    REQUIRE(ranges.size() == 1);
    CHECK(Hex(ranges[0].start) == Hex(EncodeKey(Value("x"))));
    CHECK(Hex(ranges[0].end) == Hex(f.docs[0].KeyGA() + std::string(1, '\0')));
  }

  SECTION("a filter records everything scanned, not just the matches") {
    // Take(1) of the only match, a = 90 (the tenth document by a).
    std::vector<Range> ranges = f.Record([&](Reader& r) {
      absl::StatusOr<std::vector<Document>> got =
          r.Table("r")
              .WithIndex("by_g_a", Eq("g", "x"))
              .Filter([](const Document& d) { return d["a"].as_int64() == 90; })
              .Take(1);
      REQUIRE(got.ok());
      REQUIRE(got->size() == 1);
    });
    INFO(Describe(ranges));
    REQUIRE(ranges.size() == 1);
    CHECK(Hex(ranges[0].start) == Hex(EncodeKey(Value("x"))));
    CHECK(Hex(ranges[0].end) == Hex(f.docs[9].KeyGA() + std::string(1, '\0')));
    for (size_t i = 0; i < f.docs.size(); ++i) {
      CHECK(ranges[0].Contains(f.docs[i].KeyGA()) == (i <= 9));
    }

    // No match: the whole range was read, whatever the terminal call.
    for (int terminal = 0; terminal < 3; ++terminal) {
      ranges = f.Record([&](Reader& r) {
        Query q = r.Table("r").WithIndex("by_a");
        q.Filter([](const Document&) { return false; });
        if (terminal == 0) REQUIRE(q.Collect().value().empty());
        if (terminal == 1) REQUIRE(q.Take(3).value().empty());
        if (terminal == 2) REQUIRE(!q.First().value().has_value());
      });
      INFO("terminal " << terminal << "\n" << Describe(ranges));
      REQUIRE(ranges.size() == 1);
      CHECK(ranges[0].start.empty());
      CHECK(Hex(ranges[0].end) == Hex("\xFF"));
    }
  }
}

// DESIGN "Reactivity": "a scan records only the part it consumed (Take(10) ends at the tenth
// key)". When the limit is reached on the last document of the range, nothing after it was
// returned, so a later insert after it cannot change the result: the range still ends at that key.
TEST_CASE("a limit reached on the range's last document still ends the range there", "[read_set]") {
  Fixture f;
  SECTION("Take(5) of a range of exactly five (a < 50)") {
    std::vector<Range> ranges = f.Record([&](Reader& r) {
      REQUIRE(r.Table("r").WithIndex("by_a", Lt("a", 50)).Take(5).value().size() == 5);
    });
    INFO(Describe(ranges));
    REQUIRE(ranges.size() == 1);
    CHECK(ranges[0].start.empty());
    CHECK(Hex(ranges[0].end) == Hex(f.docs[4].KeyA() + std::string(1, '\0')));
  }
  SECTION("First() of a range of exactly one (a = 10)") {
    std::vector<Range> ranges = f.Record([&](Reader& r) {
      REQUIRE(r.Table("r").WithIndex("by_a", Eq("a", 10)).First().value().has_value());
    });
    INFO(Describe(ranges));
    REQUIRE(ranges.size() == 1);
    CHECK(Hex(ranges[0].start) == Hex(EncodeKey(Value::Int64(10))));
    CHECK(Hex(ranges[0].end) == Hex(f.docs[1].KeyA() + std::string(1, '\0')));
  }
  SECTION("desc Take(5) of a range of exactly five (a >= 150)") {
    std::vector<Range> ranges = f.Record([&](Reader& r) {
      REQUIRE(r.Table("r")
                  .WithIndex("by_a", Gte("a", 150))
                  .Order(SortOrder::kDesc)
                  .Take(5)
                  .value()
                  .size() == 5);
    });
    INFO(Describe(ranges));
    REQUIRE(ranges.size() == 1);
    CHECK(Hex(ranges[0].start) == Hex(f.docs[15].KeyA()));
    CHECK(Hex(ranges[0].end) == Hex("\xFF"));
  }
}

TEST_CASE("Paginate records adjacent ranges per page", "[read_set]") {
  Fixture f;
  std::string cursor;
  std::vector<Range> first = f.Record([&](Reader& r) {
    absl::StatusOr<PaginationResult> page =
        r.Table("r").WithIndex("by_a").Paginate({.num_items = 5});
    REQUIRE(page.ok());
    cursor = page->continue_cursor;
  });
  std::vector<Range> second = f.Record([&](Reader& r) {
    absl::StatusOr<PaginationResult> page =
        r.Table("r").WithIndex("by_a").Paginate({.num_items = 5, .cursor = cursor});
    REQUIRE(page.ok());
  });
  INFO(Describe(first) << Describe(second));
  REQUIRE(first.size() == 1);
  REQUIRE(second.size() == 1);
  CHECK(first[0].start.empty());
  CHECK(Hex(first[0].end) == Hex(f.docs[4].KeyA() + std::string(1, '\0')));
  CHECK(Hex(second[0].start) == Hex(first[0].end));  // no gap, no overlap
  CHECK(Hex(second[0].end) == Hex(f.docs[9].KeyA() + std::string(1, '\0')));
}

TEST_CASE("a unique-index check during Insert records the probed prefix", "[read_set]") {
  Fixture f;
  const std::string probe = EncodeKey(Value("e@x"));

  std::vector<Range> ranges;
  absl::StatusOr<DocumentId> first = f.db->Mutate([&](Transaction& tx) {
    absl::StatusOr<DocumentId> id = tx.Insert("u", {{"email", Value("e@x")}, {"name", Value("E")}});
    ranges = Ranges(tx.read_set());
    return id;
  });
  REQUIRE(first.ok());
  INFO(Describe(ranges));
  REQUIRE(ranges.size() == 1);
  CHECK(ranges[0].table == "u");
  CHECK(ranges[0].index == "by_email");
  CHECK(Hex(ranges[0].start) == Hex(probe));
  CHECK(Hex(ranges[0].end) == Hex(probe + "\xFF"));

  // A duplicate: AlreadyExists, and the probe covers the conflicting entry.
  absl::StatusOr<double> ct = f.db->Query([&](Reader& r) -> absl::StatusOr<double> {
    absl::StatusOr<std::optional<Document>> d = r.Get(*first);
    if (!d.ok()) return d.status();
    return (**d)["_creationTime"].as_float64();
  });
  REQUIRE(ct.ok());
  const std::string existing_key = probe + Enc({Value(*ct), Value(first->text())});
  std::vector<Range> dup_ranges;
  absl::Status dup = f.db->Mutate([&](Transaction& tx) -> absl::Status {
    absl::StatusOr<DocumentId> id = tx.Insert("u", {{"email", Value("e@x")}, {"name", Value("F")}});
    dup_ranges = Ranges(tx.read_set());
    return id.status();
  });
  CHECK(dup.code() == absl::StatusCode::kAlreadyExists);
  INFO(Describe(dup_ranges));
  REQUIRE(dup_ranges.size() == 1);
  CHECK(dup_ranges[0].index == "by_email");
  CHECK(Hex(dup_ranges[0].start) == Hex(probe));
  CHECK(dup_ranges[0].Contains(existing_key));
  CHECK(dup_ranges[0].end <= probe + "\xFF");

  // A patch that changes the unique field: the Get on by_id, then the probe of the new value.
  std::vector<Range> patch_ranges;
  absl::Status patched = f.db->Mutate([&](Transaction& tx) -> absl::Status {
    absl::Status s = tx.Patch(*first, {{"email", Value("new@x")}});
    patch_ranges = Ranges(tx.read_set());
    return s;
  });
  REQUIRE(patched.ok());
  INFO(Describe(patch_ranges));
  REQUIRE(patch_ranges.size() == 2);
  CHECK(patch_ranges[0].index == "by_id");
  CHECK(patch_ranges[0].table == "u");
  CHECK(Hex(patch_ranges[0].start) == Hex(EncodeKey(Value(first->text()))));
  CHECK(patch_ranges[1].index == "by_email");
  CHECK(Hex(patch_ranges[1].start) == Hex(EncodeKey(Value("new@x"))));
  CHECK(Hex(patch_ranges[1].end) == Hex(EncodeKey(Value("new@x")) + "\xFF"));

  // Two racing inserts of one value read the same interval: each one's write is in the other's
  // read set.
  std::vector<Range> probe_new;
  absl::Status racing = f.db->Mutate([&](Transaction& tx) -> absl::Status {
    absl::StatusOr<DocumentId> id =
        tx.Insert("u", {{"email", Value("race@x")}, {"name", Value("R")}});
    if (!id.ok()) return id.status();
    probe_new = Ranges(tx.read_set());
    return absl::CancelledError("test: abandon");
  });
  CHECK(racing.code() == absl::StatusCode::kCancelled);
  REQUIRE(probe_new.size() == 1);
  const std::string racer_key = EncodeKey(Value("race@x")) + Enc({Value(1e13), Value("x")});
  CHECK(probe_new[0].Contains(racer_key));
}

TEST_CASE("ranges carry table, index and a stable index_id; size grows per read", "[read_set]") {
  Fixture f;
  absl::StatusOr<DocumentId> id = DocumentId::Parse(f.docs[0].id);
  REQUIRE(id.ok());

  std::vector<Range> ranges;
  std::string debug;
  std::vector<size_t> sizes;
  auto reads = [&](Reader& r) {
    sizes.push_back(r.read_set().size());
    REQUIRE(r.Get(*id).ok());
    sizes.push_back(r.read_set().size());
    REQUIRE(r.Table("r").WithIndex("by_a", Eq("a", 10)).Collect().ok());
    sizes.push_back(r.read_set().size());
    REQUIRE(r.Table("r").WithIndex("by_g_a", Eq("g", "x")).Take(3).ok());
    sizes.push_back(r.read_set().size());
    REQUIRE(r.Table("r").Collect().ok());  // by_creation_time
    sizes.push_back(r.read_set().size());
    REQUIRE(r.Table("r").WithIndex("by_a", Eq("a", 20)).First().ok());
    sizes.push_back(r.read_set().size());
    REQUIRE(r.Table("r").WithIndex("by_a", Eq("a", 30)).Unique().ok());
    sizes.push_back(r.read_set().size());
    REQUIRE(r.Get(DocumentId::Generate(id->table_number())).ok());
    sizes.push_back(r.read_set().size());
    REQUIRE(r.Table("u").WithIndex("by_email").Collect().ok());
    sizes.push_back(r.read_set().size());
    REQUIRE(r.Table("r").WithIndex("by_id").Take(1).ok());
    ranges = Ranges(r.read_set());
    debug = r.read_set().DebugString();
  };
  absl::Status s = f.db->Query([&](Reader& r) -> absl::Status {
    reads(r);
    return absl::OkStatus();
  });
  REQUIRE(s.ok());
  INFO(Describe(ranges) << debug);
  for (size_t i = 0; i < sizes.size(); ++i) {
    INFO("after read " << i);
    CHECK(sizes[i] == i);
  }
  REQUIRE(ranges.size() == 9);
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"r", "by_id"}, {"r", "by_a"}, {"r", "by_g_a"}, {"r", "by_creation_time"},
      {"r", "by_a"},  {"r", "by_a"}, {"r", "by_id"},  {"u", "by_email"},
      {"r", "by_id"}};
  for (size_t i = 0; i < expected.size(); ++i) {
    INFO("range " << i);
    CHECK(ranges[i].table == expected[i].first);
    CHECK(ranges[i].index == expected[i].second);
  }
  // index_id: non-zero, one per index, distinct across indexes.
  std::map<std::string, std::set<uint32_t>> ids_by_index;
  for (const Range& r : ranges) {
    CHECK(r.index_id != 0);
    ids_by_index[r.table + "." + r.index].insert(r.index_id);
  }
  std::set<uint32_t> all_ids;
  for (const auto& [name, index_ids] : ids_by_index) {
    INFO(name);
    CHECK(index_ids.size() == 1);
    all_ids.insert(index_ids.begin(), index_ids.end());
  }
  CHECK(all_ids.size() == ids_by_index.size());
  // The same in a mutation, and the ids are stable across a reopen.
  std::vector<Range> in_tx;
  s = f.db->Mutate([&](Transaction& tx) -> absl::Status {
    reads(tx);
    in_tx = Ranges(tx.read_set());
    return absl::OkStatus();
  });
  REQUIRE(s.ok());
  REQUIRE(in_tx.size() == ranges.size());
  for (size_t i = 0; i < ranges.size(); ++i) {
    CHECK(in_tx[i].index_id == ranges[i].index_id);
    CHECK(Hex(in_tx[i].start) == Hex(ranges[i].start));
    CHECK(Hex(in_tx[i].end) == Hex(ranges[i].end));
  }
  f.db.reset();
  auto reopened = Database::Open({.path = f.dir_.path(), .schema_json = kSchema});
  REQUIRE(reopened.ok());
  std::vector<Range> again;
  s = (*reopened)->Query([&](Reader& r) -> absl::Status {
    reads(r);
    again = Ranges(r.read_set());
    return absl::OkStatus();
  });
  REQUIRE(s.ok());
  REQUIRE(again.size() == ranges.size());
  for (size_t i = 0; i < ranges.size(); ++i) CHECK(again[i].index_id == ranges[i].index_id);

  // DebugString: one line per range, naming table.index.
  size_t lines = std::count(debug.begin(), debug.end(), '\n');
  CHECK(lines == ranges.size());
  for (const char* name : {"r.by_id", "r.by_a", "r.by_g_a", "r.by_creation_time", "u.by_email"}) {
    INFO(name);
    CHECK(debug.find(name) != std::string::npos);
  }
}

}  // namespace
}  // namespace stagedb
