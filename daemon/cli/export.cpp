// export: prints a request's access package, decrypted, for an operator on
// the machine that holds the keys (the admin API hands it out remotely).
#include <iostream>
#include <soci/soci.h>

#include "daemon/cli/commands.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/store/database.hpp"
#include "daemon/store/key_store.hpp"

namespace privacyd::cli {

int export_package(const std::filesystem::path& config_file, const std::string& request_id) {
  auto loaded = load_config(config_file);
  for (const auto& p : loaded.problems) std::cerr << format_text(p) << '\n';
  if (!loaded.config) return 2;
  const Config& config = *loaded.config;
  auto log = Logger::to_stderr(config.log_level);
  try {
    auto keys = crypto::KeyRing::load(config.keys.data_key_file, config.keys.previous_key_files,
                                      config.keys.index_key_file);
    Database db(config.database, log);
    auto vault = open_key_vault(config.keys.store, keys, log);
    std::string sealed;
    soci::indicator ind = soci::i_null;
    db.with_session([&](soci::session& sql) {
      sql << "SELECT package_enc FROM exports WHERE request_id = :id", soci::use(request_id, "id"),
          soci::into(sealed, ind);
    });
    if (ind != soci::i_ok) {
      std::cerr << "no access package for that request\n";
      return 1;
    }
    if (sealed.empty()) {
      std::cerr << "the package expired and was erased (access.package_ttl)\n";
      return 1;
    }
    auto package = keys.open(sealed, "exports.package");
    if (!package) {
      std::cerr << "the package cannot be decrypted with the configured keys\n";
      return 1;
    }
    std::cout << *package << '\n';
    return 0;
  } catch (const std::exception& e) {
    log.error("export failed", {{"error", e.what()}});
    return 2;
  }
}

}  // namespace privacyd::cli
