// The engine's front: its public face, installing workflows, and the loop
// that claims due requests (each read in the claim's own transaction) and
// hands them to drive() (drive.cpp).

#include "daemon/engine/engine.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#include <typeinfo>
#include <unistd.h>

#include "daemon/crypto/primitives.hpp"
#include "daemon/engine/engine_impl.hpp"

namespace privacyd::engine {

std::string new_instance_id() {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  return std::string(host) + "/" + std::to_string(getpid()) + "/" + crypto::hex(crypto::random_bytes(4));
}

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

std::shared_ptr<const WorkflowSet> Engine::workflows() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->current;
}

void Engine::start() {
  impl_->loop_done = false;
  net::co_spawn(impl_->strand, impl_->loop(), net::detached);
}

void Engine::wake() {
  auto self = impl_;
  net::post(self->strand, [self] { self->wake_loop(); });
}

void Engine::drain() {
  auto self = impl_;
  self->draining = true;
  net::post(self->strand, [self] {
    self->wakeup.cancel();
    std::lock_guard lock(self->mutex);
    for (auto& [id, run] : self->running) run->stop_wait();  // a run waiting for its notices stops
  });
}

void Engine::notice_settled(const std::string& request_id) {
  auto self = impl_;
  {
    std::lock_guard lock(self->mutex);
    auto it = self->running.find(request_id);
    if (it != self->running.end() && it->second->awaiting) {
      it->second->stop_waiting = true;
      net::post(self->strand, [run = it->second] { run->stop_wait(); });
      return;
    }
  }
  wake();
}

bool Engine::take_delivery(const std::string& request_id, const std::string& notice_id,
                           std::function<bool(soci::session&)> record) {
  auto self = impl_;
  std::lock_guard lock(self->mutex);
  auto it = self->running.find(request_id);
  if (it == self->running.end()) return false;
  Run& run = *it->second;
  if (!run.awaiting || run.awaited.erase(notice_id) == 0) return false;
  run.deliveries.push_back({notice_id, std::move(record)});
  if (run.awaited.empty()) net::post(self->strand, [run = it->second] { run->stop_wait(); });
  return true;
}

net::awaitable<void> Engine::Impl::loop() {
  auto self = shared_from_this();
  while (!draining) {
    std::size_t in_flight = active.load();
    // At capacity, a run that ends frees a slot for what is due (see
    // capacity_freed()); below it, everything due was claimed.
    at_capacity = in_flight >= options.concurrency;
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
      if (!ids.empty() && static_cast<int>(ids.size()) == capacity) {
        at_capacity = true;
        continue;  // there may be more due now
      }
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

}  // namespace privacyd::engine
