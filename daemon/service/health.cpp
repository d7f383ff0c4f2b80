#include "daemon/service/health.hpp"

#include <soci/soci.h>

#include "daemon/store/async.hpp"

namespace privacyd {

namespace {
constexpr auto kProbeTimeout = std::chrono::seconds(2);
}

void Health::mount(http::Router& router) {
  router.add("GET", "/healthz", [](http::Request&) -> boost::asio::awaitable<http::Response> {
    co_return http::Response::json(200, R"({"status":"ok"})");
  });
  router.add("GET", "/readyz", [this](http::Request&) -> boost::asio::awaitable<http::Response> {
    if (draining_) co_return http::Response::json(503, R"({"status":"draining"})");
    if (probing_->exchange(true)) {
      // Another probe is out: this caller gets the last answer.
      if (database_up_) co_return http::Response::json(200, R"({"status":"ready","database":"ok"})");
      co_return http::Response::json(503, R"({"status":"unavailable","database":"unreachable"})");
    }
    // Clears the flag once the last copy of the probe is gone: when the
    // database thread has run it and this caller has its answer.
    struct Release {
      std::shared_ptr<std::atomic<bool>> flag;
      ~Release() { flag->store(false); }
    };
    auto release = std::make_shared<Release>();
    release->flag = probing_;
    auto probe = [release](soci::session& sql) {
      int value = 0;
      sql << "SELECT 1", soci::into(value);
      return value;
    };
    release.reset();
    // Bounded: with every database thread stuck (a half-open connection, a
    // lock wait), readiness is "no", not a hang.
    auto answer = co_await run_in_db_within(db_, probe, kProbeTimeout);
    const bool up = answer.value == 1;
    if (!up && database_up_.exchange(false)) log_.warn("database unreachable", {{"error", answer.error}});
    if (!up) co_return http::Response::json(503, R"({"status":"unavailable","database":"unreachable"})");
    if (!database_up_.exchange(true)) log_.info("database reachable again");
    co_return http::Response::json(200, R"({"status":"ready","database":"ok"})");
  });
}

}  // namespace privacyd
