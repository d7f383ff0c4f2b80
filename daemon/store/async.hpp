#pragma once
// Awaiting database work from a coroutine: the work runs on the database's
// threads and the coroutine resumes on its own executor, so an I/O thread
// never blocks on SOCI.

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <exception>
#include <type_traits>

#include "daemon/store/database.hpp"

namespace privacyd {

// `Work` is called as work(soci::session&) on a database thread; its
// result (default-constructible, or void) is what the co_await yields.
// GCC 12 can destroy temporaries of a co_await expression twice: pass a
// named local (or a lambda without captures). This is not itself a
// coroutine; the work travels inside the initiation.
template <class WorkRef>
auto run_in_db(Database& db, WorkRef&& work_ref) {
  using Work = std::decay_t<WorkRef>;
  using Result = std::invoke_result_t<Work&, soci::session&>;
  Work work(std::forward<WorkRef>(work_ref));
  namespace net = boost::asio;
  if constexpr (std::is_void_v<Result>) {
    return net::async_initiate<decltype(net::use_awaitable), void(std::exception_ptr)>(
        [&db](auto handler, Work queued) {
          net::post(db.threads(), [&db, work = std::move(queued), handler = std::move(handler)]() mutable {
            std::exception_ptr error;
            try {
              db.with_session([&](soci::session& sql) { work(sql); });
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
          net::post(db.threads(), [&db, work = std::move(queued), handler = std::move(handler)]() mutable {
            std::exception_ptr error;
            Result value{};
            try {
              db.with_session([&](soci::session& sql) { value = work(sql); });
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

}  // namespace privacyd
