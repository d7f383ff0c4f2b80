#pragma once
// The durable workflow runner. It claims due requests with a lease, runs
// their steps one at a time and commits each step's outcome (with its audit
// entry) before the next starts. A daemon killed at any instant loses
// nothing: on restart, or in another instance once the lease expires, the
// request resumes at the step that had not committed, which runs again
// (at least once; actions carry idempotency keys).

#include <atomic>
#include <filesystem>
#include <functional>
#include <boost/asio/awaitable.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>

#include "daemon/base/clock.hpp"
#include "daemon/base/log.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/engine/action.hpp"
#include "daemon/engine/workflow.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/store/database.hpp"
#include "daemon/store/group_commit.hpp"
#include "daemon/store/runs.hpp"

namespace boost::asio {
class io_context;
}

namespace privacyd::engine {

struct EngineOptions {
  std::string instance;  // unique per process: hostname, pid, random
  Duration lease = std::chrono::seconds(30);
  Duration poll = std::chrono::seconds(1);
  std::size_t concurrency = 16;  // requests driven at once by this instance
  metrics::Metrics* metrics = nullptr;  // finished requests and their durations
  // Transitions share transactions with other writers (one fsync, and one
  // turn on the audit chain's lock, for many). Null: each commits alone.
  GroupCommit* commits = nullptr;
  // The notices that tell the person their request was rejected, and why;
  // committed with the rejection (main wires notify's here).
  std::function<std::vector<NoticeDraft>(const boost::json::value& context, const std::string& reason, UnixMillis now)>
      rejection_notices;
  // The notices that follow a request's end (`status` completed or
  // rejected): the Partner Center's callback. Committed with the end.
  std::function<std::vector<NoticeDraft>(const runs::RunRow& row, const std::string& status,
                                         const std::string& reason, UnixMillis now)>
      finished_notices = {};
  // Notices handed to the notifier as they commit (main wires the
  // notifier's take()). While `handoff_open()` says it takes more, a run's
  // notices are written leased (for `handoff_lease`) to a token of the run's
  // transaction, and passed to `hand_over` after the commit: the notifier
  // sends them at once instead of finding them in a round of its own. The
  // outbox stays the record: a handed notice not sent before its lease
  // lapses is found by any instance's notifier. Null: rounds find them.
  std::function<bool()> handoff_open = {};
  std::function<void(std::vector<runs::LeasedNotice>)> hand_over = {};
  Duration handoff_lease = std::chrono::seconds(30);
  // Whether the notifier would start handed notices at once (none wait
  // behind others): only then does a run wait for them in memory.
  std::function<bool()> handoff_prompt = {};
  // How long a run whose notices were handed over waits for them in
  // memory, keeping its lease, before it gives the request back to be
  // woken by their outcomes (zero: it never waits; at most lease / 3).
  Duration await_in_memory = std::chrono::seconds(2);
  // Tests only (PRIVACYD_TEST_AWAIT_GATE): a notify step that found notices
  // still undelivered holds its commit until this file exists, which widens
  // the window in which a notice can settle between the read and the commit.
  std::filesystem::path await_gate;
};

// What a step's `if:` and its action see of a request: request, subject
// (opened with `keys`), partner and the earlier steps' outputs.
boost::json::value request_context(const runs::RunRow& row, const crypto::KeyRing& keys);

// A drafted notice as the outbox stores it.
runs::Transition::Notice outbox_entry(NoticeDraft&& n);

class Engine {
 public:
  Engine(boost::asio::io_context& ioc, Database& db, const Clock& clock, Logger& log, const crypto::KeyRing& keys,
         const ActionRegistry& actions, EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Validates the set against the stored versions (a changed file under an
  // unchanged version is refused), stores new versions, and makes it the
  // set new requests start on. Running requests keep their pinned version.
  // Blocking (database work): call from start-up or a database thread.
  Diagnostics install(WorkflowSet set);

  // The set new requests start on now.
  std::shared_ptr<const WorkflowSet> workflows() const;

  void start();
  // New work may be due (called by intake after a commit).
  void wake();
  // Called after a step has committed notices to the outbox (main wires
  // the notifier's wake-up here).
  void on_notices_queued(std::function<void()> callback);
  // The notifier's: a notice a step of `request_id` awaits was settled
  // (delivered or dead) and committed. The run awaiting it in memory stops
  // waiting; otherwise the claim loop is woken.
  void notice_settled(const std::string& request_id);
  // The notifier's: a notice this process handed over was delivered. True
  // when the run that awaits it in memory takes `record` (the outcome's
  // fenced write) to commit in its next transaction; false: the notifier
  // commits it itself.
  bool take_delivery(const std::string& request_id, const std::string& notice_id,
                     std::function<bool(soci::session&)> record);
  // Stop claiming; requests being driven finish their current step.
  void drain();
  // Requests being driven by this instance now.
  std::size_t active() const;
  // After drain(): true once the loop has ended and no request is being
  // driven, so no engine coroutine is left on the io_context.
  bool stopped() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

std::string new_instance_id();

}  // namespace privacyd::engine
