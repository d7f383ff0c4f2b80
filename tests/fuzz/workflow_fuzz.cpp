// Fuzzes workflow files and `if:` conditions: operator-edited text that
// privacyd parses on every start and reload.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <boost/json.hpp>

#include "daemon/engine/expression.hpp"
#include "daemon/engine/workflow.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  static const privacyd::engine::ActionCatalog catalog = {
      {"approval", {}},
      {"wait", {{"for", privacyd::engine::ActionParam::Kind::duration, true}}},
      {"webhook.call",
       {{"url", privacyd::engine::ActionParam::Kind::url, true},
        {"secret_file", privacyd::engine::ActionParam::Kind::text, true}}},
      {"systems.collect", {}}};
  privacyd::Diagnostics out;
  (void)privacyd::engine::parse_workflow(text, "fuzz.yaml", catalog, out);
  auto condition = privacyd::engine::Condition::parse(text);
  if (auto* c = std::get_if<privacyd::engine::Condition>(&condition)) {
    static const boost::json::value context = boost::json::parse(R"({"subject":{"email":"x"},"request":{"type":"a"}})");
    (void)c->evaluate(context);
  }
  return 0;
}
