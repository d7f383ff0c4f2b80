#pragma once
// Standard Webhooks signatures (https://www.standardwebhooks.com): the
// signed content is "{id}.{timestamp}.{body}", the key is the base64 part of
// a "whsec_…" secret, and `webhook-signature` holds space-separated
// "v1,<base64 HMAC-SHA256>" entries of which any one may match. Used both to
// verify the Partner Center's webhooks and to sign our own notices.

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "daemon/crypto/primitives.hpp"

namespace privacyd::crypto {

// The key of a "whsec_<base64>" secret; nullopt when malformed.
std::optional<Bytes> parse_webhook_secret(std::string_view text);

// One secret per line; blank lines and lines starting with '#' are skipped.
// Throws std::runtime_error naming the file and line, never the secret.
std::vector<Bytes> load_webhook_secrets(const std::filesystem::path& file);

// "v1,<base64>"
std::string webhook_signature(std::string_view key, std::string_view id, std::int64_t timestamp,
                              std::string_view body);

// The headers of a signed JSON webhook: Content-Type, webhook-id,
// webhook-timestamp and webhook-signature (signed with `key`).
std::vector<std::pair<std::string, std::string>> signed_webhook_headers(std::string_view key, std::string_view id,
                                                                        std::int64_t timestamp, std::string_view body);

enum class SignatureProblem {
  missing_headers,     // one of the three headers is absent or empty
  malformed_headers,   // too long, non-numeric timestamp, no v1 entry
  timestamp_too_old,   // further in the past than the tolerance
  timestamp_too_new,   // further in the future than the tolerance
  no_valid_signature,  // no entry matches any secret
};
std::string_view describe(SignatureProblem p);

struct SignedHeaders {
  std::string_view id;
  std::string_view timestamp;
  std::string_view signature;
};

// nullopt when the message is authentic and fresh.
std::optional<SignatureProblem> verify_webhook(const std::vector<Bytes>& secrets, const SignedHeaders& headers,
                                               std::string_view body, std::chrono::system_clock::time_point now,
                                               std::chrono::milliseconds tolerance);

}  // namespace privacyd::crypto
