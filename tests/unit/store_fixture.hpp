#pragma once
// A migrated SQLite database in a temp folder, for tests of store code.
#include <filesystem>
#include <optional>
#include <soci/soci.h>
#include <string>

#include "daemon/store/database.hpp"
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

  std::FILE* devnull = std::fopen("/dev/null", "w");
  Logger log{devnull, LogLevel::error, false};
  std::filesystem::path dir;
  std::optional<Database> db;
  static inline int instances = 0;
};

}  // namespace privacyd::testing
