#include "daemon/notify/notifier.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <atomic>
#include <charconv>
#include <deque>
#include <random>
#include <soci/soci.h>

#include "daemon/audit/audit.hpp"
#include "daemon/crypto/webhook_signature.hpp"
#include "daemon/http/client.hpp"
#include "daemon/notify/mail.hpp"
#include "daemon/crypto/primitives.hpp"
#include "daemon/store/runs.hpp"
#include "daemon/store/async.hpp"
#include "daemon/store/prepared.hpp"
#include "daemon/store/jobs.hpp"

namespace privacyd::notify {

namespace net = boost::asio;
namespace json = boost::json;
namespace fs = std::filesystem;

std::optional<Duration> parse_retry_after(std::string_view value, std::chrono::system_clock::time_point now) {
  long long seconds = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec == std::errc{} && end == value.data() + value.size() && seconds >= 0 && seconds < 7 * 86400) {
    return std::chrono::seconds(seconds);
  }
  std::tm tm{};
  std::string text(value);
  if (strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm) != nullptr) {
    auto at = std::chrono::system_clock::from_time_t(timegm(&tm));
    if (at <= now) return Duration(0);
    auto delay = std::chrono::duration_cast<Duration>(at - now);
    if (delay < std::chrono::hours(24 * 7)) return delay;
  }
  return std::nullopt;
}

namespace {

struct Claimed {
  std::string id;
  std::string request_id;
  std::string channel;
  std::string recipient;
  std::string payload_enc;
  int attempts = 0;
  std::string token;  // the claim's: the outcome is recorded only under it
  int step_idx = -1;  // the step that awaits it; -1: none (callbacks, reminders)
  long long lease_until = 0;  // handed over: when its lease lapses
  bool handed = false;        // handed over by the engine (Notifier::take)
};

// An attempt's outcome as the outbox records it, fenced on the claim it was
// made under and the attempt it claimed. Self-contained: the run that
// awaits a delivered notice may commit it (Notifier::on_delivered).
struct Settlement {
  std::string id;
  std::string request_id;
  std::string channel;
  std::string token;
  std::string status;
  std::string error;
  int step_idx = -1;
  int before = 0;    // the attempts the claim found
  int attempts = 0;  // after this one
  long long at = 0;
  long long next = 0;
  bool delivered = false;

  bool operator()(soci::session& sql) const {
    // The request's row lock first: the step awaiting this notice decides
    // under the same lock whether it waits (runs::Transition::await_notices).
    // Nothing awaits a callback or a reminder: no lock (fewer rows locked
    // in a shared transaction, fewer deadlocks between batches).
    const bool waiting = step_idx >= 0 && runs::lock_request(sql, request_id);
    soci::indicator error_ind = error.empty() ? soci::i_null : soci::i_ok;
    soci::indicator delivered_ind = delivered ? soci::i_ok : soci::i_null;
    // Fenced: only this claim, on the attempt it claimed, records an
    // outcome; a late one (after the lease lapsed and another attempt
    // was claimed) cannot overwrite what that attempt found.
    long long recorded = 0;
    {
      Prepared update(sql, "UPDATE notices SET status = :status, attempts = :attempts, next_attempt_at = :next,"
                           " lease_until = NULL, claim_token = NULL, last_error = :error, delivered_at = :delivered"
                           " WHERE id = :id AND claim_token = :token AND attempts = :before AND status = 'pending'");
      update.bind(soci::use(status, "status"), soci::use(attempts, "attempts"), soci::use(next, "next"),
                  soci::use(error, error_ind, "error"), soci::use(at, delivered_ind, "delivered"),
                  soci::use(id, "id"), soci::use(token, "token"), soci::use(before, "before"));
      update.execute();
      recorded = update.affected_rows();
    }
    if (recorded != 1) return false;
    // The step that queued it looks again.
    if (status != "pending" && waiting) runs::wake(sql, request_id, at);
    audit::append(sql, at, request_id, "notice." + (status == "pending" ? std::string("retrying") : status),
                  json::serialize(json::object{{"notice_id", id}, {"channel", channel}, {"attempt", attempts},
                                               {"error", error}}));
    return true;
  }
};

// Subject mails go out on this many threads (libcurl blocks).
constexpr std::size_t kMailThreads = 4;
// How long a notice waits when the relay refused privacyd's credentials.
constexpr Duration kMisconfiguredRelayWait = std::chrono::minutes(5);
// Notices claimed per round.
constexpr int kClaimBatch = 16;
// Handed-over notices attempted at once, and waiting or out at most.
constexpr std::size_t kHandedInFlight = 64;
constexpr std::size_t kHandedMax = 1024;

using Outcome = Delivery;

// The first line of a partner notice's text is its title: the mail's subject.
std::string title_of(std::string_view text) {
  auto eol = text.find('\n');
  std::string line(text.substr(0, eol));
  if (line.size() > 200) line = bounded_text(line, 200);
  return line.empty() ? std::string("Notice from privacyd") : line;
}

}  // namespace

