#include "reactive/range_tree.h"

#include <tuple>
#include <utility>
#include <vector>

namespace stagedb::internal {

struct RangeTree::Node {
  std::string_view start;
  std::string_view end;
  uint64_t owner;
  uint64_t priority;
  const std::string_view* max_end;  // the largest `end` in this subtree (points into a node below)
  NodePtr left;
  NodePtr right;
};

namespace {

// Orders nodes by (start, owner, end).
int CompareKey(std::string_view a_start, uint64_t a_owner, std::string_view a_end,
               std::string_view b_start, uint64_t b_owner, std::string_view b_end) {
  if (int c = a_start.compare(b_start); c != 0) return c;
  if (a_owner != b_owner) return a_owner < b_owner ? -1 : 1;
  return a_end.compare(b_end);
}

}  // namespace

RangeTree::RangeTree() = default;
RangeTree::RangeTree(RangeTree&& other) noexcept = default;
RangeTree& RangeTree::operator=(RangeTree&& other) noexcept = default;

RangeTree::~RangeTree() {
  // Iterative, so a deep tree cannot overflow the stack through recursive unique_ptr deletes.
  std::vector<NodePtr> pending;
  if (root_) pending.push_back(std::move(root_));
  while (!pending.empty()) {
    NodePtr node = std::move(pending.back());
    pending.pop_back();
    if (node->left) pending.push_back(std::move(node->left));
    if (node->right) pending.push_back(std::move(node->right));
  }
}

void RangeTree::Update(Node& node) {
  node.max_end = &node.end;
  for (const NodePtr* child : {&node.left, &node.right}) {
    if (*child && *(*child)->max_end > *node.max_end) node.max_end = (*child)->max_end;
  }
}

RangeTree::NodePtr RangeTree::Merge(NodePtr left, NodePtr right) {
  if (!left) return right;
  if (!right) return left;
  if (left->priority > right->priority) {
    left->right = Merge(std::move(left->right), std::move(right));
    Update(*left);
    return left;
  }
  right->left = Merge(std::move(left), std::move(right->left));
  Update(*right);
  return right;
}

void RangeTree::Split(NodePtr node, std::string_view start, uint64_t owner, std::string_view end,
                      NodePtr* before, NodePtr* rest) {
  if (!node) {
    before->reset();
    rest->reset();
    return;
  }
  if (CompareKey(node->start, node->owner, node->end, start, owner, end) < 0) {
    Split(std::move(node->right), start, owner, end, &node->right, rest);
    Update(*node);
    *before = std::move(node);
  } else {
    Split(std::move(node->left), start, owner, end, before, &node->left);
    Update(*node);
    *rest = std::move(node);
  }
}

void RangeTree::Insert(std::string_view start, std::string_view end, uint64_t owner) {
  if (start >= end) return;
  NodePtr before, rest;
  Split(std::move(root_), start, owner, end, &before, &rest);
  // `rest` starts with the smallest node >= the new one: equal means it is already here.
  const Node* first = rest.get();
  while (first != nullptr && first->left) first = first->left.get();
  if (first == nullptr || CompareKey(first->start, first->owner, first->end, start, owner, end)) {
    // xorshift64*: cheap, and priorities only need to look random to the shape of the input.
    rng_state_ ^= rng_state_ >> 12;
    rng_state_ ^= rng_state_ << 25;
    rng_state_ ^= rng_state_ >> 27;
    auto node = std::make_unique<Node>(Node{.start = start,
                                            .end = end,
                                            .owner = owner,
                                            .priority = rng_state_ * 0x2545F4914F6CDD1Du,
                                            .max_end = nullptr});
    Update(*node);
    before = Merge(std::move(before), std::move(node));
    ++size_;
  }
  root_ = Merge(std::move(before), std::move(rest));
}

void RangeTree::Erase(std::string_view start, std::string_view end, uint64_t owner) {
  NodePtr before, rest;
  Split(std::move(root_), start, owner, end, &before, &rest);
  // The node equal to the key, if any, is the leftmost of `rest`: unlink it, then refresh the
  // max_end of its ancestors (the left spine above it), deepest first.
  std::vector<Node*> ancestors;
  NodePtr* link = &rest;
  while (*link && (*link)->left) {
    ancestors.push_back(link->get());
    link = &(*link)->left;
  }
  if (*link && !CompareKey((*link)->start, (*link)->owner, (*link)->end, start, owner, end)) {
    NodePtr removed = std::move(*link);
    *link = std::move(removed->right);
    --size_;
    for (auto it = ancestors.rbegin(); it != ancestors.rend(); ++it) Update(**it);
  }
  root_ = Merge(std::move(before), std::move(rest));
}

void RangeTree::ForEachContaining(std::string_view key,
                                  absl::FunctionRef<void(uint64_t)> fn) const {
  Visit(root_.get(), key, fn);
}

void RangeTree::Visit(const Node* node, std::string_view key,
                      absl::FunctionRef<void(uint64_t)> fn) {
  // No interval below ends after `key`: nothing here contains it.
  while (node != nullptr && key < *node->max_end) {
    Visit(node->left.get(), key, fn);
    if (key < node->start) return;  // this node and everything to its right start after `key`
    if (key < node->end) fn(node->owner);
    node = node->right.get();
  }
}

}  // namespace stagedb::internal
