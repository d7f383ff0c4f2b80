// receive: a partner's side of the notice webhook, for development and for
// checking a partner integration: verifies each Standard Webhooks
// signature, keeps each notice as DIR/<webhook-id>.json, and prints a line.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json.hpp>
#include <fstream>
#include <iostream>

#include "daemon/base/clock.hpp"
#include "daemon/cli/commands.hpp"
#include "daemon/crypto/webhook_signature.hpp"
#include "daemon/http/server.hpp"

namespace privacyd::cli {

int receive(const std::string& listen, const std::filesystem::path& secret_file, const std::filesystem::path& dir) {
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
          std::string type = !ec && body.is_object() && body.as_object().contains("type")
                                 ? std::string(body.at("type").as_string())
                                 : std::string("?");
          std::ofstream(dir / (id + ".json"), std::ios::binary | std::ios::trunc) << request.body;
          std::cout << "received " << id << " " << type << std::endl;
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
