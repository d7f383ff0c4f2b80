#include "daemon/config/config.hpp"

#include <charconv>
#include <fstream>
#include <sstream>

namespace privacyd {

namespace fs = std::filesystem;

std::string Endpoint::text() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::optional<Endpoint> parse_endpoint(std::string_view text) {
  std::string_view host;
  std::string_view port;
  if (text.starts_with('[')) {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') return std::nullopt;
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) return std::nullopt;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (host.empty() || port.empty() || ec != std::errc{} || end != port.data() + port.size() || value > 65535) {
    return std::nullopt;
  }
  return Endpoint{std::string(host), static_cast<std::uint16_t>(value)};
}

std::optional<DatabaseConfig> parse_database_url(std::string_view url, const fs::path& base, std::string& error) {
  DatabaseConfig db;
  std::string_view rest;
  if (url.starts_with("sqlite3://")) {
    db.backend = DatabaseConfig::Backend::sqlite3;
    rest = url.substr(10);
  } else if (url.starts_with("postgresql://")) {
    db.backend = DatabaseConfig::Backend::postgresql;
    rest = url.substr(13);
  } else {
    error = "database must start with sqlite3:// or postgresql://";
    return std::nullopt;
  }
  if (db.backend == DatabaseConfig::Backend::postgresql) {
    db.parameters = std::string(rest);
    return db;
  }
  // sqlite3: find db=PATH among space-separated key=value pairs.
  std::string out;
  bool have_db = false;
  std::size_t pos = 0;
  while (pos < rest.size()) {
    auto end = rest.find(' ', pos);
    if (end == std::string_view::npos) end = rest.size();
    std::string_view token = rest.substr(pos, end - pos);
    pos = end + 1;
    if (token.empty()) continue;
    if (token.starts_with("db=")) {
      fs::path file(std::string(token.substr(3)));
      if (file.empty()) break;
      if (file.is_relative()) file = base / file;
      db.sqlite_file = file.lexically_normal();
      out += (out.empty() ? "" : " ") + std::string("db=") + db.sqlite_file.string();
      have_db = true;
      continue;
    }
    out += (out.empty() ? "" : " ") + std::string(token);
  }
  if (!have_db) {
    error = "a sqlite3:// database needs db=PATH";
    return std::nullopt;
  }
  db.parameters = out;
  db.pool_size = 1;  // SQLite serialises writers; one connection avoids lock upgrades failing.
  return db;
}

namespace {

struct Reader {
  YamlReader& yaml;
  fs::path base;

  std::optional<fs::path> path(const YAML::Node& map, std::string_view key, bool required) {
    auto text = yaml.string(map, key, required);
    if (!text) return std::nullopt;
    fs::path p(*text);
    if (p.is_relative()) p = base / p;
    return p.lexically_normal();
  }

