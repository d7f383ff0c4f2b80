#include <catch2/catch.hpp>
#include <map>

#include "daemon/config/config.hpp"

using namespace privacyd;
using namespace std::chrono_literals;

namespace {

EnvLookup fake_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

const char* kGood = R"(listen: 127.0.0.1:8080
admin:
  listen: 127.0.0.1:8081
  tokens_file: ../var/keys/admin-tokens
database: "sqlite3://db=../var/privacyd.db"
workflows: ../workflows
policies: ../policies
keys:
  data_key_file: ${CREDENTIALS_DIRECTORY}/data.key
webhook:
  secrets_file: ../var/keys/webhook-secrets
  tolerance: 300s
  max_body: 64KiB
notices:
  file_dir: ../var/notices
log: { level: debug }
limits: { max_connections: 64, read_timeout: 5s }
)";

std::string positions(const Diagnostics& ds) {
  std::string out;
  for (const auto& d : ds) out += format_text(d) + "\n";
  return out;
}

}  // namespace

TEST_CASE("outside systemd, ${CREDENTIALS_DIRECTORY} is keys/ beside the config", "[config]") {
  auto r = parse_config(kGood, "/etc/privacyd/conf/privacyd.yaml", fake_env({}));
  INFO(positions(r.problems));
  REQUIRE(r.config);
  CHECK(r.config->keys.data_key_file == "/etc/privacyd/conf/keys/data.key");
  // Another unset variable is still an error, never an empty string.
  auto bad = parse_config(std::string(kGood) + "public_url: \"${PRIVACYD_NO_SUCH_VARIABLE}\"\n",
                          "/etc/privacyd/conf/privacyd.yaml", fake_env({}));
  REQUIRE_FALSE(bad.config);
  CHECK(positions(bad.problems).find("PRIVACYD_NO_SUCH_VARIABLE is not set") != std::string::npos);
  // What could be read is kept for `keys init` all the same.
  CHECK(bad.draft.keys.data_key_file == "/etc/privacyd/conf/keys/data.key");
}

TEST_CASE("the development config parses with paths resolved against its folder", "[config]") {
  auto r = parse_config(kGood, "/etc/privacyd/conf/privacyd.yaml", fake_env({{"CREDENTIALS_DIRECTORY", "/run/creds"}}));
  INFO(positions(r.problems));
  REQUIRE(r.problems.empty());
  REQUIRE(r.config);
  const auto& c = *r.config;
  CHECK(c.listen.host == "127.0.0.1");
  CHECK(c.listen.port == 8080);
  CHECK(c.admin.listen.port == 8081);
  CHECK(c.admin.tokens_file == "/etc/privacyd/var/keys/admin-tokens");
  CHECK(c.database.backend == DatabaseConfig::Backend::sqlite3);
  CHECK(c.database.parameters == "db=/etc/privacyd/var/privacyd.db");
  CHECK(c.workflows == "/etc/privacyd/workflows");
  CHECK(c.keys.data_key_file == "/run/creds/data.key");
  CHECK(c.webhook.tolerance == Duration(300s));
  CHECK(c.webhook.max_body == 64U * 1024U);
  CHECK(c.notices.file_dir == "/etc/privacyd/var/notices");
  CHECK(c.log_level == LogLevel::debug);
  CHECK(c.limits.max_connections == 64);
  CHECK(c.limits.read_timeout == Duration(5s));
}

TEST_CASE("postgresql connection strings pass through with ${ENV} expanded", "[config]") {
  std::string text = kGood;
  auto at = text.find("database:");
  auto end = text.find('\n', at);
  text.replace(at, end - at, R"(database: "postgresql://host=${PGHOST} port=5433 dbname=privacyd")");
  auto r = parse_config(text, "/c/privacyd.yaml",
                        fake_env({{"CREDENTIALS_DIRECTORY", "/x"}, {"PGHOST", "db.internal"}}));
  INFO(positions(r.problems));
  REQUIRE(r.config);
  CHECK(r.config->database.backend == DatabaseConfig::Backend::postgresql);
  CHECK(r.config->database.parameters == "host=db.internal port=5433 dbname=privacyd");
}

TEST_CASE("prepared statements are on unless database_prepared_statements is false", "[config]") {
  auto env = fake_env({{"CREDENTIALS_DIRECTORY", "/x"}});
  auto on = parse_config(kGood, "/c/privacyd.yaml", env);
  REQUIRE(on.config);
  CHECK(on.config->database.prepared_statements);
  auto off = parse_config(std::string(kGood) + "database_prepared_statements: false\n", "/c/privacyd.yaml", env);
  INFO(positions(off.problems));
  REQUIRE(off.config);
  CHECK_FALSE(off.config->database.prepared_statements);
  auto bad = parse_config(std::string(kGood) + "database_prepared_statements: maybe\n", "/c/privacyd.yaml", env);
  CHECK_FALSE(bad.config);
  CHECK(positions(bad.problems) ==
        "/c/privacyd.yaml:18:31: \"database_prepared_statements\" must be true or false, not \"maybe\" [type]\n");
}

TEST_CASE("every problem is reported with its exact 1-based position", "[config]") {
  const char* bad = R"(listen: 127.0.0.1:8080
admin:
  lisen: 127.0.0.1:8081
database: "mysql://db=x"
workflows: ../workflows
policies: [a, b]
keys:
  data_key_file: ${NOPE}/data.key
webhook:
  secrets_file: s
  tolerance: 5 minutes
  max_body: 64KB
log: { level: loud }
limits: { max_connections: lots }
)";
  auto r = parse_config(bad, "config/privacyd.yaml", fake_env({}));
  CHECK_FALSE(r.config);
  CHECK(positions(r.problems) ==
        "config/privacyd.yaml:3:3: unknown key \"lisen\" in admin (did you mean \"listen\"?) [unknown-key]\n"
        "config/privacyd.yaml:4:11: database must start with sqlite3:// or postgresql:// [value]\n"
        "config/privacyd.yaml:6:11: \"policies\" must be a string [type]\n"
        "config/privacyd.yaml:8:18: environment variable NOPE is not set [env]\n"
        "config/privacyd.yaml:11:14: bad duration \"5 minutes\" for \"tolerance\" (write e.g. 500ms, 30s, 10m, 2h, "
        "7d) [duration]\n"
        "config/privacyd.yaml:12:13: bad size \"64KB\" for \"max_body\" (write e.g. 8KiB, 64KiB, 1MiB) [size]\n"
        "config/privacyd.yaml:13:15: unknown log level \"loud\" (debug, info, warn, error) [value]\n"
        "config/privacyd.yaml:14:28: \"max_connections\" must be an integer, not \"lots\" [type]\n");
}

