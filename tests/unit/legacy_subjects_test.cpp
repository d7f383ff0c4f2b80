// Subjects from before subject keys move under keys of their own (issue 13):
// all their values with them, never while one of their requests is open or
// leased, and one whose identifier no key opens is passed over, not lost.
// Intake leaves such a subject under the master key until it is moved.
#include <catch2/catch.hpp>

#include "daemon/config/config.hpp"
#include "daemon/store/key_store.hpp"
#include "daemon/store/legacy_subjects.hpp"
#include "store_fixture.hpp"

using namespace privacyd;
using Outcome = legacy::Step::Outcome;

namespace {

legacy::Step move(testing::SqliteFixture& f, SubjectKeyStore& keys, const std::string& after) {
  legacy::Step step;
  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    step = legacy::move_next(sql, SubjectSealer(f.fixture_keys, &keys), after, 5000);
    tr.commit();
  });
  return step;
}

std::string column(testing::SqliteFixture& f, const std::string& query) { return f.scalar<std::string>(query); }

}  // namespace

TEST_CASE("subjects sealed under the master key move under keys of their own, with everything of theirs") {
  testing::SqliteFixture f;
  std::string error;
  auto vault = open_key_vault(*parse_database_url("sqlite3://db=" + (f.dir / "keys.db").string(), "/", error),
                              f.fixture_keys, f.log);
  // Written without a key store: everything under the master key, as before subject keys.
  f.add_request("a");
  f.add_request("b");
  f.add_request("c");
  f.exec("UPDATE requests SET status = 'completed'");
  auto& keys = f.fixture_keys;
  const std::string collected = keys.seal(R"({"email":"a@example.com"})", "request_data.data");
  const std::string package = keys.seal(R"({"package":1})", "exports.package");
  const std::string contact = keys.seal(R"({"email":"a@example.com"})", "subjects.contact");
  const std::string mail = keys.seal(R"({"to":"a@example.com"})", "notices.payload");
  const std::string note = keys.seal("the partner's own words", "notices.ack_note");
  f.db->with_session([&](soci::session& sql) {
    sql << "INSERT INTO request_data(request_id, step_id, data_enc, created_at) VALUES ('a', 'collect', :d, 1)",
        soci::use(collected, "d");
    sql << "INSERT INTO exports(request_id, package_enc, bytes, created_at) VALUES ('a', :p, 1, 1)",
        soci::use(package, "p");
    sql << "UPDATE subjects SET contact_enc = :c WHERE id = 'sub_a'", soci::use(contact, "c");
    sql << "INSERT INTO notices(id, request_id, step_idx, channel, recipient, template, payload_enc, status,"
           " attempts, next_attempt_at, created_at, ack_note_enc) VALUES ('ntc_a', 'a', 0, 'subject', 'subject',"
           " 'm', :p, 'delivered', 1, 0, 1, :n)",
        soci::use(mail, "p"), soci::use(note, "n");
    // b: a step is driving its request now. c: its identifier is under a key privacyd no longer has.
    sql << "UPDATE requests SET lease_until = 9000 WHERE id = 'b'";
    const std::string lost = crypto::KeyRing(crypto::random_bytes(32)).seal("hw-c", "subjects.huawei_id");
    sql << "UPDATE subjects SET huawei_id_enc = :h WHERE id = 'sub_c'", soci::use(lost, "h");
  });
  f.db->with_session([&](soci::session& sql) { REQUIRE(legacy::count_legacy_subjects(sql) == 3); });

  auto first = move(f, *vault.store, "");
  CHECK(first.outcome == Outcome::moved);
  CHECK(first.subject_id == "sub_a");
  CHECK(first.values == 5);  // identifier, contact, what was collected, the package, the mail
  const auto key = column(f, "SELECT key_id FROM subjects WHERE id = 'sub_a'");
  REQUIRE(key.starts_with("sk_"));
  const std::string under_key = "s1." + key + ".";
  for (const auto& [query, context, plain] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"SELECT huawei_id_enc FROM subjects WHERE id = 'sub_a'", "subjects.huawei_id", "hw-a"},
           {"SELECT contact_enc FROM subjects WHERE id = 'sub_a'", "subjects.contact", R"({"email":"a@example.com"})"},
           {"SELECT data_enc FROM request_data WHERE request_id = 'a'", "request_data.data",
            R"({"email":"a@example.com"})"},
           {"SELECT package_enc FROM exports WHERE request_id = 'a'", "exports.package", R"({"package":1})"},
           {"SELECT payload_enc FROM notices WHERE id = 'ntc_a'", "notices.payload", R"({"to":"a@example.com"})"}}) {
    const auto value = column(f, query);
    CHECK(value.starts_with(under_key));
    CHECK(keys.open(value, context) == plain);
  }
  // The partner's note is the partner's: it stays under the master key.
  CHECK(column(f, "SELECT ack_note_enc FROM notices WHERE id = 'ntc_a'") == note);
  CHECK(f.scalar<int>("SELECT COUNT(*) FROM audit_log WHERE event = 'subject_key.assigned'") == 1);

  // b's request is leased: b is left out of the pass. c's identifier opens
  // with no key: it is passed over, unchanged, and the pass ends.
  auto second = move(f, *vault.store, first.subject_id);
  CHECK(second.outcome == Outcome::unreadable);
  CHECK(second.subject_id == "sub_c");
  CHECK(move(f, *vault.store, second.subject_id).outcome == Outcome::none);
  CHECK(column(f, "SELECT huawei_id_enc FROM subjects WHERE id = 'sub_b'").starts_with("v1."));

  // An open request holds the move back as a lease does (a failed one too: it may be retried).
  for (const char* open : {"awaiting_approval", "failed"}) {
    f.exec(std::string("UPDATE requests SET lease_until = NULL, status = '") + open + "' WHERE id = 'b'");
    CHECK(move(f, *vault.store, "sub_a").subject_id == "sub_c");
  }
  f.exec("UPDATE requests SET status = 'rejected' WHERE id = 'b'");
  CHECK(move(f, *vault.store, "sub_a").outcome == Outcome::moved);
  f.db->with_session([&](soci::session& sql) { CHECK(legacy::count_legacy_subjects(sql) == 1); });  // c

  // A subject with a key that still owns a value under the master key (an
  // older intake gave it the key, or a late step wrote it): sealed again
  // under its own key, which it keeps.
  const std::string late = keys.seal(R"({"late":true})", "request_data.data");
  f.db->with_session([&](soci::session& sql) {
    sql << "INSERT INTO request_data(request_id, step_id, data_enc, created_at) VALUES ('a', 'late', :d, 2)",
        soci::use(late, "d");
  });
  auto straggler = move(f, *vault.store, "");
  CHECK(straggler.outcome == Outcome::moved);
  CHECK(straggler.subject_id == "sub_a");
  CHECK(straggler.values == 1);
  CHECK(column(f, "SELECT key_id FROM subjects WHERE id = 'sub_a'") == key);
  const auto again = column(f, "SELECT data_enc FROM request_data WHERE request_id = 'a' AND step_id = 'late'");
  CHECK(again.starts_with(under_key));
  CHECK(keys.open(again, "request_data.data") == R"({"late":true})");
  CHECK(f.scalar<int>("SELECT COUNT(*) FROM audit_log WHERE event = 'subject.resealed'") == 1);
  // Nothing is left to move but c, which no key opens.
  CHECK(move(f, *vault.store, "").subject_id == "sub_c");
}

