#include "daemon/http/client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <stdexcept>
#include <strings.h>

namespace privacyd::http {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;

std::string_view ClientResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
  }
  return {};
}

net::awaitable<ClientResponse> fetch(const ClientRequest& request) {
  auto url = boost::urls::parse_absolute_uri(request.url);
  if (!url || url->scheme() != "http" || url->host().empty()) {
    throw std::runtime_error("not an http:// URL");
  }
  std::string host(url->encoded_host_name());
  if (url->host_type() == boost::urls::host_type::ipv6) host = std::string(url->host_address());
  std::string port = url->has_port() ? std::string(url->port()) : "80";
  std::string target(url->encoded_target());
  if (target.empty()) target = "/";

  auto ex = co_await net::this_coro::executor;
  tcp::resolver resolver(ex);
  beast::tcp_stream stream(ex);
  const auto timeout_ms = std::chrono::duration_cast<std::chrono::milliseconds>(request.timeout).count();
  // One message per way of failing, naming no data: callers log it.
  auto check = [&](const boost::system::error_code& ec, const char* doing) {
    if (!ec) return;
    if (ec == beast::error::timeout) {
      throw std::runtime_error(std::string(doing) + " timed out after " + std::to_string(timeout_ms) + "ms");
    }
    throw std::runtime_error(std::string(doing) + " failed: " + ec.message());
  };
  stream.expires_after(request.timeout);  // one deadline for connect, write and read
  auto [resolve_ec, endpoints] = co_await resolver.async_resolve(host, port, net::as_tuple(net::use_awaitable));
  check(resolve_ec, "resolve");
  auto [connect_ec, ep] = co_await stream.async_connect(endpoints, net::as_tuple(net::use_awaitable));
  (void)ep;
  check(connect_ec, "connect");

  bhttp::request<bhttp::string_body> out{bhttp::string_to_verb(request.method), target, 11};
  out.set(bhttp::field::host, url->has_port() ? host + ":" + port : host);
  out.set(bhttp::field::user_agent, "privacyd");
  for (auto& [name, value] : request.headers) out.set(name, value);
  out.body() = request.body;
  out.keep_alive(false);
  out.prepare_payload();
  auto [write_ec, written] = co_await bhttp::async_write(stream, out, net::as_tuple(net::use_awaitable));
  (void)written;
  check(write_ec, "request");

  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(request.max_response_body);
  auto [read_ec, read] = co_await bhttp::async_read(stream, buffer, parser, net::as_tuple(net::use_awaitable));
  (void)read;
  check(read_ec, "response");

  ClientResponse response;
  auto& in = parser.get();
  response.status = static_cast<int>(in.result_int());
  for (const auto& field : in) {
    response.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  response.body = std::move(in.body());
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  co_return response;
}

ClientResponse fetch_blocking(const ClientRequest& request) {
  net::io_context ioc;
  auto result = net::co_spawn(ioc, fetch(request), net::use_future);
  ioc.run();
  return result.get();
}

}  // namespace privacyd::http
