#pragma once
// The engine's insides, shared by its three parts: claiming due requests
// (engine.cpp), driving a claimed request (drive.cpp), and deciding and
// committing its transitions (transitions.cpp).

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/value.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "daemon/engine/engine.hpp"
#include "daemon/store/async.hpp"

namespace privacyd::engine {

namespace net = boost::asio;

// A delivered notice's record, handed back by the notifier to the run that
// awaits it, to commit in its next transaction.
struct Delivery {
  std::string notice_id;
  std::function<bool(soci::session&)> record;  // false: its claim was lost, and it wrote nothing
};

struct Run : std::enable_shared_from_this<Run> {
  explicit Run(runs::Claim c) : id(std::move(c.id)), token(std::move(c.token)) {}
  std::string id;
  std::string token;  // this claim's: every write of the run checks it
  std::optional<runs::RunRow> loaded;  // read in the claim's own transaction
  // Waiting in memory for the notices its last segment handed over
  // (guarded by Impl::mutex; `waiter` is touched on the strand only).
  bool awaiting = false;
  bool stop_waiting = false;          // one was settled by the notifier itself
  std::set<std::string> awaited;      // handed over, not yet delivered
  std::vector<Delivery> deliveries;   // delivered, handed back
  std::optional<net::steady_timer> waiter;
  // Ends the wait now, if there is one (on the strand).
  void stop_wait() {
    if (waiter) waiter->cancel();
  }
};

// A claim and the request as it stood when claimed.
struct Claimed {
  runs::Claim claim;
  std::optional<runs::RunRow> row;
};

// One attempt of an external action, run as a coroutine of its own so that
// the driver can stop waiting for it at the step's timeout (and renew the
// lease meanwhile). It owns everything the action's context refers to: an
// attempt given up on runs to its end and its result is dropped.
struct ActionJob : std::enable_shared_from_this<ActionJob> {
  explicit ActionJob(net::strand<net::io_context::executor_type>& s)
      : finished(s, net::steady_timer::time_point::max()) {}
  std::shared_ptr<const Workflow> workflow;  // keeps the step alive
  boost::json::value context;
  boost::json::value earlier;  // null: no earlier attempt left anything
  std::optional<ActionContext> ctx;
  Action* action = nullptr;
  std::optional<ActionResult> result;
  net::steady_timer finished;  // cancelled when `result` is set
  // Set when the driver gave up waiting (the step's timeout): the request
  // stays among those this process drives, and counts against its
  // concurrency, until the attempt has ended, so no second attempt of the
  // step starts here while this one still runs.
  std::string request_id;
  bool holds_run = false;
  // privacyd's own database failed under the action (not a data system:
  // actions report those as failures): no attempt of the step is spent;
  // the run stops and the request is taken up again after its lease.
  std::exception_ptr database_failure;
};

// The external step a run goes on with once its segment has committed
// (with the step's "started", unless it was woken from a wait).
struct ExternalStep {
  std::size_t idx = 0;
  int attempt = 1;
  std::optional<UnixMillis> woken_from;
  boost::json::value context;
  std::optional<std::string> previous_output;  // what earlier attempts left
};

// One transaction of a run: from where the request stands, every
// transition up to its next external step (that step's "started"
// included) or to the end of the run (finished, parked, waiting, or
// released). Local steps run inside it (LocalAction), so what they read is
// what it commits against; an external step's outcome (`first`) is
// committed in it too, before anything that follows.
struct Segment {
  // What it starts from.
  runs::RunRow start;
  std::shared_ptr<const Workflow> workflow;  // null: none for the type yet, or the pinned one is unavailable
  std::optional<runs::Transition> first;
  std::vector<Delivery> deliveries;  // written first: they stand whatever becomes of the claim
  std::string owner;
  std::string token;
  bool hand_over = false;   // its notices are handed to the notifier (under `notice_lease`)
  bool only_first = false;  // commit `deliveries` and `first`, nothing after them
  bool may_await = false;   // it may end awaiting its handed notices in memory
  // What it did (reset each time the work runs: a batch may run it again).
  UnixMillis at = 0;  // when it ran: its leases count from here
  std::optional<runs::NoticeLease> notice_lease;
  runs::RunRow row;  // as after `applied`
  std::vector<runs::Transition> applied;
  bool lost = false;  // the claim was lost: nothing was written
  std::optional<ExternalStep> external;
  // It ended on a step awaiting the notices it handed over, with the lease
  // kept: the run waits for them in memory (`awaited`: their ids).
  bool awaiting = false;
  std::vector<std::string> awaited;
  // The engine is draining: it stopped before the next external step.
  bool drained = false;
  // Local work failed outside privacyd's database (the key store, say):
  // what was applied before it stands; the run stops, to be taken up
  // again after its lease.
  std::exception_ptr failure;
  // Test hook (EngineOptions::await_gate): a notify step that found its
  // notices still undelivered; committed after the gate opens.
  std::optional<runs::Transition> held;
};

inline long long ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

struct Engine::Impl : std::enable_shared_from_this<Engine::Impl> {
  Impl(net::io_context& i, Database& d, const Clock& c, Logger& l, const crypto::KeyRing& k, const ActionRegistry& a,
       EngineOptions o)
      : ioc(i),
        strand(net::make_strand(i)),
        db(d),
        clock(c),
        log(l),
        keys(k),
        actions(a),
        options(std::move(o)),
        wakeup(strand),
        rng(std::random_device{}()) {}

