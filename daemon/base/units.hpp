#pragma once
// The duration and size notations operators write in YAML:
// durations `500ms`, `30s`, `10m`, `2h`, `7d` (also `3y` for retention holds);
// sizes `512B`, `64KiB`, `1MiB`, `1GiB`.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace privacyd {

using Duration = std::chrono::milliseconds;

std::optional<Duration> parse_duration(std::string_view text);
std::string format_duration(Duration d);

std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace privacyd
