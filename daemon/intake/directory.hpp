#pragma once
// What intake needs to know from the policies: which partners exist and
// what they receive by default, which categories exist, and how long each
// jurisdiction allows for a request.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/base/units.hpp"

namespace privacyd::intake {

class Directory {
 public:
  virtual ~Directory() = default;
  // nullopt: no such partner (the webhook is answered 404).
  virtual std::optional<std::vector<std::string>> partner_shared_categories(std::string_view partner_id) const = 0;
  virtual bool category_known(std::string_view category) const = 0;
  // The time allowed to answer a request under `jurisdiction` ("" or an
  // unknown name means the default).
  virtual Duration deadline(std::string_view jurisdiction) const = 0;
};

// Used until policies are loaded (SPEC §6 arrives with the policies
// component): every partner and category is accepted, partners have no
// default categories, and every jurisdiction gets the SPEC default of 30
// days. It never rejects anything, so it is never used in place of real
// policies once they exist.
class DefaultDirectory final : public Directory {
 public:
  std::optional<std::vector<std::string>> partner_shared_categories(std::string_view) const override {
    return std::vector<std::string>{};
  }
  bool category_known(std::string_view) const override { return true; }
  Duration deadline(std::string_view) const override { return std::chrono::hours(24 * 30); }
};

}  // namespace privacyd::intake