  net::io_context& ioc;
  // Every engine coroutine runs on this strand: the timer and the
  // bookkeeping are touched from one place at a time.
  net::strand<net::io_context::executor_type> strand;
  Database& db;
  const Clock& clock;
  Logger& log;
  const crypto::KeyRing& keys;
  const ActionRegistry& actions;
  EngineOptions options;
  net::steady_timer wakeup;

  std::mutex mutex;  // guards everything below
  std::shared_ptr<const WorkflowSet> current;
  std::map<std::pair<std::string, int>, std::shared_ptr<const Workflow>> pinned;
  std::map<std::string, std::shared_ptr<Run>> running;
  std::mt19937_64 rng;
  bool woken = false;
  std::map<std::string, UnixMillis> warned_no_workflow;  // type → when last logged

  std::function<void()> notices_queued;
  std::atomic<bool> draining{false};
  std::atomic<bool> loop_done{true};  // until start()
  std::atomic<std::size_t> active{0};
  std::atomic<bool> at_capacity{false};  // the loop's last look left due work for want of a slot
  OutageLog claim_outage{"engine: cannot claim work"};

  UnixMillis now() const { return to_unix_ms(clock.now()); }

  double unit_random() {
    std::lock_guard lock(mutex);
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  }

  // engine.cpp: claiming.
  net::awaitable<void> loop();

  // drive.cpp: driving one claimed request.
  net::awaitable<void> drive(Run* run);
  net::awaitable<void> run_job(ActionJob* job);
  net::awaitable<void> hold_at_gate(const std::string& request_id);
  // Waits for the job, renewing the run's lease every third of it, until it
  // finishes, `timeout` passes (a retryable failure), or the claim is lost
  // (nullopt: stop driving).
  net::awaitable<std::optional<ActionResult>> await_job(ActionJob* job, const Run& run, Duration timeout);
  net::awaitable<std::shared_ptr<const Workflow>> workflow_for(const runs::RunRow& row);
  net::awaitable<bool> commit(const runs::Transition& t);
  net::awaitable<void> commit_segment(Segment& s);
  // Gives the request's lease back, if the run still holds it.
  net::awaitable<void> give_back(const Run& run);
  // Waits for the notices the run handed over, up to
  // EngineOptions::await_in_memory; answers the deliveries handed back.
  net::awaitable<std::vector<Delivery>> await_deliveries(Run& run);
  // Logs, metrics and the notifier's wake-up for what a segment committed.
  void committed(const Segment& s);
  // A run ended (on the strand): the loop claims again if it was full.
  void capacity_freed();
  // The loop claims again now (on the strand).
  void wake_loop();
  // Counts a request that reached a final status in this instance.
  void finished(const runs::RunRow& row, std::string_view status, UnixMillis at) const;

  // transitions.cpp: what the run does next.
  // The segment's work, in an open transaction (which it never commits).
  void run_segment(soci::session& sql, Segment& s);
  // The transition an action's result makes of step `idx`.
  runs::Transition outcome(const runs::RunRow& row, std::size_t idx, const StepDef& step, ActionResult&& result,
                           int attempt, const boost::json::value& context,
                           const std::optional<std::string>& previous_output, const std::string& token,
                           UnixMillis at);
  // The notices that follow the request's end (`t.request_status`), into `t`.
  void add_finished_notices(const runs::RunRow& row, runs::Transition& t, UnixMillis at) const;
};

}  // namespace privacyd::engine
