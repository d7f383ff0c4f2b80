#include <catch2/catch.hpp>
#include <filesystem>
#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

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

TEST_CASE("a SQLite transaction that read, then lost its snapshot to another writer, runs again", "[store]") {
  TempDir dir;
  std::FILE* devnull = std::fopen("/dev/null", "w");
  Logger log(devnull, LogLevel::error, false);
  std::string error;
  auto cfg = parse_database_url("sqlite3://db=" + (dir.path / "p.db").string(), "/", error);
  REQUIRE(cfg);
  Database db(*cfg, log);
  db.with_session([](soci::session& sql) {
    sql << "CREATE TABLE counter (n INTEGER)";
    sql << "INSERT INTO counter VALUES (0)";
  });
  soci::session other(soci::sqlite3, "db=" + (dir.path / "p.db").string());
  int runs = 0;
  db.with_session([&](soci::session& sql) {
    ++runs;
    soci::transaction tr(sql);
    int n = 0;
    sql << "SELECT n FROM counter", soci::into(n);
    // Another connection commits between our read and our write, once.
    if (runs == 1) other << "UPDATE counter SET n = n + 10";
    sql << "UPDATE counter SET n = :n", soci::use(n + 1, "n");
    tr.commit();
  });
  CHECK(runs == 2);
  int n = 0;
  db.with_session([&](soci::session& sql) { sql << "SELECT n FROM counter", soci::into(n); });
  CHECK(n == 11);  // the second run read the other writer's 10
  CHECK(db.errors().conflict == 1);
  std::fclose(devnull);
}
