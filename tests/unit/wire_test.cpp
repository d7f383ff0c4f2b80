#include <catch2/catch.hpp>

#include <cstdio>

#include "daemon/http/server.hpp"

// What privacyd writes on the wire, byte for byte: the status line and
// fields in Beast's order, the keep-alive rules of HTTP/1.0 and 1.1, and
// fields a handler got wrong.
using namespace privacyd;

namespace {

boost::asio::awaitable<http::Response> ok(http::Request&) { co_return http::Response::json(200, "{}"); }

boost::asio::awaitable<http::Response> fields(http::Request&) {
  auto r = http::Response::text(200, "x");
  r.headers.emplace_back("X-Twice", "first");
  r.headers.emplace_back("Cache-Control", "no-store");
  r.headers.emplace_back("x-twice", "second");
  r.headers.emplace_back("X-Split", "a\r\nSet-Cookie: b");
  co_return r;
}

boost::asio::awaitable<http::Response> nothing(http::Request& request) {
  // With a body the handler should not have given, and without.
  co_return http::Response::json(204, request.query.empty() ? "" : "{\"dropped\":true}");
}

// Fields that are the server's to set: a handler's are dropped (framing)
// or win (Server), never sent twice.
boost::asio::awaitable<http::Response> framing(http::Request&) {
  auto r = http::Response::text(200, "abc");
  r.headers.emplace_back("Content-Length", "1");
  r.headers.emplace_back("transfer-encoding", "chunked");
  r.headers.emplace_back("Connection", "upgrade");
  r.headers.emplace_back("Server", "other");
  r.headers.emplace_back("X-Padded", " \tv \t");
  co_return r;
}

boost::asio::awaitable<http::Response> interim(http::Request&) { co_return http::Response::json(103, "{}"); }

std::string serve(std::string_view input) {
  static Logger log(std::fopen("/dev/null", "w"), LogLevel::error, false);
  static const http::Router router = [] {
    http::Router r;
    r.add("GET", "/ok", ok);
    r.add("GET", "/fields", fields);
    r.add("GET", "/nothing", nothing);
    r.add("GET", "/framing", framing);
    r.add("GET", "/interim", interim);
    return r;
  }();
  http::ServerOptions options;
  options.name = "test";
  options.endpoint = {"127.0.0.1", 0};
  return http::Server::serve_for_testing(options, router, log, input);
}

}  // namespace

TEST_CASE("an HTTP/1.1 response keeps the connection unless asked to close", "[http]") {
  CHECK(serve("GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n") ==
        "HTTP/1.1 200 OK\r\nServer: privacyd\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        "HTTP/1.1 200 OK\r\nServer: privacyd\r\nContent-Type: application/json\r\nConnection: close\r\n"
        "Content-Length: 2\r\n\r\n{}");
}

TEST_CASE("an HTTP/1.0 response says keep-alive only when asked, and closes otherwise", "[http]") {
  CHECK(serve("GET /ok HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /ok HTTP/1.0\r\n\r\nGET /ok HTTP/1.0\r\n\r\n") ==
        "HTTP/1.0 200 OK\r\nServer: privacyd\r\nContent-Type: application/json\r\nConnection: keep-alive\r\n"
        "Content-Length: 2\r\n\r\n{}"
        "HTTP/1.0 200 OK\r\nServer: privacyd\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
}

TEST_CASE("a handler's fields: the last of a name wins, and CR or LF never starts a field", "[http]") {
  CHECK(serve("GET /fields HTTP/1.1\r\nConnection: close\r\n\r\n") ==
        "HTTP/1.1 200 OK\r\nServer: privacyd\r\nContent-Type: text/plain; charset=utf-8\r\n"
        "Cache-Control: no-store\r\nx-twice: second\r\nX-Split: a  Set-Cookie: b\r\nConnection: close\r\n"
        "Content-Length: 1\r\n\r\nx");
}

TEST_CASE("the framing is the server's: a handler's length, coding and connection fields are dropped", "[http]") {
  CHECK(serve("GET /framing HTTP/1.1\r\nConnection: close\r\n\r\n") ==
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nServer: other\r\nX-Padded: v\r\n"
        "Connection: close\r\nContent-Length: 3\r\n\r\nabc");
}

TEST_CASE("an interim status from a handler is a 500: the client would wait for a final one", "[http]") {
  CHECK(serve("GET /interim HTTP/1.1\r\nConnection: close\r\n\r\n")
            .starts_with("HTTP/1.1 500 Internal Server Error\r\nServer: privacyd\r\n"));
}

TEST_CASE("a 204 carries neither a body nor a length", "[http]") {
  CHECK(serve("GET /nothing HTTP/1.1\r\n\r\nGET /nothing?body HTTP/1.1\r\n\r\n"
              "GET /ok HTTP/1.1\r\nConnection: close\r\n\r\n") ==
        "HTTP/1.1 204 No Content\r\nServer: privacyd\r\nContent-Type: application/json\r\n\r\n"
        "HTTP/1.1 204 No Content\r\nServer: privacyd\r\nContent-Type: application/json\r\n\r\n"
        "HTTP/1.1 200 OK\r\nServer: privacyd\r\nContent-Type: application/json\r\nConnection: close\r\n"
        "Content-Length: 2\r\n\r\n{}");
}

TEST_CASE("errors the server writes itself go out the same way", "[http]") {
  const std::string out = serve("GET /missing HTTP/1.1\r\nConnection: close\r\n\r\n");
  CHECK(out.starts_with("HTTP/1.1 404 Not Found\r\nServer: privacyd\r\nContent-Type: application/json\r\n"
                        "Connection: close\r\nContent-Length: "));
  const std::string bad = serve("GET /ok HTTP/1.1\r\nBad Field\r\n\r\n");
  CHECK(bad.starts_with("HTTP/1.1 400 Bad Request\r\nServer: privacyd\r\n"));
  CHECK(bad.find("Connection: close\r\n") != std::string::npos);
}
