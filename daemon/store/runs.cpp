#include "daemon/store/runs.hpp"

#include <algorithm>
#include <limits>
#include <boost/json.hpp>
#include <soci/soci.h>

#include "daemon/audit/audit.hpp"
#include "daemon/store/database.hpp"
#include "daemon/store/prepared.hpp"
#include "daemon/store/rows.hpp"
#include "daemon/crypto/primitives.hpp"

namespace privacyd::runs {

namespace {

template <class T>
std::optional<T> opt(const soci::row& r, std::size_t i) {
  if (r.get_indicator(i) == soci::i_null) return std::nullopt;
  return r.get<T>(i);
}

// SOCI binds an optional through a value and an indicator.
template <class T>
struct Maybe {
  explicit Maybe(const std::optional<T>& v) : value(v.value_or(T{})), ind(v ? soci::i_ok : soci::i_null) {}
  T value;
  soci::indicator ind;
};

// Runs an UPDATE that moves a request out of the status an operator acted
// on. Its row lock (PostgreSQL) and WHERE clause make a concurrent second
// decision see the first and change nothing.
bool changed(soci::statement& update) {
  update.execute(true);
  return update.get_affected_rows() == 1;
}

}  // namespace

void insert_notices(soci::session& sql, const std::string& request_id, int step_idx,
                    const std::vector<Transition::Notice>& notices, UnixMillis at, const NoticeLease* lease) {
  const long long now = at;
  Maybe<std::string> claim(lease ? std::optional<std::string>(lease->token) : std::nullopt);
  Maybe<long long> until(lease ? std::optional<long long>(lease->until) : std::nullopt);
  for (const auto& n : notices) {
    std::string pending = "pending";
    int idx = n.awaited ? step_idx : -1;
    Maybe<long long> due(n.ack_due_at ? std::optional<long long>(*n.ack_due_at) : std::nullopt);
    Maybe<long long> remind(n.next_reminder_at ? std::optional<long long>(*n.next_reminder_at) : std::nullopt);
    Maybe<std::string> token(n.ack_token_sha256.empty() ? std::nullopt : std::optional<std::string>(n.ack_token_sha256));
    Prepared insert(sql,
                    "INSERT INTO notices(id, request_id, step_idx, channel, recipient, template, status, payload_enc,"
                    " next_attempt_at, created_at, ack_due_at, next_reminder_at, ack_token_sha256, claim_token,"
                    " lease_until) VALUES (:id, :request, :idx, :channel, :recipient, :template, :status,"
                    " :payload, :next, :created, :due, :remind, :token, :claim, :until) ON CONFLICT (id) DO NOTHING");
    insert.bind(soci::use(n.id, "id"), soci::use(request_id, "request"), soci::use(idx, "idx"),
        soci::use(n.channel, "channel"), soci::use(n.recipient, "recipient"), soci::use(n.template_name, "template"),
        soci::use(pending, "status"), soci::use(n.payload_enc, "payload"), soci::use(now, "next"),
        soci::use(now, "created"), soci::use(due.value, due.ind, "due"), soci::use(remind.value, remind.ind, "remind"),
        soci::use(token.value, token.ind, "token"), soci::use(claim.value, claim.ind, "claim"),
        soci::use(until.value, until.ind, "until"));
    insert.execute();
  }
}

std::vector<Claim> claim(soci::session& sql, UnixMillis now, const std::string& owner, UnixMillis lease_until,
                         int limit, const std::vector<std::string>& driving) {
  // Enough candidates that skipping the ones still driven here leaves `limit`.
  int candidates = limit + static_cast<int>(driving.size());
  std::vector<std::string> ids(static_cast<std::size_t>(candidates));
  long long at = now;
  {
    Prepared due(sql, "SELECT id FROM requests WHERE run_at IS NOT NULL AND run_at <= :now"
                      " AND (lease_until IS NULL OR lease_until < :now2) ORDER BY run_at LIMIT :n" +
                          skip_locked(sql));
    due.bind(soci::use(at, "now"), soci::use(at, "now2"), soci::use(candidates, "n"), soci::into(ids));
    // No row: SOCI leaves a vector of one as it was, holding "".
    if (!due.execute()) ids.clear();
  }
  long long until = lease_until;
  std::vector<Claim> claimed;
  for (const auto& id : ids) {
    if (static_cast<int>(claimed.size()) == limit) break;
    if (std::find(driving.begin(), driving.end(), id) != driving.end()) continue;
    Claim c{id, crypto::hex(crypto::random_bytes(12))};
    Prepared lease(sql, "UPDATE requests SET lease_owner = :owner, lease_until = :until, lease_token = :token"
                        " WHERE id = :id");
    lease.bind(soci::use(owner, "owner"), soci::use(until, "until"), soci::use(c.token, "token"), soci::use(id, "id"));
    lease.execute();
    claimed.push_back(std::move(c));
  }
  return claimed;
}

bool renew(soci::session& sql, const std::string& id, const std::string& owner, const std::string& token,
           UnixMillis lease_until) {
  long long until = lease_until;
  Prepared update(sql, "UPDATE requests SET lease_until = :until WHERE id = :id AND lease_token = :token"
                       " AND lease_owner = :owner");
  update.bind(soci::use(until, "until"), soci::use(id, "id"), soci::use(token, "token"), soci::use(owner, "owner"));
  update.execute();
  return update.affected_rows() == 1;
}

bool lock_request(soci::session& sql, const std::string& id) {
  std::string status;
  long long run_at = 0;
  soci::indicator run_at_ind = soci::i_null;
  // SQLite: one writer at a time, no row locks.
  Prepared lock(sql, std::string("SELECT status, run_at FROM requests WHERE id = :id") +
                         (is_postgresql(sql) ? " FOR UPDATE" : ""));
  lock.bind(soci::use(id, "id"), soci::into(status), soci::into(run_at, run_at_ind));
  return lock.execute() && status == "running" && run_at_ind == soci::i_null;
}

void wake(soci::session& sql, const std::string& id, UnixMillis at) {
  // By primary key alone: the request's state was read under its lock.
  long long due = at;
  Prepared update(sql, "UPDATE requests SET run_at = :at WHERE id = :id");
  update.bind(soci::use(due, "at"), soci::use(id, "id"));
  update.execute();
}

std::string bounded_error(std::string_view error) { return bounded_text(error, kMaxStoredError); }

std::optional<RunRow> load(soci::session& sql, const std::string& id) {
  std::optional<RunRow> run;
  {  // each statement's bindings released before the next runs
    soci::row r;
    Prepared select(sql, "SELECT r.id, r.type, r.status, r.subject_id, r.partner_id, r.categories, r.jurisdiction,"
                         " r.reason, r.workflow_name, r.workflow_version, r.next_step, r.received_at, r.deadline_at,"
                         " r.lease_owner, s.huawei_id_enc, s.contact_enc, s.locale, r.webhook_id, s.key_id"
                         " FROM requests r JOIN subjects s ON s.id = r.subject_id WHERE r.id = :id");
    select.bind(soci::use(id, "id"), soci::into(r));
    if (select.execute()) {
      RunRow x;
      x.id = r.get<std::string>(0);
      x.type = r.get<std::string>(1);
      x.status = r.get<std::string>(2);
      x.subject_id = r.get<std::string>(3);
      x.partner_id = opt<std::string>(r, 4);
      x.categories = r.get<std::string>(5);
      x.jurisdiction = r.get<std::string>(6);
      x.reason = opt<std::string>(r, 7);
      x.workflow_name = opt<std::string>(r, 8);
      x.workflow_version = opt<int>(r, 9);
      x.next_step = r.get<int>(10);
      x.received_at = r.get<long long>(11);
      x.deadline_at = r.get<long long>(12);
      x.lease_owner = opt<std::string>(r, 13);
      x.huawei_id_enc = r.get<std::string>(14);
      x.contact_enc = opt<std::string>(r, 15);
      x.locale = opt<std::string>(r, 16);
      x.webhook_id = r.get<std::string>(17);
      x.key_id = opt<std::string>(r, 18);
      run = std::move(x);
    }
  }
  if (!run) return std::nullopt;
  soci::row r;
  Prepared steps(sql, "SELECT idx, step_id, action, status, attempts, output, error, wake_at FROM request_steps"
                      " WHERE request_id = :id ORDER BY idx");
  steps.bind(soci::use(id, "id"), soci::into(r));
  for (bool got = steps.execute(); got; got = steps.fetch()) {
    StepRow s;
    s.idx = r.get<int>(0);
    s.step_id = r.get<std::string>(1);
    s.action = r.get<std::string>(2);
    s.status = r.get<std::string>(3);
    s.attempts = r.get<int>(4);
    s.output = opt<std::string>(r, 5);
    s.error = opt<std::string>(r, 6);
    s.wake_at = opt<long long>(r, 7);
    run->steps.push_back(std::move(s));
  }
  return run;
}

namespace {
// The steps the transitions leave, in one INSERT (a step seen twice in
// them, which one statement cannot upsert twice, is written alone).
void write_steps(soci::session& sql, std::span<const Transition> transitions) {
  std::vector<const Transition*> steps;
  for (const auto& t : transitions) {
    if (t.step_idx < 0) continue;
    for (const auto* seen : steps) {
      if (seen->step_idx == t.step_idx) {
        for (const auto& each : transitions) write_steps(sql, std::span<const Transition>(&each, 1));
        return;
      }
    }
    steps.push_back(&t);
  }
  if (steps.empty()) return;
  struct Values {
    Maybe<std::string> output;
    Maybe<std::string> error;
    Maybe<long long> wake;
    Maybe<long long> finished_at;
    long long started;
  };
  std::vector<Values> values;
  values.reserve(steps.size());  // bound by reference below: never reallocated
  std::string query = "INSERT INTO request_steps(request_id, idx, step_id, action, status, attempts, output, error,"
                      " started_at, finished_at, wake_at) VALUES ";
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const Transition& t = *steps[i];
    bool finished = t.step_status == "succeeded" || t.step_status == "skipped" || t.step_status == "failed";
    values.push_back({Maybe<std::string>(t.output),
                      Maybe<std::string>(t.error ? std::optional<std::string>(bounded_error(*t.error)) : std::nullopt),
                      Maybe<long long>(t.wake_at ? std::optional<long long>(*t.wake_at) : std::nullopt),
                      Maybe<long long>(finished ? std::optional<long long>(t.now) : std::nullopt), t.now});
    const std::string n = std::to_string(i);
    query += (i == 0 ? "(" : ", (") + (":r" + n) + ", :i" + n + ", :s" + n + ", :a" + n + ", :st" + n + ", :n" + n +
             ", :o" + n + ", :e" + n + ", :b" + n + ", :f" + n + ", :w" + n + ")";
  }
  query += " ON CONFLICT (request_id, idx) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,"
           " output = excluded.output, error = excluded.error, finished_at = excluded.finished_at,"
           " wake_at = excluded.wake_at";
  Prepared insert(sql, query);
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const Transition& t = *steps[i];
    Values& v = values[i];
    const std::string n = std::to_string(i);
    insert.bind(soci::use(t.request_id, "r" + n), soci::use(t.step_idx, "i" + n), soci::use(t.step_id, "s" + n),
                soci::use(t.action, "a" + n), soci::use(t.step_status, "st" + n), soci::use(t.attempts, "n" + n),
                soci::use(v.output.value, v.output.ind, "o" + n), soci::use(v.error.value, v.error.ind, "e" + n),
                soci::use(v.started, "b" + n), soci::use(v.finished_at.value, v.finished_at.ind, "f" + n),
                soci::use(v.wake.value, v.wake.ind, "w" + n));
  }
  insert.execute();
}

