#pragma once
// An HTTP/1.1 server on Beast, optionally over TLS: one coroutine per
// connection on its own strand, a fresh parser per message with header and
// body limits, read timeouts (the TLS handshake included), a cap on
// connections, keep-alive, and a drain that lets in-flight requests finish.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/base/log.hpp"
#include "daemon/config/config.hpp"
#include "daemon/http/router.hpp"
#include "daemon/metrics/metrics.hpp"

namespace boost::asio {
class io_context;
}

namespace privacyd::http {

struct ServerOptions {
  std::string name;  // "public" or "admin", for logs
  Endpoint endpoint;
  Limits limits;
  metrics::Metrics* metrics = nullptr;  // counts requests by route and status
  TlsConfig tls;                        // HTTPS when a certificate is given
};

class Server {
 public:
  // Accepts on `ioc` and serves connections there (each on a strand), or,
  // when given, on `connection_contexts` in turn, each of which must be run
  // by exactly one thread (one event loop per I/O thread, as nginx runs one
  // per worker: no thread hands a connection's events to another). Throws std::runtime_error naming the file when TLS
  // is asked for and the certificate or key cannot be loaded.
  Server(boost::asio::io_context& ioc, ServerOptions options, const Router& router, Logger& log,
         std::vector<boost::asio::io_context*> connection_contexts = {});
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens; returns the bound endpoint (port 0 picks one).
  // Throws std::system_error when the address cannot be bound.
  Endpoint listen();
  // Starts accepting on the io_context.
  void start();
  // Stops accepting, closes idle connections, and lets in-flight requests
  // finish with `Connection: close`. Thread-safe.
  void drain();
  std::size_t connections() const;

  // For the fuzzer and tests: serves one plain-HTTP connection on an
  // in-memory stream through the code every connection runs (the header
  // and read-buffer limits, routing, the routes' body limits, keep-alive
  // and pipelining), without the timeouts. The client sends `input`, at
  // most `read_size` bytes per read (0: all at once), then shuts down its
  // side; returns every byte the server wrote back. Rethrows what escapes
  // the connection's coroutine.
  static std::string serve_for_testing(ServerOptions options, const Router& router, Logger& log,
                                       std::string_view input, std::size_t read_size = 0);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace privacyd::http
