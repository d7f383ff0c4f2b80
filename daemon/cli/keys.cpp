// keys status and keys rotate (SPEC §14): what each master key id still
// protects, and moving all of it under the current master key, online.
#include <chrono>
#include <iostream>

#include "daemon/cli/commands.hpp"
#include "daemon/config/config.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/store/database.hpp"
#include "daemon/store/key_rotation.hpp"
#include "daemon/store/key_store.hpp"
#include "daemon/store/migrations.hpp"

namespace privacyd::cli {

int keys_command(const std::filesystem::path& config_file, const std::string& action, int batch, int max_batches) {
  auto loaded = load_config(config_file);
  for (const auto& p : loaded.problems) std::cerr << format_text(p) << '\n';
  if (!loaded.config) return 1;
  const Config& config = *loaded.config;
  auto log = Logger::to_stderr(LogLevel::warn);
  try {
    auto keys = crypto::KeyRing::load(config.keys.data_key_file, config.keys.previous_key_files,
                                      config.keys.index_key_file);
    Database main(config.database, log);
    migrate(main, log);
    auto vault = open_key_vault(config.keys.store, keys, log);
    if (action == "status") {
      auto counts = count_key_use(main, *vault.db);
      std::cout << "current master key: " << keys.key_id() << '\n';
      if (counts.by_key.empty()) std::cout << "nothing is sealed yet\n";
      for (const auto& [id, what] : counts.by_key) {
        long long total = 0;
        for (const auto& [_, n] : what) total += n;
        std::cout << id << (id == keys.key_id() ? " (current)" : "") << ": " << total << '\n';
        for (const auto& [name, n] : what) std::cout << "  " << name << ": " << n << '\n';
      }
      if (counts.legacy_subjects > 0) {
        std::cout << "subjects still sealed under the master key (privacyd serve moves them under keys of their own): "
                  << counts.legacy_subjects << '\n';
      }
      return 0;
    }
    // rotate
    const auto start = std::chrono::steady_clock::now();
    long long unreadable = 0, total = 0;
    int batches = 0;
    RotationProgress progress;
    while (max_batches <= 0 || batches < max_batches) {
      progress.done = 0;
      if (!rotate_batch(main, *vault.db, keys, batch, progress, unreadable)) break;
      ++batches;
      total += progress.done;
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::cerr << "rotated " << total << " (" << progress.what << ", " << static_cast<long long>(static_cast<double>(total) / std::max(secs, 1e-3))
                << "/s)\n";
    }
    const bool finished = max_batches <= 0 || batches < max_batches;
    std::cout << (finished ? "rotation complete: " : "rotation paused: ") << total << " value(s) re-sealed under "
              << keys.key_id();
    if (unreadable > 0) std::cout << "; " << unreadable << " value(s) no configured key opens were left as they are";
    std::cout << '\n';
    return unreadable > 0 ? 1 : 0;
  } catch (const std::exception& e) {
    log.error("keys failed", {{"error", describe_failure(e)}});
    return 2;
  }
}

}  // namespace privacyd::cli