struct Notifier::Impl : std::enable_shared_from_this<Notifier::Impl> {
  Impl(net::io_context& ioc, Database& d, const policy::PolicyStore& p, const crypto::KeyRing& k, const Clock& c,
       Logger& l, const Config& cfg, Duration poll_every)
      : job(std::make_shared<jobs::Loop>(ioc, l, poll_every)),
        strand(job->strand()),
        db(d),
        policies(p),
        keys(k),
        clock(c),
        log(l),
        config(cfg),
        mail_thread(kMailThreads),
        rng(std::random_device{}()) {
    job->add("notifier round", [this] { return round(); });
  }

  std::shared_ptr<jobs::Loop> job;
  jobs::Loop::Strand& strand;
  Database& db;
  const policy::PolicyStore& policies;
  const crypto::KeyRing& keys;
  const Clock& clock;
  Logger& log;
  const Config& config;
  net::thread_pool mail_thread;
  std::mt19937_64 rng;
  std::function<void(const std::string& request_id)> settled;
  std::function<bool(const std::string&, const std::string&, std::function<bool(soci::session&)>)> hand_back;
  metrics::Metrics* metrics = nullptr;
  GroupCommit* commits = nullptr;
  // The engine's hand-over (touched on the strand; `handed_count` also
  // read by taking() from elsewhere).
  std::deque<std::shared_ptr<Claimed>> handed;
  std::size_t handed_in_flight = 0;
  std::atomic<std::size_t> handed_count{0};  // waiting + in flight
  std::atomic<bool> stopping{false};

