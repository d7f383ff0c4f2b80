#pragma once
// privacyd's own view of an HTTP exchange, so that handlers never include
// Beast: only daemon/http/server.cpp does.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace privacyd::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method;
  std::string target;  // as sent: path and query
  std::string path;    // decoded path, without the query
  std::string query;
  Headers headers;
  std::string body;
  std::string remote;  // peer address, for logs
  std::vector<std::pair<std::string, std::string>> params;  // from route patterns like {id}

  // Case-insensitive header lookup; "" when absent.
  std::string_view header(std::string_view name) const;
  std::string_view param(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  Headers headers;

  static Response json(int status, std::string body) { return Response{status, "application/json", std::move(body), {}}; }
  static Response text(int status, std::string body) {
    return Response{status, "text/plain; charset=utf-8", std::move(body), {}};
  }
};

// {"error": {"code": …, "message": …[, "field": …]}} — messages name the
// problem, never echo personal data.
Response error(int status, std::string_view code, std::string_view message, std::string_view field = {});

}  // namespace privacyd::http
