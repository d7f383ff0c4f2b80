#include <catch2/catch.hpp>

#include "daemon/store/intake_writes.hpp"
#include "store_fixture.hpp"

using namespace privacyd;

namespace {
struct SqliteStore : testing::SqliteFixture {
  crypto::KeyRing keys{crypto::random_bytes(32)};
  IntakeOutcome write(const IntakeWrite& w) {
    IntakeOutcome out;
    db->with_session([&](soci::session& sql) {
      soci::transaction tr(sql);
      out = write_intake(sql, w, SubjectSealer(keys, nullptr));
      tr.commit();
    });
    return out;
  }
  int count(const std::string& query) { return scalar(query); }
};

IntakeWrite association(std::string webhook_id, std::string event_id, std::string subject_index) {
  IntakeWrite w;
  w.webhook_id = std::move(webhook_id);
  w.body_sha256 = "hash-" + w.webhook_id;
  w.response = R"({"event_id":")" + event_id + R"(","status":"recorded"})";
  w.received_at = 1000;
  w.new_subject_id = "sub_" + event_id;
  w.huawei_index = std::move(subject_index);
  w.huawei_id = "hw-" + w.huawei_index;
  w.id = std::move(event_id);
  w.type = "association.created";
  w.partner_id = "P-1001";
  w.occurred_at = 900;
  w.categories = {"email_address", "phone_number"};
  w.statement_version = "1.0";
  w.jurisdiction = "default";
  return w;
}
}  // namespace

TEST_CASE("a webhook is stored once; a repeat replays; another body conflicts", "[intake-store]") {
  SqliteStore s;
  auto w = association("msg_1", "evt_1", "idx_a");
  auto first = s.write(w);
  CHECK(first.kind == IntakeOutcome::Kind::stored);
  CHECK(first.status == 202);

  auto again = s.write(w);
  CHECK(again.kind == IntakeOutcome::Kind::replayed);
  CHECK(again.status == 202);
  CHECK(again.response == w.response);

  auto other = w;
  other.body_sha256 = "different";
  CHECK(s.write(other).kind == IntakeOutcome::Kind::conflict);

  CHECK(s.count("SELECT COUNT(*) FROM events") == 1);
  CHECK(s.count("SELECT COUNT(*) FROM associations") == 1);
  CHECK(s.count("SELECT COUNT(*) FROM disclosures") == 2);
  CHECK(s.count("SELECT COUNT(*) FROM subjects") == 1);
}

TEST_CASE("the same subject is one row, found by its blind index", "[intake-store]") {
  SqliteStore s;
  s.write(association("msg_1", "evt_1", "idx_a"));
  auto second = association("msg_2", "evt_2", "idx_a");
  second.type = "data.disclosed";
  second.categories = {"exam_records"};
  s.write(second);
  auto request = association("msg_3", "req_1", "idx_a");
  request.type = "request.disassociation";
  request.is_request = true;
  request.deadline_at = 5000;
  s.write(request);

  CHECK(s.count("SELECT COUNT(*) FROM subjects") == 1);
  CHECK(s.count("SELECT COUNT(*) FROM disclosures WHERE subject_id = 'sub_evt_1'") == 3);
  CHECK(s.count("SELECT COUNT(*) FROM requests WHERE subject_id = 'sub_evt_1' AND status = 'received'"
                " AND type = 'disassociation' AND deadline_at = 5000") == 1);
}

TEST_CASE("a second acceptance while associated opens no second association", "[intake-store]") {
  SqliteStore s;
  s.write(association("msg_1", "evt_1", "idx_a"));
  s.write(association("msg_2", "evt_2", "idx_a"));
  CHECK(s.count("SELECT COUNT(*) FROM associations WHERE ended_at IS NULL") == 1);
  CHECK(s.count("SELECT COUNT(*) FROM events WHERE type = 'association.created'") == 2);
}
