#pragma once
// Personal data at rest: AES-256-GCM under a key read from a file, with the
// key's id in every ciphertext so keys can rotate, and an HMAC-SHA256 blind
// index for lookups. A context string (the column) is bound as associated
// data, so a ciphertext moved to another column does not open.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/crypto/primitives.hpp"

namespace privacyd::crypto {

class KeyRing {
 public:
  // `primary` encrypts; `previous` only decrypt; the blind index key is
  // derived from `index_key` (by default the primary key, see README).
  KeyRing(Bytes primary, std::vector<Bytes> previous = {}, std::optional<Bytes> index_key = std::nullopt);

  // Reads key files: 32 raw bytes, or 64 hex digits, or base64 of 32 bytes.
  // Throws std::runtime_error naming the file (never its contents).
  static KeyRing load(const std::filesystem::path& primary, const std::vector<std::filesystem::path>& previous = {},
                      const std::filesystem::path& index_key = {});
  static Bytes read_key_file(const std::filesystem::path& file);

  // "v1.<key id>.<base64(nonce ‖ ciphertext ‖ tag)>"
  std::string seal(std::string_view plaintext, std::string_view context) const;
  // nullopt when the key is unknown, the text is malformed or was altered.
  std::optional<std::string> open(std::string_view sealed, std::string_view context) const;

  // Deterministic, keyed, one-way: equal inputs give equal indexes.
  std::string blind_index(std::string_view value, std::string_view context) const;

  const std::string& key_id() const { return keys_.front().id; }

 private:
  struct Key {
    std::string id;
    Bytes secret;
  };
  std::vector<Key> keys_;  // front() is the primary
  Bytes index_key_;
};

}  // namespace privacyd::crypto
