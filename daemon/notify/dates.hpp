#pragma once
// Dates as people read them (SPEC §13.4): "27 November 2026" in English,
// "2026年11月27日" in Chinese. A notice's text shows these; its JSON keeps
// RFC 3339. Dates are UTC days, the same as the RFC 3339 times beside them.

#include <string>
#include <string_view>

#include "daemon/base/time.hpp"

namespace privacyd::notify {

std::string display_date(UnixMillis at, std::string_view locale);
// The same for an RFC 3339 text; the text unchanged when it is not one.
std::string display_date(std::string_view rfc3339, std::string_view locale);

}  // namespace privacyd::notify
