// privacyd: privacy-rights requests for the cloud partner programme.
#include <CLI/CLI.hpp>
#include <sys/stat.h>

#include <functional>

#include "daemon/cli/commands.hpp"

#ifndef PRIVACYD_VERSION
#define PRIVACYD_VERSION "0.0.0"
#endif

int main(int argc, char** argv) {
  CLI::App app{"privacyd — processes privacy-rights requests (access, deletion, disassociation)"};
  const std::string version = std::string("privacyd ") + PRIVACYD_VERSION;
  app.set_version_flag("--version", version);
  app.require_subcommand(1);

  std::string config_file;
  auto add_config = [&](CLI::App* sub) {
    sub->add_option("--config,-c", config_file, "Path to privacyd.yaml")->required();
  };

  auto* serve = app.add_subcommand("serve", "Run the daemon in the foreground");
  add_config(serve);

  std::string format = "text";
  auto* check = app.add_subcommand("check", "Validate the config, workflows and policies");
  add_config(check);
  check->add_option("--format", format, "Output format")->check(CLI::IsMember({"text", "json"}));

  auto* migrate = app.add_subcommand("migrate", "Create or upgrade the database schema and exit");
  add_config(migrate);

  auto* demo = app.add_subcommand("demo", "Create the demo data systems and demo subjects (idempotent)");
  add_config(demo);

  std::string receive_listen = "127.0.0.1:9100";
  std::string receive_secret;
  std::string receive_dir = "var/partner-notices";
  auto* receiver = app.add_subcommand("receive", "Play a partner: verify and keep the notices POSTed to /notices");
  receiver->add_option("--listen", receive_listen, "HOST:PORT to listen on")->capture_default_str();
  receiver->add_option("--secret-file", receive_secret, "The partner's whsec_ secrets")->required();
  receiver->add_option("--dir", receive_dir, "Where to keep the notices")->capture_default_str();
  privacyd::cli::ReceiveAcks receive_acks;
  receiver->add_option("--acknowledge", receive_acks.outcome, "Acknowledge each notice with this outcome")
      ->check(CLI::IsMember({"erased", "retained", "no_data"}));
  receiver->add_option("--ack-url", receive_acks.url, "Where acknowledgements go (privacyd's public listener)")
      ->capture_default_str();

  std::string request_id;
  auto* exporter = app.add_subcommand("export", "Print a request's access package, decrypted");
  add_config(exporter);
  exporter->add_option("request", request_id, "Request id (req_…)")->required();

  auto* audit = app.add_subcommand("audit", "Work with the hash-chained audit trail");
  audit->require_subcommand(1);
  auto* verify = audit->add_subcommand("verify", "Walk the audit chain; exit 1 at the first broken entry");
  add_config(verify);

  privacyd::cli::PlanOptions plan_options;
  auto* planner = app.add_subcommand("plan", "Show what a request would do now, changing nothing (a dry run)");
  add_config(planner);
  planner->add_option("type", plan_options.type, "Request type")
      ->required()
      ->check(CLI::IsMember({"access", "deletion", "disassociation"}));
  planner->add_option("--subject", plan_options.subject, "HUAWEI ID of the subject")->required();
  planner->add_option("--partner", plan_options.partner, "Partner id (a disassociation's)");
  planner->add_option("--categories", plan_options.categories, "Categories in scope (default: all)")->delimiter(',');
  planner->add_option("--jurisdiction", plan_options.jurisdiction, "Jurisdiction (default: the policies' default)");
  planner->add_flag("--json", plan_options.json, "Print JSON, for scripts");

  std::string receipt_file, receipt_public_key;
  auto* receipt = app.add_subcommand("receipt", "Work with signed receipts (SPEC §16)");
  receipt->require_subcommand(1);
  auto* receipt_verify =
      receipt->add_subcommand("verify", "Check a receipt's signature offline; exit 0 when it holds, 1 when not");
  receipt_verify->add_option("file", receipt_file, "The receipt (JSON, as GET /v1/requests/{id}/receipt gives it)")
      ->required();
  receipt_verify->add_option("--public-key", receipt_public_key,
                             "The signer's public key (PEM, as GET /v1/receipts/public-key gives it)")
      ->required();

  auto* keys = app.add_subcommand("keys", "Subject keys and the master key (SPEC §14)");
  keys->require_subcommand(1);
  privacyd::cli::KeysInitOptions init_options;
  auto* keys_init = keys->add_subcommand(
      "init", "Create every key, secret and token file the config names, once, mode 0600; never overwrite one");
  keys_init->add_option("--dir", init_options.dir, "Where the keys go (${CREDENTIALS_DIRECTORY} in the config)")
      ->required();
  keys_init->add_option("--config,-c", init_options.config_file,
                        "The config whose files to create (default: the production set, in --dir)");
  keys_init->add_flag("--self-signed-tls", init_options.self_signed_tls,
                      "Make a self-signed certificate for each TLS listener that has none");
  keys_init->add_flag("--print-token", init_options.print_token, "Print a new operator token on standard output");
  auto* keys_status = keys->add_subcommand("status", "Count what each master key id still protects");
  add_config(keys_status);
  int rotate_batch = 500, rotate_max_batches = 0;
  auto* keys_rotate =
      keys->add_subcommand("rotate", "Re-seal everything the master key protects under the current one, online");
  add_config(keys_rotate);
  keys_rotate->add_option("--batch", rotate_batch, "Values per transaction")->capture_default_str()->check(
      CLI::Range(1, 100000));
  keys_rotate->add_option("--max-batches", rotate_max_batches, "Stop after this many batches (0: until done)")
      ->capture_default_str();

  privacyd::cli::TriggerOptions t;
  auto* trigger = app.add_subcommand("trigger", "Send one signed webhook, as the Partner Center does, and print the answer");
  trigger->add_option("type", t.type, "Event type")
      ->required()
      ->check(CLI::IsMember({"association.created", "data.disclosed", "request.access", "request.deletion",
                             "request.disassociation"}));
  trigger->add_option("--subject", t.subject, "HUAWEI ID of the subject")->capture_default_str();
  trigger->add_option("--partner", t.partner, "Partner id (default P-1001 where one is needed)");
  trigger->add_option("--url", t.url, "Webhook URL")->capture_default_str();
  trigger->add_option("--secret-file", t.secret_file, "File of whsec_ secrets; the first one signs")
      ->capture_default_str();
  trigger->add_option("--id", t.webhook_id, "webhook-id (default: a random one)");
  trigger->add_option("--categories", t.categories, "Categories")->delimiter(',');
  trigger->add_option("--statement-version", t.statement_version, "Accepted statement version")->capture_default_str();
  trigger->add_option("--jurisdiction", t.jurisdiction, "Jurisdiction, e.g. EU");
  trigger->add_option("--email", t.email, "Subject email");
  trigger->add_option("--name", t.name, "Subject name");
  trigger->add_option("--locale", t.locale, "Subject locale, e.g. zh-CN");
  trigger->add_option("--occurred-at", t.occurred_at, "RFC 3339 time of the event (default: now)");
  trigger->add_option("--timestamp", t.timestamp, "webhook-timestamp in Unix seconds (default: now)");
  trigger->add_option("--body", t.body_file, "Send this file as the body instead of building one");

  privacyd::cli::OperatorOptions op;
  auto add_connection = [&](CLI::App* sub) {
    sub->add_option("--url", op.url, "Admin API base URL (default: admin.listen of --config, else http://127.0.0.1:8081)");
    sub->add_option("--config,-c", op.config_file, "privacyd.yaml, to find admin.listen");
    sub->add_option("--token-file", op.token_file, "File holding the admin token (else $PRIVACYD_TOKEN)");
    sub->add_flag("--json", op.json, "Print the API's JSON instead of a table");
  };
  auto add_id = [&](CLI::App* sub, const char* what) { sub->add_option("id", op.id, what)->required(); };
  auto add_reason = [&](CLI::App* sub, bool required) {
    auto* o = sub->add_option("--reason", op.reason, "Why (kept in the audit trail; a rejection's reason reaches the person)");
    if (required) o->required();
  };

  auto* requests = app.add_subcommand("requests", "See and act on requests through the admin API");
  requests->require_subcommand(1);
  auto* r_list = requests->add_subcommand("list", "List requests, newest first");
  r_list->add_option("--status", op.status, "received, running, awaiting_approval, completed, rejected or failed");
  r_list->add_option("--type", op.type, "access, deletion or disassociation");
  r_list->add_option("--limit", op.limit, "Requests per page (1-500)")->capture_default_str();
  r_list->add_option("--cursor", op.cursor, "Continue after this page (printed under the table)");
  auto* r_show = requests->add_subcommand("show", "A request's deadline, workflow, steps and notices");
  auto* r_approve = requests->add_subcommand("approve", "Approve a request awaiting approval");
  auto* r_reject = requests->add_subcommand("reject", "Reject a request awaiting approval, or a failed one, telling the person why");
  auto* r_retry = requests->add_subcommand("retry", "Run a failed request again from the step that failed");
  auto* r_extend = requests->add_subcommand("extend", "Extend a request's deadline, once, within its jurisdiction");
  r_extend->add_option("--days", op.days, "Days to add (default: the jurisdiction's whole extension)");
  for (auto* sub : {r_list, r_show, r_approve, r_reject, r_retry, r_extend}) add_connection(sub);
  for (auto* sub : {r_show, r_approve, r_reject, r_retry, r_extend}) add_id(sub, "Request id (req_…)");
  add_reason(r_reject, true);
  add_reason(r_extend, true);

  auto* notices = app.add_subcommand("notices", "See, retry and acknowledge notices through the admin API");
  notices->require_subcommand(1);
  auto* n_list = notices->add_subcommand("list", "List notices, newest first");
  n_list->add_option("--status", op.status, "pending, delivered or dead");
  n_list->add_option("--limit", op.limit, "Notices per page (1-500)")->capture_default_str();
  n_list->add_option("--cursor", op.cursor, "Continue after this page");
  n_list->add_flag("--unacknowledged", op.unacknowledged, "Only partner notices not yet acknowledged");
  n_list->add_flag("--overdue", op.overdue, "Only partner notices past their acknowledgement date");
  auto* n_retry = notices->add_subcommand("retry", "Deliver a dead notice afresh");
  add_id(n_retry, "Notice id (ntc_…)");
  auto* n_ack = notices->add_subcommand("acknowledge", "Record a partner's answer to a notice, given some other way");
  add_id(n_ack, "Notice id (ntc_…)");
  n_ack->add_option("--outcome", op.outcome, "erased, retained or no_data")
      ->required()
      ->check(CLI::IsMember({"erased", "retained", "no_data"}));
  n_ack->add_option("--note", op.reason, "What the partner said (at most 4000 bytes of text)");
  for (auto* sub : {n_list, n_retry, n_ack}) add_connection(sub);

  // --version on every subcommand too, as on the binary (CLI11 hands
  // --help down to subcommands, not --version).
  std::function<void(CLI::App*)> hand_down_version = [&](CLI::App* parent) {
    for (auto* sub : parent->get_subcommands([](CLI::App*) { return true; })) {
      sub->set_version_flag("--version", version);
      hand_down_version(sub);
    }
  };
  hand_down_version(&app);

  CLI11_PARSE(app, argc, argv);

  // Whatever privacyd creates (the SQLite database, notices, exports) is
  // for its own user only, whoever started it and however.
  ::umask(077);

  if (serve->parsed()) return privacyd::cli::serve(config_file);
  if (check->parsed()) return privacyd::cli::check(config_file, format);
  if (migrate->parsed()) return privacyd::cli::migrate(config_file);
  if (trigger->parsed()) return privacyd::cli::trigger(t);
  if (demo->parsed()) return privacyd::cli::demo(config_file);
  if (keys_init->parsed()) return privacyd::cli::keys_init(init_options);
  if (keys_status->parsed()) return privacyd::cli::keys_command(config_file, "status", rotate_batch, 0);
  if (keys_rotate->parsed()) {
    return privacyd::cli::keys_command(config_file, "rotate", rotate_batch, rotate_max_batches);
  }
  if (receiver->parsed()) return privacyd::cli::receive(receive_listen, receive_secret, receive_dir, receive_acks);
  if (exporter->parsed()) return privacyd::cli::export_package(config_file, request_id);
  if (verify->parsed()) return privacyd::cli::audit_verify(config_file);
  if (planner->parsed()) return privacyd::cli::plan(config_file, plan_options);
  if (receipt_verify->parsed()) return privacyd::cli::receipt_verify(receipt_file, receipt_public_key);
  // get_subcommands() lists the ones given on this command line.
  if (requests->parsed()) {
    op.action = requests->get_subcommands().front()->get_name();
    return privacyd::cli::requests_command(op);
  }
  if (notices->parsed()) {
    op.action = notices->get_subcommands().front()->get_name();
    return privacyd::cli::notices_command(op);
  }
  return 2;
}
