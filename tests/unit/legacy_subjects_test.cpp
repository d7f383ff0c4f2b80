// Subjects from before subject keys move under keys of their own (issue 13):
// all their values with them, never while a step drives one of their
// requests, and one whose identifier no key opens is passed over, not lost.
#include <catch2/catch.hpp>

#include "daemon/config/config.hpp"
#include "daemon/store/key_store.hpp"
#include "daemon/store/legacy_subjects.hpp"
#include "store_fixture.hpp"

using namespace privacyd;

namespace {

legacy::Moved move(testing::SqliteFixture& f, SubjectKeyStore& keys, int limit, const std::string& after) {
  legacy::Moved moved;
  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    moved = legacy::move_to_subject_keys(sql, SubjectSealer(f.fixture_keys, &keys), 5000, limit, after);
    tr.commit();
  });
  return moved;
}

}  // namespace

TEST_CASE("subjects sealed under the master key move under keys of their own, one pass at a time") {
  testing::SqliteFixture f;
  std::string error;
  auto vault = open_key_vault(*parse_database_url("sqlite3://db=" + (f.dir / "keys.db").string(), "/", error),
                              f.fixture_keys, f.log);
  // Written without a key store: everything under the master key, as before subject keys.
  f.add_request("a");
  f.add_request("b");
  f.add_request("c");
  const std::string collected = f.fixture_keys.seal(R"({"email":"a@example.com"})", "request_data.data");
  f.db->with_session([&](soci::session& sql) {
    sql << "INSERT INTO request_data(request_id, step_id, data_enc, created_at) VALUES ('a', 'collect', :d, 1)",
        soci::use(collected, "d");
    // b: a step is driving it now. c: its identifier is under a key privacyd no longer has.
    sql << "UPDATE requests SET lease_until = 9000 WHERE id = 'b'";
    const std::string lost = crypto::KeyRing(crypto::random_bytes(32)).seal("hw-c", "subjects.huawei_id");
    sql << "UPDATE subjects SET huawei_id_enc = :h WHERE id = 'sub_c'", soci::use(lost, "h");
  });
  const long long legacy_before = f.scalar<long long>("SELECT COUNT(*) FROM subjects WHERE key_id IS NULL");
  REQUIRE(legacy_before == 3);

  auto first = move(f, *vault.store, 2, "");
  CHECK(first.examined == 2);
  CHECK(first.last == "sub_b");
  CHECK(first.subjects == 1);  // a; b waits for its step
  const auto key = f.scalar<std::string>("SELECT key_id FROM subjects WHERE id = 'sub_a'");
  REQUIRE(key.starts_with("sk_"));
  const auto data = f.scalar<std::string>("SELECT data_enc FROM request_data WHERE request_id = 'a'");
  CHECK(data.starts_with("s1." + key + "."));
  CHECK(f.fixture_keys.open(data, "request_data.data") == R"({"email":"a@example.com"})");
  const auto huawei = f.scalar<std::string>("SELECT huawei_id_enc FROM subjects WHERE id = 'sub_a'");
  CHECK(huawei.starts_with("s1." + key + "."));
  CHECK(f.fixture_keys.open(huawei, "subjects.huawei_id") == "hw-a");
  CHECK(f.scalar<std::string>("SELECT huawei_id_enc FROM subjects WHERE id = 'sub_b'").starts_with("v1."));
  CHECK(f.scalar<int>("SELECT COUNT(*) FROM audit_log WHERE event = 'subject_key.assigned'") == 1);

  // The pass goes on after b: c cannot be moved, and is passed over.
  auto second = move(f, *vault.store, 2, first.last);
  CHECK(second.examined == 1);  // fewer than asked: the pass has ended
  CHECK(second.subjects == 0);
  CHECK(second.unreadable == 1);

  // The next pass, once b's step is done: b moves; c stays as it was, and is still counted.
  f.exec("UPDATE requests SET lease_until = NULL WHERE id = 'b'");
  auto third = move(f, *vault.store, 10, "");
  CHECK(third.examined == 2);
  CHECK(third.subjects == 1);
  CHECK(f.scalar<std::string>("SELECT key_id FROM subjects WHERE id = 'sub_b'").starts_with("sk_"));
  f.db->with_session([&](soci::session& sql) { CHECK(legacy::count_legacy_subjects(sql) == 1); });
}
