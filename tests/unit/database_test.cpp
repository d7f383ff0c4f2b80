#include <catch2/catch.hpp>
#include <filesystem>
#include <soci/soci.h>

#include "daemon/store/database.hpp"
#include "daemon/store/migrations.hpp"

using namespace privacyd;
namespace fs = std::filesystem;

namespace {
struct TempDir {
  TempDir() {
    path = fs::temp_directory_path() / ("privacyd-unit-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path path;
  static inline int counter = 0;
};
}  // namespace

TEST_CASE("migrations bring an empty SQLite database to the newest version, once", "[store]") {
  TempDir dir;
  std::FILE* devnull = std::fopen("/dev/null", "w");
  Logger log(devnull, LogLevel::error, false);
  std::string error;
  auto cfg = parse_database_url("sqlite3://db=" + (dir.path / "p.db").string(), "/", error);
  REQUIRE(cfg);
  {
    Database db(*cfg, log);
    CHECK(schema_version(db) == 0);
    auto first = migrate(db, log);
    CHECK(first.from == 0);
    CHECK(first.to == migrations().back().version);
    auto again = migrate(db, log);
    CHECK(again.from == first.to);
    CHECK(again.to == first.to);

    std::string mode;
    db.with_session([&](soci::session& sql) { sql << "PRAGMA journal_mode", soci::into(mode); });
    CHECK(mode == "wal");
    int sync = -1;
    db.with_session([&](soci::session& sql) { sql << "PRAGMA synchronous", soci::into(sync); });
    CHECK(sync == 2);  // FULL
  }
  std::fclose(devnull);
}

TEST_CASE("an unreachable database is DatabaseUnavailable, not a crash", "[store]") {
  std::FILE* devnull = std::fopen("/dev/null", "w");
  Logger log(devnull, LogLevel::error, false);
  DatabaseConfig cfg;
  cfg.backend = DatabaseConfig::Backend::postgresql;
  cfg.parameters = "host=127.0.0.1 port=1 dbname=none connect_timeout=2";
  cfg.pool_size = 1;
  CHECK_THROWS_AS(Database(cfg, log), DatabaseUnavailable);
  std::fclose(devnull);
}
