#include "daemon/admin/admin_api.hpp"

#include <boost/json.hpp>
#include <map>
#include <soci/soci.h>

#include "daemon/admin/input.hpp"
#include "daemon/admin/views.hpp"
#include "daemon/audit/audit.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/store/async.hpp"
#include "daemon/store/runs.hpp"

namespace privacyd::admin {

namespace net = boost::asio;
namespace json = boost::json;
using http::Request;
using http::Response;


AdminApi::AdminApi(AdminDependencies deps) : deps_(std::move(deps)) {}

void AdminApi::route(http::Router& router, std::string method, std::string_view pattern, Role role, Endpoint endpoint,
                     std::uint64_t max_body) {
  router.add(
      std::move(method), pattern, [this, role, endpoint](Request& r) { return guard(r, role, endpoint); }, max_body);
}

void AdminApi::mount(http::Router& router) {
  route(router, "GET", "/v1/requests", Role::viewer, &AdminApi::list_requests);
  route(router, "GET", "/v1/requests/{id}", Role::viewer, &AdminApi::show_request);
  route(router, "POST", "/v1/requests/{id}/approve", Role::operator_, &AdminApi::approve, kMaxActionBody);
  route(router, "POST", "/v1/requests/{id}/reject", Role::operator_, &AdminApi::reject, kMaxActionBody);
  route(router, "POST", "/v1/requests/{id}/retry", Role::operator_, &AdminApi::retry, kMaxActionBody);
  route(router, "POST", "/v1/requests/{id}/extend", Role::operator_, &AdminApi::extend, kMaxActionBody);
  route(router, "GET", "/v1/requests/{id}/export", Role::operator_, &AdminApi::export_package);
  route(router, "GET", "/v1/notices", Role::viewer, &AdminApi::list_notices);
  route(router, "POST", "/v1/notices/{id}/retry", Role::operator_, &AdminApi::retry_notice, kMaxActionBody);
  route(router, "POST", "/v1/notices/{id}/acknowledge", Role::operator_, &AdminApi::acknowledge_notice,
        kMaxActionBody);
  route(router, "GET", "/v1/audit/verify", Role::viewer, &AdminApi::verify_audit);
  route(router, "POST", "/v1/reload", Role::operator_, &AdminApi::reload, kMaxActionBody);
  router.add("GET", "/metrics", [this](Request& r) { return metrics(r); });
}

Response AdminApi::refuse(int status, std::string_view reason, std::string_view message, const Request& request) {
  if (deps_.metrics != nullptr) deps_.metrics->admin_auth_failures.with({reason}).inc();
  deps_.log.warn("admin call refused", {{"reason", reason}, {"route", request.method + " " + request.path},
                                        {"remote", request.remote}});
  auto r = http::error(status, status == 401 ? "unauthorized" : "forbidden", message);
  if (status == 401) r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"privacyd\"");
  return r;
}

