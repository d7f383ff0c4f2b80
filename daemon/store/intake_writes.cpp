#include "daemon/store/intake_writes.hpp"

#include <boost/json.hpp>
#include <soci/soci.h>

#include "daemon/audit/audit.hpp"
#include "daemon/store/database.hpp"
#include "daemon/store/prepared.hpp"

namespace privacyd {

namespace {

void write_event(soci::session& sql, const IntakeWrite& w, const std::string& subject_id) {
  sql << "INSERT INTO events(id, webhook_id, type, subject_id, partner_id, occurred_at, recorded_at)"
         " VALUES (:id, :webhook, :type, :subject, :partner, :occurred, :recorded)",
      soci::use(w.id, "id"), soci::use(w.webhook_id, "webhook"), soci::use(w.type, "type"),
      soci::use(subject_id, "subject"), soci::use(*w.partner_id, "partner"), soci::use(w.occurred_at, "occurred"),
      soci::use(w.received_at, "recorded");

  if (w.type == "association.created") {
    // A second acceptance while associated is recorded as an event and its
    // disclosures, but does not open a second association.
    int open = 0;
    sql << "SELECT COUNT(*) FROM associations WHERE subject_id = :subject AND partner_id = :partner"
           " AND ended_at IS NULL",
        soci::use(subject_id, "subject"), soci::use(*w.partner_id, "partner"), soci::into(open);
    if (open == 0) {
      sql << "INSERT INTO associations(id, subject_id, partner_id, statement_version, started_at, event_id)"
             " VALUES (:id, :subject, :partner, :statement, :started, :event)",
          soci::use(w.id, "id"), soci::use(subject_id, "subject"), soci::use(*w.partner_id, "partner"),
          soci::use(*w.statement_version, "statement"), soci::use(w.occurred_at, "started"),
          soci::use(w.id, "event");
    }
  }
  for (const auto& category : w.categories) {
    sql << "INSERT INTO disclosures(subject_id, partner_id, category, disclosed_at, event_id)"
           " VALUES (:subject, :partner, :category, :at, :event)",
        soci::use(subject_id, "subject"), soci::use(*w.partner_id, "partner"), soci::use(category, "category"),
        soci::use(w.occurred_at, "at"), soci::use(w.id, "event");
  }
  audit::append(sql, w.received_at, "", "event.recorded",
                boost::json::serialize(boost::json::object{
                    {"event_id", w.id}, {"type", w.type}, {"partner_id", *w.partner_id}}));
}

void write_request(soci::session& sql, const IntakeWrite& w, const std::string& subject_id) {
  boost::json::array cats;
  for (const auto& c : w.categories) cats.emplace_back(c);
  std::string categories = boost::json::serialize(cats);
  std::string kind = w.type.substr(w.type.find('.') + 1);
  std::string status = "received";
  soci::indicator partner_ind = w.partner_id ? soci::i_ok : soci::i_null;
  std::string partner = w.partner_id.value_or("");
  Prepared insert(sql, "INSERT INTO requests(id, webhook_id, type, subject_id, partner_id, categories, jurisdiction,"
                       " status, occurred_at, received_at, deadline_at, updated_at, run_at)"
                       " VALUES (:id, :webhook, :type, :subject, :partner, :categories, :jurisdiction, :status,"
                       " :occurred, :received, :deadline, :updated, :run)");
  insert.bind(soci::use(w.id, "id"), soci::use(w.webhook_id, "webhook"), soci::use(kind, "type"),
      soci::use(subject_id, "subject"), soci::use(partner, partner_ind, "partner"),
      soci::use(categories, "categories"), soci::use(w.jurisdiction, "jurisdiction"), soci::use(status, "status"),
      soci::use(w.occurred_at, "occurred"), soci::use(w.received_at, "received"),
      soci::use(w.deadline_at, "deadline"), soci::use(w.received_at, "updated"), soci::use(w.received_at, "run"));
  insert.execute();
  audit::append(sql, w.received_at, w.id, "request.received",
                boost::json::serialize(boost::json::object{{"type", kind}, {"deadline_at", w.deadline_at}}));
}

// The subject's row, its fields sealed under its key: the key it has, or a
// new one (a new subject, or one shredded before). A subject from before
// subject keys stays under the master key until the legacy move
// (legacy_subjects.hpp) moves it with everything of its own at once: a key
// given here would leave what it already had behind, under the master key.
// Two writers racing to give a subject its key cannot both win: the loser
// looks again and seals under the winner's.
std::string write_subject(soci::session& sql, const IntakeWrite& w, const SubjectSealer& sealer) {
  const long long at = w.received_at;
  for (int round = 0; round < 3; ++round) {
    std::string subject_id, key;
    long long shredded_at = 0;
    soci::indicator key_ind = soci::i_null, shredded_ind = soci::i_null;
    Prepared select(sql, "SELECT id, key_id, shredded_at FROM subjects WHERE huawei_index = :i");
    select.bind(soci::use(w.huawei_index, "i"), soci::into(subject_id), soci::into(key, key_ind),
                soci::into(shredded_at, shredded_ind));
    const bool exists = select.execute();
    const bool keyed = exists && key_ind == soci::i_ok && !key.empty();
    const bool legacy = exists && !keyed && shredded_ind == soci::i_null;
    if (!keyed) key = legacy ? std::string() : sealer.new_key(w.received_at);
    std::string contact = w.contact_json ? sealer.seal(key, *w.contact_json, "subjects.contact") : std::string();
    soci::indicator contact_ind = w.contact_json ? soci::i_ok : soci::i_null;
    std::string locale = w.locale.value_or("");
    soci::indicator locale_ind = w.locale ? soci::i_ok : soci::i_null;
    soci::indicator new_key_ind = key.empty() ? soci::i_null : soci::i_ok;
    if (keyed || legacy) {
      // Fenced on the key (or on having none): a shredding or a legacy move
      // that committed meanwhile (PostgreSQL re-checks this row after
      // waiting for its lock) changed it, and the next round looks again.
      soci::indicator fence_ind = keyed ? soci::i_ok : soci::i_null;
      const int keyless = legacy ? 1 : 0;
      // A legacy subject's identifier is sealed again too, from the webhook:
      // that mends one no configured key opens any more.
      const std::string huawei = legacy ? sealer.seal(key, w.huawei_id, "subjects.huawei_id") : std::string();
      soci::indicator huawei_ind = legacy ? soci::i_ok : soci::i_null;
      Prepared update(sql, "UPDATE subjects SET contact_enc = COALESCE(:contact, contact_enc),"
                           " huawei_id_enc = COALESCE(:huawei, huawei_id_enc),"
                           " locale = COALESCE(:locale, locale), updated_at = :at WHERE id = :id"
                           " AND (key_id = :key OR (:legacy = 1 AND key_id IS NULL AND shredded_at IS NULL))");
      update.bind(soci::use(contact, contact_ind, "contact"), soci::use(huawei, huawei_ind, "huawei"),
                  soci::use(locale, locale_ind, "locale"), soci::use(at, "at"), soci::use(subject_id, "id"),
                  soci::use(key, fence_ind, "key"), soci::use(keyless, "legacy"));
      update.execute();
      if (update.affected_rows() == 1) return subject_id;
      continue;
    }
    const std::string huawei = sealer.seal(key, w.huawei_id, "subjects.huawei_id");
    if (exists) {
      soci::statement update =
          (sql.prepare << "UPDATE subjects SET key_id = :key, huawei_id_enc = :huawei,"
                          " contact_enc = COALESCE(:contact, contact_enc), locale = COALESCE(:locale, locale),"
                          " updated_at = :at WHERE id = :id AND key_id IS NULL AND shredded_at IS NOT NULL",
           soci::use(key, new_key_ind, "key"), soci::use(huawei, "huawei"), soci::use(contact, contact_ind, "contact"),
           soci::use(locale, locale_ind, "locale"), soci::use(at, "at"), soci::use(subject_id, "id"));
      update.execute(true);
      if (update.get_affected_rows() == 1 || key.empty()) return subject_id;
      continue;  // another writer gave it a key first
    }
    std::string inserted;
    soci::indicator inserted_ind = soci::i_null;
    Prepared insert(sql, "INSERT INTO subjects(id, huawei_index, huawei_id_enc, contact_enc, locale, created_at,"
                         " updated_at, key_id) VALUES (:id, :index, :huawei, :contact, :locale, :at, :at2, :key)"
                         " ON CONFLICT (huawei_index) DO NOTHING RETURNING id");
    insert.bind(soci::use(w.new_subject_id, "id"), soci::use(w.huawei_index, "index"), soci::use(huawei, "huawei"),
                soci::use(contact, contact_ind, "contact"), soci::use(locale, locale_ind, "locale"),
                soci::use(at, "at"), soci::use(at, "at2"), soci::use(key, new_key_ind, "key"),
                soci::into(inserted, inserted_ind));
    if (insert.execute() && inserted_ind == soci::i_ok) return inserted;
    // Inserted by another writer meanwhile: look again.
  }
  throw DatabaseConflict("the subject changed under this write three times; try again");
}

// The answer first given to webhook `id`, rebuilt from the request or event
// it stored, once its delivery row is gone (privacyd's own retention swept
// it; a Standard Webhooks retry re-signs with a fresh timestamp, so it can
// come later than that). nullopt: the id was never stored.
std::optional<std::string> answer_from_record(soci::session& sql, const std::string& id) {
  std::string stored;
  long long deadline = 0;
  soci::indicator deadline_ind = soci::i_null;
  sql << "SELECT id, deadline_at FROM requests WHERE webhook_id = :w", soci::use(id, "w"), soci::into(stored),
      soci::into(deadline, deadline_ind);
  if (sql.got_data()) {
    return boost::json::serialize(boost::json::object{
        {"request_id", stored}, {"status", "received"}, {"deadline", format_rfc3339(deadline)}});
  }
  sql << "SELECT id FROM events WHERE webhook_id = :w", soci::use(id, "w"), soci::into(stored);
  if (sql.got_data()) return boost::json::serialize(boost::json::object{{"event_id", stored}, {"status", "recorded"}});
  return std::nullopt;
}

}  // namespace

IntakeOutcome write_intake(soci::session& sql, const IntakeWrite& w, const SubjectSealer& sealer) {
  // Claim the webhook-id first: under concurrency exactly one claim wins,
  // and the losers (PostgreSQL makes them wait for the winner's commit)
  // answer from what the winner stored. A webhook-id whose request or event
  // is stored already claims nothing, even once its delivery row is gone:
  // a late retry must not write the subject again (it may have been
  // shredded since).
  std::string claimed;
  soci::indicator claimed_ind = soci::i_null;
  Prepared claim(sql, "INSERT INTO webhook_deliveries(webhook_id, body_sha256, status, response, received_at)"
                      " SELECT :id, :hash, :status, :response, :at"
                      " WHERE NOT EXISTS (SELECT 1 FROM requests WHERE webhook_id = :id2)"
                      " AND NOT EXISTS (SELECT 1 FROM events WHERE webhook_id = :id3)"
                      " ON CONFLICT (webhook_id) DO NOTHING RETURNING webhook_id");
  claim.bind(soci::use(w.webhook_id, "id"), soci::use(w.body_sha256, "hash"), soci::use(w.status, "status"),
             soci::use(w.response, "response"), soci::use(w.received_at, "at"), soci::use(w.webhook_id, "id2"),
             soci::use(w.webhook_id, "id3"), soci::into(claimed, claimed_ind));
  if (!claim.execute() || claimed_ind != soci::i_ok) {
    std::string hash;
    std::string response;
    int status = 0;
    sql << "SELECT body_sha256, status, response FROM webhook_deliveries WHERE webhook_id = :id",
        soci::use(w.webhook_id, "id"), soci::into(hash), soci::into(status), soci::into(response);
    if (!sql.got_data()) {
      // Swept: the body it came with is no longer known, so this is
      // answered as the repeat it most likely is.
      if (auto answer = answer_from_record(sql, w.webhook_id)) return {IntakeOutcome::Kind::replayed, 202, *answer};
      throw DatabaseConflict("a webhook-id claim found neither its delivery nor its record; try again");
    }
    if (hash != w.body_sha256) return {IntakeOutcome::Kind::conflict, 409, {}};
    return {IntakeOutcome::Kind::replayed, status, response};
  }

  const std::string subject_id = write_subject(sql, w, sealer);
  if (w.is_request) {
    write_request(sql, w, subject_id);
  } else {
    write_event(sql, w, subject_id);
  }
  return {IntakeOutcome::Kind::stored, w.status, w.response};
}

}  // namespace privacyd
