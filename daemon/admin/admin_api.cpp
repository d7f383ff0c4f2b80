#include "daemon/admin/admin_api.hpp"

#include <boost/json.hpp>
#include <map>
#include <mutex>
#include <optional>
#include <soci/soci.h>

#include "daemon/admin/console.hpp"
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


namespace {
constexpr UnixMillis kAuditFresh = 10 * 60 * 1000;
}  // namespace

struct AdminApi::AuditCache {
  std::mutex mutex;
  std::optional<json::object> last;  // with "verified_at"
  UnixMillis at = 0;
  bool running = false;
};

AdminApi::AdminApi(AdminDependencies deps)
    : deps_(std::move(deps)), audit_cache_(std::make_shared<AuditCache>()), planner_(make_planner()) {}

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
  route(router, "GET", "/v1/requests/{id}/audit", Role::viewer, &AdminApi::request_audit);
  route(router, "GET", "/v1/requests/{id}/receipt", Role::viewer, &AdminApi::receipt);
  route(router, "GET", "/v1/receipts/public-key", Role::viewer, &AdminApi::receipt_public_key);
  route(router, "GET", "/v1/plan", Role::operator_, &AdminApi::plan);
  route(router, "GET", "/v1/overview", Role::viewer, &AdminApi::overview);
  route(router, "GET", "/v1/whoami", Role::viewer, &AdminApi::whoami);
  route(router, "GET", "/v1/notices", Role::viewer, &AdminApi::list_notices);
  route(router, "POST", "/v1/notices/{id}/retry", Role::operator_, &AdminApi::retry_notice, kMaxActionBody);
  route(router, "POST", "/v1/notices/{id}/acknowledge", Role::operator_, &AdminApi::acknowledge_notice,
        kMaxActionBody);
  route(router, "GET", "/v1/audit/verify", Role::viewer, &AdminApi::verify_audit);
  route(router, "POST", "/v1/reload", Role::operator_, &AdminApi::reload, kMaxActionBody);
  router.add("GET", "/metrics", [this](Request& r) { return metrics(r); });
  mount_console(router);
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


net::awaitable<Response> AdminApi::whoami(Request& request, const Token& caller) {
  query_params(request.query, {});
  co_return json_response(
      json::object{{"name", caller.name}, {"role", caller.role == Role::operator_ ? "operator" : "viewer"}});
}

net::awaitable<Response> AdminApi::overview(Request& request, const Token&) {
  query_params(request.query, {});
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  auto load = [now](soci::session& sql) { return admin::overview(sql, now); };
  auto view = co_await run_in_db(deps_.db, load);
  bool walk = false;
  std::optional<json::object> audit;
  {
    std::lock_guard lock(audit_cache_->mutex);
    audit = audit_cache_->last;
    if ((!audit || now - audit_cache_->at >= kAuditFresh) && !audit_cache_->running) {
      audit_cache_->running = true;
      walk = true;
    }
  }
  if (walk) audit = co_await verify_chain();
  // null while another caller's walk is under way and none came before.
  view.as_object()["audit"] = audit ? json::value(*audit) : json::value(nullptr);
  co_return json_response(view);
}

net::awaitable<json::object> AdminApi::verify_chain() {
  auto cache = audit_cache_;
  struct Done {  // the walk is over, however it ends
    std::shared_ptr<AuditCache> cache;
    ~Done() {
      std::lock_guard lock(cache->mutex);
      cache->running = false;
    }
  } done{cache};
  auto work = [](soci::session& sql) {
    soci::transaction tr(sql);
    lift_deadlines(sql);  // the whole chain, however long
    auto v = audit::verify(sql);
    tr.commit();
    return v;
  };
  const auto v = co_await run_in_db(deps_.db, work);
  const UnixMillis at = to_unix_ms(deps_.clock.now());
  json::object out{{"intact", v.intact}, {"entries", v.entries}, {"verified_at", format_rfc3339(at)}};
  if (!v.intact) {
    out["broken_seq"] = v.broken_seq;
    out["problem"] = v.problem;
  }
  std::lock_guard lock(cache->mutex);
  cache->last = out;
  cache->at = at;
  co_return out;
}

net::awaitable<Response> AdminApi::verify_audit(Request& request, const Token&) {
  query_params(request.query, {});
  {
    std::lock_guard lock(audit_cache_->mutex);
    audit_cache_->running = true;  // the overview waits for this walk's outcome
  }
  const auto out = co_await verify_chain();
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
