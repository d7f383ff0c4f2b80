#include "daemon/crypto/webhook_signature.hpp"

#include <charconv>
#include <fstream>
#include <stdexcept>

namespace privacyd::crypto {

namespace {
constexpr std::size_t kMaxIdLength = 256;
constexpr std::size_t kMaxSignatureHeader = 4096;
constexpr std::size_t kMaxEntries = 16;
}  // namespace

std::optional<Bytes> parse_webhook_secret(std::string_view text) {
  if (!text.starts_with("whsec_")) return std::nullopt;
  auto key = base64_decode(text.substr(6));
  if (!key || key->size() < 16 || key->size() > 64) return std::nullopt;
  return key;
}

std::vector<Bytes> load_webhook_secrets(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("cannot read webhook secrets file " + file.string());
  std::vector<Bytes> secrets;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    auto key = parse_webhook_secret(std::string_view(line).substr(start));
    if (!key) {
      throw std::runtime_error(file.string() + ":" + std::to_string(number) +
                               ": not a whsec_ secret (whsec_ then base64 of 16 to 64 bytes)");
    }
    secrets.push_back(std::move(*key));
  }
  if (secrets.empty()) throw std::runtime_error("webhook secrets file " + file.string() + " holds no secret");
  return secrets;
}

std::string webhook_signature(std::string_view key, std::string_view id, std::int64_t timestamp,
                              std::string_view body) {
  std::string content;
  content.reserve(id.size() + body.size() + 24);
  content += id;
  content += '.';
  content += std::to_string(timestamp);
  content += '.';
  content += body;
  return "v1," + base64_encode(hmac_sha256(key, content));
}

std::vector<std::pair<std::string, std::string>> signed_webhook_headers(std::string_view key, std::string_view id,
                                                                        std::int64_t timestamp, std::string_view body) {
  return {{"Content-Type", "application/json"},
          {"webhook-id", std::string(id)},
          {"webhook-timestamp", std::to_string(timestamp)},
          {"webhook-signature", webhook_signature(key, id, timestamp, body)}};
}

std::string_view describe(SignatureProblem p) {
  switch (p) {
    case SignatureProblem::missing_headers: return "missing webhook-id, webhook-timestamp or webhook-signature";
    case SignatureProblem::malformed_headers: return "malformed webhook headers";
    case SignatureProblem::timestamp_too_old: return "webhook-timestamp is too old";
    case SignatureProblem::timestamp_too_new: return "webhook-timestamp is in the future";
    case SignatureProblem::no_valid_signature: return "no valid signature";
  }
  return "invalid signature";
}

std::optional<SignatureProblem> verify_webhook(const std::vector<Bytes>& secrets, const SignedHeaders& h,
                                               std::string_view body, std::chrono::system_clock::time_point now,
                                               std::chrono::milliseconds tolerance) {
  if (h.id.empty() || h.timestamp.empty() || h.signature.empty()) return SignatureProblem::missing_headers;
  if (h.id.size() > kMaxIdLength || h.signature.size() > kMaxSignatureHeader) {
    return SignatureProblem::malformed_headers;
  }
  std::int64_t ts = 0;
  auto [end, ec] = std::from_chars(h.timestamp.data(), h.timestamp.data() + h.timestamp.size(), ts);
  if (ec != std::errc{} || end != h.timestamp.data() + h.timestamp.size() || ts < 0) {
    return SignatureProblem::malformed_headers;
  }
  // Compare in whole seconds: any int64 a client sends must not overflow a
  // nanosecond time_point (found by tests/fuzz/event_fuzz.cpp).
  const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const auto tolerance_s = std::chrono::duration_cast<std::chrono::seconds>(tolerance).count();
  if (ts < now_s - tolerance_s) return SignatureProblem::timestamp_too_old;
  if (ts > now_s + tolerance_s) return SignatureProblem::timestamp_too_new;

  // Compute each secret's expected signature once, then compare every
  // offered v1 entry against all of them in constant time.
  std::vector<std::string> expected;
  expected.reserve(secrets.size());
  for (const auto& key : secrets) expected.push_back(webhook_signature(key, h.id, ts, body));

  bool any_v1 = false;
  bool match = false;
  std::size_t entries = 0;
  std::size_t pos = 0;
  while (pos < h.signature.size() && entries < kMaxEntries) {
    auto end_pos = h.signature.find(' ', pos);
    if (end_pos == std::string_view::npos) end_pos = h.signature.size();
    auto entry = h.signature.substr(pos, end_pos - pos);
    pos = end_pos + 1;
    if (entry.empty()) continue;
    ++entries;
    if (!entry.starts_with("v1,")) continue;  // other schemes (v1a, …) are not ours to check
    any_v1 = true;
    for (const auto& e : expected) match = constant_time_equal(entry, e) || match;
  }
  if (!any_v1) return SignatureProblem::malformed_headers;
  if (!match) return SignatureProblem::no_valid_signature;
  return std::nullopt;
}

}  // namespace privacyd::crypto
