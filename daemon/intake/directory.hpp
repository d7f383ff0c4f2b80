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

}  // namespace privacyd::intake
