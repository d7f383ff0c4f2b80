#pragma once
// The engine's persistence: claiming runnable requests with leases, loading
// a request with its steps, and committing each transition together with
// its audit entry. Every function runs inside the caller's transaction.

#include <optional>
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
  std::vector<StepRow> steps;
};

// Takes up to `limit` requests that are due and not leased by a live
// instance. On PostgreSQL, FOR UPDATE SKIP LOCKED keeps instances apart.
std::vector<std::string> claim(soci::session& sql, UnixMillis now, const std::string& owner, UnixMillis lease_until,
                               int limit);

std::optional<RunRow> load(soci::session& sql, const std::string& id);

// One committed step of progress. Fails (returns false, changes nothing)
// when `owner` no longer holds the request's lease.
struct Transition {
  std::string request_id;
  std::string owner;
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
  };
  std::vector<Notice> notices;
};
bool apply(soci::session& sql, const Transition& t);

// What apply() did to the request, done to a loaded copy of it (so that
// the holder of the lease need not read back what it just wrote).
void advance(RunRow& row, const Transition& t);

// Gives a request's lease back (when draining), if `owner` still holds it.
void release(soci::session& sql, const std::string& id, const std::string& owner);

// Stores a workflow version's text; returns the sha256 already stored for
// (name, version) when it differs (the file changed under one version).
std::optional<std::string> store_workflow(soci::session& sql, const std::string& name, int version,
                                          const std::string& sha256, const std::string& source, UnixMillis now);
// The sha256 stored for (name, version), if any.
std::optional<std::string> stored_workflow_sha(soci::session& sql, const std::string& name, int version);
std::optional<std::string> workflow_source(soci::session& sql, const std::string& name, int version);

// Operator decisions on a request awaiting approval. False when the request
// is not awaiting approval.
bool approve(soci::session& sql, const std::string& id, const std::string& who, UnixMillis now);
// A rejection commits, with it, the notices that tell the person why.
bool reject(soci::session& sql, const std::string& id, const std::string& who, const std::string& reason,
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
