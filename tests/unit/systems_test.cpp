#include <catch2/catch.hpp>

#include "daemon/actions/systems.hpp"
#include "store_fixture.hpp"

using namespace privacyd;
using namespace privacyd::actions;

TEST_CASE("rows come back as JSON objects, values bound never spliced", "[systems]") {
  testing::SqliteFixture f;
  f.exec("CREATE TABLE accounts (huawei_id TEXT, email TEXT, score INTEGER)");
  f.exec("INSERT INTO accounts VALUES ('hw-1', 'a@example.com', 7), ('hw-2', 'b@example.com', NULL)");
  policy::Query q{"SELECT email, score FROM accounts WHERE huawei_id = :subject", {"subject"}};
  boost::json::array rows;
  f.db->with_session([&](soci::session& sql) { rows = read_rows(sql, q, {"hw-1", ""}); });
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].at("email").as_string() == "a@example.com");
  CHECK(rows[0].at("score").to_number<long long>() == 7);
  f.db->with_session([&](soci::session& sql) { rows = read_rows(sql, q, {"hw-1' OR '1'='1", ""}); });
  CHECK(rows.empty());

  policy::Query erase{"DELETE FROM accounts WHERE huawei_id = :subject", {"subject"}};
  long long n = 0;
  f.db->with_session([&](soci::session& sql) { n = change_rows(sql, erase, {"hw-2", ""}); });
  CHECK(n == 1);
  CHECK(f.scalar("SELECT COUNT(*) FROM accounts") == 1);
}

TEST_CASE("a data system's failure is described without the values bound to it", "[systems]") {
  testing::SqliteFixture f;
  policy::Query q{"SELECT email FROM no_such_table WHERE huawei_id = :subject", {"subject"}};
  std::string described;
  try {
    f.db->with_session([&](soci::session& sql) { read_rows(sql, q, {"hw-secret-subject-77", ""}); });
  } catch (const std::exception& e) {
    described = describe_system_failure(e);
  }
  CHECK(described.starts_with("the query failed (SQLite error "));
  CHECK(described.find("hw-secret-subject-77") == std::string::npos);
  CHECK(described.find("no_such_table") == std::string::npos);
}

TEST_CASE("more rows than the bound is an error, not a silent cut", "[systems]") {
  testing::SqliteFixture f;
  f.exec("CREATE TABLE many (huawei_id TEXT, n INTEGER)");
  f.exec("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 10001)"
         " INSERT INTO many SELECT 'hw', n FROM c");
  policy::Query q{"SELECT n FROM many WHERE huawei_id = :subject", {"subject"}};
  std::string described;
  try {
    f.db->with_session([&](soci::session& sql) { read_rows(sql, q, {"hw", ""}); });
  } catch (const std::exception& e) {
    described = describe_system_failure(e);
  }
  CHECK(described == "a query returned more than 10000 rows");
}
