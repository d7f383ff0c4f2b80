// The admin API's requests (SPEC §8): list, show, decide on, extend,
// export, and their audit entries.
#include <boost/json.hpp>
#include <limits>
#include <soci/soci.h>

#include "daemon/admin/admin_api.hpp"
#include "daemon/admin/input.hpp"
#include "daemon/admin/views.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/store/async.hpp"
#include "daemon/store/runs.hpp"

namespace privacyd::admin {

namespace net = boost::asio;
namespace json = boost::json;
using http::Request;
using http::Response;

net::awaitable<Response> AdminApi::shown(const std::string& id) {
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  auto load = [this, id, now](soci::session& sql) { return admin::show_request(sql, id, now, deps_.keys); };
  auto view = co_await run_in_db(deps_.db, load);
  if (!view) co_return http::error(404, "not_found", "no such request");
  co_return json_response(*view);
}

net::awaitable<Response> AdminApi::list_requests(Request& request, const Token&) {
  auto q = query_params(request.query, {"status", "type", "limit", "cursor"});
  RequestFilter filter{one_of(q, "status", request_statuses()), one_of(q, "type", request_types()),
                       cursor_of(q, "req_"), limit_of(q)};
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  auto load = [filter, now](soci::session& sql) { return admin::list_requests(sql, filter, now); };
  auto list = co_await run_in_db(deps_.db, load);
  co_return json_response(list);
}

net::awaitable<Response> AdminApi::show_request(Request& request, const Token&) {
  query_params(request.query, {});
  co_return co_await shown(request_id_of(request));
}

net::awaitable<Response> AdminApi::decide(Request& request, const Token& caller, Decision decision,
                                          std::string_view from_status, std::string_view done) {
  const std::string id = request_id_of(request);
  action_body(request, {});
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  struct Outcome {
    bool done = false;
    std::string status;  // as found when not done; "" when there is no such request
  };
  auto work = [decision, id, who = caller.name, now](soci::session& sql) {
    soci::transaction tr(sql);
    if (decision(sql, id, who, now)) {
      tr.commit();
      return Outcome{true, {}};
    }
    return Outcome{false, request_status(sql, id)};
  };
  const Outcome outcome = co_await run_in_db(deps_.db, work);
  if (!outcome.done) {
    if (outcome.status.empty()) co_return http::error(404, "not_found", "no such request");
    co_return wrong_status(from_status, outcome.status);
  }
  deps_.log.info(std::string("request ") + std::string(done), {{"request_id", id}, {"by", caller.name}});
  // Retrying a notify step waits on the notifier; anything else on the engine.
  if (deps_.wake_engine) deps_.wake_engine();
  if (deps_.wake_notifier) deps_.wake_notifier();
  co_return co_await shown(id);
}

net::awaitable<Response> AdminApi::approve(Request& request, const Token& caller) {
  co_return co_await decide(request, caller, &runs::approve, "awaiting_approval", "approved");
}

net::awaitable<Response> AdminApi::reject(Request& request, const Token& caller) {
  const std::string id = request_id_of(request);
  const std::string reason = reason_of(action_body(request, {"reason"}));
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  struct Outcome {
    std::string status;  // as found; "" when there is no such request
    std::string type;
    UnixMillis received_at = 0;
    bool done = false;  // rejected by this call
  };
  auto work = [this, id, reason, who = caller.name, now](soci::session& sql) {
    auto row = runs::load(sql, id);
    if (!row) return Outcome{};
    if (row->status != "awaiting_approval" && row->status != "failed") {
      return Outcome{row->status, row->type, row->received_at};
    }
    std::vector<runs::Transition::Notice> notices;
    if (deps_.rejection_notices) {
      for (auto& n : deps_.rejection_notices(engine::request_context(*row, deps_.keys), reason, now)) {
        notices.push_back(engine::outbox_entry(std::move(n)));
      }
    }
    if (deps_.callbacks) {
      runs::RunRow after = *row;
      after.status = "rejected";
      for (auto& n : deps_.callbacks(after, "request.rejected", reason, now)) {
        notices.push_back(engine::outbox_entry(std::move(n)));
      }
    }
    soci::transaction tr(sql);
    switch (runs::reject(sql, id, who, reason, now, notices)) {
      case runs::Rejection::not_decidable:
        return Outcome{"changed", row->type, row->received_at};
      case runs::Rejection::acted_outside:
        return Outcome{"acted_outside", row->type, row->received_at};
      case runs::Rejection::rejected:
        break;
    }
    tr.commit();
    return Outcome{row->status, row->type, row->received_at, true};
  };
  const Outcome outcome = co_await run_in_db(deps_.db, work);
  if (outcome.status.empty()) co_return http::error(404, "not_found", "no such request");
  if (!outcome.done) {
    if (outcome.status == "changed") {
      co_return http::error(409, "wrong_status", "the request changed meanwhile; look again");
    }
    if (outcome.status == "acted_outside") {
      co_return http::error(409, "acted_outside",
                            "this request already acted outside privacyd (a data system, a webhook or a delivered"
                            " notice): rejecting it would tell the person it was not carried out; fix the cause"
                            " and retry it");
    }
    co_return wrong_status("awaiting_approval or failed", outcome.status);
  }
  deps_.log.info("request rejected", {{"request_id", id}, {"by", caller.name}});
  if (deps_.metrics != nullptr) {
    deps_.metrics->requests_finished.with({outcome.type, "rejected"}).inc();
    // A failed request's time to its end was observed when it failed.
    if (outcome.status != "failed") {
      deps_.metrics->request_duration.with({outcome.type}).observe(static_cast<double>(now - outcome.received_at) /
                                                                   1000.0);
    }
  }
  if (deps_.wake_notifier) deps_.wake_notifier();
  co_return co_await shown(id);
}

net::awaitable<Response> AdminApi::retry(Request& request, const Token& caller) {
  co_return co_await decide(request, caller, &runs::retry_request, "failed", "retried");
}

net::awaitable<Response> AdminApi::extend(Request& request, const Token& caller) {
  const std::string id = request_id_of(request);
  const auto body = action_body(request, {"reason", "days"});
  const std::string reason = reason_of(body);
  std::optional<std::int64_t> days;
  if (const auto* d = body.if_contains("days")) {
    if (!d->is_int64() && !d->is_uint64()) refuse_input(400, "invalid_field", "days is a whole number", "days");
    days = d->is_int64() ? d->get_int64() : std::numeric_limits<std::int64_t>::max();
  }
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  auto find = [id](soci::session& sql) { return request_deadline(sql, id); };
  const std::optional<Deadline> found = co_await run_in_db(deps_.db, find);
  if (!found) co_return http::error(404, "not_found", "no such request");
  // Up to the jurisdiction's extension, in whole days; all of it by default.
  const auto allowed = std::chrono::duration_cast<std::chrono::milliseconds>(
                           deps_.policies.current()->jurisdiction(found->jurisdiction).extension)
                           .count() /
                       kDayMs;
  if (allowed < 1) co_return http::error(409, "not_extendable", "this jurisdiction allows no extension");
  const std::int64_t granted = days.value_or(allowed);
  if (granted < 1 || granted > allowed) {
    refuse_input(400, "invalid_field", "days is 1 to " + std::to_string(allowed) + " in this jurisdiction", "days");
  }
  const UnixMillis deadline = found->at + granted * kDayMs;
  auto work = [this, id, reason, who = caller.name, deadline, now](soci::session& sql) {
    soci::transaction tr(sql);
    auto outcome = runs::extend(sql, id, who, reason, deadline, now);
    if (outcome != runs::Extension::extended) return outcome;
    // The Partner Center hears of it with the extension itself, and why.
    if (auto row = runs::load(sql, id); row && deps_.callbacks) {
      std::vector<runs::Transition::Notice> notices;
      for (auto& n : deps_.callbacks(*row, "request.extended", reason, now)) {
        notices.push_back(engine::outbox_entry(std::move(n)));
      }
      runs::insert_notices(sql, id, -1, notices, now);
    }
    tr.commit();
    return outcome;
  };
  switch (co_await run_in_db(deps_.db, work)) {
    case runs::Extension::not_found: co_return http::error(404, "not_found", "no such request");
    case runs::Extension::already_extended:
      co_return http::error(409, "already_extended", "a deadline is extended once only");
    case runs::Extension::finished: co_return http::error(409, "wrong_status", "the request is finished");
    case runs::Extension::extended: break;
  }
  deps_.log.info("deadline extended", {{"request_id", id}, {"by", caller.name}, {"days", granted}});
  if (deps_.wake_notifier) deps_.wake_notifier();
  co_return co_await shown(id);
}

net::awaitable<Response> AdminApi::export_package(Request& request, const Token& caller) {
  const std::string id = request_id_of(request);
  query_params(request.query, {});
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  // Handing out personal data is itself an audited event.
  auto work = [id, who = caller.name, now](soci::session& sql) { return take_export(sql, id, who, now); };
  const std::string sealed = co_await run_in_db(deps_.db, work);
  if (sealed.empty()) co_return http::error(404, "not_found", "this request has no access package");
  if (sealed == "erased") {
    co_return http::error(410, "package_erased", "the package expired and was erased (access.package_ttl)");
  }
  auto package = deps_.keys.open(sealed, "exports.package");
  if (!package) {
    deps_.log.error("access package cannot be decrypted with the configured keys", {{"request_id", id}});
    co_return http::error(500, "undecryptable", "the package cannot be decrypted with the configured keys");
  }
  deps_.log.info("access package downloaded", {{"request_id", id}, {"by", caller.name}});
  Response r = Response::json(200, std::move(*package));
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("Content-Disposition", "attachment; filename=\"" + id + ".json\"");
  co_return r;
}

net::awaitable<Response> AdminApi::request_audit(Request& request, const Token&) {
  const std::string id = request_id_of(request);
  query_params(request.query, {});
  auto load = [id](soci::session& sql) { return admin::request_audit(sql, id); };
  auto entries = co_await run_in_db(deps_.db, load);
  if (!entries) co_return http::error(404, "not_found", "no such request");
  co_return json_response(*entries);
}

}  // namespace privacyd::admin
