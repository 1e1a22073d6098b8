// Crash durability: a child process commits durable mutations in a loop and reports each
// returned commit timestamp (and what the commit did) to the parent over a pipe; the parent kills
// it with SIGKILL at a random moment, reopens the database and checks that every reported commit
// is there, whole; that nothing else is but at most the one commit in flight at the kill; and that
// the indexes agree with the documents. The parent then commits once itself, and the next trial
// goes on with the same database, so every trial after the first also recovers the file the
// previous kill left behind.
//
// STAGEDB_CRASH_TRIALS sets the number of trials (default 10). The random seed (kill times, the
// child's choices) is fixed; set STAGEDB_TEST_SEED to try another. It is printed on failure.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "stagedb/stagedb.h"
#include "test_matchers.h"
#include "test_util.h"

namespace {

using stagedb::Database;
using stagedb::Document;
using stagedb::DocumentId;
using stagedb::Object;
using stagedb::Options;
using stagedb::Reader;
using stagedb::Timestamp;
using stagedb::Transaction;
using stagedb::Value;
using stagedb::testing::TempDir;

constexpr const char* kSchema = R"json({
  "tables": {
    "events": {
      "fields": {"seq": "int64", "group": "int64", "version": "int64", "payload": "string"},
      "indexes": [
        {"name": "by_seq", "fields": ["seq"], "unique": true},
        {"name": "by_group", "fields": ["group", "seq"]}
      ]
    }
  }
})json";

constexpr int64_t kGroups = 8;
// The child stops on its own after this many commits (it is always killed long before).
constexpr int kMaxChildCommits = 1'000'000;

uint64_t Seed() { return stagedb::testing::TestSeed(20240611); }

int Trials() {
  if (const char* env = std::getenv("STAGEDB_CRASH_TRIALS"); env != nullptr) {
    return std::atoi(env);
  }
  return 10;
}

Options DbOptions(const std::string& path) {
  Options options;
  options.path = path;
  options.schema_json = kSchema;
  options.durability = stagedb::Durability::kDurable;
  // The parent reads the whole table in one query.
  options.limits.max_documents_read = size_t{1} << 30;
  options.limits.max_bytes_read = size_t{1} << 40;
  options.limits.max_read_ranges = size_t{1} << 30;
  return options;
}

// A document's payload is a function of its seq, version and length, so a torn or stale payload
// shows: "s<seq>v<version>:" followed by letters.
std::string Payload(int64_t seq, int64_t version, size_t len) {
  std::string s = absl::StrCat("s", seq, "v", version, ":");
  s.reserve(len);
  while (s.size() < len) {
    s.push_back(
        static_cast<char>('a' + (seq * 7 + version * 13 + static_cast<int64_t>(s.size())) % 26));
  }
  return s;
}

// ---- what the child reports ----

// One write of a commit: insert (I), patch (P) or delete (D) of the document with this seq.
struct Op {
  char kind = 'I';
  int64_t seq = 0;
  int64_t group = 0;    // I, P
  int64_t version = 0;  // P (I: 0)
  size_t len = 0;       // I, P: the payload's length
  std::string id;       // I: assigned by Insert; P, D: the document's
};

struct Record {
  Timestamp ts = 0;
  std::vector<Op> ops;
};

// One line: "C <ts> I <seq> <group> <len> <id> P <seq> <group> <version> <len> D <seq> E\n".
// Under PIPE_BUF bytes, so a line is written whole or not at all.
std::string FormatRecord(const Record& record) {
  std::string line = absl::StrCat("C ", record.ts);
  for (const Op& op : record.ops) {
    switch (op.kind) {
      case 'I':
        absl::StrAppend(&line, " I ", op.seq, " ", op.group, " ", op.len, " ", op.id);
        break;
      case 'P':
        absl::StrAppend(&line, " P ", op.seq, " ", op.group, " ", op.version, " ", op.len);
        break;
      case 'D':
        absl::StrAppend(&line, " D ", op.seq);
        break;
    }
  }
  line += " E\n";
  return line;
}

