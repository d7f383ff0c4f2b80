#pragma once
// Actions are what steps do. Each declares its `with:` parameters (for the
// workflow validator) and runs as a coroutine against a step's context.
// The engine owns durability: an action may run more than once (at least
// once), so anything it does outside privacyd carries an idempotency key.

#include <boost/asio/awaitable.hpp>
#include <boost/json/value.hpp>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "daemon/base/time.hpp"
#include "daemon/engine/workflow.hpp"

namespace soci {
class session;
}

namespace privacyd::engine {

struct ActionContext {
  std::string request_id;
  std::string request_type;
  const StepDef& step;
  int attempt = 1;              // 1 on the first run of this step
  std::string idempotency_key;  // request id and step id: the same on every attempt
  UnixMillis now = 0;
  std::optional<UnixMillis> woken_from;  // set when a `wait` this step asked for is over
  const boost::json::value& context;   // what `if:` sees: request, subject, partner, steps
  const Workflow* workflow = nullptr;  // the pinned workflow the step belongs to
  // What earlier attempts of this step did (the output a failed attempt
  // returned with its failure), or null: effects accumulate across
  // attempts, so a retry does not forget what an attempt before it did.
  const boost::json::value* earlier = nullptr;
};

// A failure that no retry can mend, such as a subject identifier that none
// of the configured keys opens: the step fails at once.
class PermanentFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The subject's HUAWEI ID as the request context holds it; throws
// PermanentFailure when it could not be decrypted (a step must never act
// on an empty identifier and report success).
std::string required_huawei_id(const ActionContext& ctx);

// The id of the key the subject's data is sealed under (KeyRing::seal_for),
// empty for a subject from before subject keys.
std::string subject_key(const boost::json::value& context);
inline std::string subject_key(const ActionContext& ctx) { return subject_key(ctx.context); }

// A notice an action decided to send: committed to the outbox in the same
// transaction as the step's outcome, then delivered by the notifier.
struct NoticeDraft {
  std::string id;         // also the partner webhook's webhook-id, on every attempt
  std::string channel;    // "partner" | "subject" | "partner_center"
  std::string recipient;  // partner id, "subject" or "partner-center"
  std::string template_name;
  std::string payload_enc;  // sealed: the webhook body, or the email message
  // The step that drafted it waits for its delivery; false for notices that
  // follow a request's end (callbacks), which nothing waits for.
  bool awaited = true;
  // A partner notice asks to be acknowledged (SPEC §13.3): by when, the
  // first reminder, and the SHA-256 of the token in its link.
  std::optional<UnixMillis> ack_due_at = {};
  std::optional<UnixMillis> next_reminder_at = {};
  std::string ack_token_sha256 = {};
};

struct ActionResult {
  enum class Kind {
    succeeded,  // output is kept as the step's output
    failed,     // retried while attempts remain if `retryable`
    wait,       // run the step again at `wake_at`
    park,       // stop until an operator approves or rejects (`reason`)
    reject,     // the request is rejected with `reason` (told to the subject)
    await_notices,  // commit `notices`; run the step again once they are delivered or dead
  };
  Kind kind = Kind::succeeded;
  boost::json::value output;
  std::string error;
  bool retryable = true;
  UnixMillis wake_at = 0;
  std::string reason;
  std::vector<NoticeDraft> notices;

  static ActionResult success(boost::json::value out = {}) {
    ActionResult r;
    r.output = std::move(out);
    return r;
  }
  // `done`: what this attempt (with the earlier ones) did before it failed;
  // kept as the step's output for the next attempt's `earlier`.
  static ActionResult failure(std::string error, bool retryable, boost::json::value done = {}) {
    ActionResult r;
    r.kind = Kind::failed;
    r.error = std::move(error);
    r.retryable = retryable;
    r.output = std::move(done);
    return r;
  }
};

class LocalAction;

class Action {
 public:
  virtual ~Action() = default;
  virtual const ActionSpec& spec() const = 0;
  // `ctx` outlives the returned awaitable.
  virtual boost::asio::awaitable<ActionResult> run(const ActionContext& ctx) = 0;
  // Non-null when the action is a LocalAction.
  virtual LocalAction* as_local() { return nullptr; }
};

// An action that acts on nothing outside privacyd's own database: it reads
// it and drafts notices for the outbox, nothing more. The engine runs such
// a step inside the transaction that commits its outcome, together with
// the request's other transitions up to its next step that acts outside
// (an external step's "started" included), and commits no "started" of its
// own: run again after a crash, it finds the database as it was before.
class LocalAction : public Action {
 public:
  LocalAction* as_local() final { return this; }
  // In `sql`'s open transaction, on a database thread: what it reads is
  // what that transaction commits against. It must not commit, and must
  // let privacyd's own database errors through (the transaction is then
  // rolled back and the run taken up again).
  virtual ActionResult run_local(soci::session& sql, const ActionContext& ctx) = 0;
  // Not used: a local step runs only inside the engine's transaction.
  // Throws std::logic_error.
  boost::asio::awaitable<ActionResult> run(const ActionContext& ctx) final;
};

class ActionRegistry {
 public:
  void add(std::unique_ptr<Action> action);
  Action* find(std::string_view name) const;
  ActionCatalog catalog() const;

 private:
  std::map<std::string, std::unique_ptr<Action>, std::less<>> actions_;
};

// approval, wait and webhook.call. `base` is where webhook.call resolves a
// relative secret_file (the workflows folder).
void add_builtin_actions(ActionRegistry& registry, const std::filesystem::path& base);

// The delay before retry `attempt` (2 = the first retry): exponential from
// policy.backoff, capped at policy.max_backoff, then "equal jitter": half
// fixed, half scaled by `unit_random` in [0, 1).
Duration retry_delay(const RetryPolicy& policy, int attempt, double unit_random);

}  // namespace privacyd::engine
