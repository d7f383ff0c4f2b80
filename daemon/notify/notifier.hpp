#pragma once
// Delivers the notice outbox (SPEC §7). Partner notices are POSTed to the
// partner's webhook, signed with its own secret, webhook-id = the notice id
// on every attempt; subject notices go to SMTP or, in development, to
// files. 2xx is delivered; 408, 429, 5xx, timeouts and connection errors
// retry on the schedule (with jitter, honouring Retry-After); other 4xx
// and an exhausted schedule make the notice dead. Either way the request's
// step is woken to see it. A crash between sending and committing sends
// the notice again, with the same id.

#include <functional>
#include <memory>

#include "daemon/base/clock.hpp"
#include "daemon/config/config.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/metrics/metrics.hpp"
#include "daemon/policy/policy_store.hpp"
#include "daemon/store/database.hpp"
#include "daemon/store/group_commit.hpp"
#include "daemon/store/runs.hpp"

namespace boost::asio {
class io_context;
}
namespace soci {
class session;
}

namespace privacyd::notify {

class Notifier {
 public:
  Notifier(boost::asio::io_context& ioc, Database& db, const policy::PolicyStore& policies, const crypto::KeyRing& keys,
           const Clock& clock, Logger& log, const Config& config, Duration poll,
           metrics::Metrics* metrics = nullptr);
  ~Notifier();
  // Called after a notice awaited by a step is delivered or dead, with its
  // request's id (main wires the engine's notice_settled()).
  void on_settled(std::function<void(const std::string& request_id)> callback);
  // A handed-over notice was delivered: `hand_back(request_id, notice_id,
  // record)` may take the outcome's record, for the run awaiting it to
  // commit in its next transaction (true); otherwise (false) the notifier
  // commits it as always. Main wires the engine's take_delivery().
  void on_delivered(
      std::function<bool(const std::string&, const std::string&, std::function<bool(soci::session&)>)> hand_back);
  // Outcomes share transactions with other writers (one fsync for many).
  // Null (the default): each commits alone.
  void use_group_commit(GroupCommit* commits);
  // Notices just committed under a lease for this process (the engine's
  // hand-over): attempted at once, a bounded number at a time. One whose
  // lease runs short while it waits is left to the rounds.
  void take(std::vector<runs::LeasedNotice> notices);
  // Whether take() is worth calling: false once enough wait or are out.
  bool taking() const;
  // Whether notices taken now would be attempted at once (none wait).
  bool starts_now() const;
  // How long a handed notice's lease must run: one attempt, with room.
  Duration handoff_lease() const;
  void start();
  void wake();
  void stop();
  bool stopped() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// Parses Retry-After (delta-seconds or an HTTP date) into a delay.
std::optional<Duration> parse_retry_after(std::string_view value, std::chrono::system_clock::time_point now);

}  // namespace privacyd::notify
