#include "daemon/intake/intake.hpp"

#include <boost/json.hpp>

#include "daemon/crypto/webhook_signature.hpp"
#include "daemon/intake/event.hpp"
#include "daemon/store/intake_writes.hpp"

namespace privacyd::intake {

namespace json = boost::json;

Intake::Intake(GroupCommit& commits, const crypto::KeyRing& keys, const Directory& directory, const Clock& clock,
               Logger& log, IntakeOptions options, std::vector<crypto::Bytes> secrets)
    : commits_(commits),
      keys_(keys),
      directory_(directory),
      clock_(clock),
      log_(log),
      options_(options),
      secrets_(std::move(secrets)) {}

void Intake::set_secrets(std::vector<crypto::Bytes> secrets) { secrets_.replace(std::move(secrets)); }

void Intake::mount(http::Router& router) {
  router.add(
      "POST", "/v1/webhooks/partner-center", [this](http::Request& r) { return handle(r); }, options_.max_body);
}

namespace {

bool is_json(std::string_view content_type) {
  auto semi = content_type.find(';');
  auto media = content_type.substr(0, semi);
  while (!media.empty() && media.back() == ' ') media.remove_suffix(1);
  return media.size() == 16 && strncasecmp(media.data(), "application/json", 16) == 0;
}

std::string contact_json(const SubjectFields& s) {
  json::object contact;
  if (s.account_name) contact["account_name"] = *s.account_name;
  if (s.name) contact["name"] = *s.name;
  if (s.email) contact["email"] = *s.email;
  if (s.phone) contact["phone"] = *s.phone;
  return json::serialize(contact);
}

}  // namespace

http::Response Intake::refuse(int status, std::string_view code, std::string_view message, std::string_view field) {
  if (options_.metrics != nullptr) options_.metrics->webhook_rejections.with({code}).inc();
  return http::error(status, code, message, field);
}

boost::asio::awaitable<http::Response> Intake::handle(http::Request& request) {
  const auto now = clock_.now();
  const std::string_view webhook_id = request.header("webhook-id");
  auto problem = crypto::verify_webhook(
      *secrets_.get(), {webhook_id, request.header("webhook-timestamp"), request.header("webhook-signature")},
      request.body, now, options_.tolerance);
  if (problem) {
    log_.warn("webhook rejected", {{"reason", crypto::describe(*problem)}, {"remote", request.remote}});
    co_return refuse(401, "invalid_signature", crypto::describe(*problem));
  }
  if (!is_json(request.header("content-type"))) {
    co_return refuse(415, "unsupported_media_type", "the body must be application/json");
  }

  auto parsed = parse_event(request.body);
  if (auto* p = std::get_if<FieldProblem>(&parsed)) {
    log_.info("webhook invalid", {{"webhook_id", webhook_id}, {"code", p->code}, {"field", p->field}});
    co_return refuse(400, p->code, p->message, p->field);
  }
  auto& event = std::get<WebhookEvent>(parsed);

  std::optional<std::vector<std::string>> partner_defaults;
  if (event.partner_id) {
    partner_defaults = directory_.partner_shared_categories(*event.partner_id);
    if (!partner_defaults) {
      log_.info("webhook for unknown partner", {{"webhook_id", webhook_id}});
      co_return refuse(404, "unknown_partner", "no partner with this id", "partner.id");
    }
  }
  if (event.categories) {
    for (std::size_t i = 0; i < event.categories->size(); ++i) {
      if (!directory_.category_known((*event.categories)[i])) {
        co_return refuse(400, "invalid_field", "unknown category", "categories[" + std::to_string(i) + "]");
      }
    }
  }

  const UnixMillis received_at = to_unix_ms(now);
  auto write = std::make_shared<IntakeWrite>();
  write->webhook_id = std::string(webhook_id);
  write->body_sha256 = crypto::sha256_hex(request.body);
  write->received_at = received_at;
  write->new_subject_id = crypto::new_id("sub", received_at);
  write->huawei_index = keys_.blind_index(event.subject.huawei_id, "subjects.huawei_id");
  write->huawei_id = event.subject.huawei_id;
  if (event.subject.has_contact()) write->contact_json = contact_json(event.subject);
  write->locale = event.subject.locale;
  write->type = std::string(type_name(event.type));
  write->is_request = is_request(event.type);
  write->partner_id = event.partner_id;
  write->occurred_at = event.occurred_at;
  write->statement_version = event.statement_version;
  write->jurisdiction = event.jurisdiction.value_or("default");

  json::object response;
  if (write->is_request) {
    write->id = crypto::new_id("req", received_at);
    write->categories = event.categories.value_or(std::vector<std::string>{});
    auto allowed = std::chrono::duration_cast<std::chrono::milliseconds>(directory_.deadline(write->jurisdiction));
    write->deadline_at = received_at + allowed.count();
    response = {{"request_id", write->id}, {"status", "received"}, {"deadline", format_rfc3339(write->deadline_at)}};
  } else {
    write->id = crypto::new_id("evt", received_at);
    if (event.categories) {
      write->categories = *event.categories;
    } else if (event.type == EventType::association_created) {
      write->categories = *partner_defaults;
    }
    response = {{"event_id", write->id}, {"status", "recorded"}};
  }
  write->status = 202;
  write->response = json::serialize(response);

  auto outcome = std::make_shared<IntakeOutcome>();
  // A named local, not a temporary in the co_await (see GroupCommit::run).
  GroupCommit::Work work = [this, write, outcome](soci::session& sql) {
    *outcome = write_intake(sql, *write, SubjectSealer(keys_, options_.subject_keys));
  };
  bool committed = false;
  try {
    co_await commits_.run(std::move(work));
    committed = true;
    commit_outage_.succeeded(log_);
  } catch (const DatabaseUnavailable& e) {
    // Each is answered 503 and counted; the outage is logged once.
    commit_outage_.failed(log_, describe_failure(e));
  } catch (const std::exception& e) {
    log_.error("webhook not committed", {{"webhook_id", webhook_id}, {"error", describe_failure(e)}});
  }
  if (!committed) {
    auto r = refuse(503, "unavailable", "the request could not be stored; retry later");
    r.headers.emplace_back("Retry-After", "5");
    co_return r;
  }

  switch (outcome->kind) {
    case IntakeOutcome::Kind::conflict:
      log_.warn("webhook id reused with another body", {{"webhook_id", webhook_id}});
      co_return refuse(409, "idempotency_conflict", "this webhook-id was already used with a different body");
    case IntakeOutcome::Kind::replayed:
      log_.debug("webhook replayed", {{"webhook_id", webhook_id}});
      co_return http::Response::json(outcome->status, outcome->response);
    case IntakeOutcome::Kind::stored:
      break;
  }
  if (write->is_request) {
    if (options_.metrics != nullptr) {
      // "request.access" → "access", as the requests table and the engine name it.
      options_.metrics->requests_received.with({std::string_view(write->type).substr(write->type.find('.') + 1)}).inc();
    }
    if (on_request_stored_) on_request_stored_();
  }
  log_.debug("webhook accepted", {{"webhook_id", webhook_id}, {"type", write->type}, {"id", write->id}});
  co_return http::Response::json(outcome->status, outcome->response);
}

}  // namespace privacyd::intake
