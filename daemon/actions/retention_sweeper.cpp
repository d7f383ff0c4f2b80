#include "daemon/actions/retention_sweeper.hpp"

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <soci/soci.h>

#include "daemon/audit/audit.hpp"
#include "daemon/store/async.hpp"

namespace privacyd::actions {

namespace net = boost::asio;

struct Due {
  std::string request_id;
  std::string subject_id;
  std::string system;
  std::string category;
  std::string huawei_id_enc;
};

struct RetentionSweeper::Impl : std::enable_shared_from_this<RetentionSweeper::Impl> {
  Impl(net::io_context& ioc, Database& d, const policy::PolicyStore& p, SystemConnections& s,
       const crypto::KeyRing& k, const Clock& c, Logger& l, Duration e)
      : strand(net::make_strand(ioc)), timer(strand), db(d), policies(p), systems(s), keys(k), clock(c), log(l), every(e) {}

  net::strand<net::io_context::executor_type> strand;
  net::steady_timer timer;
  Database& db;
  const policy::PolicyStore& policies;
  SystemConnections& systems;
  const crypto::KeyRing& keys;
  const Clock& clock;
  Logger& log;
  Duration every;
  std::atomic<bool> stopping{false};
  std::atomic<bool> done{true};
  OutageLog outage{"retention sweep failed"};

  net::awaitable<void> loop() {
    auto self = shared_from_this();
    while (!stopping) {
      try {
        co_await sweep();
        outage.succeeded(log);
      } catch (const std::exception& e) {
        outage.failed(log, describe_failure(e));
      }
      timer.expires_after(every);
      co_await timer.async_wait(net::as_tuple(net::use_awaitable));
    }
    done = true;
  }

  net::awaitable<void> sweep() {
    const long long now = to_unix_ms(clock.now());
    const long long lease = now + 60000;
    auto claim = [now, lease](soci::session& sql) {
      const bool pg = sql.get_backend_name() == "postgresql";
      std::vector<Due> due;
      soci::transaction tr(sql);
      soci::rowset<soci::row> rows =
          (sql.prepare << std::string("SELECT h.request_id, h.subject_id, h.system, h.category, s.huawei_id_enc"
                                      " FROM retention_holds h JOIN subjects s ON s.id = h.subject_id"
                                      " WHERE h.status = 'held' AND h.until_at <= :now"
                                      " AND (h.lease_until IS NULL OR h.lease_until < :now2) LIMIT 16") +
                              (pg ? " FOR UPDATE OF h SKIP LOCKED" : ""),
           soci::use(now, "now"), soci::use(now, "now2"));
      for (const auto& r : rows) {
        due.push_back({r.get<std::string>(0), r.get<std::string>(1), r.get<std::string>(2), r.get<std::string>(3),
                       r.get<std::string>(4)});
      }
      for (const auto& d : due) {
        sql << "UPDATE retention_holds SET lease_until = :lease WHERE request_id = :r AND system = :s AND category = :c",
            soci::use(lease, "lease"), soci::use(d.request_id, "r"), soci::use(d.system, "s"),
            soci::use(d.category, "c");
      }
      tr.commit();
      return due;
    };
    std::vector<Due> due = co_await run_in_db(db, claim);
    auto current = policies.current();
    for (const auto& d : due) {
      const policy::DataSystem* system = nullptr;
      for (const auto& s : current->systems) {
        if (s.name == d.system) system = &s;
      }
      std::string outcome = "erased";
      long long rows = 0;
      const policy::SystemCategory* queries = nullptr;
      if (system != nullptr) {
        if (auto it = system->categories.find(d.category); it != system->categories.end()) queries = &it->second;
      }
      auto huawei_id = keys.open(d.huawei_id_enc, "subjects.huawei_id");
      if (queries == nullptr || !queries->erase || !huawei_id) {
        outcome = "orphaned";  // the policies no longer say how: an operator must look
      } else {
        const policy::Query query = *queries->erase;
        Binds binds{*huawei_id, ""};
        auto work = [query, binds](soci::session& sql) { return change_rows(sql, query, binds); };
        try {
          rows = co_await run_in_db(systems.of(*system), work);
        } catch (const std::exception& e) {
          log.warn("retention erase failed; will retry", {{"request_id", d.request_id}, {"system", d.system},
                                                          {"category", d.category}, {"error", describe_system_failure(e)}});
          continue;  // the lease lapses and the next sweep tries again
        }
      }
      const long long at = to_unix_ms(clock.now());
      auto finish = [&](soci::session& sql) {
        soci::transaction tr(sql);
        sql << "UPDATE retention_holds SET status = :status, erased_at = :at, lease_until = NULL"
               " WHERE request_id = :r AND system = :s AND category = :c",
            soci::use(outcome, "status"), soci::use(at, "at"), soci::use(d.request_id, "r"),
            soci::use(d.system, "s"), soci::use(d.category, "c");
        audit::append(sql, at, d.request_id, "retention." + outcome,
                      boost::json::serialize(boost::json::object{
                          {"system", d.system}, {"category", d.category}, {"rows", rows}}));
        tr.commit();
      };
      co_await run_in_db(db, finish);
      log.info("retention hold ended", {{"request_id", d.request_id}, {"system", d.system},
                                        {"category", d.category}, {"outcome", outcome}});
    }
  }
};

RetentionSweeper::RetentionSweeper(net::io_context& ioc, Database& db, const policy::PolicyStore& policies,
                                   SystemConnections& systems, const crypto::KeyRing& keys, const Clock& clock,
                                   Logger& log, Duration every)
    : impl_(std::make_shared<Impl>(ioc, db, policies, systems, keys, clock, log, every)) {}

RetentionSweeper::~RetentionSweeper() = default;

void RetentionSweeper::start() {
  impl_->done = false;
  net::co_spawn(impl_->strand, impl_->loop(), net::detached);
}

void RetentionSweeper::stop() {
  auto self = impl_;
  self->stopping = true;
  net::post(self->strand, [self] { self->timer.cancel(); });
}

bool RetentionSweeper::stopped() const { return impl_->done.load(); }

}  // namespace privacyd::actions
