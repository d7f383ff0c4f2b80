#pragma once
// A problem found in an operator-edited file, reported the way actionlint
// does: `path:line:col: message [rule]`, 1-based.

#include <string>
#include <string_view>
#include <vector>

namespace privacyd {

struct Diagnostic {
  std::string path;
  int line = 0;    // 1-based; 0 when the problem has no position
  int column = 0;  // 1-based
  std::string message;
  std::string rule;
};

using Diagnostics = std::vector<Diagnostic>;

std::string format_text(const Diagnostic& d);
// {"problems":[{"path","line","column","message","rule"},…]}
std::string format_json(const Diagnostics& ds);

// Orders ds[from…] by line and column (stably), as an editor lists them.
void sort_by_position(Diagnostics& ds, std::size_t from = 0);

// The closest candidate to `word` within a small edit distance, or "".
std::string did_you_mean(std::string_view word, const std::vector<std::string_view>& candidates);

}  // namespace privacyd
