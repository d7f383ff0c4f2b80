// demo: the demo data systems the shipped policies describe, with demo
// subjects demo-001…demo-005, and their associations in privacyd's ledger.
// Idempotent: running it again changes nothing.
#include <boost/json.hpp>
#include <iostream>
#include <soci/soci.h>

#include "daemon/cli/commands.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/policy/policies.hpp"
#include "daemon/store/database.hpp"
#include "daemon/store/intake_writes.hpp"
#include "daemon/store/migrations.hpp"

namespace privacyd::cli {

namespace {

struct DemoSubject {
  const char* id;
  const char* account;
  const char* account_id;
  const char* name;
  const char* email;
  const char* phone;
  const char* locale;
  std::vector<const char*> partners;
};

const std::vector<DemoSubject> kSubjects = {
    {"demo-001", "linwei", "100001", "Lin Wei", "lin.wei@demo.example", "+86 138 0000 0001", "zh-CN", {"P-1001"}},
    {"demo-002", "amorgan", "100002", "Alex Morgan", "alex.morgan@demo.example", "+44 20 7946 0002", "en",
     {"P-1001", "P-1002"}},
    {"demo-003", "sokafor", "100003", "Sam Okafor", "sam.okafor@demo.example", "+234 1 000 0003", "en", {"P-1002"}},
    {"demo-004", "mrossi", "100004", "Maria Rossi", "maria.rossi@demo.example", "+39 06 0000 0004", "en", {}},
    {"demo-005", "ksato", "100005", "Kenji Sato", "kenji.sato@demo.example", "+81 3 0000 0005", "en", {"P-1001"}},
};

void partner_center(soci::session& sql) {
  sql << "CREATE TABLE IF NOT EXISTS accounts (huawei_id TEXT PRIMARY KEY, account_name TEXT, account_id TEXT,"
         " personal_name TEXT, phone TEXT, email TEXT)";
  sql << "CREATE TABLE IF NOT EXISTS partner_members (huawei_id TEXT NOT NULL, partner_id TEXT NOT NULL,"
         " joined_at TEXT NOT NULL, PRIMARY KEY (huawei_id, partner_id))";
  for (const auto& s : kSubjects) {
    std::string id = s.id, account = s.account, account_id = s.account_id, name = s.name, phone = s.phone,
                email = s.email;
    sql << "INSERT INTO accounts(huawei_id, account_name, account_id, personal_name, phone, email)"
           " VALUES (:id, :account, :account_id, :name, :phone, :email) ON CONFLICT (huawei_id) DO NOTHING",
        soci::use(id, "id"), soci::use(account, "account"), soci::use(account_id, "account_id"),
        soci::use(name, "name"), soci::use(phone, "phone"), soci::use(email, "email");
    for (const char* p : s.partners) {
      std::string partner = p;
      sql << "INSERT INTO partner_members(huawei_id, partner_id, joined_at) VALUES (:id, :partner, '2026-01-15')"
             " ON CONFLICT DO NOTHING",
          soci::use(id, "id"), soci::use(partner, "partner");
    }
  }
}

void institute(soci::session& sql) {
  sql << "CREATE TABLE IF NOT EXISTS learning_records (huawei_id TEXT NOT NULL, course TEXT NOT NULL,"
         " progress INTEGER NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (huawei_id, course))";
  sql << "CREATE TABLE IF NOT EXISTS exam_results (huawei_id TEXT NOT NULL, exam TEXT NOT NULL,"
         " score INTEGER NOT NULL, taken_at TEXT NOT NULL, PRIMARY KEY (huawei_id, exam))";
  sql << "CREATE TABLE IF NOT EXISTS certificates (huawei_id TEXT NOT NULL, certificate TEXT NOT NULL,"
         " issued_at TEXT NOT NULL, PRIMARY KEY (huawei_id, certificate))";
  int n = 0;
  for (const auto& s : kSubjects) {
    std::string id = s.id;
    ++n;
    for (const char* course : {"HarmonyOS Fundamentals", "Cloud Native Basics"}) {
      std::string c = course;
      int progress = (n * 37) % 100;
      sql << "INSERT INTO learning_records VALUES (:id, :course, :progress, '2026-03-01') ON CONFLICT DO NOTHING",
          soci::use(id, "id"), soci::use(c, "course"), soci::use(progress, "progress");
    }
    int score = 60 + (n * 7) % 40;
    sql << "INSERT INTO exam_results VALUES (:id, 'HCIA-Cloud', :score, '2026-04-10') ON CONFLICT DO NOTHING",
        soci::use(id, "id"), soci::use(score, "score");
    if (n % 2 == 1) {
      sql << "INSERT INTO certificates VALUES (:id, 'HCIA-Cloud Service', '2026-04-20') ON CONFLICT DO NOTHING",
          soci::use(id, "id");
    }
  }
}

}  // namespace

int demo(const std::filesystem::path& config_file) {
  auto loaded = load_config(config_file);
  Diagnostics problems = loaded.problems;
  policy::Policies policies;
  if (loaded.config) policies = policy::load_policies(loaded.config->policies, loaded.config->file.parent_path(), problems);
  for (const auto& p : problems) std::cerr << format_text(p) << '\n';
  if (!problems.empty()) return 1;
  const Config& config = *loaded.config;
  auto log = Logger::to_stderr(config.log_level);
  try {
    for (const auto& system : policies.systems) {
      if (system.name != "partner-center" && system.name != "developer-institute") continue;
      if (system.database.backend == DatabaseConfig::Backend::sqlite3) {
        auto file = std::filesystem::path(system.database.parameters.substr(3, system.database.parameters.find(' ') - 3));
        std::filesystem::create_directories(file.parent_path());
      }
      Database db(system.database, log);
      db.with_session([&](soci::session& sql) {
        soci::transaction tr(sql);
        system.name == "partner-center" ? partner_center(sql) : institute(sql);
        tr.commit();
      });
      std::cout << "demo system " << system.name << " ready\n";
    }

    // The ledger: each demo association as the Partner Center would have
    // reported it, under a fixed webhook-id so a second run is a replay.
    auto keys = crypto::KeyRing::load(config.keys.data_key_file, config.keys.previous_key_files,
                                      config.keys.index_key_file);
    Database db(config.database, log);
    migrate(db, log);
    auto vault = open_key_vault(config.keys.store, keys, log);
    const UnixMillis associated = *parse_rfc3339("2026-01-15T09:00:00Z");
    int recorded = 0;
    db.with_session([&](soci::session& sql) {
      soci::transaction tr(sql);
      for (const auto& s : kSubjects) {
        for (const char* p : s.partners) {
          const auto* partner = policies.partner(p);
          if (partner == nullptr) continue;
          // Ids must not carry the HUAWEI ID (they are stored in clear):
          // derive them from the blind index instead.
          const std::string index = keys.blind_index(s.id, "subjects.huawei_id");
          const std::string tag = index.substr(0, 16) + "_" + p;
          IntakeWrite w;
          w.webhook_id = "demo:association:" + tag;
          w.body_sha256 = w.webhook_id;
          w.response = "{}";
          w.received_at = associated;
          w.new_subject_id = "sub_demo_" + index.substr(0, 16);
          w.huawei_index = index;
          w.huawei_id = s.id;
          boost::json::object contact{{"account_name", s.account}, {"name", s.name}, {"email", s.email},
                                      {"phone", s.phone}};
          w.contact_json = boost::json::serialize(contact);
          w.locale = s.locale;
          w.id = "evt_demo_" + tag;
          w.type = "association.created";
          w.partner_id = p;
          w.occurred_at = associated;
          w.categories = partner->shared_categories;
          w.statement_version = "1.0";
          w.jurisdiction = "default";
          if (write_intake(sql, w, SubjectSealer(keys, vault.store.get())).kind == IntakeOutcome::Kind::stored) {
            ++recorded;
          }
        }
      }
      tr.commit();
    });
    std::cout << "demo ledger: " << recorded << " association(s) recorded\n";
    return 0;
  } catch (const std::exception& e) {
    log.error("demo failed", {{"error", e.what()}});
    return 1;
  }
}

}  // namespace privacyd::cli
