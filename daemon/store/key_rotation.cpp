#include "daemon/store/key_rotation.hpp"

#include <soci/soci.h>
#include <vector>

#include "daemon/store/key_store.hpp"
#include "daemon/store/rows.hpp"

namespace privacyd {

namespace {

// Every main-database column a master key may seal, with the columns that
// find its row and the context it was sealed with.
struct SealedColumn {
  const char* table;
  const char* key1;
  const char* key2;  // nullptr: one-column key
  const char* column;
  const char* context;
};
constexpr SealedColumn kSealed[] = {
    {"subjects", "id", nullptr, "huawei_id_enc", "subjects.huawei_id"},
    {"subjects", "id", nullptr, "contact_enc", "subjects.contact"},
    {"request_data", "request_id", "step_id", "data_enc", "request_data.data"},
    {"exports", "request_id", nullptr, "package_enc", "exports.package"},
    {"notices", "id", nullptr, "payload_enc", "notices.payload"},
    {"notices", "id", nullptr, "ack_note_enc", "notices.ack_note"},
};

std::string what_of(const SealedColumn& c) { return std::string(c.table) + "." + c.column; }

// "v1.<12 hex>." of the current master key.
std::string prefix_of(const crypto::KeyRing& keys) { return "v1." + keys.key_id() + "."; }

}  // namespace

KeyCounts count_key_use(Database& main, Database& store) {
  KeyCounts counts;
  store.with_session([&](soci::session& sql) {
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT master_key_id, COUNT(*) FROM subject_keys GROUP BY master_key_id");
    for (const auto& r : rows) counts.by_key[r.get<std::string>(0)]["subject keys"] = row_integer(r, 1);
  });
  main.with_session([&](soci::session& sql) {
    for (const auto& c : kSealed) {
      soci::rowset<soci::row> rows =
          (sql.prepare << std::string("SELECT substr(") + c.column + ", 4, 12), COUNT(*) FROM " + c.table + " WHERE " +
                              c.column + " LIKE 'v1.%' GROUP BY substr(" + c.column + ", 4, 12)");
      for (const auto& r : rows) counts.by_key[r.get<std::string>(0)][what_of(c)] = row_integer(r, 1);
    }
  });
  return counts;
}

bool rotate_batch(Database& main, Database& store, const crypto::KeyRing& keys, int batch, RotationProgress& progress,
                  long long& unreadable) {
  const std::string current = keys.key_id();
  // Subject keys first: they are what most data hangs from.
  bool any = false;
  store.with_session([&](soci::session& sql) {
    std::vector<std::pair<std::string, std::string>> rows;
    soci::rowset<soci::row> found =
        (sql.prepare << "SELECT id, wrapped FROM subject_keys WHERE master_key_id <> :m ORDER BY id LIMIT :n",
         soci::use(current, "m"), soci::use(batch, "n"));
    for (const auto& r : found) rows.emplace_back(r.get<std::string>(0), r.get<std::string>(1));
    if (rows.empty()) return;
    soci::transaction tr(sql);
    for (const auto& [id, wrapped] : rows) {
      auto key = keys.open(wrapped, wrap_context(id));
      if (!key) {
        ++unreadable;
        continue;
      }
      const std::string again = keys.seal(*key, wrap_context(id));
      sql << "UPDATE subject_keys SET wrapped = :w, master_key_id = :m WHERE id = :id AND wrapped = :old",
          soci::use(again, "w"), soci::use(current, "m"), soci::use(id, "id"), soci::use(wrapped, "old");
      ++progress.done;
      any = true;
    }
    tr.commit();
    progress.what = "subject keys";
  });
  if (any) return true;  // a batch of only keys nothing opens ends this part of the walk
  const std::string prefix = prefix_of(keys);
  for (const auto& c : kSealed) {
    bool did = false;
    main.with_session([&](soci::session& sql) {
      const std::string keys_sql = std::string(c.key1) + (c.key2 ? std::string(", ") + c.key2 : std::string());
      soci::rowset<soci::row> found =
          (sql.prepare << "SELECT " + keys_sql + ", " + c.column + " FROM " + c.table + " WHERE " + c.column +
                              " LIKE 'v1.%' AND substr(" + c.column + ", 1, 16) <> :p LIMIT :n",
           soci::use(prefix, "p"), soci::use(batch, "n"));
      struct Row {
        std::string k1, k2, value;
      };
      std::vector<Row> rows;
      const std::size_t v = c.key2 ? 2 : 1;
      for (const auto& r : found) rows.push_back({r.get<std::string>(0), c.key2 ? r.get<std::string>(1) : "", r.get<std::string>(v)});
      if (rows.empty()) return;
      soci::transaction tr(sql);
      long long moved = 0;
      for (const auto& row : rows) {
        auto plain = keys.open(row.value, c.context);
        if (!plain) {
          ++unreadable;
          continue;
        }
        const std::string again = keys.seal(*plain, c.context);
        const std::string where = std::string(" WHERE ") + c.key1 + " = :k1" + (c.key2 ? std::string(" AND ") + c.key2 + " = :k2" : "") +
                                  " AND " + c.column + " = :old";
        if (c.key2) {
          sql << std::string("UPDATE ") + c.table + " SET " + c.column + " = :v" + where, soci::use(again, "v"),
              soci::use(row.k1, "k1"), soci::use(row.k2, "k2"), soci::use(row.value, "old");
        } else {
          sql << std::string("UPDATE ") + c.table + " SET " + c.column + " = :v" + where, soci::use(again, "v"),
              soci::use(row.k1, "k1"), soci::use(row.value, "old");
        }
        ++moved;
      }
      tr.commit();
      progress.what = what_of(c);
      progress.done += moved;
      // Values no key opens stay where they are; a batch of only those ends the walk.
      did = moved > 0;
    });
    if (did) return true;
  }
  return false;
}

}  // namespace privacyd
