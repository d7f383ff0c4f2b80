// requests and notices: the operator's command line over the admin API
// (SPEC §8). A token comes from --token-file or PRIVACYD_TOKEN, never from
// an argument (arguments show in `ps`). Tables for people, --json for
// scripts. Exit 0: done; 1: the API refused (its message is printed);
// 2: the call could not be made.
#include <boost/json.hpp>
#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "daemon/cli/commands.hpp"
#include "daemon/config/config.hpp"
#include "daemon/http/client.hpp"

namespace privacyd::cli {

namespace json = boost::json;

namespace {

struct Failure {
  std::string message;
  int exit_code = 2;  // 1 when the API answered and refused
};

std::string read_token(const OperatorOptions& o) {
  std::string token;
  if (!o.token_file.empty()) {
    std::ifstream in(o.token_file, std::ios::binary);
    if (!in) throw Failure{"cannot read the token file " + o.token_file};
    std::getline(in, token);
  } else if (const char* env = std::getenv("PRIVACYD_TOKEN"); env != nullptr) {
    token = env;
  }
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.empty()) throw Failure{"no admin token: pass --token-file FILE or set PRIVACYD_TOKEN"};
  return token;
}

std::string base_url(const OperatorOptions& o) {
  if (!o.url.empty()) return o.url;
  if (!o.config_file.empty()) {
    auto loaded = load_config(o.config_file);
    if (!loaded.config) throw Failure{"cannot read " + o.config_file + " (run privacyd check)"};
    const auto& at = loaded.config->admin.listen;
    std::string host = at.host.find(':') != std::string::npos ? "[" + at.host + "]" : at.host;
    if (host == "0.0.0.0") host = "127.0.0.1";
    return "http://" + host + ":" + std::to_string(at.port);
  }
  return "http://127.0.0.1:8081";
}

// A query value or path segment, percent-encoded (Boost.URL).
std::string query_escape(std::string_view v) { return boost::urls::encode(v, boost::urls::unreserved_chars); }

json::value call(const OperatorOptions& o, const std::string& method, const std::string& path,
                 const json::object* body = nullptr) {
  http::ClientRequest request;
  request.method = method;
  request.url = base_url(o) + path;
  request.headers.emplace_back("Authorization", "Bearer " + read_token(o));
  request.headers.emplace_back("Accept", "application/json");
  if (body != nullptr) {
    request.headers.emplace_back("Content-Type", "application/json");
    request.body = json::serialize(*body);
  }
  request.timeout = std::chrono::seconds(60);
  request.max_response_body = 64 * 1024 * 1024;
  http::ClientResponse response;
  try {
    response = http::fetch_blocking(request);
  } catch (const std::exception& e) {
    throw Failure{std::string("cannot reach the admin API: ") + e.what()};
  }
  boost::system::error_code ec;
  auto parsed = json::parse(response.body, ec);
  if (response.status < 200 || response.status >= 300) {
    std::string message = "the admin API answered " + std::to_string(response.status);
    if (!ec && parsed.is_object()) {
      if (const auto* e = parsed.get_object().if_contains("error"); e != nullptr && e->is_object()) {
        if (const auto* m = e->get_object().if_contains("message"); m != nullptr && m->is_string()) {
          message += ": " + std::string(m->get_string());
        }
      }
      if (const auto* problems = parsed.get_object().if_contains("problems"); problems && problems->is_array()) {
        for (const auto& p : problems->get_array()) {
          const auto& d = p.as_object();
          message += "\n  " + std::string(d.at("path").as_string()) + ":" + json::serialize(d.at("line")) + ":" +
                     json::serialize(d.at("column")) + ": " + std::string(d.at("message").as_string());
        }
      }
    }
    throw Failure{message, 1};
  }
  if (ec) throw Failure{"the admin API answered with something that is not JSON"};
  return parsed;
}

std::string str(const json::value& v) {
  if (v.is_string()) return std::string(v.get_string());
  if (v.is_null()) return "-";
  return json::serialize(v);
}
std::string field(const json::value& o, std::string_view key) {
  const auto* v = o.as_object().if_contains(key);
  return v == nullptr ? "-" : str(*v);
}

// A partner notice's acknowledgement, in a word or two.
std::string ack_cell(const json::value& n) {
  const auto& o = n.as_object();
  if (const auto* a = o.if_contains("acknowledgement"); a != nullptr && a->is_object()) {
    return field(*a, "outcome") + " (" + field(*a, "by") + ")";
  }
  if (const auto* overdue = o.if_contains("overdue"); overdue != nullptr && overdue->is_bool() && overdue->get_bool()) {
    return "OVERDUE";
  }
  if (const auto* by = o.if_contains("acknowledge_by"); by != nullptr && by->is_string()) {
    return "due " + std::string(by->get_string()).substr(0, 10);
  }
  return "-";
}

// Columns as wide as their widest cell.
void print_table(const std::vector<std::string>& headings, const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(headings.size());
  for (std::size_t i = 0; i < headings.size(); ++i) width[i] = headings[i].size();
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < r.size() && i < width.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& cells) {
    for (std::size_t i = 0; i < cells.size(); ++i) {
      std::cout << (i == 0 ? "" : "  ") << std::left << std::setw(static_cast<int>(i + 1 == cells.size() ? 0 : width[i]))
                << cells[i];
    }
    std::cout << '\n';
  };
  line(headings);
  for (const auto& r : rows) line(r);
}

