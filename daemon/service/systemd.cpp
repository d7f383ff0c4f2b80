#include "daemon/service/systemd.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <memory>
#include <string>
#include <systemd/sd-daemon.h>

namespace privacyd {

void SystemdNotifier::send(const std::string& message) {
  // unset_environment=0: the watchdog keeps needing NOTIFY_SOCKET.
  int rc = sd_notify(0, message.c_str());
  if (rc < 0) log_.warn("sd_notify failed", {{"errno", -rc}});
}

void SystemdNotifier::ready(std::string_view status) { send("READY=1\nSTATUS=" + std::string(status)); }

void SystemdNotifier::status(std::string_view status) { send("STATUS=" + std::string(status)); }

void SystemdNotifier::reloading() {
  using namespace std::chrono;
  auto usec = duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=reloading");
}

void SystemdNotifier::stopping(std::string_view status) { send("STOPPING=1\nSTATUS=" + std::string(status)); }

std::optional<std::chrono::microseconds> SystemdNotifier::watchdog_interval() const {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::nullopt;
  return std::chrono::microseconds(usec / 2);
}

namespace {
// Re-arms itself after every ping; the pending wait owns it, so it lives
// exactly as long as the io_context runs.
struct WatchdogPinger : std::enable_shared_from_this<WatchdogPinger> {
  WatchdogPinger(boost::asio::io_context& ioc, std::chrono::microseconds every, std::function<void()> ping)
      : timer(ioc), interval(every), send(std::move(ping)) {}
  void arm() {
    send();
    timer.expires_after(interval);
    timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->arm();
    });
  }
  boost::asio::steady_timer timer;
  std::chrono::microseconds interval;
  std::function<void()> send;
};
}  // namespace

void SystemdNotifier::start_watchdog(boost::asio::io_context& ioc) {
  auto interval = watchdog_interval();
  if (!interval) return;
  log_.info("watchdog enabled",
            {{"interval_ms", std::chrono::duration_cast<std::chrono::milliseconds>(*interval).count()}});
  std::make_shared<WatchdogPinger>(ioc, *interval, [this] { send("WATCHDOG=1"); })->arm();
}

}  // namespace privacyd
