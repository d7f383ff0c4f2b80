#include "daemon/store/jobs.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <soci/soci.h>

#include "daemon/store/database.hpp"
#include "daemon/store/rows.hpp"

namespace privacyd::jobs {

namespace net = boost::asio;

Loop::Loop(net::io_context& ioc, Logger& log, Duration every)
    : strand_(net::make_strand(ioc)), timer_(strand_), log_(log), every_(every) {}

void Loop::add(std::string_view what, Part part) {
  parts_.push_back({std::move(part), std::make_unique<OutageLog>(std::string(what) + " failed")});
}

void Loop::start(std::shared_ptr<void> owner) {
  done_ = false;
  net::co_spawn(strand_, run(std::move(owner)), net::detached);
}

void Loop::wake() {
  auto self = shared_from_this();
  net::post(strand_, [self] {
    self->woken_ = true;
    self->timer_.cancel();
  });
}

void Loop::stop() {
  auto self = shared_from_this();
  self->stopping_ = true;
  net::post(strand_, [self] { self->timer_.cancel(); });
}

net::awaitable<void> Loop::run(std::shared_ptr<void> owner) {
  auto self = shared_from_this();
  while (!stopping_) {
    bool more = false;
    for (auto& entry : parts_) {
      if (stopping_) break;
      try {
        if (co_await entry.part()) more = true;
        entry.outage->succeeded(log_);
      } catch (const std::exception& e) {
        entry.outage->failed(log_, describe_failure(e));
      }
    }
    if (more && !stopping_) continue;
    // A wake-up that came while a round ran found no wait to cut short.
    if (woken_ && !stopping_) {
      woken_ = false;
      continue;
    }
    timer_.expires_after(every_);
    co_await timer_.async_wait(net::as_tuple(net::use_awaitable));
    woken_ = false;
  }
  owner.reset();
  done_ = true;
}

void lease_due(soci::session& sql, const Claim& claim, UnixMillis now, UnixMillis until, const std::string& token,
               const std::function<void(const soci::row&)>& each) {
  const long long at = now;
  const long long lease = until;
  std::string chosen = "SELECT " + std::string(claim.key) + " FROM " + std::string(claim.table) + " WHERE (" +
                       std::string(claim.due) + ") AND (lease_until IS NULL OR lease_until < :lapsed)";
  if (!claim.order_by.empty()) chosen += " ORDER BY " + std::string(claim.order_by);
  chosen += " LIMIT " + std::to_string(claim.limit);
  chosen += skip_locked(sql);
  const std::string statement = "UPDATE " + std::string(claim.table) +
                                " SET lease_until = :until, claim_token = :token WHERE (" + std::string(claim.key) +
                                ") IN (" + chosen + ") RETURNING " + std::string(claim.columns);
  const bool binds_now = claim.due.find(":now") != std::string_view::npos;
  soci::rowset<soci::row> rows =
      binds_now ? (sql.prepare << statement, soci::use(lease, "until"), soci::use(token, "token"),
                   soci::use(at, "now"), soci::use(at, "lapsed"))
                : (sql.prepare << statement, soci::use(lease, "until"), soci::use(token, "token"),
                   soci::use(at, "lapsed"));
  for (const auto& r : rows) each(r);
}

}  // namespace privacyd::jobs
