#pragma once
// One line per event on stderr, `key=value` fields, for journald or a
// terminal. Callers pass identifiers only (request ids, notice ids,
// addresses): personal data never goes into a field.

#include <atomic>
#include <concepts>
#include <cstdio>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace privacyd {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };

std::optional<LogLevel> parse_log_level(std::string_view name);

struct LogField {
  LogField(std::string_view k, std::string_view v) : key(k), value(v) {}
  LogField(std::string_view k, const char* v) : key(k), value(v) {}
  LogField(std::string_view k, const std::string& v) : key(k), value(v) {}
  LogField(std::string_view k, bool v) : key(k), value(v ? "true" : "false") {}
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  LogField(std::string_view k, T v) : key(k), value(std::to_string(v)) {}

  std::string_view key;
  std::string value;
};

class Logger {
 public:
  // `journald` switches to sd-daemon `<N>` level prefixes and drops the
  // timestamp, which journald records itself.
  Logger(std::FILE* sink, LogLevel level, bool journald);

  // A logger for stderr that detects journald through $JOURNAL_STREAM.
  static Logger to_stderr(LogLevel level);

  void set_level(LogLevel level) { level_.store(level, std::memory_order_relaxed); }
  bool enabled(LogLevel level) const { return level >= level_.load(std::memory_order_relaxed); }

  void log(LogLevel level, std::string_view event, std::initializer_list<LogField> fields);
  void debug(std::string_view event, std::initializer_list<LogField> fields = {}) { log(LogLevel::debug, event, fields); }
  void info(std::string_view event, std::initializer_list<LogField> fields = {}) { log(LogLevel::info, event, fields); }
  void warn(std::string_view event, std::initializer_list<LogField> fields = {}) { log(LogLevel::warn, event, fields); }
  void error(std::string_view event, std::initializer_list<LogField> fields = {}) { log(LogLevel::error, event, fields); }

 private:
  std::FILE* sink_;
  std::atomic<LogLevel> level_;
  bool journald_;
  std::mutex mutex_;
};

// A failure that repeats at every poll while something is down (the
// database during a restart) is logged when it starts and when it ends,
// not at every poll. Thread-safe.
class OutageLog {
 public:
  explicit OutageLog(std::string_view what) : what_(what) {}
  void failed(Logger& log, const std::string& error) {
    if (!down_.exchange(true)) log.warn(what_, {{"error", error}});
  }
  void succeeded(Logger& log) {
    if (down_.exchange(false)) log.info(what_ + ": working again");
  }

 private:
  std::string what_;
  std::atomic<bool> down_{false};
};

}  // namespace privacyd
