#include "daemon/policy/policies.hpp"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "daemon/config/yaml_reader.hpp"

namespace privacyd::policy {

namespace fs = std::filesystem;

const Partner* Policies::partner(std::string_view id) const {
  auto it = partners.find(std::string(id));
  return it == partners.end() ? nullptr : &it->second;
}

std::vector<std::string> Policies::scope(const std::vector<std::string>& requested) const {
  if (!requested.empty()) return requested;
  std::vector<std::string> all;
  for (const auto& [name, c] : categories) all.push_back(name);
  return all;
}

const RetentionRule* Policies::hold_for(std::string_view category) const {
  for (const auto& r : retention) {
    if (r.category == category) return &r;
  }
  return nullptr;
}

const Jurisdiction& Policies::jurisdiction(std::string_view name) const {
  if (auto it = jurisdictions.find(std::string(name)); it != jurisdictions.end()) return it->second;
  return jurisdictions.at("default");
}

std::vector<std::string> named_binds(std::string_view sql) {
  std::vector<std::string> binds;
  char quote = 0;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    char c = sql[i];
    if (quote != 0) {
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == ':' && i + 1 < sql.size() && sql[i + 1] == ':') {
      ++i;  // a cast, not a bind
    } else if (c == ':' && i + 1 < sql.size() && (std::isalpha(static_cast<unsigned char>(sql[i + 1])) || sql[i + 1] == '_')) {
      std::size_t start = ++i;
      while (i < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[i])) || sql[i] == '_')) ++i;
      std::string name(sql.substr(start, i - start));
      if (std::find(binds.begin(), binds.end(), name) == binds.end()) binds.push_back(name);
      --i;
    }
  }
  return binds;
}

namespace {

bool valid_identifier(std::string_view s, bool allow_upper) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' ||
           (allow_upper && c >= 'A' && c <= 'Z');
  });
}

std::string first_word_upper(std::string_view sql) {
  std::size_t i = 0;
  while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i]))) ++i;
  std::string word;
  while (i < sql.size() && std::isalpha(static_cast<unsigned char>(sql[i]))) {
    word += static_cast<char>(std::toupper(static_cast<unsigned char>(sql[i])));
    ++i;
  }
  return word;
}

bool has_second_statement(std::string_view sql) {
  char quote = 0;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    char c = sql[i];
    if (quote != 0) {
      if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
    } else if (c == ';') {
      return sql.find_first_not_of(" \t\r\n", i + 1) != std::string_view::npos;
    }
  }
  return false;
}

// A category name used somewhere, checked once every file is read.
struct Reference {
  std::string path;
  YAML::Mark mark;
  std::string category;
};

struct Loader {
  fs::path base;
  Diagnostics& out;
  EnvLookup env;
  Policies policies;
  std::vector<Reference> references;
  std::map<std::string, std::string> defined_at;  // "kind:name" → file

  void read_file(const fs::path& file) {
    YamlReader yaml(file.string(), out, env);
    auto root = yaml.parse_file();
    if (!root || root->IsNull()) return;
    if (!yaml.expect_map(*root, "the policies", {"categories", "systems", "partners", "retention", "jurisdictions",
                                                         "acknowledgement"})) {
      return;
    }
    if (auto n = (*root)["acknowledgement"]; n.IsDefined()) {
      if (first_definition(yaml, n.Mark(), "setting", "acknowledgement")) {
        if (auto a = read_acknowledgement(yaml, n)) policies.acknowledgement = *a;
      }
    }
    if (auto n = (*root)["categories"]; n.IsDefined()) read_categories(yaml, n);
    if (auto n = (*root)["systems"]; n.IsDefined()) read_systems(yaml, n);
    if (auto n = (*root)["partners"]; n.IsDefined()) read_partners(yaml, n);
    if (auto n = (*root)["retention"]; n.IsDefined()) read_retention(yaml, n);
    if (auto n = (*root)["jurisdictions"]; n.IsDefined()) read_jurisdictions(yaml, n);
  }

