#pragma once
// Policies (SPEC §6): every policies/*.yaml merged into one set — the
// categories of personal information the statement names, the data systems
// that hold them (with the SQL to read and erase each), the partners, the
// retention holds and the jurisdictions' deadlines. Read strictly: every
// problem with its position, and every reference checked.

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "daemon/base/diagnostic.hpp"
#include "daemon/base/units.hpp"
#include "daemon/config/config.hpp"

namespace privacyd::policy {

struct Category {
  std::string name;
  std::string description;
};

// SQL run against a data system. Only the named binds :subject and
// :partner may appear; `binds` lists those the text uses.
struct Query {
  std::string sql;
  std::vector<std::string> binds;
};

struct SystemCategory {
  std::optional<Query> access;
  std::optional<Query> erase;
};

struct DataSystem {
  std::string name;
  DatabaseConfig database;
  std::map<std::string, SystemCategory> categories;  // by category name
  std::optional<Query> unlink;
};

// How long a partner has to acknowledge a notice, and when it is reminded
// (offsets from the notice; SPEC §13.3).
struct Acknowledgement {
  Duration within = std::chrono::hours(24 * 30);
  std::vector<Duration> reminders = {std::chrono::hours(24 * 7), std::chrono::hours(24 * 21)};
};

struct Partner {
  std::string id;
  std::string name;
  std::string contact_email;
  std::string contact_url;
  // The notice channel: a webhook (url and secret) or an email address;
  // every partner has one (a partner with neither is a policy error).
  std::string notice_url;                  // where partner notices are POSTed
  std::filesystem::path notice_secret_file;
  std::string notice_email;
  std::string notice_locale = "en";        // of the notice's text
  std::optional<Acknowledgement> acknowledgement;  // overrides the policies' own
  std::vector<std::string> shared_categories;
};

struct RetentionRule {
  std::string category;
  Duration hold{};
  std::string reason;
};

struct Jurisdiction {
  Duration deadline = std::chrono::hours(24 * 30);
  Duration extension = std::chrono::hours(24 * 60);
};

struct Policies {
  std::map<std::string, Category> categories;
  std::vector<DataSystem> systems;
  std::map<std::string, Partner> partners;
  std::vector<RetentionRule> retention;
  std::map<std::string, Jurisdiction> jurisdictions;  // always has "default"
  Acknowledgement acknowledgement;

  const Partner* partner(std::string_view id) const;
  const Acknowledgement& acknowledgement_for(const Partner& p) const {
    return p.acknowledgement ? *p.acknowledgement : acknowledgement;
  }
  const RetentionRule* hold_for(std::string_view category) const;
  // The categories a request covers: those it names, or every category
  // these policies know when it names none ("default all").
  std::vector<std::string> scope(const std::vector<std::string>& requested) const;
  const Jurisdiction& jurisdiction(std::string_view name) const;  // falls back to "default"
};

// Scans SQL for named binds (`:name`), skipping quoted text and `::` casts.
std::vector<std::string> named_binds(std::string_view sql);

// Every *.yaml in `dir`, merged. Relative paths (database files, secret
// files) resolve against `base`, the config file's folder. The result is
// complete only when `out` gained nothing.
Policies load_policies(const std::filesystem::path& dir, const std::filesystem::path& base, Diagnostics& out,
                       EnvLookup env = process_env());

}  // namespace privacyd::policy
