#include "daemon/store/migrations.hpp"

#include <chrono>
#include <soci/soci.h>

namespace privacyd {

// Conventions: times are BIGINT milliseconds since the Unix epoch (UTC);
// ids are text; personal data lives only in *_enc columns (AES-256-GCM,
// base64) and is found through *_index columns (HMAC-SHA256 blind index).
const std::vector<Migration>& migrations() {
  static const std::vector<Migration> all = [] {
    std::vector<Migration> list;
    {
      // The intake: idempotent webhook deliveries, the subjects they name,
      // the disclosure ledger and the requests they open.
      std::vector<std::string> common = {
          "CREATE TABLE webhook_deliveries ("
          " webhook_id TEXT PRIMARY KEY,"
          " body_sha256 TEXT NOT NULL,"
          " status INTEGER NOT NULL,"
          " response TEXT NOT NULL,"
          " received_at BIGINT NOT NULL)",

          "CREATE TABLE subjects ("
          " id TEXT PRIMARY KEY,"
          " huawei_index TEXT NOT NULL UNIQUE,"
          " huawei_id_enc TEXT NOT NULL,"
          " contact_enc TEXT,"
          " locale TEXT,"
          " created_at BIGINT NOT NULL,"
          " updated_at BIGINT NOT NULL)",

          "CREATE TABLE events ("
          " id TEXT PRIMARY KEY,"
          " webhook_id TEXT NOT NULL UNIQUE,"
          " type TEXT NOT NULL,"
          " subject_id TEXT NOT NULL REFERENCES subjects(id),"
          " partner_id TEXT,"
          " occurred_at BIGINT NOT NULL,"
          " recorded_at BIGINT NOT NULL)",

          "CREATE TABLE associations ("
          " id TEXT PRIMARY KEY,"
          " subject_id TEXT NOT NULL REFERENCES subjects(id),"
          " partner_id TEXT NOT NULL,"
          " statement_version TEXT NOT NULL,"
          " started_at BIGINT NOT NULL,"
          " ended_at BIGINT,"
          " event_id TEXT NOT NULL REFERENCES events(id))",
          "CREATE INDEX associations_subject ON associations(subject_id, partner_id)",

          "CREATE TABLE disclosures ("
          " subject_id TEXT NOT NULL REFERENCES subjects(id),"
          " partner_id TEXT NOT NULL,"
          " category TEXT NOT NULL,"
          " disclosed_at BIGINT NOT NULL,"
          " event_id TEXT NOT NULL REFERENCES events(id),"
          " PRIMARY KEY (subject_id, partner_id, category, event_id))",

          "CREATE TABLE requests ("
          " id TEXT PRIMARY KEY,"
          " webhook_id TEXT NOT NULL UNIQUE,"
          " type TEXT NOT NULL,"
          " subject_id TEXT NOT NULL REFERENCES subjects(id),"
          " partner_id TEXT,"
          " categories TEXT NOT NULL,"
          " jurisdiction TEXT NOT NULL,"
          " status TEXT NOT NULL,"
          " reason TEXT,"
          " occurred_at BIGINT NOT NULL,"
          " received_at BIGINT NOT NULL,"
          " deadline_at BIGINT NOT NULL,"
          " extended_at BIGINT,"
          " extension_reason TEXT,"
          " updated_at BIGINT NOT NULL)",
          "CREATE INDEX requests_status ON requests(status, id)",
          "CREATE INDEX requests_subject ON requests(subject_id)",
      };
      list.push_back({1, "intake", common, common});
    }
    {
      // The engine: which workflow version a request runs on, where it is,
      // who holds it (leases), every step's outcome, and the audit chain.
      std::vector<std::string> common = {
          "ALTER TABLE requests ADD COLUMN workflow_name TEXT",
          "ALTER TABLE requests ADD COLUMN workflow_version INTEGER",
          "ALTER TABLE requests ADD COLUMN next_step INTEGER NOT NULL DEFAULT 0",
          "ALTER TABLE requests ADD COLUMN run_at BIGINT",
          "ALTER TABLE requests ADD COLUMN lease_owner TEXT",
          "ALTER TABLE requests ADD COLUMN lease_until BIGINT",
          "UPDATE requests SET run_at = received_at WHERE status = 'received'",
          "CREATE INDEX requests_runnable ON requests(run_at)",

          "CREATE TABLE workflow_versions ("
          " name TEXT NOT NULL,"
          " version INTEGER NOT NULL,"
          " sha256 TEXT NOT NULL,"
          " source TEXT NOT NULL,"
          " created_at BIGINT NOT NULL,"
          " PRIMARY KEY (name, version))",

          "CREATE TABLE request_steps ("
          " request_id TEXT NOT NULL REFERENCES requests(id),"
          " idx INTEGER NOT NULL,"
          " step_id TEXT NOT NULL,"
          " action TEXT NOT NULL,"
          " status TEXT NOT NULL,"
          " attempts INTEGER NOT NULL DEFAULT 0,"
          " output TEXT,"
          " error TEXT,"
          " started_at BIGINT,"
          " finished_at BIGINT,"
          " wake_at BIGINT,"
          " PRIMARY KEY (request_id, idx))",

          "CREATE TABLE audit_log ("
          " seq BIGINT PRIMARY KEY,"
          " at BIGINT NOT NULL,"
          " request_id TEXT,"
          " event TEXT NOT NULL,"
          " detail TEXT NOT NULL,"
          " prev_hash TEXT NOT NULL,"
          " hash TEXT NOT NULL)",
          "CREATE TABLE audit_head (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
          "INSERT INTO audit_head(id, seq, hash) VALUES (1, 0, "
          "'0000000000000000000000000000000000000000000000000000000000000000')",
      };
      // Append-only in the database too: an UPDATE or DELETE on the audit
      // log fails unless someone with DDL rights removes the guard first
      // (and then `audit verify` still sees the change).
      std::vector<std::string> sqlite = common;
      sqlite.push_back(
          "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log"
          " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END");
      sqlite.push_back(
          "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log"
          " BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END");
      std::vector<std::string> postgresql = common;
      postgresql.push_back(
          "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS"
          " $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$");
      postgresql.push_back(
          "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log"
          " FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()");
      list.push_back({2, "engine", sqlite, postgresql});
    }
    {
      // The three request types: which request ended an association (so an
      // unlink that runs twice recognises its own work), collected data and
      // access packages (sealed), and retention holds awaiting their day.
      std::vector<std::string> common = {
          "ALTER TABLE associations ADD COLUMN ended_by TEXT",
          "CREATE TABLE request_data ("
          " request_id TEXT NOT NULL REFERENCES requests(id),"
          " step_id TEXT NOT NULL,"
          " data_enc TEXT NOT NULL,"
          " created_at BIGINT NOT NULL,"
          " PRIMARY KEY (request_id, step_id))",
          "CREATE TABLE exports ("
          " request_id TEXT PRIMARY KEY REFERENCES requests(id),"
          " package_enc TEXT NOT NULL,"
          " bytes BIGINT NOT NULL,"
          " created_at BIGINT NOT NULL)",
          "CREATE TABLE retention_holds ("
          " request_id TEXT NOT NULL REFERENCES requests(id),"
          " subject_id TEXT NOT NULL REFERENCES subjects(id),"
          " system TEXT NOT NULL,"
          " category TEXT NOT NULL,"
          " reason TEXT NOT NULL,"
          " until_at BIGINT NOT NULL,"
          " status TEXT NOT NULL,"
          " lease_until BIGINT,"
          " erased_at BIGINT,"
          " PRIMARY KEY (request_id, system, category))",
          "CREATE INDEX retention_holds_due ON retention_holds(status, until_at)",
      };
      list.push_back({3, "requests", common, common});
    }
    {
      // The notice outbox: written in the same transaction as the step that
      // decides the notice, delivered (and retried) by the notifier.
      std::vector<std::string> common = {
          "CREATE TABLE notices ("
          " id TEXT PRIMARY KEY,"
          " request_id TEXT NOT NULL REFERENCES requests(id),"
          " step_idx INTEGER NOT NULL,"
          " channel TEXT NOT NULL,"
          " recipient TEXT NOT NULL,"
          " template TEXT NOT NULL,"
          " status TEXT NOT NULL,"
          " payload_enc TEXT NOT NULL,"
          " attempts INTEGER NOT NULL DEFAULT 0,"
          " next_attempt_at BIGINT NOT NULL,"
          " lease_until BIGINT,"
          " last_error TEXT,"
          " created_at BIGINT NOT NULL,"
          " delivered_at BIGINT)",
          "CREATE INDEX notices_due ON notices(status, next_attempt_at)",
          "CREATE INDEX notices_request ON notices(request_id, step_idx)",
      };
      list.push_back({4, "notices", common, common});
    }
    {
      // Claims are fenced: each claim of a request or of a notice gets a
      // token of its own, and every write the claim makes checks it, so a
      // holder that lost its claim (to another instance, or to its own
      // earlier self) changes nothing.
      std::vector<std::string> common = {
          "ALTER TABLE requests ADD COLUMN lease_token TEXT",
          "ALTER TABLE notices ADD COLUMN claim_token TEXT",
      };
      list.push_back({5, "claim_tokens", common, common});
    }
    {
      // Closing the loops (SPEC §13): an access package is fetched by its
      // owner through a token whose SHA-256 alone is kept, a limited number
      // of times until it expires (then its ciphertext is erased); a
      // partner notice is acknowledged (by webhook, by the link in its mail
      // or by an operator), reminded until then, and overdue after.
      // A package's links are rows of their own: export.package runs at
      // least once, and whichever run's output commits (and so reaches the
      // mail), its link must work.
      std::vector<std::string> common = {
          "ALTER TABLE exports ADD COLUMN expires_at BIGINT",
          "ALTER TABLE exports ADD COLUMN downloads INTEGER NOT NULL DEFAULT 0",
          "ALTER TABLE exports ADD COLUMN erased_at BIGINT",
          "CREATE INDEX exports_expiry ON exports(expires_at)",
          "CREATE TABLE package_links ("
          " token_sha256 TEXT PRIMARY KEY,"
          " request_id TEXT NOT NULL REFERENCES exports(request_id),"
          " created_at BIGINT NOT NULL)",
          "ALTER TABLE notices ADD COLUMN ack_token_sha256 TEXT",
          "ALTER TABLE notices ADD COLUMN ack_due_at BIGINT",
          "ALTER TABLE notices ADD COLUMN next_reminder_at BIGINT",
          "ALTER TABLE notices ADD COLUMN reminders_sent INTEGER NOT NULL DEFAULT 0",
          "ALTER TABLE notices ADD COLUMN reminder_of TEXT",
          "ALTER TABLE notices ADD COLUMN ack_outcome TEXT",
          "ALTER TABLE notices ADD COLUMN ack_note_enc TEXT",
          "ALTER TABLE notices ADD COLUMN ack_by TEXT",
          "ALTER TABLE notices ADD COLUMN acknowledged_at BIGINT",
          "CREATE UNIQUE INDEX notices_ack_token ON notices(ack_token_sha256)",
          "CREATE INDEX notices_reminders ON notices(next_reminder_at)",
          "CREATE INDEX notices_ack_due ON notices(ack_due_at)",
      };
      list.push_back({6, "loops", common, common});
    }
    {
      // Subject keys (SPEC §14): the key a subject's data is sealed under
      // (kept, wrapped, in the key store), and crypto-shredding: after a
      // deletion, privacyd's own copies are erased and the subject's key
      // is doomed (the subject gets a new one for anything later); the
      // doomed key is destroyed once no retention hold still needs the
      // identifier sealed under it (ready_at: erased here, to be destroyed
      // in the key store).
      std::vector<std::string> common = {
          "ALTER TABLE subjects ADD COLUMN key_id TEXT",
          "ALTER TABLE subjects ADD COLUMN shred_after BIGINT",
          "ALTER TABLE subjects ADD COLUMN shredded_at BIGINT",
          "CREATE INDEX subjects_key ON subjects(key_id)",
          "CREATE INDEX subjects_shred ON subjects(shred_after)",
          "CREATE TABLE doomed_keys ("
          " key_id TEXT PRIMARY KEY,"
          " subject_id TEXT NOT NULL REFERENCES subjects(id),"
          " doomed_at BIGINT NOT NULL,"
          " ready_at BIGINT)",
          "CREATE INDEX doomed_keys_subject ON doomed_keys(subject_id)",
          "CREATE INDEX retention_holds_subject ON retention_holds(subject_id, status)",
          // privacyd's own retention: what its sweeper looks for.
          "CREATE INDEX webhook_deliveries_received ON webhook_deliveries(received_at)",
          "CREATE INDEX notices_delivered ON notices(status, delivered_at)",
      };
      list.push_back({7, "subject_keys", common, common});
    }
    {
      // Durable jobs (daemon/store/jobs.hpp): a retention hold's erase is
      // recorded only under the claim that made it, as a notice's delivery
      // is. Subjects from before subject keys, which the legacy move looks
      // for (legacy_subjects.hpp): few, among every shredded subject.
      std::vector<std::string> common = {
          "ALTER TABLE retention_holds ADD COLUMN claim_token TEXT",
          "CREATE INDEX subjects_legacy ON subjects(id) WHERE key_id IS NULL AND shredded_at IS NULL",
          // A request's audit entries, as the console shows them.
          "CREATE INDEX audit_log_request ON audit_log(request_id, seq)",
      };
      list.push_back({8, "durable_jobs", common, common});
    }
    return list;
  }();
  return all;
}

namespace {

constexpr long long kMigrationLock = 0x7072697661637964LL;  // "privacyd"

long long now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void ensure_bookkeeping(soci::session& sql) {
  sql << "CREATE TABLE IF NOT EXISTS schema_migrations ("
         " version INTEGER PRIMARY KEY,"
         " name TEXT NOT NULL,"
         " applied_at BIGINT NOT NULL)";
}

int current_version(soci::session& sql) {
  int version = 0;
  soci::indicator ind = soci::i_null;
  sql << "SELECT MAX(version) FROM schema_migrations", soci::into(version, ind);
  return ind == soci::i_ok ? version : 0;
}

}  // namespace

int schema_version(Database& db) {
  int version = 0;
  db.with_session([&](soci::session& sql) {
    ensure_bookkeeping(sql);
    version = current_version(sql);
  });
  return version;
}

MigrationReport migrate(Database& db, Logger& log) {
  MigrationReport report;
  db.with_session([&](soci::session& sql) {
    report = MigrationReport{};  // the work may run again (Database::with_session)
    if (db.is_postgresql()) {
      // Two instances starting together must not both create a table.
      soci::transaction tr(sql);
      lift_deadlines(sql);
      sql << "SELECT pg_advisory_xact_lock(" << kMigrationLock << ")";
      ensure_bookkeeping(sql);
      tr.commit();
    } else {
      ensure_bookkeeping(sql);
    }
    report.from = current_version(sql);
    report.to = report.from;
    for (const auto& m : migrations()) {
      soci::transaction tr(sql);
      lift_deadlines(sql);
      if (db.is_postgresql()) sql << "SELECT pg_advisory_xact_lock(" << kMigrationLock << ")";
      if (current_version(sql) >= m.version) continue;  // another instance got here first
      for (const auto& statement : db.is_postgresql() ? m.postgresql : m.sqlite) sql << statement;
      long long at = now_ms();
      sql << "INSERT INTO schema_migrations(version, name, applied_at) VALUES (:v, :n, :t)", soci::use(m.version, "v"),
          soci::use(m.name, "n"), soci::use(at, "t");
      tr.commit();
      report.to = m.version;
      log.info("migration applied", {{"version", m.version}, {"name", m.name}});
    }
  });
  return report;
}

}  // namespace privacyd
