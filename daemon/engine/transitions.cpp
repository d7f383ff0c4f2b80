// What a run does next, decided from the request as it stands: the
// transitions of one segment (see Segment), with its local steps run in the
// segment's transaction.

#include <boost/json.hpp>
#include <soci/soci.h>

#include "daemon/crypto/primitives.hpp"
#include "daemon/engine/engine_impl.hpp"

namespace privacyd::engine {

namespace json = boost::json;

runs::Transition::Notice outbox_entry(NoticeDraft&& n) {
  return {std::move(n.id),         std::move(n.channel), std::move(n.recipient),      std::move(n.template_name),
          std::move(n.payload_enc), n.awaited,           n.ack_due_at,                n.next_reminder_at,
          std::move(n.ack_token_sha256)};
}

json::value request_context(const runs::RunRow& row, const crypto::KeyRing& keys) {
  json::object request{{"id", row.id},
                       {"type", row.type},
                       {"status", row.status},
                       {"jurisdiction", row.jurisdiction},
                       {"subject_id", row.subject_id},
                       {"received_at", row.received_at}};
  boost::system::error_code ec;
  request["categories"] = json::parse(row.categories, ec);
  if (row.partner_id) request["partner_id"] = *row.partner_id;
  if (row.key_id) request["subject_key"] = *row.key_id;
  json::object subject;
  if (auto id = keys.open(row.huawei_id_enc, "subjects.huawei_id")) subject["huawei_id"] = *id;
  if (row.contact_enc) {
    if (auto contact = keys.open(*row.contact_enc, "subjects.contact")) {
      auto parsed = json::parse(*contact, ec);
      if (!ec && parsed.is_object()) {
        for (const auto& [k, v] : parsed.get_object()) subject[k] = v;
      }
    }
  }
  if (row.locale) subject["locale"] = *row.locale;
  json::object partner;
  if (row.partner_id) partner["id"] = *row.partner_id;
  json::object steps;
  for (const auto& s : row.steps) {
    json::value out = json::object{};
    if (s.output) {
      auto parsed = json::parse(*s.output, ec);
      if (!ec) out = std::move(parsed);
    }
    steps[s.step_id] = std::move(out);
  }
  return json::object{{"request", std::move(request)},
                      {"subject", std::move(subject)},
                      {"partner", std::move(partner)},
                      {"steps", std::move(steps)}};
}

void Engine::Impl::add_finished_notices(const runs::RunRow& row, runs::Transition& t, UnixMillis at) const {
  if (!options.finished_notices) return;
  try {
    for (auto& n : options.finished_notices(row, t.request_status, t.reason.value_or(""), at)) {
      t.notices.push_back(outbox_entry(std::move(n)));
    }
  } catch (const std::exception& e) {
    // The end itself must still be recorded; the callback is the loss.
    log.error("callback not written", {{"request_id", row.id}, {"error", describe_failure(e)}});
  }
}

runs::Transition Engine::Impl::outcome(const runs::RunRow& row, std::size_t idx, const StepDef& step,
                                       ActionResult&& result, int attempt, const json::value& context,
                                       const std::optional<std::string>& previous_output, const std::string& token,
                                       UnixMillis at) {
  runs::Transition t;
  t.request_id = row.id;
  t.owner = options.instance;
  t.token = token;
  t.now = at;
  t.step_idx = static_cast<int>(idx);
  t.step_id = step.id;
  t.action = step.action;
  t.next_step = row.next_step;
  t.attempts = attempt;
  t.request_status = "running";
  switch (result.kind) {
    case ActionResult::Kind::succeeded:
      t.step_status = "succeeded";
      t.output = json::serialize(result.output.is_null() ? json::value(json::object{}) : result.output);
      t.next_step = row.next_step + 1;
      t.run_at = at;
      t.lease_until = at + ms(options.lease);
      t.audit_event = "step.succeeded";
      t.audit_detail = json::serialize(json::object{{"step", step.id}, {"attempt", attempt}});
      break;
    case ActionResult::Kind::failed:
      // What the attempts so far did stays with the step: the next
      // attempt (or an operator's retry) builds on it.
      t.output = result.output.is_null() ? previous_output : json::serialize(result.output);
      t.error = result.error;
      if (result.retryable && attempt < step.retry.attempts) {
        auto delay = retry_delay(step.retry, attempt + 1, unit_random());
        t.step_status = "waiting";
        t.wake_at = std::nullopt;
        t.run_at = at + ms(delay);
        t.audit_event = "step.failed";
        t.audit_detail = json::serialize(json::object{{"step", step.id}, {"attempt", attempt}, {"retry_at", *t.run_at},
                                                      {"error", runs::bounded_error(result.error)}});
      } else {
        t.step_status = "failed";
        t.request_status = "failed";
        t.reason = "step " + step.id + " failed";
        t.audit_event = "step.failed";
        t.audit_detail = json::serialize(json::object{{"step", step.id}, {"attempt", attempt}, {"final", true},
                                                      {"error", runs::bounded_error(result.error)}});
      }
      break;
    case ActionResult::Kind::wait:
      t.step_status = "waiting";
      t.wake_at = result.wake_at;
      t.run_at = result.wake_at;
      t.audit_event = "step.waiting";
      t.audit_detail = json::serialize(json::object{{"step", step.id}, {"until", result.wake_at}});
      break;
    case ActionResult::Kind::park:
      t.step_status = "waiting";
      t.output = json::serialize(result.output.is_null() ? json::value(json::object{}) : result.output);
      t.request_status = "awaiting_approval";
      t.reason = result.reason;
      t.audit_event = "request.awaiting_approval";
      t.audit_detail = json::serialize(json::object{{"step", step.id}, {"reason", result.reason}});
      break;
    case ActionResult::Kind::await_notices: {
      // Woken by the notifier when every notice is delivered or dead.
      t.step_status = "waiting";
      t.await_notices = true;
      json::array ids;
      for (auto& n : result.notices) {
        ids.emplace_back(n.id);
        t.notices.push_back(outbox_entry(std::move(n)));
      }
      t.audit_event = t.notices.empty() ? "step.waiting" : "notices.queued";
      t.audit_detail = json::serialize(json::object{{"step", step.id}, {"notices", std::move(ids)}});
      break;
    }
    case ActionResult::Kind::reject:
      t.step_status = "succeeded";
      t.next_step = row.next_step + 1;
      t.request_status = "rejected";
      t.reason = result.reason;
      t.audit_event = "request.rejected";
      t.audit_detail = json::serialize(json::object{{"step", step.id}, {"reason", result.reason}});
      if (options.rejection_notices) {
        try {
          for (auto& n : options.rejection_notices(context, result.reason, at)) {
            t.notices.push_back(outbox_entry(std::move(n)));
          }
        } catch (const std::exception& e) {
          // Templates are checked at load, so this is not expected; the
          // rejection itself must still be recorded.
          log.error("rejection notice not written", {{"request_id", row.id}, {"error", describe_failure(e)}});
        }
      }
      add_finished_notices(row, t, at);
      break;
  }
  return t;
}

void Engine::Impl::run_segment(soci::session& sql, Segment& s) {
  s.row = s.start;
  s.applied.clear();
  s.lost = false;
  s.external.reset();
  s.held.reset();
  s.awaiting = false;
  s.awaited.clear();
  s.drained = false;
  s.failure = nullptr;
  // Leases count from when the work runs, not from when it was queued.
  s.at = now();
  const UnixMillis at = s.at;
  s.notice_lease.reset();
  if (s.hand_over) {
    s.notice_lease = runs::NoticeLease{crypto::hex(crypto::random_bytes(12)), at + ms(options.handoff_lease)};
  }
  for (const auto& delivery : s.deliveries) {
    if (!delivery.record(sql)) {
      log.warn("notice attempt outcome dropped: its claim was lost", {{"notice_id", delivery.notice_id}});
    }
  }
  // Takes `t` into the segment and brings the row up to date. The
  // segment's transitions are written together at its end (write_all),
  // the request's row once: local steps only read privacyd's database.
  auto apply = [&](runs::Transition&& t) {
    if (!t.notices.empty()) t.notice_lease = s.notice_lease;
    runs::advance(s.row, t);
    s.applied.push_back(std::move(t));
  };
  // One write under the claim's token, which takes the request's row
  // lock: when the claim was lost, nothing of the segment is written.
  auto write_all = [&] {
    if (runs::apply(sql, s.applied)) return;
    s.lost = true;
    s.applied.clear();
    s.external.reset();
    s.held.reset();
    s.awaiting = false;
    s.awaited.clear();
    s.failure = nullptr;
  };
  // Whether the run goes on after the last transition (it keeps its lease).
  auto goes_on = [&] { return static_cast<bool>(s.applied.back().lease_until); };
  if (s.first) {
    runs::Transition t = *s.first;
    if (t.lease_until) t.lease_until = at + ms(options.lease);
    apply(std::move(t));
    if (!goes_on() || s.only_first) {
      write_all();
      return;
    }
  }
  if (s.only_first) return;
  // Each turn moves the request on by a step at least, or ends the segment.
  auto walk = [&] {
    for (;;) {
      if (draining) {
        // Local steps are done with; the next step (or a claim elsewhere)
        // waits for the next process.
        s.drained = true;
        return;
      }
      const runs::RunRow& row = s.row;
      runs::Transition t;
      t.request_id = row.id;
      t.owner = s.owner;
      t.token = s.token;
      t.now = at;

      if (row.status == "received") {
        const Workflow* w = s.workflow.get();
        if (w == nullptr) {
          // Nothing to run it on yet: look again in a minute (an operator
          // may add the workflow and reload).
          t.request_status = row.status;
          t.run_at = at + 60000;
          t.audit_event = "request.waiting_for_workflow";
          apply(std::move(t));
          return;
        }
        t.request_status = "running";
        t.workflow_name = w->name;
        t.workflow_version = w->version;
        t.run_at = at;
        t.lease_until = at + ms(options.lease);
        t.audit_event = "request.started";
        t.audit_detail = json::serialize(json::object{{"workflow", w->name}, {"version", w->version}});
        apply(std::move(t));
        continue;
      }
      if (row.status != "running") return;  // the driver gives the lease back

      const Workflow* workflow = s.workflow.get();
      const auto idx = static_cast<std::size_t>(row.next_step);
      if (workflow == nullptr || row.next_step < 0) {
        // Never a guess: a request whose place in its workflow is unknown
        // fails loudly rather than being taken for finished.
        t.request_status = "failed";
        t.next_step = row.next_step;
        t.reason = workflow ? "corrupt_position" : "workflow_unavailable";
        t.audit_event = "request.failed";
        t.audit_detail = json::serialize(json::object{
            {"reason", workflow ? "the request's next step is not in its workflow"
                                : "the pinned workflow version cannot be loaded"}});
        apply(std::move(t));
        return;
      }
      if (idx >= workflow->steps.size()) {
        t.request_status = "completed";
        t.next_step = row.next_step;
        t.audit_event = "request.completed";
        t.shred_subject = row.type == "deletion";
        add_finished_notices(row, t, at);
        apply(std::move(t));
        return;
      }

      const StepDef& step = workflow->steps[idx];
      const runs::StepRow* previous = nullptr;
      for (const auto& r : row.steps) {
        if (r.idx == static_cast<int>(idx)) previous = &r;
      }
      t.step_idx = static_cast<int>(idx);
      t.step_id = step.id;
      t.action = step.action;
      t.next_step = row.next_step;
      json::value context = request_context(row, keys);

      if (step.condition && !step.condition->evaluate(context)) {
        t.step_status = "skipped";
        t.attempts = previous ? previous->attempts : 0;
        t.request_status = "running";
        t.next_step = row.next_step + 1;
        t.run_at = at;
        t.lease_until = at + ms(options.lease);
        t.audit_event = "step.skipped";
        t.audit_detail = json::serialize(json::object{{"step", step.id}});
        apply(std::move(t));
        continue;
      }

      Action* action = actions.find(step.action);
      std::optional<UnixMillis> woken_from;
      if (previous && previous->status == "waiting" && previous->wake_at && *previous->wake_at <= at) {
        woken_from = previous->wake_at;
      }
      const int attempt = (previous ? previous->attempts : 0) + (woken_from ? 0 : 1);
      const std::optional<std::string> previous_output = previous ? previous->output : std::nullopt;
      LocalAction* local = action != nullptr ? action->as_local() : nullptr;

      if (action != nullptr && local == nullptr) {
        if (!woken_from) {
          // Committed before the action runs: a crash from here on shows the
          // step as running, and the step runs again on resume.
          t.step_status = "running";
          t.attempts = attempt;
          t.request_status = "running";
          t.run_at = at;
          // The lease alone, renewed while the action runs: a crashed
          // instance's step is taken over after a lease, whatever its timeout.
          t.lease_until = at + ms(options.lease);
          t.output = previous_output;  // what earlier attempts did
          t.audit_event = "step.started";
          t.audit_detail = json::serialize(json::object{{"step", step.id}, {"attempt", attempt}});
          apply(std::move(t));
        }
        s.external = ExternalStep{idx, attempt, woken_from, std::move(context), previous_output};
        return;
      }

      ActionResult result;
      if (local == nullptr) {
        result = ActionResult::failure("action " + step.action + " is not available", false);
      } else {
        json::value earlier;
        if (previous_output) {
          if (const auto* steps = context.as_object().if_contains("steps")) {
            if (const auto* mine = steps->as_object().if_contains(step.id)) earlier = *mine;
          }
        }
        const ActionContext ctx{row.id, row.type, step, attempt, row.id + ":" + step.id, at, woken_from, context,
                                workflow, earlier.is_null() ? nullptr : &earlier};
        try {
          result = local->run_local(sql, ctx);
        } catch (const PermanentFailure& e) {
          result = ActionResult::failure(e.what(), false);
        } catch (const soci::soci_error&) {
          throw;  // privacyd's own database: the transaction is lost, and the run taken up again
        } catch (const DatabaseUnavailable&) {
          throw;
        } catch (const DatabaseConflict&) {
          throw;
        } catch (const std::exception& e) {
          // Bounded and value-free: a failed statement's message carries
          // what was bound to it.
          result = ActionResult::failure(describe_failure(e), true);
        }
      }
      runs::Transition out =
          outcome(row, idx, step, std::move(result), attempt, context, previous_output, s.token, at);
      if (out.await_notices && out.notices.empty() && !options.await_gate.empty()) {
        s.held = std::move(out);
        return;
      }
      // Notices handed over are awaited in memory, the lease kept: their
      // deliveries come back to be committed with what the step does next.
      // Should this process die, the lease lapses, and whichever notifier
      // settles them wakes the request (run_at stays NULL until then).
      const bool await_here = out.await_notices && !out.notices.empty() && s.notice_lease && s.may_await;
      if (await_here) {
        out.lease_until = at + ms(options.lease);
        for (const auto& n : out.notices) {
          if (n.awaited) s.awaited.push_back(n.id);
        }
      }
      apply(std::move(out));
      if (await_here) {
        s.awaiting = true;
        return;
      }
      if (!goes_on()) return;
    }
  };
  try {
    walk();
  } catch (const soci::soci_error&) {
    throw;  // privacyd's own database: the transaction is lost
  } catch (const std::logic_error&) {
    throw;
  } catch (const std::exception&) {
    // Outside privacyd's database (the key store, a template): what was
    // applied stands and is committed; the run stops there.
    s.failure = std::current_exception();
  }
  write_all();
}

}  // namespace privacyd::engine
