// Driving one claimed request: its segments, one transaction each
// (transitions.cpp decides what they hold), and between them the external
// steps, each run as a job of its own while the lease is renewed.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <filesystem>
#include <soci/soci.h>

#include "daemon/crypto/primitives.hpp"
#include "daemon/engine/engine_impl.hpp"

namespace privacyd::engine {

namespace json = boost::json;

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

net::awaitable<void> Engine::Impl::commit_segment(Segment& s) {
  if (options.commits != nullptr) {
    // Shares a transaction (one fsync) with other runs' segments; a batch
    // that failed is rolled back and each of its works runs again alone.
    GroupCommit::Work shared = [this, &s](soci::session& sql) { run_segment(sql, s); };
    co_await options.commits->run(std::move(shared));
    co_return;
  }
  auto work = [this, &s](soci::session& sql) {
    soci::transaction tr(sql);
    run_segment(sql, s);
    if (!s.lost || !s.deliveries.empty()) tr.commit();  // deliveries stand whoever holds the request
  };
  co_await run_in_db(db, work);
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

void Engine::Impl::committed(const Segment& s) {
  bool queued = false;
  std::vector<runs::LeasedNotice> handed;
  for (const auto& t : s.applied) {
    for (const auto& n : t.notices) {
      if (!t.notice_lease) {
        queued = true;
        continue;
      }
      handed.push_back({n.id, t.request_id, n.awaited ? t.step_idx : -1, n.channel, n.recipient, n.payload_enc,
                        *t.notice_lease});
    }
    if (t.audit_event == "request.waiting_for_workflow") {
      // Once a minute per type, not once per request: a missing workflow
      // with a backlog must not flood the log.
      bool tell = false;
      {
        std::lock_guard lock(mutex);
        auto& last = warned_no_workflow[s.start.type];
        if (last == 0 || t.now - last >= 60000) {
          last = t.now;
          tell = true;
        }
      }
      if (tell) log.warn("no workflow for request type: requests wait", {{"type", s.start.type}});
    }
    if (t.request_status == "completed") log.info("request completed", {{"request_id", s.start.id}});
    if (t.request_status == "failed" && t.error) {
      log.warn("request failed", {{"request_id", s.start.id}, {"step", t.step_id}, {"error", runs::bounded_error(*t.error)}});
    }
    if (t.request_status == "completed" || t.request_status == "failed" || t.request_status == "rejected") {
      finished(s.start, t.request_status, t.now);
    }
  }
  if (!handed.empty()) options.hand_over(std::move(handed));
  if (queued && notices_queued) notices_queued();
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
    wake_loop();  // its request may be due again already: look now
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

net::awaitable<void> Engine::Impl::give_back(const Run& run) {
  auto release = [id = run.id, token = run.token](soci::session& sql) { runs::release(sql, id, token); };
  co_await run_in_db(db, release);
}

net::awaitable<std::vector<Delivery>> Engine::Impl::await_deliveries(Run& run) {
  if (!run.waiter) run.waiter.emplace(strand);
  // Never near the lease's end: the lease is not renewed meanwhile.
  const auto deadline = std::chrono::steady_clock::now() + std::min(options.await_in_memory, options.lease / 3);
  for (;;) {
    {
      // take_delivery() and notice_settled() change these under the mutex
      // and then cancel the timer on this strand: checked before each wait,
      // nothing they do is missed.
      std::lock_guard lock(mutex);
      if (run.awaited.empty() || run.stop_waiting || draining || std::chrono::steady_clock::now() >= deadline) {
        run.awaiting = false;
        run.awaited.clear();
        co_return std::exchange(run.deliveries, {});
      }
    }
    run.waiter->expires_at(deadline);
    co_await run.waiter->async_wait(net::as_tuple(net::use_awaitable));
  }
}

net::awaitable<void> Engine::Impl::drive(Run* raw) {
  auto self = shared_from_this();
  auto run = raw->shared_from_this();
  const std::string& owner = options.instance;
  std::shared_ptr<ActionJob> outstanding;  // an attempt given up on at its timeout, still running
  try {
    // Loaded once; after each segment this coroutine commits while it
    // holds the lease, the row is brought up to date in memory (a commit
    // fails, and the loop ends, if the lease was lost).
    std::optional<runs::RunRow> row = std::move(run->loaded);
    // An external step's outcome: committed first in the next segment.
    std::optional<runs::Transition> pending;
    // Deliveries of notices the run awaited, handed back by the notifier:
    // committed first in the next segment, too.
    std::vector<Delivery> deliveries;
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

      std::shared_ptr<const Workflow> workflow;
      if (row->status == "received") {
        std::shared_ptr<const WorkflowSet> set;
        {
          std::lock_guard lock(mutex);
          set = current;
        }
        if (const Workflow* w = set ? set->for_trigger("request." + row->type) : nullptr) {
          workflow = std::shared_ptr<const Workflow>(set, w);
        }
      } else if (row->status == "running") {
        workflow = co_await workflow_for(*row);
      }
      if (!pending && deliveries.empty() && row->status != "received" && row->status != "running") {
        co_await give_back(*run);
        break;
      }

      Segment segment;
      segment.start = std::move(*row);
      segment.workflow = workflow;
      segment.first = std::move(pending);
      segment.deliveries = std::move(deliveries);
      segment.owner = owner;
      segment.token = run->token;
      segment.hand_over = options.hand_over && options.handoff_open && options.handoff_open();
      segment.may_await = segment.hand_over && options.await_in_memory > Duration::zero() && options.handoff_prompt &&
                          options.handoff_prompt();
      pending.reset();
      deliveries.clear();
      row.reset();
      std::exception_ptr failure;
      bool outcome_unknown = false;
      try {
        co_await commit_segment(segment);
      } catch (const DatabaseUnavailable&) {
        failure = std::current_exception();
        outcome_unknown = true;  // the connection went: the commit may have happened
      } catch (const std::exception&) {
        failure = std::current_exception();
      }
      if (failure) {
        // What the segment started from is not lost with what failed after
        // it (the transaction was rolled back): an external step's outcome,
        // and deliveries handed back, are committed alone (else the step
        // would run again, and the notices be sent again).
        if (!outcome_unknown && (segment.first || !segment.deliveries.empty())) {
          Segment salvage;
          salvage.start = segment.start;
          salvage.first = std::move(segment.first);
          salvage.deliveries = std::move(segment.deliveries);
          salvage.owner = owner;
          salvage.token = run->token;
          salvage.only_first = true;
          try {
            co_await commit_segment(salvage);
          } catch (const std::exception& e) {
            log.warn("engine: a step's outcome could not be committed", {{"request_id", run->id},
                                                                        {"error", describe_failure(e)}});
          }
        }
        std::rethrow_exception(failure);
      }
      if (segment.lost) break;
      if (segment.awaiting) {
        // Before the notices are handed over (committed() does): a delivery
        // handed back at once must find the run waiting for it.
        std::lock_guard lock(mutex);
        run->awaiting = true;
        run->stop_waiting = false;
        run->awaited = {segment.awaited.begin(), segment.awaited.end()};
        run->deliveries.clear();
      }
      committed(segment);
      row = std::move(segment.row);
      if (!segment.applied.empty() && segment.applied.back().await_notices && !segment.applied.back().lease_until) {
        // Its notices may all have settled before the commit (runs::apply
        // then made it due now, after the notifier's wake-up had found it
        // still leased): the loop looks again.
        wake_loop();
      }
      if (segment.failure) std::rethrow_exception(segment.failure);  // what it applied before stands
      if (segment.drained) {
        co_await give_back(*run);
        break;
      }
      if (segment.held) {
        co_await hold_at_gate(row->id);
        co_await commit(*segment.held);  // it queues nothing: it found every notice queued already
        wake_loop();  // as above
        break;
      }
      if (segment.awaiting) {
        deliveries = co_await await_deliveries(*run);
        continue;  // the next segment commits them, and the step looks again
      }
      if (!segment.external) break;  // finished, parked, waiting, or given back: the lease is released

      ExternalStep& next = *segment.external;
      const StepDef& step = workflow->steps[next.idx];
      Action* action = actions.find(step.action);
      auto job = std::make_shared<ActionJob>(strand);
      job->request_id = row->id;
      job->workflow = workflow;
      job->action = action;
      job->context = std::move(next.context);
      if (next.previous_output) {
        if (const auto* steps = job->context.as_object().if_contains("steps")) {
          if (const auto* mine = steps->as_object().if_contains(step.id)) job->earlier = *mine;
        }
      }
      job->ctx.emplace(ActionContext{row->id, row->type, step, next.attempt, row->id + ":" + step.id, segment.at,
                                     next.woken_from, job->context, workflow.get(),
                                     job->earlier.is_null() ? nullptr : &job->earlier});
      net::co_spawn(strand, run_job(job.get()), net::detached);
      auto result = co_await await_job(job.get(), *run, step.timeout);
      if (!job->result) outstanding = job;
      if (job->result && job->database_failure) std::rethrow_exception(job->database_failure);
      if (!result) {
        log.warn("engine: claim lost while a step ran; another holder goes on", {{"request_id", row->id},
                                                                                  {"step", step.id}});
        break;
      }
      pending = outcome(*row, next.idx, step, std::move(*result), next.attempt, job->context, next.previous_output,
                        run->token, now());
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
  capacity_freed();
}

void Engine::Impl::capacity_freed() {
  // Only a loop that left due work unclaimed for want of a slot looks
  // again now (an idle system pays no empty claim per finished run).
  if (at_capacity) wakeup.cancel();
}

void Engine::Impl::wake_loop() {
  std::lock_guard lock(mutex);
  woken = true;
  wakeup.cancel();
}

}  // namespace privacyd::engine
