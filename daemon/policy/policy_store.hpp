#pragma once
// The loaded policies, swapped whole on reload, and what intake asks of
// them (which partners exist, which categories, how long each jurisdiction
// allows).

#include "daemon/base/current.hpp"
#include "daemon/intake/directory.hpp"
#include "daemon/policy/policies.hpp"

namespace privacyd::policy {

class PolicyStore final : public intake::Directory {
 public:
  explicit PolicyStore(Policies policies) : current_(std::move(policies)) {}

  std::shared_ptr<const Policies> current() const { return current_.get(); }
  void replace(Policies policies) { current_.replace(std::move(policies)); }

  std::optional<std::vector<std::string>> partner_shared_categories(std::string_view partner_id) const override {
    const auto policies = current();  // held while the partner is read
    const auto* p = policies->partner(partner_id);
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
  Current<Policies> current_;
};

}  // namespace privacyd::policy
