#pragma once
// What every admin endpoint does with what a caller sent: query strings,
// JSON bodies, ids and reasons are checked here, and bad input is answered
// at once (a Refusal, thrown and turned into its response by the guard).

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/http/message.hpp"

namespace privacyd::admin {

inline constexpr std::uint64_t kMaxActionBody = 4096;
inline constexpr std::size_t kMaxReason = 500;
inline constexpr int kMaxLimit = 500;
inline constexpr std::int64_t kDayMs = 24LL * 3600 * 1000;

// Bad input, answered at once with `response`.
struct Refusal {
  http::Response response;
};
[[noreturn]] void refuse_input(int status, std::string_view code, std::string_view message,
                               std::string_view field = {});

bool valid_id(std::string_view id, std::string_view prefix);
// The query's parameters; unknown or repeated names are refused, so a typo
// never silently lists everything.
std::map<std::string, std::string> query_params(std::string_view query, std::initializer_list<std::string_view> known);
std::string one_of(const std::map<std::string, std::string>& q, const std::string& name,
                   const std::vector<std::string>& allowed);
int limit_of(const std::map<std::string, std::string>& q);
std::string cursor_of(const std::map<std::string, std::string>& q, std::string_view prefix);
// The body of an action: a JSON object with only `known` members (an empty
// body is an empty object).
boost::json::object action_body(const http::Request& r, std::initializer_list<std::string_view> known);
// Why an operator acted: plain text, one to 500 bytes, no control characters.
std::string reason_of(const boost::json::object& body);
std::string request_id_of(const http::Request& r);
http::Response json_response(const boost::json::value& v);
// Why an action could not be taken on a request in its present state.
http::Response wrong_status(std::string_view wanted, std::string_view status);

}  // namespace privacyd::admin
