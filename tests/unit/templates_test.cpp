#include <boost/json.hpp>
#include <catch2/catch.hpp>
#include <filesystem>

#include "daemon/notify/templates.hpp"

using namespace privacyd;
namespace json = boost::json;

namespace {

notify::Templates shipped() {
  Diagnostics problems;
  auto t = notify::Templates::load(std::filesystem::path(PRIVACYD_SOURCE_DIR) / "policies" / "notices", problems);
  for (const auto& p : problems) FAIL(format_text(p));
  return t;
}

json::object category(const char* name, const char* description) {
  return {{"category", name}, {"description", description}};
}

// What each notice offers, in the sparsest and the fullest shapes a real
// request can give it.
std::vector<std::pair<std::string, json::object>> cases() {
  json::array two{category("email_address", "Email address"), category("phone_number", "Phone number")};
  json::array held{json::object{{"category", "certificates"}, {"description", "Certificates"},
                                {"reason", "programme audits"}, {"until", "2029-11-26T00:00:00Z"}}};
  return {
      {"subject-rejected", {{"request_id", "req_1"}, {"reason", "not_associated"}, {"not_associated", true},
                            {"by_operator", false}, {"by_step", false}}},
      {"subject-rejected", {{"request_id", "req_1"}, {"name", "Lin Wei"}, {"reason", "No account & no data"},
                            {"not_associated", false}, {"by_operator", true}, {"by_step", false}}},
      {"subject-rejected", {{"request_id", "req_1"}, {"reason", "step review failed"}, {"not_associated", false},
                            {"by_operator", false}, {"by_step", true}}},
      {"subject-erased", {{"request_id", "req_1"}, {"erased", two}, {"retained", json::array{}}, {"has_retained", false}}},
      {"subject-erased", {{"request_id", "req_1"}, {"name", "O'Brien"}, {"erased", two}, {"retained", held},
                          {"has_retained", true}}},
      {"subject-disassociated", {{"request_id", "req_1"}, {"partner_name", "Demo Partner"}, {"partner_id", "P-1001"},
                                 {"contact_email", "privacy@partner.example"}, {"disassociated_at", "2026-11-26T05:00:00Z"},
                                 {"categories", two}}},
      {"subject-disassociated", {{"request_id", "req_1"}, {"name", "Lin Wei"}, {"partner_name", "Demo Partner"},
                                 {"partner_id", "P-1001"}, {"contact_email", "privacy@partner.example"},
                                 {"contact_url", "https://partner.example/privacy"},
                                 {"disassociated_at", "2026-11-26T05:00:00Z"}, {"categories", two}}},
      {"subject-access-ready", {{"request_id", "req_1"}}},
      {"subject-access-ready", {{"request_id", "req_1"}, {"name", "Lin Wei"}}},
      {"partner-erasure", {{"request_id", "req_1"}, {"partner_name", "Demo Partner"}, {"partner_id", "P-1001"},
                           {"categories", two}}},
      {"partner-holdings", {{"request_id", "req_1"}, {"partner_name", "Demo Partner"}, {"partner_id", "P-1001"},
                            {"disassociated_at", "2026-11-26T05:00:00Z"}, {"associated_from", "2026-01-15T09:00:00Z"},
                            {"categories", two}}},
  };
}

}  // namespace

TEST_CASE("every shipped notice reads cleanly in every language, whatever is absent", "[notices]") {
  const auto templates = shipped();
  for (const auto& [name, values] : cases()) {
    for (const char* locale : {"en", "zh-CN"}) {
      const std::string text = templates.render(name, locale, values);
      INFO(name << " in " << locale << ":\n" << text);
      CHECK(text.find("\n\n\n") == std::string::npos);  // no blank left by an absent part
      CHECK(text.find(" ,") == std::string::npos);      // no gap where a name would be
      CHECK(text.find("&#") == std::string::npos);      // plain text, not HTML
      CHECK(text.find("&amp;") == std::string::npos);
      CHECK(text.find("req_1") != std::string::npos);
      if (values.contains("name")) CHECK(text.find(values.at("name").as_string().c_str()) != std::string::npos);
      if (values.contains("reason") && values.at("by_operator").as_bool()) {
        CHECK(text.find("No account & no data") != std::string::npos);
      }
    }
  }
}
