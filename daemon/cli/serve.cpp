// serve: builds the components in dependency order and runs them until
// SIGTERM, then drains. This is the only place that knows them all.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <thread>

#include "daemon/cli/commands.hpp"
#include "daemon/cli/editable.hpp"
#include "daemon/actions/domain_actions.hpp"
#include "daemon/actions/plan.hpp"
#include "daemon/admin/admin_api.hpp"
#include "daemon/admin/tokens.hpp"
#include "daemon/actions/retention_sweeper.hpp"
#include "daemon/base/clock.hpp"
#include "daemon/config/config.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/crypto/webhook_signature.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/http/server.hpp"
#include "daemon/links/links.hpp"
#include "daemon/notify/callbacks.hpp"
#include "daemon/notify/follow_up.hpp"
#include "daemon/notify/notice_actions.hpp"
#include "daemon/notify/notifier.hpp"
#include "daemon/intake/intake.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/policy/policy_store.hpp"
#include "daemon/service/health.hpp"
#include "daemon/service/systemd.hpp"
#include "daemon/store/database.hpp"
#include "daemon/store/group_commit.hpp"
#include "daemon/store/migrations.hpp"

namespace privacyd::cli {

namespace net = boost::asio;

namespace {

// A test hook's file, from the environment; empty when unset.
std::filesystem::path test_hook(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? std::filesystem::path(value) : std::filesystem::path();
}

// Runs `finish` (joining the database threads), but exits the process if it
// has not returned within `limit`: a thread stuck on a dead connection
// must not keep a stopping daemon alive, and everything accepted is
// committed already.
void finish_within(Duration limit, Logger& log, const std::function<void()>& finish) {
  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;
  std::thread watchdog([&] {
    std::unique_lock lock(mutex);
    if (!done_cv.wait_for(lock, limit, [&] { return done; })) {
      log.warn("database threads still busy after the grace period; exiting without them", {});
      std::_Exit(0);
    }
  });
  finish();
  {
    std::lock_guard lock(mutex);
    done = true;
  }
  done_cv.notify_one();
  watchdog.join();
}

// Waits, on the io_context, until both servers have no connections or the
// grace period is over, then stops the loop.
void stop_when_drained(net::io_context& ioc, std::function<void()> stop_all, std::vector<http::Server*> servers,
                       engine::Engine& engine, actions::RetentionSweeper& retention, notify::Notifier& notifier,
                       notify::FollowUp& follow_up, Duration grace, Logger& log) {
  auto deadline = std::chrono::steady_clock::now() + grace;
  auto timer = std::make_shared<net::steady_timer>(ioc);
  auto poll = std::make_shared<std::function<void()>>();
  *poll = [stop_all, servers, &engine, &retention, &notifier, &follow_up, deadline, timer, &log,
           weak = std::weak_ptr(poll)] {
    std::size_t open = (engine.stopped() ? 0 : engine.active() + 1) + (retention.stopped() ? 0 : 1) +
                       (notifier.stopped() ? 0 : 1) + (follow_up.stopped() ? 0 : 1);
    for (auto* s : servers) open += s->connections();
    if (open == 0 || std::chrono::steady_clock::now() >= deadline) {
      if (open != 0) log.warn("grace period over, stopping with work in flight", {{"open", open}});
      stop_all();
      return;
    }
    timer->expires_after(std::chrono::milliseconds(20));
    timer->async_wait([next = weak.lock()](const boost::system::error_code&) {
      if (next) (*next)();
    });
  };
  (*poll)();
}

std::vector<admin::Token> load_admin_tokens(const Config& config, Logger& log) {
  if (config.admin.tokens_file.empty()) {
    log.warn("admin.tokens_file is not set: every admin API call is refused", {});
    return {};
  }
  return admin::load_tokens(config.admin.tokens_file);
}

}  // namespace

int serve(const std::filesystem::path& config_file) {
  auto loaded = load_config(config_file);
  for (const auto& p : loaded.problems) std::cerr << format_text(p) << '\n';
  if (!loaded.config) return 1;
  const Config& config = *loaded.config;
  auto log = Logger::to_stderr(config.log_level);
  SystemdNotifier systemd(log);

  try {
    // Secrets first: a missing key file is an operator error to report
    // before anything connects or binds.
    auto keys = crypto::KeyRing::load(config.keys.data_key_file, config.keys.previous_key_files,
                                      config.keys.index_key_file);
    auto secrets = crypto::load_webhook_secrets(config.webhook.secrets_file);
    // Read again at each delivery (so it can be rotated), but a callback
    // secret that cannot be read at all is a start-up error, not a dead
    // callback weeks later.
    if (!config.partner_center.callback_url.empty()) crypto::load_webhook_secrets(config.partner_center.secret_file);
    Current<std::vector<admin::Token>> admin_tokens(load_admin_tokens(config, log));
    const auto catalog = action_catalog(config);
    Diagnostics problems;
    auto editable = load_editable(config, catalog, problems);
    for (const auto& p : problems) log.error("config problem", {{"at", format_text(p)}});
    if (!problems.empty()) return 1;
    policy::PolicyStore policies(std::move(editable.policies));
    notify::TemplateStore templates(std::move(editable.templates));
    auto workflows = std::move(editable.workflows);
    engine::ActionRegistry actions;
    engine::add_builtin_actions(actions, config.workflows);
    systemd.status("connecting to the database");
    Database db(config.database, log);
    systemd.status("migrating the schema");
    auto schema = migrate(db, log);
    // Subject keys live apart from the main database (SPEC §14).
    auto vault = open_key_vault(config.keys.store, keys, log);
    if (config.database.backend == DatabaseConfig::Backend::postgresql &&
        config.keys.store.backend == DatabaseConfig::Backend::sqlite3) {
      log.warn("the key store is a SQLite file on this host while the database is PostgreSQL: every instance that"
               " shares the database must share the key store (set keys.store to a database of its own)",
               {{"key_store", config.keys.store.sqlite_file.string()}});
    }

    // One event loop per I/O thread. The first also runs the engine, the
    // notifier, the timers and the signals; connections are spread over
    // all of them.
    net::io_context ioc(1);
    std::vector<std::unique_ptr<net::io_context>> more_contexts;
    std::vector<net::io_context*> io_contexts{&ioc};
    for (std::size_t i = 1; i < config.io_threads; ++i) {
      io_contexts.push_back(more_contexts.emplace_back(std::make_unique<net::io_context>(1)).get());
    }
    auto stop_all = [&io_contexts] {
      for (auto* c : io_contexts) c->stop();
    };
    SystemClock clock;
    metrics::Registry registry;
    metrics::Metrics metrics(registry);
    metrics::add_process_metrics(registry);
    registry.add_collector([&db](std::string& out) {
      const auto e = db.errors();
      metrics::write_family_header(out, "privacyd_database_errors_total", "counter",
                                   "Failed database work, by kind (unavailable, conflict, other).");
      metrics::write_sample(out, "privacyd_database_errors_total", "{kind=\"unavailable\"}", static_cast<double>(e.unavailable));
      metrics::write_sample(out, "privacyd_database_errors_total", "{kind=\"conflict\"}", static_cast<double>(e.conflict));
      metrics::write_sample(out, "privacyd_database_errors_total", "{kind=\"other\"}", static_cast<double>(e.other));
    });
    actions::SystemConnections systems(log);
    const actions::Dependencies deps{db, policies, systems, keys, log, config.access.package_ttl};
    actions::add_domain_actions(actions, deps);
    // The start of every link privacyd mails: set once the listener is
    // bound when the config does not give it (before any work starts).
    std::string public_url = config.public_url;
    const notify::NoticeDependencies notice_deps{db, policies, templates, keys, config, public_url};
    notify::add_notice_actions(actions, notice_deps);
    notify::Notifier notifier(ioc, db, policies, keys, clock, log, config, config.engine.poll, &metrics);
    actions::RetentionSweeper retention(ioc, db, policies, systems, keys, clock, log, config.engine.poll);
    notify::FollowUp follow_up(ioc, notice_deps, clock, log, config.engine.poll, vault.store.get());
    links::Links links({db, policies, keys, clock, log, config});
    Health health(db, log);
    // Keep one database thread free of intake batches for /readyz and the
    // rest, where there is more than one.
    GroupCommit commits(db, log, {.max_batch = 256, .max_inflight = std::max<std::size_t>(1, config.database.pool_size - 1)});
    notifier.use_group_commit(&commits);
    intake::Intake intake(commits, keys, policies, clock, log,
                          {.tolerance = config.webhook.tolerance, .max_body = config.webhook.max_body,
                           .metrics = &metrics, .subject_keys = vault.store.get()},
                          std::move(secrets));

    http::Router public_routes;
    health.mount(public_routes);
    intake.mount(public_routes);
    links.mount(public_routes);

    engine::Engine engine(ioc, db, clock, log, keys, actions,
                          {.instance = engine::new_instance_id(),
                           .lease = config.engine.lease,
                           .poll = config.engine.poll,
                           .concurrency = config.engine.concurrency,
                           .metrics = &metrics,
                           .commits = &commits,
                           .rejection_notices = [&notice_deps](const boost::json::value& context,
                                                               const std::string& reason, UnixMillis now) {
                             return notify::rejection_notices(notice_deps, context, reason, false, now);
                           },
                           .finished_notices = [&notice_deps](const runs::RunRow& row, const std::string& status,
                                                              const std::string& reason, UnixMillis now) {
                             return notify::partner_center_callbacks(notice_deps, row, "request." + status, reason,
                                                                     now);
                           },
                           .handoff_open = [&notifier] { return notifier.taking(); },
                           .hand_over = [&notifier](std::vector<runs::LeasedNotice> notices) {
                             notifier.take(std::move(notices));
                           },
                           .handoff_lease = notifier.handoff_lease(),
                           .handoff_prompt = [&notifier] { return notifier.starts_now(); },
                           .await_in_memory = config.engine.await_notices,
                           .await_gate = test_hook("PRIVACYD_TEST_AWAIT_GATE")});
    if (workflows.workflows.empty()) log.warn("no workflows loaded: requests wait until some are", {});
    problems = engine.install(std::move(workflows));
    for (const auto& p : problems) log.error("workflow problem", {{"at", format_text(p)}});
    if (!problems.empty()) return 1;
    intake.on_request_stored([&engine] { engine.wake(); });
    notifier.on_settled([&engine](const std::string& request_id) { engine.notice_settled(request_id); });
    notifier.on_delivered([&engine](const std::string& request_id, const std::string& notice_id,
                                    std::function<bool(soci::session&)> record) {
      return engine.take_delivery(request_id, notice_id, std::move(record));
    });
    engine.on_notices_queued([&notifier] { notifier.wake(); });
    follow_up.on_queued([&notifier] { notifier.wake(); });
    // Everything operators edit, validated whole and swapped whole: a
    // problem anywhere changes nothing. Listeners and the database are fixed
    // for the life of the process; running requests keep their pinned
    // workflow versions. Blocking: runs on a database thread.
    std::mutex reload_mutex;
    std::function<Diagnostics()> reload_all = [&]() -> Diagnostics {
      std::lock_guard lock(reload_mutex);
      log.info("reload requested");
      Diagnostics found;
      std::vector<crypto::Bytes> next_secrets;
      std::vector<admin::Token> next_tokens;
      try {
        next_secrets = crypto::load_webhook_secrets(config.webhook.secrets_file);
      } catch (const std::exception& e) {
        found.push_back({config.webhook.secrets_file.string(), 0, 0, e.what(), "io"});
      }
      try {
        next_tokens = load_admin_tokens(config, log);
      } catch (const std::exception& e) {
        found.push_back({config.admin.tokens_file.string(), 0, 0, e.what(), "io"});
      }
      auto next = load_editable(config, catalog, found);
      if (found.empty()) {
        try {
          found = engine.install(std::move(next.workflows));
        } catch (const std::exception& e) {
          found.push_back({config.workflows.string(), 0, 0, e.what(), "io"});
        }
      }
      if (found.empty()) {
        policies.replace(std::move(next.policies));
        templates.replace(std::move(next.templates));
        intake.set_secrets(std::move(next_secrets));
        admin_tokens.replace(std::move(next_tokens));
        log.info("reloaded", {{"what", "workflows, policies, templates, webhook secrets, admin tokens"}});
      }
      for (const auto& p : found) log.error("reload refused", {{"at", format_text(p)}});
      return found;
    };

    // Receipts (SPEC §16): a key named but unreadable stops the start, not
    // the first receipt.
    std::optional<crypto::ReceiptSigner> receipt_signer;
    if (!config.keys.receipt_key_file.empty()) {
      receipt_signer = crypto::ReceiptSigner::load(config.keys.receipt_key_file);
      log.info("receipts signed", {{"key_id", receipt_signer->key_id()}});
    }
    admin::AdminApi admin_api({.db = db,
                               .keys = keys,
                               .policies = policies,
                               .clock = clock,
                               .log = log,
                               .tokens = admin_tokens,
                               .registry = registry,
                               .metrics = &metrics,
                               .rejection_notices = [&notice_deps](const boost::json::value& context,
                                                                   const std::string& reason, UnixMillis now) {
                                 return notify::rejection_notices(notice_deps, context, reason, true, now);
                               },
                               .callbacks = [&notice_deps](const runs::RunRow& row, std::string_view event,
                                                           const std::string& reason, UnixMillis now) {
                                 return notify::partner_center_callbacks(notice_deps, row, event, reason, now);
                               },
                               .reload = reload_all,
                               .wake_engine = [&engine] { engine.wake(); },
                               .wake_notifier = [&notifier] { notifier.wake(); },
                               .receipts = receipt_signer ? &*receipt_signer : nullptr,
                               .plan = [&](const boost::json::object& query) {
                                 auto set = engine.workflows();
                                 const auto now_policies = policies.current();
                                 const engine::WorkflowSet none;
                                 const actions::PlanDependencies plan_deps{
                                     db, systems, keys, *now_policies, set ? *set : none,
                                     !config.partner_center.callback_url.empty()};
                                 return actions::plan(plan_deps, actions::plan_query(query), to_unix_ms(clock.now()));
                               }});
    http::Router admin_routes;
    health.mount(admin_routes);
    admin_api.mount(admin_routes);

    http::Server public_server(ioc, {"public", config.listen, config.limits, &metrics, config.tls}, public_routes, log,
                               io_contexts);
    http::Server admin_server(ioc, {"admin", config.admin.listen, config.limits, &metrics, config.admin.tls},
                              admin_routes, log, io_contexts);
    auto public_at = public_server.listen();
    auto admin_at = admin_server.listen();
    if (public_url.empty()) {
      public_url = (config.tls.enabled() ? "https://" : "http://") + public_at.text();
      if (public_at.host == "0.0.0.0" || public_at.host == "::") {
        log.warn("public_url is not set: mailed links name an address nobody can reach; set public_url",
                 {{"public_url", public_url}});
      }
    }
    public_server.start();
    admin_server.start();
    log.info("listening", {{"listener", "public"}, {"addr", public_at.text()}, {"tls", config.tls.enabled()}});
    log.info("listening", {{"listener", "admin"}, {"addr", admin_at.text()}, {"tls", config.admin.tls.enabled()}});

    bool stopping = false;
    net::signal_set signals(ioc, SIGTERM, SIGINT, SIGHUP);
    std::function<void(const boost::system::error_code&, int)> on_signal =
        [&](const boost::system::error_code& ec, int signo) {
          if (ec) return;
          if (signo == SIGHUP) {
            systemd.reloading();
            net::post(db.threads(), [&] {
              reload_all();
              systemd.ready("serving");
            });
            signals.async_wait(on_signal);
            return;
          }
          if (stopping) return;
          stopping = true;
          log.info("draining", {{"signal", signo == SIGTERM ? "SIGTERM" : "SIGINT"}});
          systemd.stopping("draining");
          health.set_draining();
          engine.drain();
          retention.stop();
          notifier.stop();
          follow_up.stop();
          public_server.drain();
          admin_server.drain();
          stop_when_drained(ioc, stop_all, {&public_server, &admin_server}, engine, retention, notifier, follow_up,
                            config.limits.shutdown_grace, log);
        };
    signals.async_wait(on_signal);
    systemd.start_watchdog(ioc);
    systemd.ready("serving on " + public_at.text() + ", admin on " + admin_at.text() + ", schema v" +
                  std::to_string(schema.to));
    log.info("ready", {{"schema", schema.to}});
    engine.start();
    retention.start();
    notifier.start();
    follow_up.start();

    std::vector<std::thread> threads;
    for (auto& c : more_contexts) {
      threads.emplace_back([c = c.get()] {
        auto busy = net::make_work_guard(*c);  // until stop_all(), with or without connections
        c->run();
      });
    }
    ioc.run();
    for (auto& t : threads) t.join();
    finish_within(config.limits.shutdown_grace, log, [&] {
      db.shutdown();
      systems.shutdown();
      vault.db->shutdown();
    });
    log.info("stopped");
    return 0;
  } catch (const std::exception& e) {
    log.error("serve failed", {{"error", e.what()}});
    systemd.status(std::string("failed: ") + e.what());
    return 1;
  }
}

}  // namespace privacyd::cli
