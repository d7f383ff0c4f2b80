// check and migrate: one-shot commands for operators and deploy scripts.
#include <iostream>

#include "daemon/cli/commands.hpp"
#include "daemon/cli/editable.hpp"
#include "daemon/cli/key_files.hpp"
#include <soci/soci.h>

#include "daemon/actions/domain_actions.hpp"
#include "daemon/audit/audit.hpp"
#include "daemon/config/config.hpp"
#include "daemon/engine/action.hpp"
#include "daemon/engine/workflow.hpp"
#include "daemon/notify/notice_actions.hpp"
#include "daemon/policy/policies.hpp"
#include "daemon/store/database.hpp"
#include "daemon/store/migrations.hpp"
#include "daemon/store/runs.hpp"

namespace privacyd::cli {

namespace {

// A workflow file edited without a new version would be refused at the
// next reload; say so now, when the database holds versions already. A
// database that is absent or unreachable is not check's business.
void compare_with_database(const Config& config, const engine::WorkflowSet& set, Diagnostics& problems) {
  if (config.database.backend == DatabaseConfig::Backend::sqlite3) {
    auto db_path = config.database.parameters.substr(3, config.database.parameters.find(' ') - 3);
    if (!std::filesystem::exists(db_path)) return;
  }
  std::FILE* devnull = std::fopen("/dev/null", "w");
  Logger quiet(devnull, LogLevel::error, false);
  try {
    Database db(config.database, quiet);
    if (schema_version(db) >= 2) {
      db.with_session([&](soci::session& sql) {
        for (const auto& w : set.workflows) {
          auto stored = runs::stored_workflow_sha(sql, w.name, w.version);
          if (stored && *stored != w.sha256) {
            problems.push_back({w.path, 1, 1,
                                "workflow \"" + w.name + "\" version " + std::to_string(w.version) +
                                    " changed since it was first loaded; give the new text a new version",
                                "workflow"});
          }
        }
      });
    }
  } catch (const std::exception&) {
  }
  std::fclose(devnull);
}

}  // namespace

int check(const std::filesystem::path& config_file, const std::string& format) {
  auto result = load_config(config_file);
  Diagnostics problems = result.problems;
  std::size_t workflow_count = 0;
  std::size_t partner_count = 0;
  if (result.config) {
    auto loaded = load_editable(*result.config, action_catalog(*result.config), problems);
    partner_count = loaded.policies.partners.size();
    workflow_count = loaded.workflows.workflows.size();
    if (problems.empty()) {
      // The keys, secrets and tokens: each read as what it is, so a check
      // that passes means serve can read them too (SPEC §11).
      auto files = key_files(*result.config, loaded.policies);
      if (auto clash = clashing_names(files)) {
        problems.push_back({result.config->file.string(), 0, 0, *clash, "key"});
      }
      check_key_files(*result.config, files, problems);
    }
    if (problems.empty()) compare_with_database(*result.config, loaded.workflows, problems);
  }
  if (format == "json") {
    std::cout << format_json(problems) << '\n';
  } else {
    for (const auto& p : problems) std::cout << format_text(p) << '\n';
  }
  if (!problems.empty()) {
    if (format != "json") std::cerr << problems.size() << " problem(s) found\n";
    return 1;
  }
  if (format != "json") {
    std::cout << config_file.string() << ": config OK, " << workflow_count << " workflow(s), " << partner_count
              << " partner(s) OK\n";
  }
  return 0;
}

int audit_verify(const std::filesystem::path& config_file) {
  auto result = load_config(config_file);
  for (const auto& p : result.problems) std::cerr << format_text(p) << '\n';
  if (!result.config) return 2;
  auto log = Logger::to_stderr(result.config->log_level);
  try {
    Database db(result.config->database, log);
    audit::Verification v;
    db.with_session([&](soci::session& sql) {
      soci::transaction tr(sql);
      lift_deadlines(sql);  // the whole chain, however long
      v = audit::verify(sql);
      tr.commit();
    });
    if (!v.intact) {
      std::cout << "audit chain broken at entry " << v.broken_seq << ": " << v.problem << '\n';
      return 1;
    }
    std::cout << "audit chain intact: " << v.entries << " entries\n";
    return 0;
  } catch (const std::exception& e) {
    log.error("audit verify failed", {{"error", e.what()}});
    return 2;
  }
}

int migrate(const std::filesystem::path& config_file) {
  auto result = load_config(config_file);
  for (const auto& p : result.problems) std::cerr << format_text(p) << '\n';
  if (!result.config) return 1;
  auto log = Logger::to_stderr(result.config->log_level);
  try {
    Database db(result.config->database, log);
    auto report = migrate(db, log);
    std::cout << "schema at version " << report.to << " (was " << report.from << ")\n";
    return 0;
  } catch (const std::exception& e) {
    log.error("migrate failed", {{"error", e.what()}});
    return 1;
  }
}

}  // namespace privacyd::cli
