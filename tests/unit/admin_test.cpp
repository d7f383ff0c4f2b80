#include <catch2/catch.hpp>

#include "daemon/admin/tokens.hpp"
#include "daemon/admin/views.hpp"
#include "daemon/crypto/primitives.hpp"
#include "daemon/metrics/metrics.hpp"

using namespace privacyd;

namespace {
std::string line(std::string_view role, std::string_view name, std::string_view token) {
  return std::string(role) + " " + std::string(name) + " sha256:" + crypto::sha256_hex(token) + "\n";
}
}  // namespace

TEST_CASE("admin tokens are hashes with a role, and only a configured token authenticates", "[admin]") {
  auto tokens = admin::parse_tokens("# who may call the admin API\n\n" + line("viewer", "watcher", "tok-view") +
                                        line("operator", "ops", "tok-op"),
                                    "tokens");
  REQUIRE(tokens.size() == 2);
  auto viewer = admin::authenticate(tokens, "Bearer tok-view");
  REQUIRE(viewer);
  CHECK(viewer->name == "watcher");
  CHECK(viewer->role == admin::Role::viewer);
  auto op = admin::authenticate(tokens, "bearer  tok-op ");
  REQUIRE(op);
  CHECK(op->role == admin::Role::operator_);
  CHECK_FALSE(admin::authenticate(tokens, "Bearer tok-nope"));
  CHECK_FALSE(admin::authenticate(tokens, "Basic dG9rLW9wOg=="));
  CHECK_FALSE(admin::authenticate(tokens, "Bearer "));
  CHECK_FALSE(admin::authenticate(tokens, "tok-op"));
  CHECK_FALSE(admin::authenticate(tokens, "Bearer " + std::string(5000, 'a')));
  CHECK_FALSE(admin::authenticate({}, "Bearer tok-op"));
}

TEST_CASE("a bad tokens file names the line and never echoes it", "[admin]") {
  const std::string secret = "s3cr3t-pasted-by-mistake";
  auto problem = [](const std::string& text) {
    try {
      admin::parse_tokens(text, "admin-tokens");
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no problem");
  };
  CHECK(problem(secret + "\n") == "admin-tokens:1: expected \"ROLE NAME sha256:HEX\"");
  CHECK(problem("\nroot ops sha256:" + std::string(64, 'a') + "\n") == "admin-tokens:2: the role is viewer or operator");
  CHECK(problem("viewer ops " + secret + "\n").find("the hash is sha256:") != std::string::npos);
  CHECK(problem("viewer ops sha256:abcd\n").find("admin-tokens:1:") == 0);
  CHECK(problem("viewer a/b sha256:" + std::string(64, 'a') + "\n").find("a name is") != std::string::npos);
  CHECK(problem(line("viewer", "ops", "a") + line("operator", "ops", "b")) == "admin-tokens:2: the name \"ops\" is used twice");
  CHECK(problem(line("viewer", "ops", "a") + "viewer x sha256:" + std::string(64, 'a') + " extra\n").find(":2:") !=
        std::string::npos);
  for (const auto& text : {secret + "\n", "viewer ops " + secret + "\n"}) {
    CHECK(problem(text).find(secret) == std::string::npos);
  }
}

TEST_CASE("days left round down and go negative once overdue", "[admin]") {
  constexpr std::int64_t day = 86400000;
  CHECK(admin::days_left(30 * day, 0) == 30);
  CHECK(admin::days_left(30 * day, 1) == 29);
  CHECK(admin::days_left(0, 0) == 0);
  CHECK(admin::days_left(0, 1) == -1);
  CHECK(admin::days_left(0, day) == -1);
  CHECK(admin::days_left(0, day + 1) == -2);
}

TEST_CASE("metrics render in the Prometheus text format", "[metrics]") {
  metrics::Registry registry;
  auto& hits = registry.counter("t_hits_total", "Hits.", {"route", "status"});
  hits.with({"/v1/requests/{id}", "200"}).inc();
  hits.with({"/v1/requests/{id}", "200"}).inc(2);
  hits.with({"say \"hi\"\\\n", "500"}).inc();
  // Looked up by views: the same child for the same values, another for any other.
  const std::string route = "/v1/requests/{id}";
  CHECK(&hits.with({route, "200"}) == &hits.with({"/v1/requests/{id}", "200"}));
  CHECK(&hits.with({route, "2000"}) != &hits.with({route, "200"}));
  CHECK(&hits.with({"/v1/requests/{id", "}200"}) != &hits.with({route, "200"}));
  auto& took = registry.histogram("t_seconds", "Time.", {"route"}, {0.1, 1});
  took.with({"/x"}).observe(0.05);
  took.with({"/x"}).observe(0.5);
  took.with({"/x"}).observe(5);
  registry.gauge("t_up", "Up.").with({}).set(1);
  const std::string text = registry.render();
  CHECK(text.find("# HELP t_hits_total Hits.\n# TYPE t_hits_total counter\n") != std::string::npos);
  CHECK(text.find("t_hits_total{route=\"/v1/requests/{id}\",status=\"200\"} 3\n") != std::string::npos);
  CHECK(text.find("t_hits_total{route=\"say \\\"hi\\\"\\\\\\n\",status=\"500\"} 1\n") != std::string::npos);
  CHECK(text.find("t_seconds_bucket{route=\"/x\",le=\"0.1\"} 1\n") != std::string::npos);
  CHECK(text.find("t_seconds_bucket{route=\"/x\",le=\"1\"} 2\n") != std::string::npos);
  CHECK(text.find("t_seconds_bucket{route=\"/x\",le=\"+Inf\"} 3\n") != std::string::npos);
  CHECK(text.find("t_seconds_sum{route=\"/x\"} 5.55\n") != std::string::npos);
  CHECK(text.find("t_seconds_count{route=\"/x\"} 3\n") != std::string::npos);
  CHECK(text.find("t_up 1\n") != std::string::npos);
}
