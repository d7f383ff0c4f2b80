#pragma once
// The operator's contract (SPEC §2): config/privacyd.yaml, read strictly.
// Relative paths resolve against the config file's folder; ${VAR} expands
// in every string, so `${CREDENTIALS_DIRECTORY}/data.key` reads a systemd
// credential.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/base/diagnostic.hpp"
#include "daemon/base/log.hpp"
#include "daemon/base/units.hpp"
#include "daemon/config/yaml_reader.hpp"

namespace privacyd {

struct Endpoint {
  std::string host;
  std::uint16_t port = 0;
  std::string text() const;
};

// Parses "host:port" or "[v6]:port"; nullopt when malformed.
std::optional<Endpoint> parse_endpoint(std::string_view text);

struct DatabaseConfig {
  enum class Backend { sqlite3, postgresql };
  Backend backend = Backend::sqlite3;
  std::string parameters;  // SOCI backend parameters, sqlite path made absolute
  std::filesystem::path sqlite_file;  // sqlite3: the db=PATH among them
  std::size_t pool_size = 4;
  // PostgreSQL session deadlines: no statement, and no wait for a lock,
  // ties up a database thread for longer (SET at every connect).
  Duration statement_timeout = std::chrono::seconds(30);
  Duration lock_timeout = std::chrono::seconds(10);
  // PostgreSQL: frequent statements prepared once per connection
  // (store/prepared.hpp); off, they run as one-time queries.
  bool prepared_statements = true;
  // A data system's database belongs to someone else: privacyd opens it
  // as it is (no PRAGMAs that persist, never creates a missing SQLite file).
  bool foreign = false;
};

// Parses a SOCI URL "sqlite3://db=PATH …" or "postgresql://…", resolving a
// relative sqlite path against `base`. Returns an error message on failure.
std::optional<DatabaseConfig> parse_database_url(std::string_view url, const std::filesystem::path& base,
                                                 std::string& error);

struct Limits {
  std::size_t max_connections = 512;
  // From one client address: one address cannot take every connection.
  std::size_t max_connections_per_client = 64;
  std::uint64_t max_header = 8 * 1024;
  Duration read_timeout = std::chrono::seconds(30);
  Duration idle_timeout = std::chrono::seconds(60);
  Duration shutdown_grace = std::chrono::seconds(20);
};

// TLS for a listener: a PEM certificate chain and its private key. Empty:
// plain HTTP (behind a local proxy, or on loopback).
struct TlsConfig {
  std::filesystem::path certificate_file;
  std::filesystem::path key_file;
  bool enabled() const { return !certificate_file.empty(); }
};

struct Config {
  std::filesystem::path file;  // the config file itself
  Endpoint listen{"127.0.0.1", 8080};
  TlsConfig tls;  // the public listener's
  struct {
    Endpoint listen{"127.0.0.1", 8081};
    std::filesystem::path tokens_file;
    TlsConfig tls;
  } admin;
  DatabaseConfig database;
  std::filesystem::path workflows;
  std::filesystem::path policies;
  struct {
    std::filesystem::path data_key_file;
    std::vector<std::filesystem::path> previous_key_files;  // decrypt only, after a rotation
    std::filesystem::path index_key_file;                   // blind index key; default: the data key
    // Where subject keys are kept, wrapped (SPEC §14): a database of its
    // own. Default: subject-keys.db (SQLite) beside the data key file.
    DatabaseConfig store;
    // Signs receipts (SPEC §16): an Ed25519 private key in PEM. Empty: no
    // receipts.
    std::filesystem::path receipt_key_file;
  } keys;
  struct {
    std::filesystem::path secrets_file;
    Duration tolerance = std::chrono::seconds(300);
    std::uint64_t max_body = 64 * 1024;
  } webhook;
  struct {
    std::filesystem::path file_dir;
    std::string smtp;
    std::string from = "privacy@privacyd.invalid";  // the From: of subject notices
    // SMTP authentication (SPEC §13.3): with a user, an smtp:// relay must
    // offer STARTTLS, or the credentials are never sent.
    std::string smtp_user;
    std::filesystem::path smtp_password_file;
    std::filesystem::path smtp_ca_file;  // PEM CAs the relay's certificate must chain to (default: the system's)
    Duration timeout = std::chrono::seconds(30);    // one delivery attempt
    // Delays before attempt 1, 2, …; a notice still undelivered after the
    // last is dead (SPEC §7).
    std::vector<Duration> retry_schedule = {
        std::chrono::seconds(0),  std::chrono::seconds(5), std::chrono::minutes(5), std::chrono::minutes(30),
        std::chrono::hours(2),    std::chrono::hours(5),   std::chrono::hours(10),  std::chrono::hours(14),
        std::chrono::hours(20),   std::chrono::hours(24)};
  } notices;
  // How people and the Partner Center reach `listen` (SPEC §13.1): the
  // start of every link privacyd mails. Empty: http://LISTEN as bound.
  std::string public_url;
  struct {
    std::string callback_url;  // empty: the Partner Center is not called back
    std::filesystem::path secret_file;
  } partner_center;
  // What privacyd keeps of its own, and for how long (SPEC §14): stored
  // webhook answers (idempotency), delivered notices' payloads, and
  // collected data once its package is stored.
  struct {
    Duration deliveries = std::chrono::hours(24 * 7);
    Duration notice_payloads = std::chrono::hours(24 * 30);
    Duration collected = Duration(0);
  } retention;
  struct {
    Duration package_ttl = std::chrono::hours(24 * 7);
    int max_downloads = 5;
  } access;
  struct {
    Duration lease = std::chrono::seconds(30);  // how long a crashed instance's work stays claimed
    Duration poll = std::chrono::seconds(1);    // how often to look for due work when not woken
    std::size_t concurrency = 16;               // requests one instance drives at once
    // How long a run waits in memory for the notices it handed to the
    // notifier before giving the request back (0: never waits).
    Duration await_notices = std::chrono::seconds(2);
  } engine;
  LogLevel log_level = LogLevel::info;
  Limits limits;
  std::size_t io_threads = 2;
};

struct ConfigResult {
  std::optional<Config> config;  // set only when problems is empty
  Diagnostics problems;
  // What could be read, problems or not: `keys init` creates the files it
  // names even while a ${VAR} it does not need (the database) is unset.
  Config draft;
};

ConfigResult load_config(const std::filesystem::path& file, EnvLookup env = process_env());
ConfigResult parse_config(std::string_view text, const std::filesystem::path& file, EnvLookup env = process_env());

}  // namespace privacyd
