#pragma once
// GET /healthz (the process answers) and GET /readyz (the database answers
// and the daemon is not draining), mounted on both listeners.

#include <atomic>
#include <memory>

#include "daemon/base/log.hpp"
#include "daemon/http/router.hpp"
#include "daemon/store/database.hpp"

namespace privacyd {

class Health {
 public:
  Health(Database& db, Logger& log) : db_(db), log_(log) {}

  void mount(http::Router& router);
  // Once draining, /readyz answers 503 so load balancers look elsewhere.
  void set_draining() { draining_ = true; }

 private:
  Database& db_;
  Logger& log_;
  std::atomic<bool> draining_{false};
  std::atomic<bool> database_up_{true};  // the last probe's answer; transitions are logged once
  // A probe is on the database threads (set until it has left them, even
  // after its caller stopped waiting): one at a time, so probes cannot pile
  // up behind a stuck database and then run before everything else.
  std::shared_ptr<std::atomic<bool>> probing_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace privacyd
