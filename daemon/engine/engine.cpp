#include "daemon/engine/engine.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#include <typeinfo>
#include <unistd.h>

#include "daemon/crypto/primitives.hpp"
#include "daemon/store/async.hpp"
#include "daemon/store/runs.hpp"

namespace privacyd::engine {

namespace net = boost::asio;
namespace json = boost::json;

std::string new_instance_id() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return std::string(host) + "/" + std::to_string(getpid()) + "/" + crypto::hex(crypto::random_bytes(4));
}

namespace {
struct Run : std::enable_shared_from_this<Run> {
  explicit Run(runs::Claim c) : id(std::move(c.id)), token(std::move(c.token)) {}
  std::string id;
  std::string token;  // this claim's: every write of the run checks it
  std::optional<runs::RunRow> loaded;  // read in the claim's own transaction
};

// A claim and the request as it stood when claimed.
struct Claimed {
  runs::Claim claim;
  std::optional<runs::RunRow> row;
};

// One attempt of an action, run as a coroutine of its own so that the
// driver can stop waiting for it at the step's timeout (and renew the lease
// meanwhile). It owns everything the action's context refers to: an
// attempt given up on runs to its end and its result is dropped.
struct ActionJob : std::enable_shared_from_this<ActionJob> {
  explicit ActionJob(net::strand<net::io_context::executor_type>& s)
      : finished(s, net::steady_timer::time_point::max()) {}
  std::shared_ptr<const Workflow> workflow;  // keeps the step alive
  json::value context;
  json::value earlier;  // null: no earlier attempt left anything
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

long long ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }
}  // namespace

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
  OutageLog claim_outage{"engine: cannot claim work"};

  UnixMillis now() const { return to_unix_ms(clock.now()); }

  double unit_random() {
    std::lock_guard lock(mutex);
    return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  }

  net::awaitable<void> loop();
  net::awaitable<void> drive(Run* run);
  net::awaitable<void> run_job(ActionJob* job);
  net::awaitable<void> hold_at_gate(const std::string& request_id);
  // Waits for the job, renewing the run's lease every third of it, until it
  // finishes, `timeout` passes (a retryable failure), or the claim is lost
  // (nullopt: stop driving).
  net::awaitable<std::optional<ActionResult>> await_job(ActionJob* job, const Run& run, Duration timeout);
  net::awaitable<std::shared_ptr<const Workflow>> workflow_for(const runs::RunRow& row);
  net::awaitable<bool> commit(const runs::Transition& t);
  // Counts a request that reached a final status in this instance.
  void finished(const runs::RunRow& row, std::string_view status, UnixMillis at) const;
  // The notices that follow the request's end (`t.request_status`), into `t`.
  void add_finished_notices(const runs::RunRow& row, runs::Transition& t, UnixMillis at) const;
};

Engine::Engine(net::io_context& ioc, Database& db, const Clock& clock, Logger& log, const crypto::KeyRing& keys,
               const ActionRegistry& actions, EngineOptions options)
    : impl_(std::make_shared<Impl>(ioc, db, clock, log, keys, actions, std::move(options))) {}

Engine::~Engine() = default;

std::size_t Engine::active() const { return impl_->active.load(); }

bool Engine::stopped() const { return impl_->loop_done.load() && impl_->active.load() == 0; }

Diagnostics Engine::install(WorkflowSet set) {
  Diagnostics problems;
  const auto at = impl_->now();
  impl_->db.with_session([&](soci::session& sql) {
    problems.clear();  // the work may run again (Database::with_session)
    soci::transaction tr(sql);
    for (const auto& w : set.workflows) {
      if (auto stored = runs::store_workflow(sql, w.name, w.version, w.sha256, w.source, at)) {
        problems.push_back({w.path, 1, 1,
                            "workflow \"" + w.name + "\" version " + std::to_string(w.version) +
                                " changed since it was first loaded; give the new text a new version",
                            "workflow"});
      }
    }
    if (!problems.empty()) return;
    // A request that waited for a workflow for its type need not wait out
    // its minute: this set may have one.
    for (const auto& w : set.workflows) {
      if (w.trigger.starts_with("request.")) runs::wake_received(sql, w.trigger.substr(8), at);
    }
    tr.commit();
  });
  if (!problems.empty()) return problems;
  auto shared = std::make_shared<const WorkflowSet>(std::move(set));
  std::lock_guard lock(impl_->mutex);
  for (const auto& w : shared->workflows) {
    impl_->pinned[{w.name, w.version}] = std::shared_ptr<const Workflow>(shared, &w);
  }
  impl_->current = shared;
  return problems;
}

