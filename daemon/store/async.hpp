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
#include <optional>
#include <type_traits>

#include "daemon/store/database.hpp"

namespace privacyd {

template <class Work>
auto run_in_db(Database& db, Work work) -> boost::asio::awaitable<std::invoke_result_t<Work&, soci::session&>> {
  using Result = std::invoke_result_t<Work&, soci::session&>;
  namespace net = boost::asio;
  if constexpr (std::is_void_v<Result>) {
    co_await net::async_initiate<decltype(net::use_awaitable), void(std::exception_ptr)>(
        [&db, work = std::move(work)](auto handler) mutable {
          net::post(db.threads(), [&db, work = std::move(work), handler = std::move(handler)]() mutable {
            std::exception_ptr error;
            try {
              db.with_session([&](soci::session& sql) { work(sql); });
            } catch (...) {
              error = std::current_exception();
            }
            auto ex = net::get_associated_executor(handler);
            net::dispatch(ex, [handler = std::move(handler), error]() mutable { handler(error); });
          });
        },
        net::use_awaitable);
  } else {
    auto result = co_await net::async_initiate<decltype(net::use_awaitable), void(std::exception_ptr, std::optional<Result>)>(
        [&db, work = std::move(work)](auto handler) mutable {
          net::post(db.threads(), [&db, work = std::move(work), handler = std::move(handler)]() mutable {
            std::exception_ptr error;
            std::optional<Result> value;
            try {
              db.with_session([&](soci::session& sql) { value.emplace(work(sql)); });
            } catch (...) {
              error = std::current_exception();
            }
            auto ex = net::get_associated_executor(handler);
            net::dispatch(ex, [handler = std::move(handler), error, value = std::move(value)]() mutable {
              handler(error, std::move(value));
            });
          });
        },
        net::use_awaitable);
    co_return std::move(*result);
  }
}

}  // namespace privacyd