// A transition's notices, shredding mark and audit entry, after its
// request's row was written (and locked) under the claim.
void write_rest(soci::session& sql, const Transition& t) {
  long long now = t.now;
  insert_notices(sql, t.request_id, t.step_idx, t.notices, now, t.notice_lease ? &*t.notice_lease : nullptr);
  if (t.shred_subject) {
    sql << "UPDATE subjects SET shred_after = COALESCE(shred_after, :now)"
           " WHERE id = (SELECT subject_id FROM requests WHERE id = :id)",
        soci::use(now, "now"), soci::use(t.request_id, "id");
  }
  audit::append(sql, t.now, t.request_id, t.audit_event, t.audit_detail);
}
}  // namespace

bool apply(soci::session& sql, const Transition& t) { return apply(sql, std::span<const Transition>(&t, 1)); }

bool apply(soci::session& sql, std::span<const Transition> transitions) {
  if (transitions.empty()) return true;
  // The request ends where the last transition leaves it; what an earlier
  // one set and a later one leaves alone (reason, workflow) stands, as
  // one UPDATE each would have left it.
  const Transition& t = transitions.back();
  std::optional<std::string> set_reason, set_workflow;
  std::optional<int> set_version;
  for (const auto& each : transitions) {
    if (each.token != t.token || each.owner != t.owner || each.request_id != t.request_id) {
      throw std::logic_error("transitions of one write must share their request and claim");
    }
    if (each.reason) set_reason = each.reason;
    if (each.workflow_name) set_workflow = each.workflow_name;
    if (each.workflow_version) set_version = each.workflow_version;
  }
  long long now = t.now;
  Maybe<long long> run_at(t.run_at ? std::optional<long long>(*t.run_at) : std::nullopt);
  Maybe<long long> lease_until(t.lease_until ? std::optional<long long>(*t.lease_until) : std::nullopt);
  Maybe<std::string> owner(t.lease_until ? std::optional<std::string>(t.owner) : std::nullopt);
  Maybe<std::string> token(t.lease_until ? std::optional<std::string>(t.token) : std::nullopt);
  Maybe<std::string> reason(set_reason);
  Maybe<std::string> wf_name(set_workflow);
  Maybe<int> wf_version(set_version);
  // RETURNING tells whether the row was ours to update.
  std::string updated;
  soci::indicator updated_ind = soci::i_null;
  Prepared update(sql, "UPDATE requests SET status = :status, next_step = :next, run_at = :run_at,"
                       " lease_owner = :new_owner, lease_until = :lease_until, lease_token = :new_token,"
                       " reason = COALESCE(:reason, reason), workflow_name = COALESCE(:wf_name, workflow_name),"
                       " workflow_version = COALESCE(:wf_version, workflow_version), updated_at = :now"
                       " WHERE id = :id AND lease_token = :token AND lease_owner = :owner RETURNING id");
  update.bind(soci::use(t.request_status, "status"), soci::use(t.next_step, "next"),
      soci::use(run_at.value, run_at.ind, "run_at"), soci::use(owner.value, owner.ind, "new_owner"),
      soci::use(lease_until.value, lease_until.ind, "lease_until"), soci::use(token.value, token.ind, "new_token"),
      soci::use(reason.value, reason.ind, "reason"),
      soci::use(wf_name.value, wf_name.ind, "wf_name"), soci::use(wf_version.value, wf_version.ind, "wf_version"),
      soci::use(now, "now"), soci::use(t.request_id, "id"), soci::use(t.token, "token"), soci::use(t.owner, "owner"),
      soci::into(updated, updated_ind));
  if (!update.execute()) return false;  // the claim was lost
  write_steps(sql, transitions);
  for (const auto& each : transitions) write_rest(sql, each);
  const Transition& last = transitions.back();
  if (last.await_notices) {
    // The row lock is ours (the UPDATE above); this statement sees every
    // settlement committed before it, and any later one finds run_at NULL.
    int pending = 0;
    Prepared count(sql, "SELECT COUNT(*) FROM notices WHERE request_id = :id AND step_idx = :idx"
                        " AND status = 'pending'");
    count.bind(soci::use(last.request_id, "id"), soci::use(last.step_idx, "idx"), soci::into(pending));
    count.execute();
    if (pending == 0) {
      Prepared wake(sql, "UPDATE requests SET run_at = :now WHERE id = :id");
      wake.bind(soci::use(now, "now"), soci::use(last.request_id, "id"));
      wake.execute();
    }
  }
  return true;
}


