#include "daemon/service/health.hpp"

#include <soci/soci.h>

#include "daemon/store/async.hpp"

namespace privacyd {

void Health::mount(http::Router& router) {
  router.add("GET", "/healthz", [](http::Request&) -> boost::asio::awaitable<http::Response> {
    co_return http::Response::json(200, R"({"status":"ok"})");
  });
  router.add("GET", "/readyz", [this](http::Request&) -> boost::asio::awaitable<http::Response> {
    if (draining_) co_return http::Response::json(503, R"({"status":"draining"})");
    bool up = false;
    try {
      int one = co_await run_in_db(db_, [](soci::session& sql) {
        int value = 0;
        sql << "SELECT 1", soci::into(value);
        return value;
      });
      up = one == 1;
    } catch (const std::exception& e) {
      if (database_up_.exchange(false)) log_.warn("database unreachable", {{"error", e.what()}});
    }
    if (!up) co_return http::Response::json(503, R"({"status":"unavailable","database":"unreachable"})");
    if (!database_up_.exchange(true)) log_.info("database reachable again");
    co_return http::Response::json(200, R"({"status":"ready","database":"ok"})");
  });
}

}  // namespace privacyd
