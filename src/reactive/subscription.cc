#include "stagedb/subscription.h"

#include "reactive/change_set.h"
#include "reactive/subscription_registry.h"

namespace stagedb {

std::vector<Document> QueryUpdate::documents() const {
  std::vector<Document> documents;
  if (!result.ok()) return documents;
  std::optional<std::vector<const Value*>> list = internal::DocumentList(*result);
  if (!list) return documents;
  documents.reserve(list->size());
  for (const Value* document : *list) documents.push_back(internal::ToDocument(*document));
  return documents;
}

Subscription::~Subscription() { Unsubscribe(); }

Subscription& Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    Unsubscribe();
    state_ = std::move(other.state_);
    registry_ = std::move(other.registry_);
  }
  return *this;
}

boost::signals2::connection Subscription::Connect(const UpdateSlot& slot) {
  if (!active()) return {};
  return state_->signal.connect(slot);
}

void Subscription::Unsubscribe() {
  if (state_ == nullptr) return;
  if (std::shared_ptr<internal::SubscriptionRegistry> registry = registry_.lock()) {
    registry->Unsubscribe(*state_);
  }
  state_.reset();
  registry_.reset();
}

bool Subscription::active() const {
  if (state_ == nullptr) return false;
  std::shared_ptr<internal::SubscriptionRegistry> registry = registry_.lock();
  return registry != nullptr && registry->IsActive(*state_);
}

}  // namespace stagedb
