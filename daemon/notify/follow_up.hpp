#pragma once
// The loops that follow a request's notices (SPEC §13) and what privacyd
// itself keeps (SPEC §14), as parts of one durable job (store/jobs.hpp):
// partners that have not acknowledged a notice are reminded at the
// policies' offsets (on the notice's own channel, through the outbox);
// access packages whose link has expired are erased; privacyd's own
// retention is swept; subjects whose deletion completed are crypto-shredded
// once nothing pending needs their key; and subjects from before subject
// keys are moved under keys of their own (store/legacy_subjects.hpp).
// Durable: the due times live in the database, so a restart loses none;
// instances share the work through row locks, and each reminder is fenced
// on the count already sent.

#include <functional>
#include <memory>

#include "daemon/base/clock.hpp"
#include "daemon/notify/notice_actions.hpp"
#include "daemon/store/key_store.hpp"

namespace boost::asio {
class io_context;
}

namespace privacyd::notify {

class FollowUp {
 public:
  // `subject_keys` (may be null in tests) is where shredded subjects' keys
  // are destroyed.
  FollowUp(boost::asio::io_context& ioc, const NoticeDependencies& deps, const Clock& clock, Logger& log,
           Duration every, SubjectKeyStore* subject_keys = nullptr);
  ~FollowUp();
  // Called after reminders were queued (main wires the notifier's wake-up).
  void on_queued(std::function<void()> callback);
  void start();
  void stop();
  bool stopped() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace privacyd::notify
