#pragma once
// The engine's persistence: claiming runnable requests with leases, loading
// a request with its steps, and committing each transition together with
// its audit entry. Every function runs inside the caller's transaction.

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "daemon/base/time.hpp"

namespace soci {
class session;
}

namespace privacyd::runs {

struct StepRow {
  int idx = 0;
  std::string step_id;
  std::string action;
  std::string status;  // pending, running, waiting, succeeded, skipped, failed
  int attempts = 0;
  std::optional<std::string> output;  // JSON
  std::optional<std::string> error;
  std::optional<UnixMillis> wake_at;
};

struct RunRow {
  std::string id;
  std::string webhook_id;  // the Partner Center's delivery that created it
  std::string type;    // access | deletion | disassociation
  std::string status;  // received, running, awaiting_approval, completed, rejected, failed
  std::string subject_id;
  std::optional<std::string> partner_id;
  std::string categories;  // JSON array
  std::string jurisdiction;
  std::optional<std::string> reason;
  std::optional<std::string> workflow_name;
  std::optional<int> workflow_version;
  int next_step = 0;
  UnixMillis received_at = 0;
  UnixMillis deadline_at = 0;
  std::optional<std::string> lease_owner;
  // The subject, sealed as stored.
  std::string huawei_id_enc;
  std::optional<std::string> contact_enc;
  std::optional<std::string> locale;
  std::optional<std::string> key_id;  // the subject's key (none: sealed before subject keys)
  std::vector<StepRow> steps;
};

// One claim of a request: the token every write of the claim checks.
struct Claim {
  std::string id;
  std::string token;
};

// Takes up to `limit` requests that are due and not leased by a live
// instance, skipping those in `driving` (this process drives them still,
// whatever their lease says). Each gets a fresh token, so whoever held it
// before can no longer write. On PostgreSQL, FOR UPDATE SKIP LOCKED keeps
// instances apart.
std::vector<Claim> claim(soci::session& sql, UnixMillis now, const std::string& owner, UnixMillis lease_until,
                         int limit, const std::vector<std::string>& driving = {});

// Extends a claim's lease while its step runs. False when the claim was
// lost (its token replaced or cleared, or its owner changed: a binary from
// before tokens claims without touching them).
bool renew(soci::session& sql, const std::string& id, const std::string& owner, const std::string& token,
           UnixMillis lease_until);

std::optional<RunRow> load(soci::session& sql, const std::string& id);

// One committed step of progress. Fails (returns false, changes nothing)
// when `token` is no longer the request's claim.
// A lease written with notices as they are queued: the notifier of the
// process that queued them takes them in memory (SPEC §12: no round of its
// own to find them), and no other claims them before it lapses.
struct NoticeLease {
  std::string token;
  UnixMillis until = 0;
};

// A notice as committed under a NoticeLease, for the notifier.
struct LeasedNotice {
  std::string id;
  std::string request_id;
  int step_idx = -1;  // the step that awaits it; -1: none
  std::string channel;
  std::string recipient;
  std::string payload_enc;
  NoticeLease lease;
};

struct Transition {
  std::string request_id;
  std::string owner;  // shown as the lease's holder
  std::string token;  // the claim's

