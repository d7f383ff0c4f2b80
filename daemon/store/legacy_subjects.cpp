#include "daemon/store/legacy_subjects.hpp"

#include <boost/json.hpp>
#include <soci/soci.h>

#include "daemon/audit/audit.hpp"
#include "daemon/store/database.hpp"
#include "daemon/store/key_rotation.hpp"
#include "daemon/store/rows.hpp"

namespace privacyd::legacy {

namespace {

// Still under the master key alone and never shredded (a shredded subject's
// identifier may stay, under the master key, until its retention holds end;
// then it goes). The partial index subjects_legacy covers exactly this.
constexpr const char* kLegacy = "s.key_id IS NULL AND s.shredded_at IS NULL";

// A subject's own values, besides its row: what was collected for its
// requests, their packages and their notices, in the order the retention
// sweep locks them. A partner's note on an acknowledgement, the Partner
// Center's callbacks and reminders to partners are sealed under the master
// key by design (nobody's personal data) and stay.
struct Owned {
  SealedColumn column;
  const char* also;  // what else makes a row the subject's own ("" for nothing)
};
constexpr Owned kOwned[] = {
    {{"notices", "id", nullptr, "payload_enc", "notices.payload"},
     "channel <> 'partner_center' AND reminder_of IS NULL"},
    {{"request_data", "request_id", "step_id", "data_enc", "request_data.data"}, ""},
    {{"exports", "request_id", nullptr, "package_enc", "exports.package"}, ""},
};

// The rows of `owned` that belong to the subject `subject` names (SQL: a
// bind or a column).
std::string rows_of(const Owned& owned, std::string_view subject) {
  std::string where = "request_id IN (SELECT id FROM requests WHERE subject_id = " + std::string(subject) + ")";
  if (*owned.also != '\0') where += std::string(" AND ") + owned.also;
  return where;
}

// A subject that has a key but still owns values under the master key: an
// older intake gave it the key without moving what it had, or a step that
// outlived its claim wrote under the key it had loaded.
const std::string& straggler() {
  static const std::string sql = [] {
    std::string s = "s.key_id IS NOT NULL AND (s.huawei_id_enc LIKE 'v1.%' OR s.contact_enc LIKE 'v1.%'";
    for (const auto& owned : kOwned) {
      s += std::string(" OR EXISTS (SELECT 1 FROM ") + owned.column.table + " WHERE " + owned.column.column +
           " LIKE 'v1.%' AND " + rows_of(owned, "s.id") + ")";
    }
    return s + ")";
  }();
  return sql;
}

// A request of the subject that a step may be driving now, or soon: open
// (a failed one may be retried) or leased.
constexpr const char* kBusy =
    "EXISTS (SELECT 1 FROM requests b WHERE b.subject_id = s.id"
    " AND (b.status NOT IN ('completed', 'rejected') OR b.lease_until >= :now))";

}  // namespace

Step move_next(soci::session& sql, const SubjectSealer& sealer, const std::string& after, UnixMillis at) {
  const long long now = at;
  Step step;
  std::string key, huawei_enc, old_contact;
  soci::indicator key_ind = soci::i_null, contact_ind = soci::i_null;
  // Busy subjects are left out here (and counted by count_legacy_subjects),
  // and looked at again under the lock below.
  sql << std::string("SELECT s.id, s.key_id, s.huawei_id_enc, s.contact_enc FROM subjects s WHERE s.id > :after") +
             " AND ((" + kLegacy + ") OR (" + straggler() + ")) AND NOT " + kBusy + " ORDER BY s.id LIMIT 1" +
             skip_locked(sql, "s"),
      soci::use(after, "after"), soci::use(now, "now"), soci::into(step.subject_id), soci::into(key, key_ind),
      soci::into(huawei_enc), soci::into(old_contact, contact_ind);
  if (!sql.got_data()) return step;
  const std::string& subject = step.subject_id;
  // Its row is locked now, so no request of it can be stored (intake
  // writes the subject's row first); one stored meanwhile shows here.
  long long open = 0;
  sql << "SELECT COUNT(*) FROM requests WHERE subject_id = :s"
         " AND (status NOT IN ('completed', 'rejected') OR lease_until >= :now)",
      soci::use(subject, "s"), soci::use(now, "now"), soci::into(open);
  if (open > 0) {
    step.outcome = Step::Outcome::busy;
    return step;
  }
  const bool keyed = key_ind == soci::i_ok && !key.empty();
  // The identifier must open, or the subject cannot be moved (nor found
  // again under a new key).
  auto identifier = sealer.open(huawei_enc, "subjects.huawei_id");
  if (!identifier) {
    step.outcome = Step::Outcome::unreadable;
    return step;
  }
  if (!keyed) key = sealer.new_key(at);
  if (key.empty()) return step;  // no key store: nothing to move to
  const std::string huawei =
      huawei_enc.starts_with("v1.") ? sealer.seal(key, *identifier, "subjects.huawei_id") : huawei_enc;
  step.values = huawei == huawei_enc ? 0 : 1;
  std::string contact;
  if (contact_ind == soci::i_ok && old_contact.starts_with("v1.")) {
    if (auto again = sealer.reseal(key, old_contact, "subjects.contact")) {
      contact = *again;
      ++step.values;
    } else {
      ++step.unreadable;  // stays as it is
    }
  }
  soci::indicator new_contact_ind = contact.empty() ? soci::i_null : soci::i_ok;
  soci::indicator old_key_ind = keyed ? soci::i_ok : soci::i_null;
  const int had_key = keyed ? 1 : 0;
  // Fenced on what was read (SQLite; on PostgreSQL the row is locked).
  soci::statement update =
      (sql.prepare << "UPDATE subjects SET key_id = :key, huawei_id_enc = :huawei,"
                      " contact_enc = COALESCE(:contact, contact_enc) WHERE id = :s AND huawei_id_enc = :old"
                      " AND ((:keyed = 0 AND key_id IS NULL AND shredded_at IS NULL) OR key_id = :old_key)",
       soci::use(key, "key"), soci::use(huawei, "huawei"), soci::use(contact, new_contact_ind, "contact"),
       soci::use(subject, "s"), soci::use(huawei_enc, "old"), soci::use(had_key, "keyed"),
       soci::use(key, old_key_ind, "old_key"));
  update.execute(true);
  if (update.get_affected_rows() != 1) throw DatabaseConflict("a subject changed while it was moved to its own key");
  for (const auto& owned : kOwned) {
    const auto& c = owned.column;
    auto reseal = [&sealer, &key, &c](const std::string& sealed) { return sealer.reseal(key, sealed, c.context); };
    const auto r = reseal_master_sealed(sql, c, rows_of(owned, ":f"), subject, 0, true, reseal);
    if (r.lost > 0) throw DatabaseConflict("a subject's value changed while it was moved to its own key");
    step.values += r.moved;
    step.unreadable += r.unreadable;
  }
  audit::append(sql, now, "", keyed ? "subject.resealed" : "subject_key.assigned",
                boost::json::serialize(boost::json::object{
                    {"subject_id", subject}, {"key_id", key}, {"values", step.values}, {"unreadable", step.unreadable}}));
  step.outcome = Step::Outcome::moved;
  return step;
}

long long count_legacy_subjects(soci::session& sql) {
  long long n = 0;
  soci::rowset<soci::row> rows = (sql.prepare << std::string("SELECT COUNT(*) FROM subjects s WHERE ") + kLegacy);
  for (const auto& r : rows) n = row_integer(r, 0);
  return n;
}

}  // namespace privacyd::legacy
