#include <catch2/catch.hpp>

#include "daemon/audit/audit.hpp"
#include "store_fixture.hpp"

using namespace privacyd;

namespace {
void append_n(testing::SqliteFixture& f, int n) {
  f.db->with_session([&](soci::session& sql) {
    for (int i = 0; i < n; ++i) {
      soci::transaction tr(sql);
      audit::append(sql, 1000 + i, "req_" + std::to_string(i), "step.succeeded", R"({"step":"a"})");
      tr.commit();
    }
  });
}
audit::Verification verify(testing::SqliteFixture& f) {
  audit::Verification v;
  f.db->with_session([&](soci::session& sql) { v = audit::verify(sql); });
  return v;
}
}  // namespace

TEST_CASE("an untouched chain verifies", "[audit]") {
  testing::SqliteFixture f;
  CHECK(verify(f).intact);
  append_n(f, 5);
  auto v = verify(f);
  CHECK(v.intact);
  CHECK(v.entries == 5);
  CHECK(f.scalar<std::string>("SELECT prev_hash FROM audit_log WHERE seq = 1") == audit::kGenesis);
  CHECK(f.scalar<std::string>("SELECT prev_hash FROM audit_log WHERE seq = 3") ==
        f.scalar<std::string>("SELECT hash FROM audit_log WHERE seq = 2"));
}

TEST_CASE("the database refuses updates and deletes of the audit log", "[audit]") {
  testing::SqliteFixture f;
  append_n(f, 2);
  CHECK_THROWS(f.exec("UPDATE audit_log SET event = 'x' WHERE seq = 1"));
  CHECK_THROWS(f.exec("DELETE FROM audit_log WHERE seq = 1"));
  CHECK(verify(f).intact);
}

TEST_CASE("an edited entry breaks the chain at that entry", "[audit]") {
  testing::SqliteFixture f;
  append_n(f, 5);
  f.exec("DROP TRIGGER audit_log_no_update");
  f.exec("UPDATE audit_log SET detail = '{\"step\":\"b\"}' WHERE seq = 3");
  auto v = verify(f);
  CHECK_FALSE(v.intact);
  CHECK(v.broken_seq == 3);
  CHECK(v.problem == "entry 3 was altered");
}

TEST_CASE("a removed entry breaks the chain where it was", "[audit]") {
  testing::SqliteFixture f;
  append_n(f, 5);
  f.exec("DROP TRIGGER audit_log_no_delete");
  f.exec("DELETE FROM audit_log WHERE seq = 2");
  auto v = verify(f);
  CHECK_FALSE(v.intact);
  CHECK(v.broken_seq == 2);
  CHECK(v.problem == "entry 2 is missing");
}

TEST_CASE("two swapped entries break the chain", "[audit]") {
  testing::SqliteFixture f;
  append_n(f, 5);
  f.exec("DROP TRIGGER audit_log_no_update");
  // Swap the contents of entries 2 and 3, hashes and all.
  f.exec("UPDATE audit_log SET seq = 100 WHERE seq = 2");
  f.exec("UPDATE audit_log SET seq = 2 WHERE seq = 3");
  f.exec("UPDATE audit_log SET seq = 3 WHERE seq = 100");
  auto v = verify(f);
  CHECK_FALSE(v.intact);
  CHECK(v.broken_seq == 2);
}

TEST_CASE("entries cut from the end are noticed through the head", "[audit]") {
  testing::SqliteFixture f;
  append_n(f, 5);
  f.exec("DROP TRIGGER audit_log_no_delete");
  f.exec("DELETE FROM audit_log WHERE seq >= 4");
  auto v = verify(f);
  CHECK_FALSE(v.intact);
  CHECK(v.broken_seq == 4);
}

TEST_CASE("deferred entries join the chain in order, in one turn on the head", "[audit]") {
  testing::SqliteFixture f;
  append_n(f, 2);
  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    audit::Deferral deferral;
    for (int i = 0; i < 150; ++i) {  // more than one INSERT statement's worth
      audit::append(sql, 5000 + i, "req_d" + std::to_string(i), "step.started", R"({"step":"b"})");
    }
    int written = 0;
    sql << "SELECT COUNT(*) FROM audit_log", soci::into(written);
    CHECK(written == 2);  // queued, not written
    deferral.flush(sql);
    audit::append(sql, 9000, "req_after", "request.completed", "{}");  // immediate again
    tr.commit();
  });
  auto v = verify(f);
  CHECK(v.intact);
  CHECK(v.entries == 153);
  CHECK(f.scalar<std::string>("SELECT request_id FROM audit_log WHERE seq = 3") == "req_d0");
  CHECK(f.scalar<std::string>("SELECT request_id FROM audit_log WHERE seq = 152") == "req_d149");
  CHECK(f.scalar<std::string>("SELECT request_id FROM audit_log WHERE seq = 153") == "req_after");
  CHECK(f.scalar("SELECT seq FROM audit_head") == 153);
}

TEST_CASE("a deferral that is never flushed writes nothing", "[audit]") {
  testing::SqliteFixture f;
  f.db->with_session([&](soci::session& sql) {
    audit::Deferral deferral;
    audit::append(sql, 1000, "req_x", "step.started", "{}");
  });
  append_n(f, 1);  // immediate: the deferral is gone
  CHECK(f.scalar("SELECT COUNT(*) FROM audit_log") == 1);
  CHECK(verify(f).intact);
}
