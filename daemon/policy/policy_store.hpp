#pragma once
// The loaded policies, swapped whole on reload, and what intake asks of
// them (which partners exist, which categories, how long each jurisdiction
// allows).

#include <memory>
#include <mutex>

#include "daemon/intake/directory.hpp"
#include "daemon/policy/policies.hpp"

namespace privacyd::policy {

class PolicyStore final : public intake::Directory {
 public:
  explicit PolicyStore(Policies policies) : current_(std::make_shared<const Policies>(std::move(policies))) {}

  std::shared_ptr<const Policies> current() const {
    std::lock_guard lock(mutex_);
    return current_;
  }
  void replace(Policies policies) {
    auto next = std::make_shared<const Policies>(std::move(policies));
    std::lock_guard lock(mutex_);
    current_ = std::move(next);
  }

  std::optional<std::vector<std::string>> partner_shared_categories(std::string_view partner_id) const override {
    auto p = current()->partner(partner_id);
    if (p == nullptr) return std::nullopt;
    return p->shared_categories;
  }
  bool category_known(std::string_view category) const override {
    return current()->categories.contains(std::string(category));
  }
  Duration deadline(std::string_view jurisdiction) const override {
    return current()->jurisdiction(jurisdiction).deadline;
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const Policies> current_;
};

}  // namespace privacyd::policy
