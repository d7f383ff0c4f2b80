#include "daemon/http/router.hpp"

#include <boost/json.hpp>
#include <strings.h>

namespace privacyd::http {

std::string_view Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) return v;
  }
  return {};
}

std::string_view Request::param(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) return v;
  }
  return {};
}

Response error(int status, std::string_view code, std::string_view message, std::string_view field) {
  boost::json::object inner{{"code", code}, {"message", message}};
  if (!field.empty()) inner["field"] = field;
  return Response::json(status, boost::json::serialize(boost::json::object{{"error", std::move(inner)}}));
}

namespace {
std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos < path.size()) {
    if (path[pos] == '/') {
      ++pos;
      continue;
    }
    auto end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    out.emplace_back(path.substr(pos, end - pos));
    pos = end;
  }
  return out;
}
}  // namespace

void Router::add(std::string method, std::string_view pattern, Handler handler, std::uint64_t max_body) {
  routes_.push_back(Route{std::move(method), split_path(pattern), std::move(handler), max_body, std::string(pattern)});
}

Router::Match Router::match(std::string_view method, std::string_view path) const {
  Match result;
  auto segments = split_path(path);
  for (const auto& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    std::vector<std::pair<std::string, std::string>> params;
    bool ok = true;
    for (std::size_t i = 0; i < segments.size() && ok; ++i) {
      const auto& want = route.segments[i];
      if (want.size() > 2 && want.front() == '{' && want.back() == '}') {
        params.emplace_back(want.substr(1, want.size() - 2), segments[i]);
      } else {
        ok = want == segments[i];
      }
    }
    if (!ok) continue;
    if (route.method != method) {
      result.wrong_method = true;
      continue;
    }
    result.route = &route;
    result.params = std::move(params);
    result.wrong_method = false;
    return result;
  }
  return result;
}

}  // namespace privacyd::http
