#pragma once
// Awaiting database work from a coroutine: the work runs on the database's
// threads and the coroutine resumes on its own executor, so an I/O thread
// never blocks on SOCI.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "daemon/store/database.hpp"

namespace privacyd {

// `Work` is called as work() on a database thread (for blocking work that
// opens its own sessions, like a reload); its result (default-constructible,
// or void) is what the co_await yields. GCC 12 can destroy temporaries of a
// co_await expression twice: pass a named local (or a lambda without
// captures). This is not itself a coroutine; the work travels inside the
// initiation.
template <class WorkRef>
auto run_blocking(Database& db, WorkRef&& work_ref) {
  using Work = std::decay_t<WorkRef>;
  using Result = std::invoke_result_t<Work&>;
  Work work(std::forward<WorkRef>(work_ref));
  namespace net = boost::asio;
  if constexpr (std::is_void_v<Result>) {
    return net::async_initiate<decltype(net::use_awaitable), void(std::exception_ptr)>(
        [&db](auto handler, Work queued) {
          net::post(db.threads(), [work = std::move(queued), handler = std::move(handler)]() mutable {
            std::exception_ptr error;
            try {
              work();
            } catch (...) {
              error = std::current_exception();
            }
            auto ex = net::get_associated_executor(handler);
            net::dispatch(ex, [handler = std::move(handler), error]() mutable { std::move(handler)(error); });
          });
        },
        net::use_awaitable, std::move(work));
  } else {
    return net::async_initiate<decltype(net::use_awaitable), void(std::exception_ptr, Result)>(
        [&db](auto handler, Work queued) {
          net::post(db.threads(), [work = std::move(queued), handler = std::move(handler)]() mutable {
            std::exception_ptr error;
            Result value{};
            try {
              value = work();
            } catch (...) {
              error = std::current_exception();
            }
            auto ex = net::get_associated_executor(handler);
            net::dispatch(ex, [handler = std::move(handler), error, value = std::move(value)]() mutable {
              std::move(handler)(error, std::move(value));
            });
          });
        },
        net::use_awaitable, std::move(work));
  }
}

// `Work` is called as work(soci::session&) on a database thread with a
// leased session; otherwise as run_blocking.
template <class WorkRef>
auto run_in_db(Database& db, WorkRef&& work_ref) {
  using Work = std::decay_t<WorkRef>;
  using Result = std::invoke_result_t<Work&, soci::session&>;
  if constexpr (std::is_void_v<Result>) {
    auto with_session = [&db, work = Work(std::forward<WorkRef>(work_ref))]() mutable {
      db.with_session([&](soci::session& sql) { work(sql); });
    };
    return run_blocking(db, std::move(with_session));
  } else {
    auto with_session = [&db, work = Work(std::forward<WorkRef>(work_ref))]() mutable {
      Result value{};
      db.with_session([&](soci::session& sql) { value = work(sql); });
      return value;
    };
    return run_blocking(db, std::move(with_session));
  }
}

// What run_in_db_within answers: the work's result, or why there is none.
template <class Result>
struct Bounded {
  std::optional<Result> value;  // nullopt: failed, or not done in time
  std::string error;            // describe_failure's, or "timed out"
};

// Like run_in_db, but stops waiting after `limit`: a probe (/readyz) must
// answer even when every database thread is stuck on a dead connection.
// The work still runs to its end on its thread; its result is dropped.
// `work` is copied before the first suspension.
template <class Work>
boost::asio::awaitable<Bounded<std::invoke_result_t<Work&, soci::session&>>> run_in_db_within(Database& db,
                                                                                              const Work& work,
                                                                                              Duration limit) {
  namespace net = boost::asio;
  using Result = std::invoke_result_t<Work&, soci::session&>;
  struct State {
    explicit State(const net::any_io_executor& ex) : timer(ex, net::steady_timer::time_point::max()) {}
    net::steady_timer timer;
    Bounded<Result> out{std::nullopt, "timed out"};
  };
  auto ex = co_await net::this_coro::executor;
  auto state = std::make_shared<State>(ex);
  state->timer.expires_after(limit);
  net::post(db.threads(), [&db, state, work]() mutable {
    Bounded<Result> done;
    try {
      db.with_session([&](soci::session& sql) { done.value = work(sql); });
    } catch (const std::exception& e) {
      done.error = describe_failure(e);
    }
    net::post(state->timer.get_executor(), [state, done = std::move(done)]() mutable {
      state->out = std::move(done);
      state->timer.cancel();
    });
  });
  co_await state->timer.async_wait(net::as_tuple(net::use_awaitable));
  co_return std::move(state->out);
}

}  // namespace privacyd
