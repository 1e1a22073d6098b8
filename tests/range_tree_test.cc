// RangeTree (src/reactive): randomized inserts, erases and stabbing queries against a brute-force
// list of intervals.
#include "reactive/range_tree.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace {

using stagedb::internal::RangeTree;

struct Interval {
  std::string start;
  std::string end;
  uint64_t owner;
  friend bool operator==(const Interval&, const Interval&) = default;
};

std::vector<uint64_t> Stab(const RangeTree& tree, std::string_view key) {
  std::vector<uint64_t> owners;
  tree.ForEachContaining(key, [&](uint64_t owner) { owners.push_back(owner); });
  std::sort(owners.begin(), owners.end());
  return owners;
}

std::vector<uint64_t> StabModel(const std::vector<std::unique_ptr<Interval>>& model,
                                std::string_view key) {
  std::vector<uint64_t> owners;
  for (const auto& interval : model) {
    if (interval->start <= key && key < interval->end) owners.push_back(interval->owner);
  }
  std::sort(owners.begin(), owners.end());
  return owners;
}

TEST_CASE("RangeTree answers stabbing queries like a brute-force list") {
  std::mt19937_64 rng(20261123);
  auto key = [&] {
    // Short keys over a small alphabet, so intervals overlap, nest and touch often.
    std::string k(rng() % 4, 'a');
    for (char& c : k) c = static_cast<char>('a' + rng() % 4);
    return k;
  };
  RangeTree tree;
  // The tree views the interval bytes: keep them at stable addresses.
  std::vector<std::unique_ptr<Interval>> model;
  for (int step = 0; step < 20000; ++step) {
    const int action = static_cast<int>(rng() % 10);
    if (action < 5 || model.empty()) {
      auto interval = std::make_unique<Interval>(Interval{key(), key(), rng() % 50});
      const bool present =
          std::any_of(model.begin(), model.end(), [&](const auto& m) { return *m == *interval; });
      tree.Insert(interval->start, interval->end, interval->owner);
      if (!present && interval->start < interval->end) model.push_back(std::move(interval));
    } else if (action < 8) {
      const size_t victim = rng() % model.size();
      tree.Erase(model[victim]->start, model[victim]->end, model[victim]->owner);
      model.erase(model.begin() + static_cast<ptrdiff_t>(victim));
    } else {
      // Erasing an absent interval changes nothing.
      tree.Erase(key(), key(), 999);
    }
    REQUIRE(tree.size() == model.size());
    const std::string probe = key();
    INFO("step " << step << " probe '" << probe << "'");
    REQUIRE(Stab(tree, probe) == StabModel(model, probe));
  }
}

TEST_CASE("RangeTree skips empty intervals and stores duplicates once") {
  RangeTree tree;
  const std::string a = "a", b = "b";
  tree.Insert(b, a, 1);  // empty: start after end
  tree.Insert(a, a, 1);  // empty
  CHECK(tree.empty());
  tree.Insert(a, b, 1);
  tree.Insert(a, b, 1);
  CHECK(tree.size() == 1);
  CHECK(Stab(tree, "a") == std::vector<uint64_t>{1});
  CHECK(Stab(tree, "b").empty());  // end is exclusive
  tree.Erase(a, b, 1);
  CHECK(tree.empty());
}

}  // namespace
