#include <boost/json.hpp>
#include <catch2/catch.hpp>

#include "daemon/engine/expression.hpp"

using namespace privacyd::engine;
namespace json = boost::json;

namespace {
Condition parse(std::string_view text) {
  auto r = Condition::parse(text);
  if (auto* e = std::get_if<Condition::Error>(&r)) FAIL(std::string(text) + ": " + e->message);
  return std::get<Condition>(r);
}
Condition::Error error_of(std::string_view text) {
  auto r = Condition::parse(text);
  REQUIRE(std::holds_alternative<Condition::Error>(r));
  return std::get<Condition::Error>(r);
}
const json::value kContext = json::parse(R"({
  "request": {"type": "deletion", "jurisdiction": "EU", "categories": []},
  "subject": {"email": "x@example.com", "phone": ""},
  "steps": {"check": {"ok": true, "count": 0}}
})");
}  // namespace

TEST_CASE("paths are true when present and not empty", "[expression]") {
  CHECK(parse("subject.email").evaluate(kContext));
  CHECK_FALSE(parse("subject.phone").evaluate(kContext));
  CHECK_FALSE(parse("subject.name").evaluate(kContext));
  CHECK_FALSE(parse("request.categories").evaluate(kContext));
  CHECK(parse("steps.check.ok").evaluate(kContext));
  CHECK_FALSE(parse("steps.check.count").evaluate(kContext));
  CHECK(parse("!subject.phone").evaluate(kContext));
}

TEST_CASE("comparisons, && before ||, parentheses", "[expression]") {
  CHECK(parse("request.type == 'deletion'").evaluate(kContext));
  CHECK(parse("request.type != 'access'").evaluate(kContext));
  CHECK(parse("subject.name != 'x'").evaluate(kContext));  // absent differs from anything
  CHECK_FALSE(parse("subject.name == ''").evaluate(kContext));
  CHECK(parse("request.jurisdiction == 'EU' && subject.email").evaluate(kContext));
  CHECK(parse("subject.phone || request.type == 'deletion'").evaluate(kContext));
  CHECK(parse("subject.phone && subject.name || subject.email").evaluate(kContext));
  CHECK_FALSE(parse("subject.phone && (subject.name || subject.email)").evaluate(kContext));
  CHECK(parse("!(subject.phone || subject.name)").evaluate(kContext));
}

TEST_CASE("the paths a condition reads are listed", "[expression]") {
  auto c = parse("subject.email && steps.check.ok != 'no'");
  REQUIRE(c.paths().size() == 2);
  CHECK(c.paths()[0] == std::vector<std::string>{"subject", "email"});
  CHECK(c.paths()[1] == std::vector<std::string>{"steps", "check", "ok"});
}

TEST_CASE("malformed conditions say where", "[expression]") {
  CHECK(error_of("").message == "empty condition");
  CHECK(error_of("subject.email &&").offset == 16);
  CHECK(error_of("subject.email == deletion").offset == 17);
  CHECK(error_of("subject.email == 'deletion").message == "unterminated string");
  CHECK(error_of("(subject.email").message == "missing \")\"");
  CHECK(error_of("subject.email & request.type").offset == 14);
  CHECK(error_of("subject..email").offset == 8);
  CHECK(error_of("1abc").offset == 0);
}
