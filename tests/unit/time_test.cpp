#include <catch2/catch.hpp>

#include "daemon/base/time.hpp"

using namespace privacyd;

TEST_CASE("RFC 3339 timestamps parse to Unix milliseconds", "[time]") {
  CHECK(parse_rfc3339("1970-01-01T00:00:00Z") == 0);
  CHECK(parse_rfc3339("2026-11-26T05:00:00Z") == 1795669200000);
  CHECK(parse_rfc3339("2026-11-26T13:00:00+08:00") == 1795669200000);
  CHECK(parse_rfc3339("2026-11-26T05:00:00.5Z") == 1795669200500);
  CHECK(parse_rfc3339("2026-11-26T05:00:00.123456Z") == 1795669200123);
  CHECK(parse_rfc3339("2024-02-29T00:00:00Z").has_value());
}

TEST_CASE("anything that is not RFC 3339 is refused", "[time]") {
  for (auto bad : {"", "2026-11-26", "2026-11-26 05:00:00Z", "2026-11-26T05:00:00", "2026-13-01T00:00:00Z",
                   "2025-02-29T00:00:00Z", "2026-11-26T24:00:00Z", "2026-11-26T05:00:00+0800",
                   "2026-11-26T05:00:00Zjunk", "2026-11-26T05:00:00.Z"}) {
    INFO(bad);
    CHECK_FALSE(parse_rfc3339(bad).has_value());
  }
}

TEST_CASE("timestamps print in UTC with a Z", "[time]") {
  CHECK(format_rfc3339(1795669200000) == "2026-11-26T05:00:00Z");
  CHECK(format_rfc3339(1795669200500) == "2026-11-26T05:00:00.500Z");
  CHECK(parse_rfc3339(format_rfc3339(1795669212345)) == 1795669212345);
}
