#pragma once
// The subcommands of the privacyd binary. main.cpp parses arguments and
// calls one of these; each returns the process exit code.

#include <filesystem>
#include <string>

namespace privacyd::cli {

int serve(const std::filesystem::path& config_file);
int check(const std::filesystem::path& config_file, const std::string& format);
int migrate(const std::filesystem::path& config_file);

}  // namespace privacyd::cli
