#include "daemon/http/server.hpp"

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>
#include <algorithm>
#include <array>
#include <map>
#include <mutex>
#include <set>
#include <strings.h>

namespace privacyd::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);
// What the read buffer holds beyond the header limit: a chunk header, a
// trailer, and the start of a pipelined request.
constexpr std::size_t kLineSlack = 8 * 1024;

namespace {

struct Connection : std::enable_shared_from_this<Connection> {
  Connection(tcp::socket socket, net::ssl::context* tls, net::ip::address from) : client(std::move(from)) {
    if (tls != nullptr) {
      secure.emplace(std::move(socket), *tls);
    } else {
      plain.emplace(std::move(socket));
    }
  }
  std::optional<beast::tcp_stream> plain;
  std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
  std::atomic<bool> idle{true};  // waiting for the first byte of a request
  net::ip::address client;       // counted against its address's cap until forgotten
  beast::tcp_stream& lowest() { return plain ? *plain : beast::get_lowest_layer(*secure); }
};

std::unique_ptr<net::ssl::context> tls_context(const TlsConfig& tls) {
  if (!tls.enabled()) return nullptr;
  auto ctx = std::make_unique<net::ssl::context>(net::ssl::context::tls_server);
  ctx->set_options(net::ssl::context::default_workarounds | net::ssl::context::no_sslv2 |
                   net::ssl::context::no_sslv3 | net::ssl::context::no_tlsv1 | net::ssl::context::no_tlsv1_1 |
                   net::ssl::context::single_dh_use);
  boost::system::error_code ec;
  ctx->use_certificate_chain_file(tls.certificate_file.string(), ec);
  if (ec) throw std::runtime_error(tls.certificate_file.string() + ": cannot load the TLS certificate: " + ec.message());
  ctx->use_private_key_file(tls.key_file.string(), net::ssl::context::pem, ec);
  if (ec) throw std::runtime_error(tls.key_file.string() + ": cannot load the TLS private key: " + ec.message());
  return ctx;
}

// Beast refuses a Content-Length that overflows 64 bits as malformed; it
// is a body larger than any route takes, so it is answered 413 like one.
// `raw` is what Beast left unconsumed of the header: it starts at the
// field it refused.
bool announces_huge_body(std::string_view raw) {
  for (std::size_t start = 0; start < raw.size();) {
    const std::size_t end = raw.find('\n', start);
    std::string_view line = raw.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    start = end == std::string_view::npos ? raw.size() : end + 1;
    constexpr std::string_view name = "content-length:";
    if (line.size() < name.size() || strncasecmp(line.data(), name.data(), name.size()) != 0) continue;
    line.remove_prefix(name.size());
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    return line.size() > 19 && line.find_first_not_of("0123456789") == std::string_view::npos;
  }
  return false;
}

// Chunked is the only transfer coding privacyd reads; anything else (gzip,
// "chunked, gzip") would otherwise be taken for an empty or raw body.
bool unsupported_transfer_coding(std::string_view value) {
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  return !value.empty() && !(value.size() == 7 && strncasecmp(value.data(), "chunked", 7) == 0);
}

// Deadlines are set on the lowest layer: the TCP stream under TLS or not.
// The in-memory stream of serve_for_testing has no clock; nothing there
// waits on a peer that may stall.
void expires_after(beast::tcp_stream& lowest, Duration after) { lowest.expires_after(after); }
void expires_after(beast::test::stream&, Duration) {}

// What the per-client cap counts by: the address, or for IPv6 its /64 (one
// host is commonly given a whole /64, and could otherwise open connections
// from as many addresses as it likes).
net::ip::address client_key(const net::ip::address& address) {
  if (!address.is_v6() || address.to_v6().is_v4_mapped()) return address;
  auto bytes = address.to_v6().to_bytes();
  std::fill(bytes.begin() + 8, bytes.end(), 0);
  return net::ip::address_v6(bytes);
}

// A field privacyd sends must not end the header early: a CR or LF in a
// name or value (a handler's bug) becomes a space, never a second field.
// Spaces and tabs around the value are trimmed, as Beast's fields did.
void append_field(std::string& out, std::string_view name, std::string_view value) {
  const auto first = value.find_first_not_of(" \t");
  value = first == std::string_view::npos ? std::string_view{} : value.substr(first, value.find_last_not_of(" \t") - first + 1);
  const auto from = out.size();
  out.append(name).append(": ").append(value);
  std::replace_if(out.begin() + static_cast<std::ptrdiff_t>(from), out.end(),
                  [](char c) { return c == '\r' || c == '\n'; }, ' ');
  out.append("\r\n");
}

// The framing is the server's: a handler's field of these names is dropped.
bool framing_field(std::string_view name) {
  return beast::iequals(name, "Content-Length") || beast::iequals(name, "Transfer-Encoding") ||
         beast::iequals(name, "Connection");
}

// The status line and fields of a response, built once into one buffer;
// the body is written after it from where it is (one sendmsg for both),
// not copied. The bytes and their order are Beast's for a
// response<string_body>: Server, Content-Type, the handler's fields (the
// last of a name winning), Connection, Content-Length. Beast walked a
// five-part buffer sequence on every write. Where this differs, it is on
// purpose: CR or LF in a field never starts another; a handler cannot set
// the framing fields; 204 and 304 go out without a body or a length (Beast
// wrote Content-Length: 0, or threw on a body and dropped the connection);
// and a 1xx, which would leave the client waiting for a final answer, is a
// 500.
std::string head_of(Response& r, unsigned version, bool keep_alive) {
  if (r.status < 200 || r.status > 999) r = error(500, "internal", "internal error");
  const auto status = static_cast<bhttp::status>(r.status);
  std::string out;
  out.reserve(192);
  out.append("HTTP/");
  out.push_back(static_cast<char>('0' + version / 10));
  out.push_back('.');
  out.push_back(static_cast<char>('0' + version % 10));
  out.push_back(' ');
  out.append(std::to_string(r.status)).push_back(' ');
  out.append(bhttp::obsolete_reason(status)).append("\r\n");
  // Whether a handler's field from `from` on has this name (and so wins).
  auto named_from = [&](std::size_t from, std::string_view name) {
    return std::any_of(r.headers.begin() + static_cast<std::ptrdiff_t>(from), r.headers.end(),
                       [&](const auto& field) { return beast::iequals(field.first, name); });
  };
  if (!named_from(0, "Server")) append_field(out, "Server", "privacyd");
  if (!r.content_type.empty() && !named_from(0, "Content-Type")) append_field(out, "Content-Type", r.content_type);
  for (std::size_t i = 0; i < r.headers.size(); ++i) {
    const auto& [name, value] = r.headers[i];
    if (!framing_field(name) && !named_from(i + 1, name)) append_field(out, name, value);
  }
  if (version < 11 && keep_alive) append_field(out, "Connection", "keep-alive");
  if (version >= 11 && !keep_alive) append_field(out, "Connection", "close");
  if (status == bhttp::status::no_content || status == bhttp::status::not_modified) {
    r.body.clear();
  } else {
    append_field(out, "Content-Length", std::to_string(r.body.size()));
  }
  out.append("\r\n");
  return out;
}

}  // namespace

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(net::io_context& c, ServerOptions o, const Router& r, Logger& l, std::vector<net::io_context*> contexts)
      : ioc(c),
        one_thread_each(!contexts.empty()),
        connection_contexts(contexts.empty() ? std::vector<net::io_context*>{&c} : std::move(contexts)),
        options(std::move(o)),
        router(r),
        log(l),
        acceptor(net::make_strand(c)),
        tls(tls_context(options.tls)) {}

  net::io_context& ioc;
  bool one_thread_each;  // each connection context is run by exactly one thread
  std::vector<net::io_context*> connection_contexts;
  std::size_t next_context = 0;  // touched by the accept loop only
  ServerOptions options;
  const Router& router;
  Logger& log;
  tcp::acceptor acceptor;
  std::atomic<bool> draining{false};
  std::atomic<std::size_t> active{0};
  std::mutex mutex;  // guards live, per_client and refused
  std::set<std::shared_ptr<Connection>> live;
  std::map<net::ip::address, std::size_t> per_client;  // open connections by client address
  // Refused connections since the last log line: one line per interval,
  // with the count, so a flood of refusals is not a flood of log lines.
  struct {
    std::size_t max_connections = 0;
    std::size_t per_client = 0;
    std::chrono::steady_clock::time_point logged{};
  } refused;
  std::unique_ptr<net::ssl::context> tls;  // null: plain HTTP

  // Registers a new connection, or says why it is refused.
  const char* admit(const std::shared_ptr<Connection>& conn);
  void log_refusal(const char* reason);

  net::awaitable<void> accept_loop();
  // Coroutine parameters are references or pointers only: GCC 12 may
  // destroy a coroutine's by-value class parameters twice.
  net::awaitable<void> session(Connection* conn);
  // Reads, routes and answers requests on one connection until it closes;
  // `idle` says when it waits for the first byte of a request.
  template <class Stream>
  net::awaitable<void> exchange(std::atomic<bool>& idle, Stream& stream, const std::string& remote);
  net::awaitable<Response> handle(Request& request, const Route* route);
  void forget(const std::shared_ptr<Connection>& conn);
};