  std::optional<Acknowledgement> read_acknowledgement(YamlReader& yaml, const YAML::Node& node) {
    if (!yaml.expect_map(node, "acknowledgement", {"within", "reminders"})) return std::nullopt;
    Acknowledgement a;
    if (auto d = yaml.duration(node, "within", true)) a.within = *d;
    if (auto list = node["reminders"]; list.IsDefined()) {
      a.reminders.clear();
      if (!list.IsSequence() || list.size() > 10) {
        yaml.error(list.Mark(), "\"reminders\" must be a list of at most 10 durations", "type");
        return std::nullopt;
      }
      for (const auto& item : list) {
        auto d = item.IsScalar() ? parse_duration(item.Scalar()) : std::nullopt;
        if (!d || d->count() <= 0) {
          yaml.error(item.Mark(), "bad duration in \"reminders\" (write e.g. 7d, 21d)", "duration");
        } else if (!a.reminders.empty() && *d <= a.reminders.back()) {
          yaml.error(item.Mark(), "reminders must come in order, each later than the one before", "value");
        } else {
          a.reminders.push_back(*d);
        }
      }
    }
    return a;
  }

  bool first_definition(YamlReader& yaml, const YAML::Mark& mark, const std::string& kind, const std::string& name) {
    auto [it, fresh] = defined_at.emplace(kind + ":" + name, yaml.path());
    if (!fresh) yaml.error(mark, kind + " \"" + name + "\" is already defined in " + it->second, "policy");
    return fresh;
  }

  void refer(YamlReader& yaml, const YAML::Node& node, const std::string& category) {
    references.push_back({yaml.path(), node.Mark(), category});
  }

  void read_categories(YamlReader& yaml, const YAML::Node& node) {
    if (!node.IsMap()) {
      yaml.error(node.Mark(), "\"categories\" must be a mapping of category names", "type");
      return;
    }
    std::vector<std::string_view> none;
    for (const auto& entry : node) {
      const std::string name = entry.first.Scalar();
      if (!valid_identifier(name, false) || name.find('-') != std::string::npos) {
        yaml.error(entry.first.Mark(), "category name \"" + name + "\" must match [a-z0-9_]+", "policy");
        continue;
      }
      if (!first_definition(yaml, entry.first.Mark(), "category", name)) continue;
      Category c{name, {}};
      if (yaml.expect_map(entry.second, "category " + name, {"description"})) {
        if (auto d = yaml.string(entry.second, "description", true)) c.description = *d;
      }
      policies.categories[name] = std::move(c);
    }
  }

  std::optional<Query> query(YamlReader& yaml, const YAML::Node& map, std::string_view key, const char* verbs) {
    auto text = yaml.string(map, key);
    if (!text) return std::nullopt;
    const auto mark = map[std::string(key)].Mark();
    Query q{*text, named_binds(*text)};
    for (const auto& b : q.binds) {
      if (b != "subject" && b != "partner") {
        yaml.error(mark, "\"" + std::string(key) + "\" binds :" + b + "; only :subject and :partner exist", "sql");
      }
    }
    std::string verb = first_word_upper(*text);
    std::string allowed(verbs);
    if (verb.empty() || (" " + allowed + " ").find(" " + verb + " ") == std::string::npos) {
      yaml.error(mark, "\"" + std::string(key) + "\" must start with one of: " + allowed, "sql");
    }
    if (has_second_statement(*text)) yaml.error(mark, "\"" + std::string(key) + "\" must be one statement", "sql");
    if (std::find(q.binds.begin(), q.binds.end(), "subject") == q.binds.end()) {
      yaml.error(mark, "\"" + std::string(key) + "\" must use :subject, or it would touch every subject", "sql");
    }
    return q;
  }

