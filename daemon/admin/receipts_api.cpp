// The admin API's receipts (SPEC §16): a finished request's signed
// receipt, and the public key that checks it.
#include <boost/json.hpp>
#include <soci/soci.h>

#include "daemon/admin/admin_api.hpp"
#include "daemon/admin/input.hpp"
#include "daemon/store/async.hpp"
#include "daemon/store/receipts.hpp"

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
    // One snapshot: the audit entries and the chain's head agree.
    soci::transaction tr(sql);
    auto facts = receipts::facts(sql, id, now);
    tr.commit();
    return facts;
  };
  auto facts = co_await run_in_db(deps_.db, load);
  if (!facts) co_return http::error(404, "not_found", "no such request");
  if (!facts->finished) {
    co_return http::error(409, "not_finished", "a receipt is given for a completed, rejected or failed request only");
  }
  auto signed_receipt = deps_.receipts->sign(std::move(facts->receipt));
  co_return json_response(signed_receipt);
}

net::awaitable<Response> AdminApi::plan(Request& request, const Token&) {
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
  struct Answer {
    json::object plan;
    std::string refused;  // why the query cannot be planned
  };
  auto work = [plan = deps_.plan, query]() {
    Answer a;
    try {
      a.plan = plan(query);
    } catch (const std::invalid_argument& e) {
      a.refused = e.what();
    }
    return a;
  };
  Answer answer = co_await run_blocking(deps_.db, std::move(work));
  if (!answer.refused.empty()) co_return http::error(400, "bad_plan", answer.refused);
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