void advance(RunRow& row, const Transition& t) {
  row.status = t.request_status;
  row.next_step = t.next_step;
  if (t.reason) row.reason = t.reason;
  if (t.workflow_name) row.workflow_name = t.workflow_name;
  if (t.workflow_version) row.workflow_version = t.workflow_version;
  row.lease_owner = t.lease_until ? std::optional<std::string>(t.owner) : std::nullopt;
  if (t.step_idx < 0) return;
  auto it = std::find_if(row.steps.begin(), row.steps.end(), [&](const StepRow& s) { return s.idx == t.step_idx; });
  if (it == row.steps.end()) {
    it = row.steps.insert(std::upper_bound(row.steps.begin(), row.steps.end(), t.step_idx,
                                           [](int idx, const StepRow& s) { return idx < s.idx; }),
                          StepRow{});
    it->idx = t.step_idx;
    it->step_id = t.step_id;
    it->action = t.action;
  }
  it->status = t.step_status;
  it->attempts = t.attempts;
  it->output = t.output;
  it->error = t.error;
  it->wake_at = t.wake_at;
}

void release(soci::session& sql, const std::string& id, const std::string& token) {
  sql << "UPDATE requests SET lease_owner = NULL, lease_until = NULL, lease_token = NULL"
         " WHERE id = :id AND lease_token = :token",
      soci::use(id, "id"), soci::use(token, "token");
}

