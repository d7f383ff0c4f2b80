#pragma once
// Workflows (SPEC §5): operator-edited YAML, validated strictly with every
// problem reported at its position, then immutable. A request runs on the
// workflow version it started with: the text of every version is stored.

#include <boost/json/object.hpp>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/base/diagnostic.hpp"
#include "daemon/base/units.hpp"
#include "daemon/engine/expression.hpp"

namespace privacyd::engine {

// What the validator knows about an action: its name and its `with:` keys.
struct ActionParam {
  enum class Kind { text, duration, url };
  std::string name;
  Kind kind = Kind::text;
  bool required = false;
};
struct ActionSpec {
  std::string name;
  std::vector<ActionParam> params;
};
using ActionCatalog = std::vector<ActionSpec>;

struct RetryPolicy {
  int attempts = 1;  // 1 = no retry
  Duration backoff = std::chrono::seconds(1);
  Duration max_backoff = std::chrono::minutes(10);
};

struct StepDef {
  std::string id;
  std::string action;
  RetryPolicy retry;
  Duration timeout = std::chrono::seconds(30);
  std::optional<Condition> condition;
  boost::json::object with;  // validated against the action's params; values are strings
  // Where each `with` value is written (1-based line, column), for
  // problems found later (a template that does not exist).
  std::map<std::string, std::pair<int, int>, std::less<>> with_at;
};

struct Workflow {
  std::string name;
  int version = 0;
  std::string trigger;  // request.access | request.deletion | request.disassociation
  std::vector<StepDef> steps;
  std::string source;   // the file's text, stored with every version
  std::string sha256;   // of source
  std::string path;
};

// Parses one workflow file's text; problems go to `out` (nullopt if any).
std::optional<Workflow> parse_workflow(std::string_view text, const std::string& path, const ActionCatalog& actions,
                                       Diagnostics& out);

struct WorkflowSet {
  std::vector<Workflow> workflows;
  const Workflow* for_trigger(std::string_view trigger) const;
};

// Every *.yaml/*.yml in `dir`. Also reports two workflows with one name or
// one trigger. The set is complete only if `out` gained nothing.
WorkflowSet load_workflows(const std::filesystem::path& dir, const ActionCatalog& actions, Diagnostics& out);

}  // namespace privacyd::engine
