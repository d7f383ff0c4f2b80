// The engine against a real SQLite database, a test action and a clock the
// test moves: retries wait exactly their backoff, approval parks, every
// transition is in the audit chain.
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>
#include <catch2/catch.hpp>
#include <thread>

#include "daemon/audit/audit.hpp"
#include "daemon/base/clock.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/store/intake_writes.hpp"
#include "daemon/store/runs.hpp"
#include "store_fixture.hpp"

using namespace privacyd;
using namespace privacyd::engine;
using namespace std::chrono_literals;

namespace {

// Fails `failures` times, then succeeds; counts its calls.
class Flaky final : public Action {
 public:
  explicit Flaky(int failures) : failures_(failures) {}
  const ActionSpec& spec() const override { return spec_; }
  boost::asio::awaitable<ActionResult> run(const ActionContext& ctx) override {
    ++calls;
    keys.push_back(ctx.idempotency_key);
    if (failures_-- > 0) co_return ActionResult::failure("not yet", true);
    co_return ActionResult::success(boost::json::object{{"calls", calls.load()}});
  }
  std::atomic<int> calls{0};
  std::vector<std::string> keys;

 private:
  int failures_;
  ActionSpec spec_{"test.flaky", {}};
};

template <class F>
void eventually(F condition, const char* what) {
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) FAIL(std::string("timed out waiting for ") + what);
    std::this_thread::sleep_for(5ms);
  }
}

struct EngineFixture {
  explicit EngineFixture(int failures) {
    auto action = std::make_unique<Flaky>(failures);
    flaky = action.get();
    registry.add(std::move(action));
    add_builtin_actions(registry, "/tmp");
  }
  ~EngineFixture() {
    // Let every engine coroutine finish before the io_context goes: a
    // frame destroyed with the io_context would outlive its scheduler.
    if (engine) {
      engine->drain();
      auto deadline = std::chrono::steady_clock::now() + 10s;
      while (!engine->stopped() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(2ms);
    }
    ioc.stop();
    if (runner.joinable()) runner.join();
  }

  void start(const std::string& workflow_text) {
    Diagnostics problems;
    auto w = parse_workflow(workflow_text, "w.yaml", registry.catalog(), problems);
    REQUIRE(w);
    WorkflowSet set;
    set.workflows.push_back(std::move(*w));
    engine.emplace(ioc, *store.db, clock, store.log, keys, registry,
                   EngineOptions{.instance = "test", .lease = 30s, .poll = 5ms, .concurrency = 4, .metrics = nullptr, .commits = nullptr,
                                 .rejection_notices = {}, .finished_notices = {}, .await_gate = {}});
    REQUIRE(engine->install(std::move(set)).empty());
    engine->start();
    runner = std::thread([this] { ioc.run(); });
  }

  std::string add_request() {
    IntakeWrite w;
    auto at = to_unix_ms(clock.now());
    w.webhook_id = "msg_" + std::to_string(++count);
    w.body_sha256 = "h";
    w.response = "{}";
    w.received_at = at;
    w.new_subject_id = "sub_" + std::to_string(count);
    w.huawei_index = keys.blind_index("hw-" + std::to_string(count), "subjects.huawei_id");
    w.huawei_id = "hw-" + std::to_string(count);
    w.id = "req_" + std::to_string(count);
    w.type = "request.deletion";
    w.is_request = true;
    w.occurred_at = at;
    w.jurisdiction = "default";
    w.deadline_at = at + 1000;
    store.db->with_session([&](soci::session& sql) {
      soci::transaction tr(sql);
      write_intake(sql, w, SubjectSealer(keys, nullptr));
      tr.commit();
    });
    engine->wake();
    return w.id;
  }

  std::string status(const std::string& id) {
    return store.scalar<std::string>("SELECT status FROM requests WHERE id = '" + id + "'");
  }

  testing::SqliteFixture store;
  ManualClock clock{std::chrono::system_clock::time_point(1800000000000ms)};
  crypto::KeyRing keys{crypto::random_bytes(32)};
  ActionRegistry registry;
  Flaky* flaky = nullptr;
  boost::asio::io_context ioc;
  std::optional<Engine> engine;
  std::thread runner;
  int count = 0;
};

const char* kWorkflow = R"(workflow: flaky
version: 1
on: request.deletion
steps:
  - id: try
    action: test.flaky
    retry: { attempts: 3, backoff: 1m, max_backoff: 1h }
  - id: ask
    action: approval
)";

}  // namespace

