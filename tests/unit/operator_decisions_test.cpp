#include <catch2/catch.hpp>

#include "daemon/audit/audit.hpp"
#include "daemon/store/runs.hpp"
#include "store_fixture.hpp"

using namespace privacyd;

namespace {
template <class F>
auto in_transaction(testing::SqliteFixture& f, F work) {
  decltype(work(std::declval<soci::session&>())) result{};
  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    result = work(sql);
    tr.commit();
  });
  return result;
}
void chain_is_intact(testing::SqliteFixture& f) {
  audit::Verification v;
  f.db->with_session([&](soci::session& sql) { v = audit::verify(sql); });
  CHECK(v.intact);
}
}  // namespace

TEST_CASE("retrying a failed request runs its failed step again from attempt 1", "[operator]") {
  testing::SqliteFixture f;
  f.add_request("req_1");
  f.exec("UPDATE requests SET status = 'failed', reason = 'step check failed', next_step = 0, run_at = NULL");
  f.exec("INSERT INTO request_steps(request_id, idx, step_id, action, status, attempts, error, finished_at)"
         " VALUES ('req_1', 0, 'check', 'webhook.call', 'failed', 3, 'webhook.call answered 400', 2000)");
  CHECK(in_transaction(f, [](soci::session& sql) { return runs::retry_request(sql, "req_1", "ops", 9000); }));
  CHECK(f.scalar<std::string>("SELECT status || '/' || attempts FROM request_steps") == "pending/0");
  CHECK(f.scalar("SELECT COUNT(*) FROM request_steps WHERE error IS NULL AND finished_at IS NULL") == 1);
  CHECK(f.scalar<std::string>("SELECT status FROM requests") == "running");
  CHECK(f.scalar<long long>("SELECT run_at FROM requests") == 9000);
  CHECK(f.scalar("SELECT COUNT(*) FROM requests WHERE reason IS NULL AND lease_owner IS NULL") == 1);
  // Only a failed request.
  CHECK_FALSE(in_transaction(f, [](soci::session& sql) { return runs::retry_request(sql, "req_1", "ops", 9100); }));
  CHECK_FALSE(in_transaction(f, [](soci::session& sql) { return runs::retry_request(sql, "req_x", "ops", 9100); }));
  CHECK(f.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'request.retried'") == 1);
  chain_is_intact(f);
}

TEST_CASE("retrying a request failed by a dead notice waits for that notice's delivery", "[operator]") {
  testing::SqliteFixture f;
  f.add_request("req_1");
  f.exec("UPDATE requests SET status = 'failed', next_step = 2, run_at = NULL");
  f.exec("INSERT INTO request_steps(request_id, idx, step_id, action, status, attempts)"
         " VALUES ('req_1', 2, 'notify-partner', 'notify.partner', 'failed', 1)");
  f.exec("INSERT INTO notices(id, request_id, step_idx, channel, recipient, template, status, payload_enc, attempts,"
         " next_attempt_at, created_at) VALUES ('ntc_1', 'req_1', 2, 'partner', 'P-1001', 'partner-holdings', 'dead',"
         " 'v1.k.y', 10, 2000, 1500)");
  CHECK(in_transaction(f, [](soci::session& sql) { return runs::retry_request(sql, "req_1", "ops", 9000); }));
  CHECK(f.scalar<std::string>("SELECT status || '/' || attempts FROM notices") == "pending/0");
  CHECK(f.scalar<std::string>("SELECT status FROM request_steps") == "waiting");
  // The notifier wakes the step once the notice settles; nothing else does.
  CHECK(f.scalar("SELECT COUNT(*) FROM requests WHERE status = 'running' AND run_at IS NULL") == 1);
}

TEST_CASE("a deadline is extended once, and not once the request is finished", "[operator]") {
  testing::SqliteFixture f;
  f.add_request("req_1", 1000, 5000);
  f.add_request("req_2", 1000, 5000);
  f.exec("UPDATE requests SET status = 'completed' WHERE id = 'req_2'");
  auto extend = [&](const char* id, long long until) {
    return in_transaction(f, [&](soci::session& sql) { return runs::extend(sql, id, "ops", "backlog", until, 3000); });
  };
  CHECK(extend("req_1", 9000) == runs::Extension::extended);
  CHECK(f.scalar<long long>("SELECT deadline_at FROM requests WHERE id = 'req_1'") == 9000);
  CHECK(f.scalar<std::string>("SELECT extension_reason FROM requests WHERE id = 'req_1'") == "backlog");
  CHECK(extend("req_1", 12000) == runs::Extension::already_extended);
  CHECK(f.scalar<long long>("SELECT deadline_at FROM requests WHERE id = 'req_1'") == 9000);
  CHECK(extend("req_2", 9000) == runs::Extension::finished);
  CHECK(extend("req_3", 9000) == runs::Extension::not_found);
  CHECK(f.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'request.extended'") == 1);
  chain_is_intact(f);
}

TEST_CASE("a rejection commits the notice that tells the person, once", "[operator]") {
  testing::SqliteFixture f;
  f.add_request("req_1");
  f.exec("UPDATE requests SET status = 'awaiting_approval', next_step = 0, run_at = NULL");
  f.exec("INSERT INTO request_steps(request_id, idx, step_id, action, status, attempts)"
         " VALUES ('req_1', 0, 'review', 'approval', 'waiting', 1)");
  const std::vector<runs::Transition::Notice> mail = {{"ntc_r", "subject", "subject", "subject-rejected", "v1.k.z"}};
  CHECK(in_transaction(f, [&](soci::session& sql) { return runs::reject(sql, "req_1", "ops", "no", 9000, mail); }) ==
        runs::Rejection::rejected);
  CHECK(f.scalar<std::string>("SELECT status || '/' || reason FROM requests") == "rejected/no");
  CHECK(f.scalar<std::string>("SELECT template || '/' || status FROM notices") == "subject-rejected/pending");
  CHECK(f.scalar<std::string>("SELECT detail FROM audit_log WHERE event = 'request.rejected'") ==
        R"({"by":"ops","reason":"no","was":"awaiting_approval","notices":["ntc_r"]})");
  // A second decision finds nothing awaiting it and changes nothing.
  CHECK(in_transaction(f, [&](soci::session& sql) { return runs::reject(sql, "req_1", "ops", "x", 9100, mail); }) ==
        runs::Rejection::not_decidable);
  CHECK_FALSE(in_transaction(f, [&](soci::session& sql) { return runs::approve(sql, "req_1", "ops", 9100); }));
  CHECK(f.scalar("SELECT COUNT(*) FROM notices") == 1);
  chain_is_intact(f);
}

TEST_CASE("a failed request is closed by rejecting it; its failed step keeps its own error", "[operator]") {
  testing::SqliteFixture f;
  f.add_request("req_1");
  f.add_request("req_2");
  f.exec("UPDATE requests SET status = 'failed', reason = 'step package failed', next_step = 2, run_at = NULL");
  f.exec("UPDATE requests SET status = 'completed' WHERE id = 'req_2'");
  // It read the data systems (no effect outside), then packaging failed.
  f.exec("INSERT INTO request_steps(request_id, idx, step_id, action, status, attempts, error) VALUES"
         " ('req_1', 0, 'check', 'approval', 'succeeded', 1, NULL),"
         " ('req_1', 1, 'collect', 'systems.collect', 'succeeded', 1, NULL),"
         " ('req_1', 2, 'package', 'export.package', 'failed', 5, 'the package is too large')");
  f.exec("INSERT INTO request_data(request_id, step_id, data_enc, created_at) VALUES ('req_1', 'collect', 'v1.k.x', 1)");
  // A callback that it was extended (no step) says nothing was done.
  f.exec("INSERT INTO notices(id, request_id, step_idx, channel, recipient, template, status, attempts, payload_enc,"
         " created_at, next_attempt_at) VALUES ('ntc_cb', 'req_1', -1, 'partner_center', 'partner-center',"
         " 'request.extended', 'delivered', 1, '', 1, 1),"
         // A step's notice never tried: given up, so it is not sent after the rejection.
         " ('ntc_p', 'req_1', 2, 'subject', 'subject', 'subject-access-ready', 'pending', 0, '', 1, 1)");
  const std::vector<runs::Transition::Notice> mail = {{"ntc_r", "subject", "subject", "subject-rejected", "v1.k.z"}};
  auto reject = [&](const char* id) {
    return in_transaction(f, [&](soci::session& sql) { return runs::reject(sql, id, "ops", "gone", 9000, mail); });
  };
  CHECK(reject("req_1") == runs::Rejection::rejected);
  CHECK(f.scalar<std::string>("SELECT status || '/' || reason FROM requests WHERE id = 'req_1'") == "rejected/gone");
  CHECK(f.scalar<std::string>("SELECT status || '/' || error FROM request_steps WHERE idx = 2") ==
        "failed/the package is too large");
  CHECK(f.scalar("SELECT COUNT(*) FROM request_data") == 0);  // rejected is final: what was read goes
  CHECK(f.scalar<std::string>("SELECT detail FROM audit_log WHERE event = 'request.rejected'") ==
        R"({"by":"ops","reason":"gone","was":"failed","notices":["ntc_r"]})");
  // Rejected is final: no retry, no second rejection; a finished request
  // is never rejected.
  CHECK_FALSE(in_transaction(f, [&](soci::session& sql) { return runs::retry_request(sql, "req_1", "ops", 9100); }));
  CHECK(reject("req_1") == runs::Rejection::not_decidable);
  CHECK(reject("req_2") == runs::Rejection::not_decidable);
  CHECK(f.scalar<std::string>("SELECT status FROM requests WHERE id = 'req_2'") == "completed");
  CHECK(f.scalar("SELECT COUNT(*) FROM notices") == 3);
  CHECK(f.scalar<std::string>("SELECT status FROM notices WHERE id = 'ntc_p'") == "dead");
  chain_is_intact(f);
}

TEST_CASE("a failed request that already acted outside privacyd is not rejected", "[operator]") {
  testing::SqliteFixture f;
  const auto ids = {"req_erased", "req_erasing", "req_told", "req_called", "req_calling", "req_sending", "req_lost"};
  for (const char* id : ids) f.add_request(id);
  f.exec("UPDATE requests SET status = 'failed', next_step = 1, run_at = NULL");
  f.exec("UPDATE requests SET next_step = -1 WHERE id = 'req_lost'");  // its position lost: judged on every step
  f.exec("INSERT INTO request_steps(request_id, idx, step_id, action, status, attempts) VALUES"
         // Erased, then its partner notices failed: the person must not hear "not carried out".
         " ('req_erased', 0, 'erase', 'systems.erase', 'succeeded', 1),"
         " ('req_erased', 1, 'notify', 'notify.partners', 'failed', 1),"
         // An erase that failed may have erased some systems first.
         " ('req_erasing', 0, 'check', 'approval', 'succeeded', 1),"
         " ('req_erasing', 1, 'erase', 'systems.erase', 'failed', 3),"
         // A notice was delivered (a partner of several was told).
         " ('req_told', 0, 'check', 'approval', 'succeeded', 1),"
         " ('req_told', 1, 'notify', 'notify.partners', 'failed', 1),"
         // A webhook that answered may have done anything.
         " ('req_called', 0, 'call', 'webhook.call', 'succeeded', 1),"
         " ('req_called', 1, 'notify', 'notify.subject', 'failed', 1),"
         // A webhook call that timed out may have acted at the far end.
         " ('req_calling', 0, 'check', 'approval', 'succeeded', 1),"
         " ('req_calling', 1, 'call', 'webhook.call', 'failed', 3),"
         // A notice tried before may have arrived.
         " ('req_sending', 0, 'check', 'approval', 'succeeded', 1),"
         " ('req_sending', 1, 'notify', 'notify.partners', 'failed', 1),"
         " ('req_lost', 0, 'unlink', 'systems.unlink', 'succeeded', 1)");
  f.exec("INSERT INTO notices(id, request_id, step_idx, channel, recipient, template, status, attempts, payload_enc,"
         " created_at, next_attempt_at) VALUES ('ntc_1', 'req_told', 1, 'partner', 'P-1', 'partner-erasure',"
         " 'delivered', 1, '', 1, 1), ('ntc_2', 'req_sending', 1, 'partner', 'P-2', 'partner-erasure',"
         " 'pending', 2, '', 1, 1)");
  for (const char* id : ids) {
    CAPTURE(id);
    CHECK(in_transaction(f, [&](soci::session& sql) { return runs::reject(sql, id, "ops", "no", 9000, {}); }) ==
          runs::Rejection::acted_outside);
  }
  CHECK(f.scalar("SELECT COUNT(*) FROM requests WHERE status = 'failed'") == 7);
  CHECK(f.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'request.rejected'") == 0);
  // A webhook the far side refused (4xx) did nothing there: that one may be rejected.
  f.add_request("req_refused");
  f.exec("UPDATE requests SET status = 'failed', next_step = 0, run_at = NULL WHERE id = 'req_refused'");
  f.exec("INSERT INTO request_steps(request_id, idx, step_id, action, status, attempts, error)"
         " VALUES ('req_refused', 0, 'check', 'webhook.call', 'failed', 1, 'webhook.call answered 400')");
  CHECK(in_transaction(f, [&](soci::session& sql) { return runs::reject(sql, "req_refused", "ops", "no", 9000, {}); }) ==
        runs::Rejection::rejected);
}
