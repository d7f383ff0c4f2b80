// Fuzzes the strict YAML reading that config, workflows and policies share.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "daemon/config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto env = [](std::string_view) -> std::optional<std::string> { return std::string("x"); };
  auto result = privacyd::parse_config(text, "/fuzz/privacyd.yaml", env);
  for (const auto& p : result.problems) (void)privacyd::format_text(p);
  return 0;
}