// The complete lines of `buffer` (a partial last line, cut by the kill, is ignored) as records;
// a line the child wrote about an error ("X ...") or one that does not parse is a problem.
std::vector<Record> ParseReport(absl::string_view buffer, std::vector<std::string>* problems) {
  std::vector<Record> records;
  const size_t end = buffer.rfind('\n');
  if (end == absl::string_view::npos) return records;
  for (absl::string_view line : absl::StrSplit(buffer.substr(0, end), '\n')) {
    if (absl::StartsWith(line, "X ")) {
      problems->push_back(absl::StrCat("the child failed: ", line.substr(2)));
      continue;
    }
    std::vector<absl::string_view> t = absl::StrSplit(line, ' ');
    Record record;
    bool ok = t.size() >= 3 && t[0] == "C" && absl::SimpleAtoi(t[1], &record.ts) && t.back() == "E";
    size_t i = 2;
    while (ok && i + 1 < t.size()) {
      Op op;
      op.kind = t[i].size() == 1 ? t[i][0] : '?';
      const size_t fields = op.kind == 'I' ? 4 : op.kind == 'P' ? 4 : op.kind == 'D' ? 1 : 0;
      ok = fields > 0 && i + fields + 1 < t.size() && absl::SimpleAtoi(t[i + 1], &op.seq);
      if (ok && op.kind == 'I') {
        ok = absl::SimpleAtoi(t[i + 2], &op.group) && absl::SimpleAtoi(t[i + 3], &op.len);
        op.id = std::string(t[i + 4]);
      } else if (ok && op.kind == 'P') {
        ok = absl::SimpleAtoi(t[i + 2], &op.group) && absl::SimpleAtoi(t[i + 3], &op.version) &&
             absl::SimpleAtoi(t[i + 4], &op.len);
      }
      record.ops.push_back(std::move(op));
      i += fields + 1;
    }
    if (!ok || record.ops.empty()) {
      problems->push_back(absl::StrCat("unparsable report line: ", line));
      continue;
    }
    records.push_back(std::move(record));
  }
  return records;
}

// ---- the expected state ----

struct DocState {
  std::string id;
  int64_t group = 0;
  int64_t version = 0;
  size_t len = 0;
};

struct Model {
  std::map<int64_t, DocState> live;        // by seq
  std::map<int64_t, std::string> deleted;  // seq -> id
  int64_t next_seq = 0;                    // every seq below was used
  Timestamp ts = 0;                        // the latest commit known to have returned
};

// Applies a reported commit; a report that cannot follow from the model is a problem.
void ApplyRecord(Model& model, const Record& record, std::vector<std::string>* problems) {
  if (record.ts != model.ts + 1) {
    problems->push_back(absl::StrCat("commit timestamp ", record.ts, " reported after ", model.ts,
                                     " (expected ", model.ts + 1, ")"));
  }
  model.ts = record.ts;
  for (const Op& op : record.ops) {
    switch (op.kind) {
      case 'I':
        if (op.seq < model.next_seq) {
          problems->push_back(absl::StrCat("seq ", op.seq, " inserted twice"));
        }
        model.live[op.seq] = {op.id, op.group, 0, op.len};
        model.next_seq = std::max(model.next_seq, op.seq + 1);
        break;
      case 'P': {
        auto it = model.live.find(op.seq);
        if (it == model.live.end()) {
          problems->push_back(absl::StrCat("seq ", op.seq, " patched but not live"));
          break;
        }
        it->second.group = op.group;
        it->second.version = op.version;
        it->second.len = op.len;
        break;
      }
      case 'D': {
        auto it = model.live.find(op.seq);
        if (it == model.live.end()) {
          problems->push_back(absl::StrCat("seq ", op.seq, " deleted but not live"));
          break;
        }
        model.deleted[op.seq] = it->second.id;
        model.live.erase(it);
        break;
      }
    }
  }
}

// ---- mutations (child and parent) ----

size_t PayloadLen(std::mt19937_64& rng, int64_t seq, int64_t version) {
  const size_t header = Payload(seq, version, 0).size();
  // Mostly small; now and then large enough for LMDB overflow pages.
  if (std::uniform_int_distribution<int>(0, 19)(rng) == 0) {
    return header + std::uniform_int_distribution<size_t>(2000, 20000)(rng);
  }
  return header + std::uniform_int_distribution<size_t>(0, 300)(rng);
}

// One commit's writes: 1-3 inserts, and sometimes a patch and/or a delete of earlier documents
// (never both on one).
std::vector<Op> MakePlan(std::mt19937_64& rng, const Model& model) {
  std::vector<Op> ops;
  const int inserts = std::uniform_int_distribution<int>(1, 3)(rng);
  for (int i = 0; i < inserts; ++i) {
    Op op;
    op.kind = 'I';
    op.seq = model.next_seq + i;
    op.group = std::uniform_int_distribution<int64_t>(0, kGroups - 1)(rng);
    op.len = PayloadLen(rng, op.seq, 0);
    ops.push_back(op);
  }
  auto pick = [&]() {
    auto it = model.live.begin();
    std::advance(it, std::uniform_int_distribution<size_t>(0, model.live.size() - 1)(rng));
    return it;
  };
  int64_t patched = -1;
  if (!model.live.empty() && std::uniform_int_distribution<int>(0, 99)(rng) < 35) {
    auto it = pick();
    Op op;
    op.kind = 'P';
    op.seq = it->first;
    op.id = it->second.id;
    op.group = std::uniform_int_distribution<int64_t>(0, kGroups - 1)(rng);
    op.version = it->second.version + 1;
    op.len = PayloadLen(rng, op.seq, op.version);
    ops.push_back(op);
    patched = op.seq;
  }
  if (model.live.size() >= 2 && std::uniform_int_distribution<int>(0, 99)(rng) < 20) {
    auto it = pick();
    if (it->first != patched) {
      Op op;
      op.kind = 'D';
      op.seq = it->first;
      op.id = it->second.id;
      ops.push_back(op);
    }
  }
  return ops;
}

