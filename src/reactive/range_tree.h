// RangeTree: a set of half-open key intervals [start, end), each with an owner, answering "which
// intervals contain key k" in O(log n + k) expected. A treap ordered by (start, owner, end) whose
// nodes also hold the largest `end` of their subtree, so a search skips every subtree that ends at
// or before k (the classic augmented interval tree, CLRS 14.3). The subscription registry keeps one
// per index; a commit's written keys are the probes.
#ifndef STAGEDB_SRC_REACTIVE_RANGE_TREE_H_
#define STAGEDB_SRC_REACTIVE_RANGE_TREE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "absl/functional/function_ref.h"

namespace stagedb::internal {

class RangeTree {
 public:
  RangeTree();
  RangeTree(const RangeTree&) = delete;
  RangeTree& operator=(const RangeTree&) = delete;
  RangeTree(RangeTree&& other) noexcept;
  RangeTree& operator=(RangeTree&& other) noexcept;
  ~RangeTree();

  // Adds [start, end) for `owner`; an empty interval (start >= end) is not stored. Adding the
  // same (start, end, owner) twice stores it once. The tree keeps the views: the owner keeps the
  // bytes alive, unchanged, until it erases the interval.
  void Insert(std::string_view start, std::string_view end, uint64_t owner);
  // Removes [start, end) of `owner`; absent intervals are ignored.
  void Erase(std::string_view start, std::string_view end, uint64_t owner);
  // Calls `fn(owner)` for every interval that contains `key`, in start order. An owner with
  // several such intervals is reported once per interval.
  void ForEachContaining(std::string_view key, absl::FunctionRef<void(uint64_t)> fn) const;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  struct Node;
  using NodePtr = std::unique_ptr<Node>;

  static void Update(Node& node);
  static NodePtr Merge(NodePtr left, NodePtr right);
  // Splits `node` into the nodes ordered before (start, owner, end) and the rest.
  static void Split(NodePtr node, std::string_view start, uint64_t owner, std::string_view end,
                    NodePtr* before, NodePtr* rest);
  static void Visit(const Node* node, std::string_view key, absl::FunctionRef<void(uint64_t)> fn);

  NodePtr root_;
  size_t size_ = 0;
  uint64_t rng_state_ = 0x9E3779B97F4A7C15u;  // treap priorities: deterministic, well spread
};

}  // namespace stagedb::internal

#endif  // STAGEDB_SRC_REACTIVE_RANGE_TREE_H_