  long long attempt_ms() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(config.notices.timeout).count();
  }

  // Starts handed notices while fewer than kHandedInFlight are out. One
  // whose lease would lapse before an attempt could end is left to the
  // rounds (of any instance), which find it once the lease has lapsed.
  void pump(const std::shared_ptr<Impl>& self) {
    std::vector<std::shared_ptr<Claimed>> dropped;
    while (!stopping && handed_in_flight < kHandedInFlight && !handed.empty()) {
      auto n = std::move(handed.front());
      handed.pop_front();
      // An HTTP attempt may take two timeouts (resolving, then the rest),
      // and its outcome waits for a group commit after it.
      if (to_unix_ms(clock.now()) + 2 * attempt_ms() + 5000 > n->lease_until) {
        --handed_count;
        dropped.push_back(std::move(n));
        continue;
      }
      ++handed_in_flight;
      net::co_spawn(strand, attempt(n.get()), net::bind_executor(strand, [self, n](std::exception_ptr e) {
        if (e) self->log_unrecorded(e);
        --self->handed_in_flight;
        --self->handed_count;
        self->pump(self);
      }));
    }
    if (stopping) {
      handed_count -= handed.size();
      dropped.insert(dropped.end(), std::make_move_iterator(handed.begin()), std::make_move_iterator(handed.end()));
      handed.clear();
    }
    release_handed(std::move(dropped));
  }

  void log_unrecorded(std::exception_ptr e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& failure) {
      // The lease lapses and the notice is attempted again.
      log.warn("notice attempt not recorded", {{"error", describe_failure(failure)}});
    }
  }

  // A Standard Webhooks POST: webhook-id = the notice id on every attempt.
  net::awaitable<Outcome> post_signed(const std::string& url, const std::filesystem::path& secret_file,
                                      const std::string& id, const std::string& body, const std::string& who) {
    std::vector<crypto::Bytes> secrets;
    try {
      secrets = crypto::load_webhook_secrets(secret_file);
    } catch (const std::exception& e) {
      co_return Outcome{false, true, e.what(), {}};
    }
    const auto ts = to_unix_ms(clock.now()) / 1000;
    http::ClientRequest request;
    request.url = url;
    request.headers = crypto::signed_webhook_headers(secrets.front(), id, ts, body);
    request.body = body;
    request.timeout = config.notices.timeout;
    request.max_response_body = 64 * 1024;
    http::ClientResponse response;
    try {
      response = co_await http::fetch(request);
    } catch (const std::exception& e) {
      co_return Outcome{false, true, e.what(), {}};
    }
    if (response.status >= 200 && response.status < 300) co_return Outcome{true, false, {}, {}};
    Outcome o{false, http::retryable_status(response.status), who + " answered " + std::to_string(response.status), {}};
    if (auto ra = response.header("Retry-After"); !ra.empty()) o.retry_after = parse_retry_after(ra, clock.now());
    co_return o;
  }

  // A mail: to a file in development, else through SMTP on a mail thread.
  // `start_by` (Unix ms, 0: any time): a mail that has not started by
  // then, queued behind others for a mail thread, is not sent.
  net::awaitable<Outcome> send(const Mail& mail, long long start_by) {
    if (!config.notices.file_dir.empty()) co_return write_eml(config.notices.file_dir, mail);
    if (config.notices.smtp.empty()) co_return Outcome{false, false, "no notices.smtp or notices.file_dir configured", {}};
    SmtpSettings smtp{config.notices.smtp, config.notices.smtp_user, {}, config.notices.smtp_ca_file,
                      config.notices.timeout};
    if (!config.notices.smtp_password_file.empty()) {
      try {
        smtp.password = read_secret_line(config.notices.smtp_password_file);
      } catch (const std::exception& e) {
        co_return Outcome{false, true, std::string("smtp password: ") + e.what(), {}};
      }
    }
    auto ex = co_await net::this_coro::executor;
    // Only named locals and a pointer-capturing initiation go into the
    // co_await (GCC 12 destroys temporaries of a co_await expression twice).
    auto initiate = [this, start_by](auto handler, const SmtpSettings& settings, const Mail& m,
                                     net::any_io_executor back) {
      net::post(mail_thread, [this, start_by, settings, m, back, handler = std::move(handler)]() mutable {
        Outcome o;
        if (start_by != 0 && to_unix_ms(clock.now()) > start_by) {
          o.not_sent = true;
        } else {
          o = send_smtp(settings, m);
        }
        net::post(back, [handler = std::move(handler), o = std::move(o)]() mutable { std::move(handler)(std::move(o)); });
      });
    };
    Outcome sent = co_await net::async_initiate<decltype(net::use_awaitable), void(Outcome)>(
        initiate, net::use_awaitable, smtp, mail, ex);
    co_return sent;
  }

  net::awaitable<Outcome> deliver(const Claimed& n) {
    auto plain = keys.open(n.payload_enc, "notices.payload");
    if (!plain) co_return Outcome{false, false, "the notice cannot be decrypted with the configured keys", {}};
    json::value payload = json::parse(*plain);
    if (n.channel == "partner_center") {
      if (config.partner_center.callback_url.empty()) {
        co_return Outcome{false, false, "partner_center.callback_url is no longer configured", {}};
      }
      Outcome o = co_await post_signed(config.partner_center.callback_url, config.partner_center.secret_file, n.id,
                                       *plain, "the Partner Center");
      co_return o;
    }
    if (n.channel == "partner") {
      // The snapshot is held across the awaits below: a reload must not
      // free the partner this attempt reads.
      const auto snapshot = policies.current();
      const auto* partner = snapshot->partner(n.recipient);
      if (partner == nullptr) co_return Outcome{false, false, "the partner is no longer in the policies", {}};
      if (!partner->notice_url.empty()) {
        const std::string url = partner->notice_url;
        const std::filesystem::path secret_file = partner->notice_secret_file;
        Outcome o = co_await post_signed(url, secret_file, n.id, *plain, "the partner");
        co_return o;
      }
      if (partner->notice_email.empty()) co_return Outcome{false, false, "the partner has no notice channel", {}};
      // By email: the text in the partner's locale, the JSON body attached.
      const auto* text = payload.as_object().if_contains("text");
      Mail mail;
      mail.id = n.id;
      mail.to = partner->notice_email;
      mail.from = config.notices.from;
      mail.body = text != nullptr && text->is_string() ? std::string(text->get_string()) : std::string();
      mail.subject = title_of(mail.body);
      mail.locale = partner->notice_locale;
      mail.attachment_json = *plain;
      Outcome o = co_await send(mail, start_by(n));
      co_return o;
    }
    // The subject's mail, rendered when the step ran.
    const auto& m = payload.as_object();
    Mail mail{n.id,
              std::string(m.at("to").as_string()),
              std::string(m.at("from").as_string()),
              std::string(m.at("subject").as_string()),
              std::string(m.at("body").as_string()),
              std::string(m.at("locale").as_string()),
              std::nullopt};
    Outcome o = co_await send(mail, start_by(n));
    co_return o;
  }

  // When a handed-over notice's attempt must start at the latest for its
  // outcome to be recorded before the lease lapses (0: a round's claim,
  // whose lease is sized for its whole batch).
  long long start_by(const Claimed& n) const { return n.handed ? n.lease_until - attempt_ms() - 5000 : 0; }

  // Gives handed-over notices that will not be attempted back to the
  // rounds at once, rather than after their leases lapse.
  void release_handed(std::vector<std::shared_ptr<Claimed>> dropped) {
    if (dropped.empty()) return;
    net::post(db.threads(), [self = shared_from_this(), dropped = std::move(dropped)] {
      try {
        self->db.with_session([&](soci::session& sql) {
          soci::transaction tr(sql);
          for (const auto& n : dropped) {
            sql << "UPDATE notices SET lease_until = NULL, claim_token = NULL WHERE id = :id AND claim_token = :token",
                soci::use(n->id, "id"), soci::use(n->token, "token");
          }
          tr.commit();
        });
        self->job->wake();  // the rounds take them up now
      } catch (const std::exception& e) {
        self->log.warn("handed-over notices not given back; their leases lapse", {{"error", describe_failure(e)}});
      }
      // A step waiting for them in memory need not wait on.
      for (const auto& n : dropped) {
        if (n->step_idx >= 0 && self->settled) self->settled(n->request_id);
      }
    });
  }

  // One delivery attempt of a claimed notice and its recorded outcome.
  // `n` outlives the call (it is in round()'s frame until every attempt
  // has finished).
  net::awaitable<void> attempt(const Claimed* claimed) {
    const Claimed& n = *claimed;
    Outcome o = co_await deliver(n);
    if (o.not_sent) {
      release_handed({std::make_shared<Claimed>(n)});
      co_return;
    }
    const long long at = to_unix_ms(clock.now());
    // A relay that refuses privacyd's own credentials says nothing about
    // this notice: the attempt is not spent (as with a database outage),
    // and the notice waits long enough not to hammer the relay's login.
    const int attempts = o.relay_misconfigured ? n.attempts : n.attempts + 1;
    std::string status = "pending";
    long long next = at;
    const auto& schedule = config.notices.retry_schedule;
    if (o.delivered) {
      status = "delivered";
    } else if (o.relay_misconfigured) {
      next = at + std::chrono::duration_cast<std::chrono::milliseconds>(kMisconfiguredRelayWait).count();
    } else if (!o.retryable || static_cast<std::size_t>(attempts) >= schedule.size()) {
      status = "dead";
    } else {
      // Jitter of ±10% keeps many notices from retrying in step.
      double factor = 0.9 + 0.2 * std::uniform_real_distribution<double>(0, 1)(rng);
      auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(schedule[static_cast<std::size_t>(attempts)]);
      long long wait = static_cast<long long>(static_cast<double>(delay.count()) * factor);
      if (o.retry_after) wait = std::max<long long>(wait, std::chrono::duration_cast<std::chrono::milliseconds>(*o.retry_after).count());
      next = at + wait;
    }
    o.error = runs::bounded_error(o.error);
    const Settlement record{n.id, n.request_id, n.channel, n.token, status, o.error, n.step_idx, n.attempts,
                            attempts, at, next, o.delivered};
    // Delivered, and awaited in memory by the run that handed it over: that
    // run commits it, with what its step does next (one transaction, not two).
    if (n.handed && o.delivered && n.step_idx >= 0 && hand_back && hand_back(n.request_id, n.id, record)) {
      log.info("notice attempt", {{"notice_id", n.id}, {"channel", n.channel}, {"attempt", attempts},
                                  {"status", status}, {"handed_back", true}});
      if (metrics != nullptr) metrics->notice_attempts.with({n.channel, status}).inc();
      co_return;
    }
    bool recorded = false;
    if (commits != nullptr) {
      // A lost fence writes nothing (the UPDATE is the first write), so
      // this shares a transaction safely; it may run again alone.
      GroupCommit::Work shared = [&record, &recorded](soci::session& sql) { recorded = record(sql); };
      co_await commits->run(std::move(shared));
    } else {
      auto alone = [&record](soci::session& sql) {
        soci::transaction tr(sql);
        const bool done = record(sql);
        if (done) tr.commit();
        return done;
      };
      recorded = co_await run_in_db(db, alone);
    }
    if (!recorded) {
      log.warn("notice attempt outcome dropped: its claim was lost", {{"notice_id", n.id}, {"attempt", attempts}});
      co_return;
    }
    log.info("notice attempt", {{"notice_id", n.id}, {"channel", n.channel}, {"attempt", attempts},
                                {"status", status}, {"error", o.error}});
    if (metrics != nullptr) {
      metrics->notice_attempts.with({n.channel, status == "pending" ? "retry" : status}).inc();
    }
    // A handed notice's step may be waiting for it in memory: a retry
    // ahead is not worth waiting for either.
    if ((status != "pending" || n.handed) && n.step_idx >= 0 && settled) settled(n.request_id);
  }

  // Whether it claimed a full batch (more may be due).
  net::awaitable<bool> round() {
    const long long now = to_unix_ms(clock.now());
    // Long enough for one attempt to finish; a crash mid-attempt frees the
    // notice soon after, and it is sent again with the same id.
    // Subject mails of one round queue for kMailThreads threads, so the last
    // may start after several others' timeouts.
    const long long attempt_ms = std::chrono::duration_cast<std::chrono::milliseconds>(config.notices.timeout).count();
    const long long lease = now + (2 + kClaimBatch / static_cast<long long>(kMailThreads)) * attempt_ms + 1000;
    const std::string token = crypto::hex(crypto::random_bytes(12));
    auto claim = [this, now, lease, token](soci::session& sql) {
      std::vector<Claimed> due;
      soci::transaction tr(sql);
      jobs::lease_due(sql,
                      {.table = "notices",
                       .key = "id",
                       .due = "status = 'pending' AND next_attempt_at <= :now",
                       .order_by = "next_attempt_at",
                       .columns = "id, request_id, channel, recipient, payload_enc, attempts, step_idx",
                       .limit = kClaimBatch},
                      now, lease, token, [&](const soci::row& r) {
                        due.push_back({r.get<std::string>(0), r.get<std::string>(1), r.get<std::string>(2),
                                       r.get<std::string>(3), r.get<std::string>(4), r.get<int>(5), token,
                                       r.get<int>(6)});
                      });
      tr.commit();
      for (const auto& d : due) keys.warm(d.payload_enc);  // key-store I/O here (after the commit), not on the event loop
      return due;
    };
    std::vector<Claimed> due = co_await run_in_db(db, claim);
    if (due.empty()) co_return false;
    // Every claimed notice is attempted at once: one slow partner does not
    // hold up the others, and none waits past its lease behind the rest.
    std::size_t remaining = due.size();
    net::steady_timer all_done(strand, net::steady_timer::time_point::max());
    for (const auto& n : due) {
      net::co_spawn(strand, attempt(&n), net::bind_executor(strand, [this, &remaining, &all_done](std::exception_ptr e) {
        if (e) log_unrecorded(e);
        if (--remaining == 0) all_done.cancel();
      }));
    }
    co_await all_done.async_wait(net::as_tuple(net::use_awaitable));
    co_return due.size() >= static_cast<std::size_t>(kClaimBatch);
  }
};

