#pragma once
// The systemd protocol (sd_notify(3)): READY=1 once serving, STATUS= lines,
// RELOADING=1/READY=1 around a reload, STOPPING=1, and WATCHDOG=1 pings
// from the I/O loop itself, so a stuck loop stops the pings.

#include <chrono>
#include <optional>
#include <string_view>

#include "daemon/base/log.hpp"

namespace boost::asio {
class io_context;
}

namespace privacyd {

class SystemdNotifier {
 public:
  explicit SystemdNotifier(Logger& log) : log_(log) {}

  void ready(std::string_view status);
  void status(std::string_view status);
  void reloading();
  void stopping(std::string_view status);

  // The ping interval (half of WatchdogSec) when systemd asked for pings.
  std::optional<std::chrono::microseconds> watchdog_interval() const;
  // Schedules WATCHDOG=1 pings on `ioc` for as long as it runs.
  void start_watchdog(boost::asio::io_context& ioc);

 private:
  void send(const std::string& message);
  Logger& log_;
};

}  // namespace privacyd
