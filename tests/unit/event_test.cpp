#include <catch2/catch.hpp>

#include "daemon/intake/event.hpp"

using namespace privacyd::intake;

namespace {
const FieldProblem& problem_of(const std::variant<WebhookEvent, FieldProblem>& r) {
  REQUIRE(std::holds_alternative<FieldProblem>(r));
  return std::get<FieldProblem>(r);
}
const WebhookEvent& event_of(const std::variant<WebhookEvent, FieldProblem>& r) {
  if (auto* p = std::get_if<FieldProblem>(&r)) FAIL(p->field + ": " + p->message);
  return std::get<WebhookEvent>(r);
}
}  // namespace

TEST_CASE("the SPEC example parses", "[event]") {
  auto r = parse_event(R"({
    "type": "request.disassociation",
    "occurred_at": "2026-11-26T05:00:00Z",
    "subject": { "huawei_id": "hw-8f3a", "account_name": "lin", "name": "Lin Wei",
                 "email": "lin@example.com", "phone": "+86 138 0000 0000", "locale": "zh-CN" },
    "partner": { "id": "P-1001" },
    "categories": ["email_address", "exam_records", "email_address"],
    "statement_version": "1.0",
    "jurisdiction": "EU",
    "unknown_field": {"ignored": true}
  })");
  const auto& e = event_of(r);
  CHECK(e.type == EventType::request_disassociation);
  CHECK(e.occurred_at == 1795669200000);
  CHECK(e.subject.huawei_id == "hw-8f3a");
  CHECK(e.subject.email == "lin@example.com");
  CHECK(e.subject.locale == "zh-CN");
  CHECK(e.partner_id == "P-1001");
  CHECK(e.categories == std::vector<std::string>{"email_address", "exam_records"});
  CHECK(e.jurisdiction == "EU");
}

TEST_CASE("each type requires its own fields", "[event]") {
  auto base = [](std::string type, std::string extra) {
    return R"({"type":")" + type + R"(","occurred_at":"2026-11-26T05:00:00Z","subject":{"huawei_id":"h"})" +
           extra + "}";
  };
  CHECK(problem_of(parse_event(base("request.disassociation", ""))).field == "partner");
  CHECK(problem_of(parse_event(base("association.created", R"(,"partner":{"id":"P"})"))).field ==
        "statement_version");
  CHECK(problem_of(parse_event(base("data.disclosed", R"(,"partner":{"id":"P"})"))).field == "categories");
  CHECK(problem_of(parse_event(base("data.disclosed", R"(,"partner":{"id":"P"},"categories":[])"))).code ==
        "missing_field");
  event_of(parse_event(base("request.access", "")));
  event_of(parse_event(base("request.deletion", R"(,"categories":["exam_records"])")));
  event_of(parse_event(base("association.created", R"(,"partner":{"id":"P"},"statement_version":"1.0")")));
}

TEST_CASE("malformed bodies and bad fields name the field, not the value", "[event]") {
  CHECK(problem_of(parse_event("{not json")).code == "malformed_json");
  CHECK(problem_of(parse_event("[1,2]")).code == "malformed_json");
  CHECK(problem_of(parse_event(R"({"type":"request.erase"})")).code == "unknown_type");
  CHECK(problem_of(parse_event(R"({"type":7})")).field == "type");

  auto with_subject = [](std::string subject) {
    return R"({"type":"request.access","occurred_at":"2026-11-26T05:00:00Z","subject":)" + subject + "}";
  };
  CHECK(problem_of(parse_event(with_subject("{}"))).field == "subject.huawei_id");
  CHECK(problem_of(parse_event(with_subject(R"({"huawei_id":""})"))).field == "subject.huawei_id");
  CHECK(problem_of(parse_event(with_subject(R"({"huawei_id":42})"))).field == "subject.huawei_id");
  CHECK(problem_of(parse_event(with_subject(R"({"huawei_id":"a\u0000b"})"))).field == "subject.huawei_id");
  CHECK(problem_of(parse_event(with_subject(R"({"huawei_id":")" + std::string(129, 'x') + R"("})"))).field ==
        "subject.huawei_id");
  auto bad_email = problem_of(parse_event(with_subject(R"({"huawei_id":"h","email":"secret-person.example.com"})")));
  CHECK(bad_email.field == "subject.email");
  CHECK(bad_email.message.find("secret-person") == std::string::npos);
  CHECK(problem_of(parse_event(with_subject(R"({"huawei_id":"h","phone":"call me"})"))).field == "subject.phone");
  CHECK(problem_of(parse_event(with_subject(R"("hw-1")"))).field == "subject");

  auto bad_time = R"({"type":"request.access","occurred_at":"yesterday","subject":{"huawei_id":"h"}})";
  CHECK(problem_of(parse_event(bad_time)).field == "occurred_at");
  auto bad_category =
      R"({"type":"request.access","occurred_at":"2026-11-26T05:00:00Z","subject":{"huawei_id":"h"},"categories":["ok","Not-OK"]})";
  CHECK(problem_of(parse_event(bad_category)).field == "categories[1]");
}

TEST_CASE("nesting depth and list sizes are bounded", "[event]") {
  std::string deep = R"({"type":"request.access","occurred_at":"2026-11-26T05:00:00Z","subject":{"huawei_id":"h"},"x":)";
  for (int i = 0; i < 100; ++i) deep += "[";
  for (int i = 0; i < 100; ++i) deep += "]";
  deep += "}";
  CHECK(problem_of(parse_event(deep)).code == "malformed_json");

  std::string many = R"({"type":"request.access","occurred_at":"2026-11-26T05:00:00Z","subject":{"huawei_id":"h"},"categories":[)";
  for (int i = 0; i < 65; ++i) many += (i ? ",\"c" : "\"c") + std::to_string(i) + "\"";
  many += "]}";
  CHECK(problem_of(parse_event(many)).field == "categories");
}
