#pragma once
// The subject key store (SPEC §14): one data key per subject, 32 random
// bytes, kept wrapped (AES-256-GCM under the master key, with that key's
// id) in a database apart from the main one, so that the main database and
// its backups hold only ciphertext, and destroying a subject's key here
// makes every copy of its data unreadable.
//
// Keys are made ahead, in batches, and committed here before any is
// handed out: nothing is ever sealed under a key the store does not hold.
// A key handed out but never used (the process died first, or its
// transaction rolled back) stays in the store, unused: harmless, and not
// swept, since the main database alone cannot prove a key unused (another
// instance may hold it, or the main database may be a restored copy).

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "daemon/base/log.hpp"
#include "daemon/base/time.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/store/database.hpp"

namespace privacyd {

class SubjectKeyStore final : public crypto::SubjectKeySource {
 public:
  SubjectKeyStore(Database& store, const crypto::KeyRing& master, Logger& log);

  // Creates the store's table (idempotent).
  static void migrate(Database& store);

  std::optional<crypto::Bytes> subject_key(std::string_view id) const override;

  // A key for a new subject (or one whose key was destroyed), committed to
  // the store already. Blocking: run on a database thread.
  std::string take(UnixMillis now);

  // Destroys keys for good (the store forgets them; SQLite overwrites the
  // freed pages). Blocking.
  void destroy(const std::vector<std::string>& ids);

 private:
  std::optional<crypto::Bytes> unwrap(const std::string& id, const std::string& wrapped) const;

  Database& store_;
  const crypto::KeyRing& master_;
  Logger& log_;
  mutable std::mutex mutex_;
  mutable std::unordered_map<std::string, crypto::Bytes> cache_;
  std::deque<std::pair<std::string, UnixMillis>> spares_;  // id, made at
};

// The key store `config` names, connected, migrated, and attached to
// `keys` (so that KeyRing::open and seal_for find subject keys).
struct KeyVault {
  std::unique_ptr<Database> db;
  std::unique_ptr<SubjectKeyStore> store;
};
KeyVault open_key_vault(const DatabaseConfig& config, crypto::KeyRing& keys, Logger& log);

// "subject_keys:" + id: what a wrapped key is bound to, so a wrapped key
// copied to another id does not open.
std::string wrap_context(std::string_view id);

}  // namespace privacyd