std::optional<std::string> stored_workflow_sha(soci::session& sql, const std::string& name, int version) {
  std::string existing;
  soci::indicator ind = soci::i_null;
  sql << "SELECT sha256 FROM workflow_versions WHERE name = :name AND version = :version", soci::use(name, "name"),
      soci::use(version, "version"), soci::into(existing, ind);
  if (!sql.got_data() || ind != soci::i_ok) return std::nullopt;
  return existing;
}

std::optional<std::string> store_workflow(soci::session& sql, const std::string& name, int version,
                                          const std::string& sha256, const std::string& source, UnixMillis now) {
  if (auto existing = stored_workflow_sha(sql, name, version)) {
    if (*existing != sha256) return existing;
    return std::nullopt;
  }
  long long at = now;
  sql << "INSERT INTO workflow_versions(name, version, sha256, source, created_at)"
         " VALUES (:name, :version, :sha, :source, :at) ON CONFLICT (name, version) DO NOTHING",
      soci::use(name, "name"), soci::use(version, "version"), soci::use(sha256, "sha"), soci::use(source, "source"),
      soci::use(at, "at");
  return std::nullopt;
}

void wake_received(soci::session& sql, const std::string& type, UnixMillis now) {
  long long at = now;
  sql << "UPDATE requests SET run_at = :now WHERE status = 'received' AND type = :type AND run_at > :now2",
      soci::use(at, "now"), soci::use(type, "type"), soci::use(at, "now2");
}

