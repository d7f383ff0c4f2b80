// The durable-job mechanism (issue 13): the lease a round takes on its rows,
// and the loop the notifier, the retention-hold timer and the follow-ups share.
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>
#include <set>
#include <stdexcept>

#include "daemon/store/jobs.hpp"
#include "store_fixture.hpp"

using namespace privacyd;

namespace {

// A table of the shape lease_due needs, with a two-column key.
void make_table(testing::SqliteFixture& f) {
  f.exec("CREATE TABLE work (a TEXT, b TEXT, due_at BIGINT, lease_until BIGINT, claim_token TEXT,"
         " PRIMARY KEY (a, b))");
  f.exec("INSERT INTO work(a, b, due_at) VALUES ('x', '1', 10), ('x', '2', 20), ('y', '1', 30), ('z', '9', 5000)");
}

std::set<std::string> lease(testing::SqliteFixture& f, long long now, long long until, const std::string& token,
                            int limit = 10) {
  std::set<std::string> got;
  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    jobs::lease_due(sql,
                    {.table = "work", .key = "a, b", .due = "due_at <= :now", .order_by = "due_at",
                     .columns = "a, b", .limit = limit},
                    now, until, token,
                    [&](const soci::row& r) { got.insert(r.get<std::string>(0) + r.get<std::string>(1)); });
    tr.commit();
  });
  return got;
}

}  // namespace

TEST_CASE("a lease takes due rows no one holds, oldest first, and only those") {
  testing::SqliteFixture f;
  make_table(f);
  CHECK(lease(f, 100, 1000, "A", 2) == std::set<std::string>{"x1", "x2"});
  CHECK(f.scalar<int>("SELECT COUNT(*) FROM work WHERE claim_token = 'A' AND lease_until = 1000") == 2);
  // Another round meanwhile gets the rest of what is due, not A's.
  CHECK(lease(f, 200, 1000, "B") == std::set<std::string>{"y1"});
  CHECK(lease(f, 300, 1000, "C").empty());
  // A lease that lapsed (its holder died) is taken again, under the new token.
  CHECK(lease(f, 1001, 2000, "D") == std::set<std::string>{"x1", "x2", "y1"});
  CHECK(f.scalar<int>("SELECT COUNT(*) FROM work WHERE claim_token = 'D'") == 3);
  // The row not yet due was never touched.
  CHECK(f.scalar<int>("SELECT COUNT(*) FROM work WHERE a = 'z' AND claim_token IS NULL") == 1);
}

TEST_CASE("a job loop drains a backlog, isolates a failing part, wakes, and stops") {
  namespace net = boost::asio;
  net::io_context ioc;
  std::FILE* devnull = std::fopen("/dev/null", "w");
  Logger log{devnull, LogLevel::error, false};
  // A period no test waits out: every round after the first comes from a
  // backlog or a wake-up.
  auto loop = std::make_shared<jobs::Loop>(ioc, log, std::chrono::hours(1));
  int failing_runs = 0, rounds = 0;
  loop->add("always failing", [&]() -> net::awaitable<bool> {
    ++failing_runs;
    throw std::runtime_error("the system is down");
    co_return true;
  });
  loop->add("counting", [&]() -> net::awaitable<bool> {
    ++rounds;
    if (rounds <= 3) co_return true;  // a full batch each: a backlog three rounds long
    if (rounds == 4) {
      loop->wake();  // as if more work were queued while this round ran
      co_return false;
    }
    loop->stop();
    co_return false;
  });
  auto owner = std::make_shared<int>(7);
  std::weak_ptr<int> watched = owner;
  loop->start(std::move(owner));
  CHECK_FALSE(loop->stopped());
  ioc.run();  // returns once the loop has ended: nothing else holds work
  CHECK(loop->stopped());
  CHECK(rounds == 5);
  CHECK(failing_runs == 5);  // its failures stopped no round
  CHECK(watched.expired());  // the owner is let go when the loop ends
  std::fclose(devnull);
}
