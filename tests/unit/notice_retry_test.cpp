#include <catch2/catch.hpp>

#include "daemon/audit/audit.hpp"
#include "daemon/store/runs.hpp"
#include "store_fixture.hpp"

using namespace privacyd;

TEST_CASE("an operator's retry revives a dead notice and the step it failed", "[notices]") {
  testing::SqliteFixture f;
  f.add_request("req_1");
  f.exec("UPDATE requests SET status = 'failed', reason = 'step notify-partner failed', next_step = 2,"
         " run_at = NULL WHERE id = 'req_1'");
  f.exec("INSERT INTO request_steps(request_id, idx, step_id, action, status, attempts, error)"
         " VALUES ('req_1', 2, 'notify-partner', 'notify.partner', 'failed', 1, 'notice ntc_1 could not be delivered')");
  f.exec("INSERT INTO notices(id, request_id, step_idx, channel, recipient, template, status, payload_enc, attempts,"
         " next_attempt_at, created_at, last_error) VALUES ('ntc_1', 'req_1', 2, 'partner', 'P-1001',"
         " 'partner-holdings', 'dead', 'v1.k.y', 10, 2000, 1500, 'the partner answered 400')");

  bool retried = false;
  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    retried = runs::retry_notice(sql, "ntc_1", "operator:test", 9000);
    tr.commit();
  });
  CHECK(retried);
  CHECK(f.scalar<std::string>("SELECT status FROM notices WHERE id = 'ntc_1'") == "pending");
  CHECK(f.scalar("SELECT attempts FROM notices WHERE id = 'ntc_1'") == 0);
  CHECK(f.scalar<long long>("SELECT next_attempt_at FROM notices WHERE id = 'ntc_1'") == 9000);
  CHECK(f.scalar<std::string>("SELECT status FROM request_steps WHERE idx = 2") == "waiting");
  CHECK(f.scalar<std::string>("SELECT status FROM requests WHERE id = 'req_1'") == "running");
  CHECK(f.scalar("SELECT COUNT(*) FROM requests WHERE reason IS NULL AND run_at IS NULL AND next_step = 2") == 1);
  CHECK(f.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'notice.retried'") == 1);

  // Only a dead notice can be retried.
  f.db->with_session([&](soci::session& sql) { CHECK_FALSE(runs::retry_notice(sql, "ntc_1", "operator:test", 9500)); });
  f.db->with_session([&](soci::session& sql) { CHECK_FALSE(runs::retry_notice(sql, "ntc_none", "operator:test", 9500)); });
  audit::Verification v;
  f.db->with_session([&](soci::session& sql) { v = audit::verify(sql); });
  CHECK(v.intact);
}

TEST_CASE("retrying a dead callback or reminder leaves its failed request as it is", "[notices]") {
  testing::SqliteFixture f;
  f.add_request("req_1");
  f.exec("UPDATE requests SET status = 'failed', reason = 'step tell-subject failed', next_step = 3,"
         " run_at = NULL WHERE id = 'req_1'");
  f.exec("INSERT INTO request_steps(request_id, idx, step_id, action, status, attempts, error)"
         " VALUES ('req_1', 3, 'tell-subject', 'notify.subject', 'failed', 1, 'notice ntc_2 could not be delivered')");
  // A reminder (or a callback): stored with step_idx -1, nothing waits for it.
  f.exec("INSERT INTO notices(id, request_id, step_idx, channel, recipient, template, status, payload_enc, attempts,"
         " next_attempt_at, created_at, last_error) VALUES ('ntc_9', 'req_1', -1, 'partner', 'P-1001',"
         " 'partner-reminder', 'dead', 'v1.k.y', 10, 2000, 1500, 'the partner answered 410')");

  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    CHECK(runs::retry_notice(sql, "ntc_9", "ops", 9000));
    tr.commit();
  });
  CHECK(f.scalar<std::string>("SELECT status FROM notices WHERE id = 'ntc_9'") == "pending");
  // The request is still failed at its step, so an operator's retry of it works as before.
  CHECK(f.scalar<std::string>("SELECT status FROM requests WHERE id = 'req_1'") == "failed");
  CHECK(f.scalar("SELECT next_step FROM requests WHERE id = 'req_1'") == 3);
  CHECK(f.scalar<std::string>("SELECT status FROM request_steps WHERE idx = 3") == "failed");
  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    CHECK(runs::retry_request(sql, "req_1", "ops", 9500));
    tr.commit();
  });
  CHECK(f.scalar<std::string>("SELECT status FROM requests WHERE id = 'req_1'") == "running");
  CHECK(f.scalar("SELECT next_step FROM requests WHERE id = 'req_1'") == 3);
}

TEST_CASE("retrying the dead mail of an operator's rejection leaves the request rejected", "[notices]") {
  testing::SqliteFixture f;
  f.add_request("req_1");
  f.exec("UPDATE requests SET status = 'rejected', reason = 'no such account', next_step = 1, run_at = NULL"
         " WHERE id = 'req_1'");
  f.exec("INSERT INTO request_steps(request_id, idx, step_id, action, status, attempts, error)"
         " VALUES ('req_1', 1, 'review', 'approval', 'failed', 1, 'rejected by an operator')");
  f.exec("INSERT INTO notices(id, request_id, step_idx, channel, recipient, template, status, payload_enc, attempts,"
         " next_attempt_at, created_at, last_error) VALUES ('ntc_1', 'req_1', 1, 'subject', 'subject',"
         " 'subject-rejected', 'dead', 'v1.k.y', 1, 2000, 1500, 'smtp: 550')");
  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    CHECK(runs::retry_notice(sql, "ntc_1", "ops", 9000));
    CHECK_FALSE(runs::retry_notice(sql, "ntc_1", "ops", 9001));  // once
    tr.commit();
  });
  CHECK(f.scalar<std::string>("SELECT status FROM notices WHERE id = 'ntc_1'") == "pending");
  CHECK(f.scalar<std::string>("SELECT status FROM requests WHERE id = 'req_1'") == "rejected");
  CHECK(f.scalar<std::string>("SELECT status FROM request_steps WHERE idx = 1") == "failed");
  CHECK(f.scalar<std::string>("SELECT error FROM request_steps WHERE idx = 1") == "rejected by an operator");
  CHECK(f.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'notice.retried'") == 1);
}

TEST_CASE("a step's dead notice of a rejected request is not delivered afresh", "[notices]") {
  testing::SqliteFixture f;
  f.add_request("req_1");
  f.exec("UPDATE requests SET status = 'rejected', reason = 'gone', next_step = 2, run_at = NULL WHERE id = 'req_1'");
  f.exec("INSERT INTO notices(id, request_id, step_idx, channel, recipient, template, status, payload_enc, attempts,"
         " next_attempt_at, created_at, last_error) VALUES ('ntc_1', 'req_1', 2, 'subject', 'subject',"
         " 'subject-access-ready', 'dead', 'v1.k.y', 1, 2000, 1500, 'smtp: 550')");
  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    CHECK_FALSE(runs::retry_notice(sql, "ntc_1", "ops", 9000));
    tr.commit();
  });
  CHECK(f.scalar<std::string>("SELECT status FROM notices WHERE id = 'ntc_1'") == "dead");
  CHECK(f.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'notice.retried'") == 0);
}
