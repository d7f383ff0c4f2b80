#pragma once
// The Partner Center's webhook body (SPEC §3), parsed and validated. Every
// field is bounded; a problem names the field and never echoes its value,
// which may be personal data.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "daemon/base/time.hpp"

namespace privacyd::intake {

enum class EventType {
  association_created,
  data_disclosed,
  request_access,
  request_deletion,
  request_disassociation,
};

std::string_view type_name(EventType t);
bool is_request(EventType t);

struct SubjectFields {
  std::string huawei_id;
  std::optional<std::string> account_name;
  std::optional<std::string> name;
  std::optional<std::string> email;
  std::optional<std::string> phone;
  std::optional<std::string> locale;

  bool has_contact() const { return account_name || name || email || phone; }
};

struct WebhookEvent {
  EventType type{};
  UnixMillis occurred_at = 0;
  SubjectFields subject;
  std::optional<std::string> partner_id;
  std::optional<std::vector<std::string>> categories;  // de-duplicated, in order given
  std::optional<std::string> statement_version;
  std::optional<std::string> jurisdiction;
};

struct FieldProblem {
  std::string code;     // "malformed_json", "invalid_field", "missing_field", "unknown_type"
  std::string message;  // names the rule, never the value
  std::string field;    // "subject.huawei_id"; empty for the whole body
};

struct EventLimits {
  std::size_t max_depth = 16;
  std::size_t max_categories = 64;
};

std::variant<WebhookEvent, FieldProblem> parse_event(std::string_view body, const EventLimits& limits = {});

}  // namespace privacyd::intake