TEST_CASE("intake leaves a subject from before subject keys under the master key until it is moved") {
  testing::SqliteFixture f;
  std::string error;
  auto vault = open_key_vault(*parse_database_url("sqlite3://db=" + (f.dir / "keys.db").string(), "/", error),
                              f.fixture_keys, f.log);
  f.add_request("a");  // before subject keys (the fixture has no key store)
  // Its identifier sealed under a key privacyd has lost: the next webhook mends it.
  const std::string lost = crypto::KeyRing(crypto::random_bytes(32)).seal("hw-a", "subjects.huawei_id");
  f.db->with_session([&](soci::session& sql) {
    sql << "UPDATE subjects SET huawei_id_enc = :h WHERE id = 'sub_a'", soci::use(lost, "h");
  });
  // A later event with new contact details, now that there is a key store.
  IntakeWrite w;
  w.webhook_id = "msg_later";
  w.body_sha256 = "h2";
  w.response = "{}";
  w.received_at = 2000;
  w.new_subject_id = "sub_new";
  w.huawei_index = "idx_a";
  w.huawei_id = "hw-a";
  w.contact_json = R"({"email":"new@example.com"})";
  w.id = "evt_1";
  w.type = "association.created";
  w.partner_id = "P-1001";
  w.statement_version = "1.0";
  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    CHECK(write_intake(sql, w, SubjectSealer(f.fixture_keys, vault.store.get())).kind == IntakeOutcome::Kind::stored);
    tr.commit();
  });
  // Still keyless, the new contact under the master key with the rest…
  CHECK(f.scalar<int>("SELECT COUNT(*) FROM subjects WHERE id = 'sub_a' AND key_id IS NULL") == 1);
  CHECK(column(f, "SELECT contact_enc FROM subjects WHERE id = 'sub_a'").starts_with("v1."));
  const auto mended = column(f, "SELECT huawei_id_enc FROM subjects WHERE id = 'sub_a'");
  CHECK(mended.starts_with("v1."));
  CHECK(f.fixture_keys.open(mended, "subjects.huawei_id") == "hw-a");
  // …until the move takes all of it at once.
  f.exec("UPDATE requests SET status = 'completed'");
  CHECK(move(f, *vault.store, "").outcome == Outcome::moved);
  const auto key = column(f, "SELECT key_id FROM subjects WHERE id = 'sub_a'");
  const auto moved = column(f, "SELECT contact_enc FROM subjects WHERE id = 'sub_a'");
  CHECK(moved.starts_with("s1." + key + "."));
  CHECK(f.fixture_keys.open(moved, "subjects.contact") == R"({"email":"new@example.com"})");
}
