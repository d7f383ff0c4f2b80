#include "daemon/cli/editable.hpp"

#include "daemon/actions/domain_actions.hpp"
#include "daemon/engine/action.hpp"
#include "daemon/notify/notice_actions.hpp"

namespace privacyd::cli {

engine::ActionCatalog action_catalog(const Config& config) {
  engine::ActionRegistry builtins;
  engine::add_builtin_actions(builtins, config.workflows);
  auto catalog = builtins.catalog();
  for (auto& spec : actions::domain_action_specs()) catalog.push_back(std::move(spec));
  for (auto& spec : notify::notice_action_specs()) catalog.push_back(std::move(spec));
  return catalog;
}

Editable load_editable(const Config& config, const engine::ActionCatalog& catalog, Diagnostics& problems) {
  auto policies = policy::load_policies(config.policies, config.file.parent_path(), problems);
  auto templates = notify::Templates::load(notify::templates_dir(config.policies), problems);
  auto workflows = engine::load_workflows(config.workflows, catalog, problems);
  notify::check_workflow_templates(workflows, templates, problems);
  return {std::move(policies), std::move(templates), std::move(workflows)};
}

}  // namespace privacyd::cli