void Engine::on_notices_queued(std::function<void()> callback) { impl_->notices_queued = std::move(callback); }

void Engine::start() {
  impl_->loop_done = false;
  net::co_spawn(impl_->strand, impl_->loop(), net::detached);
}

void Engine::wake() {
  auto self = impl_;
  net::post(self->strand, [self] {
    std::lock_guard lock(self->mutex);
    self->woken = true;
    self->wakeup.cancel();
  });
}

void Engine::drain() {
  auto self = impl_;
  self->draining = true;
  net::post(self->strand, [self] { self->wakeup.cancel(); });
}

net::awaitable<bool> Engine::Impl::commit(const runs::Transition& t) {
  if (options.commits != nullptr) {
    // Safe to run again: a lost lease changes nothing, and a batch that
    // failed was rolled back before its work runs alone.
    auto applied = std::make_shared<bool>(false);
    GroupCommit::Work shared = [&t, applied](soci::session& sql) { *applied = runs::apply(sql, t); };
    co_await options.commits->run(std::move(shared));
    co_return *applied;
  }
  auto work = [&t](soci::session& sql) {
    soci::transaction tr(sql);
    bool applied = runs::apply(sql, t);
    if (applied) tr.commit();
    return applied;
  };
  co_return co_await run_in_db(db, work);
}

net::awaitable<void> Engine::Impl::loop() {
  auto self = shared_from_this();
  while (!draining) {
    std::size_t in_flight = active.load();
    if (in_flight < options.concurrency) {
      const int capacity = static_cast<int>(options.concurrency - in_flight);
      const UnixMillis at = now();
      const UnixMillis until = at + ms(options.lease);
      const std::string owner = options.instance;
      // What this process still drives is never claimed again, whatever
      // its lease says: two coroutines would run the same step.
      std::vector<std::string> driving;
      {
        std::lock_guard lock(mutex);
        for (const auto& [id, run] : running) driving.push_back(id);
      }
      // Each claimed request is read in the claim's transaction: one round
      // of the database's books for both, not two.
      auto claim = [this, at, until, owner, capacity, driving](soci::session& sql) {
        std::vector<Claimed> out;
        soci::transaction tr(sql);
        for (auto& c : runs::claim(sql, at, owner, until, capacity, driving)) {
          std::optional<runs::RunRow> row;
          try {
            row = runs::load(sql, c.id);
          } catch (const soci::postgresql_soci_error&) {
            throw;  // the server's: the transaction is lost, and the claim with it
          } catch (const soci::soci_error&) {
            // A row SOCI could not read (a column edited by hand): the
            // request's own drive reads it again and fails alone, rather
            // than every claim failing on it.
            row.reset();
          } catch (const std::bad_cast&) {
            row.reset();  // a column of an unexpected type: as above
          }
          out.push_back({std::move(c), std::move(row)});
        }
        tr.commit();
        for (auto& c : out) {
          if (!c.row) continue;
          try {
            keys.warm(c.row->huawei_id_enc);  // the key store's I/O here, not on the event loop
          } catch (const std::exception& e) {
            // Only a head start: the claims stand, and the key is fetched
            // when it is needed.
            log.warn("engine: a subject key could not be fetched ahead", {{"request_id", c.claim.id},
                                                                         {"error", describe_failure(e)}});
          }
        }
        return out;
      };
      std::vector<Claimed> ids;
      try {
        ids = co_await run_in_db(db, claim);
        claim_outage.succeeded(log);
      } catch (const std::exception& e) {
        claim_outage.failed(log, describe_failure(e));
      }
      for (auto& claimed : ids) {
        auto run = std::make_shared<Run>(std::move(claimed.claim));
        run->loaded = std::move(claimed.row);
        {
          std::lock_guard lock(mutex);
          running[run->id] = run;
        }
        ++active;
        net::co_spawn(strand, drive(run.get()), net::detached);
      }
      if (!ids.empty() && static_cast<int>(ids.size()) == capacity) continue;  // there may be more due now
    }
    {
      std::lock_guard lock(mutex);
      if (woken) {
        woken = false;
        continue;
      }
    }
    wakeup.expires_after(options.poll);
    co_await wakeup.async_wait(net::as_tuple(net::use_awaitable));
    std::lock_guard lock(mutex);
    woken = false;
  }
  loop_done = true;
}

