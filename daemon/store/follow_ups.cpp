#include "daemon/store/follow_ups.hpp"

#include <boost/json.hpp>
#include <soci/soci.h>

#include "daemon/audit/audit.hpp"
#include "daemon/store/rows.hpp"

namespace privacyd::follow_ups {

namespace json = boost::json;

FetchedPackage take_package(soci::session& sql, const std::string& digest, int max_downloads, UnixMillis at) {
  FetchedPackage out;
  if (digest.empty()) return out;
  const long long now = at;
  soci::rowset<soci::row> rows =
      (sql.prepare << std::string("SELECT e.request_id, e.package_enc, e.downloads, e.expires_at, e.erased_at"
                                  " FROM package_links l JOIN exports e ON e.request_id = l.request_id"
                                  " WHERE l.token_sha256 = :d") +
                          (is_postgresql(sql) ? " FOR UPDATE OF e" : ""),
       soci::use(digest, "d"));
  std::optional<long long> expires, erased;
  int downloads = 0;
  bool found = false;
  for (const auto& r : rows) {
    found = true;
    out.request_id = r.get<std::string>(0);
    out.package_enc = r.get<std::string>(1);
    downloads = r.get<int>(2);
    if (r.get_indicator(3) != soci::i_null) expires = row_integer(r, 3);
    if (r.get_indicator(4) != soci::i_null) erased = row_integer(r, 4);
  }
  if (!found) return out;
  if (erased || !expires || *expires <= now || downloads >= max_downloads || out.package_enc.empty()) {
    out.result = Fetch::gone;
    out.package_enc.clear();
    return out;
  }
  soci::statement update =
      (sql.prepare << "UPDATE exports SET downloads = downloads + 1 WHERE request_id = :r AND downloads = :n",
       soci::use(out.request_id, "r"), soci::use(downloads, "n"));
  update.execute(true);
  if (update.get_affected_rows() != 1) {  // SQLite: another download took this one between
    out.result = Fetch::gone;
    out.package_enc.clear();
    return out;
  }
  out.result = Fetch::ok;
  out.download = downloads + 1;
  audit::append(sql, now, out.request_id, "package.downloaded",
                json::serialize(json::object{{"download", out.download}, {"of", max_downloads}}));
  return out;
}

int erase_expired_packages(soci::session& sql, UnixMillis at, int limit) {
  const long long now = at;
  std::vector<std::string> ids(static_cast<std::size_t>(limit));
  sql << std::string("SELECT request_id FROM exports WHERE expires_at <= :now AND erased_at IS NULL"
                     " ORDER BY expires_at LIMIT :n") +
             skip_locked(sql),
      soci::use(now, "now"), soci::use(limit, "n"), soci::into(ids);
  for (const auto& id : ids) {
    sql << "UPDATE exports SET package_enc = '', erased_at = :now WHERE request_id = :r AND erased_at IS NULL",
        soci::use(now, "now"), soci::use(id, "r");
    audit::append(sql, now, id, "package.erased", R"({"why":"expired"})");
  }
  return static_cast<int>(ids.size());
}

namespace {

const char* kAckColumns = "SELECT id, request_id, channel, recipient, ack_outcome, reminder_of FROM notices";

std::optional<AckTarget> one_target(soci::rowset<soci::row>& rows, std::optional<std::string>& reminder_of) {
  std::optional<AckTarget> t;
  for (const auto& r : rows) {
    AckTarget x;
    x.id = r.get<std::string>(0);
    x.request_id = r.get<std::string>(1);
    x.channel = r.get<std::string>(2);
    x.recipient = r.get<std::string>(3);
    if (r.get_indicator(4) != soci::i_null) x.outcome = r.get<std::string>(4);
    if (r.get_indicator(5) != soci::i_null) reminder_of = r.get<std::string>(5);
    t = std::move(x);
  }
  return t;
}

std::optional<AckTarget> resolve(soci::session& sql, std::optional<AckTarget> t, std::optional<std::string> reminder_of) {
  if (!t || !reminder_of) return t;
  std::optional<std::string> again;
  soci::rowset<soci::row> rows = (sql.prepare << std::string(kAckColumns) + " WHERE id = :id", soci::use(*reminder_of, "id"));
  return one_target(rows, again);  // a reminder's first notice is never a reminder itself
}

}  // namespace

std::optional<AckTarget> find_ack_target(soci::session& sql, const std::string& id) {
  std::optional<std::string> reminder_of;
  soci::rowset<soci::row> rows = (sql.prepare << std::string(kAckColumns) + " WHERE id = :id", soci::use(id, "id"));
  auto t = one_target(rows, reminder_of);
  return resolve(sql, std::move(t), std::move(reminder_of));
}

std::optional<AckTarget> find_ack_target_by_token(soci::session& sql, const std::string& digest) {
  if (digest.empty()) return std::nullopt;
  std::optional<std::string> reminder_of;
  soci::rowset<soci::row> rows =
      (sql.prepare << std::string(kAckColumns) + " WHERE ack_token_sha256 = :d", soci::use(digest, "d"));
  auto t = one_target(rows, reminder_of);
  return resolve(sql, std::move(t), std::move(reminder_of));
}

Ack acknowledge(soci::session& sql, const std::string& id, const std::string& outcome, const std::string& note_enc,
                const std::string& by, UnixMillis at, std::string* acknowledged) {
  auto target = find_ack_target(sql, id);
  if (!target) return Ack::not_found;
  if (acknowledged != nullptr) *acknowledged = target->id;
  if (target->channel != "partner") return Ack::not_acknowledgeable;
  const long long now = at;
  soci::indicator note_ind = note_enc.empty() ? soci::i_null : soci::i_ok;
  soci::statement update =
      (sql.prepare << "UPDATE notices SET ack_outcome = :o, ack_note_enc = :note, ack_by = :by, acknowledged_at = :at,"
                      " next_reminder_at = NULL WHERE id = :id AND ack_outcome IS NULL",
       soci::use(outcome, "o"), soci::use(note_enc, note_ind, "note"), soci::use(by, "by"), soci::use(now, "at"),
       soci::use(target->id, "id"));
  update.execute(true);
  if (update.get_affected_rows() != 1) {
    // Acknowledged already (perhaps a moment ago, by another instance).
    std::string recorded;
    sql << "SELECT ack_outcome FROM notices WHERE id = :id", soci::use(target->id, "id"), soci::into(recorded);
    return recorded == outcome ? Ack::same : Ack::conflict;
  }
  audit::append(sql, now, target->request_id, "notice.acknowledged",
                json::serialize(json::object{{"notice_id", target->id}, {"outcome", outcome}, {"by", by}}));
  return Ack::recorded;
}

std::vector<DueReminder> due_reminders(soci::session& sql, UnixMillis at, int limit) {
  const long long now = at;
  std::vector<DueReminder> out;
  soci::rowset<soci::row> rows =
      (sql.prepare << std::string("SELECT id, request_id, recipient, template, created_at, ack_due_at, reminders_sent,"
                                  " ack_token_sha256 FROM notices WHERE next_reminder_at <= :now AND channel = 'partner'"
                                  " AND status = 'delivered' AND ack_outcome IS NULL AND reminder_of IS NULL"
                                  " ORDER BY next_reminder_at LIMIT ") +
                          std::to_string(limit) + skip_locked(sql),
       soci::use(now, "now"));
  for (const auto& r : rows) {
    DueReminder d;
    d.id = r.get<std::string>(0);
    d.request_id = r.get<std::string>(1);
    d.partner_id = r.get<std::string>(2);
    d.template_name = r.get<std::string>(3);
    d.created_at = row_integer(r, 4);
    d.ack_due_at = r.get_indicator(5) == soci::i_null ? 0 : row_integer(r, 5);
    d.reminders_sent = r.get<int>(6);
    d.by_link = r.get_indicator(7) != soci::i_null;
    out.push_back(std::move(d));
  }
  return out;
}

bool record_reminder(soci::session& sql, const DueReminder& first, const runs::Transition::Notice& reminder,
                     std::optional<UnixMillis> next, UnixMillis at) {
  const long long now = at;
  const int sent = first.reminders_sent + 1;
  long long next_at = next.value_or(0);
  soci::indicator next_ind = next ? soci::i_ok : soci::i_null;
  soci::statement update =
      (sql.prepare << "UPDATE notices SET reminders_sent = :sent, next_reminder_at = :next"
                      " WHERE id = :id AND reminders_sent = :before AND ack_outcome IS NULL",
       soci::use(sent, "sent"), soci::use(next_at, next_ind, "next"), soci::use(first.id, "id"),
       soci::use(first.reminders_sent, "before"));
  update.execute(true);
  if (update.get_affected_rows() != 1) return false;
  runs::insert_notices(sql, first.request_id, -1, {reminder}, now);
  sql << "UPDATE notices SET reminder_of = :first WHERE id = :id", soci::use(first.id, "first"),
      soci::use(reminder.id, "id");
  audit::append(sql, now, first.request_id, "notice.reminded",
                json::serialize(json::object{{"notice_id", first.id}, {"reminder_id", reminder.id}, {"reminder", sent}}));
  return true;
}

std::optional<UnixMillis> next_reminder_at(UnixMillis created_at, const std::vector<long long>& offsets_ms, int sent,
                                           UnixMillis now) {
  for (std::size_t i = static_cast<std::size_t>(std::max(sent, 0)); i < offsets_ms.size(); ++i) {
    if (created_at + offsets_ms[i] > now) return created_at + offsets_ms[i];
  }
  return std::nullopt;
}

void postpone_reminder(soci::session& sql, const std::string& id, std::optional<UnixMillis> until) {
  const long long at = until.value_or(0);
  soci::indicator ind = until ? soci::i_ok : soci::i_null;
  sql << "UPDATE notices SET next_reminder_at = :at WHERE id = :id AND ack_outcome IS NULL", soci::use(at, ind, "at"),
      soci::use(id, "id");
}

std::vector<Shredded> shred_due(soci::session& sql, UnixMillis at, int limit) {
  const long long now = at;
  std::vector<Shredded> done;
  // Only subjects that nothing pending still needs: a request not finished
  // (a failed one may be retried, and would need the data), a notice not
  // yet delivered. One that waits never stands in the way of those behind
  // it. A retention hold does not wait here: it needs only the identifier,
  // which stays sealed (under the doomed key) until the hold is over. A
  // dead callback or reminder does not wait: its payload goes too.
  soci::rowset<soci::row> rows =
      (sql.prepare << std::string("SELECT s.id, s.key_id FROM subjects s WHERE s.shred_after IS NOT NULL"
                                  " AND s.shred_after <= :now"
                                  " AND NOT EXISTS (SELECT 1 FROM requests r WHERE r.subject_id = s.id"
                                  "   AND r.status NOT IN ('completed', 'rejected'))"
                                  " AND NOT EXISTS (SELECT 1 FROM notices n JOIN requests r ON r.id = n.request_id"
                                  "   WHERE r.subject_id = s.id AND n.status = 'pending')"
                                  " ORDER BY s.shred_after LIMIT ") +
                          std::to_string(limit) + skip_locked(sql, "s"),
       soci::use(now, "now"));
  std::vector<Shredded> due;
  for (const auto& r : rows) {
    due.push_back({r.get<std::string>(0), r.get_indicator(1) == soci::i_null ? std::string() : r.get<std::string>(1)});
  }
  for (const auto& s : due) {
    sql << "DELETE FROM request_data WHERE request_id IN (SELECT id FROM requests WHERE subject_id = :s)",
        soci::use(s.subject_id, "s");
    sql << "UPDATE exports SET package_enc = '', erased_at = COALESCE(erased_at, :now)"
           " WHERE request_id IN (SELECT id FROM requests WHERE subject_id = :s)",
        soci::use(now, "now"), soci::use(s.subject_id, "s");
    // Not a notice still pending (one queued after the check above, on
    // PostgreSQL): it needs its payload.
    sql << "UPDATE notices SET payload_enc = '' WHERE status <> 'pending'"
           " AND request_id IN (SELECT id FROM requests WHERE subject_id = :s)",
        soci::use(s.subject_id, "s");
    sql << "UPDATE subjects SET contact_enc = NULL, locale = NULL, key_id = NULL, shred_after = NULL,"
           " shredded_at = :now WHERE id = :s",
        soci::use(now, "now"), soci::use(s.subject_id, "s");
    // The identifier goes with the key, once no hold needs it; a subject
    // sealed before subject keys has a placeholder in the key's place.
    const std::string doomed = s.key_id.empty() ? "master:" + s.subject_id : s.key_id;
    sql << "INSERT INTO doomed_keys(key_id, subject_id, doomed_at) VALUES (:k, :s, :now)"
           " ON CONFLICT (key_id) DO NOTHING",
        soci::use(doomed, "k"), soci::use(s.subject_id, "s"), soci::use(now, "now");
    audit::append(sql, now, "", "subject.shredded",
                  json::serialize(json::object{{"subject_id", s.subject_id},
                                               {"key_id", s.key_id.empty() ? json::value(nullptr) : json::value(s.key_id)}}));
    done.push_back(s);
  }
  return done;
}

int ready_doomed_keys(soci::session& sql, UnixMillis at, int limit) {
  const long long now = at;
  std::vector<std::pair<std::string, std::string>> ready;
  soci::rowset<soci::row> rows =
      (sql.prepare << std::string("SELECT d.key_id, d.subject_id FROM doomed_keys d WHERE d.ready_at IS NULL"
                                  " AND NOT EXISTS (SELECT 1 FROM retention_holds h WHERE h.subject_id = d.subject_id"
                                  "   AND h.status = 'held') ORDER BY d.doomed_at LIMIT ") +
                          std::to_string(limit) + skip_locked(sql, "d"));
  for (const auto& r : rows) ready.emplace_back(r.get<std::string>(0), r.get<std::string>(1));
  for (const auto& [key, subject] : ready) {
    // The identifier is still sealed under this key unless a later event
    // gave the subject a new one.
    sql << "UPDATE subjects SET huawei_id_enc = '' WHERE id = :s AND key_id IS NULL", soci::use(subject, "s");
    sql << "UPDATE doomed_keys SET ready_at = :now WHERE key_id = :k", soci::use(now, "now"), soci::use(key, "k");
    audit::append(sql, now, "", "subject_key.destroyed",
                  json::serialize(json::object{{"subject_id", subject}, {"key_id", key}}));
  }
  return static_cast<int>(ready.size());
}

std::vector<std::string> keys_to_destroy(soci::session& sql, int limit) {
  std::vector<std::string> ids(static_cast<std::size_t>(limit));
  sql << "SELECT key_id FROM doomed_keys WHERE ready_at IS NOT NULL LIMIT :n", soci::use(limit, "n"), soci::into(ids);
  return ids;
}

void keys_destroyed(soci::session& sql, const std::vector<std::string>& key_ids) {
  for (const auto& id : key_ids) sql << "DELETE FROM doomed_keys WHERE key_id = :k", soci::use(id, "k");
}

Swept sweep_own_retention(soci::session& sql, const OwnRetention& rules, UnixMillis at, int limit) {
  Swept swept;
  auto run = [&](const std::string& text, long long before) {
    soci::statement st = (sql.prepare << text, soci::use(before, "before"), soci::use(limit, "n"));
    st.execute(true);
    return st.get_affected_rows();
  };
  swept.deliveries = run(
      "DELETE FROM webhook_deliveries WHERE webhook_id IN"
      " (SELECT webhook_id FROM webhook_deliveries WHERE received_at < :before ORDER BY received_at LIMIT :n)",
      rules.deliveries_before);
  // Delivered only: a pending notice is still to be sent, a dead one may be retried.
  swept.notice_payloads = run(
      "UPDATE notices SET payload_enc = '' WHERE id IN"
      " (SELECT id FROM notices WHERE status = 'delivered' AND delivered_at < :before AND payload_enc <> ''"
      " ORDER BY delivered_at LIMIT :n)",
      rules.notice_payloads_before);
  // Only once the package step has committed: before that, a re-run of it
  // (at least once) needs what was collected.
  swept.collected = run(
      "DELETE FROM request_data WHERE request_id IN"
      " (SELECT s.request_id FROM request_steps s WHERE s.action = 'export.package' AND s.status = 'succeeded'"
      "  AND s.finished_at < :before AND EXISTS (SELECT 1 FROM request_data d WHERE d.request_id = s.request_id)"
      "  ORDER BY s.finished_at LIMIT :n)",
      rules.collected_before);
  if (swept.total() > 0) {
    audit::append(sql, at, "", "retention.swept",
                  json::serialize(json::object{{"deliveries", swept.deliveries},
                                               {"notice_payloads", swept.notice_payloads},
                                               {"collected", swept.collected}}));
  }
  return swept;
}

std::vector<std::pair<std::string, long long>> overdue_by_partner(soci::session& sql, UnixMillis at) {
  const long long now = at;
  std::vector<std::pair<std::string, long long>> out;
  soci::rowset<soci::row> rows =
      (sql.prepare << "SELECT recipient, COUNT(*) FROM notices WHERE channel = 'partner' AND reminder_of IS NULL"
                      " AND ack_outcome IS NULL AND ack_due_at < :now GROUP BY recipient ORDER BY recipient",
       soci::use(now, "now"));
  for (const auto& r : rows) out.emplace_back(r.get<std::string>(0), row_integer(r, 1));
  return out;
}

}  // namespace privacyd::follow_ups
