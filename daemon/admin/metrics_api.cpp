// GET /metrics on the admin listener: this process's own series, and the
// counts every instance sharing the database agrees on, read at each scrape.
#include <boost/json.hpp>
#include <soci/soci.h>

#include "daemon/admin/admin_api.hpp"
#include "daemon/admin/input.hpp"
#include "daemon/admin/views.hpp"
#include "daemon/store/async.hpp"
#include "daemon/store/follow_ups.hpp"
#include "daemon/store/rows.hpp"

namespace privacyd::admin {

namespace net = boost::asio;
namespace json = boost::json;
using http::Request;
using http::Response;

net::awaitable<Response> AdminApi::metrics(Request&) {
  // Counts that every instance sharing the database agrees on come from
  // the database at each scrape; the rest from this process.
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  struct Counts {
    std::map<std::pair<std::string, std::string>, long long> requests;  // (type, status)
    std::map<std::string, long long> overdue;                           // type
    std::map<std::pair<std::string, std::string>, long long> notices;   // (channel, status)
    std::map<std::string, long long> unacknowledged;                    // partner: past due
  };
  // Partner ids come from the policies (validated, [A-Za-z0-9_.-]): safe as labels.
  auto partners = deps_.policies.current();
  auto count = [now](soci::session& sql) {
    Counts c;
    soci::rowset<soci::row> requests =
        (sql.prepare << "SELECT type, status, COUNT(*) FROM requests GROUP BY type, status");
    for (const auto& r : requests) c.requests[{r.get<std::string>(0), r.get<std::string>(1)}] = row_integer(r, 2);
    long long at = now;
    soci::rowset<soci::row> overdue =
        (sql.prepare << "SELECT type, COUNT(*) FROM requests WHERE status NOT IN ('completed', 'rejected')"
                        " AND deadline_at < :now GROUP BY type",
         soci::use(at, "now"));
    for (const auto& r : overdue) c.overdue[r.get<std::string>(0)] = row_integer(r, 1);
    soci::rowset<soci::row> notices =
        (sql.prepare << "SELECT channel, status, COUNT(*) FROM notices GROUP BY channel, status");
    for (const auto& r : notices) c.notices[{r.get<std::string>(0), r.get<std::string>(1)}] = row_integer(r, 2);
    for (const auto& [partner, n] : follow_ups::overdue_by_partner(sql, now)) c.unacknowledged[partner] = n;
    return c;
  };
  std::string out = deps_.registry.render();
  try {
    const Counts c = co_await run_in_db(deps_.db, count);
    // Every known series, zeros included, so none vanishes from a graph.
    metrics::write_family_header(out, "privacyd_requests", "gauge", "Requests in the database, by type and status.");
    for (const auto& type : request_types()) {
      for (const auto& status : request_statuses()) {
        auto it = c.requests.find({type, status});
        metrics::write_sample(out, "privacyd_requests", "{type=\"" + type + "\",status=\"" + status + "\"}",
                              static_cast<double>(it == c.requests.end() ? 0 : it->second));
      }
    }
    metrics::write_family_header(out, "privacyd_requests_open", "gauge",
                                 "Requests not yet completed or rejected, by type.");
    for (const auto& type : request_types()) {
      long long open = 0;
      for (const auto& [key, n] : c.requests) {
        if (key.first == type && key.second != "completed" && key.second != "rejected") open += n;
      }
      metrics::write_sample(out, "privacyd_requests_open", "{type=\"" + type + "\"}", static_cast<double>(open));
    }
    metrics::write_family_header(out, "privacyd_requests_overdue", "gauge",
                                 "Open requests past their deadline, by type.");
    for (const auto& type : request_types()) {
      auto it = c.overdue.find(type);
      metrics::write_sample(out, "privacyd_requests_overdue", "{type=\"" + type + "\"}",
                            static_cast<double>(it == c.overdue.end() ? 0 : it->second));
    }
    metrics::write_family_header(out, "privacyd_notices", "gauge", "Notices in the outbox, by channel and status.");
    for (const std::string channel : {"partner", "subject", "partner_center"}) {
      for (const auto& status : notice_statuses()) {
        auto it = c.notices.find({channel, status});
        metrics::write_sample(out, "privacyd_notices", "{channel=\"" + channel + "\",status=\"" + status + "\"}",
                              static_cast<double>(it == c.notices.end() ? 0 : it->second));
      }
    }
    metrics::write_family_header(out, "privacyd_partner_acknowledgements_overdue", "gauge",
                                 "Partner notices not acknowledged by their due date, by partner.");
    for (const auto& [id, partner] : partners->partners) {
      auto it = c.unacknowledged.find(id);
      metrics::write_sample(out, "privacyd_partner_acknowledgements_overdue", "{partner=\"" + id + "\"}",
                            static_cast<double>(it == c.unacknowledged.end() ? 0 : it->second));
    }
    metrics::write_family_header(out, "privacyd_database_up", "gauge", "Whether the last scrape reached the database.");
    metrics::write_sample(out, "privacyd_database_up", "", 1);
  } catch (const std::exception&) {
    metrics::write_family_header(out, "privacyd_database_up", "gauge", "Whether the last scrape reached the database.");
    metrics::write_sample(out, "privacyd_database_up", "", 0);
  }
  co_return Response{200, "text/plain; version=0.0.4; charset=utf-8", std::move(out), {}};
}

}  // namespace privacyd::admin