void print_request(const json::value& r) {
  std::cout << "request      " << field(r, "id") << '\n'
            << "type         " << field(r, "type") << '\n'
            << "status       " << field(r, "status");
  if (field(r, "reason") != "-") std::cout << " (" << field(r, "reason") << ")";
  std::cout << '\n' << "partner      " << field(r, "partner_id") << '\n'
            << "jurisdiction " << field(r, "jurisdiction") << '\n'
            << "received     " << field(r, "received_at") << '\n'
            << "deadline     " << field(r, "deadline");
  if (field(r, "days_left") != "-") std::cout << " (" << field(r, "days_left") << " days left)";
  if (r.at("overdue").as_bool()) std::cout << " OVERDUE";
  std::cout << '\n';
  if (const auto& e = r.at("extended"); e.is_object()) {
    std::cout << "extended     " << field(e, "at") << ": " << field(e, "reason") << '\n';
  }
  if (const auto& w = r.at("workflow"); w.is_object()) {
    std::cout << "workflow     " << field(w, "name") << " v" << field(w, "version") << '\n';
  }
  if (const auto* steps = r.as_object().if_contains("steps"); steps && !steps->as_array().empty()) {
    std::cout << '\n';
    std::vector<std::vector<std::string>> rows;
    for (const auto& s : steps->as_array()) {
      rows.push_back({field(s, "index"), field(s, "id"), field(s, "action"), field(s, "status"), field(s, "attempts"),
                      field(s, "error")});
    }
    print_table({"#", "STEP", "ACTION", "STATUS", "ATTEMPTS", "ERROR"}, rows);
  }
  if (const auto* notices = r.as_object().if_contains("notices"); notices && !notices->as_array().empty()) {
    std::cout << '\n';
    std::vector<std::vector<std::string>> rows;
    for (const auto& n : notices->as_array()) {
      rows.push_back({field(n, "id"), field(n, "channel"), field(n, "recipient"), field(n, "status"),
                      field(n, "attempts"), ack_cell(n), field(n, "last_error")});
    }
    print_table({"NOTICE", "CHANNEL", "TO", "STATUS", "ATTEMPTS", "ACK", "LAST ERROR"}, rows);
  }
}

void print_next(const json::value& page) {
  if (const auto& next = page.at("next_cursor"); next.is_string()) {
    std::cout << "\nmore: --cursor " << next.get_string() << '\n';
  }
}

