#include "daemon/links/links.hpp"

#include <boost/json.hpp>
#include <boost/url/parse_query.hpp>
#include <soci/soci.h>

#include "daemon/base/text.hpp"
#include "daemon/crypto/primitives.hpp"
#include "daemon/crypto/webhook_signature.hpp"
#include "daemon/store/async.hpp"
#include "daemon/store/follow_ups.hpp"

namespace privacyd::links {

namespace json = boost::json;
using http::Request;
using http::Response;
using boost::asio::awaitable;

namespace {

constexpr std::size_t kMaxNote = 4000;         // bytes of a partner's note (1,000 characters of any script)
constexpr std::uint64_t kMaxAckBody = 16 * 1024;

// Links carry bearer tokens: never cached, never leaked to another site.
void private_headers(Response& r) {
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
}

std::string escape_html(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

Response page(int status, std::string_view title, const std::string& body_html) {
  Response r{status, "text/html; charset=utf-8",
             "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + escape_html(title) +
                 "</title></head><body><h1>" + escape_html(title) + "</h1>" + body_html + "</body></html>\n",
             {}};
  private_headers(r);
  r.headers.emplace_back("Content-Security-Policy", "default-src 'none'; form-action 'self'");
  return r;
}

Response gone_or_unknown_page(int status) {
  return page(status, status == 404 ? "Link not found" : "Link no longer valid",
              "<p>Ask the sender for a new link if you still need one.</p>");
}

const char* describe_outcome(std::string_view o) {
  if (o == "erased") return "erased the information";
  if (o == "retained") return "retained the information (explained in the note)";
  return "held none of this information";
}

std::string ack_json(const std::string& id, const std::string& outcome) {
  return json::serialize(json::object{{"notice_id", id}, {"status", "acknowledged"}, {"outcome", outcome}});
}

}  // namespace

std::string client_of(std::string_view remote) {
  auto colon = remote.rfind(':');
  return std::string(colon == std::string_view::npos ? remote : remote.substr(0, colon));
}

std::chrono::seconds GuessLimiter::wait(const std::string& client, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = clients_.find(client);
  if (it == clients_.end() || now - it->second.start >= window_) return std::chrono::seconds(0);
  if (it->second.misses < allowed_) return std::chrono::seconds(0);
  auto left = std::chrono::ceil<std::chrono::seconds>(it->second.start + window_ - now);
  return std::max(left, std::chrono::seconds(1));
}

void GuessLimiter::missed(const std::string& client, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = clients_.find(client);
  if (it == clients_.end()) {
    if (clients_.size() >= max_clients_) {
      std::erase_if(clients_, [&](const auto& entry) { return now - entry.second.start >= window_; });
      if (clients_.size() >= max_clients_) clients_.clear();  // a flood of addresses: start over
    }
    it = clients_.emplace(client, Window{now, 0}).first;
  }
  if (now - it->second.start >= window_) it->second = Window{now, 0};
  ++it->second.misses;
}

void Links::mount(http::Router& router) {
  router.add("GET", "/v1/packages/{token}", [this](Request& r) { return download(r); });
  router.add("POST", "/v1/webhooks/partner-ack", [this](Request& r) { return partner_ack(r); }, kMaxAckBody);
  router.add("GET", "/v1/acks/{token}", [this](Request& r) { return ack_page(r); });
  router.add("POST", "/v1/acks/{token}", [this](Request& r) { return ack_by_link(r); }, kMaxAckBody);
}

std::optional<Response> Links::slowed(const Request& request) {
  auto wait = guesses_.wait(client_of(request.remote), deps_.clock.now());
  if (wait.count() == 0) return std::nullopt;
  Response r = http::error(429, "too_many_guesses", "too many unknown links from this address; try again later");
  r.headers.emplace_back("Retry-After", std::to_string(wait.count()));
  return r;
}

void Links::missed(const Request& request) { guesses_.missed(client_of(request.remote), deps_.clock.now()); }

awaitable<Response> Links::download(Request& request) {
  if (auto r = slowed(request)) co_return *r;
  const std::string digest = crypto::token_digest(request.param("token"));
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  const int max_downloads = deps_.config.access.max_downloads;
  auto take = [&digest, now, max_downloads](soci::session& sql) {
    soci::transaction tr(sql);
    auto fetched = follow_ups::take_package(sql, digest, max_downloads, now);
    tr.commit();
    return fetched;
  };
  auto fetched = co_await run_in_db(deps_.db, take);
  if (fetched.result == follow_ups::Fetch::unknown) {
    missed(request);
    co_return http::error(404, "not_found", "no package has this link");
  }
  if (fetched.result == follow_ups::Fetch::gone) {
    co_return http::error(410, "package_gone",
                          "this link has expired or has been used as often as it may; ask for a new copy");
  }
  auto package = deps_.keys.open(fetched.package_enc, "exports.package");
  if (!package) co_return http::error(500, "undecryptable", "the package cannot be decrypted with the configured keys");
  deps_.log.info("package downloaded", {{"request_id", fetched.request_id}, {"download", fetched.download}});
  Response r = Response::json(200, std::move(*package));
  r.headers.emplace_back("Content-Disposition",
                         "attachment; filename=\"privacy-package-" + fetched.request_id + ".json\"");
  private_headers(r);
  co_return r;
}

awaitable<Response> Links::partner_ack(Request& request) {
  // Whose secret verifies it is named in the body, so the body is read
  // first; nothing is looked up in the database until the signature holds.
  boost::system::error_code ec;
  json::value body = json::parse(request.body, ec);
  if (ec || !body.is_object()) co_return http::error(400, "invalid_json", "the body must be a JSON object");
  const auto& o = body.get_object();
  auto text = [&](const char* key) -> std::optional<std::string> {
    const auto* v = o.if_contains(key);
    if (v == nullptr || !v->is_string()) return std::nullopt;
    return std::string(v->get_string());
  };
  if (text("type") != std::optional<std::string>("notice.acknowledged")) {
    co_return http::error(400, "invalid_field", "type must be notice.acknowledged", "type");
  }
  auto notice_id = text("notice_id");
  if (!notice_id || notice_id->empty() || notice_id->size() > 64) {
    co_return http::error(400, "invalid_field", "notice_id is required", "notice_id");
  }
  auto partner_id = text("partner_id");
  if (!partner_id || partner_id->empty() || partner_id->size() > 128) {
    co_return http::error(400, "invalid_field", "partner_id is required", "partner_id");
  }
  auto outcome = text("outcome");
  if (!outcome || !follow_ups::valid_outcome(*outcome)) {
    co_return http::error(400, "invalid_field", "outcome must be erased, retained or no_data", "outcome");
  }
  std::string note = text("note").value_or("");
  if (o.contains("note") && !o.at("note").is_string() && !o.at("note").is_null()) {
    co_return http::error(400, "invalid_field", "note must be text", "note");
  }
  if (note.size() > kMaxNote || !readable_text(note)) {
    co_return http::error(400, "invalid_field", "note is readable text of at most 4000 bytes", "note");
  }

  const auto policies = deps_.policies.current();  // held: a reload must not free the partner under us
  const auto* partner = policies->partner(*partner_id);
  std::vector<crypto::Bytes> secrets;
  if (partner != nullptr && !partner->notice_secret_file.empty()) {
    try {
      secrets = crypto::load_webhook_secrets(partner->notice_secret_file);
    } catch (const std::exception& e) {
      deps_.log.error("partner secret unreadable", {{"partner", partner->id}, {"error", e.what()}});
      co_return http::error(503, "unavailable", "the partner's secret cannot be read");
    }
  }
  auto problem = crypto::verify_webhook(
      secrets, {request.header("webhook-id"), request.header("webhook-timestamp"), request.header("webhook-signature")},
      request.body, deps_.clock.now(), std::chrono::duration_cast<std::chrono::milliseconds>(deps_.config.webhook.tolerance));
  if (partner == nullptr || secrets.empty() || problem) {
    deps_.log.warn("acknowledgement refused",
                   {{"reason", problem ? crypto::describe(*problem) : std::string_view("no such webhook partner")}});
    co_return http::error(401, "invalid_signature", "the signature does not verify with the partner's secret");
  }
  const std::string note_enc = note.empty() ? std::string() : deps_.keys.seal(note, "notices.ack_note");
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  struct Result {
    int status = 404;
    std::string id;
  };
  auto record = [&](soci::session& sql) {
    soci::transaction tr(sql);
    auto target = follow_ups::find_ack_target(sql, *notice_id);
    if (!target || target->channel != "partner") return Result{404, {}};
    // Signed by a partner, but not the one the notice went to.
    if (target->recipient != *partner_id) return Result{401, {}};
    auto ack = follow_ups::acknowledge(sql, target->id, *outcome, note_enc, "partner", now);
    tr.commit();
    return Result{ack == follow_ups::Ack::conflict ? 409 : 202, target->id};
  };
  Result result = co_await run_in_db(deps_.db, record);
  switch (result.status) {
    case 404: co_return http::error(404, "not_found", "no notice to this partner has that id", "notice_id");
    case 401:
      co_return http::error(401, "invalid_signature", "the signature does not verify with the partner's secret");
    case 409:
      co_return http::error(409, "already_acknowledged", "this notice was acknowledged with another outcome");
    default: break;
  }
  deps_.log.info("notice acknowledged", {{"notice_id", result.id}, {"partner", *partner_id}, {"outcome", *outcome}});
  co_return Response::json(202, ack_json(result.id, *outcome));
}

awaitable<Response> Links::ack_page(Request& request) {
  if (auto r = slowed(request)) co_return *r;
  const std::string digest = crypto::token_digest(request.param("token"));
  auto find = [&digest](soci::session& sql) { return follow_ups::find_ack_target_by_token(sql, digest); };
  auto target = co_await run_in_db(deps_.db, find);
  if (!target) {
    missed(request);
    co_return gone_or_unknown_page(404);
  }
  std::string html = "<p>Notice <code>" + escape_html(target->id) + "</code>, request <code>" +
                     escape_html(target->request_id) + "</code>.</p>";
  if (target->outcome) {
    html += "<p>Recorded: you " + std::string(describe_outcome(*target->outcome)) + ". Thank you.</p>";
    co_return page(200, "Notice acknowledged", html);
  }
  html +=
      "<form method=\"post\"><fieldset><legend>What did you do with the information?</legend>"
      "<label><input type=\"radio\" name=\"outcome\" value=\"erased\" required> We erased it</label><br>"
      "<label><input type=\"radio\" name=\"outcome\" value=\"retained\"> We retained it (say why below)</label><br>"
      "<label><input type=\"radio\" name=\"outcome\" value=\"no_data\"> We held none of it</label></fieldset>"
      "<p><label>Note (optional)<br><textarea name=\"note\" maxlength=\"1000\" rows=\"4\" cols=\"60\"></textarea>"
      "</label></p><p><button type=\"submit\">Acknowledge</button></p></form>";
  co_return page(200, "Acknowledge a privacy notice", html);
}

awaitable<Response> Links::ack_by_link(Request& request) {
  if (auto r = slowed(request)) co_return *r;
  const std::string digest = crypto::token_digest(request.param("token"));
  std::string outcome, note;
  // application/x-www-form-urlencoded writes a space as '+' (a '+' itself
  // comes as %2B), which URL query decoding leaves alone.
  std::string form = request.body;
  for (std::size_t at = form.find('+'); at != std::string::npos; at = form.find('+', at)) form.replace(at, 1, "%20");
  auto query = boost::urls::parse_query(form);
  if (!query) co_return page(400, "Not understood", "<p>The form could not be read.</p>");
  for (auto param : *query) {
    const std::string key = param.key.decode();
    if (key == "outcome") outcome = param.value.decode();
    if (key == "note") note = param.value.decode();
  }
  if (!follow_ups::valid_outcome(outcome)) {
    co_return page(400, "Choose an answer", "<p>Choose erased, retained or none held, then send again.</p>");
  }
  if (note.size() > kMaxNote || !readable_text(note)) {
    co_return page(400, "Note not accepted", "<p>Keep the note to plain text of at most 1000 characters.</p>");
  }
  const std::string note_enc = note.empty() ? std::string() : deps_.keys.seal(note, "notices.ack_note");
  const UnixMillis now = to_unix_ms(deps_.clock.now());
  struct Result {
    std::optional<follow_ups::Ack> ack;
    std::string id;
  };
  auto record = [&](soci::session& sql) {
    soci::transaction tr(sql);
    auto target = follow_ups::find_ack_target_by_token(sql, digest);
    if (!target) return Result{};
    auto ack = follow_ups::acknowledge(sql, target->id, outcome, note_enc, "link", now);
    tr.commit();
    return Result{ack, target->id};
  };
  Result result = co_await run_in_db(deps_.db, record);
  if (!result.ack) {
    missed(request);
    co_return gone_or_unknown_page(404);
  }
  if (*result.ack == follow_ups::Ack::conflict) {
    co_return page(409, "Already acknowledged", "<p>This notice was acknowledged with another answer already.</p>");
  }
  deps_.log.info("notice acknowledged", {{"notice_id", result.id}, {"by", "link"}, {"outcome", outcome}});
  co_return page(200, "Thank you", "<p>Recorded: you " + std::string(describe_outcome(outcome)) + ".</p>");
}

}  // namespace privacyd::links
