#include "daemon/notify/dates.hpp"

#include <array>
#include <chrono>

namespace privacyd::notify {

std::string display_date(UnixMillis at, std::string_view locale) {
  namespace chrono = std::chrono;
  const chrono::year_month_day day{chrono::floor<chrono::days>(chrono::sys_time<chrono::milliseconds>(chrono::milliseconds(at)))};
  const int year = static_cast<int>(day.year());
  const unsigned month = static_cast<unsigned>(day.month());
  const unsigned d = static_cast<unsigned>(day.day());
  if (locale.starts_with("zh")) {
    return std::to_string(year) + "年" + std::to_string(month) + "月" + std::to_string(d) + "日";
  }
  static constexpr std::array<std::string_view, 12> kMonths = {"January", "February", "March",     "April",
                                                               "May",     "June",     "July",      "August",
                                                               "September", "October", "November", "December"};
  return std::to_string(d) + " " + std::string(kMonths[month - 1]) + " " + std::to_string(year);
}

std::string display_date(std::string_view rfc3339, std::string_view locale) {
  if (auto at = parse_rfc3339(rfc3339)) return display_date(*at, locale);
  return std::string(rfc3339);
}

}  // namespace privacyd::notify
