#include "daemon/notify/follow_up.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <soci/soci.h>
#include <utility>

#include "daemon/crypto/primitives.hpp"
#include "daemon/engine/engine.hpp"
#include "daemon/notify/dates.hpp"
#include "daemon/store/async.hpp"
#include "daemon/store/follow_ups.hpp"
#include "daemon/store/jobs.hpp"
#include "daemon/store/legacy_subjects.hpp"

namespace privacyd::notify {

namespace net = boost::asio;
namespace json = boost::json;

namespace {
constexpr int kBatch = 64;
constexpr int kDestroyBatch = 256;
// After a pass of the legacy move that could move nothing (what is left is
// busy or unreadable), the next pass waits this long.
constexpr long long kLegacyBackoffMs = 10LL * 60 * 1000;
constexpr long long kDayMs = 24LL * 3600 * 1000;
long long ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }
}  // namespace

struct FollowUp::Impl {
  Impl(net::io_context& ioc, const NoticeDependencies& d, const Clock& c, Logger& l, Duration e, SubjectKeyStore* k)
      : job(std::make_shared<jobs::Loop>(ioc, l, e)), deps(d), clock(c), log(l), subject_keys(k) {
    job->add("partner reminders", [this] { return remind(); });
    job->add("access package expiry", [this] { return erase_expired(); });
    job->add("own retention sweep", [this] { return sweep_retention(); });
    job->add("crypto-shredding", [this] { return shred(); });
    job->add("moving subjects to their own keys", [this] { return move_legacy(); });
  }

  std::shared_ptr<jobs::Loop> job;
  const NoticeDependencies& deps;
  const Clock& clock;
  Logger& log;
  SubjectKeyStore* subject_keys;
  std::function<void()> queued;
  // The legacy move's place in its pass, what the pass did, and whether
  // none is left (then it never runs again: no subject is made without a
  // key any more).
  std::string legacy_after;
  struct {
    int moved = 0;
    int passed_over = 0;
    int unreadable = 0;
  } legacy_pass;
  UnixMillis legacy_next_pass = 0;
  bool legacy_done = false;
  bool legacy_unreadable_told = false;

  // The reminder for `first`: its own notice on the partner's channel,
  // naming the first one, with a fresh link for a partner that answers by
  // link (the first link's token is not kept; either acknowledges).
  runs::Transition::Notice reminder_for(const follow_ups::DueReminder& first, const policy::Partner& partner,
                                        UnixMillis now) {
    engine::NoticeDraft n;
    n.id = crypto::new_id("ntc", now);
    n.channel = "partner";
    n.recipient = partner.id;
    n.template_name = std::string(kReminderTemplate);
    n.awaited = false;
    std::string token;
    // A partner answers by link when the notice asked it to, or when it is
    // reached by email now.
    if (first.by_link || partner.notice_url.empty()) {
      token = crypto::new_link_token();
      n.ack_token_sha256 = crypto::token_digest(token);
    }
    const std::string& locale = partner.notice_locale;
    json::object body{{"type", "notice.reminder"},
                      {"notice_id", n.id},
                      {"reminds_of", first.id},
                      {"partner_id", partner.id},
                      {"request_id", first.request_id},
                      {"acknowledge_by", format_rfc3339(first.ack_due_at)}};
    json::object values{{"partner_name", partner.name},
                        {"partner_id", partner.id},
                        {"request_id", first.request_id},
                        {"first_notice_id", first.id},
                        {"first_sent", display_date(first.created_at, locale)},
                        {"acknowledge_by", display_date(first.ack_due_at, locale)},
                        {"overdue", now > first.ack_due_at}};
    if (!token.empty()) values["ack_url"] = deps.public_url + "/v1/acks/" + token;
    body["text"] = deps.templates.get()->render(n.template_name, locale, values);
    n.payload_enc = deps.keys.seal(json::serialize(body), "notices.payload");
    return engine::outbox_entry(std::move(n));
  }

