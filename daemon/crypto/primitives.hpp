#pragma once
// Thin, checked wrappers over OpenSSL: hashes, HMAC, base64, randomness and
// constant-time comparison. Nothing here invents cryptography.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace privacyd::crypto {

using Bytes = std::string;  // raw bytes; std::string keeps SOCI and JSON simple

Bytes sha256(std::string_view data);
std::string sha256_hex(std::string_view data);
Bytes hmac_sha256(std::string_view key, std::string_view data);

std::string hex(std::string_view bytes);
std::string base64_encode(std::string_view bytes);
// Strict standard base64 (with padding); nullopt on any other character.
std::optional<Bytes> base64_decode(std::string_view text);

Bytes random_bytes(std::size_t n);
// An identifier with `prefix`, 48 bits of milliseconds then 80 random bits in
// Crockford base32, so ids sort by creation time: "req_01JD…".
std::string new_id(std::string_view prefix, std::int64_t unix_ms);

// A bearer token for a link (SPEC §13.2): 32 random bytes, base64url
// without padding (43 characters). Only its token_digest is ever stored.
std::string new_link_token();
// What is stored of a link token and looked up by: SHA-256, hex. Empty for
// text that cannot be a token (wrong length or alphabet), so a lookup
// never hashes an attacker's megabyte.
std::string token_digest(std::string_view token);

// Compares in time independent of where the inputs differ.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace privacyd::crypto
