#include "daemon/base/diagnostic.hpp"

#include <algorithm>
#include <tuple>
#include <boost/json.hpp>

namespace privacyd {

std::string format_text(const Diagnostic& d) {
  std::string out = d.path;
  if (d.line > 0) {
    out += ':' + std::to_string(d.line) + ':' + std::to_string(d.column);
  }
  out += ": " + d.message;
  if (!d.rule.empty()) out += " [" + d.rule + "]";
  return out;
}

std::string format_json(const Diagnostics& ds) {
  boost::json::array problems;
  for (const auto& d : ds) {
    problems.push_back({{"path", d.path},
                        {"line", d.line},
                        {"column", d.column},
                        {"message", d.message},
                        {"rule", d.rule}});
  }
  return boost::json::serialize(boost::json::object{{"problems", std::move(problems)}});
}

void sort_by_position(Diagnostics& ds, std::size_t from) {
  std::stable_sort(ds.begin() + static_cast<std::ptrdiff_t>(from), ds.end(), [](const Diagnostic& a, const Diagnostic& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
}

namespace {
// Optimal string alignment distance: insertions, deletions, substitutions
// and transpositions of neighbours ("lsiten") each cost one.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  const std::size_t w = b.size() + 1;
  std::vector<std::size_t> d((a.size() + 1) * w);
  for (std::size_t i = 0; i <= a.size(); ++i) d[i * w] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i * w + j] = std::min({d[(i - 1) * w + j] + 1, d[i * w + j - 1] + 1, d[(i - 1) * w + j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i * w + j] = std::min(d[i * w + j], d[(i - 2) * w + j - 2] + 1);
      }
    }
  }
  return d[a.size() * w + b.size()];
}
}  // namespace

std::string did_you_mean(std::string_view word, const std::vector<std::string_view>& candidates) {
  // Allow roughly one typo per four letters, at least one, at most three.
  const std::size_t budget = std::clamp<std::size_t>(word.size() / 4, 1, 3);
  std::string_view best;
  std::size_t best_distance = budget + 1;
  for (auto c : candidates) {
    auto d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return std::string(best);
}

}  // namespace privacyd
