#pragma once
// Connections to the data systems the policies name, one small pool each,
// opened on first use (a system that is down fails the steps that need it,
// not privacyd's start-up), and the bounded way their rows are read.

#include <boost/json/value.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "daemon/policy/policies.hpp"
#include "daemon/store/database.hpp"

namespace soci {
class session;
}

namespace privacyd::actions {

class SystemConnections {
 public:
  explicit SystemConnections(Logger& log) : log_(log) {}
  // The pool for `system` as the policies describe it now; a changed
  // connection string gets a new pool.
  Database& of(const policy::DataSystem& system);
  // Waits for every pool's threads (at shutdown).
  void shutdown();

 private:
  Logger& log_;
  std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Database>> pools_;  // by name and parameters
};

struct Binds {
  std::string subject;  // the HUAWEI ID
  std::string partner;
};

// A data system answered more than privacyd will hold for one request.
class ResultTooLarge : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr std::size_t kMaxRows = 10000;
inline constexpr std::size_t kMaxBytes = 16 * 1024 * 1024;

// Runs an access query; rows become JSON objects (column → value). More
// than kMaxRows rows is an error, not a silent cut.
boost::json::array read_rows(soci::session& sql, const policy::Query& query, const Binds& binds);
// Runs an erase or unlink statement; returns the rows it touched.
long long change_rows(soci::session& sql, const policy::Query& query, const Binds& binds);

// What went wrong in a data system, safe to store, audit and log (see
// privacyd::describe_failure), in a data system's words.
std::string describe_system_failure(const std::exception& e);

}  // namespace privacyd::actions
