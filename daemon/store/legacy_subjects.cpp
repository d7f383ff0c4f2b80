#include "daemon/store/legacy_subjects.hpp"

#include <boost/json.hpp>
#include <soci/soci.h>
#include <vector>

#include "daemon/audit/audit.hpp"
#include "daemon/store/key_rotation.hpp"
#include "daemon/store/rows.hpp"

namespace privacyd::legacy {

namespace {

// Still under the master key, not being shredded, and never shredded
// (a shredded subject's identifier may stay, under the master key, until
// its retention holds end; then it goes).
constexpr const char* kLegacy = "s.key_id IS NULL AND s.shredded_at IS NULL AND s.shred_after IS NULL";

// A subject's own values, besides its row: what was collected for its
// requests, their packages and their notices. A partner's note on an
// acknowledgement is the partner's, not the subject's, and stays.
constexpr const char* kOfSubject = "request_id IN (SELECT id FROM requests WHERE subject_id = :f)";
constexpr SealedColumn kOwned[] = {
    {"request_data", "request_id", "step_id", "data_enc", "request_data.data"},
    {"exports", "request_id", nullptr, "package_enc", "exports.package"},
    {"notices", "id", nullptr, "payload_enc", "notices.payload"},
};

bool postgres(soci::session& sql) { return sql.get_backend_name() == "postgresql"; }

// Whether a step is driving one of the subject's requests now. On
// PostgreSQL the requests are locked until the move commits: a claim
// (which skips locked rows) cannot start a step on the old key meanwhile.
bool busy(soci::session& sql, const std::string& subject, long long now) {
  soci::rowset<soci::row> rows =
      (sql.prepare << std::string("SELECT lease_until FROM requests WHERE subject_id = :s") +
                          (postgres(sql) ? " FOR UPDATE" : ""),
       soci::use(subject, "s"));
  bool driven = false;
  for (const auto& r : rows) {
    if (r.get_indicator(0) != soci::i_null && row_integer(r, 0) >= now) driven = true;
  }
  return driven;
}

}  // namespace

Moved move_to_subject_keys(soci::session& sql, const SubjectSealer& sealer, UnixMillis at, int limit,
                           const std::string& after) {
  const long long now = at;
  Moved moved;
  std::vector<std::pair<std::string, std::string>> found;  // id, huawei_id_enc
  {
    soci::rowset<soci::row> rows =
        (sql.prepare << std::string("SELECT s.id, s.huawei_id_enc FROM subjects s WHERE ") + kLegacy +
                            " AND s.id > :after ORDER BY s.id LIMIT " + std::to_string(limit) +
                            (postgres(sql) ? " FOR UPDATE OF s SKIP LOCKED" : ""),
         soci::use(after, "after"));
    for (const auto& r : rows) found.emplace_back(r.get<std::string>(0), r.get<std::string>(1));
  }
  moved.examined = static_cast<int>(found.size());
  if (!found.empty()) moved.last = found.back().first;
  for (const auto& [subject, huawei_enc] : found) {
    if (busy(sql, subject, now)) continue;  // the next pass
    // The identifier first: it must open, or the subject cannot be moved
    // (its data could not be found again under a new key either).
    auto identifier = sealer.open(huawei_enc, "subjects.huawei_id");
    if (!identifier) {
      ++moved.unreadable;
      continue;
    }
    const std::string key = sealer.new_key(at);
    if (key.empty()) break;  // no key store: nothing to move to
    long long unreadable = 0;
    auto reseal_as = [&](const char* context) {
      return [&sealer, &key, context](const std::string& sealed) { return sealer.reseal(key, sealed, context); };
    };
    const std::string huawei = sealer.seal(key, *identifier, "subjects.huawei_id");
    long long values = 1;
    std::string contact, old_contact;  // (the identifier is one value)
    soci::indicator contact_ind = soci::i_null;
    sql << "SELECT contact_enc FROM subjects WHERE id = :s", soci::use(subject, "s"),
        soci::into(old_contact, contact_ind);
    if (contact_ind == soci::i_ok && !old_contact.empty()) {
      if (auto again = reseal_as("subjects.contact")(old_contact)) {
        contact = *again;
        ++values;
      } else {
        contact = old_contact;
        ++unreadable;
      }
    } else {
      contact_ind = soci::i_null;
    }
    // Fenced: intake may have given the subject a key meanwhile (SQLite; on
    // PostgreSQL the row is locked), and then this move is not needed.
    soci::statement update =
        (sql.prepare << "UPDATE subjects SET key_id = :key, huawei_id_enc = :huawei,"
                        " contact_enc = COALESCE(:contact, contact_enc) WHERE id = :s AND huawei_id_enc = :old"
                        " AND key_id IS NULL AND shredded_at IS NULL AND shred_after IS NULL",
         soci::use(key, "key"), soci::use(huawei, "huawei"), soci::use(contact, contact_ind, "contact"),
         soci::use(subject, "s"), soci::use(huawei_enc, "old"));
    update.execute(true);
    if (update.get_affected_rows() != 1) continue;
    for (const auto& c : kOwned) values += reseal_master_sealed(sql, c, kOfSubject, subject, 0, reseal_as(c.context), unreadable);
    audit::append(sql, now, "", "subject_key.assigned",
                  boost::json::serialize(boost::json::object{
                      {"subject_id", subject}, {"key_id", key}, {"values", values}, {"unreadable", unreadable}}));
    ++moved.subjects;
    moved.values += values;
    moved.unreadable += unreadable;
  }
  return moved;
}

long long count_legacy_subjects(soci::session& sql) {
  long long n = 0;
  soci::rowset<soci::row> rows = (sql.prepare << std::string("SELECT COUNT(*) FROM subjects s WHERE ") + kLegacy);
  for (const auto& r : rows) n = row_integer(r, 0);
  return n;
}

}  // namespace privacyd::legacy
