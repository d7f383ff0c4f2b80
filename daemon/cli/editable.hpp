#pragma once
// What operators edit besides the config — the policies with their notice
// templates, and the workflows — loaded and checked against each other in
// one place, for `check`, for `serve` at start and for every reload.

#include "daemon/base/diagnostic.hpp"
#include "daemon/config/config.hpp"
#include "daemon/engine/workflow.hpp"
#include "daemon/notify/templates.hpp"
#include "daemon/policy/policies.hpp"

namespace privacyd::cli {

struct Editable {
  policy::Policies policies;
  notify::Templates templates;
  engine::WorkflowSet workflows;
};

// Every action a workflow may name: the built-in ones, the data-system
// actions and the notices.
engine::ActionCatalog action_catalog(const Config& config);

// Loads all of it; every problem goes to `problems`, in file order within
// each kind.
Editable load_editable(const Config& config, const engine::ActionCatalog& catalog, Diagnostics& problems);

}  // namespace privacyd::cli
