#pragma once
// Durable jobs (SPEC §14): work whose due times live in the database, so a
// restart loses none, done in rounds by one loop per job. The notifier, the
// retention-hold timer and the follow-up loop are all this one shape:
//
//   - a round runs its parts in order, each on its own (one failing, say a
//     system that is down, does not stop the others), and each part's
//     failures are logged when they start and when they end, not at every
//     round;
//   - a round in which some part filled its batch (more may be due) is
//     followed at once by another, so a backlog drains in batches without
//     waiting; otherwise the loop sleeps for its period, or until woken;
//   - work that outlives a transaction (a delivery, an erase in another
//     system) is claimed first with a lease (`lease_due`), so instances
//     sharing the database never take the same row at once, and a crash
//     frees it when the lease lapses.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/base/log.hpp"
#include "daemon/base/time.hpp"
#include "daemon/base/units.hpp"

namespace soci {
class session;
class row;
}  // namespace soci

namespace privacyd::jobs {

class Loop : public std::enable_shared_from_this<Loop> {
 public:
  using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;
  // Does a batch of what is due, and says whether more may be due now (it
  // filled its batch).
  using Part = std::function<boost::asio::awaitable<bool>()>;

  Loop(boost::asio::io_context& ioc, Logger& log, Duration every);

  // The strand every part runs on.
  Strand& strand() { return strand_; }
  // Before start(). `what` names the part in the log ("<what> failed").
  void add(std::string_view what, Part part);
  // `owner` (the object the parts belong to) is kept alive while the loop runs.
  void start(std::shared_ptr<void> owner);
  // Runs a round now (or right after the one running).
  void wake();
  void stop();
  bool stopped() const { return done_.load(); }

 private:
  struct Entry {
    Part part;
    std::unique_ptr<OutageLog> outage;
  };
  boost::asio::awaitable<void> run(std::shared_ptr<void> owner);

  Strand strand_;
  boost::asio::steady_timer timer_;
  Logger& log_;
  Duration every_;
  std::vector<Entry> parts_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> done_{true};
  bool woken_ = false;  // on the strand: wake() came since the loop last waited
};

// Which rows of a table a round claims.
struct Claim {
  std::string_view table;
  std::string_view key;       // the primary key's columns: "id", or "request_id, system, category"
  std::string_view due;       // SQL that is true of a due row; may bind :now (once)
  std::string_view order_by;  // "" for any order
  std::string_view columns;   // what each claimed row yields to `each`
  int limit = 0;
};

// Leases up to `claim.limit` due rows that no one holds (never leased, or
// the lease lapsed before `now`) to `token` until `until`, in one statement,
// and calls `each` with the `columns` of every row leased. On PostgreSQL a
// row another instance is claiming at this moment is skipped, not waited
// for. The table needs `lease_until` and `claim_token` columns; an outcome
// is recorded only under the token (see the callers), so a claim that
// outlived its lease cannot overwrite the next one's.
void lease_due(soci::session& sql, const Claim& claim, UnixMillis now, UnixMillis until, const std::string& token,
               const std::function<void(const soci::row&)>& each);

}  // namespace privacyd::jobs