Server::Server(net::io_context& ioc, ServerOptions options, const Router& router, Logger& log,
               std::vector<net::io_context*> connection_contexts)
    : impl_(std::make_shared<Impl>(ioc, std::move(options), router, log, std::move(connection_contexts))) {}

// The connections hold sockets of the connection contexts, which may be
// destroyed before the last coroutine lets go of this Impl.
Server::~Server() {
  std::lock_guard lock(impl_->mutex);
  impl_->live.clear();
}

std::size_t Server::connections() const { return impl_->active.load(); }

Endpoint Server::listen() {
  auto& ep = impl_->options.endpoint;
  tcp::endpoint endpoint(net::ip::make_address(ep.host), ep.port);
  auto& acceptor = impl_->acceptor;
  acceptor.open(endpoint.protocol());
  acceptor.set_option(net::socket_base::reuse_address(true));
  acceptor.bind(endpoint);
  acceptor.listen(net::socket_base::max_listen_connections);
  auto bound = acceptor.local_endpoint();
  return Endpoint{bound.address().to_string(), bound.port()};
}

void Server::start() {
  net::co_spawn(impl_->acceptor.get_executor(), impl_->accept_loop(), net::detached);
}

void Server::drain() {
  auto self = impl_;
  self->draining = true;
  net::post(self->acceptor.get_executor(), [self] {
    boost::system::error_code ignored;
    self->acceptor.close(ignored);
  });
  std::lock_guard lock(self->mutex);
  for (const auto& conn : self->live) {
    net::post(conn->lowest().get_executor(), [conn] {
      // Only a connection waiting for its next request is cut; one that is
      // being served finishes and then closes.
      if (conn->idle) conn->lowest().socket().close();
    });
  }
}

