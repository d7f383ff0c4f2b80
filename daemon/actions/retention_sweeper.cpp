#include "daemon/actions/retention_sweeper.hpp"

#include <boost/json.hpp>
#include <soci/soci.h>

#include "daemon/audit/audit.hpp"
#include "daemon/crypto/primitives.hpp"
#include "daemon/store/async.hpp"
#include "daemon/store/jobs.hpp"

namespace privacyd::actions {

namespace net = boost::asio;

struct Due {
  std::string request_id;
  std::string subject_id;
  std::string system;
  std::string category;
  std::string huawei_id_enc;
};

// How many holds a round claims, and for how long: long enough for their
// erases to finish; a crash frees them when it lapses.
constexpr int kClaimBatch = 16;
constexpr long long kLeaseMs = 60000;

struct RetentionSweeper::Impl {
  Impl(net::io_context& ioc, Database& d, const policy::PolicyStore& p, SystemConnections& s,
       const crypto::KeyRing& k, const Clock& c, Logger& l, Duration e)
      : job(std::make_shared<jobs::Loop>(ioc, l, e)), db(d), policies(p), systems(s), keys(k), clock(c), log(l) {
    job->add("retention sweep", [this] { return sweep(); });
  }

  std::shared_ptr<jobs::Loop> job;
  Database& db;
  const policy::PolicyStore& policies;
  SystemConnections& systems;
  const crypto::KeyRing& keys;
  const Clock& clock;
  Logger& log;

  // Whether it claimed a full batch (more may be due).
  net::awaitable<bool> sweep() {
    const long long now = to_unix_ms(clock.now());
    const long long lease = now + kLeaseMs;
    const std::string token = crypto::hex(crypto::random_bytes(12));
    auto claim = [now, lease, token](soci::session& sql) {
      std::vector<Due> due;
      soci::transaction tr(sql);
      jobs::lease_due(sql,
                      {.table = "retention_holds",
                       .key = "request_id, system, category",
                       .due = "status = 'held' AND until_at <= :now",
                       .order_by = "until_at",
                       .columns = "request_id, subject_id, system, category",
                       .limit = kClaimBatch},
                      now, lease, token, [&](const soci::row& r) {
                        due.push_back({r.get<std::string>(0), r.get<std::string>(1), r.get<std::string>(2),
                                       r.get<std::string>(3), {}});
                      });
      for (auto& d : due) {
        sql << "SELECT huawei_id_enc FROM subjects WHERE id = :s", soci::use(d.subject_id, "s"),
            soci::into(d.huawei_id_enc);
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
        // Fenced on the claim: one that outlived its lease (another round
        // has claimed the hold since) records nothing.
        soci::statement update =
            (sql.prepare << "UPDATE retention_holds SET status = :status, erased_at = :at, lease_until = NULL,"
                            " claim_token = NULL WHERE request_id = :r AND system = :s AND category = :c"
                            " AND claim_token = :token AND status = 'held'",
             soci::use(outcome, "status"), soci::use(at, "at"), soci::use(d.request_id, "r"),
             soci::use(d.system, "s"), soci::use(d.category, "c"), soci::use(token, "token"));
        update.execute(true);
        if (update.get_affected_rows() != 1) return false;
        audit::append(sql, at, d.request_id, "retention." + outcome,
                      boost::json::serialize(boost::json::object{
                          {"system", d.system}, {"category", d.category}, {"rows", rows}}));
        tr.commit();
        return true;
      };
      if (!co_await run_in_db(db, finish)) {
        log.warn("retention outcome dropped: its claim was lost", {{"request_id", d.request_id}, {"system", d.system},
                                                                   {"category", d.category}});
        continue;
      }
      log.info("retention hold ended", {{"request_id", d.request_id}, {"system", d.system},
                                        {"category", d.category}, {"outcome", outcome}});
    }
    co_return due.size() >= static_cast<std::size_t>(kClaimBatch);
  }
};

RetentionSweeper::RetentionSweeper(net::io_context& ioc, Database& db, const policy::PolicyStore& policies,
                                   SystemConnections& systems, const crypto::KeyRing& keys, const Clock& clock,
                                   Logger& log, Duration every)
    : impl_(std::make_shared<Impl>(ioc, db, policies, systems, keys, clock, log, every)) {}

RetentionSweeper::~RetentionSweeper() = default;

void RetentionSweeper::start() { impl_->job->start(impl_); }

void RetentionSweeper::stop() { impl_->job->stop(); }

bool RetentionSweeper::stopped() const { return impl_->job->stopped(); }

}  // namespace privacyd::actions
