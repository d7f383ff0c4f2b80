#include "daemon/store/database.hpp"

#include "daemon/store/prepared.hpp"

#include <filesystem>
#include <optional>
#include <thread>
#include <soci/connection-pool.h>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>

#if defined(__SANITIZE_ADDRESS__)
// LeakSanitizer, in the ASan build only. SOCI 4.0.3's PostgreSQL connect
// runs its own `SET extra_float_digits` before it owns the new PGconn; when
// the connection breaks in between (a server restart, a network fault),
// the exception leaves that PGconn unfinished: about 36 KB of libpq memory
// (its socket is closed). Fixed in SOCI 4.1.3; remove this then.
// test_serve_pg drops connections in that window on every run. Only what
// was allocated inside PQconnectdb is let through: a session privacyd
// leaked itself is still reported, through its own allocation.
extern "C" const char* __lsan_default_suppressions() { return "leak:PQconnectdb\n"; }
#endif

namespace privacyd {

namespace {

constexpr int kSqliteConflictAttempts = 3;

// A SQLite transaction read, then found another connection had written
// since: run it again (Database::with_session does).
class SnapshotLost : public DatabaseConflict {
 public:
  using DatabaseConflict::DatabaseConflict;
};

// The server no longer has the connection's prepared statements
// (store/prepared.hpp forgot them all): the work runs again at once.
class PreparedLost : public DatabaseConflict {
 public:
  using DatabaseConflict::DatabaseConflict;
};

// SQLSTATE classes that mean "the connection or server is gone" rather than
// "this statement is wrong": 08 connection exception, 57 operator
// intervention (shutdown), 53 insufficient resources.
bool is_unavailable_sqlstate(const std::string& state) {
  return state.starts_with("08") || state.starts_with("57") || state.starts_with("53");
}

// 40001 serialisation failure, 40P01 deadlock, 55P03 lock_timeout: retrying
// later may succeed. 57014 (statement_timeout) is "unavailable": the server
// or a lock is stuck.
bool is_conflict_sqlstate(const std::string& state) {
  return state == "40001" || state == "40P01" || state == "55P03";
}

long long whole_ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }


}  // namespace

std::string bounded_text(std::string_view text, std::size_t max) {
  if (text.size() <= max) return std::string(text);
  std::size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return std::string(text.substr(0, cut)) + "…";
}

std::string describe_failure(const std::exception& e) {
  if (const auto* pg = dynamic_cast<const soci::postgresql_soci_error*>(&e)) {
    return "the query failed (SQLSTATE " + pg->sqlstate() + ")";
  }
  if (const auto* lite = dynamic_cast<const soci::sqlite3_soci_error*>(&e)) {
    return "the query failed (SQLite error " + std::to_string(lite->result()) + ")";
  }
  if (dynamic_cast<const soci::soci_error*>(&e) != nullptr) return "the query failed";
  std::string out = bounded_text(e.what(), 200);
  // One line: libpq's messages span several.
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return out;
}

void lift_deadlines(soci::session& sql) {
  if (sql.get_backend_name() != "postgresql") return;
  sql << "SET LOCAL statement_timeout = 0";
  sql << "SET LOCAL lock_timeout = 0";
}

