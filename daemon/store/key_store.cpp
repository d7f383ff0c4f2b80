#include "daemon/store/key_store.hpp"

#include <soci/soci.h>

#include "daemon/crypto/primitives.hpp"

namespace privacyd {

namespace {
constexpr std::size_t kBatch = 64;                 // keys made per trip to the store
constexpr std::size_t kMaxCached = 100000;         // unwrapped keys kept in memory (about 10 MB)
constexpr long long kSpareLifetimeMs = 3600'000;   // a spare older than this is not handed out (clock jumps)
}  // namespace

std::string wrap_context(std::string_view id) { return "subject_keys:" + std::string(id); }

KeyVault open_key_vault(const DatabaseConfig& config, crypto::KeyRing& keys, Logger& log) {
  KeyVault vault;
  vault.db = std::make_unique<Database>(config, log);
  SubjectKeyStore::migrate(*vault.db);
  vault.store = std::make_unique<SubjectKeyStore>(*vault.db, keys, log);
  keys.attach(vault.store.get());
  return vault;
}

SubjectKeyStore::SubjectKeyStore(Database& store, const crypto::KeyRing& master, Logger& log)
    : store_(store), master_(master), log_(log) {}

void SubjectKeyStore::migrate(Database& store) {
  store.with_session([&](soci::session& sql) {
    sql << "CREATE TABLE IF NOT EXISTS subject_keys ("
           " id TEXT PRIMARY KEY,"
           " master_key_id TEXT NOT NULL,"
           " wrapped TEXT NOT NULL,"
           " created_at BIGINT NOT NULL)";
    if (sql.get_backend_name() == "sqlite3") sql << "PRAGMA secure_delete = ON";
  });
}

std::optional<crypto::Bytes> SubjectKeyStore::unwrap(const std::string& id, const std::string& wrapped) const {
  auto key = master_.open(wrapped, wrap_context(id));
  if (!key || key->size() != 32) return std::nullopt;
  return key;
}

std::optional<crypto::Bytes> SubjectKeyStore::subject_key(std::string_view id_view) const {
  const std::string id(id_view);
  {
    std::lock_guard lock(mutex_);
    if (auto it = cache_.find(id); it != cache_.end()) return it->second;
  }
  std::string wrapped;
  bool found = false;
  store_.with_session([&](soci::session& sql) {
    soci::indicator ind = soci::i_null;
    sql << "SELECT wrapped FROM subject_keys WHERE id = :id", soci::use(id, "id"), soci::into(wrapped, ind);
    found = sql.got_data() && ind == soci::i_ok;
  });
  if (!found) return std::nullopt;
  auto key = unwrap(id, wrapped);
  if (!key) {
    log_.error("a subject key cannot be unwrapped with the configured master keys", {{"key", id}});
    return std::nullopt;
  }
  std::lock_guard lock(mutex_);
  if (cache_.size() >= kMaxCached) cache_.clear();
  cache_.emplace(id, *key);
  return key;
}

std::string SubjectKeyStore::take(UnixMillis now) {
  std::lock_guard lock(mutex_);
  while (!spares_.empty() && spares_.front().second + kSpareLifetimeMs < now) spares_.pop_front();
  if (spares_.empty()) {
    // Made and committed before any is handed out.
    std::vector<std::pair<std::string, crypto::Bytes>> made;
    for (std::size_t i = 0; i < kBatch; ++i) made.emplace_back(crypto::new_id("sk", now), crypto::random_bytes(32));
    const long long at = now;
    const std::string master_id = master_.key_id();
    store_.with_session([&](soci::session& sql) {
      soci::transaction tr(sql);
      for (const auto& [id, key] : made) {
        const std::string wrapped = master_.seal(key, wrap_context(id));
        sql << "INSERT INTO subject_keys(id, master_key_id, wrapped, created_at) VALUES (:id, :m, :w, :t)",
            soci::use(id, "id"), soci::use(master_id, "m"), soci::use(wrapped, "w"), soci::use(at, "t");
      }
      tr.commit();
    });
    for (auto& [id, key] : made) {
      if (cache_.size() >= kMaxCached) cache_.clear();
      cache_.emplace(id, key);
      spares_.emplace_back(id, now);
    }
  }
  std::string id = spares_.front().first;
  spares_.pop_front();
  return id;
}

void SubjectKeyStore::destroy(const std::vector<std::string>& ids) {
  if (ids.empty()) return;
  store_.with_session([&](soci::session& sql) {
    const bool sqlite = sql.get_backend_name() == "sqlite3";
    // Overwrite the freed bytes (on this connection, whichever it is).
    if (sqlite) sql << "PRAGMA secure_delete = ON";
    soci::transaction tr(sql);
    for (const auto& id : ids) sql << "DELETE FROM subject_keys WHERE id = :id", soci::use(id, "id");
    tr.commit();
    // In WAL mode the key's old page lives on in the log until a
    // checkpoint: copy the log back and empty it now.
    if (sqlite) sql << "PRAGMA wal_checkpoint(TRUNCATE)";
  });
  std::lock_guard lock(mutex_);
  for (const auto& id : ids) cache_.erase(id);
}

}  // namespace privacyd