net::awaitable<Response> AdminApi::guard(Request& request, Role role, Endpoint endpoint) {
  const auto header = request.header("authorization");
  if (header.empty()) co_return refuse(401, "missing", "a bearer token is required", request);
  auto caller = authenticate(*deps_.tokens.get(), header);
  if (!caller) co_return refuse(401, "invalid", "the bearer token is not valid", request);
  if (role == Role::operator_ && caller->role != Role::operator_) {
    co_return refuse(403, "forbidden", "this needs the operator role", request);
  }
  try {
    co_return co_await (this->*endpoint)(request, *caller);
  } catch (const Refusal& r) {
    co_return r.response;
  } catch (const DatabaseUnavailable&) {
    auto r = http::error(503, "unavailable", "the database is unavailable; retry later");
    r.headers.emplace_back("Retry-After", "5");
    co_return r;
  } catch (const DatabaseConflict&) {
    // Busy or a lost serialisation race, after with_session's own retries:
    // the operator's action changed nothing and can be sent again.
    auto r = http::error(503, "busy", "the database is busy; retry");
    r.headers.emplace_back("Retry-After", "1");
    co_return r;
  } catch (const std::exception& e) {
    // Logged here, value-free: a failed statement's message carries what
    // was bound to it, and the HTTP server would log it as it is.
    deps_.log.error("admin request failed", {{"route", request.path.substr(0, 64)}, {"error", describe_failure(e)}});
    co_return http::error(500, "internal", "internal error");
  }
}

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
    Outcome found;
    sql << "SELECT status FROM requests WHERE id = :id", soci::use(id, "id"), soci::into(found.status);
    return found;
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
    if (row->status != "awaiting_approval") return Outcome{row->status, row->type, row->received_at};
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
    if (!runs::reject(sql, id, who, reason, now, notices)) return Outcome{"changed", row->type, row->received_at};
    tr.commit();
    return Outcome{row->status, row->type, row->received_at, true};
  };
  const Outcome outcome = co_await run_in_db(deps_.db, work);
  if (outcome.status.empty()) co_return http::error(404, "not_found", "no such request");
  if (!outcome.done) {
    if (outcome.status == "changed") {
      co_return http::error(409, "wrong_status", "the request changed meanwhile; look again");
    }
    co_return wrong_status("awaiting_approval", outcome.status);
  }
  deps_.log.info("request rejected", {{"request_id", id}, {"by", caller.name}});
  if (deps_.metrics != nullptr) {
    deps_.metrics->requests_finished.with({outcome.type, "rejected"}).inc();
    deps_.metrics->request_duration.with({outcome.type}).observe(static_cast<double>(now - outcome.received_at) / 1000.0);
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
  struct Found {
    bool exists = false;
    std::string jurisdiction;
    long long deadline = 0;
  };
  auto find = [id](soci::session& sql) {
    Found f;
    sql << "SELECT jurisdiction, deadline_at FROM requests WHERE id = :id", soci::use(id, "id"),
        soci::into(f.jurisdiction), soci::into(f.deadline);
    f.exists = sql.got_data();
    return f;
  };
  const Found found = co_await run_in_db(deps_.db, find);
  if (!found.exists) co_return http::error(404, "not_found", "no such request");
  // Up to the jurisdiction's extension, in whole days; all of it by default.
  const auto allowed = std::chrono::duration_cast<std::chrono::milliseconds>(
                           deps_.policies.current()->jurisdiction(found.jurisdiction).extension)
                           .count() /
                       kDayMs;
  if (allowed < 1) co_return http::error(409, "not_extendable", "this jurisdiction allows no extension");
  const std::int64_t granted = days.value_or(allowed);
  if (granted < 1 || granted > allowed) {
    refuse_input(400, "invalid_field", "days is 1 to " + std::to_string(allowed) + " in this jurisdiction", "days");
  }
  const UnixMillis deadline = found.deadline + granted * kDayMs;
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
  auto work = [id, who = caller.name, now](soci::session& sql) {
    std::string sealed;
    soci::indicator ind = soci::i_null;
    sql << "SELECT package_enc FROM exports WHERE request_id = :id", soci::use(id, "id"), soci::into(sealed, ind);
    if (!sql.got_data() || ind != soci::i_ok) return std::string();
    if (sealed.empty()) return std::string("erased");  // expired, and erased by the follow-up loop
    soci::transaction tr(sql);
    audit::append(sql, now, id, "export.downloaded", json::serialize(json::object{{"by", who}}));
    tr.commit();
    return sealed;
  };
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

net::awaitable<Response> AdminApi::verify_audit(Request& request, const Token&) {
  query_params(request.query, {});
  auto work = [](soci::session& sql) {
    soci::transaction tr(sql);
    lift_deadlines(sql);  // the whole chain, however long
    auto v = audit::verify(sql);
    tr.commit();
    return v;
  };
  const auto v = co_await run_in_db(deps_.db, work);
  json::object out{{"intact", v.intact}, {"entries", v.entries}};
  if (!v.intact) {
    out["broken_seq"] = v.broken_seq;
    out["problem"] = v.problem;
  }
  co_return json_response(out);
}

net::awaitable<Response> AdminApi::reload(Request& request, const Token& caller) {
  action_body(request, {});
  if (!deps_.reload) co_return http::error(501, "not_supported", "reload is not available");
  auto work = [this] { return deps_.reload(); };
  const Diagnostics problems = co_await run_blocking(deps_.db, work);
  if (!problems.empty()) {
    deps_.log.warn("reload refused", {{"by", caller.name}, {"problems", problems.size()}});
    json::value listed = json::parse(format_json(problems));
    json::object out{{"error", json::object{{"code", "invalid_config"},
                                            {"message", std::to_string(problems.size()) +
                                                            " problem(s); nothing was changed"}}},
                     {"problems", listed.at("problems")}};
    co_return Response::json(422, json::serialize(out));
  }
  deps_.log.info("reloaded by the admin API", {{"by", caller.name}});
  co_return json_response(json::object{{"reloaded", true}});
}

}  // namespace privacyd::admin
