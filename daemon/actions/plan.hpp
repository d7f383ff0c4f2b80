#pragma once
// A dry run (SPEC §16): what a request would do to a subject now, changing
// nothing. The workflow and version that would run; each step, with its
// `if:` evaluated against what privacyd holds of the subject; the systems
// and statements each step would run, with the rows each access query
// finds now (run read-only; erase and unlink statements are never run);
// the retention holds that would apply and when they would end; the
// notices and their recipients; the deadline. No personal data: the
// subject is described (known, has an email address), never shown.

#include <boost/json/object.hpp>
#include <string>
#include <vector>

#include "daemon/actions/systems.hpp"
#include "daemon/base/time.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/engine/workflow.hpp"
#include "daemon/policy/policies.hpp"
#include "daemon/store/database.hpp"

namespace privacyd::actions {

struct PlanQuery {
  std::string type;     // access | deletion | disassociation
  std::string subject;  // the HUAWEI ID
  std::string partner;  // disassociation: the partner to end the association with
  std::vector<std::string> categories;  // none: every category
  std::string jurisdiction;             // none: the default
};

struct PlanDependencies {
  Database& db;
  SystemConnections& systems;
  const crypto::KeyRing& keys;
  const policy::Policies& policies;
  const engine::WorkflowSet& workflows;
  bool callbacks = false;  // the Partner Center is called back (partner_center.callback_url)
};

// A query that cannot be planned (an unknown type, a missing partner).
class BadPlanQuery : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// The query from its JSON form: {type, subject, partner, categories: [...],
// jurisdiction} (missing members are empty). Throws BadPlanQuery.
PlanQuery plan_query(const boost::json::object& query);

// Blocking: reads privacyd's database and the data systems, each in a
// read-only transaction that is rolled back. Throws BadPlanQuery.
boost::json::object plan(const PlanDependencies& deps, const PlanQuery& query, UnixMillis now);

// The plan for a person to read.
std::string plan_text(const boost::json::object& plan);

}  // namespace privacyd::actions