Object Fields(const Op& op) {
  return {{"seq", Value::Int64(op.seq)},
          {"group", Value::Int64(op.group)},
          {"version", Value::Int64(op.version)},
          {"payload", Payload(op.seq, op.version, op.len)}};
}

// Runs the plan in a transaction, filling in the ids of inserted documents (may run again).
absl::Status Execute(Transaction& tx, std::vector<Op>& ops) {
  for (Op& op : ops) {
    if (op.kind == 'I') {
      absl::StatusOr<DocumentId> id = tx.Insert("events", Fields(op));
      if (!id.ok()) return id.status();
      op.id = id->text();
      continue;
    }
    absl::StatusOr<DocumentId> id = DocumentId::Parse(op.id);
    if (!id.ok()) return id.status();
    absl::Status s = op.kind == 'P'
                         ? tx.Patch(*id, {{"group", Value::Int64(op.group)},
                                          {"version", Value::Int64(op.version)},
                                          {"payload", Payload(op.seq, op.version, op.len)}})
                         : tx.Delete(*id);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// Commits one plan in `db` and returns its record (the parent's own commits).
Record CommitPlan(Database& db, std::mt19937_64& rng, const Model& model) {
  Record record;
  record.ops = MakePlan(rng, model);
  const absl::Status s =
      db.Mutate([&](Transaction& tx) { return Execute(tx, record.ops); }, &record.ts);
  INFO("Mutate: " << s.ToString());
  REQUIRE(s.ok());
  return record;
}

// ---- the child process ----

bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void ReportError(int fd, std::string what) {
  for (char& c : what) {
    if (c == '\n') c = ' ';
  }
  WriteAll(fd, "X " + what + "\n");
}

// Commits in a loop, reporting each commit after Mutate returns, until killed. Never returns
// (never into Catch2): it ends with _exit.
[[noreturn]] void ChildMain(const std::string& path, int fd, Model model, uint64_t seed,
                            pid_t parent) {
  signal(SIGPIPE, SIG_IGN);
  // Do not outlive the parent (if it fails before killing us).
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(5);
  absl::StatusOr<std::unique_ptr<Database>> db = Database::Open(DbOptions(path));
  if (!db.ok()) {
    ReportError(fd, "Open: " + db.status().ToString());
    _exit(2);
  }
  std::mt19937_64 rng(seed);
  for (int i = 0; i < kMaxChildCommits; ++i) {
    Record record;
    record.ops = MakePlan(rng, model);
    const absl::Status s =
        (*db)->Mutate([&](Transaction& tx) { return Execute(tx, record.ops); }, &record.ts);
    if (!s.ok()) {
      ReportError(fd, "Mutate: " + s.ToString());
      _exit(3);
    }
    if (!WriteAll(fd, FormatRecord(record))) _exit(4);
    std::vector<std::string> ignored;
    ApplyRecord(model, record, &ignored);
  }
  _exit(0);
}

// ---- reading the database back ----

// Everything the checks look at, read from the database.
struct Scans {
  Timestamp last_commit = 0;
  std::vector<Document> by_creation_time, by_id, by_seq, by_group;
  std::map<int64_t, std::vector<Document>> group_lookup;  // by_group, Eq(group)
  std::map<int64_t, std::vector<Document>> seq_lookup;    // by_seq, Eq(seq)
  std::map<std::string, std::optional<Document>> gets;    // Get(id)
};

std::vector<Document> ScanOrProblem(Database& db, const std::string& index,
                                    const stagedb::IndexRange& range, const std::string& what,
                                    std::vector<std::string>* problems) {
  absl::StatusOr<std::vector<Document>> docs =
      db.Query([&](Reader& r) { return r.Table("events").WithIndex(index, range).Collect(); });
  if (!docs.ok()) {
    problems->push_back(absl::StrCat(what, ": ", docs.status().ToString()));
    return {};
  }
  return *std::move(docs);
}

// Reads every index, and looks up each seq and id the database or the model knows.
Scans ReadScans(Database& db, const Model& model, std::vector<std::string>* problems) {
  Scans s;
  s.last_commit = db.LastCommitTimestamp();
  s.by_creation_time = ScanOrProblem(db, "by_creation_time", {}, "scan by_creation_time", problems);
  s.by_id = ScanOrProblem(db, "by_id", {}, "scan by_id", problems);
  s.by_seq = ScanOrProblem(db, "by_seq", {}, "scan by_seq", problems);
  s.by_group = ScanOrProblem(db, "by_group", {}, "scan by_group", problems);
  std::set<int64_t> seqs, groups;
  std::set<std::string> ids;
  for (int64_t g = 0; g < kGroups; ++g) groups.insert(g);
  for (const Document& d : s.by_creation_time) {
    if (d["seq"].is_int64()) seqs.insert(d["seq"].as_int64());
    if (d["group"].is_int64()) groups.insert(d["group"].as_int64());
    ids.insert(d.id().text());
  }
  for (const auto& [seq, doc] : model.live) {
    seqs.insert(seq);
    ids.insert(doc.id);
  }
  for (const auto& [seq, id] : model.deleted) {
    seqs.insert(seq);
    ids.insert(id);
  }
  for (int64_t g : groups) {
    s.group_lookup[g] = ScanOrProblem(db, "by_group", stagedb::Eq("group", Value::Int64(g)),
                                      absl::StrCat("by_group Eq ", g), problems);
  }
  for (int64_t seq : seqs) {
    s.seq_lookup[seq] = ScanOrProblem(db, "by_seq", stagedb::Eq("seq", Value::Int64(seq)),
                                      absl::StrCat("by_seq Eq ", seq), problems);
  }
  for (const std::string& id : ids) {
    absl::StatusOr<std::optional<Document>> doc =
        db.Query([&](Reader& r) { return r.Get(std::string_view(id)); });
    if (!doc.ok()) {
      problems->push_back(absl::StrCat("Get ", id, ": ", doc.status().ToString()));
      continue;
    }
    s.gets[id] = *std::move(doc);
  }
  return s;
}

std::string Show(const Document& d) { return stagedb::DebugString(d.ToValue(), 160); }

// Empty when the document has exactly its fields, of the right types, and a payload that
// matches its seq and version.
std::string WholeProblem(const Document& d) {
  const Object& f = d.fields();
  if (f.size() != 6) return absl::StrCat("has ", f.size(), " fields");
  if (!d["_id"].is_string() || d["_id"].as_string() != d.id().text()) return "bad _id";
  if (!d["_creationTime"].is_float64()) return "bad _creationTime";
  for (const char* field : {"seq", "group", "version"}) {
    if (!d[field].is_int64()) return absl::StrCat("field ", field, " is not int64");
  }
  const int64_t seq = d["seq"].as_int64(), version = d["version"].as_int64();
  const int64_t group = d["group"].as_int64();
  if (seq < 0 || version < 0 || group < 0 || group >= kGroups) return "a field out of range";
  if (!d["payload"].is_string()) return "payload is not a string";
  const std::string& payload = d["payload"].as_string();
  if (payload.size() < Payload(seq, version, 0).size() ||
      payload != Payload(seq, version, payload.size())) {
    return absl::StrCat("payload (", payload.size(), " bytes) torn or stale");
  }
  return "";
}

// Checks that the indexes agree with the documents, and the database with the model: every
// reported commit present, and beyond them at most one further commit (the one in flight at
// the kill) of the shape a child commit has. Returns the problems; fills `adopted` with the
// model of what the database holds (the in-flight commit included).
std::vector<std::string> Check(const Scans& s, const Model& m, Model* adopted,
                               bool* in_flight_found = nullptr) {
  std::vector<std::string> problems;
  auto problem = [&](auto&&... parts) { problems.push_back(absl::StrCat(parts...)); };

  // -- The documents (by_creation_time) and the indexes.
  std::map<std::string, const Document*> by_id;
  std::map<int64_t, const Document*> by_seq;
  for (const Document& d : s.by_creation_time) {
    if (!by_id.emplace(d.id().text(), &d).second) {
      problem("by_creation_time lists ", d.id().text(), " twice");
    }
    if (std::string whole = WholeProblem(d); !whole.empty()) {
      problem("document not whole (", whole, "): ", Show(d));
      continue;
    }
    if (!by_seq.emplace(d["seq"].as_int64(), &d).second) {
      problem("two documents with seq ", d["seq"].as_int64());
    }
  }
  // A full scan of another index lists the same documents, once each, in its order.
  auto same_documents = [&](const std::vector<Document>& docs, const std::string& index,
                            auto less_or_equal) {
    if (docs.size() != s.by_creation_time.size()) {
      problem(index, " lists ", docs.size(), " documents, by_creation_time ",
              s.by_creation_time.size());
    }
    std::set<std::string> seen;
    for (size_t i = 0; i < docs.size(); ++i) {
      const Document& d = docs[i];
      if (!seen.insert(d.id().text()).second) problem(index, " lists ", d.id().text(), " twice");
      auto it = by_id.find(d.id().text());
      if (it == by_id.end()) {
        problem(index, " lists ", Show(d), ", not in by_creation_time");
      } else if (!(*it->second == d)) {
        problem(index, " has ", Show(d), " but the document is ", Show(*it->second));
      }
      if (i > 0 && !less_or_equal(docs[i - 1], d)) {
        problem(index, " out of order at ", Show(d));
      }
    }
  };
  same_documents(s.by_id, "by_id",
                 [](const Document& a, const Document& b) { return a.id() < b.id(); });
  same_documents(s.by_seq, "by_seq", [](const Document& a, const Document& b) {
    return stagedb::Compare(a["seq"], b["seq"]) < 0;
  });
  same_documents(s.by_group, "by_group", [](const Document& a, const Document& b) {
    const int c = stagedb::Compare(a["group"], b["group"]);
    return c < 0 || (c == 0 && stagedb::Compare(a["seq"], b["seq"]) < 0);
  });
  // by_seq, Eq(seq): exactly the document with that seq, or nothing.
  for (const auto& [seq, docs] : s.seq_lookup) {
    auto it = by_seq.find(seq);
    const size_t expected = it == by_seq.end() ? 0 : 1;
    if (docs.size() != expected) {
      problem("by_seq Eq(", seq, ") finds ", docs.size(), " documents, expected ", expected);
    } else if (expected == 1 && !(docs[0] == *it->second)) {
      problem("by_seq Eq(", seq, ") finds ", Show(docs[0]), ", the document is ",
              Show(*it->second));
    }
  }
  for (const auto& [seq, doc] : by_seq) {
    if (!s.seq_lookup.contains(seq)) problem("seq ", seq, " was not looked up by by_seq");
  }
  // by_group, Eq(group) over all groups: every document once, in its group, in seq order.
  std::set<std::string> grouped;
  size_t grouped_count = 0;
  for (const auto& [group, docs] : s.group_lookup) {
    grouped_count += docs.size();
    for (size_t i = 0; i < docs.size(); ++i) {
      const Document& d = docs[i];
      grouped.insert(d.id().text());
      if (!(d["group"] == Value::Int64(group))) {
        problem("by_group Eq(", group, ") finds ", Show(d));
      }
      auto it = by_id.find(d.id().text());
      if (it == by_id.end()) {
        problem("by_group Eq(", group, ") finds ", Show(d), ", not in by_creation_time");
      } else if (!(*it->second == d)) {
        problem("by_group Eq(", group, ") finds ", Show(d), ", the document is ",
                Show(*it->second));
      }
      if (i > 0 && stagedb::Compare(docs[i - 1]["seq"], d["seq"]) >= 0) {
        problem("by_group Eq(", group, ") out of seq order at ", Show(d));
      }
    }
  }
  if (grouped_count != s.by_creation_time.size()) {
    problem("by_group Eq over all groups finds ", grouped_count, " documents, by_creation_time ",
            s.by_creation_time.size());
  }
  for (const auto& [id, doc] : by_id) {
    if (!grouped.contains(id)) problem("by_group Eq over all groups misses ", Show(*doc));
  }
  // Get(id): the document, or nothing.
  for (const auto& [id, doc] : s.gets) {
    auto it = by_id.find(id);
    if (doc.has_value() != (it != by_id.end())) {
      problem("Get(", id, ") ", doc.has_value() ? "finds" : "misses",
              " a document; by_creation_time ", it != by_id.end() ? "has" : "has not", " it");
    } else if (doc.has_value() && !(*doc == *it->second)) {
      problem("Get(", id, ") finds ", Show(*doc), ", the document is ", Show(*it->second));
    }
  }
  for (const auto& [id, doc] : by_id) {
    if (!s.gets.contains(id)) problem("id ", id, " was not looked up by Get");
  }

  // -- The database against the reported commits.
  const bool in_flight = s.last_commit == m.ts + 1;
  if (in_flight_found != nullptr) *in_flight_found = in_flight;
  if (s.last_commit < m.ts) {
    problem("last commit timestamp ", s.last_commit, " is before the last reported one, ", m.ts,
            ": reported commits were lost");
  } else if (s.last_commit > m.ts + 1) {
    problem("last commit timestamp ", s.last_commit, ", but the last reported one is ", m.ts,
            ": more than one unreported commit");
  }
  std::vector<int64_t> missing, changed;
  for (const auto& [seq, want] : m.live) {
    auto it = by_seq.find(seq);
    if (it == by_seq.end()) {
      missing.push_back(seq);
      continue;
    }
    const Document& d = *it->second;
    if (d.id().text() != want.id) {
      problem("seq ", seq, " has id ", d.id().text(), ", reported ", want.id);
    } else if (d["group"].as_int64() != want.group || d["version"].as_int64() != want.version ||
               d["payload"].as_string().size() != want.len) {
      changed.push_back(seq);
    }
  }
  for (const auto& [seq, id] : m.deleted) {
    if (by_seq.contains(seq)) problem("seq ", seq, " was reported deleted but is present");
    if (by_id.contains(id)) problem("id ", id, " was reported deleted but is present");
  }
  std::vector<int64_t> extra;
  for (const auto& [seq, doc] : by_seq) {
    if (!m.live.contains(seq) && !m.deleted.contains(seq)) extra.push_back(seq);
  }
  if (!in_flight) {
    for (int64_t seq : missing) problem("reported seq ", seq, " is missing");
    for (int64_t seq : changed) {
      problem("reported seq ", seq, " is not as reported: ", Show(*by_seq.at(seq)),
              " (reported version ", m.live.at(seq).version, ", group ", m.live.at(seq).group, ", ",
              m.live.at(seq).len, " payload bytes)");
    }
    for (int64_t seq : extra) problem("unreported document: ", Show(*by_seq.at(seq)));
  } else {
    // The commit in flight: 1-3 inserts of the next seqs, at most one patch (the next version)
    // and at most one delete.
    if (extra.empty() || extra.size() > 3) {
      problem("the unreported commit ", s.last_commit, " inserted ", extra.size(),
              " documents, expected 1-3");
    }
    for (size_t i = 0; i < extra.size(); ++i) {
      const Document& d = *by_seq.at(extra[i]);
      if (extra[i] != m.next_seq + static_cast<int64_t>(i) || d["version"].as_int64() != 0) {
        problem("unreported document not from the commit in flight: ", Show(d));
      }
    }
    if (missing.size() > 1) {
      problem("reported seqs missing: ", absl::StrJoin(missing, ", "),
              " (the commit in flight deletes at most one)");
    }
    if (changed.size() > 1) {
      problem("reported seqs changed: ", absl::StrJoin(changed, ", "),
              " (the commit in flight patches at most one)");
    }
    for (int64_t seq : changed) {
      if (by_seq.at(seq)->Get("version").as_int64() != m.live.at(seq).version + 1) {
        problem("reported seq ", seq, " is not as reported: ", Show(*by_seq.at(seq)));
      }
    }
  }

  // -- What the database holds, as a model.
  adopted->live.clear();
  adopted->deleted = m.deleted;
  adopted->next_seq = m.next_seq;
  adopted->ts = s.last_commit;
  for (const auto& [seq, d] : by_seq) {
    adopted->live[seq] = {d->id().text(), d->Get("group").as_int64(), d->Get("version").as_int64(),
                          d->Get("payload").as_string().size()};
    adopted->next_seq = std::max(adopted->next_seq, seq + 1);
  }
  for (int64_t seq : missing) adopted->deleted[seq] = m.live.at(seq).id;
  return problems;
}

// Reads the database and checks it against `model`; replaces `model` by what it holds.
std::vector<std::string> ReadAndCheck(Database& db, Model& model, bool* in_flight = nullptr) {
  std::vector<std::string> problems;
  const Scans scans = ReadScans(db, model, &problems);
  Model adopted;
  for (std::string& p : Check(scans, model, &adopted, in_flight)) problems.push_back(std::move(p));
  model = std::move(adopted);
  return problems;
}

std::string Join(const std::vector<std::string>& problems, size_t max = 20) {
  std::string out;
  for (size_t i = 0; i < problems.size() && i < max; ++i)
    absl::StrAppend(&out, "\n  ", problems[i]);
  if (problems.size() > max) absl::StrAppend(&out, "\n  ... ", problems.size() - max, " more");
  return out;
}

// ---------------------------------------------------------------------------------------------

TEST_CASE("reported commits survive SIGKILL whole, and the indexes agree", "[crash][process]") {
  const uint64_t seed = Seed();
  const int trials = Trials();
  INFO("seed " << seed << " (set STAGEDB_TEST_SEED to change), " << trials << " trials");
  std::mt19937_64 rng(seed);
  TempDir dir;
  const std::string path = dir.Sub("db");  // one database for every trial
  Model model;
  size_t total_reported = 0, total_in_flight = 0, early_kills = 0;
  for (int trial = 0; trial < trials; ++trial) {
    // Mostly 20-300 ms after the first report; one trial in five kills within 20 ms of the fork
    // (perhaps inside Open).
    const bool early = std::uniform_int_distribution<int>(0, 4)(rng) == 0;
    const int wait_ms = early ? std::uniform_int_distribution<int>(0, 19)(rng)
                              : std::uniform_int_distribution<int>(20, 300)(rng);
    const uint64_t child_seed = rng();
    INFO("trial " << trial << ": kill after " << wait_ms << (early ? " ms" : " ms of commits")
                  << ", child seed " << child_seed << ", " << model.live.size()
                  << " documents before, last commit " << model.ts);

    int fds[2];
    REQUIRE(pipe(fds) == 0);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      close(fds[0]);
      ChildMain(path, fds[1], model, child_seed, parent);
    }
    close(fds[1]);
    // Read the reports until the kill time (no REQUIRE until the child is dead). An early kill
    // is timed from the fork (it may land inside Open); the others from the child's first
    // report, so that they land among commits however slowly the child gets going.
    using Clock = std::chrono::steady_clock;
    std::string buffer;
    char chunk[4096];
    bool eof = false;
    std::optional<Clock::time_point> deadline;
    if (early) deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
    const Clock::time_point hang_guard =
        Clock::now() + absl::ToChronoNanoseconds(stagedb::testing::kHangGuard);
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline.value_or(hang_guard) - Clock::now());
      if (left.count() <= 0) break;
      pollfd p{fds[0], POLLIN, 0};
      const int ready = poll(&p, 1, static_cast<int>(left.count()));
      if (ready <= 0) continue;
      const ssize_t n = read(fds[0], chunk, sizeof chunk);
      if (n > 0) {
        buffer.append(chunk, static_cast<size_t>(n));
        if (!deadline && buffer.find('\n') != std::string::npos) {
          deadline = Clock::now() + std::chrono::milliseconds(wait_ms);
        }
      } else if (n == 0 || errno != EINTR) {
        eof = true;  // the child ended on its own
        break;
      }
    }
    const int kill_result = kill(pid, SIGKILL);
    int status = 0;
    const pid_t waited = waitpid(pid, &status, 0);
    // Whatever the child wrote before it died was reported.
    for (;;) {
      const ssize_t n = read(fds[0], chunk, sizeof chunk);
      if (n > 0) {
        buffer.append(chunk, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        break;
      }
    }
    close(fds[0]);
    REQUIRE(kill_result == 0);
    REQUIRE(waited == pid);

    std::vector<std::string> problems;
    const std::vector<Record> records = ParseReport(buffer, &problems);
    const size_t partial = buffer.size() - (buffer.rfind('\n') + 1);
    INFO(records.size() << " commits reported (" << partial << " bytes of a partial report), "
                        << "child wait status " << status << (eof ? " (ended on its own)" : ""));
    CHECK(!eof);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
    if (!early) CHECK(!records.empty());  // killed after the first report, by construction
    for (const Record& record : records) ApplyRecord(model, record, &problems);
    total_reported += records.size();
    if (records.empty()) ++early_kills;

    // Reopen (recovering the killed writer's file) and check.
    auto db = stagedb::testing::OpenOrFail(DbOptions(path));
    bool in_flight = false;
    for (std::string& p : ReadAndCheck(*db, model, &in_flight)) problems.push_back(std::move(p));
    if (in_flight) ++total_in_flight;
    INFO("problems:" << Join(problems));
    CHECK(problems.empty());

    // The recovered database takes a new commit, and reads back right.
    const Record record = CommitPlan(*db, rng, model);
    CHECK(record.ts == model.ts + 1);
    std::vector<std::string> after;
    ApplyRecord(model, record, &after);
    for (std::string& p : ReadAndCheck(*db, model)) after.push_back(std::move(p));
    INFO("problems after the parent's commit:" << Join(after));
    CHECK(after.empty());
  }
  std::printf(
      "crash_test: %d trials, %zu commits reported, %zu unreported commits found in flight, "
      "%zu trials killed before the first report, %zu documents at the end (seed %llu)\n",
      trials, total_reported, total_in_flight, early_kills, model.live.size(),
      static_cast<unsigned long long>(seed));
}

