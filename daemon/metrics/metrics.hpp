#pragma once
// Prometheus text exposition (format 0.0.4) for privacyd's counters, gauges
// and histograms. Debian ships no C++ Prometheus client and the format is
// small: a family has fixed label names, its children are keyed by label
// values, and everything is rendered on scrape. Label values are route
// patterns, request types, statuses and reasons — bounded sets, never ids
// or personal data.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

namespace privacyd::metrics {

class Counter {
 public:
  void inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

class Gauge {
 public:
  void set(double v) { value_.store(v, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Histogram {
 public:
  explicit Histogram(const std::vector<double>& bounds) : bounds_(bounds), counts_(bounds.size() + 1, 0) {}
  void observe(double v);
  struct Snapshot {
    std::vector<std::uint64_t> cumulative;  // one per bound, then +Inf
    double sum = 0;
  };
  Snapshot snapshot() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double>& bounds_;
  mutable std::mutex mutex_;
  std::vector<std::uint64_t> counts_;  // per bucket, not cumulative
  double sum_ = 0;
};

class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, std::vector<std::string> labels)
      : name_(std::move(name)), help_(std::move(help)), labels_(std::move(labels)) {}
  virtual ~FamilyBase() = default;
  virtual void render(std::string& out) const = 0;
  const std::string& name() const { return name_; }

 protected:
  // `{a="x",b="y"}` (with `extra` appended, for histogram buckets), or "".
  std::string label_text(const std::vector<std::string>& values, std::string_view extra = {}) const;
  std::string name_;
  std::string help_;
  std::vector<std::string> labels_;
};

// A metric with labels. with() returns a child that lives as long as the
// family, so hot paths may keep the reference.
template <class T>
class Family final : public FamilyBase {
 public:
  Family(std::string name, std::string help, std::vector<std::string> labels, std::vector<double> bounds = {})
      : FamilyBase(std::move(name), std::move(help), std::move(labels)), bounds_(std::move(bounds)) {}

  // On the hot path (every HTTP request) a child that exists is found
  // under a shared lock, without building its key.
  T& with(std::initializer_list<std::string_view> values) {
    {
      std::shared_lock lock(mutex_);
      auto it = children_.find(values);
      if (it != children_.end()) return *it->second;
    }
    std::vector<std::string> key(values.begin(), values.end());
    std::unique_lock lock(mutex_);
    auto it = children_.find(key);
    if (it == children_.end()) it = children_.emplace(std::move(key), make()).first;
    return *it->second;
  }
  void render(std::string& out) const override;

 private:
  // Orders label values, stored or looked up as views.
  struct ValuesLess {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const {
      return std::lexicographical_compare(a.begin(), a.end(), b.begin(), b.end(),
                                          [](std::string_view x, std::string_view y) { return x < y; });
    }
  };
  std::unique_ptr<T> make() const {
    if constexpr (std::is_same_v<T, Histogram>) {
      return std::make_unique<T>(bounds_);
    } else {
      return std::make_unique<T>();
    }
  }
  std::vector<double> bounds_;
  mutable std::shared_mutex mutex_;
  std::map<std::vector<std::string>, std::unique_ptr<T>, ValuesLess> children_;
};

class Registry {
 public:
  Family<Counter>& counter(std::string name, std::string help, std::vector<std::string> labels = {});
  Family<Gauge>& gauge(std::string name, std::string help, std::vector<std::string> labels = {});
  Family<Histogram>& histogram(std::string name, std::string help, std::vector<std::string> labels,
                               std::vector<double> bounds);
  // Writes samples of its own at every scrape (values read from elsewhere,
  // like the process's memory).
  void add_collector(std::function<void(std::string&)> collector);

  std::string render() const;

 private:
  std::vector<std::unique_ptr<FamilyBase>> families_;
  std::vector<std::function<void(std::string&)>> collectors_;
};

// One sample line of a family rendered by a collector, with HELP and TYPE.
void write_family_header(std::string& out, std::string_view name, std::string_view type, std::string_view help);
void write_sample(std::string& out, std::string_view name, std::string_view labels, double value);

// process_resident_memory_bytes, process_open_fds, process_start_time_seconds
// and process_cpu_seconds_total, read from /proc at each scrape.
void add_process_metrics(Registry& registry);

// privacyd's instruments. Components take a pointer (null: not measured),
// so tests build them without a registry.
struct Metrics {
  explicit Metrics(Registry& registry);

  Family<Counter>& requests_received;   // type
  Family<Counter>& requests_finished;   // type, status (completed | failed | rejected)
  Family<Histogram>& request_duration;  // type: received to finished, seconds
  Family<Counter>& notice_attempts;     // channel, outcome (delivered | retry | dead)
  Family<Counter>& webhook_rejections;  // reason
  Family<Counter>& http_requests;       // listener, route, status
  Family<Histogram>& http_duration;     // listener, route
  Family<Counter>& admin_auth_failures; // reason (missing | invalid | forbidden)
};

}  // namespace privacyd::metrics
