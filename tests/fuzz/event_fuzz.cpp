// Fuzzes what an unauthenticated client controls: the webhook headers and
// body. Nothing may crash, hang, or read out of bounds.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "daemon/crypto/webhook_signature.hpp"
#include "daemon/intake/event.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  (void)privacyd::intake::parse_event(input);

  // Split the input into three header values and a body at the first NULs.
  std::string_view parts[4];
  std::size_t start = 0;
  for (int i = 0; i < 3; ++i) {
    auto end = input.find('\0', start);
    if (end == std::string_view::npos) end = input.size();
    parts[i] = input.substr(start, end - start);
    start = end < input.size() ? end + 1 : input.size();
  }
  parts[3] = input.substr(start);
  static const std::vector<privacyd::crypto::Bytes> secrets{std::string(32, 'k'), std::string(24, 's')};
  (void)privacyd::crypto::verify_webhook(secrets, {parts[0], parts[1], parts[2]}, parts[3],
                                         std::chrono::system_clock::now(), std::chrono::seconds(300));
  (void)privacyd::parse_rfc3339(input);
  return 0;
}