Notifier::Notifier(net::io_context& ioc, Database& db, const policy::PolicyStore& policies, const crypto::KeyRing& keys,
                   const Clock& clock, Logger& log, const Config& config, Duration poll, metrics::Metrics* metrics)
    : impl_(std::make_shared<Impl>(ioc, db, policies, keys, clock, log, config, poll)) {
  impl_->metrics = metrics;
}

Notifier::~Notifier() { impl_->mail_thread.join(); }

void Notifier::on_settled(std::function<void(const std::string& request_id)> callback) {
  impl_->settled = std::move(callback);
}

void Notifier::on_delivered(
    std::function<bool(const std::string&, const std::string&, std::function<bool(soci::session&)>)> hand_back) {
  impl_->hand_back = std::move(hand_back);
}

void Notifier::use_group_commit(GroupCommit* commits) { impl_->commits = commits; }

void Notifier::take(std::vector<runs::LeasedNotice> notices) {
  auto self = impl_;
  self->handed_count += notices.size();
  net::post(self->strand, [self, notices = std::move(notices)]() mutable {
    for (auto& n : notices) {
      auto claimed = std::make_shared<Claimed>(Claimed{std::move(n.id), std::move(n.request_id), std::move(n.channel),
                                                       std::move(n.recipient), std::move(n.payload_enc), 0,
                                                       std::move(n.lease.token), n.step_idx, n.lease.until, true});
      self->handed.push_back(std::move(claimed));
    }
    self->pump(self);
  });
}

bool Notifier::taking() const { return !impl_->stopping && impl_->handed_count.load() < kHandedMax; }

bool Notifier::starts_now() const { return !impl_->stopping && impl_->handed_count.load() < kHandedInFlight; }

Duration Notifier::handoff_lease() const {
  // Room to wait behind the others out at once, then an attempt of up to
  // two timeouts (pump() and start_by() keep to it), then its commit.
  return 4 * impl_->config.notices.timeout + std::chrono::seconds(10);
}

void Notifier::start() { impl_->job->start(impl_); }

void Notifier::wake() { impl_->job->wake(); }

void Notifier::stop() {
  auto self = impl_;
  net::post(self->strand, [self] {
    self->stopping = true;
    self->pump(self);
  });
  self->job->stop();
}

bool Notifier::stopped() const { return impl_->job->stopped() && impl_->handed_count.load() == 0; }

}  // namespace privacyd::notify