  // Each part says whether it filled its batch (more may be due now).
  net::awaitable<bool> remind() {
    const UnixMillis now = to_unix_ms(clock.now());
    auto policies = deps.policies.current();
    auto work = [&](soci::session& sql) {
      soci::transaction tr(sql);
      int queued_now = 0;
      const auto due = follow_ups::due_reminders(sql, now, kBatch);
      for (const auto& first : due) {
        const auto* partner = policies->partner(first.partner_id);
        if (partner == nullptr) {
          // Gone from the policies: nothing to remind through for now. Look
          // again in a day (it may come back with a reload).
          follow_ups::postpone_reminder(sql, first.id, now + kDayMs);
          continue;
        }
        // As the policies give the offsets now.
        const auto& offsets = policies->acknowledgement_for(*partner).reminders;
        if (offsets.empty()) {
          follow_ups::postpone_reminder(sql, first.id, std::nullopt);  // reminders were switched off
          continue;
        }
        std::vector<long long> offsets_ms;
        for (const auto offset : offsets) offsets_ms.push_back(ms(offset));
        const auto next = follow_ups::next_reminder_at(first.created_at, offsets_ms, first.reminders_sent + 1, now);
        if (follow_ups::record_reminder(sql, first, reminder_for(first, *partner, now), next, now)) ++queued_now;
      }
      tr.commit();
      return std::pair<int, int>(queued_now, static_cast<int>(due.size()));
    };
    const auto [n, examined] = co_await run_in_db(deps.db, work);
    if (n > 0) {
      log.info("partners reminded", {{"reminders", n}});
      if (queued) queued();
    }
    co_return examined >= kBatch;
  }

  // Crypto-shredding: erase and doom the key; once no hold needs it, mark
  // it ready and commit; then destroy it in the key store and forget it (a
  // crash between leaves it ready, and the next round destroys it).
  net::awaitable<bool> shred() {
    const UnixMillis now = to_unix_ms(clock.now());
    auto erase = [now](soci::session& sql) {
      soci::transaction tr(sql);
      auto shredded = follow_ups::shred_due(sql, now, kBatch);
      const int readied = follow_ups::ready_doomed_keys(sql, now, kBatch);
      tr.commit();
      return std::pair(std::move(shredded), readied);
    };
    const auto [shredded, readied] = co_await run_in_db(deps.db, erase);
    for (const auto& s : shredded) log.info("subject shredded", {{"subject_id", s.subject_id}});
    const bool more = shredded.size() >= static_cast<std::size_t>(kBatch) || readied >= kBatch;
    if (subject_keys == nullptr) co_return more;
    auto destroy = [this](soci::session& sql) {
      auto ids = follow_ups::keys_to_destroy(sql, kDestroyBatch);
      if (ids.empty()) return std::size_t{0};
      std::vector<std::string> real;  // a placeholder for a subject sealed before subject keys has no key
      for (const auto& id : ids) {
        if (!id.starts_with("master:")) real.push_back(id);
      }
      subject_keys->destroy(real);  // the key store first: only then is the marker cleared
      soci::transaction tr(sql);
      follow_ups::keys_destroyed(sql, ids);
      tr.commit();
      return ids.size();
    };
    const std::size_t destroyed = co_await run_in_db(deps.db, destroy);
    if (destroyed > 0) log.info("subject keys destroyed", {{"keys", destroyed}});
    co_return more || destroyed >= static_cast<std::size_t>(kDestroyBatch);
  }

