#include "daemon/store/group_commit.hpp"

#include <boost/asio/post.hpp>
#include <soci/soci.h>
#include <vector>

#include "daemon/audit/audit.hpp"

namespace privacyd {

GroupCommit::GroupCommit(Database& db, Logger& log, Options options) : db_(db), log_(log), options_(options) {}

void GroupCommit::submit(Work work, Done done) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back({std::move(work), std::move(done)});
    if (inflight_ >= options_.max_inflight) return;  // a running flush will pick it up
    ++inflight_;
  }
  boost::asio::post(db_.threads(), [this] { flush(); });
}

void GroupCommit::commit_alone(Item& item) {
  // A conflict (deadlock, busy) on a lone write is worth a few more tries.
  constexpr int kAttempts = 3;
  for (int attempt = 1;; ++attempt) {
    try {
      db_.with_session([&](soci::session& sql) {
        soci::transaction tr(sql);
        item.work(sql);
        tr.commit();
      });
      item.done(nullptr);
      return;
    } catch (const DatabaseConflict&) {
      if (attempt < kAttempts) continue;
      item.done(std::current_exception());
      return;
    } catch (...) {
      item.done(std::current_exception());
      return;
    }
  }
}

// One batch per turn on the database threads, then the flush queues itself
// behind whatever else waits there: under sustained intake a loop here
// would starve claims, lease renewals, the notifier and /readyz (on SQLite
// there is one database thread).
void GroupCommit::flush() {
  {
    std::vector<Item> batch;
    {
      std::lock_guard lock(mutex_);
      if (queue_.empty()) {
        --inflight_;
        return;
      }
      while (!queue_.empty() && batch.size() < options_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    std::exception_ptr error;
    try {
      db_.with_session([&](soci::session& sql) {
        soci::transaction tr(sql);
        audit::Deferral audit_entries;  // appended together, just before the commit
        for (auto& item : batch) item.work(sql);
        audit_entries.flush(sql);
        tr.commit();
      });
    } catch (...) {
      error = std::current_exception();
    }
    bool unavailable = false;
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const DatabaseUnavailable&) {
        unavailable = true;
      } catch (...) {
      }
    }
    if (!error) {
      for (auto& item : batch) item.done(nullptr);
    } else if (unavailable || batch.size() == 1) {
      if (!unavailable && batch.size() == 1) {
        commit_alone(batch.front());
      } else {
        for (auto& item : batch) item.done(error);
      }
    } else {
      log_.debug("group commit fell back to single writes", {{"items", batch.size()}});
      for (auto& item : batch) commit_alone(item);
    }
  }
  {
    std::lock_guard lock(mutex_);
    if (queue_.empty()) {
      --inflight_;
      return;
    }
  }
  boost::asio::post(db_.threads(), [this] { flush(); });
}

}  // namespace privacyd
