#include "workload.h"

#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <random>

#include "nlohmann/json.hpp"

namespace stagedb_bench {

namespace fs = std::filesystem;

const BackendInfo kBackends[4] = {
    {"stagedb", OpenStagedbBackend},
    {"lmdb", OpenLmdbBackend},
    {"sqlite-json", OpenSqliteJsonBackend},
    {"sqlite-typed", OpenSqliteTypedBackend},
};

void Messages::SetSessions(const std::vector<std::string>& session_ids) {
  for (size_t i = 0; i < docs.size(); ++i) docs[i].session_id = session_ids.at(session_of[i]);
}

namespace {

constexpr int kAuthors = 50;
constexpr double kFirstSentAt = 1.7e12;  // ms since the epoch: November 2023
constexpr double kSentAtStep = 50;       // ms between consecutive messages, at most

const char* Kind(uint64_t percent) {
  if (percent < 70) return "chat";
  return percent < 90 ? "tool" : "status";
}

// "author-007": ten characters.
std::string Author(uint64_t n) {
  std::string digits = std::to_string(n % kAuthors);
  return "author-" + std::string(3 - digits.size(), '0') + digits;
}

// Words up to exactly `length` characters.
std::string Body(std::mt19937_64& rng, size_t length) {
  static const char* const kWords[] = {
      "the",    "build",   "failed", "because", "of",    "a",       "missing", "import",
      "in",     "App.tsx", "let",    "me",      "check", "which",   "version", "we",
      "pinned", "running", "tests",  "now",     "all",   "green",   "after",   "rename",
      "diff",   "looks",   "good",   "ship",    "it",    "waiting", "for",     "review"};
  std::string body;
  while (body.size() < length) {
    if (!body.empty()) body += ' ';
    body += kWords[rng() % std::size(kWords)];
  }
  body.resize(length);
  return body;
}

}  // namespace

Messages MakeMessages(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> next_seq(kSessions, 0);
  Messages messages;
  messages.docs.reserve(n);
  messages.session_of.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    int session = static_cast<int>(rng() % kSessions);
    MessageDoc doc;
    doc.author = Author(rng());
    doc.kind = Kind(rng() % 100);
    doc.seq = next_seq[session]++;
    // Whole milliseconds, strictly increasing: message i falls in [i, i + 1) steps.
    doc.sent_at = kFirstSentAt + static_cast<double>(i) * kSentAtStep +
                  static_cast<double>(rng() % static_cast<uint64_t>(kSentAtStep));
    doc.body = Body(rng, 100 + rng() % 41);
    messages.docs.push_back(std::move(doc));
    messages.session_of.push_back(session);
  }
  return messages;
}

double AverageJsonBytes(const Messages& messages) {
  if (messages.docs.empty()) return 0;
  size_t total = 0;
  for (const MessageDoc& doc : messages.docs) {
    total += nlohmann::json{{"sessionId", std::string(32, '0')},
                            {"author", doc.author},
                            {"kind", doc.kind},
                            {"seq", doc.seq},
                            {"sentAt", doc.sent_at},
                            {"body", doc.body}}
                 .dump()
                 .size();
  }
  return static_cast<double>(total) / static_cast<double>(messages.docs.size());
}

std::vector<uint32_t> Shuffled(size_t n, uint64_t seed) {
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  return order;
}

std::vector<uint32_t> RandomSequence(size_t n, uint32_t bound, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint32_t> out(n);
  for (uint32_t& v : out) v = static_cast<uint32_t>(rng() % bound);
  return out;
}

Store::Store(const BackendInfo& info, const std::string& root) {
  static int counter = 0;
  dir_ = root + "/" + info.name + "-" + std::to_string(++counter);
  fs::create_directories(dir_);
  backend_ = info.open(dir_);
  sessions_ = backend_->CreateSessions(kSessions);
}

Store::~Store() {
  backend_.reset();
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

void InsertAll(Backend& backend, const std::vector<MessageDoc>& docs) {
  for (size_t i = 0; i < docs.size(); i += kBatch) {
    backend.InsertBatch(std::span(docs).subspan(i, std::min(kBatch, docs.size() - i)));
  }
}

namespace {

// Per session, the indexes of its newest kNewest messages, newest first. sentAt increases with
// the index, so they are the session's last ones.
std::vector<std::vector<size_t>> NewestBySession(const Messages& messages) {
  std::vector<std::vector<size_t>> newest(kSessions);
  for (size_t i = messages.docs.size(); i-- > 0;) {
    std::vector<size_t>& session = newest[messages.session_of[i]];
    if (session.size() < kNewest) session.push_back(i);
  }
  return newest;
}

}  // namespace

void Verify(const std::string& name, Store& store, const Messages& messages) {
  auto fail = [&](const std::string& what) {
    throw BenchError(name + " gave a wrong answer: " + what);
  };
  if (store->num_messages() != messages.docs.size()) fail("the number of messages");
  MessageDoc got;
  for (size_t i = 0; i < messages.docs.size(); i += 97) {
    store->PointRead(i, &got);
    if (got != messages.docs[i]) fail("point read of message " + std::to_string(i));
  }
  std::vector<std::vector<size_t>> newest = NewestBySession(messages);
  std::vector<MessageDoc> page;
  for (int s = 0; s < kSessions; ++s) {
    store->RangeQuery(store.sessions()[s], kNewest, &page);
    bool same = page.size() == newest[s].size();
    for (size_t k = 0; same && k < page.size(); ++k) same = page[k] == messages.docs[newest[s][k]];
    if (!same) fail("newest " + std::to_string(kNewest) + " of session " + std::to_string(s));
  }
}

std::string MakeTempRoot(const std::string& parent, const std::string& prefix) {
  std::error_code ec;
  fs::path base = parent.empty() ? fs::temp_directory_path(ec) : fs::path(parent);
  std::string pattern = (base / (prefix + "-XXXXXX")).string();
  if (mkdtemp(pattern.data()) == nullptr) {
    throw BenchError("cannot create a directory from " + pattern + ": " + std::strerror(errno));
  }
  return pattern;
}

std::optional<std::string_view> FlagValue(std::string_view arg, std::string_view name) {
  if (!arg.starts_with("--") || !arg.substr(2).starts_with(name)) return std::nullopt;
  std::string_view rest = arg.substr(2 + name.size());
  if (!rest.starts_with('=')) return std::nullopt;
  return rest.substr(1);
}

std::optional<size_t> ParseCount(std::string_view text) {
  size_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value == 0) return std::nullopt;
  return value;
}

}  // namespace stagedb_bench
