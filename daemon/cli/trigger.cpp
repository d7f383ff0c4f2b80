// trigger: plays the Partner Center — builds one webhook, signs it with a
// configured secret (Standard Webhooks), sends it and prints the answer.
#include <boost/json.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include "daemon/base/time.hpp"
#include "daemon/cli/commands.hpp"
#include "daemon/crypto/webhook_signature.hpp"
#include "daemon/http/client.hpp"

namespace privacyd::cli {

namespace json = boost::json;

namespace {

std::string build_body(const TriggerOptions& o) {
  json::object subject{{"huawei_id", o.subject}};
  if (!o.email.empty()) subject["email"] = o.email;
  if (!o.name.empty()) subject["name"] = o.name;
  if (!o.locale.empty()) subject["locale"] = o.locale;
  json::object body{{"type", o.type},
                    {"occurred_at", o.occurred_at.empty() ? format_rfc3339(to_unix_ms(std::chrono::system_clock::now()) / 1000 * 1000) : o.occurred_at},
                    {"subject", std::move(subject)}};
  bool needs_partner = o.type == "association.created" || o.type == "data.disclosed" ||
                       o.type == "request.disassociation";
  if (!o.partner.empty() || needs_partner) body["partner"] = {{"id", o.partner.empty() ? "P-1001" : o.partner}};
  if (!o.categories.empty()) {
    json::array cats;
    for (const auto& c : o.categories) cats.emplace_back(c);
    body["categories"] = std::move(cats);
  }
  if (o.type == "association.created") body["statement_version"] = o.statement_version;
  if (!o.jurisdiction.empty()) body["jurisdiction"] = o.jurisdiction;
  return json::serialize(body);
}

}  // namespace

int trigger(const TriggerOptions& o) {
  std::string body;
  if (!o.body_file.empty()) {
    std::ifstream in(o.body_file, std::ios::binary);
    if (!in) {
      std::cerr << "cannot read " << o.body_file << '\n';
      return 2;
    }
    std::ostringstream text;
    text << in.rdbuf();
    body = text.str();
  } else {
    body = build_body(o);
  }
  try {
    auto secrets = crypto::load_webhook_secrets(o.secret_file);
    std::string id = o.webhook_id.empty() ? "msg_" + crypto::hex(crypto::random_bytes(12)) : o.webhook_id;
    std::int64_t ts = o.timestamp != 0 ? o.timestamp
                                       : std::chrono::duration_cast<std::chrono::seconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count();
    http::ClientRequest request;
    request.url = o.url;
    request.headers = crypto::signed_webhook_headers(secrets.front(), id, ts, body);
    request.body = body;
    request.timeout = std::chrono::seconds(30);
    auto response = http::fetch_blocking(request);
    std::cout << response.status << ' ' << response.body << '\n';
    return response.status >= 200 && response.status < 300 ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "trigger failed: " << e.what() << '\n';
    return 2;
  }
}

}  // namespace privacyd::cli