// The checks above can fail: each kind of damage they look for, made by hand, is reported.
TEST_CASE("the crash checks flag lost, extra, changed and unindexed documents", "[crash]") {
  TempDir dir;
  auto db = stagedb::testing::OpenOrFail(DbOptions(dir.Sub("db")));
  std::mt19937_64 rng(Seed());
  Model model;
  for (int i = 0; i < 40; ++i) {
    const Record record = CommitPlan(*db, rng, model);
    std::vector<std::string> problems;
    ApplyRecord(model, record, &problems);
    REQUIRE(problems.empty());
  }
  REQUIRE(model.deleted.size() > 0);
  std::vector<std::string> read_problems;
  const Scans good = ReadScans(*db, model, &read_problems);
  REQUIRE(read_problems.empty());
  Model adopted;
  {
    bool in_flight = true;
    const std::vector<std::string> problems = Check(good, model, &adopted, &in_flight);
    INFO("problems:" << Join(problems));
    REQUIRE(problems.empty());
    CHECK(!in_flight);
  }
  auto flagged = [&](const Scans& scans, const Model& m, const std::string& needle) {
    Model ignored;
    const std::vector<std::string> problems = Check(scans, m, &ignored);
    INFO("expected a problem containing \"" << needle << "\"; problems:" << Join(problems));
    bool found = false;
    for (const std::string& p : problems) found = found || p.find(needle) != std::string::npos;
    CHECK(found);
  };
  const int64_t some_seq = model.live.begin()->first;

  SECTION("a reported commit that is not in the database") {
    Model m = model;
    Record lost;
    lost.ts = m.ts + 1;
    lost.ops.push_back({'I', m.next_seq, 1, 0, 20, "fabricated"});
    std::vector<std::string> ignored;
    ApplyRecord(m, lost, &ignored);
    flagged(good, m, "reported commits were lost");
    flagged(good, m, absl::StrCat("reported seq ", lost.ops[0].seq, " is missing"));
  }
  SECTION("a reported document missing, with no commit in flight") {
    Model m = model;
    m.live[m.next_seq] = {"fabricated", 1, 0, 20};
    m.next_seq++;
    flagged(good, m, "is missing");
  }
  SECTION("a reported patch not applied") {
    Model m = model;
    m.live[some_seq].version++;
    flagged(good, m, absl::StrCat("reported seq ", some_seq, " is not as reported"));
  }
  SECTION("a reported delete not applied") {
    Model m = model;
    m.deleted[some_seq] = m.live[some_seq].id;
    m.live.erase(some_seq);
    flagged(good, m, "was reported deleted but is present");
  }
  SECTION("unreported commits") {
    Model m = model;
    Record r1 = CommitPlan(*db, rng, model);
    Model after_one;
    std::vector<std::string> problems;
    const Scans one = ReadScans(*db, m, &problems);
    REQUIRE(problems.empty());
    // One unreported commit is the one in flight: accepted, and adopted.
    bool in_flight = false;
    problems = Check(one, m, &after_one, &in_flight);
    INFO("problems:" << Join(problems));
    CHECK(problems.empty());
    CHECK(in_flight);
    CHECK(after_one.ts == r1.ts);
    CHECK(after_one.live.contains(m.next_seq));
    // But not when the reports say nothing was in flight.
    Model claimed = m;
    claimed.ts = r1.ts;
    flagged(one, claimed, "unreported document");
    // Nor two of them.
    CommitPlan(*db, rng, after_one);
    const Scans two = ReadScans(*db, m, &problems);
    REQUIRE(problems.empty());
    flagged(two, m, "more than one unreported commit");
  }
  SECTION("a torn document") {
    Scans s = good;
    Document& d = s.by_creation_time[3];
    Object fields = d.fields();
    fields["payload"] =
        fields["payload"].as_string().substr(0, fields["payload"].as_string().size() - 1) + "#";
    d = Document(d.id(), fields);
    flagged(s, model, "torn or stale");
    fields.erase("group");
    d = Document(d.id(), fields);
    flagged(s, model, "has 5 fields");
  }
  SECTION("index entries missing, extra or stale") {
    {
      Scans s = good;
      auto& [group, docs] = *std::find_if(s.group_lookup.begin(), s.group_lookup.end(),
                                          [](const auto& g) { return !g.second.empty(); });
      docs.pop_back();
      flagged(s, model, "by_group Eq over all groups misses");
    }
    {
      Scans s = good;
      s.seq_lookup[some_seq].clear();
      flagged(s, model, absl::StrCat("by_seq Eq(", some_seq, ") finds 0 documents"));
    }
    {
      Scans s = good;
      s.seq_lookup[model.deleted.begin()->first] = {s.by_creation_time[0]};
      flagged(s, model, "finds 1 documents, expected 0");
    }
    {
      Scans s = good;
      s.by_seq.push_back(s.by_seq.front());
      flagged(s, model, "by_seq lists");
    }
    {
      Scans s = good;
      s.by_id.erase(s.by_id.begin() + 5);
      flagged(s, model, "by_id lists");
    }
    {
      Scans s = good;
      // A stale entry: the document under its old group.
      auto& docs = s.group_lookup[(s.by_creation_time[0]["group"].as_int64() + 1) % kGroups];
      docs.insert(docs.begin(), s.by_creation_time[0]);
      flagged(s, model, "by_group Eq over all groups finds");
    }
    {
      Scans s = good;
      s.gets[model.deleted.begin()->second] = s.by_creation_time[0];
      flagged(s, model, "finds a document");
    }
  }
  SECTION("report parsing") {
    std::vector<std::string> problems;
    Record r;
    r.ts = 7;
    r.ops.push_back({'I', 3, 2, 0, 40, "abc"});
    r.ops.push_back({'P', 1, 5, 2, 30, ""});
    r.ops.push_back({'D', 0, 0, 0, 0, ""});
    const std::string line = FormatRecord(r);
    // A partial last record is ignored.
    std::vector<Record> parsed = ParseReport(line + line.substr(0, 9), &problems);
    CHECK(problems.empty());
    REQUIRE(parsed.size() == 1);
    CHECK(FormatRecord(parsed[0]) == line);
    parsed = ParseReport(line + "C 8 I 4 1\n", &problems);
    CHECK(parsed.size() == 1);
    CHECK(problems.size() == 1);
    problems.clear();
    parsed = ParseReport("X Mutate: INTERNAL\n", &problems);
    CHECK(parsed.empty());
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].find("the child failed") != std::string::npos);
    // Reports out of timestamp order are flagged.
    Model m;
    m.ts = 3;
    problems.clear();
    r.ops.resize(1);
    ApplyRecord(m, r, &problems);
    CHECK(problems.size() == 1);
  }
}

}  // namespace
