#include "daemon/crypto/primitives.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdexcept>

namespace privacyd::crypto {

Bytes sha256(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr) != 1) {
    throw std::runtime_error("SHA-256 failed");
  }
  return Bytes(reinterpret_cast<const char*>(out), len);
}

std::string sha256_hex(std::string_view data) { return hex(sha256(data)); }

Bytes hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
           data.size(), out, &len) == nullptr) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  return Bytes(reinterpret_cast<const char*>(out), len);
}

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char ch : bytes) {
    auto c = static_cast<unsigned char>(ch);
    out += digits[c >> 4];
    out += digits[c & 0xf];
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<Bytes> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::size_t padding = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
    if (c == '=') {
      if (i + 2 < text.size()) return std::nullopt;  // '=' only in the last two places
      ++padding;
    } else if (!alnum || padding > 0) {
      return std::nullopt;
    }
  }
  std::string out(3 * text.size() / 4, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  out.resize(static_cast<std::size_t>(n) - padding);
  // Canonical only: unused bits in the last character must be zero, so one
  // byte string has exactly one accepted spelling.
  if (base64_encode(out) != text) return std::nullopt;
  return out;
}

Bytes random_bytes(std::size_t n) {
  Bytes out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    throw std::runtime_error("the system random generator failed");
  }
  return out;
}

std::string new_id(std::string_view prefix, std::int64_t unix_ms) {
  static constexpr char alphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";  // Crockford, lower case
  // 128 bits, big-endian: 48 of time, 80 of randomness; 26 base32 digits
  // (the first carries only the top 3 bits).
  unsigned char bits[16];
  auto ms = static_cast<std::uint64_t>(unix_ms);
  for (int i = 0; i < 6; ++i) bits[i] = static_cast<unsigned char>(ms >> (8 * (5 - i)));
  auto random = random_bytes(10);
  for (std::size_t i = 0; i < 10; ++i) bits[6 + i] = static_cast<unsigned char>(random[i]);
  auto bit = [&](std::size_t n) { return (static_cast<unsigned>(bits[n / 8]) >> (7 - n % 8)) & 1U; };
  std::string out(prefix);
  out += '_';
  // 130 bit positions, the first two always zero.
  for (std::size_t digit = 0; digit < 26; ++digit) {
    unsigned value = 0;
    for (std::size_t k = 0; k < 5; ++k) {
      std::size_t pos = digit * 5 + k;  // position in a 130-bit field
      value = (value << 1) | (pos < 2 ? 0U : bit(pos - 2));
    }
    out += alphabet[value];
  }
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string new_link_token() {
  std::string text = base64_encode(random_bytes(32));
  for (char& c : text) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  while (!text.empty() && text.back() == '=') text.pop_back();
  return text;
}

std::string token_digest(std::string_view token) {
  if (token.size() != 43) return {};
  for (char c : token) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return {};
  }
  return sha256_hex(token);
}

}  // namespace privacyd::crypto