  // Subjects from before subject keys, moved under keys of their own: up
  // to a batch a round, one transaction each, in passes over their ids.
  net::awaitable<bool> move_legacy() {
    const UnixMillis now = to_unix_ms(clock.now());
    if (legacy_done || subject_keys == nullptr || now < legacy_next_pass) co_return false;
    for (int i = 0; i < kBatch; ++i) {
      const std::string after = legacy_after;
      auto work = [this, now, after](soci::session& sql) {
        soci::transaction tr(sql);
        auto step = legacy::move_next(sql, SubjectSealer(deps.keys, subject_keys), after, now);
        tr.commit();
        return step;
      };
      const auto step = co_await run_in_db(deps.db, work);
      using Outcome = legacy::Step::Outcome;
      if (step.outcome == Outcome::none) {
        co_await end_legacy_pass(now);
        co_return false;
      }
      legacy_after = step.subject_id;
      if (step.outcome == Outcome::moved) {
        ++legacy_pass.moved;
        log.info("subject moved to its own key",
                 {{"subject_id", step.subject_id}, {"values", step.values}, {"unreadable", step.unreadable}});
      } else {
        ++legacy_pass.passed_over;
        if (step.outcome == Outcome::unreadable) ++legacy_pass.unreadable;
      }
    }
    co_return true;
  }

  // Done for good once a whole pass found nothing to move and none without
  // a key is left (counted without locks: SKIP LOCKED may have passed over
  // one another instance was moving, or failed to).
  // A pass that could move none waits before the next.
  net::awaitable<void> end_legacy_pass(UnixMillis now) {
    auto count = [](soci::session& sql) { return legacy::count_legacy_subjects(sql); };
    const long long left = co_await run_in_db(deps.db, count);
    if (left == 0 && legacy_pass.moved == 0 && legacy_pass.passed_over == 0) {
      legacy_done = true;
    } else if (legacy_pass.moved == 0) {
      legacy_next_pass = now + kLegacyBackoffMs;
      if (legacy_pass.unreadable > 0 && !legacy_unreadable_told) {
        legacy_unreadable_told = true;  // `keys status` keeps counting them
        log.warn("subjects whose identifier no configured key opens stay under the master key",
                 {{"subjects", legacy_pass.unreadable}});
      }
    }
    legacy_after.clear();
    legacy_pass = {};
  }

  // privacyd's own retention (config `retention`).
  net::awaitable<bool> sweep_retention() {
    const UnixMillis now = to_unix_ms(clock.now());
    const auto& kept = deps.config.retention;
    const follow_ups::OwnRetention rules{now - ms(kept.deliveries), now - ms(kept.notice_payloads),
                                         now - ms(kept.collected)};
    auto work = [rules, now](soci::session& sql) {
      soci::transaction tr(sql);
      auto swept = follow_ups::sweep_own_retention(sql, rules, now, kBatch);
      tr.commit();
      return swept;
    };
    auto swept = co_await run_in_db(deps.db, work);
    if (swept.total() > 0) {
      log.info("retention sweep", {{"deliveries", swept.deliveries}, {"notice_payloads", swept.notice_payloads},
                                   {"collected", swept.collected}});
    }
    co_return std::max({swept.deliveries, swept.notice_payloads, swept.collected}) >= kBatch;
  }

  net::awaitable<bool> erase_expired() {
    const UnixMillis now = to_unix_ms(clock.now());
    auto work = [now](soci::session& sql) {
      soci::transaction tr(sql);
      int n = follow_ups::erase_expired_packages(sql, now, kBatch);
      tr.commit();
      return n;
    };
    int n = co_await run_in_db(deps.db, work);
    if (n > 0) log.info("expired access packages erased", {{"packages", n}});
    co_return n >= kBatch;
  }
};

FollowUp::FollowUp(net::io_context& ioc, const NoticeDependencies& deps, const Clock& clock, Logger& log,
                   Duration every, SubjectKeyStore* subject_keys)
    : impl_(std::make_shared<Impl>(ioc, deps, clock, log, every, subject_keys)) {}

FollowUp::~FollowUp() = default;

void FollowUp::on_queued(std::function<void()> callback) { impl_->queued = std::move(callback); }

void FollowUp::start() { impl_->job->start(impl_); }

void FollowUp::stop() { impl_->job->stop(); }

bool FollowUp::stopped() const { return impl_->job->stopped(); }

}  // namespace privacyd::notify