std::optional<std::string> workflow_source(soci::session& sql, const std::string& name, int version) {
  std::string source;
  soci::indicator ind = soci::i_null;
  sql << "SELECT source FROM workflow_versions WHERE name = :name AND version = :version", soci::use(name, "name"),
      soci::use(version, "version"), soci::into(source, ind);
  if (!sql.got_data() || ind != soci::i_ok) return std::nullopt;
  return source;
}

namespace {
// The step a request stopped at (parked for approval, or failed), and the
// status it stopped with, when an operator may decide on it now.
std::optional<std::pair<int, std::string>> decidable_step(soci::session& sql, const std::string& id,
                                                          std::initializer_list<std::string_view> statuses) {
  int next = 0;
  std::string status;
  sql << "SELECT next_step, status FROM requests WHERE id = :id", soci::use(id, "id"), soci::into(next),
      soci::into(status);
  if (!sql.got_data() || std::find(statuses.begin(), statuses.end(), status) == statuses.end()) return std::nullopt;
  return std::pair{next, status};
}
}  // namespace

bool approve(soci::session& sql, const std::string& id, const std::string& who, UnixMillis now) {
  auto parked = decidable_step(sql, id, {"awaiting_approval"});
  if (!parked) return false;
  long long at = now;
  int idx = parked->first;
  soci::statement update =
      (sql.prepare << "UPDATE requests SET status = 'running', next_step = next_step + 1, run_at = :at,"
                      " updated_at = :at2 WHERE id = :id AND status = 'awaiting_approval'",
       soci::use(at, "at"), soci::use(at, "at2"), soci::use(id, "id"));
  if (!changed(update)) return false;
  std::string succeeded = "succeeded";
  sql << "UPDATE request_steps SET status = :status, finished_at = :at WHERE request_id = :id AND idx = :idx",
      soci::use(succeeded, "status"), soci::use(at, "at"), soci::use(id, "id"), soci::use(idx, "idx");
  audit::append(sql, now, id, "request.approved", boost::json::serialize(boost::json::object{{"by", who}}));
  return true;
}

