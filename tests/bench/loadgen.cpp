// A load generator for the webhook intake: many keep-alive connections,
// each sending correctly signed webhooks with unique ids and subjects as
// fast as answers come back. Prints one JSON line with the rate of
// accepted (202) webhooks and latency percentiles.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <iostream>
#include <mutex>
#include <thread>
#include <vector>

#include "daemon/crypto/webhook_signature.hpp"

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  std::string port;
  std::string path = "/v1/webhooks/partner-center";
  std::string secret_file;
  int connections = 32;
  double duration = 10;
  double warmup = 2;
  int threads = 1;
  // What to send: request.access to a fresh subject each time (the
  // default), or TYPE to subjects PREFIX-0 … PREFIX-(SUBJECTS-1) in turn.
  std::string type = "request.access";
  std::string partner;
  std::string subject_prefix;
  long subjects = 0;
  long total = 0;  // stop after this many webhooks in all (0: run for --duration)
};

struct Shared {
  Clock::time_point measure_from;
  Clock::time_point stop_at;
  std::mutex mutex;
  std::vector<double> latencies_ms;  // measured window only
  std::atomic<long> accepted{0};
  std::atomic<long> other{0};
  std::atomic<long> errors{0};
  std::atomic<long> issued{0};
};

// The connection index is an int, the options and state outlive the loop:
// coroutine parameters stay references or trivial (see GroupCommit::run).
net::awaitable<void> client(int index, const Options& o, const privacyd::crypto::Bytes& key, Shared& shared) {
  auto ex = co_await net::this_coro::executor;
  tcp::resolver resolver(ex);
  beast::tcp_stream stream(ex);
  auto endpoints = co_await resolver.async_resolve(o.host, o.port, net::use_awaitable);
  co_await stream.async_connect(endpoints, net::use_awaitable);
  beast::flat_buffer buffer;
  std::vector<double> local;
  for (long i = 0; Clock::now() < shared.stop_at; ++i) {
    long n = shared.issued++;
    if (o.total > 0 && n >= o.total) break;
    std::string id = "bench_" + std::to_string(index) + "_" + std::to_string(i) + "_" +
                     privacyd::crypto::hex(privacyd::crypto::random_bytes(4));
    std::string subject = o.subjects > 0 ? o.subject_prefix + "-" + std::to_string(n % o.subjects) : id;
    std::string body = R"({"type":")" + o.type + R"(","occurred_at":"2026-11-26T05:00:00Z",)" +
                       (o.partner.empty() ? std::string() : R"("partner":{"id":")" + o.partner + R"("},)") +
                       (o.type == "association.created" ? R"("statement_version":"1.0",)" : "") +
                       R"("subject":{"huawei_id":")" + subject + R"(","email":")" + id +
                       R"(@example.com","locale":"en"}})";
    auto ts = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                  .count();
    bhttp::request<bhttp::string_body> req{bhttp::verb::post, o.path, 11};
    req.set(bhttp::field::host, o.host);
    req.set(bhttp::field::content_type, "application/json");
    req.set("webhook-id", id);
    req.set("webhook-timestamp", std::to_string(ts));
    req.set("webhook-signature", privacyd::crypto::webhook_signature(key, id, ts, body));
    req.body() = std::move(body);
    req.keep_alive(true);
    req.prepare_payload();
    auto started = Clock::now();
    stream.expires_after(std::chrono::seconds(30));
    auto [wec, wn] = co_await bhttp::async_write(stream, req, net::as_tuple(net::use_awaitable));
    bhttp::response<bhttp::string_body> res;
    auto [rec, rn] = co_await bhttp::async_read(stream, buffer, res, net::as_tuple(net::use_awaitable));
    (void)wn;
    (void)rn;
    if (wec || rec) {
      ++shared.errors;
      break;
    }
    auto finished = Clock::now();
    if (started >= shared.measure_from && finished <= shared.stop_at) {
      if (res.result_int() == 202) {
        ++shared.accepted;
        local.push_back(std::chrono::duration<double, std::milli>(finished - started).count());
      } else {
        ++shared.other;
      }
    }
  }
  std::lock_guard lock(shared.mutex);
  shared.latencies_ms.insert(shared.latencies_ms.end(), local.begin(), local.end());
}

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"privacyd intake load generator"};
  app.add_option("--host", o.host);
  app.add_option("--port", o.port)->required();
  app.add_option("--secret-file", o.secret_file)->required();
  app.add_option("--connections", o.connections);
  app.add_option("--duration", o.duration, "Measured seconds");
  app.add_option("--warmup", o.warmup, "Unmeasured seconds first");
  app.add_option("--threads", o.threads);
  app.add_option("--type", o.type, "Event type to send");
  app.add_option("--partner", o.partner, "partner.id to send");
  app.add_option("--subject-prefix", o.subject_prefix, "Subjects are PREFIX-0, PREFIX-1, …");
  app.add_option("--subjects", o.subjects, "How many subjects to cycle through (0: a new one each time)");
  app.add_option("--total", o.total, "Stop after this many webhooks (0: after --duration)");
  CLI11_PARSE(app, argc, argv);
  if (o.total > 0) {
    o.warmup = 0;
    o.duration = 24 * 3600;  // until the total is sent
  }

  auto key = privacyd::crypto::load_webhook_secrets(o.secret_file).front();
  Shared shared;
  auto start = Clock::now();
  shared.measure_from = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.warmup));
  shared.stop_at = shared.measure_from + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration));

  net::io_context ioc(o.threads);
  for (int i = 0; i < o.connections; ++i) {
    net::co_spawn(ioc, client(i, o, key, shared), [&shared](std::exception_ptr e) {
      if (e) ++shared.errors;
    });
  }
  std::vector<std::thread> pool;
  for (int i = 1; i < o.threads; ++i) pool.emplace_back([&] { ioc.run(); });
  ioc.run();
  for (auto& t : pool) t.join();
  if (o.total > 0) o.duration = std::chrono::duration<double>(Clock::now() - start).count();

  auto& l = shared.latencies_ms;
  std::sort(l.begin(), l.end());
  auto pct = [&](double p) { return l.empty() ? 0.0 : l[std::min(l.size() - 1, static_cast<std::size_t>(p * static_cast<double>(l.size())))]; };
  std::cout << "{\"accepted\":" << shared.accepted << ",\"other\":" << shared.other << ",\"errors\":" << shared.errors
            << ",\"seconds\":" << o.duration << ",\"rate\":" << static_cast<double>(shared.accepted) / o.duration
            << ",\"p50_ms\":" << pct(0.50) << ",\"p99_ms\":" << pct(0.99) << "}\n";
  return shared.errors > 0 ? 1 : 0;
}