void Server::Impl::forget(const std::shared_ptr<Connection>& conn) {
  std::lock_guard lock(mutex);
  live.erase(conn);
  if (auto it = per_client.find(conn->client); it != per_client.end() && --it->second == 0) per_client.erase(it);
  --active;
}

const char* Server::Impl::admit(const std::shared_ptr<Connection>& conn) {
  std::lock_guard lock(mutex);
  if (active.load() >= options.limits.max_connections) return "max_connections";
  auto& mine = per_client[conn->client];
  if (mine >= options.limits.max_connections_per_client) return "max_connections_per_client";
  ++mine;
  live.insert(conn);
  ++active;
  return nullptr;
}

void Server::Impl::log_refusal(const char* reason) {
  constexpr auto every = std::chrono::seconds(10);
  std::size_t max_total = 0;
  std::size_t per_address = 0;
  {
    std::lock_guard lock(mutex);
    (std::string_view(reason) == "max_connections" ? refused.max_connections : refused.per_client)++;
    const auto now = std::chrono::steady_clock::now();
    if (now - refused.logged < every) return;
    refused.logged = now;
    max_total = std::exchange(refused.max_connections, 0);
    per_address = std::exchange(refused.per_client, 0);
  }
  log.warn("connections refused", {{"listener", options.name},
                                   {"max_connections", max_total},
                                   {"max_connections_per_client", per_address},
                                   {"interval", "10s"}});
}

