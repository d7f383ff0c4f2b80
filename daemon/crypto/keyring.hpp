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

// Where subject keys come from (SPEC §14): each subject's data is sealed
// under a key of its own, kept wrapped in a key store apart from the main
// database. Destroying that key makes every copy of the data unreadable.
class SubjectKeySource {
 public:
  virtual ~SubjectKeySource() = default;
  // The 32-byte key `id` names, or nullopt once it has been destroyed (or
  // if it never existed). May block on the key store when not cached.
  virtual std::optional<Bytes> subject_key(std::string_view id) const = 0;
};

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

  // Under the master key: "v1.<key id>.<base64(nonce ‖ ciphertext ‖ tag)>".
  // For what is not any one subject's (callbacks, partners' notes) and for
  // the subject keys themselves.
  std::string seal(std::string_view plaintext, std::string_view context) const;
  // Under subject key `subject_key` (from the attached source):
  // "s1.<subject key id>.<base64(…)>". An empty id seals under the master
  // key (a subject from before subject keys). Throws when the key is gone.
  std::string seal_for(std::string_view subject_key, std::string_view plaintext, std::string_view context) const;
  // Either form. nullopt when the key is unknown or destroyed, the text is
  // malformed or was altered.
  std::optional<std::string> open(std::string_view sealed, std::string_view context) const;

  // Where subject keys are found; set once at start-up, before any use.
  void attach(const SubjectKeySource* source) { subjects_ = source; }
  // Fetches the subject key `sealed` needs into the source's cache, so that
  // opening it later does no key-store I/O. For database threads, ahead of
  // work on an event loop.
  void warm(std::string_view sealed) const {
    if (subjects_ == nullptr || !sealed.starts_with("s1.")) return;
    auto dot = sealed.find('.', 3);
    if (dot != std::string_view::npos) subjects_->subject_key(sealed.substr(3, dot - 3));
  }

  // AES-256-GCM under `key`, bound to `context`: the primitive both forms use.
  static std::string encrypt(const Bytes& key, std::string_view plaintext, std::string_view context);
  static std::optional<std::string> decrypt(const Bytes& key, std::string_view raw, std::string_view context);

  // Deterministic, keyed, one-way: equal inputs give equal indexes.
  std::string blind_index(std::string_view value, std::string_view context) const;

  const std::string& key_id() const { return keys_.front().id; }
  // The ids of the keys that only decrypt (keys.previous_key_files).
  std::vector<std::string> previous_key_ids() const {
    std::vector<std::string> ids;
    for (std::size_t i = 1; i < keys_.size(); ++i) ids.push_back(keys_[i].id);
    return ids;
  }

 private:
  struct Key {
    std::string id;
    Bytes secret;
  };
  std::vector<Key> keys_;  // front() is the primary
  Bytes index_key_;
  const SubjectKeySource* subjects_ = nullptr;
};

}  // namespace privacyd::crypto
