// Fuzzes what any client of either listener controls: the raw bytes of a
// connection. They go through the server's own exchange (Beast's parser
// with privacyd's header limit, the bounded read buffer, the routes' body
// limits, the 400/405/404/413/431/501 decisions, keep-alive and
// pipelining) on an in-memory stream, to a router with a few routes.
//
// Beyond "no crash, hang, leak or undefined behaviour", it checks that
//   - a handler never sees a body larger than its route's limit,
//   - what the server writes back is a sequence of well-formed responses
//     with known statuses, nothing after one that says Connection: close,
//   - the answers do not depend on how the bytes were split into reads
//     (but for which fault a refused header is refused for; see below).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/beast/_experimental/test/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "daemon/base/log.hpp"
#include "daemon/http/server.hpp"
#include "daemon/metrics/metrics.hpp"

namespace {

namespace http = privacyd::http;
namespace beast = boost::beast;
namespace bhttp = beast::http;

constexpr std::uint64_t kEchoMaxBody = 64 * 1024;
constexpr std::uint64_t kItemMaxBody = 16;

[[noreturn]] void fail(const char* what, std::string_view input, std::string_view output) {
  std::fprintf(stderr, "http_fuzz: %s\n--- input (%zu bytes)\n%.*s\n--- output (%zu bytes)\n%.*s\n", what,
               input.size(), static_cast<int>(input.size()), input.data(), output.size(),
               static_cast<int>(output.size()), output.data());
  std::abort();
}

boost::asio::awaitable<http::Response> echo(http::Request& request) {
  if (request.body.size() > kEchoMaxBody) std::abort();  // the route's limit was not applied
  co_return http::Response::text(200, std::to_string(request.body.size()));
}

boost::asio::awaitable<http::Response> item(http::Request& request) {
  if (request.body.size() > kItemMaxBody) std::abort();
  auto id = request.param("id");
  // A handler that throws is answered 500 by the server.
  if (id == "boom") throw std::runtime_error("handler failed");
  co_return http::Response::json(200, "{\"id_length\":" + std::to_string(id.size()) + "}");
}

const http::Router& router() {
  static const http::Router r = [] {
    http::Router out;
    out.add("POST", "/v1/echo", echo, kEchoMaxBody);
    out.add("GET", "/v1/items/{id}", item);
    out.add("PUT", "/v1/items/{id}", item, kItemMaxBody);
    return out;
  }();
  return r;
}

http::ServerOptions options() {
  static privacyd::metrics::Registry registry;
  static privacyd::metrics::Metrics metrics(registry);
  http::ServerOptions o;
  o.name = "fuzz";
  o.endpoint = {"127.0.0.1", 0};
  // privacyd's limits, with a header limit small enough for the fuzzer's
  // inputs to reach it (the read buffer is this plus the server's slack).
  o.limits.max_header = 1024;
  o.metrics = &metrics;
  return o;
}

bool known_status(unsigned status) {
  switch (status) {
    case 200: case 400: case 404: case 405: case 413: case 431: case 500: case 501:
      return true;
    default:
      return false;
  }
}

struct Answer {
  unsigned status;
  std::string_view bytes;  // the whole response as written
};

// Reads `output` back as responses; fails on anything malformed.
std::vector<Answer> responses(std::string_view input, std::string_view output) {
  std::vector<Answer> out;
  boost::asio::io_context ioc;
  beast::test::stream stream(ioc, output);
  stream.close_remote();  // a truncated response ends in an error, not a wait
  beast::flat_buffer buffer;
  std::size_t start = 0;
  bool closed = false;
  while (stream.nread_bytes() < output.size() || buffer.size() > 0) {
    if (closed) fail("bytes after a response with Connection: close", input, output);
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(boost::none);
    beast::error_code ec;
    bhttp::read(stream, buffer, parser, ec);
    if (ec) fail(("malformed response: " + ec.message()).c_str(), input, output);
    const auto& response = parser.get();
    if (!known_status(response.result_int())) fail("unexpected status", input, output);
    const std::size_t end = stream.nread_bytes() - buffer.size();
    out.push_back({response.result_int(), output.substr(start, end - start)});
    start = end;
    closed = !response.keep_alive();
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static privacyd::Logger log(std::fopen("/dev/null", "w"), privacyd::LogLevel::error, false);
  static const http::ServerOptions opts = options();
  std::string_view input(reinterpret_cast<const char*>(data), size);

  const std::string whole = http::Server::serve_for_testing(opts, router(), log, input);
  const auto answers = responses(input, whole);

  // The same bytes in pieces, as TCP may deliver them, get the same
  // answers, but for one of Beast's: when a header has several faults
  // (malformed: 400, a huge Content-Length: 413, over the limit: 431),
  // which it refuses it for depends on how the bytes came in (at once,
  // Beast parses fields as it goes; in pieces, it first waits for the
  // header's end, and may never see it). So a last answer that refuses a
  // request may differ or be missing; every answer before it may not.
  const std::size_t piece = size == 0 ? 1 : 1 + data[size - 1] % 64;
  const std::string split = http::Server::serve_for_testing(opts, router(), log, input, piece);
  auto split_answers = responses(input, split);
  auto whole_answers = answers;
  for (auto* list : {&whole_answers, &split_answers}) {
    const unsigned last = list->empty() ? 0 : list->back().status;
    if (last == 400 || last == 413 || last == 431) list->pop_back();
  }
  bool same = whole_answers.size() == split_answers.size();
  for (std::size_t i = 0; same && i < whole_answers.size(); ++i) same = whole_answers[i].bytes == split_answers[i].bytes;
  if (!same) fail(("reads of " + std::to_string(piece) + " bytes gave another answer: " + split).c_str(), input, whole);
  return 0;
}
