#include "daemon/intake/event.hpp"

#include <algorithm>
#include <boost/json.hpp>

namespace privacyd::intake {

namespace json = boost::json;

std::string_view type_name(EventType t) {
  switch (t) {
    case EventType::association_created: return "association.created";
    case EventType::data_disclosed: return "data.disclosed";
    case EventType::request_access: return "request.access";
    case EventType::request_deletion: return "request.deletion";
    case EventType::request_disassociation: return "request.disassociation";
  }
  return "";
}

bool is_request(EventType t) {
  return t == EventType::request_access || t == EventType::request_deletion || t == EventType::request_disassociation;
}

namespace {

struct Problem {
  FieldProblem value;
};

[[noreturn]] void fail(std::string code, std::string message, std::string field) {
  throw Problem{{std::move(code), std::move(message), std::move(field)}};
}

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

// Which characters a field may hold.
enum class Charset { text, identifier, category, phone, locale };

bool allowed(Charset cs, unsigned char c) {
  auto alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  switch (cs) {
    case Charset::text: return !is_control(c);
    case Charset::identifier: return alnum || c == '-' || c == '_' || c == '.' || c == ':' || c == '@';
    case Charset::category: return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    case Charset::phone: return (c >= '0' && c <= '9') || c == '+' || c == ' ' || c == '-' || c == '(' || c == ')' || c == '.';
    case Charset::locale: return alnum || c == '-' || c == '_';
  }
  return false;
}

std::optional<std::string> text_field(const json::object& obj, std::string_view key, const std::string& path,
                                      std::size_t max_len, Charset cs, bool required) {
  const json::value* v = obj.if_contains(key);
  if (v == nullptr || v->is_null()) {
    if (required) fail("missing_field", "required field is missing", path);
    return std::nullopt;
  }
  if (!v->is_string()) fail("invalid_field", "must be a string", path);
  const json::string& s = v->get_string();
  if (s.empty()) fail("invalid_field", "must not be empty", path);
  if (s.size() > max_len) fail("invalid_field", "longer than " + std::to_string(max_len) + " bytes", path);
  for (char c : s) {
    if (!allowed(cs, static_cast<unsigned char>(c))) fail("invalid_field", "contains characters not allowed here", path);
  }
  return std::string(s);
}

const json::object* object_field(const json::object& obj, std::string_view key, const std::string& path,
                                 bool required) {
  const json::value* v = obj.if_contains(key);
  if (v == nullptr || v->is_null()) {
    if (required) fail("missing_field", "required field is missing", path);
    return nullptr;
  }
  if (!v->is_object()) fail("invalid_field", "must be an object", path);
  return &v->get_object();
}

EventType parse_type(const json::object& body) {
  auto name = text_field(body, "type", "type", 64, Charset::identifier, true);
  static constexpr EventType all[] = {EventType::association_created, EventType::data_disclosed,
                                      EventType::request_access, EventType::request_deletion,
                                      EventType::request_disassociation};
  for (auto t : all) {
    if (type_name(t) == *name) return t;
  }
  fail("unknown_type", "unknown event type", "type");
}

WebhookEvent parse_body(const json::object& body, const EventLimits& limits) {
  WebhookEvent e;
  e.type = parse_type(body);

  auto occurred = text_field(body, "occurred_at", "occurred_at", 40, Charset::text, true);
  auto when = parse_rfc3339(*occurred);
  if (!when) fail("invalid_field", "must be an RFC 3339 timestamp", "occurred_at");
  e.occurred_at = *when;

  const json::object* subject = object_field(body, "subject", "subject", true);
  e.subject.huawei_id = *text_field(*subject, "huawei_id", "subject.huawei_id", 128, Charset::text, true);
  e.subject.account_name = text_field(*subject, "account_name", "subject.account_name", 256, Charset::text, false);
  e.subject.name = text_field(*subject, "name", "subject.name", 256, Charset::text, false);
  e.subject.email = text_field(*subject, "email", "subject.email", 254, Charset::text, false);
  if (e.subject.email) {
    auto at = e.subject.email->find('@');
    if (at == std::string::npos || at == 0 || at + 1 == e.subject.email->size() ||
        e.subject.email->find(' ') != std::string::npos) {
      fail("invalid_field", "must be an email address", "subject.email");
    }
  }
  e.subject.phone = text_field(*subject, "phone", "subject.phone", 32, Charset::phone, false);
  e.subject.locale = text_field(*subject, "locale", "subject.locale", 35, Charset::locale, false);

  bool needs_partner = e.type == EventType::association_created || e.type == EventType::data_disclosed ||
                       e.type == EventType::request_disassociation;
  if (const json::object* partner = object_field(body, "partner", "partner", needs_partner)) {
    e.partner_id = text_field(*partner, "id", "partner.id", 64, Charset::identifier, needs_partner);
  }

  if (const json::value* cats = body.if_contains("categories"); cats != nullptr && !cats->is_null()) {
    if (!cats->is_array()) fail("invalid_field", "must be an array of category names", "categories");
    const auto& array = cats->get_array();
    if (array.size() > limits.max_categories) {
      fail("invalid_field", "more than " + std::to_string(limits.max_categories) + " categories", "categories");
    }
    std::vector<std::string> list;
    for (std::size_t i = 0; i < array.size(); ++i) {
      std::string path = "categories[" + std::to_string(i) + "]";
      if (!array[i].is_string()) fail("invalid_field", "must be a category name", path);
      const auto& s = array[i].get_string();
      if (s.empty() || s.size() > 64) fail("invalid_field", "must be 1 to 64 characters", path);
      for (char c : s) {
        if (!allowed(Charset::category, static_cast<unsigned char>(c))) fail("invalid_field", "must be lower case letters, digits and _", path);
      }
      if (std::find(list.begin(), list.end(), s) == list.end()) list.emplace_back(s);
    }
    e.categories = std::move(list);
  }
  if (e.type == EventType::data_disclosed && (!e.categories || e.categories->empty())) {
    fail("missing_field", "data.disclosed needs at least one category", "categories");
  }

  e.statement_version = text_field(body, "statement_version", "statement_version", 32, Charset::identifier,
                                   e.type == EventType::association_created);
  e.jurisdiction = text_field(body, "jurisdiction", "jurisdiction", 16, Charset::locale, false);
  return e;
}

}  // namespace

std::variant<WebhookEvent, FieldProblem> parse_event(std::string_view body, const EventLimits& limits) {
  json::parse_options options;
  options.max_depth = limits.max_depth;
  boost::system::error_code ec;
  json::value root = json::parse(body, ec, {}, options);
  if (ec) return FieldProblem{"malformed_json", "the body is not valid JSON", ""};
  if (!root.is_object()) return FieldProblem{"malformed_json", "the body must be a JSON object", ""};
  try {
    return parse_body(root.get_object(), limits);
  } catch (const Problem& p) {
    return p.value;
  }
}

}  // namespace privacyd::intake
