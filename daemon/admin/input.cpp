#include "daemon/admin/input.hpp"

#include "daemon/base/text.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <boost/url/parse_query.hpp>
#include <charconv>
#include <stdexcept>

namespace privacyd::admin {

namespace json = boost::json;
using http::Request;
using http::Response;

void refuse_input(int status, std::string_view code, std::string_view message, std::string_view field) {
  throw Refusal{http::error(status, code, message, field)};
}

bool valid_id(std::string_view id, std::string_view prefix) {
  if (!id.starts_with(prefix) || id.size() == prefix.size() || id.size() > prefix.size() + 40) return false;
  for (char c : id.substr(prefix.size())) {
    if (!std::isalnum(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// The query's parameters; unknown or repeated names are refused, so a typo
// never silently lists everything.
std::map<std::string, std::string> query_params(std::string_view query, std::initializer_list<std::string_view> known) {
  std::map<std::string, std::string> out;
  if (query.empty()) return out;
  auto parsed = boost::urls::parse_query(query);
  if (!parsed) refuse_input(400, "invalid_query", "the query string is malformed");
  for (auto p : *parsed) {
    std::string key = p.key.decode();
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      refuse_input(400, "unknown_parameter", "unknown query parameter", key.size() <= 32 ? key : key.substr(0, 32));
    }
    if (!out.emplace(key, p.has_value ? p.value.decode() : std::string()).second) {
      refuse_input(400, "invalid_query", "a query parameter is given twice", key);
    }
  }
  return out;
}

std::string one_of(const std::map<std::string, std::string>& q, const std::string& name,
                   const std::vector<std::string>& allowed) {
  auto it = q.find(name);
  if (it == q.end() || it->second.empty()) return {};
  if (std::find(allowed.begin(), allowed.end(), it->second) == allowed.end()) {
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
    refuse_input(400, "invalid_parameter", name + " is one of: " + list, name);
  }
  return it->second;
}

int limit_of(const std::map<std::string, std::string>& q) {
  auto it = q.find("limit");
  if (it == q.end() || it->second.empty()) return 50;
  int n = 0;
  auto [end, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), n);
  if (ec != std::errc() || end != it->second.data() + it->second.size() || n < 1 || n > kMaxLimit) {
    refuse_input(400, "invalid_parameter", "limit is a whole number from 1 to 500", "limit");
  }
  return n;
}

std::string cursor_of(const std::map<std::string, std::string>& q, std::string_view prefix) {
  auto it = q.find("cursor");
  if (it == q.end() || it->second.empty()) return {};
  if (!valid_id(it->second, prefix)) refuse_input(400, "invalid_parameter", "cursor is not one this API gave", "cursor");
  return it->second;
}

// The body of an action: a JSON object with only `known` members (an empty
// body is an empty object).
json::object action_body(const Request& r, std::initializer_list<std::string_view> known) {
  if (r.body.empty()) return {};
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 4;
  auto value = json::parse(r.body, ec, {}, options);
  if (ec || !value.is_object()) refuse_input(400, "malformed_json", "the body must be a JSON object");
  for (const auto& [key, v] : value.get_object()) {
    if (std::find(known.begin(), known.end(), std::string_view(key)) == known.end()) {
      refuse_input(400, "unknown_field", "unknown field", key.size() <= 32 ? std::string_view(key) : "");
    }
  }
  return std::move(value.get_object());
}

// Why an operator acted: told to the person on a rejection, kept in the
// audit trail. Plain text, one to 500 bytes, no control characters.
std::string reason_of(const json::object& body) {
  const auto* v = body.if_contains("reason");
  if (v == nullptr || !v->is_string()) refuse_input(400, "missing_field", "a reason is required", "reason");
  std::string reason(v->get_string());
  while (!reason.empty() && reason.back() == ' ') reason.pop_back();
  while (!reason.empty() && reason.front() == ' ') reason.erase(0, 1);
  if (reason.empty() || reason.size() > kMaxReason) {
    refuse_input(400, "invalid_field", "the reason is 1 to 500 bytes of text", "reason");
  }
  if (!readable_text(reason)) refuse_input(400, "invalid_field", "the reason must be readable text", "reason");
  for (char c : reason) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) refuse_input(400, "invalid_field", "the reason may not hold control characters", "reason");
  }
  return reason;
}

std::string request_id_of(const Request& r) {
  std::string id(r.param("id"));
  if (!valid_id(id, "req_")) refuse_input(404, "not_found", "no such request");
  return id;
}

Response json_response(const json::value& v) { return Response::json(200, json::serialize(v)); }

// Why an action could not be taken on a request in its present state.
Response wrong_status(std::string_view wanted, std::string_view status) {
  return http::error(409, "wrong_status", "the request is " + std::string(status) + ", not " + std::string(wanted));
}

}  // namespace privacyd::admin