namespace {
// Whether a request already acted outside privacyd, judged for a rejection.
// Steps that act on nothing outside it: waiting, reading (collect reads
// the data systems, holdings the ledger) and packaging what was read. Any
// other step that succeeded, or that failed and may have half-run (an
// erase, an unlink, a webhook call that timed out after the far side
// acted), counts. Notice steps are judged by their notices: one delivered,
// or one that may have arrived (claimed now, or tried before), counts; one
// never tried is given up here, so the notifier cannot send it after the
// rejection (rolled back with everything else if the answer is no). A
// request whose position is lost (-1) is judged on all its steps.
bool acted_outside(soci::session& sql, const std::string& id, int stopped_at) {
  const int at = stopped_at < 0 ? std::numeric_limits<int>::max() : stopped_at;
  long long acted = 0;
  // A webhook call whose last answer was a 4xx was refused: HTTP says the
  // far side did not act on it (the error is engine/actions.cpp's).
  sql << "SELECT COUNT(*) FROM request_steps WHERE request_id = :id AND idx <= :idx"
         " AND action NOT IN ('approval', 'wait', 'systems.collect', 'ledger.holdings', 'export.package',"
         "   'notify.partner', 'notify.partners', 'notify.subject')"
         " AND (status = 'succeeded' OR (status = 'failed' AND NOT (action = 'webhook.call'"
         "   AND COALESCE(error, '') LIKE 'webhook.call answered 4%')))",
      soci::use(id, "id"), soci::use(at, "idx"), soci::into(acted);
  if (acted > 0) return true;
  sql << "UPDATE notices SET status = 'dead', last_error = 'its request was rejected'"
         " WHERE request_id = :id AND step_idx >= 0 AND status = 'pending' AND attempts = 0 AND claim_token IS NULL",
      soci::use(id, "id");
  sql << "SELECT COUNT(*) FROM notices WHERE request_id = :id AND step_idx >= 0 AND status IN ('delivered', 'pending')",
      soci::use(id, "id"), soci::into(acted);
  return acted > 0;
}
}  // namespace

