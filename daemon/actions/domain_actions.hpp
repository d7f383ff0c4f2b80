#pragma once
// The actions that make the three request types (SPEC §4): systems.collect,
// systems.erase, systems.unlink, ledger.holdings and export.package. They
// plug into the engine's registry; the engine makes them durable.

#include "daemon/actions/systems.hpp"
#include "daemon/base/log.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/engine/action.hpp"
#include "daemon/policy/policy_store.hpp"
#include "daemon/store/database.hpp"

namespace privacyd::actions {

struct Dependencies {
  Database& db;  // privacyd's own
  const policy::PolicyStore& policies;
  SystemConnections& systems;
  const crypto::KeyRing& keys;
  Logger& log;
  Duration package_ttl = std::chrono::hours(24 * 7);  // how long an access package's link works
};

void add_domain_actions(engine::ActionRegistry& registry, const Dependencies& deps);

// The same actions' specs, for validating workflows without running them.
engine::ActionCatalog domain_action_specs();

}  // namespace privacyd::actions
