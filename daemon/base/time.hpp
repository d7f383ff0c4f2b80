#pragma once
// RFC 3339 timestamps in and out, as milliseconds since the Unix epoch.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace privacyd {

using UnixMillis = std::int64_t;

UnixMillis to_unix_ms(std::chrono::system_clock::time_point t);
std::chrono::system_clock::time_point from_unix_ms(UnixMillis ms);

// "2026-11-26T05:00:00Z", "2026-11-26T05:00:00.123+08:00"; nullopt if not RFC 3339.
std::optional<UnixMillis> parse_rfc3339(std::string_view text);
// Always UTC with a Z; milliseconds only when non-zero.
std::string format_rfc3339(UnixMillis ms);

}  // namespace privacyd
