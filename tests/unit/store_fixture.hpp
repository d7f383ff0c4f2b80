#pragma once
// A migrated SQLite database in a temp folder, for tests of store code.
#include <filesystem>
#include <optional>
#include <soci/soci.h>
#include <string>

#include "daemon/store/database.hpp"
#include "daemon/store/intake_writes.hpp"
#include "daemon/store/migrations.hpp"

namespace privacyd::testing {

struct SqliteFixture {
  SqliteFixture() {
    dir = std::filesystem::temp_directory_path() /
          ("privacyd-test-" + std::to_string(::getpid()) + "-" + std::to_string(instances++));
    std::filesystem::create_directories(dir);
    std::string error;
    db.emplace(*parse_database_url("sqlite3://db=" + (dir / "p.db").string(), "/", error), log);
    migrate(*db, log);
  }
  ~SqliteFixture() {
    db.reset();
    std::filesystem::remove_all(dir);
    std::fclose(devnull);
  }
  SqliteFixture(const SqliteFixture&) = delete;
  SqliteFixture& operator=(const SqliteFixture&) = delete;

  template <class T = int>
  T scalar(const std::string& query) {
    T value{};
    db->with_session([&](soci::session& sql) { sql << query, soci::into(value); });
    return value;
  }
  void exec(const std::string& statement) {
    db->with_session([&](soci::session& sql) { sql << statement; });
  }

  // A received disassociation request `id` (subject `id`'s), as intake
  // stores it.
  void add_request(const std::string& id, long long received_at = 1000, long long deadline_at = 5000) {
    IntakeWrite w;
    w.webhook_id = "msg_" + id;
    w.body_sha256 = "h";
    w.response = "{}";
    w.received_at = received_at;
    w.new_subject_id = "sub_" + id;
    w.huawei_index = "idx_" + id;
    w.huawei_id = "hw-" + id;
    w.id = id;
    w.type = "request.disassociation";
    w.is_request = true;
    w.partner_id = "P-1001";
    w.jurisdiction = "default";
    w.deadline_at = deadline_at;
    db->with_session([&](soci::session& sql) {
      soci::transaction tr(sql);
      write_intake(sql, w, SubjectSealer(fixture_keys, nullptr));
      tr.commit();
    });
  }

  crypto::KeyRing fixture_keys{crypto::random_bytes(32)};
  std::FILE* devnull = std::fopen("/dev/null", "w");
  Logger log{devnull, LogLevel::error, false};
  std::filesystem::path dir;
  std::optional<Database> db;
  static inline int instances = 0;
};

}  // namespace privacyd::testing