net::awaitable<std::shared_ptr<const Workflow>> Engine::Impl::workflow_for(const runs::RunRow& row) {
  std::pair<std::string, int> key{*row.workflow_name, *row.workflow_version};
  {
    std::lock_guard lock(mutex);
    if (auto it = pinned.find(key); it != pinned.end()) co_return it->second;
  }
  // Pinned to a version no longer in the folder: parse the stored text.
  auto fetch = [key](soci::session& sql) { return runs::workflow_source(sql, key.first, key.second).value_or(""); };
  std::string source = co_await run_in_db(db, fetch);
  if (source.empty()) co_return nullptr;
  Diagnostics problems;
  auto parsed = parse_workflow(source, "stored:" + key.first + "@" + std::to_string(key.second), actions.catalog(),
                               problems);
  if (!parsed) co_return nullptr;
  auto shared = std::make_shared<const Workflow>(std::move(*parsed));
  std::lock_guard lock(mutex);
  pinned[key] = shared;
  co_return shared;
}

void Engine::Impl::finished(const runs::RunRow& row, std::string_view status, UnixMillis at) const {
  if (options.metrics == nullptr) return;
  options.metrics->requests_finished.with({row.type, status}).inc();
  options.metrics->request_duration.with({row.type}).observe(static_cast<double>(at - row.received_at) / 1000.0);
}

void Engine::Impl::add_finished_notices(const runs::RunRow& row, runs::Transition& t, UnixMillis at) const {
  if (!options.finished_notices) return;
  try {
    for (auto& n : options.finished_notices(row, t.request_status, t.reason.value_or(""), at)) t.notices.push_back(outbox_entry(std::move(n)));
  } catch (const std::exception& e) {
    // The end itself must still be recorded; the callback is the loss.
    log.error("callback not written", {{"request_id", row.id}, {"error", describe_failure(e)}});
  }
}

runs::Transition::Notice outbox_entry(NoticeDraft&& n) {
  return {std::move(n.id),         std::move(n.channel), std::move(n.recipient),      std::move(n.template_name),
          std::move(n.payload_enc), n.awaited,           n.ack_due_at,                n.next_reminder_at,
          std::move(n.ack_token_sha256)};
}

json::value request_context(const runs::RunRow& row, const crypto::KeyRing& keys) {
  json::object request{{"id", row.id},
                       {"type", row.type},
                       {"status", row.status},
                       {"jurisdiction", row.jurisdiction},
                       {"subject_id", row.subject_id},
                       {"received_at", row.received_at}};
  boost::system::error_code ec;
  request["categories"] = json::parse(row.categories, ec);
  if (row.partner_id) request["partner_id"] = *row.partner_id;
  if (row.key_id) request["subject_key"] = *row.key_id;
  json::object subject;
  if (auto id = keys.open(row.huawei_id_enc, "subjects.huawei_id")) subject["huawei_id"] = *id;
  if (row.contact_enc) {
    if (auto contact = keys.open(*row.contact_enc, "subjects.contact")) {
      auto parsed = json::parse(*contact, ec);
      if (!ec && parsed.is_object()) {
        for (const auto& [k, v] : parsed.get_object()) subject[k] = v;
      }
    }
  }
  if (row.locale) subject["locale"] = *row.locale;
  json::object partner;
  if (row.partner_id) partner["id"] = *row.partner_id;
  json::object steps;
  for (const auto& s : row.steps) {
    json::value out = json::object{};
    if (s.output) {
      auto parsed = json::parse(*s.output, ec);
      if (!ec) out = std::move(parsed);
    }
    steps[s.step_id] = std::move(out);
  }
  return json::object{{"request", std::move(request)},
                      {"subject", std::move(subject)},
                      {"partner", std::move(partner)},
                      {"steps", std::move(steps)}};
}

