#pragma once
// Master key rotation (SPEC §14): everything the master key protects is
// re-sealed under the current one, in batches, online (each row is
// rewritten only if it still holds what was read), and resumably (a
// batch picks up whatever is still under another key). What is sealed
// under a subject key is not touched: only that key's wrapping changes.

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "daemon/crypto/keyring.hpp"
#include "daemon/store/database.hpp"

namespace soci {
class session;
}

namespace privacyd {

// master key id -> how many values it still protects: subject keys in the
// key store ("subject keys"), and values in the main database it seals
// directly (by table.column).
struct KeyCounts {
  std::map<std::string, std::map<std::string, long long>> by_key;  // key id -> what -> count
  long long legacy_subjects = 0;  // from before subject keys, still to move under keys of their own
};
KeyCounts count_key_use(Database& main, Database& store);

struct RotationProgress {
  std::string what;  // "subject keys" or table.column
  long long done = 0;
};
// One batch of up to `batch` values per call, for the first kind of value
// still under another key; returns false once nothing is left. A value
// that no configured key opens is counted in `unreadable` and left as it
// is (never lost; `keys status` still shows its key).
bool rotate_batch(Database& main, Database& store, const crypto::KeyRing& keys, int batch, RotationProgress& progress,
                  long long& unreadable);

// A main-database column that holds sealed values, with the columns that
// find its row and the context its values are sealed with.
struct SealedColumn {
  const char* table;
  const char* key1;
  const char* key2;  // nullptr: one-column key
  const char* column;
  const char* context;
};

struct Resealed {
  long long moved = 0;       // rewritten
  long long unreadable = 0;  // `reseal` could not open them: left as they are
  long long lost = 0;        // changed by another writer between the read and the rewrite: left as they are
};

// Rewrites, in the caller's transaction, the values of `c` under the master
// key that `filter` selects (SQL, binding :f to `filter_value` once), at
// most `limit` (0: all): each as `reseal` gives it, and only if the row
// still holds what was read. `lock` (PostgreSQL) locks the rows read, so
// none is lost to another writer.
Resealed reseal_master_sealed(soci::session& sql, const SealedColumn& c, const std::string& filter,
                              const std::string& filter_value, int limit, bool lock,
                              const std::function<std::optional<std::string>(const std::string&)>& reseal);

}  // namespace privacyd