Rejection reject(soci::session& sql, const std::string& id, const std::string& who, const std::string& reason,
                 UnixMillis now, const std::vector<Transition::Notice>& notices) {
  // A failed request may be rejected too: it is how an operator closes one
  // that would only fail again, which otherwise holds its subject's data
  // (and crypto-shredding) back for ever.
  // The request's row lock first, as the notifier and retry_notice take it.
  lock_request(sql, id);
  auto stopped = decidable_step(sql, id, {"awaiting_approval", "failed"});
  if (!stopped) return Rejection::not_decidable;
  long long at = now;
  const auto& [idx, was] = *stopped;
  // An approval is placed where the workflow's author wants a decision;
  // rejecting there is that decision, whatever ran before it.
  if (was == "failed" && acted_outside(sql, id, idx)) return Rejection::acted_outside;
  soci::statement update =
      (sql.prepare << "UPDATE requests SET status = 'rejected', reason = :reason, run_at = NULL, updated_at = :at"
                      " WHERE id = :id AND status = :was",
       soci::use(reason, "reason"), soci::use(at, "at"), soci::use(id, "id"), soci::use(was, "was"));
  if (!changed(update)) return Rejection::not_decidable;
  if (was == "awaiting_approval") {
    // A failed step keeps its own error; the approval step is what failed here.
    std::string failed = "failed";
    std::string error = "rejected by an operator";
    sql << "UPDATE request_steps SET status = :status, error = :error, finished_at = :at"
           " WHERE request_id = :id AND idx = :idx",
        soci::use(failed, "status"), soci::use(error, "error"), soci::use(at, "at"), soci::use(id, "id"),
        soci::use(idx, "idx");
  }
  // Rejected is final: nothing will read what was collected, or package it.
  sql << "DELETE FROM request_data WHERE request_id = :id", soci::use(id, "id");
  sql << "UPDATE exports SET package_enc = '', erased_at = COALESCE(erased_at, :at) WHERE request_id = :id",
      soci::use(at, "at"), soci::use(id, "id");
  insert_notices(sql, id, idx, notices, at);
  boost::json::array ids;
  for (const auto& n : notices) ids.emplace_back(n.id);
  audit::append(sql, now, id, "request.rejected",
                boost::json::serialize(boost::json::object{
                    {"by", who}, {"reason", reason}, {"was", was}, {"notices", std::move(ids)}}));
  return Rejection::rejected;
}

bool retry_request(soci::session& sql, const std::string& id, const std::string& who, UnixMillis now) {
  std::string status;
  int idx = 0;
  sql << "SELECT status, next_step FROM requests WHERE id = :id", soci::use(id, "id"), soci::into(status),
      soci::into(idx);
  if (!sql.got_data() || status != "failed" || idx < 0) return false;
  long long at = now;
  soci::statement update =
      (sql.prepare << "UPDATE requests SET status = 'running', reason = NULL, run_at = NULL, lease_owner = NULL,"
                      " lease_token = NULL, lease_until = NULL, updated_at = :at WHERE id = :r AND status = 'failed'",
       soci::use(at, "at"), soci::use(id, "r"));
  if (!changed(update)) return false;
  // A notify step that failed on a dead notice waits for that notice's
  // fresh delivery, as after retry_notice (the notifier wakes it); any other
  // step starts over at attempt 1.
  soci::statement revive =
      (sql.prepare << "UPDATE notices SET status = 'pending', attempts = 0, next_attempt_at = :at, lease_until = NULL"
                      " WHERE request_id = :r AND step_idx = :idx AND status = 'dead'",
       soci::use(at, "at"), soci::use(id, "r"), soci::use(idx, "idx"));
  revive.execute(true);
  const bool awaiting_notices = revive.get_affected_rows() > 0;
  std::string step_status = awaiting_notices ? "waiting" : "pending";
  sql << "UPDATE request_steps SET status = :status, attempts = 0, error = NULL, finished_at = NULL, wake_at = NULL"
         " WHERE request_id = :r AND idx = :idx",
      soci::use(step_status, "status"), soci::use(id, "r"), soci::use(idx, "idx");
  if (!awaiting_notices) {
    sql << "UPDATE requests SET run_at = :at WHERE id = :r", soci::use(at, "at"), soci::use(id, "r");
  }
  audit::append(sql, now, id, "request.retried", boost::json::serialize(boost::json::object{{"by", who}, {"step", idx}}));
  return true;
}

