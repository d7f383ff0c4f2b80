// Statements prepared once per connection (store/prepared.hpp), against a
// real PostgreSQL: the tests tagged [.pg] are hidden from a plain run and
// run by tests/integration/test_prepared.py, which starts a throwaway
// cluster and passes its URL in PRIVACYD_TEST_PG. What the server holds is
// read from pg_prepared_statements, on the connection itself.

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <vector>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

#include "daemon/store/database.hpp"
#include "daemon/store/prepared.hpp"

using namespace privacyd;

namespace {

struct Quiet {
  Quiet() : devnull(std::fopen("/dev/null", "w")), log(devnull, LogLevel::error, false) {}
  ~Quiet() { std::fclose(devnull); }
  std::FILE* devnull;
  Logger log;
};

DatabaseConfig one_connection() {
  const char* url = std::getenv("PRIVACYD_TEST_PG");
  REQUIRE(url != nullptr);
  std::string error;
  auto cfg = parse_database_url(url, "/", error);
  REQUIRE(cfg);
  cfg->pool_size = 1;  // every with_session on the one connection, and its cache
  return *cfg;
}

// The SQLSTATE `run` fails with on the server; "none" when it runs.
template <class Run>
std::string refusal(Run run) {
  try {
    run();
  } catch (const soci::postgresql_soci_error& e) {
    return e.sqlstate();
  }
  return "none";
}

long long server_statements(soci::session& sql) {
  long long n = 0;
  sql << "SELECT COUNT(*) FROM pg_prepared_statements", soci::into(n);
  return n;
}

// A Database on one connection, with a fresh table to probe.
struct Probe {
  explicit Probe(const DatabaseConfig& cfg = one_connection()) : db(cfg, quiet.log) {
    db.with_session([](soci::session& sql) {
      sql << "DROP TABLE IF EXISTS prepared_probe";
      sql << "CREATE TABLE prepared_probe (id INTEGER PRIMARY KEY, label TEXT)";
    });
  }
  Quiet quiet;
  Database db;
};

long long insert(soci::session& sql, int id, const std::string& label) {
  Prepared st(sql, "INSERT INTO prepared_probe(id, label) VALUES (:id, :label)");
  st.bind(soci::use(id, "id"), soci::use(label, "label"));
  st.execute();
  return st.affected_rows();
}

std::string label_of(soci::session& sql, int id) {
  std::string label;
  Prepared st(sql, "SELECT label FROM prepared_probe WHERE id = :id");
  st.bind(soci::use(id, "id"), soci::into(label));
  return st.execute() ? label : std::string("(none)");
}

}  // namespace

TEST_CASE("a statement is prepared once per connection and runs again with fresh bindings", "[.pg]") {
  Probe probe;
  Database& db = probe.db;
  for (int i = 1; i <= 20; ++i) {
    db.with_session([&](soci::session& sql) { CHECK(insert(sql, i, "row " + std::to_string(i)) == 1); });
  }
  db.with_session([&](soci::session& sql) {
    CHECK(label_of(sql, 7) == "row 7");
    CHECK(label_of(sql, 20) == "row 20");
    CHECK(label_of(sql, 99) == "(none)");
    // A row read into a soci::row is described again at every run: each
    // run reads its own row, not the one before.
    for (int id : {3, 11, 5}) {
      soci::row r;
      Prepared st(sql, "SELECT id, label FROM prepared_probe WHERE id = :id");
      st.bind(soci::use(id, "id"), soci::into(r));
      REQUIRE(st.execute());
      CHECK(r.get<int>(0) == id);
      CHECK(r.get<std::string>(1) == "row " + std::to_string(id));
    }
    // Into a vector, as a claim reads its candidates.
    std::vector<int> ids(4);
    int from = 17;
    Prepared many(sql, "SELECT id FROM prepared_probe WHERE id >= :from ORDER BY id");
    many.bind(soci::use(from, "from"), soci::into(ids));
    REQUIRE(many.execute());
    CHECK(ids == std::vector<int>{17, 18, 19, 20});
    CHECK(server_statements(sql) == 4);  // the INSERT and the three SELECTs, each once
  });
}

