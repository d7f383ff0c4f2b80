#include "daemon/store/key_rotation.hpp"

#include <soci/soci.h>
#include <vector>

#include "daemon/store/key_store.hpp"
#include "daemon/store/legacy_subjects.hpp"
#include "daemon/store/rows.hpp"

namespace privacyd {

namespace {

// Every main-database column a master key may seal.
constexpr SealedColumn kSealed[] = {
    {"subjects", "id", nullptr, "huawei_id_enc", "subjects.huawei_id"},
    {"subjects", "id", nullptr, "contact_enc", "subjects.contact"},
    {"request_data", "request_id", "step_id", "data_enc", "request_data.data"},
    {"exports", "request_id", nullptr, "package_enc", "exports.package"},
    {"notices", "id", nullptr, "payload_enc", "notices.payload"},
    {"notices", "id", nullptr, "ack_note_enc", "notices.ack_note"},
};

std::string what_of(const SealedColumn& c) { return std::string(c.table) + "." + c.column; }

// "('id1', 'id2')": the previous master keys' ids, which the walk moves
// from. A value under a key no longer configured is left alone (nothing
// opens it), so it cannot stall the walk; `keys status` still counts it.
// The ids are 12 hex digits the key ring derived: safe to inline.
std::string previous_ids(const crypto::KeyRing& keys) {
  std::string list;
  for (const auto& id : keys.previous_key_ids()) list += (list.empty() ? "'" : ", '") + id + "'";
  return "(" + list + ")";
}

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
    counts.legacy_subjects = legacy::count_legacy_subjects(sql);
  });
  return counts;
}

bool rotate_batch(Database& main, Database& store, const crypto::KeyRing& keys, int batch, RotationProgress& progress,
                  long long& unreadable) {
  const std::string current = keys.key_id();
  if (keys.previous_key_ids().empty()) return false;  // nothing else opens anything
  const std::string previous = previous_ids(keys);
  // Subject keys first: they are what most data hangs from.
  bool any = false;
  store.with_session([&](soci::session& sql) {
    std::vector<std::pair<std::string, std::string>> rows;
    soci::rowset<soci::row> found =
        (sql.prepare << "SELECT id, wrapped FROM subject_keys WHERE master_key_id IN " + previous +
                            " AND master_key_id <> :m ORDER BY id LIMIT :n",
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
      soci::statement st =
          (sql.prepare << "UPDATE subject_keys SET wrapped = :w, master_key_id = :m WHERE id = :id AND wrapped = :old",
           soci::use(again, "w"), soci::use(current, "m"), soci::use(id, "id"), soci::use(wrapped, "old"));
      st.execute(true);
      if (st.get_affected_rows() == 1) ++progress.done;  // else destroyed meanwhile: nothing to re-wrap
      any = true;
    }
    tr.commit();
    progress.what = "subject keys";
  });
  if (any) return true;  // a batch of only keys nothing opens ends this part of the walk
  auto again = [&keys](const SealedColumn& c) {
    return [&keys, &c](const std::string& value) -> std::optional<std::string> {
      auto plain = keys.open(value, c.context);
      if (!plain) return std::nullopt;
      return keys.seal(*plain, c.context);
    };
  };
  for (const auto& c : kSealed) {
    long long moved = 0, lost = 0;
    main.with_session([&](soci::session& sql) {
      soci::transaction tr(sql);
      // Unlocked: a row another writer changed meanwhile is left for the next batch.
      const auto r = reseal_master_sealed(sql, c,
                                          std::string("substr(") + c.column + ", 4, 12) IN " + previous +
                                              " AND substr(" + c.column + ", 4, 12) <> :f",
                                          current, batch, false, again(c));
      moved = r.moved;
      lost = r.lost;
      unreadable += r.unreadable;
      tr.commit();
    });
    // Values no key opens stay where they are; a batch of only those ends
    // this column's walk. One another writer changed meanwhile is read again.
    if (moved == 0 && lost == 0) continue;
    progress.what = what_of(c);
    progress.done += moved;
    return true;
  }
  return false;
}

Resealed reseal_master_sealed(soci::session& sql, const SealedColumn& c, const std::string& filter,
                              const std::string& filter_value, int limit, bool lock,
                              const std::function<std::optional<std::string>(const std::string&)>& reseal) {
  const std::string keys_sql = std::string(c.key1) + (c.key2 ? std::string(", ") + c.key2 : std::string());
  std::string query = "SELECT " + keys_sql + ", " + c.column + " FROM " + c.table + " WHERE " + c.column +
                      " LIKE 'v1.%' AND (" + filter + ")";
  if (lock) query += " ORDER BY " + keys_sql;  // one order for every locker: no deadlock between them
  if (limit > 0) query += " LIMIT " + std::to_string(limit);
  if (lock && is_postgresql(sql)) query += " FOR UPDATE";
  struct Row {
    std::string k1, k2, value;
  };
  std::vector<Row> rows;
  {
    soci::rowset<soci::row> found = (sql.prepare << query, soci::use(filter_value, "f"));
    const std::size_t v = c.key2 ? 2 : 1;
    for (const auto& r : found) {
      rows.push_back({r.get<std::string>(0), c.key2 ? r.get<std::string>(1) : "", r.get<std::string>(v)});
    }
  }
  const std::string update = std::string("UPDATE ") + c.table + " SET " + c.column + " = :v WHERE " + c.key1 +
                             " = :k1" + (c.key2 ? std::string(" AND ") + c.key2 + " = :k2" : "") + " AND " +
                             c.column + " = :old";
  Resealed out;
  for (const auto& row : rows) {
    auto again = reseal(row.value);
    if (!again) {
      ++out.unreadable;
      continue;
    }
    soci::statement st = c.key2 ? (sql.prepare << update, soci::use(*again, "v"), soci::use(row.k1, "k1"),
                                   soci::use(row.k2, "k2"), soci::use(row.value, "old"))
                                : (sql.prepare << update, soci::use(*again, "v"), soci::use(row.k1, "k1"),
                                   soci::use(row.value, "old"));
    st.execute(true);
    if (st.get_affected_rows() == 1) {
      ++out.moved;
    } else {
      ++out.lost;
    }
  }
  return out;
}

}  // namespace privacyd
