#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "daemon/base/diagnostic.hpp"

using namespace privacyd;

TEST_CASE("diagnostics print as path:line:col: message [rule]", "[diagnostic]") {
  CHECK(format_text({"workflows/deletion.yaml", 12, 7, "unknown action", "workflow"}) ==
        "workflows/deletion.yaml:12:7: unknown action [workflow]");
  CHECK(format_text({"config/privacyd.yaml", 0, 0, "cannot read config file", "io"}) ==
        "config/privacyd.yaml: cannot read config file [io]");
}

TEST_CASE("diagnostics print as JSON for editors", "[diagnostic]") {
  auto json = boost::json::parse(format_json({{"a.yaml", 3, 5, "bad \"x\"", "type"}}));
  auto& p = json.at("problems").as_array().at(0).as_object();
  CHECK(p.at("path").as_string() == "a.yaml");
  CHECK(p.at("line").as_int64() == 3);
  CHECK(p.at("column").as_int64() == 5);
  CHECK(p.at("message").as_string() == "bad \"x\"");
  CHECK(p.at("rule").as_string() == "type");
}

TEST_CASE("did_you_mean finds near misses only", "[diagnostic]") {
  CHECK(did_you_mean("systems.erse", {"systems.erase", "systems.collect"}) == "systems.erase");
  CHECK(did_you_mean("lisen", {"listen", "admin"}) == "listen");
  CHECK(did_you_mean("completely", {"listen", "admin"}).empty());
}
