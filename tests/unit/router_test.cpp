#include <catch2/catch.hpp>

#include "daemon/http/router.hpp"

using namespace privacyd::http;

namespace {
boost::asio::awaitable<Response> ok(Request&) { co_return Response::json(200, "{}"); }
}  // namespace

TEST_CASE("routes match literal segments and capture {params}", "[router]") {
  Router r;
  r.add("GET", "/v1/requests", ok);
  r.add("GET", "/v1/requests/{id}", ok);
  r.add("POST", "/v1/requests/{id}/approve", ok, 1024);

  auto list = r.match("GET", "/v1/requests");
  REQUIRE(list.route != nullptr);
  CHECK(list.route->pattern == "/v1/requests");

  auto one = r.match("GET", "/v1/requests/req_123");
  REQUIRE(one.route != nullptr);
  CHECK(one.route->pattern == "/v1/requests/{id}");
  REQUIRE(one.params.size() == 1);
  CHECK(one.params[0] == std::pair<std::string, std::string>{"id", "req_123"});

  auto approve = r.match("POST", "/v1/requests/abc/approve");
  REQUIRE(approve.route != nullptr);
  CHECK(approve.route->max_body == 1024);
}

TEST_CASE("a known path under another method is told apart from an unknown path", "[router]") {
  Router r;
  r.add("GET", "/healthz", ok);
  auto wrong = r.match("POST", "/healthz");
  CHECK(wrong.route == nullptr);
  CHECK(wrong.wrong_method);
  auto missing = r.match("GET", "/nope");
  CHECK(missing.route == nullptr);
  CHECK_FALSE(missing.wrong_method);
}

TEST_CASE("header lookup ignores case", "[router]") {
  Request req;
  req.headers = {{"Content-Type", "application/json"}, {"webhook-id", "msg_1"}};
  CHECK(req.header("content-type") == "application/json");
  CHECK(req.header("Webhook-Id") == "msg_1");
  CHECK(req.header("missing").empty());
}

TEST_CASE("error bodies carry code, message and field", "[router]") {
  auto r = error(400, "invalid_field", "must be a string", "subject.huawei_id");
  CHECK(r.status == 400);
  CHECK(r.body == R"({"error":{"code":"invalid_field","message":"must be a string","field":"subject.huawei_id"}})");
}
