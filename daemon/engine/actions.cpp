#include <boost/json.hpp>
#include <chrono>
#include <cmath>

#include "daemon/crypto/webhook_signature.hpp"
#include "daemon/engine/action.hpp"
#include "daemon/http/client.hpp"

namespace privacyd::engine {

namespace json = boost::json;

void ActionRegistry::add(std::unique_ptr<Action> action) {
  auto name = action->spec().name;
  actions_[name] = std::move(action);
}

Action* ActionRegistry::find(std::string_view name) const {
  auto it = actions_.find(name);
  return it == actions_.end() ? nullptr : it->second.get();
}

ActionCatalog ActionRegistry::catalog() const {
  ActionCatalog out;
  for (const auto& [name, action] : actions_) out.push_back(action->spec());
  return out;
}

std::string required_huawei_id(const ActionContext& ctx) {
  const json::value* id = nullptr;
  if (const auto* subject = ctx.context.as_object().if_contains("subject"); subject && subject->is_object()) {
    id = subject->get_object().if_contains("huawei_id");
  }
  if (id == nullptr || !id->is_string() || id->get_string().empty()) {
    throw PermanentFailure("the subject's identifier cannot be decrypted with the configured keys");
  }
  return std::string(id->get_string());
}

std::string subject_key(const json::value& context) {
  if (!context.is_object()) return {};
  const auto* request = context.get_object().if_contains("request");
  if (request == nullptr || !request->is_object()) return {};
  const auto* key = request->get_object().if_contains("subject_key");
  return key != nullptr && key->is_string() ? std::string(key->get_string()) : std::string();
}

Duration retry_delay(const RetryPolicy& policy, int attempt, double unit_random) {
  using ms = std::chrono::milliseconds;
  double base = static_cast<double>(std::chrono::duration_cast<ms>(policy.backoff).count());
  double cap = static_cast<double>(std::chrono::duration_cast<ms>(policy.max_backoff).count());
  double delay = std::min(cap, base * std::pow(2.0, std::max(0, attempt - 2)));
  return Duration(static_cast<Duration::rep>(delay / 2 + delay / 2 * unit_random));
}

boost::asio::awaitable<ActionResult> LocalAction::run(const ActionContext&) {
  throw std::logic_error("action " + spec().name + " runs only inside the engine's transaction");
  co_return ActionResult{};
}

namespace {

// Parks the request until an operator approves or rejects it.
class Approval final : public LocalAction {
 public:
  const ActionSpec& spec() const override { return spec_; }
  ActionResult run_local(soci::session&, const ActionContext&) override {
    ActionResult r;
    r.kind = ActionResult::Kind::park;
    r.reason = "approval";
    return r;
  }

 private:
  ActionSpec spec_{"approval", {}};
};

// A durable timer: the step waits, across restarts, until `for` has passed.
class Wait final : public LocalAction {
 public:
  const ActionSpec& spec() const override { return spec_; }
  ActionResult run_local(soci::session&, const ActionContext& ctx) override {
    if (ctx.woken_from) return ActionResult::success(json::object{{"waited_until", *ctx.woken_from}});
    auto d = parse_duration(std::string(ctx.step.with.at("for").as_string()));
    ActionResult r;
    r.kind = ActionResult::Kind::wait;
    r.wake_at = ctx.now + std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
    return r;
  }

 private:
  ActionSpec spec_{"wait", {{"for", ActionParam::Kind::duration, true}}};
};

// POSTs a signed JSON body (Standard Webhooks, webhook-id = request and
// step) to an internal URL: 2xx continues with the JSON answer as the step's
// output, {"halt": true} parks for an operator; 408, 429, 5xx and
// connection failures retry; other answers fail the step.
class WebhookCall final : public Action {
 public:
  explicit WebhookCall(std::filesystem::path base) : base_(std::move(base)) {}
  const ActionSpec& spec() const override { return spec_; }

  boost::asio::awaitable<ActionResult> run(const ActionContext& ctx) override {
    std::filesystem::path secret_file(std::string(ctx.step.with.at("secret_file").as_string()));
    if (secret_file.is_relative()) secret_file = base_ / secret_file;
    std::vector<crypto::Bytes> secrets;
    try {
      secrets = crypto::load_webhook_secrets(secret_file);
    } catch (const std::exception& e) {
      co_return ActionResult::failure(e.what(), true);
    }
    std::string body = json::serialize(json::object{{"type", "workflow.step"},
                                                    {"request_id", ctx.request_id},
                                                    {"request_type", ctx.request_type},
                                                    {"step", ctx.step.id},
                                                    {"attempt", ctx.attempt}});
    auto ts = ctx.now / 1000;
    http::ClientRequest request;
    request.url = std::string(ctx.step.with.at("url").as_string());
    request.headers = crypto::signed_webhook_headers(secrets.front(), ctx.idempotency_key, ts, body);
    request.body = std::move(body);
    request.timeout = ctx.step.timeout;
    request.max_response_body = 64 * 1024;
    http::ClientResponse response;
    try {
      response = co_await http::fetch(request);
    } catch (const std::exception& e) {
      co_return ActionResult::failure(std::string("webhook.call: ") + e.what(), true);
    }
    if (response.status < 200 || response.status > 299) {
      co_return ActionResult::failure("webhook.call answered " + std::to_string(response.status),
                                      http::retryable_status(response.status));
    }
    boost::system::error_code ec;
    json::value answer = response.body.empty() ? json::value(json::object{}) : json::parse(response.body, ec);
    if (ec) answer = json::object{};
    if (answer.is_object()) {
      if (const auto* halt = answer.get_object().if_contains("halt"); halt && halt->is_bool() && halt->get_bool()) {
        ActionResult r;
        r.kind = ActionResult::Kind::park;
        r.reason = "halted by " + ctx.step.id;
        r.output = answer;
        co_return r;
      }
    }
    co_return ActionResult::success(answer);
  }

 private:
  std::filesystem::path base_;
  ActionSpec spec_{"webhook.call",
                   {{"url", ActionParam::Kind::url, true}, {"secret_file", ActionParam::Kind::text, true}}};
};

}  // namespace

void add_builtin_actions(ActionRegistry& registry, const std::filesystem::path& base) {
  registry.add(std::make_unique<Approval>());
  registry.add(std::make_unique<Wait>());
  registry.add(std::make_unique<WebhookCall>(base));
}

}  // namespace privacyd::engine
