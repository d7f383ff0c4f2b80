#pragma once
// Group commit: concurrent writers share one transaction, so one fsync
// makes many webhooks durable. A writer's coroutine resumes only after the
// transaction that holds its work has committed.
//
// If a shared transaction fails for any reason but a lost database, each
// piece of work is retried alone, so one bad write never fails the others.
// Work must therefore be safe to run twice (it runs again only after the
// first attempt was rolled back).

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>

#include "daemon/store/database.hpp"

namespace privacyd {

class GroupCommit {
 public:
  struct Options {
    std::size_t max_batch = 256;   // pieces of work in one transaction
    std::size_t max_inflight = 2;  // transactions open at once
  };
  GroupCommit(Database& db, Logger& log, Options options);

  using Work = std::function<void(soci::session&)>;
  using Done = std::function<void(std::exception_ptr)>;

  // Queues `work`; `done` runs on a database thread after the commit (or
  // with the error that prevented it).
  void submit(Work work, Done done);

  // The coroutine form: resumes on the caller's executor after the commit;
  // rethrows the error if the work could not be committed.
  //
  // GCC 12 can destroy temporaries of a co_await expression twice, so
  // `work` is taken by reference (pass a named local) and this is not
  // itself a coroutine.
  auto run(Work&& work) {
    namespace net = boost::asio;
    return net::async_initiate<decltype(net::use_awaitable), void(std::exception_ptr)>(
        [this](auto handler, Work queued) {
          auto shared = std::make_shared<decltype(handler)>(std::move(handler));
          submit(std::move(queued), [shared](std::exception_ptr error) {
            auto ex = net::get_associated_executor(*shared);
            net::dispatch(ex, [shared, error]() mutable { std::move(*shared)(error); });
          });
        },
        net::use_awaitable, std::move(work));
  }

 private:
  struct Item {
    Work work;
    Done done;
  };
  void flush();
  void commit_alone(Item& item);

  Database& db_;
  Logger& log_;
  Options options_;
  mutable std::mutex mutex_;
  std::deque<Item> queue_;
  std::size_t inflight_ = 0;
};

}  // namespace privacyd