TEST_CASE("a prepared statement outlives a rolled-back transaction and a failed run", "[.pg]") {
  Probe probe;
  Database& db = probe.db;
  db.with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    insert(sql, 1, "first");  // prepared inside the transaction
    tr.rollback();
  });
  db.with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    CHECK(insert(sql, 1, "second") == 1);
    // The same key again: the run fails, and the transaction with it.
    CHECK_THROWS_AS(insert(sql, 1, "duplicate"), soci::soci_error);
    tr.rollback();
  });
  db.with_session([&](soci::session& sql) {
    CHECK(insert(sql, 1, "third") == 1);
    CHECK(label_of(sql, 1) == "third");
    CHECK(server_statements(sql) == 2);
  });
}

TEST_CASE("statements the server lost are all forgotten, and the work is told to run again", "[.pg]") {
  Probe probe;
  Database& db = probe.db;
  db.with_session([&](soci::session& sql) {
    insert(sql, 1, "a");
    CHECK(label_of(sql, 1) == "a");
  });
  // As DISCARD ALL, or a pooler handing out another server session, would.
  db.with_session([](soci::session& sql) { sql << "DEALLOCATE ALL"; });
  db.with_session([&](soci::session& sql) {
    CHECK(refusal([&] { insert(sql, 2, "b"); }) == "26000");  // the server no longer has it
  });
  // The SELECT was lost too, and is prepared afresh without failing once.
  db.with_session([&](soci::session& sql) {
    CHECK(label_of(sql, 1) == "a");
    CHECK(insert(sql, 2, "b") == 1);
    CHECK(server_statements(sql) == 2);
  });
  db.with_session([](soci::session& sql) { sql << "DEALLOCATE ALL"; });
  // Let out of the work, inside a transaction and with a statement of the
  // work's still in use, the loss runs the work again, once.
  int runs = 0;
  long long inserted = 0;
  db.with_session([&](soci::session& sql) {
    ++runs;
    soci::transaction tr(sql);
    int found = 0;
    int id = 1;
    Prepared outer(sql, "SELECT id FROM prepared_probe WHERE id >= :id ORDER BY id");
    outer.bind(soci::use(id, "id"), soci::into(found));
    outer.execute();  // new, so prepared now: it runs, and is in use below
    inserted = insert(sql, 3, "c");  // the first run finds the INSERT lost: 26000, out of the work
    tr.commit();
  });
  CHECK(runs == 2);
  CHECK(inserted == 1);
  db.with_session([&](soci::session& sql) {
    CHECK(label_of(sql, 3) == "c");
    // The INSERT, `outer` (dropped when released, prepared afresh) and the
    // SELECT of label_of: none is left over from before.
    CHECK(server_statements(sql) == 3);
  });
}

TEST_CASE("a statement whose table changed is dropped, and deallocated after its transaction", "[.pg]") {
  Probe probe;
  Database& db = probe.db;
  db.with_session([&](soci::session& sql) {
    insert(sql, 1, "a");
    CHECK(label_of(sql, 1) == "a");
  });
  db.with_session([](soci::session& sql) { sql << "ALTER TABLE prepared_probe DROP COLUMN label"; });
  db.with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    // A statement on a dropped column: the failure aborted the transaction.
    CHECK(refusal([&] { label_of(sql, 1); }).starts_with("42"));
    tr.rollback();
  });
  db.with_session([&](soci::session& sql) {
    // Deallocated once the work ended, not left on the server for the
    // connection's life; the INSERT was not touched.
    CHECK(server_statements(sql) == 1);
  });
}

