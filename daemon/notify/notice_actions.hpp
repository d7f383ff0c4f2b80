#pragma once
// notify.partner, notify.partners and notify.subject (SPEC §7). On its
// first run a step renders its notices and hands them to the engine, which
// commits them to the outbox with the step; once the notifier has
// delivered them all the step succeeds, and a dead notice fails it.

#include "daemon/base/current.hpp"
#include "daemon/config/config.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/engine/action.hpp"
#include "daemon/notify/templates.hpp"
#include "daemon/policy/policy_store.hpp"
#include "daemon/store/database.hpp"

namespace privacyd::notify {

// The loaded templates, swapped whole on reload like the policies.
using TemplateStore = Current<Templates>;

struct NoticeDependencies {
  Database& db;
  const policy::PolicyStore& policies;
  const TemplateStore& templates;
  const crypto::KeyRing& keys;
  const Config& config;
  // Where people and partners reach the public listener: the start of
  // every link (config public_url, or the listener as bound).
  const std::string& public_url;
  const std::string& from() const { return config.notices.from; }
};

// A partner notice's acknowledgement terms, stamped on the draft: due
// date, first reminder, and for a partner reached by email a link token
// (returned; only its digest goes on the draft).
std::string ask_for_acknowledgement(const NoticeDependencies& deps, const policy::Partner& partner,
                                    engine::NoticeDraft& n, UnixMillis now);

void add_notice_actions(engine::ActionRegistry& registry, const NoticeDependencies& deps);
engine::ActionCatalog notice_action_specs();

// `policies/notices` beside the policies.
std::filesystem::path templates_dir(const std::filesystem::path& policies_dir);

// The mail that tells the person why their request was rejected (SPEC §4):
// by a step (`reason` is a code such as not_associated) or by an operator
// (their words). Empty when the subject gave no usable email address.
inline constexpr std::string_view kRejectionTemplate = "subject-rejected";
inline constexpr std::string_view kReminderTemplate = "partner-reminder";
std::vector<engine::NoticeDraft> rejection_notices(const NoticeDependencies& deps, const boost::json::value& context,
                                                   std::string_view reason, bool by_operator, UnixMillis now);
// Every template a workflow step names must exist, and so must the
// rejection template whatever the workflows say (checked at load time).
void check_workflow_templates(const engine::WorkflowSet& workflows, const Templates& templates, Diagnostics& out);

}  // namespace privacyd::notify