Extension extend(soci::session& sql, const std::string& id, const std::string& who, const std::string& reason,
                 UnixMillis deadline, UnixMillis now) {
  std::string status;
  soci::indicator extended = soci::i_null;
  long long extended_at = 0;
  sql << "SELECT status, extended_at FROM requests WHERE id = :id", soci::use(id, "id"), soci::into(status),
      soci::into(extended_at, extended);
  if (!sql.got_data()) return Extension::not_found;
  if (extended == soci::i_ok) return Extension::already_extended;
  if (status == "completed" || status == "rejected") return Extension::finished;
  long long at = now;
  long long until = deadline;
  soci::statement update =
      (sql.prepare << "UPDATE requests SET deadline_at = :deadline, extended_at = :at, extension_reason = :reason,"
                      " updated_at = :at2 WHERE id = :id AND extended_at IS NULL",
       soci::use(until, "deadline"), soci::use(at, "at"), soci::use(reason, "reason"), soci::use(at, "at2"),
       soci::use(id, "id"));
  update.execute(true);
  if (update.get_affected_rows() != 1) return Extension::already_extended;
  audit::append(sql, now, id, "request.extended",
                boost::json::serialize(boost::json::object{{"by", who}, {"reason", reason}, {"deadline_at", until}}));
  return Extension::extended;
}

bool retry_notice(soci::session& sql, const std::string& notice_id, const std::string& who, UnixMillis now) {
  std::string request_id;
  int idx = 0;
  std::string status;
  sql << "SELECT request_id, step_idx, status FROM notices WHERE id = :id", soci::use(notice_id, "id"),
      soci::into(request_id), soci::into(idx), soci::into(status);
  if (!sql.got_data() || status != "dead") return false;
  // The request's row lock first, as the notifier takes it: what the
  // request is doing is read, and changed, under it.
  lock_request(sql, request_id);
  // A step's notice of a rejected request stays dead: the person was told
  // it was not carried out, and a partner would hear otherwise. The
  // rejection's own mail (template subject-rejected) is delivered again.
  if (idx >= 0) {
    std::string request_status;
    long long rejection_mail = 0;
    sql << "SELECT r.status, (SELECT COUNT(*) FROM notices WHERE id = :n AND template = 'subject-rejected')"
           " FROM requests r WHERE r.id = :r",
        soci::use(notice_id, "n"), soci::use(request_id, "r"), soci::into(request_status), soci::into(rejection_mail);
    if (request_status == "rejected" && rejection_mail == 0) return false;
  }
  long long at = now;
  soci::statement revive =
      (sql.prepare << "UPDATE notices SET status = 'pending', attempts = 0, next_attempt_at = :at, lease_until = NULL"
                      " WHERE id = :id AND status = 'dead'",
       soci::use(at, "at"), soci::use(notice_id, "id"));
  if (!changed(revive)) return false;  // retried a moment ago, by someone else
  std::string request_status;
  int next_step = 0;
  sql << "SELECT status, next_step FROM requests WHERE id = :r", soci::use(request_id, "r"),
      soci::into(request_status), soci::into(next_step);
  // Only a request that failed on this notice's step waits on it again.
  // A callback or a reminder (no step), or the mail of an operator's
  // rejection (the request is rejected, and stays so), is delivered again
  // and nothing else changes.
  if (idx >= 0 && request_status == "failed" && next_step == idx) {
    // The step waits for delivery again; the notifier wakes it, and it
    // succeeds or fails on what happens now.
    sql << "UPDATE request_steps SET status = 'waiting', error = NULL, finished_at = NULL"
           " WHERE request_id = :r AND idx = :idx AND status = 'failed'",
        soci::use(request_id, "r"), soci::use(idx, "idx");
    sql << "UPDATE requests SET status = 'running', reason = NULL, run_at = NULL, updated_at = :at"
           " WHERE id = :r AND status = 'failed'",
        soci::use(at, "at"), soci::use(request_id, "r");
  }
  audit::append(sql, now, request_id, "notice.retried",
                boost::json::serialize(boost::json::object{{"notice_id", notice_id}, {"by", who}}));
  return true;
}

}  // namespace privacyd::runs
