// check and migrate: one-shot commands for operators and deploy scripts.
#include <iostream>

#include "daemon/cli/commands.hpp"
#include "daemon/config/config.hpp"
#include "daemon/store/database.hpp"
#include "daemon/store/migrations.hpp"

namespace privacyd::cli {

int check(const std::filesystem::path& config_file, const std::string& format) {
  auto result = load_config(config_file);
  if (format == "json") {
    std::cout << format_json(result.problems) << '\n';
  } else {
    for (const auto& p : result.problems) std::cout << format_text(p) << '\n';
  }
  if (!result.problems.empty()) {
    if (format != "json") std::cerr << result.problems.size() << " problem(s) found\n";
    return 1;
  }
  if (format != "json") std::cout << config_file.string() << ": config OK\n";
  return 0;
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
