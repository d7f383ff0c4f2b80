#include "daemon/engine/workflow.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "daemon/config/yaml_reader.hpp"
#include "daemon/crypto/primitives.hpp"

namespace privacyd::engine {

namespace fs = std::filesystem;

namespace {

const std::vector<std::string_view> kTriggers = {"request.access", "request.deletion", "request.disassociation"};
const std::vector<std::string_view> kRoots = {"request", "subject", "partner", "steps"};

bool valid_name(std::string_view s) {
  return !s.empty() && s.size() <= 64 &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

// The column where the scalar's text starts (past an opening quote).
YAML::Mark text_mark(const YAML::Node& node) {
  YAML::Mark m = node.Mark();
  if (node.Tag() == "!") m.column += 1;  // quoted scalars carry the non-specific tag
  return m;
}

const ActionSpec* find_action(const ActionCatalog& actions, std::string_view name) {
  for (const auto& a : actions) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

struct StepReader {
  YamlReader& yaml;
  const ActionCatalog& actions;
  std::vector<std::string> earlier_ids;

  std::optional<StepDef> read(const YAML::Node& node, std::size_t index) {
    std::string what = "step " + std::to_string(index + 1);
    if (!yaml.expect_map(node, what, {"id", "action", "retry", "timeout", "if", "with"})) return std::nullopt;
    std::size_t before = yaml.errors();
    StepDef step;
    if (auto id = yaml.string(node, "id", true)) {
      step.id = *id;
      if (!valid_name(*id)) {
        yaml.error(node["id"].Mark(), "step id \"" + *id + "\" must match [a-z0-9-]+", "workflow");
      } else if (std::find(earlier_ids.begin(), earlier_ids.end(), *id) != earlier_ids.end()) {
        yaml.error(node["id"].Mark(), "duplicate step id \"" + *id + "\"", "workflow");
      }
    }
    const ActionSpec* spec = nullptr;
    if (auto action = yaml.string(node, "action", true)) {
      step.action = *action;
      spec = find_action(actions, *action);
      if (spec == nullptr) {
        std::vector<std::string_view> names;
        for (const auto& a : actions) names.push_back(a.name);
        std::string message = "unknown action \"" + *action + "\"";
        if (auto hint = did_you_mean(*action, names); !hint.empty()) message += " (did you mean \"" + hint + "\"?)";
        yaml.error(node["action"].Mark(), message, "workflow");
      }
    }
    if (auto retry = node["retry"]; retry.IsDefined()) {
      if (yaml.expect_map(retry, "retry", {"attempts", "backoff", "max_backoff"})) {
        if (auto n = yaml.integer(retry, "attempts", 1, 100)) step.retry.attempts = static_cast<int>(*n);
        if (auto d = yaml.duration(retry, "backoff")) step.retry.backoff = *d;
        if (auto d = yaml.duration(retry, "max_backoff")) step.retry.max_backoff = *d;
        if (step.retry.max_backoff < step.retry.backoff) {
          yaml.error(retry.Mark(), "max_backoff is shorter than backoff", "workflow");
        }
      }
    }
    if (auto d = yaml.duration(node, "timeout")) {
      if (d->count() <= 0 || *d > std::chrono::hours(24)) {
        yaml.error(node["timeout"].Mark(), "timeout must be more than 0 and at most 24h", "workflow");
      }
      step.timeout = *d;
    }
    if (auto cond = node["if"]; cond.IsDefined()) read_condition(cond, step);
    if (auto with = node["with"]; with.IsDefined() && spec != nullptr) {
      read_with(with, *spec, step);
    } else if (spec != nullptr) {
      for (const auto& p : spec->params) {
        if (p.required) {
          yaml.error(node.Mark(), "action \"" + spec->name + "\" needs with: { " + p.name + ": … }", "workflow");
        }
      }
    }
    earlier_ids.push_back(step.id);
    if (yaml.errors() != before) return std::nullopt;
    return step;
  }

  void read_condition(const YAML::Node& cond, StepDef& step) {
    if (!cond.IsScalar()) {
      yaml.error(cond.Mark(), "\"if\" must be a condition like subject.email", "type");
      return;
    }
    auto parsed = Condition::parse(cond.Scalar());
    if (auto* e = std::get_if<Condition::Error>(&parsed)) {
      YAML::Mark at = text_mark(cond);
      at.column += static_cast<int>(e->offset);
      yaml.error(at, "bad condition: " + e->message, "expression");
      return;
    }
    auto& c = std::get<Condition>(parsed);
    for (const auto& path : c.paths()) {
      if (std::find(kRoots.begin(), kRoots.end(), path.front()) == kRoots.end()) {
        std::string message = "condition reads \"" + path.front() + "\"; it can read request, subject, partner or steps";
        if (auto hint = did_you_mean(path.front(), kRoots); !hint.empty()) {
          message += " (did you mean \"" + hint + "\"?)";
        }
        yaml.error(text_mark(cond), message, "expression");
      } else if (path.front() == "steps" &&
                 (path.size() < 2 || std::find(earlier_ids.begin(), earlier_ids.end(), path[1]) == earlier_ids.end())) {
        yaml.error(text_mark(cond),
                   "condition reads steps." + (path.size() < 2 ? std::string("?") : path[1]) +
                       ", which is not an earlier step",
                   "expression");
      }
    }
    step.condition = std::move(c);
  }

  void read_with(const YAML::Node& with, const ActionSpec& spec, StepDef& step) {
    std::vector<std::string_view> names;
    for (const auto& p : spec.params) names.push_back(p.name);
    if (!yaml.expect_map(with, "with (" + spec.name + ")", names)) return;
    for (const auto& p : spec.params) {
      auto text = yaml.string(with, p.name, p.required);
      if (!text) continue;
      const auto mark = with[p.name].Mark();
      if (p.kind == ActionParam::Kind::duration && !parse_duration(*text)) {
        yaml.error(mark, "bad duration \"" + *text + "\" for \"" + p.name + "\" (write e.g. 30s, 10m, 7d)", "duration");
      } else if (p.kind == ActionParam::Kind::url && !text->starts_with("http://") && !text->starts_with("https://")) {
        yaml.error(mark, "\"" + p.name + "\" must be an http:// or https:// URL", "value");
      }
      step.with[p.name] = *text;
      step.with_at[p.name] = {mark.line + 1, mark.column + 1};
    }
  }
};

}  // namespace

std::optional<Workflow> parse_workflow(std::string_view text, const std::string& path, const ActionCatalog& actions,
                                       Diagnostics& out) {
  struct Sorted {  // however it returns, this file's problems come out in order
    Diagnostics& out;
    std::size_t from;
    ~Sorted() { sort_by_position(out, from); }
  } sorted{out, out.size()};
  YamlReader yaml(path, out);
  auto root = yaml.parse(text);
  if (!root) return std::nullopt;
  if (!yaml.expect_map(*root, "the workflow", {"workflow", "version", "on", "steps"})) return std::nullopt;
  Workflow w;
  w.path = path;
  w.source = std::string(text);
  w.sha256 = crypto::sha256_hex(text);
  if (auto name = yaml.string(*root, "workflow", true)) {
    w.name = *name;
    if (!valid_name(*name)) yaml.error((*root)["workflow"].Mark(), "workflow name must match [a-z0-9-]+", "workflow");
  }
  if (auto v = yaml.integer(*root, "version", 1, 1000000, true)) w.version = static_cast<int>(*v);
  if (auto on = yaml.string(*root, "on", true)) {
    w.trigger = *on;
    if (std::find(kTriggers.begin(), kTriggers.end(), *on) == kTriggers.end()) {
      std::string message = "unknown trigger \"" + *on + "\" (request.access, request.deletion, request.disassociation)";
      yaml.error((*root)["on"].Mark(), message, "workflow");
    }
  }
  const YAML::Node steps = (*root)["steps"];
  if (!steps.IsDefined() || steps.IsNull()) {
    yaml.error(root->Mark(), "missing required key \"steps\"", "missing-key");
  } else if (!steps.IsSequence() || steps.size() == 0) {
    yaml.error(steps.Mark(), "\"steps\" must be a non-empty list", "type");
  } else {
    StepReader reader{yaml, actions, {}};
    for (std::size_t i = 0; i < steps.size(); ++i) {
      if (auto step = reader.read(steps[i], i)) w.steps.push_back(std::move(*step));
    }
  }
  if (yaml.errors() != 0) return std::nullopt;
  return w;
}

const Workflow* WorkflowSet::for_trigger(std::string_view trigger) const {
  for (const auto& w : workflows) {
    if (w.trigger == trigger) return &w;
  }
  return nullptr;
}

WorkflowSet load_workflows(const fs::path& dir, const ActionCatalog& actions, Diagnostics& out) {
  WorkflowSet set;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    out.push_back({dir.string(), 0, 0, "workflows folder not found", "io"});
    return set;
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    auto ext = entry.path().extension();
    if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml")) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  std::map<std::string, std::string> name_at;
  std::map<std::string, std::string> trigger_at;
  for (const auto& file : files) {
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (text.str().size() > 1024 * 1024) {
      out.push_back({file.string(), 0, 0, "workflow file larger than 1MiB", "io"});
      continue;
    }
    auto w = parse_workflow(text.str(), file.string(), actions, out);
    if (!w) continue;
    if (auto [it, fresh] = name_at.emplace(w->name, file.string()); !fresh) {
      out.push_back({file.string(), 1, 1, "workflow \"" + w->name + "\" is also defined in " + it->second, "workflow"});
      continue;
    }
    if (auto [it, fresh] = trigger_at.emplace(w->trigger, file.string()); !fresh) {
      out.push_back({file.string(), 1, 1, "another workflow (" + it->second + ") already runs on " + w->trigger,
                     "workflow"});
      continue;
    }
    set.workflows.push_back(std::move(*w));
  }
  return set;
}

}  // namespace privacyd::engine