net::awaitable<void> Engine::Impl::hold_at_gate(const std::string& request_id) {
  log.warn("test hook: holding a notify step's commit", {{"request_id", request_id}});
  net::steady_timer pause(strand);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::error_code ec;
  while (!std::filesystem::exists(options.await_gate, ec) && std::chrono::steady_clock::now() < until) {
    pause.expires_after(std::chrono::milliseconds(20));
    co_await pause.async_wait(net::as_tuple(net::use_awaitable));
  }
}

net::awaitable<void> Engine::Impl::run_job(ActionJob* raw) {
  auto self = shared_from_this();
  auto job = raw->shared_from_this();
  ActionResult r;
  try {
    r = co_await job->action->run(*job->ctx);
  } catch (const PermanentFailure& e) {
    r = ActionResult::failure(e.what(), false);
  } catch (const std::exception& e) {
    if (dynamic_cast<const DatabaseUnavailable*>(&e) != nullptr || dynamic_cast<const DatabaseConflict*>(&e) != nullptr) {
      job->database_failure = std::current_exception();
    }
    // Bounded and value-free: a failed statement's message carries what
    // was bound to it.
    r = ActionResult::failure(describe_failure(e), true);
  }
  job->result = std::move(r);
  job->finished.cancel();
  if (job->holds_run) {
    {
      std::lock_guard lock(mutex);
      running.erase(job->request_id);
    }
    --active;
    wakeup.cancel();  // capacity freed
  }
}

net::awaitable<std::optional<ActionResult>> Engine::Impl::await_job(ActionJob* job, const Run& run,
                                                                    Duration timeout) {
  using steady = std::chrono::steady_clock;
  const auto deadline = steady::now() + timeout;
  const Duration renew_every = std::max<Duration>(options.lease / 3, std::chrono::milliseconds(100));
  while (!job->result) {
    job->finished.expires_at(std::min(deadline, steady::now() + renew_every));
    co_await job->finished.async_wait(net::as_tuple(net::use_awaitable));
    if (job->result) break;
    if (steady::now() >= deadline) {
      // The attempt goes on by itself; what it does is at-least-once like
      // every attempt, and the retry carries the same idempotency key.
      co_return ActionResult::failure(
          job->ctx->step.action + " timed out after " + std::to_string(ms(timeout)) + "ms", true);
    }
    const UnixMillis until = now() + ms(options.lease);
    auto renew = [id = run.id, owner = options.instance, token = run.token, until](soci::session& sql) {
      return runs::renew(sql, id, owner, token, until);
    };
    try {
      if (!co_await run_in_db(db, renew)) co_return std::nullopt;
    } catch (const std::exception& e) {
      // The database is away: keep waiting; if the lease lapses meanwhile
      // and another holder claims the request, this run's writes are fenced.
      log.warn("engine: cannot renew a lease", {{"request_id", run.id}, {"error", describe_failure(e)}});
    }
  }
  co_return std::move(*job->result);
}

