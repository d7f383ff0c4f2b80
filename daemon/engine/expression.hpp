#pragma once
// `if:` conditions (SPEC §5): PATH, !PATH, PATH == 'x', PATH != 'x', joined
// by && and || (&& binds tighter), with parentheses. Parsed once when the
// workflow loads; evaluated against a JSON context such as
// {"request": {…}, "subject": {…}, "steps": {"unlink": {…}}}.

#include <boost/json/value.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace privacyd::engine {

class Condition {
 public:
  struct Node;

  // Parses `text`; on failure returns the 0-based offset of the problem and
  // a message.
  struct Error {
    std::size_t offset;
    std::string message;
  };
  static std::variant<Condition, Error> parse(std::string_view text);

  bool evaluate(const boost::json::value& context) const;
  // Every PATH the condition reads, e.g. {"subject", "email"}.
  const std::vector<std::vector<std::string>>& paths() const { return paths_; }
  const std::string& text() const { return text_; }

 private:
  std::shared_ptr<const Node> root_;
  std::vector<std::vector<std::string>> paths_;
  std::string text_;
};

// A path is truthy when it exists and is not null, false, 0, "", [] or {}.
const boost::json::value* lookup(const boost::json::value& context, const std::vector<std::string>& path);

}  // namespace privacyd::engine
