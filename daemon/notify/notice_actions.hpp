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
  std::string from;  // From: of subject notices
};

void add_notice_actions(engine::ActionRegistry& registry, const NoticeDependencies& deps);
engine::ActionCatalog notice_action_specs();

// `policies/notices` beside the policies.
std::filesystem::path templates_dir(const std::filesystem::path& policies_dir);

// Every template a workflow step names must exist (checked at load time).
void check_workflow_templates(const engine::WorkflowSet& workflows, const Templates& templates, Diagnostics& out);

}  // namespace privacyd::notify
