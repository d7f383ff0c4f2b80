// privacyd: privacy-rights requests for the cloud partner programme.
#include <CLI/CLI.hpp>

#include "daemon/cli/commands.hpp"

#ifndef PRIVACYD_VERSION
#define PRIVACYD_VERSION "0.0.0"
#endif

int main(int argc, char** argv) {
  CLI::App app{"privacyd — processes privacy-rights requests (access, deletion, disassociation)"};
  app.set_version_flag("--version", std::string("privacyd ") + PRIVACYD_VERSION);
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

  CLI11_PARSE(app, argc, argv);

  if (serve->parsed()) return privacyd::cli::serve(config_file);
  if (check->parsed()) return privacyd::cli::check(config_file, format);
  if (migrate->parsed()) return privacyd::cli::migrate(config_file);
  return 2;
}
