#pragma once
// The admin API (SPEC §8) on the admin listener: operators see requests,
// their steps and notices, approve, reject, retry and extend them, download
// access packages, retry dead notices, verify the audit chain and reload
// the YAML. Every endpoint but /metrics, /healthz and /readyz takes a
// bearer token; acting needs the operator role. Every action is audited
// under the token's name.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "daemon/admin/tokens.hpp"
#include "daemon/base/clock.hpp"
#include "daemon/base/current.hpp"
#include "daemon/base/diagnostic.hpp"
#include "daemon/base/log.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/crypto/receipt.hpp"
#include "daemon/engine/action.hpp"
#include "daemon/store/runs.hpp"
#include "daemon/http/router.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/policy/policy_store.hpp"
#include "daemon/store/database.hpp"

namespace soci {
class session;
}

namespace privacyd::admin {

struct AdminDependencies {
  Database& db;
  const crypto::KeyRing& keys;
  const policy::PolicyStore& policies;
  const Clock& clock;
  Logger& log;
  const Current<std::vector<Token>>& tokens;
  metrics::Registry& registry;
  metrics::Metrics* metrics = nullptr;
  // The mail that tells the person why (notify's rejection_notices).
  std::function<std::vector<engine::NoticeDraft>(const boost::json::value& context, const std::string& reason,
                                                 UnixMillis now)>
      rejection_notices;
  // The Partner Center's callback for a request's change (`event`:
  // request.rejected or request.extended), committed with the change.
  std::function<std::vector<engine::NoticeDraft>(const runs::RunRow& row, std::string_view event,
                                                 const std::string& reason, UnixMillis now)>
      callbacks;
  // Reloads workflows, policies, templates, secrets and tokens: all or
  // nothing. Blocking; the API calls it on a database thread.
  std::function<Diagnostics()> reload;
  std::function<void()> wake_engine;
  std::function<void()> wake_notifier;
  // Signs receipts (SPEC §16); null when keys.receipt_key_file is not set.
  const crypto::ReceiptSigner* receipts = nullptr;
  // A dry run (SPEC §16): `query` has type, subject, partner, categories
  // (an array) and jurisdiction; throws std::invalid_argument for a query
  // that cannot be planned. Blocking; called on a database thread.
  std::function<boost::json::object(const boost::json::object& query)> plan;
};

class AdminApi {
 public:
  explicit AdminApi(AdminDependencies deps);
  void mount(http::Router& router);

 private:
  using Endpoint = boost::asio::awaitable<http::Response> (AdminApi::*)(http::Request&, const Token&);
  void route(http::Router& router, std::string method, std::string_view pattern, Role role, Endpoint endpoint,
             std::uint64_t max_body = 0);
  boost::asio::awaitable<http::Response> guard(http::Request& request, Role role, Endpoint endpoint);
  http::Response refuse(int status, std::string_view reason, std::string_view message, const http::Request& request);

  // An operator's decision on a request in `from_status` (approve, retry):
  // 404, 409 naming the status it is in, or the request as it is now.
  using Decision = bool (*)(soci::session&, const std::string& id, const std::string& who, UnixMillis now);
  boost::asio::awaitable<http::Response> decide(http::Request& request, const Token& caller, Decision decision,
                                                std::string_view from_status, std::string_view done);

  boost::asio::awaitable<http::Response> list_requests(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> show_request(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> approve(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> reject(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> retry(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> extend(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> export_package(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> request_audit(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> receipt(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> receipt_public_key(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> plan(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> overview(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> whoami(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> list_notices(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> retry_notice(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> acknowledge_notice(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> verify_audit(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> reload(http::Request& request, const Token& caller);
  boost::asio::awaitable<http::Response> metrics(http::Request& request);
  // The request as GET /v1/requests/{id} shows it, after an action.
  boost::asio::awaitable<http::Response> shown(const std::string& id);
  // Walks the whole audit chain (however long) and keeps the outcome for
  // the overview.
  boost::asio::awaitable<boost::json::object> verify_chain();

  AdminDependencies deps_;
  // The last verification of the audit chain, as the overview shows it:
  // the overview verifies anew only when this is older than kAuditFresh,
  // and one caller at a time, so reloading the console never queues walks
  // of the whole chain on the database's threads.
  struct AuditCache;
  std::shared_ptr<AuditCache> audit_cache_;
  // Dry runs: one at a time, on a thread of their own (a plan waits on the
  // data systems, never on privacyd's database threads).
  struct Planner;
  static std::shared_ptr<Planner> make_planner();
  std::shared_ptr<Planner> planner_;
};

}  // namespace privacyd::admin