TEST_CASE("a statement that failed in SOCI itself is dropped; one that failed on the data stays", "[.pg]") {
  Probe probe;
  Database& db = probe.db;
  db.with_session([&](soci::session& sql) {
    insert(sql, 1, "not a number");
    int n = 0;
    int id = 1;
    Prepared st(sql, "SELECT label FROM prepared_probe WHERE id = :id");
    st.bind(soci::use(id, "id"), soci::into(n));
    CHECK_THROWS_AS(st.execute(), soci::soci_error);
    CHECK_THROWS_AS(st.execute(), std::logic_error);  // and it runs once
  });
  db.with_session([&](soci::session& sql) {
    CHECK(server_statements(sql) == 1);  // the INSERT only
    CHECK_THROWS_AS(insert(sql, 1, "again"), soci::soci_error);  // a duplicate key: the data's fault
    CHECK(server_statements(sql) == 1);
    CHECK(label_of(sql, 1) == "not a number");
  });
}

TEST_CASE("with database_prepared_statements off, every query runs one-time", "[.pg]") {
  DatabaseConfig cfg = one_connection();
  cfg.prepared_statements = false;
  Probe probe(cfg);
  Database& db = probe.db;
  db.with_session([&](soci::session& sql) {
    for (int i = 1; i <= 3; ++i) CHECK(insert(sql, i, "x") == 1);
    CHECK(label_of(sql, 2) == "x");
    CHECK(server_statements(sql) == 0);
  });
}

TEST_CASE("a new connection starts with no statements and prepares them again", "[.pg]") {
  Probe probe;
  Database& db = probe.db;
  db.with_session([&](soci::session& sql) { insert(sql, 1, "a"); });
  // The server ends the connection; the next use reconnects.
  CHECK_THROWS_AS(db.with_session([](soci::session& sql) { sql << "SELECT pg_terminate_backend(pg_backend_pid())"; }),
                  DatabaseUnavailable);
  db.with_session([&](soci::session& sql) {
    CHECK(server_statements(sql) == 0);
    CHECK(insert(sql, 2, "b") == 1);
    CHECK(label_of(sql, 1) == "a");
    CHECK(server_statements(sql) == 2);
  });
}

TEST_CASE("a statement in use, a session not the Database's, and a full cache run one-time queries", "[.pg]") {
  Probe probe;
  Database& db = probe.db;
  db.with_session([&](soci::session& sql) {
    insert(sql, 1, "a");
    insert(sql, 2, "b");
    // Reading rows with one statement while the same query runs again.
    soci::row r;
    Prepared outer(sql, "SELECT id FROM prepared_probe WHERE id >= :from ORDER BY id");
    int from = 1;
    outer.bind(soci::use(from, "from"), soci::into(r));
    int seen = 0;
    for (bool got = outer.execute(); got; got = outer.fetch()) {
      ++seen;
      int again = 2;
      int found = 0;
      Prepared inner(sql, "SELECT id FROM prepared_probe WHERE id >= :from ORDER BY id");
      inner.bind(soci::use(again, "from"), soci::into(found));
      CHECK(inner.execute());
      CHECK(found == 2);
    }
    CHECK(seen == 2);
    CHECK(server_statements(sql) == 2);  // the INSERT and `outer`; `inner` was not kept
    for (std::size_t i = 0; i < StatementCache::kMaxStatements + 10; ++i) {
      int n = 0;
      Prepared st(sql, "SELECT " + std::to_string(i) + " + :x");
      int x = 1;
      st.bind(soci::use(x, "x"), soci::into(n));
      REQUIRE(st.execute());
      CHECK(n == static_cast<int>(i) + 1);
    }
    CHECK(server_statements(sql) == static_cast<long long>(StatementCache::kMaxStatements));
  });
  const char* url = std::getenv("PRIVACYD_TEST_PG");
  soci::session bare(soci::postgresql, std::string(url).substr(std::string("postgresql://").size()));
  CHECK(label_of(bare, 1) == "a");
  CHECK(server_statements(bare) == 0);
}