net::awaitable<void> Engine::Impl::drive(Run* raw) {
  auto self = shared_from_this();
  auto run = raw->shared_from_this();
  const std::string& owner = options.instance;
  std::shared_ptr<ActionJob> outstanding;  // an attempt given up on at its timeout, still running
  try {
    // Loaded once; after each transition this coroutine commits while it
    // holds the lease, the row is brought up to date in memory (a commit
    // fails, and the loop ends, if the lease was lost).
    std::optional<runs::RunRow> row = std::move(run->loaded);
    for (;;) {
      if (!row) {
        auto load = [id = run->id, this](soci::session& sql) {
          // One transaction for the request, its steps and their statements'
          // release, not one each (SPEC §12's transactions per request).
          soci::transaction tr(sql);
          auto loaded = runs::load(sql, id);
          tr.commit();
          if (loaded) keys.warm(loaded->huawei_id_enc);  // the key store's I/O here, not on the event loop
          return loaded;
        };
        row = co_await run_in_db(db, load);
      }
      if (!row || row->lease_owner != owner) break;
      UnixMillis at = now();
      runs::Transition t;
      t.request_id = row->id;
      t.owner = owner;
      t.token = run->token;
      t.now = at;

      if (draining) {
        auto give_back = [id = row->id, token = run->token](soci::session& sql) { runs::release(sql, id, token); };
        co_await run_in_db(db, give_back);
        break;
      }

      if (row->status == "received") {
        std::shared_ptr<const WorkflowSet> set;
        {
          std::lock_guard lock(mutex);
          set = current;
        }
        const Workflow* w = set ? set->for_trigger("request." + row->type) : nullptr;
        if (w == nullptr) {
          // Nothing to run it on yet: look again in a minute (an operator
          // may add the workflow and reload).
          // Once a minute per type, not once per request: a missing
          // workflow with a backlog must not flood the log.
          bool tell = false;
          {
            std::lock_guard lock(mutex);
            auto& last = warned_no_workflow[row->type];
            if (last == 0 || at - last >= 60000) {
              last = at;
              tell = true;
            }
          }
          if (tell) log.warn("no workflow for request type: requests wait", {{"type", row->type}});
          t.request_status = row->status;
          t.run_at = at + 60000;
          t.audit_event = "request.waiting_for_workflow";
          co_await commit(t);
          break;
        }
        t.request_status = "running";
        t.workflow_name = w->name;
        t.workflow_version = w->version;
        t.run_at = at;
        t.lease_until = at + ms(options.lease);
        t.audit_event = "request.started";
        t.audit_detail = json::serialize(json::object{{"workflow", w->name}, {"version", w->version}});
        if (!co_await commit(t)) break;
        runs::advance(*row, t);
        continue;
      }
      if (row->status != "running") {
        auto give_back = [id = row->id, token = run->token](soci::session& sql) { runs::release(sql, id, token); };
        co_await run_in_db(db, give_back);
        break;
      }

      auto workflow = co_await workflow_for(*row);
      const auto idx = static_cast<std::size_t>(row->next_step);
      if (!workflow || row->next_step < 0) {
        // Never a guess: a request whose place in its workflow is unknown
        // fails loudly rather than being taken for finished.
        t.request_status = "failed";
        t.next_step = row->next_step;
        t.reason = workflow ? "corrupt_position" : "workflow_unavailable";
        t.audit_event = "request.failed";
        t.audit_detail = json::serialize(json::object{
            {"reason", workflow ? "the request's next step is not in its workflow"
                                : "the pinned workflow version cannot be loaded"}});
        if (co_await commit(t)) finished(*row, t.request_status, at);
        break;
      }
      if (idx >= workflow->steps.size()) {
        t.request_status = "completed";
        t.next_step = row->next_step;
        t.audit_event = "request.completed";
        t.shred_subject = row->type == "deletion";
        add_finished_notices(*row, t, at);
        if (co_await commit(t)) {
          finished(*row, t.request_status, at);
          if (!t.notices.empty() && notices_queued) notices_queued();
        }
        log.info("request completed", {{"request_id", row->id}});
        break;
      }

      const StepDef& step = workflow->steps[idx];
      const runs::StepRow* previous = nullptr;
      for (const auto& s : row->steps) {
        if (s.idx == static_cast<int>(idx)) previous = &s;
      }
      t.step_idx = static_cast<int>(idx);
      t.step_id = step.id;
      t.action = step.action;
      t.next_step = row->next_step;
      auto context = request_context(*row, keys);

      if (step.condition && !step.condition->evaluate(context)) {
        t.step_status = "skipped";
        t.attempts = previous ? previous->attempts : 0;
        t.request_status = "running";
        t.next_step = row->next_step + 1;
        t.run_at = at;
        t.lease_until = at + ms(options.lease);
        t.audit_event = "step.skipped";
        t.audit_detail = json::serialize(json::object{{"step", step.id}});
        if (!co_await commit(t)) break;
        runs::advance(*row, t);
        continue;
      }

      Action* action = actions.find(step.action);
      std::optional<UnixMillis> woken_from;
      if (previous && previous->status == "waiting" && previous->wake_at && *previous->wake_at <= at) {
        woken_from = previous->wake_at;
      }
      int attempt = (previous ? previous->attempts : 0) + (woken_from ? 0 : 1);
      if (!woken_from) {
        // Committed before the action runs: a crash from here on shows the
        // step as running, and the step runs again on resume.
        runs::Transition started = t;
        started.step_status = "running";
        started.attempts = attempt;
        started.request_status = "running";
        started.run_at = at;
        // The lease alone, renewed while the action runs: a crashed
        // instance's step is taken over after a lease, whatever its timeout.
        started.lease_until = at + ms(options.lease);
        if (previous) started.output = previous->output;  // what earlier attempts did
        started.audit_event = "step.started";
        started.audit_detail = json::serialize(json::object{{"step", step.id}, {"attempt", attempt}});
        if (!co_await commit(started)) break;
      }

      ActionResult result;
      if (action == nullptr) {
        result = ActionResult::failure("action " + step.action + " is not available", false);
      } else {
        auto job = std::make_shared<ActionJob>(strand);
        job->request_id = row->id;
        job->workflow = workflow;
        job->action = action;
        job->context = context;
        if (previous && previous->output) {
          if (const auto* steps = job->context.as_object().if_contains("steps")) {
            if (const auto* mine = steps->as_object().if_contains(step.id)) job->earlier = *mine;
          }
        }
        job->ctx.emplace(ActionContext{row->id, row->type, step, attempt, row->id + ":" + step.id, at, woken_from,
                                       job->context, workflow.get(),
                                       job->earlier.is_null() ? nullptr : &job->earlier});
        net::co_spawn(strand, run_job(job.get()), net::detached);
        auto finished = co_await await_job(job.get(), *run, step.timeout);
        if (!job->result) outstanding = job;
        if (job->result && job->database_failure) std::rethrow_exception(job->database_failure);
        if (!finished) {
          log.warn("engine: claim lost while a step ran; another holder goes on", {{"request_id", row->id},
                                                                                    {"step", step.id}});
          break;
        }
        result = std::move(*finished);
      }

      at = now();
      t.now = at;
      t.attempts = attempt;
      t.request_status = "running";
      switch (result.kind) {
        case ActionResult::Kind::succeeded:
          t.step_status = "succeeded";
          t.output = json::serialize(result.output.is_null() ? json::value(json::object{}) : result.output);
          t.next_step = row->next_step + 1;
          t.run_at = at;
          t.lease_until = at + ms(options.lease);
          t.audit_event = "step.succeeded";
          t.audit_detail = json::serialize(json::object{{"step", step.id}, {"attempt", attempt}});
          break;
        case ActionResult::Kind::failed:
          // What the attempts so far did stays with the step: the next
          // attempt (or an operator's retry) builds on it.
          if (!result.output.is_null()) {
            t.output = json::serialize(result.output);
          } else if (previous) {
            t.output = previous->output;
          }
          if (result.retryable && attempt < step.retry.attempts) {
            auto delay = retry_delay(step.retry, attempt + 1, unit_random());
            t.step_status = "waiting";
            t.error = result.error;
            t.wake_at = std::nullopt;
            t.run_at = at + ms(delay);
            t.audit_event = "step.failed";
            t.audit_detail = json::serialize(
                json::object{{"step", step.id}, {"attempt", attempt}, {"retry_at", *t.run_at},
                         {"error", runs::bounded_error(result.error)}});
          } else {
            t.step_status = "failed";
            t.error = result.error;
            t.request_status = "failed";
            t.reason = "step " + step.id + " failed";
            t.audit_event = "step.failed";
            t.audit_detail = json::serialize(
                json::object{{"step", step.id}, {"attempt", attempt}, {"final", true},
                             {"error", runs::bounded_error(result.error)}});
          }
          break;
        case ActionResult::Kind::wait:
          t.step_status = "waiting";
          t.wake_at = result.wake_at;
          t.run_at = result.wake_at;
          t.audit_event = "step.waiting";
          t.audit_detail = json::serialize(json::object{{"step", step.id}, {"until", result.wake_at}});
          break;
        case ActionResult::Kind::park:
          t.step_status = "waiting";
          t.output = json::serialize(result.output.is_null() ? json::value(json::object{}) : result.output);
          t.request_status = "awaiting_approval";
          t.reason = result.reason;
          t.audit_event = "request.awaiting_approval";
          t.audit_detail = json::serialize(json::object{{"step", step.id}, {"reason", result.reason}});
          break;
        case ActionResult::Kind::await_notices: {
          // Woken by the notifier when every notice is delivered or dead.
          t.step_status = "waiting";
          t.attempts = attempt;
          t.await_notices = true;
          json::array ids;
          for (auto& n : result.notices) {
            ids.emplace_back(n.id);
            t.notices.push_back(outbox_entry(std::move(n)));
          }
          t.audit_event = t.notices.empty() ? "step.waiting" : "notices.queued";
          t.audit_detail = json::serialize(json::object{{"step", step.id}, {"notices", std::move(ids)}});
          break;
        }
        case ActionResult::Kind::reject:
          t.step_status = "succeeded";
          t.next_step = row->next_step + 1;
          t.request_status = "rejected";
          t.reason = result.reason;
          t.audit_event = "request.rejected";
          t.audit_detail = json::serialize(json::object{{"step", step.id}, {"reason", result.reason}});
          if (options.rejection_notices) {
            try {
              for (auto& n : options.rejection_notices(context, result.reason, at)) {
                t.notices.push_back(outbox_entry(std::move(n)));
              }
            } catch (const std::exception& e) {
              // Templates are checked at load, so this is not expected; the
              // rejection itself must still be recorded.
              log.error("rejection notice not written", {{"request_id", row->id}, {"error", describe_failure(e)}});
            }
          }
          add_finished_notices(*row, t, at);
          break;
      }
      if (t.await_notices && t.notices.empty() && !options.await_gate.empty()) co_await hold_at_gate(row->id);
      if (!co_await commit(t)) break;
      if (t.request_status == "failed") {
        log.warn("request failed", {{"request_id", row->id}, {"step", step.id}, {"error", runs::bounded_error(*t.error)}});
      }
      if (t.request_status == "failed" || t.request_status == "rejected") finished(*row, t.request_status, at);
      if (!t.notices.empty() && notices_queued) notices_queued();
      if (!t.lease_until) break;  // parked, waiting or finished: the lease is released
      runs::advance(*row, t);
    }
  } catch (const std::exception& e) {
    // The lease runs out and the request is picked up again.
    log.warn("engine: request interrupted", {{"request_id", run->id}, {"error", describe_failure(e)}});
  }
  if (outstanding && !outstanding->result) {
    outstanding->holds_run = true;  // run_job lets go of the request when the attempt ends
    co_return;
  }
  {
    std::lock_guard lock(mutex);
    running.erase(run->id);
  }
  --active;
  wakeup.cancel();  // capacity freed
}

}  // namespace privacyd::engine
