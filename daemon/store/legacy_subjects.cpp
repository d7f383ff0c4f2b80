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
// requests, their packages and their notices. A partner's note on an
// acknowledgement is the partner's, not the subject's, and stays.
constexpr const char* kOfSubject = "request_id IN (SELECT id FROM requests WHERE subject_id = :f)";
constexpr SealedColumn kOwned[] = {
    {"request_data", "request_id", "step_id", "data_enc", "request_data.data"},
    {"exports", "request_id", nullptr, "package_enc", "exports.package"},
    {"notices", "id", nullptr, "payload_enc", "notices.payload"},
};

bool postgres(soci::session& sql) { return sql.get_backend_name() == "postgresql"; }

}  // namespace

Step move_next(soci::session& sql, const SubjectSealer& sealer, const std::string& after, UnixMillis at) {
  const long long now = at;
  Step step;
  std::string huawei_enc, old_contact;
  soci::indicator contact_ind = soci::i_null;
  sql << std::string("SELECT s.id, s.huawei_id_enc, s.contact_enc FROM subjects s WHERE ") + kLegacy +
             " AND s.id > :after ORDER BY s.id LIMIT 1" + (postgres(sql) ? " FOR UPDATE SKIP LOCKED" : ""),
      soci::use(after, "after"), soci::into(step.subject_id), soci::into(huawei_enc),
      soci::into(old_contact, contact_ind);
  if (!sql.got_data()) return step;
  const std::string& subject = step.subject_id;
  // Its row is locked, so no request of it can be stored now; one that is
  // open may have a step running, or about to be.
  long long open = 0;
  sql << "SELECT COUNT(*) FROM requests WHERE subject_id = :s"
         " AND (status NOT IN ('completed', 'rejected') OR lease_until >= :now)",
      soci::use(subject, "s"), soci::use(now, "now"), soci::into(open);
  if (open > 0) {
    step.outcome = Step::Outcome::busy;
    return step;
  }
  // The identifier must open, or the subject cannot be moved (nor found
  // again under a new key).
  auto identifier = sealer.open(huawei_enc, "subjects.huawei_id");
  if (!identifier) {
    step.outcome = Step::Outcome::unreadable;
    return step;
  }
  const std::string key = sealer.new_key(at);
  if (key.empty()) return step;  // no key store: nothing to move to
  const std::string huawei = sealer.seal(key, *identifier, "subjects.huawei_id");
  step.values = 1;
  std::string contact;
  if (contact_ind == soci::i_ok && !old_contact.empty()) {
    if (auto again = sealer.reseal(key, old_contact, "subjects.contact")) {
      contact = *again;
      ++step.values;
    } else {
      ++step.unreadable;  // stays as it is
    }
  }
  soci::indicator new_contact_ind = contact.empty() ? soci::i_null : soci::i_ok;
  soci::statement update =
      (sql.prepare << "UPDATE subjects SET key_id = :key, huawei_id_enc = :huawei,"
                      " contact_enc = COALESCE(:contact, contact_enc) WHERE id = :s AND huawei_id_enc = :old"
                      " AND key_id IS NULL AND shredded_at IS NULL",
       soci::use(key, "key"), soci::use(huawei, "huawei"), soci::use(contact, new_contact_ind, "contact"),
       soci::use(subject, "s"), soci::use(huawei_enc, "old"));
  update.execute(true);
  if (update.get_affected_rows() != 1) throw DatabaseConflict("a subject changed while it was moved to its own key");
  for (const auto& c : kOwned) {
    auto reseal = [&sealer, &key, &c](const std::string& sealed) { return sealer.reseal(key, sealed, c.context); };
    const auto r = reseal_master_sealed(sql, c, kOfSubject, subject, 0, true, reseal);
    if (r.lost > 0) throw DatabaseConflict("a subject's value changed while it was moved to its own key");
    step.values += r.moved;
    step.unreadable += r.unreadable;
  }
  audit::append(sql, now, "", "subject_key.assigned",
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
