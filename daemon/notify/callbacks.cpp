#include "daemon/notify/callbacks.hpp"

#include <boost/json.hpp>

#include "daemon/crypto/primitives.hpp"

namespace privacyd::notify {

namespace json = boost::json;

std::optional<PackageLink> package_link(const NoticeDependencies& deps, const json::value& output) {
  const auto* download = output.is_object() ? output.get_object().if_contains("download") : nullptr;
  if (download == nullptr || !download->is_object()) return std::nullopt;
  const auto* sealed = download->get_object().if_contains("token_sealed");
  const auto* expires = download->get_object().if_contains("expires_at");
  if (sealed == nullptr || !sealed->is_string() || expires == nullptr || !expires->is_string()) return std::nullopt;
  auto token = deps.keys.open(sealed->get_string(), "exports.token");
  if (!token) return std::nullopt;
  return PackageLink{deps.public_url + "/v1/packages/" + *token, std::string(expires->get_string())};
}

std::vector<engine::NoticeDraft> partner_center_callbacks(const NoticeDependencies& deps, const runs::RunRow& row,
                                                          std::string_view event, const std::string& reason,
                                                          UnixMillis now) {
  if (deps.config.partner_center.callback_url.empty()) return {};
  engine::NoticeDraft n;
  n.id = crypto::new_id("ntc", now);
  n.channel = "partner_center";
  n.recipient = "partner-center";
  n.template_name = std::string(event);
  n.awaited = false;
  const bool finished = event != "request.extended";
  json::value package = nullptr;
  if (event == "request.completed") {
    for (const auto& step : row.steps) {
      if (step.action != "export.package" || !step.output) continue;
      boost::system::error_code ec;
      auto output = json::parse(*step.output, ec);
      if (ec) continue;
      if (auto link = package_link(deps, output)) {
        package = json::object{{"url", link->url}, {"expires_at", link->expires_at}};
      }
    }
  }
  json::object body{{"type", event},
                    {"callback_id", n.id},
                    {"request_id", row.id},
                    {"webhook_id", row.webhook_id},
                    {"request_type", row.type},
                    {"status", finished ? std::string(event.substr(8)) : row.status},
                    {"reason", reason.empty() ? json::value(nullptr) : json::value(reason)},
                    {"deadline", format_rfc3339(row.deadline_at)},
                    {"finished_at", finished ? json::value(format_rfc3339(now)) : json::value(nullptr)},
                    {"package", std::move(package)}};
  n.payload_enc = deps.keys.seal(json::serialize(body), "notices.payload");
  return {std::move(n)};
}

}  // namespace privacyd::notify
