#include "daemon/base/units.hpp"

#include <charconv>
#include <limits>

namespace privacyd {
namespace {

// Splits "123unit" into its number and unit; the number must be a plain
// non-negative integer that fits, and the unit must follow directly.
std::optional<std::pair<std::uint64_t, std::string_view>> split(std::string_view text) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end == text.data()) return std::nullopt;
  return std::pair{value, text.substr(static_cast<std::size_t>(end - text.data()))};
}

std::optional<std::uint64_t> scaled(std::uint64_t value, std::uint64_t factor) {
  if (factor != 0 && value > std::numeric_limits<std::int64_t>::max() / factor) return std::nullopt;
  return value * factor;
}

}  // namespace

std::optional<Duration> parse_duration(std::string_view text) {
  auto parts = split(text);
  if (!parts) return std::nullopt;
  auto [value, unit] = *parts;
  constexpr std::uint64_t second = 1000;
  std::uint64_t factor = 0;
  if (unit == "ms") factor = 1;
  else if (unit == "s") factor = second;
  else if (unit == "m") factor = 60 * second;
  else if (unit == "h") factor = 3600 * second;
  else if (unit == "d") factor = 86400 * second;
  else if (unit == "y") factor = 365 * 86400 * second;
  else return std::nullopt;
  auto ms = scaled(value, factor);
  if (!ms) return std::nullopt;
  return Duration(static_cast<Duration::rep>(*ms));
}

std::string format_duration(Duration d) {
  auto ms = d.count();
  struct Unit { const char* suffix; long long size; };
  for (auto u : {Unit{"d", 86400000LL}, Unit{"h", 3600000LL}, Unit{"m", 60000LL}, Unit{"s", 1000LL}}) {
    if (ms != 0 && ms % u.size == 0) return std::to_string(ms / u.size) + u.suffix;
  }
  return std::to_string(ms) + "ms";
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  auto parts = split(text);
  if (!parts) return std::nullopt;
  auto [value, unit] = *parts;
  if (unit == "B" || unit.empty()) return value;
  if (unit == "KiB") return scaled(value, 1ULL << 10);
  if (unit == "MiB") return scaled(value, 1ULL << 20);
  if (unit == "GiB") return scaled(value, 1ULL << 30);
  return std::nullopt;
}

}  // namespace privacyd
