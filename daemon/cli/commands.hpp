#pragma once
// The subcommands of the privacyd binary. main.cpp parses arguments and
// calls one of these; each returns the process exit code.

#include <filesystem>
#include <string>
#include <vector>

namespace privacyd::cli {

int serve(const std::filesystem::path& config_file);
int check(const std::filesystem::path& config_file, const std::string& format);
int migrate(const std::filesystem::path& config_file);
int demo(const std::filesystem::path& config_file);
// Plays a partner: verifies and keeps notices POSTed to /notices.
struct ReceiveAcks {
  std::string outcome;  // erased, retained or no_data; empty: notices are not acknowledged
  std::string url = "http://127.0.0.1:8080/v1/webhooks/partner-ack";
};
int receive(const std::string& listen, const std::filesystem::path& secret_file, const std::filesystem::path& dir,
            const ReceiveAcks& acks);
// Prints the decrypted access package of a request; 1 when there is none.
int export_package(const std::filesystem::path& config_file, const std::string& request_id);
// Exit 0: intact; 1: broken (the first broken entry is printed); 2: error.
int audit_verify(const std::filesystem::path& config_file);
// A dry run: prints the plan (text, or JSON with `json`); exit 1 for a
// query that cannot be planned, 2 for an error.
struct PlanOptions {
  std::string type;
  std::string subject;
  std::string partner;
  std::vector<std::string> categories;
  std::string jurisdiction;
  bool json = false;
};
int plan(const std::filesystem::path& config_file, const PlanOptions& options);
// Exit 0: the receipt's signature holds under the public key; 1: it does
// not (why is printed); 2: a file cannot be read.
int receipt_verify(const std::filesystem::path& receipt_file, const std::filesystem::path& public_key_file);
// keys status | keys rotate: `batch` values per transaction; `max_batches`
// (0: until done) stops early, to resume later.
int keys_command(const std::filesystem::path& config_file, const std::string& action, int batch, int max_batches);

// keys init: creates, once and 0600, every key, secret and token file the
// config (and its policies) name, ${CREDENTIALS_DIRECTORY} meaning `dir`;
// without a config, the set the production config names, in `dir`. Exit
// 0 when done (files it does not make are listed), 1 for a config it
// cannot read, 2 for an error.
struct KeysInitOptions {
  std::filesystem::path dir;
  std::string config_file;
  bool self_signed_tls = false;  // make a self-signed pair for each TLS listener without one
  bool print_token = false;      // print the new operator token, not only where it is kept
};
int keys_init(const KeysInitOptions& options);

struct TriggerOptions {
  std::string type;
  std::string subject = "demo-001";
  std::string partner;
  std::string url = "http://127.0.0.1:8080/v1/webhooks/partner-center";
  std::string secret_file = "var/keys/webhook-secrets";
  std::string webhook_id;
  std::vector<std::string> categories;
  std::string statement_version = "1.0";
  std::string jurisdiction;
  std::string email;
  std::string name;
  std::string locale;
  std::string occurred_at;
  std::int64_t timestamp = 0;
  std::string body_file;
};
int trigger(const TriggerOptions& options);

// `requests list|show|approve|reject|retry|extend` and `notices list|retry`,
// over the admin API.
struct OperatorOptions {
  std::string action;  // list, show, approve, reject, retry, extend
  std::string id;
  std::string url;          // the admin API; default from --config, else http://127.0.0.1:8081
  std::string config_file;  // to find admin.listen
  std::string token_file;   // else PRIVACYD_TOKEN
  std::string status;
  std::string type;
  std::string cursor;
  int limit = 50;
  std::string reason;
  int days = 0;  // 0: the jurisdiction's whole extension
  bool json = false;
  bool unacknowledged = false;  // notices list: partner notices not yet acknowledged
  bool overdue = false;         // notices list: past their acknowledgement date
  std::string outcome;          // notices acknowledge
};
int requests_command(const OperatorOptions& options);
int notices_command(const OperatorOptions& options);

}  // namespace privacyd::cli
