#pragma once
// A small HTTP/1.1 client for privacyd's own outgoing calls (the trigger
// command, partner notices, webhook.call). Bounded: a total deadline and a
// cap on the response body.

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <string>

#include "daemon/base/units.hpp"
#include "daemon/http/message.hpp"

namespace privacyd::http {

struct ClientRequest {
  std::string method = "POST";
  std::string url;  // http:// or https://host:port/path (TLS verifies the certificate and the host name)
  Headers headers;
  std::string body;
  Duration timeout = std::chrono::seconds(30);
  std::uint64_t max_response_body = 1024 * 1024;
};

struct ClientResponse {
  int status = 0;
  Headers headers;
  std::string body;
  std::string_view header(std::string_view name) const;
};

// Throws std::runtime_error for a bad URL, a connection failure or the
// deadline passing, with a message that says which.
// `request` must outlive the co_await (it is a reference because GCC 12 may
// destroy a coroutine's by-value parameters twice).
boost::asio::awaitable<ClientResponse> fetch(const ClientRequest& request);

// Whether an answer is worth retrying later: 408, 429 and 5xx (SPEC §7).
inline bool retryable_status(int status) { return status == 408 || status == 429 || status >= 500; }

// For command-line tools: runs its own event loop.
ClientResponse fetch_blocking(const ClientRequest& request);

}  // namespace privacyd::http
