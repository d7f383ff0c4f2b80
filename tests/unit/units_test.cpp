#include <catch2/catch.hpp>

#include "daemon/base/units.hpp"

using namespace privacyd;
using namespace std::chrono_literals;

TEST_CASE("durations use the units operators write", "[units]") {
  CHECK(parse_duration("500ms") == Duration(500ms));
  CHECK(parse_duration("30s") == Duration(30s));
  CHECK(parse_duration("10m") == Duration(10min));
  CHECK(parse_duration("2h") == Duration(2h));
  CHECK(parse_duration("7d") == Duration(7 * 24h));
  CHECK(parse_duration("3y") == Duration(3 * 365 * 24h));
  CHECK(parse_duration("0s") == Duration(0ms));
}

TEST_CASE("malformed durations are refused, not guessed", "[units]") {
  for (auto bad : {"", "s", "30", "30 s", "-5s", "1.5h", "10sec", "5S", "99999999999999999999d", "10m5s"}) {
    INFO(bad);
    CHECK_FALSE(parse_duration(bad).has_value());
  }
}

TEST_CASE("durations print in their largest whole unit", "[units]") {
  CHECK(format_duration(Duration(300s)) == "5m");
  CHECK(format_duration(Duration(1500ms)) == "1500ms");
  CHECK(format_duration(Duration(48h)) == "2d");
}

TEST_CASE("sizes are binary units", "[units]") {
  CHECK(parse_size("512B") == 512U);
  CHECK(parse_size("64KiB") == 64U * 1024U);
  CHECK(parse_size("1MiB") == 1024U * 1024U);
  CHECK(parse_size("1GiB") == 1024ULL * 1024U * 1024U);
  CHECK(parse_size("4096") == 4096U);
  CHECK_FALSE(parse_size("64KB").has_value());
  CHECK_FALSE(parse_size("k").has_value());
  CHECK_FALSE(parse_size("99999999999999GiB").has_value());
}
