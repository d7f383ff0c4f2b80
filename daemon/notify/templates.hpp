#pragma once
// Notice templates: policies/notices/NAME.LOCALE.mustache, rendered with
// kainjow mustache. A locale falls back to its language ("zh-CN" → "zh")
// and then to "en". Every template must parse, every NAME needs an "en",
// and a template may use only the variables its notice provides — all
// checked when policies load, never discovered as a blank at send time.

#include <boost/json/value.hpp>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "daemon/base/diagnostic.hpp"

namespace privacyd::notify {

// The variables each kind of notice offers its template (flat: names used
// inside sections are listed too).
const std::map<std::string, std::set<std::string>, std::less<>>& template_variables();

class Templates {
 public:
  static Templates load(const std::filesystem::path& dir, Diagnostics& out);

  bool has(std::string_view name) const;
  // Where NAME.en.mustache would be, for messages about a missing one.
  std::filesystem::path path_of(std::string_view name) const { return dir_ / (std::string(name) + ".en.mustache"); }
  // The text for `name` in `locale` (with fallbacks); throws if none.
  std::string render(std::string_view name, std::string_view locale, const boost::json::value& data) const;

 private:
  std::map<std::string, std::map<std::string, std::string>, std::less<>> sources_;  // name → locale → text
  std::filesystem::path dir_;
};

// The {{names}} a template uses (variables and sections); nullopt-like
// empty set when it uses none.
std::set<std::string> used_variables(std::string_view source);

}  // namespace privacyd::notify
