#pragma once
// The database port: a SOCI connection pool on SQLite or PostgreSQL, used
// only from the database's own threads (SOCI blocks). Coroutines reach it
// through store/async.hpp; tools and tests may call with_session directly.

#include <atomic>
#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/base/log.hpp"
#include "daemon/config/config.hpp"

namespace soci {
class session;
class connection_pool;
}  // namespace soci

namespace privacyd {

class StatementCache;

// The database cannot be reached or lost the connection mid-work: the
// caller answers 503 or retries later; nothing is half-written.
class DatabaseUnavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A statement failed in a way that retrying the transaction may fix
// (serialisation failure, deadlock, SQLite busy).
class DatabaseConflict : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `text` cut to at most `max` bytes (plus "…" when cut), never inside a
// UTF-8 sequence.
std::string bounded_text(std::string_view text, std::size_t max);

// What went wrong in database work, safe to store, audit and log: SOCI adds
// the bound values (a HUAWEI ID, a sealed blob of megabytes) to its
// messages and servers quote rows in theirs, so only the kind of failure
// and its SQLSTATE or SQLite code are kept; any other message is bounded.
std::string describe_failure(const std::exception& e);

// Inside a transaction on PostgreSQL: no statement_timeout or lock_timeout
// until it ends (SET LOCAL), for work that is long by nature and must not
// be cut (migrations, which also wait for each other's lock, and walking
// the whole audit chain). Nothing on SQLite.
void lift_deadlines(soci::session& sql);

class Database {
 public:
  // Connects one session at once (so a bad connection string or an
  // unreachable server shows at start-up) unless `connect_now` is false; a
  // data system that is down must not stop privacyd from starting.
  Database(DatabaseConfig config, Logger& log, bool connect_now = true);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  DatabaseConfig::Backend backend() const { return config_.backend; }
  bool is_postgresql() const { return config_.backend == DatabaseConfig::Backend::postgresql; }

  // Runs `work` on a leased session on the calling thread, (re)connecting
  // first when needed. Connection failures surface as DatabaseUnavailable,
  // retryable conflicts as DatabaseConflict; other errors pass through.
  void with_session(const std::function<void(soci::session&)>& work);

  // The threads on which database work should run.
  boost::asio::thread_pool& threads() { return threads_; }

  // Stops the worker threads after the queued work is done.
  void shutdown();

  // Failures seen by with_session since start, for /metrics.
  struct ErrorCounts {
    std::uint64_t unavailable = 0;  // could not connect, or the connection was lost
    std::uint64_t conflict = 0;     // serialisation failure, deadlock, busy
    std::uint64_t other = 0;        // any other failed statement
  };
  ErrorCounts errors() const;

 private:
  void connect(std::size_t slot);
  void run_session(const std::function<void(soci::session&)>& work);

  DatabaseConfig config_;
  Logger& log_;
  std::unique_ptr<soci::connection_pool> pool_;
  std::vector<char> broken_;  // per slot: reconnect before next use
  std::vector<std::unique_ptr<StatementCache>> statements_;  // per slot (store/prepared.hpp)
  std::atomic<std::uint64_t> unavailable_{0};
  std::atomic<std::uint64_t> conflicts_{0};
  std::atomic<std::uint64_t> other_errors_{0};
  boost::asio::thread_pool threads_;
};

}  // namespace privacyd
