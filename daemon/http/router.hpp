#pragma once
// Maps (method, path pattern) to a coroutine handler. Patterns are literal
// segments and `{name}` captures: "/v1/requests/{id}/approve".

#include <boost/asio/awaitable.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "daemon/http/message.hpp"

namespace privacyd::http {

using Handler = std::function<boost::asio::awaitable<Response>(Request&)>;

struct Route {
  std::string method;
  std::vector<std::string> segments;
  Handler handler;
  std::uint64_t max_body = 0;  // bytes of request body this route accepts
  std::string pattern;          // for metrics labels: never the raw path
};

class Router {
 public:
  void add(std::string method, std::string_view pattern, Handler handler, std::uint64_t max_body = 0);

  struct Match {
    const Route* route = nullptr;
    bool wrong_method = false;  // the path exists under another method
    std::vector<std::pair<std::string, std::string>> params;
  };
  Match match(std::string_view method, std::string_view path) const;

 private:
  std::vector<Route> routes_;
};

}  // namespace privacyd::http