  std::optional<Endpoint> endpoint(const YAML::Node& map, std::string_view key) {
    auto text = yaml.string(map, key);
    if (!text) return std::nullopt;
    auto ep = parse_endpoint(*text);
    if (!ep) {
      yaml.error(map[std::string(key)].Mark(),
                 "bad address \"" + *text + "\" for \"" + std::string(key) + "\" (write HOST:PORT)", "value");
    }
    return ep;
  }
};

void read_config(YamlReader& yaml, const YAML::Node& root, Config& c) {
  Reader r{yaml, c.file.parent_path()};
  if (!yaml.expect_map(root, "the config",
                       {"listen", "tls", "admin", "database", "database_pool", "database_timeouts", "database_prepared_statements",
                        "workflows", "policies", "keys", "webhook",
                        "notices", "log", "limits", "io_threads", "engine", "public_url", "partner_center",
                        "access", "retention"})) {
    return;
  }
  if (auto ep = r.endpoint(root, "listen")) c.listen = *ep;
  auto read_tls = [&](const YAML::Node& parent, const std::string& where, TlsConfig& tls) {
    auto node = parent["tls"];
    if (!node.IsDefined() || !yaml.expect_map(node, where, {"certificate_file", "key_file"})) return;
    if (auto p = r.path(node, "certificate_file", true)) tls.certificate_file = *p;
    if (auto p = r.path(node, "key_file", true)) tls.key_file = *p;
  };
  read_tls(root, "tls", c.tls);

  if (auto admin = root["admin"]; admin.IsDefined()) {
    if (yaml.expect_map(admin, "admin", {"listen", "tokens_file", "tls"})) {
      if (auto ep = r.endpoint(admin, "listen")) c.admin.listen = *ep;
      if (auto p = r.path(admin, "tokens_file", false)) c.admin.tokens_file = *p;
      read_tls(admin, "admin.tls", c.admin.tls);
    }
  }

  if (auto url = yaml.string(root, "database", true)) {
    std::string problem;
    if (auto db = parse_database_url(*url, r.base, problem)) {
      c.database = *db;
    } else {
      yaml.error(root["database"].Mark(), problem, "value");
    }
  }
  if (auto n = yaml.integer(root, "database_pool", 1, 256)) c.database.pool_size = static_cast<std::size_t>(*n);
  if (auto on = yaml.boolean(root, "database_prepared_statements")) c.database.prepared_statements = *on;
  if (auto t = root["database_timeouts"]; t.IsDefined() && yaml.expect_map(t, "database_timeouts", {"statement", "lock"})) {
    auto at_least_a_second = [&](const char* key, Duration& into) {
      if (auto d = yaml.duration(t, key)) {
        if (*d < std::chrono::seconds(1)) {
          yaml.error(t[key].Mark(), std::string("\"") + key + "\" must be at least 1s", "value");
        } else {
          into = *d;
        }
      }
    };
    at_least_a_second("statement", c.database.statement_timeout);
    at_least_a_second("lock", c.database.lock_timeout);
  }
  if (auto n = yaml.integer(root, "io_threads", 1, 64)) c.io_threads = static_cast<std::size_t>(*n);

  if (auto p = r.path(root, "workflows", true)) c.workflows = *p;
  if (auto p = r.path(root, "policies", true)) c.policies = *p;

  if (auto keys = root["keys"]; keys.IsDefined()) {
    if (yaml.expect_map(keys, "keys",
                        {"data_key_file", "previous_key_files", "index_key_file", "store", "receipt_key_file"})) {
      if (auto p = r.path(keys, "data_key_file", true)) c.keys.data_key_file = *p;
      std::string store_url = "sqlite3://db=" + (c.keys.data_key_file.parent_path() / "subject-keys.db").string();
      if (auto s = yaml.string(keys, "store")) store_url = *s;
      std::string problem;
      if (auto db = parse_database_url(store_url, r.base, problem)) {
        c.keys.store = *db;
        c.keys.store.pool_size = std::min<std::size_t>(c.keys.store.pool_size, 2);
      } else {
        yaml.error(keys["store"].IsDefined() ? keys["store"].Mark() : keys.Mark(), problem, "value");
      }
      if (auto p = r.path(keys, "index_key_file", false)) c.keys.index_key_file = *p;
      if (auto p = r.path(keys, "receipt_key_file", false)) c.keys.receipt_key_file = *p;
      if (auto list = keys["previous_key_files"]; list.IsDefined()) {
        if (!list.IsSequence()) {
          yaml.error(list.Mark(), "\"previous_key_files\" must be a list of paths", "type");
        } else {
          for (const auto& item : list) {
            if (!item.IsScalar()) {
              yaml.error(item.Mark(), "a key file must be a path", "type");
            } else if (auto text = yaml.expand(item.Scalar(), item.Mark())) {
              fs::path p(*text);
              c.keys.previous_key_files.push_back((p.is_relative() ? r.base / p : p).lexically_normal());
            }
          }
        }
      }
    }
  } else {
    yaml.error(root.Mark(), "missing required key \"keys\"", "missing-key");
  }

  if (auto webhook = root["webhook"]; webhook.IsDefined()) {
    if (yaml.expect_map(webhook, "webhook", {"secrets_file", "tolerance", "max_body"})) {
      if (auto p = r.path(webhook, "secrets_file", true)) c.webhook.secrets_file = *p;
      if (auto d = yaml.duration(webhook, "tolerance")) c.webhook.tolerance = *d;
      if (auto s = yaml.size(webhook, "max_body")) {
        if (*s == 0 || *s > 16ULL * 1024 * 1024) {
          yaml.error(webhook["max_body"].Mark(), "\"max_body\" must be between 1B and 16MiB", "value");
        } else {
          c.webhook.max_body = *s;
        }
      }
    }
  } else {
    yaml.error(root.Mark(), "missing required key \"webhook\"", "missing-key");
  }

  if (auto notices = root["notices"]; notices.IsDefined()) {
    if (yaml.expect_map(notices, "notices", {"file_dir", "smtp", "from", "timeout", "retry_schedule", "smtp_user",
                                                  "smtp_password_file", "smtp_ca_file"})) {
      if (auto f = yaml.string(notices, "from")) {
        if (f->find('@') == std::string::npos || f->find_first_of("\r\n<>") != std::string::npos) {
          yaml.error(notices["from"].Mark(), "\"from\" must be a plain email address", "value");
        } else {
          c.notices.from = *f;
        }
      }
      if (auto d = yaml.duration(notices, "timeout")) c.notices.timeout = *d;
      if (auto list = notices["retry_schedule"]; list.IsDefined()) {
        if (!list.IsSequence() || list.size() == 0 || list.size() > 50) {
          yaml.error(list.Mark(), "\"retry_schedule\" must be a list of 1 to 50 durations", "type");
        } else {
          c.notices.retry_schedule.clear();
          for (const auto& item : list) {
            auto d = item.IsScalar() ? parse_duration(item.Scalar()) : std::nullopt;
            if (!d) {
              yaml.error(item.Mark(), "bad duration in \"retry_schedule\" (write e.g. 0s, 5s, 5m, 2h)", "duration");
            } else {
              c.notices.retry_schedule.push_back(*d);
            }
          }
        }
      }
      if (auto p = r.path(notices, "file_dir", false)) c.notices.file_dir = *p;
      if (auto s = yaml.string(notices, "smtp")) {
        if (!s->starts_with("smtp://") && !s->starts_with("smtps://")) {
          yaml.error(notices["smtp"].Mark(), "\"smtp\" must be an smtp:// or smtps:// URL", "value");
        } else {
          c.notices.smtp = *s;
        }
      }
      if (auto u = yaml.string(notices, "smtp_user")) {
        if (u->empty() || u->find_first_of("\r\n") != std::string::npos) {
          yaml.error(notices["smtp_user"].Mark(), "\"smtp_user\" must be one line of text", "value");
        } else {
          c.notices.smtp_user = *u;
        }
      }
      if (auto p = r.path(notices, "smtp_password_file", false)) c.notices.smtp_password_file = *p;
      if (auto p = r.path(notices, "smtp_ca_file", false)) c.notices.smtp_ca_file = *p;
      if (c.notices.smtp_user.empty() != c.notices.smtp_password_file.empty()) {
        yaml.error(notices.Mark(), "give \"smtp_user\" and \"smtp_password_file\" together", "value");
      }
    }
  }

  if (auto url = yaml.string(root, "public_url")) {
    std::string u = *url;
    while (u.ends_with('/')) u.pop_back();
    if ((!u.starts_with("http://") && !u.starts_with("https://")) || u.find_first_of(" \r\n\"<>") != std::string::npos) {
      yaml.error(root["public_url"].Mark(), "\"public_url\" must be an http:// or https:// URL", "value");
    } else {
      c.public_url = u;
    }
  }
  if (auto pc = root["partner_center"]; pc.IsDefined()) {
    if (yaml.expect_map(pc, "partner_center", {"callback_url", "secret_file"})) {
      if (auto u = yaml.string(pc, "callback_url")) {
        if (!u->starts_with("http://") && !u->starts_with("https://")) {
          yaml.error(pc["callback_url"].Mark(), "\"callback_url\" must be an http:// or https:// URL", "value");
        } else {
          c.partner_center.callback_url = *u;
        }
      }
      if (auto p = r.path(pc, "secret_file", !c.partner_center.callback_url.empty())) c.partner_center.secret_file = *p;
    }
  }
  if (auto kept = root["retention"]; kept.IsDefined()) {
    if (yaml.expect_map(kept, "retention", {"deliveries", "notice_payloads", "collected"})) {
      if (auto d = yaml.duration(kept, "deliveries")) {
        // The Partner Center retries within the signature tolerance: the
        // answers must outlive it, or a retry would open a second request.
        // A signed message is accepted until tolerance past its timestamp,
        // which may itself be tolerance ahead of this clock.
        if (*d < 2 * c.webhook.tolerance) {
          yaml.error(kept["deliveries"].Mark(), "\"deliveries\" must be at least twice webhook.tolerance", "value");
        } else {
          c.retention.deliveries = *d;
        }
      }
      if (auto d = yaml.duration(kept, "notice_payloads")) c.retention.notice_payloads = *d;
      if (auto d = yaml.duration(kept, "collected")) c.retention.collected = *d;
    }
  }
  if (auto access = root["access"]; access.IsDefined()) {
    if (yaml.expect_map(access, "access", {"package_ttl", "max_downloads"})) {
      if (auto d = yaml.duration(access, "package_ttl")) {
        if (d->count() <= 0) {
          yaml.error(access["package_ttl"].Mark(), "\"package_ttl\" must be more than 0", "value");
        } else {
          c.access.package_ttl = *d;
        }
      }
      if (auto n = yaml.integer(access, "max_downloads", 1, 1000)) c.access.max_downloads = static_cast<int>(*n);
    }
  }

  if (auto engine = root["engine"]; engine.IsDefined()) {
    if (yaml.expect_map(engine, "engine", {"lease", "poll", "concurrency", "await_notices"})) {
      if (auto d = yaml.duration(engine, "lease")) {
        if (*d < std::chrono::seconds(1)) {
          yaml.error(engine["lease"].Mark(), "\"lease\" must be at least 1s", "value");
        } else {
          c.engine.lease = *d;
        }
      }
      if (auto d = yaml.duration(engine, "poll")) {
        if (d->count() <= 0) {
          yaml.error(engine["poll"].Mark(), "\"poll\" must be more than 0", "value");
        } else {
          c.engine.poll = *d;
        }
      }
      if (auto n = yaml.integer(engine, "concurrency", 1, 1024)) c.engine.concurrency = static_cast<std::size_t>(*n);
      if (auto d = yaml.duration(engine, "await_notices")) {
        if (d->count() < 0 || *d > std::chrono::minutes(1)) {
          yaml.error(engine["await_notices"].Mark(), "\"await_notices\" must be between 0s and 1m", "value");
        } else {
          c.engine.await_notices = *d;
        }
      }
    }
  }

  if (auto log = root["log"]; log.IsDefined()) {
    if (yaml.expect_map(log, "log", {"level"})) {
      if (auto level = yaml.string(log, "level")) {
        if (auto parsed = parse_log_level(*level)) {
          c.log_level = *parsed;
        } else {
          yaml.error(log["level"].Mark(), "unknown log level \"" + *level + "\" (debug, info, warn, error)",
                     "value");
        }
      }
    }
  }

  if (auto limits = root["limits"]; limits.IsDefined()) {
    if (yaml.expect_map(limits, "limits",
                        {"max_connections", "max_connections_per_client", "max_header", "read_timeout",
                         "idle_timeout", "shutdown_grace"})) {
      if (auto n = yaml.integer(limits, "max_connections", 1, 100000)) {
        c.limits.max_connections = static_cast<std::size_t>(*n);
      }
      if (auto n = yaml.integer(limits, "max_connections_per_client", 1, 100000)) {
        c.limits.max_connections_per_client = static_cast<std::size_t>(*n);
      }
      if (auto s = yaml.size(limits, "max_header")) c.limits.max_header = *s;
      if (auto d = yaml.duration(limits, "read_timeout")) c.limits.read_timeout = *d;
      if (auto d = yaml.duration(limits, "idle_timeout")) c.limits.idle_timeout = *d;
      if (auto d = yaml.duration(limits, "shutdown_grace")) c.limits.shutdown_grace = *d;
    }
  }
}

}  // namespace

ConfigResult parse_config(std::string_view text, const fs::path& file, EnvLookup env) {
  ConfigResult result;
  Config c;
  c.file = fs::absolute(file).lexically_normal();
  YamlReader yaml(file.string(), result.problems, with_credentials_default(std::move(env), c.file.parent_path()));
  if (auto root = yaml.parse(text)) read_config(yaml, *root, c);
  sort_by_position(result.problems);
  if (result.problems.empty()) result.config = c;
  result.draft = std::move(c);
  return result;
}

ConfigResult load_config(const fs::path& file, EnvLookup env) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    ConfigResult result;
    result.problems.push_back({file.string(), 0, 0, "cannot read config file", "io"});
    return result;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), file, std::move(env));
}

}  // namespace privacyd
