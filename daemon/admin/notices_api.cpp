// The admin API's notices: the outbox as operators see it, a dead notice
// delivered afresh, and a partner's answer recorded by an operator.
#include <boost/json.hpp>
#include <soci/soci.h>

#include "daemon/admin/admin_api.hpp"
#include "daemon/admin/input.hpp"
#include "daemon/admin/views.hpp"
#include "daemon/base/text.hpp"
#include "daemon/store/async.hpp"
#include "daemon/store/follow_ups.hpp"
#include "daemon/store/runs.hpp"

namespace privacyd::admin {

namespace net = boost::asio;
namespace json = boost::json;
using http::Request;
using http::Response;

net::awaitable<Response> AdminApi::list_notices(Request& request, const Token&) {
  auto q = query_params(request.query, {"status", "limit", "cursor", "acknowledged", "overdue"});
  static const std::vector<std::string> yes_no = {"true", "false"};
  NoticeFilter filter{one_of(q, "status", notice_statuses()), one_of(q, "acknowledged", yes_no),
                      one_of(q, "overdue", yes_no), cursor_of(q, "ntc_"), limit_of(q)};
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  auto load = [this, filter, now](soci::session& sql) { return admin::list_notices(sql, filter, now, deps_.keys); };
  auto list = co_await run_in_db(deps_.db, load);
  co_return json_response(list);
}

net::awaitable<Response> AdminApi::retry_notice(Request& request, const Token& caller) {
  std::string id(request.param("id"));
  if (!valid_id(id, "ntc_")) co_return http::error(404, "not_found", "no such notice");
  action_body(request, {});
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  auto work = [id, who = caller.name, now](soci::session& sql) {
    soci::transaction tr(sql);
    if (!runs::retry_notice(sql, id, who, now)) {
      std::string status;
      sql << "SELECT status FROM notices WHERE id = :id", soci::use(id, "id"), soci::into(status);
      // Dead, and still not retried: its request was rejected.
      if (status == "dead") return std::string("request_rejected");
      return sql.got_data() ? status : std::string();
    }
    tr.commit();
    return std::string("retried");
  };
  const std::string outcome = co_await run_in_db(deps_.db, work);
  if (outcome.empty()) co_return http::error(404, "not_found", "no such notice");
  if (outcome == "request_rejected") {
    co_return http::error(409, "request_rejected",
                          "its request was rejected: delivering this notice now would contradict the rejection");
  }
  if (outcome != "retried") co_return http::error(409, "wrong_status", "the notice is " + outcome + ", not dead");
  deps_.log.info("notice retried", {{"notice_id", id}, {"by", caller.name}});
  if (deps_.wake_notifier) deps_.wake_notifier();
  co_return json_response(json::object{{"id", id}, {"status", "pending"}});
}

// An operator records a partner's answer given some other way (a letter,
// a call): the same rules as the partner's own acknowledgement.
net::awaitable<Response> AdminApi::acknowledge_notice(Request& request, const Token& caller) {
  std::string id(request.param("id"));
  if (!valid_id(id, "ntc_")) co_return http::error(404, "not_found", "no such notice");
  const auto body = action_body(request, {"outcome", "note"});
  const auto* o = body.if_contains("outcome");
  const std::string outcome = o != nullptr && o->is_string() ? std::string(o->get_string()) : std::string();
  if (!follow_ups::valid_outcome(outcome)) {
    refuse_input(400, "invalid_field", "outcome is erased, retained or no_data", "outcome");
  }
  std::string note;
  if (const auto* n = body.if_contains("note"); n != nullptr && !n->is_null()) {
    if (!n->is_string() || n->get_string().size() > 4000 || !readable_text(n->get_string())) {
      refuse_input(400, "invalid_field", "note is readable text of at most 4000 bytes", "note");
    }
    note = std::string(n->get_string());
  }
  const std::string note_enc = note.empty() ? std::string() : deps_.keys.seal(note, "notices.ack_note");
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  // The notice acknowledged: the one named, or the first one when it
  // names a reminder; that is the one shown.
  struct Recorded {
    follow_ups::Ack ack;
    std::string id;
  };
  auto work = [id, outcome, note_enc, who = caller.name, now](soci::session& sql) {
    soci::transaction tr(sql);
    Recorded r;
    r.ack = follow_ups::acknowledge(sql, id, outcome, note_enc, who, now, &r.id);
    tr.commit();
    return r;
  };
  const Recorded recorded = co_await run_in_db(deps_.db, work);
  switch (recorded.ack) {
    case follow_ups::Ack::not_found: co_return http::error(404, "not_found", "no such notice");
    case follow_ups::Ack::not_acknowledgeable:
      co_return http::error(409, "not_acknowledgeable", "only a notice to a partner is acknowledged");
    case follow_ups::Ack::conflict:
      co_return http::error(409, "already_acknowledged", "the notice was acknowledged with another outcome");
    case follow_ups::Ack::recorded:
    case follow_ups::Ack::same: break;
  }
  deps_.log.info("notice acknowledged", {{"notice_id", id}, {"by", caller.name}, {"outcome", outcome}});
  auto load = [this, shown_id = recorded.id, now](soci::session& sql) {
    return admin::show_notice(sql, shown_id, now, deps_.keys);
  };
  auto shown_notice = co_await run_in_db(deps_.db, load);
  co_return json_response(shown_notice ? *shown_notice : json::value(nullptr));
}

}  // namespace privacyd::admin