Database::Database(DatabaseConfig config, Logger& log, bool connect_now)
    : config_(std::move(config)),
      log_(log),
      pool_(std::make_unique<soci::connection_pool>(config_.pool_size)),
      broken_(config_.pool_size, 1),
      statements_(config_.pool_size),
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
  // Its statements belong to the server session about to end.
  if (statements_[slot]) statements_[slot]->clear();
  else statements_[slot] = std::make_unique<StatementCache>(sql);
  try {
    sql.close();
    if (is_postgresql()) {
      std::string params = config_.parameters;
      // An unreachable host must not hang a database thread forever, nor
      // may a half-open connection: TCP keepalives find it within ~30s.
      if (params.find("connect_timeout") == std::string::npos) params += " connect_timeout=5";
      if (params.find("keepalives") == std::string::npos) {
        params += " keepalives=1 keepalives_idle=10 keepalives_interval=5 keepalives_count=3";
      }
      if (params.find("tcp_user_timeout") == std::string::npos) params += " tcp_user_timeout=30000";
      sql.open(soci::postgresql, params);
      // Session deadlines: a stuck statement or a lock wait fails instead
      // of holding the thread (and with it /readyz and shutdown).
      sql << "SET statement_timeout = " + std::to_string(whole_ms(config_.statement_timeout));
      sql << "SET lock_timeout = " + std::to_string(whole_ms(config_.lock_timeout));
    } else {
      if (config_.foreign) {
        // Someone else's database: never create a missing file, never
        // change its journal mode (a permanent change to their file).
        std::error_code ec;
        if (!std::filesystem::exists(config_.sqlite_file, ec)) {
          throw DatabaseUnavailable("the SQLite database file does not exist");
        }
      }
      sql.open(soci::sqlite3, config_.parameters);
      // Extended result codes tell a lost snapshot (SQLITE_BUSY_SNAPSHOT,
      // worth running again at once) from a busy file (already waited for).
      auto* backend = static_cast<soci::sqlite3_session_backend*>(sql.get_backend());
      sqlite_api::sqlite3_extended_result_codes(backend->conn_, 1);
      if (!config_.foreign) {
        sql << "PRAGMA journal_mode=WAL";
        sql << "PRAGMA synchronous=FULL";
        sql << "PRAGMA foreign_keys=ON";
      }
      sql << "PRAGMA busy_timeout=" + std::to_string(whole_ms(config_.lock_timeout) / 2);
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
    // SQLite: a transaction that read and then writes fails with
    // SQLITE_BUSY_SNAPSHOT when another connection (another process on the
    // file, or a second pooled session) committed in between; no busy
    // handler waits for that, but a new transaction sees the new snapshot.
    // The work rolled back whole (RAII transactions), so it runs again.
    for (int attempt = 1;; ++attempt) {
      try {
        run_session(work);
        break;
      } catch (const PreparedLost&) {
        // Once: the statements are prepared afresh on this run.
        if (attempt > 1) throw;
        conflicts_.fetch_add(1, std::memory_order_relaxed);
        continue;
      } catch (const SnapshotLost&) {
        if (attempt == kSqliteConflictAttempts) throw;
        conflicts_.fetch_add(1, std::memory_order_relaxed);
        std::this_thread::sleep_for(std::chrono::milliseconds(5 * attempt));
      }
    }
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
  // PostgreSQL's only: SQLite's in-process prepare is cheap, and its
  // prepared SELECTs would hold read snapshots open.
  std::optional<StatementCache::Scope> statements;
  if (config_.prepared_statements && is_postgresql()) statements.emplace(sql, *statements_[slot]);
  // After the work, whether it ended or threw: its transaction is over.
  struct Bury {
    StatementCache& cache;
    ~Bury() { cache.bury(); }
  } bury{*statements_[slot]};
  try {
    work(sql);
  } catch (const soci::postgresql_soci_error& e) {
    auto state = e.sqlstate();
    if (is_conflict_sqlstate(state)) throw DatabaseConflict("serialization conflict (SQLSTATE " + state + ")");
    if (state == "26000") throw PreparedLost("prepared statement lost (SQLSTATE 26000)");
    if (is_unavailable_sqlstate(state) || !sql.is_connected()) {
      broken_[slot] = 1;
      throw DatabaseUnavailable("database connection lost (SQLSTATE " + state + ")");
    }
    throw;
  } catch (const soci::sqlite3_soci_error& e) {
    if (e.result() == 517 /* SQLITE_BUSY_SNAPSHOT */) throw SnapshotLost("another connection wrote since this one read");
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