  void read_systems(YamlReader& yaml, const YAML::Node& node) {
    if (!node.IsSequence()) {
      yaml.error(node.Mark(), "\"systems\" must be a list", "type");
      return;
    }
    for (const auto& item : node) {
      if (!yaml.expect_map(item, "a system", {"name", "database", "categories", "unlink"})) continue;
      DataSystem system;
      auto name = yaml.string(item, "name", true);
      if (!name) continue;
      system.name = *name;
      if (!valid_identifier(*name, false)) {
        yaml.error(item["name"].Mark(), "system name must match [a-z0-9_.-]+", "policy");
      }
      if (!first_definition(yaml, item["name"].Mark(), "system", *name)) continue;
      if (auto url = yaml.string(item, "database", true)) {
        std::string problem;
        if (auto db = parse_database_url(*url, base, problem)) {
          system.database = *db;
          system.database.pool_size = std::min<std::size_t>(system.database.pool_size, 2);
        } else {
          yaml.error(item["database"].Mark(), problem, "value");
        }
      }
      if (auto cats = item["categories"]; cats.IsDefined()) {
        if (!cats.IsMap()) {
          yaml.error(cats.Mark(), "\"categories\" must map category names to queries", "type");
        } else {
          for (const auto& entry : cats) {
            const std::string category = entry.first.Scalar();
            refer(yaml, entry.first, category);
            SystemCategory sc;
            if (yaml.expect_map(entry.second, "system category " + category, {"access", "erase"})) {
              sc.access = query(yaml, entry.second, "access", "SELECT WITH");
              sc.erase = query(yaml, entry.second, "erase", "DELETE UPDATE");
              if (!sc.access && !sc.erase) {
                yaml.error(entry.second.Mark(), "give \"access\", \"erase\" or both", "policy");
              }
            }
            system.categories[category] = std::move(sc);
          }
        }
      }
      system.unlink = query(yaml, item, "unlink", "DELETE UPDATE");
      if (system.unlink &&
          std::find(system.unlink->binds.begin(), system.unlink->binds.end(), "partner") == system.unlink->binds.end()) {
        yaml.error(item["unlink"].Mark(), "\"unlink\" must use :partner, or it would end every association", "sql");
      }
      policies.systems.push_back(std::move(system));
    }
  }

  void read_partners(YamlReader& yaml, const YAML::Node& node) {
    if (!node.IsSequence()) {
      yaml.error(node.Mark(), "\"partners\" must be a list", "type");
      return;
    }
    for (const auto& item : node) {
      if (!yaml.expect_map(item, "a partner", {"id", "name", "contact", "notice", "shared_categories",
                                                  "acknowledgement"})) {
        continue;
      }
      Partner p;
      auto id = yaml.string(item, "id", true);
      if (!id) continue;
      p.id = *id;
      if (!valid_identifier(*id, true)) yaml.error(item["id"].Mark(), "partner id must match [A-Za-z0-9_.-]+", "policy");
      if (!first_definition(yaml, item["id"].Mark(), "partner", *id)) continue;
      if (auto n = yaml.string(item, "name", true)) p.name = *n;
      if (auto contact = item["contact"]; contact.IsDefined()) {
        if (yaml.expect_map(contact, "contact", {"email", "url"})) {
          if (auto e = yaml.string(contact, "email")) p.contact_email = *e;
          if (auto u = yaml.string(contact, "url")) p.contact_url = *u;
          if (p.contact_email.empty() && p.contact_url.empty()) {
            yaml.error(contact.Mark(), "a contact needs an email or a url, so people can reach the partner", "policy");
          }
        }
      } else {
        yaml.error(item.Mark(), "missing required key \"contact\" (people are told how to reach the partner)",
                   "missing-key");
      }
      read_notice_channel(yaml, item, p);
      if (auto a = item["acknowledgement"]; a.IsDefined()) p.acknowledgement = read_acknowledgement(yaml, a);
      if (auto shared = item["shared_categories"]; shared.IsDefined()) {
        if (!shared.IsSequence()) {
          yaml.error(shared.Mark(), "\"shared_categories\" must be a list of categories", "type");
        } else {
          for (const auto& c : shared) {
            refer(yaml, c, c.Scalar());
            p.shared_categories.push_back(c.Scalar());
          }
        }
      }
      policies.partners[p.id] = std::move(p);
    }
  }

