#include "daemon/store/database.hpp"

#include <soci/connection-pool.h>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

namespace privacyd {

namespace {

// SQLSTATE classes that mean "the connection or server is gone" rather than
// "this statement is wrong": 08 connection exception, 57 operator
// intervention (shutdown), 53 insufficient resources.
bool is_unavailable_sqlstate(const std::string& state) {
  return state.starts_with("08") || state.starts_with("57") || state.starts_with("53");
}

bool is_conflict_sqlstate(const std::string& state) { return state == "40001" || state == "40P01"; }

}  // namespace

Database::Database(DatabaseConfig config, Logger& log, bool connect_now)
    : config_(std::move(config)),
      log_(log),
      pool_(std::make_unique<soci::connection_pool>(config_.pool_size)),
      broken_(config_.pool_size, 1),
      threads_(config_.pool_size) {
  if (!connect_now) return;
  std::size_t slot = pool_->lease();
  try {
    connect(slot);
  } catch (...) {
    pool_->give_back(slot);
    throw;
  }
  pool_->give_back(slot);
}

Database::~Database() { shutdown(); }

void Database::shutdown() {
  threads_.join();
}

void Database::connect(std::size_t slot) {
  soci::session& sql = pool_->at(slot);
  try {
    sql.close();
    if (is_postgresql()) {
      std::string params = config_.parameters;
      // An unreachable host must not hang a database thread forever.
      if (params.find("connect_timeout") == std::string::npos) params += " connect_timeout=5";
      sql.open(soci::postgresql, params);
    } else {
      sql.open(soci::sqlite3, config_.parameters);
      sql << "PRAGMA journal_mode=WAL";
      sql << "PRAGMA synchronous=FULL";
      sql << "PRAGMA busy_timeout=5000";
      sql << "PRAGMA foreign_keys=ON";
    }
    broken_[slot] = 0;
  } catch (const soci::soci_error& e) {
    // The message may name a host but never personal data.
    throw DatabaseUnavailable(std::string("cannot connect to the database: ") + e.get_error_message());
  }
}

Database::ErrorCounts Database::errors() const {
  return {unavailable_.load(std::memory_order_relaxed), conflicts_.load(std::memory_order_relaxed),
          other_errors_.load(std::memory_order_relaxed)};
}

void Database::with_session(const std::function<void(soci::session&)>& work) {
  try {
    run_session(work);
  } catch (const DatabaseUnavailable&) {
    unavailable_.fetch_add(1, std::memory_order_relaxed);
    throw;
  } catch (const DatabaseConflict&) {
    conflicts_.fetch_add(1, std::memory_order_relaxed);
    throw;
  } catch (const soci::soci_error&) {
    other_errors_.fetch_add(1, std::memory_order_relaxed);
    throw;
  }
}

void Database::run_session(const std::function<void(soci::session&)>& work) {
  std::size_t slot = pool_->lease();
  struct GiveBack {
    soci::connection_pool& pool;
    std::size_t slot;
    ~GiveBack() { pool.give_back(slot); }
  } give_back{*pool_, slot};

  if (broken_[slot] != 0) connect(slot);
  soci::session& sql = pool_->at(slot);
  try {
    work(sql);
  } catch (const soci::postgresql_soci_error& e) {
    auto state = e.sqlstate();
    if (is_conflict_sqlstate(state)) throw DatabaseConflict("serialization conflict (SQLSTATE " + state + ")");
    if (is_unavailable_sqlstate(state) || !sql.is_connected()) {
      broken_[slot] = 1;
      throw DatabaseUnavailable("database connection lost (SQLSTATE " + state + ")");
    }
    throw;
  } catch (const soci::sqlite3_soci_error& e) {
    int code = e.result() & 0xff;
    if (code == 5 /* SQLITE_BUSY */ || code == 6 /* SQLITE_LOCKED */) throw DatabaseConflict("database is busy");
    if (code == 10 /* SQLITE_IOERR */ || code == 13 /* SQLITE_FULL */ || code == 14 /* SQLITE_CANTOPEN */) {
      broken_[slot] = 1;
      throw DatabaseUnavailable("database file unavailable (SQLite code " + std::to_string(code) + ")");
    }
    throw;
  } catch (const soci::soci_error& e) {
    if (e.get_error_category() == soci::soci_error::connection_error || !sql.is_connected()) {
      broken_[slot] = 1;
      throw DatabaseUnavailable("database connection lost");
    }
    throw;
  }
}

}  // namespace privacyd
