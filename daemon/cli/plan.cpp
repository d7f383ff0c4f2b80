// `privacyd plan --config F TYPE --subject ID [--partner P] [--categories
// a,b] [--jurisdiction J] [--json]` (SPEC §16): what a request would do
// now, changing nothing.
#include <boost/json.hpp>
#include <iostream>

#include "daemon/actions/plan.hpp"
#include "daemon/cli/commands.hpp"
#include "daemon/cli/editable.hpp"
#include "daemon/store/key_store.hpp"

namespace privacyd::cli {

int plan(const std::filesystem::path& config_file, const PlanOptions& options) {
  auto loaded = load_config(config_file);
  for (const auto& p : loaded.problems) std::cerr << format_text(p) << '\n';
  if (!loaded.config) return 2;
  const Config& config = *loaded.config;
  auto log = Logger::to_stderr(config.log_level);
  try {
    Diagnostics problems;
    auto editable = load_editable(config, action_catalog(config), problems);
    for (const auto& p : problems) std::cerr << format_text(p) << '\n';
    if (!problems.empty()) return 2;
    auto keys = crypto::KeyRing::load(config.keys.data_key_file, config.keys.previous_key_files,
                                      config.keys.index_key_file);
    Database db(config.database, log);
    auto vault = open_key_vault(config.keys.store, keys, log);
    actions::SystemConnections systems(log);
    const actions::PlanDependencies deps{db, systems, keys, editable.policies, editable.workflows,
                                         !config.partner_center.callback_url.empty()};
    const actions::PlanQuery query{options.type, options.subject, options.partner, options.categories,
                                   options.jurisdiction};
    boost::json::object out;
    try {
      out = actions::plan(deps, query, to_unix_ms(std::chrono::system_clock::now()));
    } catch (const actions::BadPlanQuery& e) {
      std::cerr << "cannot plan that: " << e.what() << '\n';
      systems.shutdown();
      return 1;
    }
    systems.shutdown();
    if (options.json) {
      std::cout << boost::json::serialize(out) << '\n';
    } else {
      std::cout << actions::plan_text(out);
    }
    return 0;
  } catch (const std::exception& e) {
    log.error("plan failed", {{"error", e.what()}});
    return 2;
  }
}

}  // namespace privacyd::cli