  UnixMillis now = 0;
  // The step (skipped when step_idx < 0).
  int step_idx = -1;
  std::string step_id;
  std::string action;
  std::string step_status;
  int attempts = 0;
  std::optional<std::string> output;
  std::optional<std::string> error;
  std::optional<UnixMillis> wake_at;
  // The request.
  std::string request_status;
  int next_step = 0;
  std::optional<std::string> workflow_name;  // set when the run pins its workflow
  std::optional<int> workflow_version;
  std::optional<std::string> reason;
  std::optional<UnixMillis> run_at;       // when to run next; nullopt: nothing to do
  std::optional<UnixMillis> lease_until;  // nullopt: release the lease
  // The audit entry.
  std::string audit_event;
  std::string audit_detail = "{}";
  // Notices for the outbox, written in this same transaction.
  struct Notice {
    std::string id;
    std::string channel;
    std::string recipient;
    std::string template_name;
    std::string payload_enc;
    bool awaited = true;  // false: stored with step_idx -1, nothing waits for it
    std::optional<UnixMillis> ack_due_at = {};
    std::optional<UnixMillis> next_reminder_at = {};
    std::string ack_token_sha256 = {};
  };
  std::vector<Notice> notices;
  std::optional<NoticeLease> notice_lease;  // set: `notices` are written leased
  // The step waits for its notices (step_idx's): whether it is woken now or
  // by the notifier is decided in this transaction, under the request's row
  // lock, from the notices' statuses as committed (the notifier takes the
  // same lock before it settles a notice), so a settlement cannot slip
  // between a read and this commit and go unheard.
  bool await_notices = false;
  // A deletion request completed: privacyd's own copies of the subject's
  // data are to be erased, and its key destroyed, once nothing pending
  // needs them (SPEC §14; the follow-up loop does it).
  bool shred_subject = false;
};
bool apply(soci::session& sql, const Transition& t);
// Transitions of one request under one claim, in order, in one write of
// the request: its row is updated once, to where the last one leaves it,
// then each one's step, notices and audit entry follow. Fails (returns
// false, writes nothing) as apply() does.
bool apply(soci::session& sql, std::span<const Transition> transitions);

// Writes notices to the outbox (pending, due now) for `step_idx` of the
// request, or for none (-1, and any notice that is not `awaited`).
void insert_notices(soci::session& sql, const std::string& request_id, int step_idx,
                    const std::vector<Transition::Notice>& notices, UnixMillis now,
                    const NoticeLease* lease = nullptr);

// What apply() did to the request, done to a loaded copy of it (so that
// the holder of the lease need not read back what it just wrote).
void advance(RunRow& row, const Transition& t);

// Gives a request's lease back (when draining), if `token` is still its claim.
void release(soci::session& sql, const std::string& id, const std::string& token);

// Takes the request's row lock (PostgreSQL) before a notice of it settles:
// see Transition::await_notices. True when, under that lock, the request
// runs and nothing is scheduled for it (run_at NULL): a step of it waits
// for its notices, and wake() makes it due.
bool lock_request(soci::session& sql, const std::string& id);
// Makes a request found waiting by lock_request() due at `at`.
void wake(soci::session& sql, const std::string& id, UnixMillis at);

// At most this much of an error is stored, audited or logged.
inline constexpr std::size_t kMaxStoredError = 300;
std::string bounded_error(std::string_view error);

// Stores a workflow version's text; returns the sha256 already stored for
// (name, version) when it differs (the file changed under one version).
std::optional<std::string> store_workflow(soci::session& sql, const std::string& name, int version,
                                          const std::string& sha256, const std::string& source, UnixMillis now);
// Requests of `type` still `received` (waiting for a workflow for their
// type) are due now: called when a set with a workflow for it is installed.
void wake_received(soci::session& sql, const std::string& type, UnixMillis now);

// The sha256 stored for (name, version), if any.
std::optional<std::string> stored_workflow_sha(soci::session& sql, const std::string& name, int version);
std::optional<std::string> workflow_source(soci::session& sql, const std::string& name, int version);

// Operator decisions on a request awaiting approval. False when the request
// is not awaiting approval.
bool approve(soci::session& sql, const std::string& id, const std::string& who, UnixMillis now);
// A rejection commits, with it, the notices that tell the person why.
// A rejection also ends a failed request, unless something outside
// privacyd was already done for it (a data system acted on, a webhook
// answered, a notice delivered): "we could not carry out your request"
// would then be untrue, and a partner might never be told; that request
// is fixed and retried instead. What was collected, and any package, is
// erased with the rejection.
enum class Rejection { rejected, not_decidable, acted_outside };
Rejection reject(soci::session& sql, const std::string& id, const std::string& who, const std::string& reason,
                 UnixMillis now, const std::vector<Transition::Notice>& notices = {});

// An operator's retry of a failed request: the step that failed runs again
// from its first attempt (a notify step's dead notices are delivered
// afresh). False when the request is not failed.
bool retry_request(soci::session& sql, const std::string& id, const std::string& who, UnixMillis now);

// The one extension of a request's deadline (SPEC §4), to `deadline`.
enum class Extension { extended, not_found, already_extended, finished };
Extension extend(soci::session& sql, const std::string& id, const std::string& who, const std::string& reason,
                 UnixMillis deadline, UnixMillis now);

// An operator's retry of a dead notice: it is delivered afresh (attempts
// start again), and the request whose step it failed waits on that step
// again instead of staying failed. False when the notice is not dead.
bool retry_notice(soci::session& sql, const std::string& notice_id, const std::string& who, UnixMillis now);

}  // namespace privacyd::runs
