// The admin API's receipts (SPEC §16): a finished request's signed
// receipt, and the public key that checks it.
#include <atomic>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <soci/soci.h>

#include "daemon/admin/admin_api.hpp"
#include "daemon/admin/input.hpp"
#include "daemon/store/async.hpp"
#include "daemon/store/receipts.hpp"
#include "daemon/store/rows.hpp"

namespace privacyd::admin {

namespace net = boost::asio;
namespace json = boost::json;
using http::Request;
using http::Response;

namespace {
Response not_configured() {
  return http::error(503, "receipts_not_configured", "receipts are not signed here: set keys.receipt_key_file");
}
}  // namespace

net::awaitable<Response> AdminApi::receipt(Request& request, const Token&) {
  const std::string id = request_id_of(request);
  query_params(request.query, {});
  if (deps_.receipts == nullptr) co_return not_configured();
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  auto load = [id, now](soci::session& sql) {
    // One snapshot (SQLite's read transaction is one; PostgreSQL's needs
    // REPEATABLE READ): the entries, the notices and the head agree.
    soci::transaction tr(sql);
    if (is_postgresql(sql)) sql << "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY";
    auto facts = receipts::facts(sql, id, now);
    tr.commit();
    return facts;
  };
  auto facts = co_await run_in_db(deps_.db, load);
  if (!facts) co_return http::error(404, "not_found", "no such request");
  if (!facts->finished) {
    co_return http::error(409, "not_finished",
                          "a receipt is given once a request is completed or rejected (a failed one can be retried)");
  }
  auto signed_receipt = deps_.receipts->sign(std::move(facts->receipt));
  co_return json_response(signed_receipt);
}

struct AdminApi::Planner {
  net::thread_pool thread{1};
  std::atomic<bool> busy{false};
  ~Planner() { thread.join(); }
};

std::shared_ptr<AdminApi::Planner> AdminApi::make_planner() { return std::make_shared<Planner>(); }

net::awaitable<Response> AdminApi::plan(Request& request, const Token& caller) {
  auto q = query_params(request.query, {"type", "subject", "partner", "categories", "jurisdiction"});
  if (!deps_.plan) co_return http::error(503, "plan_unavailable", "dry runs are not available here");
  json::object query{{"type", q["type"]}, {"subject", q["subject"]}, {"partner", q["partner"]},
                     {"jurisdiction", q["jurisdiction"]}};
  json::array categories;
  std::string_view list = q["categories"];
  while (!list.empty()) {
    auto comma = list.find(',');
    auto one = list.substr(0, comma);
    if (!one.empty()) categories.emplace_back(one);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
  }
  query["categories"] = std::move(categories);
  if (planner_->busy.exchange(true)) {
    co_return http::error(429, "plan_busy", "another dry run is running; try again when it is done");
  }
  struct Answer {
    json::object plan;
    std::string refused;  // why the query cannot be planned
    std::string failed;   // why it could not be done
  };
  // Who planned what kind of request (never for whom: the subject is
  // personal data).
  deps_.log.info("dry run", {{"by", caller.name}, {"type", q["type"]}});
  // The frame keeps the planner; its thread gets a plain pointer, so the
  // last reference never goes (and ~Planner never joins) on that thread.
  auto planner = planner_;
  auto initiate = [raw = planner.get(), plan = deps_.plan, query](auto handler) {
    net::post(raw->thread, [raw, plan, query, handler = std::move(handler)]() mutable {
      Answer a;
      try {
        a.plan = plan(query);
      } catch (const std::invalid_argument& e) {
        a.refused = e.what();
      } catch (const std::exception& e) {
        a.failed = describe_failure(e);
      }
      raw->busy = false;
      auto ex = net::get_associated_executor(handler);
      net::dispatch(ex, [handler = std::move(handler), a = std::move(a)]() mutable { std::move(handler)(std::move(a)); });
    });
  };
  Answer answer = co_await net::async_initiate<decltype(net::use_awaitable), void(Answer)>(initiate, net::use_awaitable);
  if (!answer.refused.empty()) co_return http::error(400, "bad_plan", answer.refused);
  if (!answer.failed.empty()) co_return http::error(503, "plan_failed", "the dry run could not be done: " + answer.failed);
  co_return json_response(answer.plan);
}

net::awaitable<Response> AdminApi::receipt_public_key(Request& request, const Token&) {
  query_params(request.query, {});
  if (deps_.receipts == nullptr) co_return not_configured();
  Response r = Response::text(200, deps_.receipts->public_key_pem());
  r.content_type = "application/x-pem-file";
  co_return r;
}

}  // namespace privacyd::admin