  // notice: {webhook: {url, secret_file}} or {email: ADDRESS}, with an
  // optional locale. A notice is never skipped for want of a channel, so a
  // partner without one is an error here.
  void read_notice_channel(YamlReader& yaml, const YAML::Node& item, Partner& p) {
    auto notice = item["notice"];
    if (!notice.IsDefined()) {
      yaml.error(item.Mark(), "partner \"" + p.id + "\" has no \"notice\": give it a webhook or an email address, "
                 "or it could never be told what to erase", "policy");
      return;
    }
    if (!yaml.expect_map(notice, "notice", {"webhook", "email", "locale"})) return;
    auto webhook = notice["webhook"];
    auto email = notice["email"];
    if (!webhook.IsDefined() && !email.IsDefined()) {
      yaml.error(notice.Mark(), "a notice needs a \"webhook\" or an \"email\"", "policy");
    } else if (webhook.IsDefined() && email.IsDefined()) {
      yaml.error(email.Mark(), "give a \"webhook\" or an \"email\", not both", "policy");
    }
    if (webhook.IsDefined() && yaml.expect_map(webhook, "notice webhook", {"url", "secret_file"})) {
      if (auto u = yaml.string(webhook, "url", true)) {
        p.notice_url = *u;
        if (!u->starts_with("http://") && !u->starts_with("https://")) {
          yaml.error(webhook["url"].Mark(), "\"url\" must be an http:// or https:// URL", "value");
        }
      }
      if (auto f = yaml.string(webhook, "secret_file", true)) {
        fs::path path(*f);
        p.notice_secret_file = (path.is_relative() ? base / path : path).lexically_normal();
      }
    }
    if (auto e = yaml.string(notice, "email")) {
      const auto at = e->find('@');
      if (at == std::string::npos || at == 0 || at + 1 == e->size() ||
          e->find_first_of(" \t\r\n<>,;\"") != std::string::npos) {
        yaml.error(notice["email"].Mark(), "\"email\" must be a plain email address", "value");
      } else {
        p.notice_email = *e;
      }
    }
    if (auto l = yaml.string(notice, "locale")) {
      if (l->empty() || l->size() > 16 || l->find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-") !=
                                              std::string::npos) {
        yaml.error(notice["locale"].Mark(), "\"locale\" must be a language tag such as en or zh-CN", "value");
      } else {
        p.notice_locale = *l;
      }
    }
  }

  void read_retention(YamlReader& yaml, const YAML::Node& node) {
    if (!node.IsSequence()) {
      yaml.error(node.Mark(), "\"retention\" must be a list", "type");
      return;
    }
    for (const auto& item : node) {
      if (!yaml.expect_map(item, "a retention rule", {"category", "hold", "reason"})) continue;
      RetentionRule r;
      if (auto c = yaml.string(item, "category", true)) {
        r.category = *c;
        refer(yaml, item["category"], *c);
        if (!first_definition(yaml, item["category"].Mark(), "retention rule for", *c)) continue;
      }
      if (auto h = yaml.duration(item, "hold", true)) r.hold = *h;
      if (auto reason = yaml.string(item, "reason", true)) r.reason = *reason;
      policies.retention.push_back(std::move(r));
    }
  }

  void read_jurisdictions(YamlReader& yaml, const YAML::Node& node) {
    if (!node.IsMap()) {
      yaml.error(node.Mark(), "\"jurisdictions\" must map names to deadlines", "type");
      return;
    }
    for (const auto& entry : node) {
      const std::string name = entry.first.Scalar();
      if (!first_definition(yaml, entry.first.Mark(), "jurisdiction", name)) continue;
      Jurisdiction j;
      if (yaml.expect_map(entry.second, "jurisdiction " + name, {"deadline", "extension"})) {
        if (auto d = yaml.duration(entry.second, "deadline", true)) j.deadline = *d;
        if (auto e = yaml.duration(entry.second, "extension", true)) j.extension = *e;
      }
      policies.jurisdictions[name] = j;
    }
  }

  void check_references() {
    std::vector<std::string_view> known;
    for (const auto& [name, c] : policies.categories) known.push_back(name);
    for (const auto& r : references) {
      if (policies.categories.contains(r.category)) continue;
      std::string message = "unknown category \"" + r.category + "\"";
      if (auto hint = did_you_mean(r.category, known); !hint.empty()) message += " (did you mean \"" + hint + "\"?)";
      out.push_back({r.path, r.mark.line + 1, r.mark.column + 1, message, "policy"});
    }
  }
};

}  // namespace

Policies load_policies(const fs::path& dir, const fs::path& base, Diagnostics& out, EnvLookup env) {
  const std::size_t first = out.size();
  Loader loader{base, out, with_credentials_default(std::move(env), base), {}, {}, {}};
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    out.push_back({dir.string(), 0, 0, "policies folder not found", "io"});
    return {};
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    auto ext = entry.path().extension();
    if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml")) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) loader.read_file(f);
  loader.check_references();
  if (!loader.policies.jurisdictions.contains("default")) {
    out.push_back({dir.string(), 0, 0, "no \"default\" jurisdiction: every request needs a deadline", "policy"});
  }
  std::stable_sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(), [](const Diagnostic& a, const Diagnostic& b) {
    return std::tie(a.path, a.line, a.column) < std::tie(b.path, b.line, b.column);
  });
  return std::move(loader.policies);
}

}  // namespace privacyd::policy