TEST_CASE("a failing step is retried only once its backoff has passed", "[engine]") {
  EngineFixture f(2);
  f.start(kWorkflow);
  auto id = f.add_request();
  auto attempts = [&] { return f.store.scalar("SELECT COALESCE(MAX(attempts), 0) FROM request_steps"); };
  eventually([&] { return f.store.scalar("SELECT COUNT(*) FROM request_steps WHERE status = 'waiting'") == 1; },
             "the first failure");
  CHECK(attempts() == 1);
  auto retry_at = f.store.scalar<long long>("SELECT run_at FROM requests");
  auto now = to_unix_ms(f.clock.now());
  CHECK(retry_at >= now + 30000);  // half of the 1m backoff is fixed
  CHECK(retry_at <= now + 60000);

  // Not due yet: the engine looks (it is woken) but leaves it alone.
  f.clock.advance(29s);
  f.engine->wake();
  std::this_thread::sleep_for(50ms);  // ten polls' worth; nothing may happen
  CHECK(attempts() == 1);

  f.clock.advance(31s);
  eventually([&] { return attempts() == 2; }, "the second attempt");
  eventually([&] { return f.store.scalar("SELECT COUNT(*) FROM request_steps WHERE status = 'waiting'") == 1; },
             "the second failure");
  f.clock.advance(2min);  // the second retry waits 1–2 minutes
  eventually([&] { return f.status(id) == "awaiting_approval"; }, "approval");
  CHECK(f.flaky->calls == 3);
  // Every attempt carried the same idempotency key.
  CHECK(std::count(f.flaky->keys.begin(), f.flaky->keys.end(), id + ":try") == 3);

  bool approved = false;
  f.store.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    approved = runs::approve(sql, id, "operator:test", to_unix_ms(f.clock.now()));
    tr.commit();
  });
  CHECK(approved);
  f.engine->wake();
  eventually([&] { return f.status(id) == "completed"; }, "completion");

  // The audit chain holds every transition, in order, and is intact. The
  // approval step is local (LocalAction): it commits no "started" of its
  // own; its outcome is committed with the step before it.
  std::vector<std::string> events;
  f.store.db->with_session([&](soci::session& sql) {
    soci::rowset<std::string> rows = (sql.prepare << "SELECT event FROM audit_log ORDER BY seq");
    for (const auto& e : rows) events.push_back(e);
  });
  CHECK(events == std::vector<std::string>{"request.received", "request.started", "step.started", "step.failed",
                                           "step.started", "step.failed", "step.started", "step.succeeded",
                                           "request.awaiting_approval", "request.approved",
                                           "request.completed"});
  audit::Verification v;
  f.store.db->with_session([&](soci::session& sql) { v = audit::verify(sql); });
  CHECK(v.intact);
  // No attempt started before the retry time the failure before it set.
  CHECK(f.store.scalar("SELECT COUNT(*) FROM audit_log a JOIN audit_log b ON b.seq = a.seq + 1"
                       " WHERE a.event = 'step.failed' AND b.at < CAST(json_extract(a.detail, '$.retry_at') AS INTEGER)") ==
        0);
}

TEST_CASE("a step that keeps failing fails the request with the step and error", "[engine]") {
  EngineFixture f(100);
  f.start(kWorkflow);
  auto id = f.add_request();
  for (int i = 0; i < 3; ++i) {
    eventually([&] { return f.flaky->calls == i + 1; }, "an attempt");
    if (i < 2) {
      // Its retry time is set from the clock when the failure is decided:
      // the clock moves only once that is committed, or the retry would
      // fall after the move and never come due (under load, ASan saw it).
      const std::string committed = "SELECT COUNT(*) FROM request_steps WHERE step_id = 'try' AND status = 'waiting'"
                                    " AND attempts = " + std::to_string(i + 1);
      eventually([&] { return f.store.scalar(committed) == 1; }, "the failure committed");
    }
    f.clock.advance(1h);
    f.engine->wake();
  }
  eventually([&] { return f.status(id) == "failed"; }, "the request to fail");
  CHECK(f.store.scalar<std::string>("SELECT reason FROM requests") == "step try failed");
  CHECK(f.store.scalar<std::string>("SELECT error FROM request_steps WHERE step_id = 'try'") == "not yet");
  CHECK(f.store.scalar("SELECT attempts FROM request_steps WHERE step_id = 'try'") == 3);
}

TEST_CASE("a rejected approval rejects the request with its reason", "[engine]") {
  EngineFixture f(0);
  f.start(kWorkflow);
  auto id = f.add_request();
  eventually([&] { return f.status(id) == "awaiting_approval"; }, "approval");
  f.store.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    CHECK(runs::reject(sql, id, "operator:test", "not_associated", to_unix_ms(f.clock.now())) ==
          runs::Rejection::rejected);
    CHECK_FALSE(runs::approve(sql, id, "operator:test", to_unix_ms(f.clock.now())));
    tr.commit();
  });
  CHECK(f.status(id) == "rejected");
  CHECK(f.store.scalar<std::string>("SELECT reason FROM requests") == "not_associated");
}

TEST_CASE("conditions skip steps using the decrypted subject", "[engine]") {
  EngineFixture f(0);
  f.start(R"(workflow: cond
version: 1
on: request.deletion
steps:
  - id: never
    action: test.flaky
    if: subject.email
  - id: always
    action: test.flaky
    if: "subject.huawei_id && request.type == 'deletion'"
)");
  auto id = f.add_request();
  eventually([&] { return f.status(id) == "completed"; }, "completion");
  CHECK(f.store.scalar<std::string>("SELECT status FROM request_steps WHERE step_id = 'never'") == "skipped");
  CHECK(f.store.scalar<std::string>("SELECT status FROM request_steps WHERE step_id = 'always'") == "succeeded");
  CHECK(f.flaky->calls == 1);
}
