// Claims of requests are fenced by a token per claim (issue 11): a process
// never claims what it still drives, and whoever lost a claim writes nothing.
#include <catch2/catch.hpp>

#include "daemon/store/runs.hpp"
#include "store_fixture.hpp"

using namespace privacyd;

namespace {

std::vector<runs::Claim> claim(testing::SqliteFixture& f, long long now, const std::vector<std::string>& driving = {}) {
  std::vector<runs::Claim> out;
  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    out = runs::claim(sql, now, "me", now + 1000, 10, driving);
    tr.commit();
  });
  return out;
}

bool apply(testing::SqliteFixture& f, const std::string& token, long long now) {
  runs::Transition t;
  t.request_id = "req_1";
  t.owner = "me";
  t.token = token;
  t.now = now;
  t.request_status = "running";
  t.run_at = now;
  t.lease_until = now + 1000;
  t.audit_event = "request.started";
  bool applied = false;
  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    applied = runs::apply(sql, t);
    if (applied) tr.commit();
  });
  return applied;
}

}  // namespace

TEST_CASE("a request this process drives is not claimed again when its lease lapses", "[claims]") {
  testing::SqliteFixture f;
  f.add_request("req_1");
  f.exec("UPDATE requests SET run_at = 1000 WHERE id = 'req_1'");
  auto first = claim(f, 2000);
  REQUIRE(first.size() == 1);
  // The lease lapsed (a data system kept the step waiting), but the
  // coroutine that claimed it is still at work here.
  CHECK(claim(f, 5000, {"req_1"}).empty());
  CHECK(f.scalar<std::string>("SELECT lease_token FROM requests") == first[0].token);
}

TEST_CASE("one free slot and nothing due claims nothing and no request without an id", "[claims]") {
  testing::SqliteFixture f;
  std::vector<runs::Claim> claimed{{"stale", "stale"}};
  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    // A vector of one that SOCI fills with no row stays as it was: {""}.
    claimed = runs::claim(sql, 1000, "me", 2000, 1);
    tr.commit();
  });
  CHECK(claimed.empty());
}

TEST_CASE("a lost claim writes nothing: every write checks the claim's token", "[claims]") {
  testing::SqliteFixture f;
  f.add_request("req_1");
  f.exec("UPDATE requests SET run_at = 1000 WHERE id = 'req_1'");
  auto first = claim(f, 2000);
  REQUIRE(first.size() == 1);
  auto second = claim(f, 5000);  // another instance, after the lease
  REQUIRE(second.size() == 1);
  CHECK(second[0].token != first[0].token);
  CHECK_FALSE(apply(f, first[0].token, 5100));
  bool renewed = true;
  f.db->with_session([&](soci::session& sql) { renewed = runs::renew(sql, "req_1", "me", first[0].token, 9000); });
  CHECK_FALSE(renewed);
  CHECK(apply(f, second[0].token, 5200));
  f.db->with_session([&](soci::session& sql) { renewed = runs::renew(sql, "req_1", "me", second[0].token, 9000); });
  CHECK(renewed);
  CHECK(f.scalar<long long>("SELECT lease_until FROM requests") == 9000);
  CHECK(f.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'request.started'") == 1);
}

TEST_CASE("a waiting step is woken at once when its notices settled before the commit", "[claims]") {
  testing::SqliteFixture f;
  f.add_request("req_1");
  f.exec("UPDATE requests SET run_at = 1000 WHERE id = 'req_1'");
  auto c = claim(f, 2000);
  REQUIRE(c.size() == 1);
  f.exec("INSERT INTO notices(id, request_id, step_idx, channel, recipient, template, status, payload_enc,"
         " next_attempt_at, created_at) VALUES ('ntc_a', 'req_1', 0, 'partner', 'P-1001', 't', 'delivered', 'x', 0, 0),"
         " ('ntc_b', 'req_1', 0, 'partner', 'P-1002', 't', 'pending', 'x', 0, 0)");
  auto wait = [&](long long now) {
    runs::Transition t;
    t.request_id = "req_1";
    t.owner = "me";
    t.token = c[0].token;
    t.now = now;
    t.step_idx = 0;
    t.step_id = "tell";
    t.action = "notify.partners";
    t.step_status = "waiting";
    t.request_status = "running";
    t.await_notices = true;
    t.audit_event = "step.waiting";
    bool applied = false;
    f.db->with_session([&](soci::session& sql) {
      soci::transaction tr(sql);
      applied = runs::apply(sql, t);
      tr.commit();
    });
    return applied;
  };
  REQUIRE(wait(3000));
  CHECK(f.scalar("SELECT COUNT(*) FROM requests WHERE run_at IS NULL") == 1);  // ntc_b is pending: the notifier wakes it

  // ntc_b settles before the step's next decision is committed.
  f.exec("UPDATE requests SET run_at = 3500, lease_owner = 'me', lease_until = 9000 WHERE id = 'req_1'");
  f.exec("UPDATE requests SET lease_token = '" + c[0].token + "'");
  f.exec("UPDATE notices SET status = 'delivered' WHERE id = 'ntc_b'");
  REQUIRE(wait(4000));
  CHECK(f.scalar<long long>("SELECT run_at FROM requests") == 4000);
}

TEST_CASE("stored errors are bounded and carry no bound values", "[claims]") {
  testing::SqliteFixture f;
  f.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)");
  const std::string blob(1 << 20, 'Q');
  std::string described;
  try {
    f.db->with_session([&](soci::session& sql) {
      int one = 1;
      sql << "INSERT INTO t(id, v) VALUES (:id, :v)", soci::use(one, "id"), soci::use(blob, "v");
      sql << "INSERT INTO t(id, v) VALUES (:id, :v)", soci::use(one, "id"), soci::use(blob, "v");
    });
  } catch (const std::exception& e) {
    described = describe_failure(e);
  }
  CHECK(described.starts_with("the query failed (SQLite error "));
  CHECK(described.find("QQQQ") == std::string::npos);
  CHECK(runs::bounded_error(std::string(5000, 'e')).size() <= runs::kMaxStoredError + 3);
  // Never cut inside a UTF-8 sequence.
  const std::string han = "\xe6\x97\xa5";
  std::string text;
  while (text.size() < 1000) text += han;
  auto cut = runs::bounded_error(text);
  CHECK((cut.size() - 3) % 3 == 0);
}