// Runs one command, turning what went wrong into a message and an exit code.
int reporting(const std::function<int()>& command) {
  try {
    return command();
  } catch (const Failure& f) {
    std::cerr << f.message << '\n';
    return f.exit_code;
  } catch (const std::exception& e) {
    std::cerr << "unexpected answer from the admin API: " << e.what() << '\n';
    return 2;
  }
}

}  // namespace

int requests_command(const OperatorOptions& o) {
  return reporting([&o] {
    json::value result;
    if (o.action == "list") {
      std::string query = "?limit=" + std::to_string(o.limit);
      if (!o.status.empty()) query += "&status=" + query_escape(o.status);
      if (!o.type.empty()) query += "&type=" + query_escape(o.type);
      if (!o.cursor.empty()) query += "&cursor=" + query_escape(o.cursor);
      result = call(o, "GET", "/v1/requests" + query);
      if (o.json) {
        std::cout << json::serialize(result) << '\n';
        return 0;
      }
      std::vector<std::vector<std::string>> rows;
      for (const auto& r : result.at("requests").as_array()) {
        std::string left = field(r, "days_left");
        if (r.at("overdue").as_bool()) left += " OVERDUE";
        rows.push_back({field(r, "id"), field(r, "type"), field(r, "status"), field(r, "partner_id"),
                        field(r, "deadline"), left});
      }
      print_table({"REQUEST", "TYPE", "STATUS", "PARTNER", "DEADLINE", "DAYS LEFT"}, rows);
      print_next(result);
      return 0;
    }
    const std::string path = "/v1/requests/" + query_escape(o.id);
    if (o.action == "show") {
      result = call(o, "GET", path);
    } else if (o.action == "reject" || o.action == "extend") {
      json::object body{{"reason", o.reason}};
      if (o.action == "extend" && o.days > 0) body["days"] = o.days;
      result = call(o, "POST", path + "/" + o.action, &body);
    } else {
      result = call(o, "POST", path + "/" + o.action);
    }
    if (o.json) {
      std::cout << json::serialize(result) << '\n';
    } else {
      print_request(result);
    }
    return 0;
  });
}

int notices_command(const OperatorOptions& o) {
  return reporting([&o] {
    json::value result;
    if (o.action == "list") {
      std::string query = "?limit=" + std::to_string(o.limit);
      if (!o.status.empty()) query += "&status=" + query_escape(o.status);
      if (!o.cursor.empty()) query += "&cursor=" + query_escape(o.cursor);
      if (o.unacknowledged) query += "&acknowledged=false";
      if (o.overdue) query += "&overdue=true";
      result = call(o, "GET", "/v1/notices" + query);
      if (o.json) {
        std::cout << json::serialize(result) << '\n';
        return 0;
      }
      std::vector<std::vector<std::string>> rows;
      for (const auto& n : result.at("notices").as_array()) {
        rows.push_back({field(n, "id"), field(n, "request_id"), field(n, "channel"), field(n, "recipient"),
                        field(n, "status"), field(n, "attempts"), ack_cell(n), field(n, "last_error")});
      }
      print_table({"NOTICE", "REQUEST", "CHANNEL", "TO", "STATUS", "ATTEMPTS", "ACK", "LAST ERROR"}, rows);
      print_next(result);
      return 0;
    }
    if (o.action == "acknowledge") {
      json::object body{{"outcome", o.outcome}};
      if (!o.reason.empty()) body["note"] = o.reason;
      result = call(o, "POST", "/v1/notices/" + query_escape(o.id) + "/acknowledge", &body);
    } else {
      result = call(o, "POST", "/v1/notices/" + query_escape(o.id) + "/retry");
    }
    if (o.json) {
      std::cout << json::serialize(result) << '\n';
    } else if (o.action == "acknowledge") {
      std::cout << field(result, "id") << ": " << ack_cell(result) << '\n';
    } else {
      std::cout << field(result, "id") << ": " << field(result, "status") << '\n';
    }
    return 0;
  });
}

}  // namespace privacyd::cli