TEST_CASE("unknown and duplicate top-level keys are errors and never ignored", "[config]") {
  std::string text = std::string(kGood) + "lsiten: 1.2.3.4:5\nlog: { level: info }\n";
  auto r = parse_config(text, "p.yaml", fake_env({{"CREDENTIALS_DIRECTORY", "/x"}}));
  CHECK_FALSE(r.config);
  REQUIRE(r.problems.size() == 2);
  CHECK(format_text(r.problems[0]) == "p.yaml:18:1: unknown key \"lsiten\" in the config (did you mean \"listen\"?) [unknown-key]");
  CHECK(format_text(r.problems[1]) == "p.yaml:19:1: duplicate key \"log\" in the config [duplicate-key]");
}

TEST_CASE("missing required keys are reported at the enclosing mapping", "[config]") {
  auto r = parse_config("listen: 127.0.0.1:1\n", "p.yaml", fake_env({}));
  CHECK_FALSE(r.config);
  CHECK(positions(r.problems) ==
        "p.yaml:1:1: missing required key \"database\" [missing-key]\n"
        "p.yaml:1:1: missing required key \"workflows\" [missing-key]\n"
        "p.yaml:1:1: missing required key \"policies\" [missing-key]\n"
        "p.yaml:1:1: missing required key \"keys\" [missing-key]\n"
        "p.yaml:1:1: missing required key \"webhook\" [missing-key]\n");
}

TEST_CASE("YAML syntax errors carry their position", "[config]") {
  auto r = parse_config("listen: [127.0.0.1\n", "p.yaml", fake_env({}));
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].rule == "syntax");
  CHECK(r.problems[0].line >= 1);
  CHECK(r.problems[0].column >= 1);
}

TEST_CASE("listen addresses must be HOST:PORT", "[config]") {
  CHECK(parse_endpoint("127.0.0.1:8080")->port == 8080);
  CHECK(parse_endpoint("[::1]:9000")->host == "::1");
  CHECK(parse_endpoint("localhost:0")->port == 0);
  for (auto bad : {"127.0.0.1", ":80", "host:", "host:99999", "::1:80", "[::1]80", "h:8o"}) {
    INFO(bad);
    CHECK_FALSE(parse_endpoint(bad).has_value());
  }
}

TEST_CASE("a sqlite database needs a db= path", "[config]") {
  std::string error;
  CHECK_FALSE(parse_database_url("sqlite3://timeout=5", "/base", error));
  CHECK(error == "a sqlite3:// database needs db=PATH");
  auto abs = parse_database_url("sqlite3://db=/abs/x.db timeout=5", "/base", error);
  REQUIRE(abs);
  CHECK(abs->parameters == "db=/abs/x.db timeout=5");
  CHECK(abs->pool_size == 1);
}

TEST_CASE("a missing config file is one clear problem", "[config]") {
  auto r = load_config("/nonexistent/privacyd.yaml");
  REQUIRE(r.problems.size() == 1);
  CHECK(format_text(r.problems[0]) == "/nonexistent/privacyd.yaml: cannot read config file [io]");
}

TEST_CASE("privacyd's own retention and its key store are read, and stored answers outlive replays", "[config]") {
  auto env = fake_env({{"CREDENTIALS_DIRECTORY", "/run/credentials/privacyd.service"}});
  auto good = parse_config(std::string(kGood) + "retention: { deliveries: 10m, notice_payloads: 2d, collected: 1h }\n",
                           "/etc/privacyd/privacyd.yaml", env);
  REQUIRE(good.problems.empty());
  CHECK(good.config->retention.deliveries == 10min);
  CHECK(good.config->retention.notice_payloads == 48h);
  CHECK(good.config->retention.collected == 1h);
  // The default key store sits beside the data key.
  CHECK(good.config->keys.store.sqlite_file == "/run/credentials/privacyd.service/subject-keys.db");
  // A signed message is accepted until tolerance past a timestamp that may be tolerance ahead.
  auto short_lived = parse_config(std::string(kGood) + "retention: { deliveries: 9m }\n", "/etc/privacyd/privacyd.yaml", env);
  CHECK(positions(short_lived.problems) ==
        "/etc/privacyd/privacyd.yaml:18:26: \"deliveries\" must be at least twice webhook.tolerance [value]\n");
}
