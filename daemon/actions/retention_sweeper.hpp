#pragma once
// The durable timer behind retention holds: once a hold's day has come, the
// held category is erased from its system with the query the policies give
// for it now. Holds live in the database, so restarts lose none; several
// instances share the work through short leases.

#include <boost/asio/awaitable.hpp>
#include <memory>

#include "daemon/actions/systems.hpp"
#include "daemon/base/clock.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/policy/policy_store.hpp"

namespace boost::asio {
class io_context;
}

namespace privacyd::actions {

class RetentionSweeper {
 public:
  RetentionSweeper(boost::asio::io_context& ioc, Database& db, const policy::PolicyStore& policies,
                   SystemConnections& systems, const crypto::KeyRing& keys, const Clock& clock, Logger& log,
                   Duration every);
  ~RetentionSweeper();
  void start();
  void stop();
  bool stopped() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace privacyd::actions