net::awaitable<void> Server::Impl::accept_loop() {
  auto self = shared_from_this();
  for (;;) {
    // A context of its own thread needs no strand; one shared by several
    // threads gives each connection a strand.
    auto& home = *connection_contexts[next_context++ % connection_contexts.size()];
    net::any_io_executor executor = home.get_executor();
    if (!one_thread_each) executor = net::make_strand(home);
    auto [ec, socket] = co_await acceptor.async_accept(executor, use_tuple);
    if (ec) {
      if (!acceptor.is_open() || ec == net::error::operation_aborted) co_return;
      log.warn("accept failed", {{"listener", options.name}, {"error", ec.message()}});
      // Out of descriptors: back off instead of spinning.
      net::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    boost::system::error_code peer_ec;
    auto peer = socket.remote_endpoint(peer_ec);
    if (peer_ec) continue;  // gone already
    auto conn = std::make_shared<Connection>(std::move(socket), tls.get(), client_key(peer.address()));
    if (const char* reason = admit(conn)) {
      // Refused before a byte is read, on the accepting thread, without
      // waiting: a client may not make us hold its connection to say no.
      // (Over TLS a plain-text answer would only garble the handshake.)
      static constexpr std::string_view busy =
          "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";
      auto& refused_socket = conn->lowest().socket();
      boost::system::error_code ignored;
      if (!tls) {
        refused_socket.non_blocking(true, ignored);
        refused_socket.write_some(net::buffer(busy), ignored);
      }
      refused_socket.close(ignored);
      log_refusal(reason);
      continue;
    }
    net::co_spawn(conn->lowest().get_executor(), session(conn.get()), net::detached);
  }
}

net::awaitable<Response> Server::Impl::handle(Request& request, const Route* route) {
  try {
    co_return co_await route->handler(request);
  } catch (const std::exception& e) {
    log.error("handler failed", {{"listener", options.name}, {"route", route->pattern}, {"error", e.what()}});
  }
  co_return error(500, "internal", "internal error");
}

net::awaitable<void> Server::Impl::session(Connection* raw) {
  auto self = shared_from_this();
  auto conn = raw->shared_from_this();  // `live` owns it until forget()
  std::string remote;
  {
    boost::system::error_code ec;
    auto peer = conn->lowest().socket().remote_endpoint(ec);
    if (!ec) remote = peer.address().to_string() + ":" + std::to_string(peer.port());
  }
  try {
    if (conn->secure) {
      // The handshake is bounded like a read: a client that opens a
      // connection and says nothing is cut at the read timeout.
      conn->lowest().expires_after(options.limits.read_timeout);
      auto [ec] = co_await conn->secure->async_handshake(net::ssl::stream_base::server, use_tuple);
      if (!ec) {
        co_await exchange(conn->idle, *conn->secure, remote);
        conn->lowest().expires_after(std::chrono::seconds(2));
        co_await conn->secure->async_shutdown(use_tuple);
      }
    } else {
      co_await exchange(conn->idle, *conn->plain, remote);
    }
  } catch (const std::exception& e) {
    // Whatever happened, the connection's slot (and its client's) is given
    // back below.
    log.warn("connection failed", {{"listener", options.name}, {"error", e.what()}});
  }
  boost::system::error_code ignored;
  conn->lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
  conn->lowest().socket().close(ignored);
  forget(conn);
}

template <class Stream>
net::awaitable<void> Server::Impl::exchange(std::atomic<bool>& idle, Stream& stream, const std::string& remote) {
  const auto& limits = options.limits;
  // Bounded: Beast limits the header and the body, not what it buffers
  // while it looks for the end of a line, so an endless chunk extension or
  // trailer (no CRLF) would grow it without end. The header limit fires
  // first for headers; a chunk line or trailer past this is refused.
  beast::flat_buffer buffer(limits.max_header + kLineSlack);
  bool first = true;
  for (;;) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(limits.max_header));
    // No limit while the header is read: Beast would refuse a large
    // Content-Length as a malformed request; the route's limit is applied
    // (413) once the header says where the request goes.
    parser.body_limit(boost::none);
    idle = true;
    if (draining) break;
    expires_after(beast::get_lowest_layer(stream), first ? limits.read_timeout : limits.idle_timeout);
    first = false;
    auto [ec, n] = co_await bhttp::async_read_header(stream, buffer, parser, use_tuple);
    idle = false;
    // Beast counts its header limit from the request line when the header
    // arrives in pieces but from the first field when the request line came
    // in the same read as fields, so up to a request line more would pass
    // depending on how the bytes were split: the limit is the whole header.
    if (!ec && n > limits.max_header) ec = bhttp::error::header_limit;
    if (ec) {
      Response rejection;
      if (ec == bhttp::error::header_limit || ec == bhttp::error::buffer_overflow) {
        rejection = error(431, "header_too_large", "request header too large");
      } else if (ec == bhttp::error::bad_content_length &&
                 announces_huge_body({static_cast<const char*>(buffer.data().data()), buffer.size()})) {
        rejection = error(413, "body_too_large", "request body too large");
      } else if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout ||
                 ec == net::error::operation_aborted || ec == net::error::connection_reset ||
                 ec == net::error::bad_descriptor || ec == net::error::eof ||
                 ec == net::ssl::error::stream_truncated) {
        break;
      } else {
        rejection = error(400, "bad_request", "malformed HTTP request");
      }
      const auto head = head_of(rejection, 11, false);
      expires_after(beast::get_lowest_layer(stream), limits.read_timeout);
      co_await net::async_write(stream, std::array<net::const_buffer, 2>{net::buffer(head), net::buffer(rejection.body)}, use_tuple);
      break;
    }

    const auto started = std::chrono::steady_clock::now();
    auto& header = parser.get();
    Request request;
    request.method = std::string(header.method_string());
    request.target = std::string(header.target());
    request.remote = remote;
    auto url = boost::urls::parse_origin_form(request.target);
    Response response;
    const Route* route = nullptr;
    std::string_view route_label = "unmatched";
    bool read_body = true;
    if (!url) {
      response = error(400, "bad_request", "malformed request target");
      read_body = false;
    } else {
      request.path = std::string(url->encoded_path());
      request.query = std::string(url->encoded_query());
      auto match = router.match(request.method, request.path);
      request.params = std::move(match.params);
      route = match.route;
      if (route != nullptr) route_label = route->pattern;
      if (route == nullptr) {
        response = match.wrong_method ? error(405, "method_not_allowed", "method not allowed")
                                      : error(404, "not_found", "no such endpoint");
      }
      std::uint64_t max_body = route != nullptr ? route->max_body : 0;
      auto length = parser.content_length();
      if (unsupported_transfer_coding(header[bhttp::field::transfer_encoding])) {
        if (route != nullptr) response = error(501, "unsupported_transfer_coding", "only chunked transfer coding is supported");
        route = nullptr;
        read_body = false;
      } else if (length && *length > max_body) {
        if (route != nullptr) response = error(413, "body_too_large", "request body too large");
        route = nullptr;
        read_body = false;  // never read what we will not accept
      } else {
        parser.body_limit(max_body);
      }
    }

    bool keep_alive = header.keep_alive();
    if (read_body && !parser.is_done()) {
      expires_after(beast::get_lowest_layer(stream), limits.read_timeout);
      auto [body_ec, m] = co_await bhttp::async_read(stream, buffer, parser, use_tuple);
      (void)m;
      if (body_ec == bhttp::error::body_limit) {
        if (route != nullptr) response = error(413, "body_too_large", "request body too large");
        route = nullptr;
        keep_alive = false;
      } else if (body_ec == bhttp::error::buffer_overflow) {
        // An endless chunk header or trailer: the read buffer is full.
        if (route != nullptr) response = error(400, "bad_request", "chunk header or trailer too long");
        route = nullptr;
        keep_alive = false;
      } else if (body_ec.category() == bhttp::make_error_code(bhttp::error::bad_chunk).category() &&
                 body_ec != bhttp::error::end_of_stream && body_ec != bhttp::error::partial_message) {
        // A malformed chunk or trailer: say so, then close.
        if (route != nullptr) response = error(400, "bad_request", "malformed request body");
        route = nullptr;
        keep_alive = false;
      } else if (body_ec) {
        break;  // the client went away or stalled; nothing was accepted
      }
    } else if (!read_body) {
      keep_alive = false;  // the unread body would be taken for the next request
    }

    if (route != nullptr) {
      for (const auto& field : parser.get()) {
        request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
      }
      request.body = std::move(parser.get().body());
      response = co_await handle(request, route);
    }

    if (options.metrics != nullptr) {
      // The route's pattern, never the path: ids stay out of label values.
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - started;
      options.metrics->http_requests.with({options.name, route_label, std::to_string(response.status)}).inc();
      options.metrics->http_duration.with({options.name, route_label}).observe(took.count());
    }
    keep_alive = keep_alive && !draining;
    const auto head = head_of(response, parser.get().version(), keep_alive);
    expires_after(beast::get_lowest_layer(stream), limits.read_timeout);
    auto [write_ec, w] =
        co_await net::async_write(stream, std::array<net::const_buffer, 2>{net::buffer(head), net::buffer(response.body)},
                                   use_tuple);
    (void)w;
    if (write_ec || !keep_alive) break;
  }
}

std::string Server::serve_for_testing(ServerOptions options, const Router& router, Logger& log,
                                      std::string_view input, std::size_t read_size) {
  net::io_context ioc;
  options.tls = {};  // the bytes are HTTP, never a TLS record
  auto impl = std::make_shared<Impl>(ioc, std::move(options), router, log, std::vector<net::io_context*>{});
  beast::test::stream stream(ioc);
  beast::test::stream client(ioc);
  stream.connect(client);
  if (read_size != 0) stream.read_size(read_size);
  stream.append(input);
  stream.close_remote();  // the client has sent everything and shut down its side
  std::atomic<bool> idle{true};
  const std::string remote = "test";
  std::exception_ptr failure;
  net::co_spawn(ioc, impl->exchange(idle, stream, remote), [&failure](std::exception_ptr e) { failure = e; });
  ioc.run();
  if (failure) std::rethrow_exception(failure);
  return std::string(client.str());
}

}  // namespace privacyd::http
