// receive: a partner's side of the notice webhook, for development and for
// checking a partner integration: verifies each Standard Webhooks
// signature, keeps each notice as DIR/<webhook-id>.json, and prints a line.
// With --acknowledge OUTCOME it then answers each notice the way a partner
// does (SPEC §13.3): a signed notice.acknowledged POSTed to --ack-url.
// It also plays the Partner Center's callback endpoint (same route).
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json.hpp>
#include <fstream>
#include <iostream>

#include "daemon/base/clock.hpp"
#include "daemon/base/time.hpp"
#include "daemon/cli/commands.hpp"
#include "daemon/crypto/webhook_signature.hpp"
#include "daemon/http/client.hpp"
#include "daemon/http/server.hpp"

namespace privacyd::cli {

namespace {

// Acknowledges notice `id` after it has been answered, on the loop.
boost::asio::awaitable<void> acknowledge(std::shared_ptr<http::ClientRequest> request, Logger& log, std::string id) {
  try {
    auto response = co_await http::fetch(*request);
    std::cout << "acknowledged " << id << " " << response.status << std::endl;
  } catch (const std::exception& e) {
    log.warn("acknowledgement not sent", {{"notice_id", id}, {"error", e.what()}});
  }
}

}  // namespace

int receive(const std::string& listen, const std::filesystem::path& secret_file, const std::filesystem::path& dir,
            const ReceiveAcks& acks) {
  auto log = Logger::to_stderr(LogLevel::info);
  auto endpoint = parse_endpoint(listen);
  if (!endpoint) {
    std::cerr << "--listen must be HOST:PORT\n";
    return 2;
  }
  try {
    const auto secrets = crypto::load_webhook_secrets(secret_file);
    std::filesystem::create_directories(dir);
    boost::asio::io_context ioc(1);
    SystemClock clock;
    http::Router router;
    router.add(
        "POST", "/notices",
        [&](http::Request& request) -> boost::asio::awaitable<http::Response> {
          auto problem = crypto::verify_webhook(
              secrets,
              {request.header("webhook-id"), request.header("webhook-timestamp"), request.header("webhook-signature")},
              request.body, clock.now(), std::chrono::minutes(5));
          if (problem) {
            log.warn("notice refused", {{"reason", crypto::describe(*problem)}});
            co_return http::error(401, "invalid_signature", crypto::describe(*problem));
          }
          std::string id(request.header("webhook-id"));
          if (id.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != std::string::npos) {
            co_return http::error(400, "invalid_id", "webhook-id must be letters, digits, _ and -");
          }
          boost::system::error_code ec;
          auto body = boost::json::parse(request.body, ec);
          const auto* type_value = !ec && body.is_object() ? body.as_object().if_contains("type") : nullptr;
          std::string type = type_value != nullptr && type_value->is_string() ? std::string(type_value->get_string())
                                                                              : std::string("?");
          std::ofstream(dir / (id + ".json"), std::ios::binary | std::ios::trunc) << request.body;
          std::cout << "received " << id << " " << type << std::endl;
          const bool asks = type == "notice.disassociation" || type == "notice.erasure";
          if (asks && !acks.outcome.empty()) {
            const auto& o = body.as_object();
            auto field = [&](const char* key) {
              const auto* v = o.if_contains(key);
              return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
            };
            std::string ack = boost::json::serialize(boost::json::object{{"type", "notice.acknowledged"},
                                                                         {"notice_id", field("notice_id")},
                                                                         {"partner_id", field("partner_id")},
                                                                         {"outcome", acks.outcome},
                                                                         {"note", "privacyd receive"}});
            auto post = std::make_shared<http::ClientRequest>();
            post->url = acks.url;
            post->body = ack;
            post->headers = crypto::signed_webhook_headers(secrets.front(), "ack-" + id,
                                                           to_unix_ms(clock.now()) / 1000, ack);
            post->timeout = std::chrono::seconds(10);
            boost::asio::co_spawn(ioc, acknowledge(post, log, id), boost::asio::detached);
          }
          co_return http::Response::json(200, "{}");
        },
        1024 * 1024);
    Limits limits;
    http::Server server(ioc, {"receive", *endpoint, limits, nullptr, {}}, router, log);
    auto at = server.listen();
    server.start();
    log.info("listening", {{"listener", "receive"}, {"addr", at.text()}});
    boost::asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code&, int) {
      server.drain();
      ioc.stop();
    });
    ioc.run();
    return 0;
  } catch (const std::exception& e) {
    log.error("receive failed", {{"error", e.what()}});
    return 1;
  }
}

}  // namespace privacyd::cli
