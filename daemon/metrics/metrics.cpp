#include "daemon/metrics/metrics.hpp"

#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace privacyd::metrics {

namespace {

void append_number(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, ec == std::errc() ? end : buf);
  }
}

void append_escaped(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

}  // namespace

void Histogram::observe(double v) {
  std::size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  std::lock_guard lock(mutex_);
  ++counts_[i];
  sum_ += v;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  std::lock_guard lock(mutex_);
  std::uint64_t total = 0;
  for (auto c : counts_) {
    total += c;
    s.cumulative.push_back(total);
  }
  s.sum = sum_;
  return s;
}

std::string FamilyBase::label_text(const std::vector<std::string>& values, std::string_view extra) const {
  if (labels_.empty() && extra.empty()) return {};
  std::string out = "{";
  for (std::size_t i = 0; i < labels_.size() && i < values.size(); ++i) {
    if (i != 0) out += ',';
    out += labels_[i];
    out += "=\"";
    append_escaped(out, values[i]);
    out += '"';
  }
  if (!extra.empty()) {
    if (out.size() > 1) out += ',';
    out += extra;
  }
  out += '}';
  return out;
}

void write_family_header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void write_sample(std::string& out, std::string_view name, std::string_view labels, double value) {
  out += name;
  out += labels;
  out += ' ';
  append_number(out, value);
  out += '\n';
}

template <>
void Family<Counter>::render(std::string& out) const {
  write_family_header(out, name_, "counter", help_);
  std::shared_lock lock(mutex_);
  for (const auto& [values, c] : children_) write_sample(out, name_, label_text(values), static_cast<double>(c->value()));
}

template <>
void Family<Gauge>::render(std::string& out) const {
  write_family_header(out, name_, "gauge", help_);
  std::shared_lock lock(mutex_);
  for (const auto& [values, g] : children_) write_sample(out, name_, label_text(values), g->value());
}

template <>
void Family<Histogram>::render(std::string& out) const {
  write_family_header(out, name_, "histogram", help_);
  std::shared_lock lock(mutex_);
  for (const auto& [values, h] : children_) {
    auto s = h->snapshot();
    for (std::size_t i = 0; i < s.cumulative.size(); ++i) {
      std::string le = "le=\"";
      if (i < bounds_.size()) {
        append_number(le, bounds_[i]);
      } else {
        le += "+Inf";
      }
      le += '"';
      write_sample(out, name_ + "_bucket", label_text(values, le), static_cast<double>(s.cumulative[i]));
    }
    write_sample(out, name_ + "_sum", label_text(values), s.sum);
    write_sample(out, name_ + "_count", label_text(values), static_cast<double>(s.cumulative.back()));
  }
}

Family<Counter>& Registry::counter(std::string name, std::string help, std::vector<std::string> labels) {
  auto f = std::make_unique<Family<Counter>>(std::move(name), std::move(help), std::move(labels));
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

Family<Gauge>& Registry::gauge(std::string name, std::string help, std::vector<std::string> labels) {
  auto f = std::make_unique<Family<Gauge>>(std::move(name), std::move(help), std::move(labels));
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

Family<Histogram>& Registry::histogram(std::string name, std::string help, std::vector<std::string> labels,
                                       std::vector<double> bounds) {
  auto f = std::make_unique<Family<Histogram>>(std::move(name), std::move(help), std::move(labels), std::move(bounds));
  auto& ref = *f;
  families_.push_back(std::move(f));
  return ref;
}

void Registry::add_collector(std::function<void(std::string&)> collector) {
  collectors_.push_back(std::move(collector));
}

std::string Registry::render() const {
  std::string out;
  out.reserve(8192);
  for (const auto& f : families_) f->render(out);
  for (const auto& c : collectors_) c(out);
  return out;
}

void add_process_metrics(Registry& registry) {
  const double started =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  registry.add_collector([started](std::string& out) {
    const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
    const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
    std::ifstream statm("/proc/self/statm");
    double size = 0;
    double resident = 0;
    statm >> size >> resident;
    std::ifstream stat_file("/proc/self/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    double cpu = 0;
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field, stime the 15th.
    if (auto close = stat.rfind(')'); close != std::string::npos) {
      std::istringstream rest(stat.substr(close + 2));
      std::string field;
      double utime = 0;
      double stime = 0;
      for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::strtod(field.c_str(), nullptr);
        if (i == 15) stime = std::strtod(field.c_str(), nullptr);
      }
      cpu = (utime + stime) / ticks;
    }
    std::error_code ec;
    double fds = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      ++fds;
    }
    write_family_header(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    write_sample(out, "process_resident_memory_bytes", "", resident * page);
    write_family_header(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    write_sample(out, "process_virtual_memory_bytes", "", size * page);
    write_family_header(out, "process_open_fds", "gauge", "Number of open file descriptors.");
    write_sample(out, "process_open_fds", "", fds);
    write_family_header(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.");
    write_sample(out, "process_cpu_seconds_total", "", cpu);
    write_family_header(out, "process_start_time_seconds", "gauge", "Start time of the process since the Unix epoch.");
    write_sample(out, "process_start_time_seconds", "", started);
  });
}

Metrics::Metrics(Registry& r)
    : requests_received(r.counter("privacyd_requests_received_total",
                                  "Privacy requests accepted from the Partner Center, by type.", {"type"})),
      requests_finished(r.counter("privacyd_requests_finished_total",
                                  "Requests that reached completed, failed or rejected in this instance.",
                                  {"type", "status"})),
      request_duration(r.histogram("privacyd_request_duration_seconds",
                                   "Time from receipt to completion, failure or rejection.", {"type"},
                                   {1, 10, 60, 600, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400, 60 * 86400})),
      notice_attempts(r.counter("privacyd_notice_attempts_total",
                                "Notice delivery attempts by channel and outcome (delivered, retry, dead).",
                                {"channel", "outcome"})),
      webhook_rejections(r.counter("privacyd_webhook_rejections_total",
                                   "Partner Center webhooks answered with an error, by reason.", {"reason"})),
      http_requests(r.counter("privacyd_http_requests_total", "HTTP requests served, by listener, route and status.",
                              {"listener", "route", "status"})),
      http_duration(r.histogram("privacyd_http_request_duration_seconds",
                                "Time to handle an HTTP request, by listener and route.", {"listener", "route"},
                                {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5})),
      admin_auth_failures(r.counter("privacyd_admin_auth_failures_total",
                                    "Admin API calls refused: no token, an unknown token, or the wrong role.",
                                    {"reason"})) {}

}  // namespace privacyd::metrics
