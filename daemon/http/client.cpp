#include "daemon/http/client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/url/parse.hpp>
#include <memory>
#include <stdexcept>
#include <strings.h>

namespace privacyd::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
namespace ssl = net::ssl;

std::string_view ClientResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
  }
  return {};
}

namespace {

constexpr std::uint32_t kMaxResponseHeader = 16 * 1024;

// Fails with a message naming the phase (never data): callers log it.
void check(const boost::system::error_code& ec, const char* doing, long long timeout_ms) {
  if (!ec) return;
  if (ec == beast::error::timeout) {
    throw std::runtime_error(std::string(doing) + " timed out after " + std::to_string(timeout_ms) + "ms");
  }
  throw std::runtime_error(std::string(doing) + " failed: " + ec.message());
}

// One request and its response over an open (plain or TLS) stream.
template <class Stream>
net::awaitable<ClientResponse> exchange(Stream& stream, const ClientRequest& request, const std::string& host_header,
                                        const std::string& target, long long timeout_ms) {
  bhttp::request<bhttp::string_body> out{bhttp::string_to_verb(request.method), target, 11};
  out.set(bhttp::field::host, host_header);
  out.set(bhttp::field::user_agent, "privacyd");
  for (const auto& [name, value] : request.headers) out.set(name, value);
  out.body() = request.body;
  out.keep_alive(false);
  out.prepare_payload();
  auto [write_ec, written] = co_await bhttp::async_write(stream, out, net::as_tuple(net::use_awaitable));
  (void)written;
  check(write_ec, "request", timeout_ms);

  // Bounded like the server's: a peer that sends an endless chunk
  // extension, trailer or header line fills this and the read fails,
  // instead of growing it until the deadline.
  beast::flat_buffer buffer(kMaxResponseHeader + 8 * 1024);
  bhttp::response_parser<bhttp::string_body> parser;
  parser.header_limit(kMaxResponseHeader);
  parser.body_limit(request.max_response_body);
  auto [read_ec, read] = co_await bhttp::async_read(stream, buffer, parser, net::as_tuple(net::use_awaitable));
  (void)read;
  check(read_ec, "response", timeout_ms);

  ClientResponse response;
  auto& in = parser.get();
  response.status = static_cast<int>(in.result_int());
  for (const auto& field : in) {
    response.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  response.body = std::move(in.body());
  co_return response;
}

}  // namespace

net::awaitable<ClientResponse> fetch(const ClientRequest& request) {
  auto url = boost::urls::parse_absolute_uri(request.url);
  const bool tls = url && url->scheme() == "https";
  if (!url || (url->scheme() != "http" && !tls) || url->host().empty()) {
    throw std::runtime_error("not an http:// or https:// URL");
  }
  // encoded_host_name() is empty for an IP address (it would resolve to
  // this machine): take the host as written, without brackets for IPv6.
  std::string host = url->host_type() == boost::urls::host_type::ipv6 ? std::string(url->host_address())
                                                                      : std::string(url->encoded_host());
  std::string port = url->has_port() ? std::string(url->port()) : (tls ? "443" : "80");
  std::string target(url->encoded_target());
  if (target.empty()) target = "/";
  const std::string host_header = url->has_port() ? host + ":" + port : host;
  const auto timeout_ms = std::chrono::duration_cast<std::chrono::milliseconds>(request.timeout).count();

  auto ex = co_await net::this_coro::executor;
  auto resolver = std::make_shared<tcp::resolver>(ex);
  // The deadline covers name resolution too: a resolver that never answers
  // is cancelled (getaddrinfo runs on Asio's own thread; its late answer is
  // dropped). The timer's handler may run after this frame is gone.
  net::steady_timer resolve_deadline(ex, request.timeout);
  resolve_deadline.async_wait([weak = std::weak_ptr<tcp::resolver>(resolver)](const boost::system::error_code& ec) {
    if (auto r = weak.lock(); r && !ec) r->cancel();
  });
  auto [resolve_ec, endpoints] = co_await resolver->async_resolve(host, port, net::as_tuple(net::use_awaitable));
  resolve_deadline.cancel();
  if (resolve_ec == net::error::operation_aborted) resolve_ec = beast::error::timeout;
  check(resolve_ec, "resolve", timeout_ms);

  if (!tls) {
    beast::tcp_stream stream(ex);
    stream.expires_after(request.timeout);  // one deadline for connect, write and read
    auto [connect_ec, ep] = co_await stream.async_connect(endpoints, net::as_tuple(net::use_awaitable));
    (void)ep;
    check(connect_ec, "connect", timeout_ms);
    auto response = co_await exchange(stream, request, host_header, target, timeout_ms);
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    co_return response;
  }

  // TLS: the system's trust store (SSL_CERT_FILE overrides it), the peer's
  // certificate must verify and name the host, SNI for host names.
  ssl::context context(ssl::context::tls_client);
  context.set_default_verify_paths();
  context.set_verify_mode(ssl::verify_peer);
  beast::ssl_stream<beast::tcp_stream> stream(ex, context);
  boost::system::error_code ip_ec;
  net::ip::make_address(host, ip_ec);
  // SSL_set_tlsext_host_name, spelt out: the macro casts C-style.
  if (ip_ec && SSL_ctrl(stream.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                        const_cast<char*>(host.c_str())) != 1) {
    throw std::runtime_error("TLS: cannot set the server name");
  }
  stream.set_verify_callback(ssl::host_name_verification(host));
  beast::get_lowest_layer(stream).expires_after(request.timeout);  // connect, handshake, write and read
  auto [connect_ec, ep] =
      co_await beast::get_lowest_layer(stream).async_connect(endpoints, net::as_tuple(net::use_awaitable));
  (void)ep;
  check(connect_ec, "connect", timeout_ms);
  auto [handshake_ec] = co_await stream.async_handshake(ssl::stream_base::client, net::as_tuple(net::use_awaitable));
  check(handshake_ec, "TLS handshake", timeout_ms);
  auto response = co_await exchange(stream, request, host_header, target, timeout_ms);
  auto [shutdown_ec] = co_await stream.async_shutdown(net::as_tuple(net::use_awaitable));
  (void)shutdown_ec;  // many servers close without a close_notify
  co_return response;
}

ClientResponse fetch_blocking(const ClientRequest& request) {
  net::io_context ioc;
  auto result = net::co_spawn(ioc, fetch(request), net::use_future);
  ioc.run();
  return result.get();
}

}  // namespace privacyd::http
