#pragma once
// Strict reading of operator-edited YAML: every problem is collected with
// its 1-based position, unknown keys are errors (with a suggestion), and a
// wrong type never becomes a silent default. Config, workflows and policies
// all read through this.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <yaml-cpp/yaml.h>

#include "daemon/base/diagnostic.hpp"
#include "daemon/base/units.hpp"

namespace privacyd {

// Looks up an environment variable; tests pass their own.
using EnvLookup = std::function<std::optional<std::string>(std::string_view)>;
EnvLookup process_env();

// Outside systemd (an operator running `privacyd check` or `keys status` by
// hand), ${CREDENTIALS_DIRECTORY} is `keys/` beside the config file: where
// `keys init` put what the unit hands over (/etc/privacyd/keys).
EnvLookup with_credentials_default(EnvLookup env, const std::filesystem::path& config_folder);

class YamlReader {
 public:
  YamlReader(std::string path, Diagnostics& out, EnvLookup env = process_env());

  // Parses a whole document; a syntax error is reported and yields nullopt.
  std::optional<YAML::Node> parse(std::string_view text);
  std::optional<YAML::Node> parse_file();

  // Reports a non-mapping, duplicate keys and keys not in `known`.
  bool expect_map(const YAML::Node& node, std::string_view what, const std::vector<std::string_view>& known);

  // Typed accessors for `map[key]`. An absent optional key yields nullopt
  // silently; an absent required key or a value of the wrong shape is
  // reported and yields nullopt. Strings have ${VAR} expanded.
  std::optional<std::string> string(const YAML::Node& map, std::string_view key, bool required = false);
  std::optional<std::int64_t> integer(const YAML::Node& map, std::string_view key, std::int64_t min,
                                      std::int64_t max, bool required = false);
  std::optional<Duration> duration(const YAML::Node& map, std::string_view key, bool required = false);
  std::optional<std::uint64_t> size(const YAML::Node& map, std::string_view key, bool required = false);
  std::optional<bool> boolean(const YAML::Node& map, std::string_view key);

  // ${VAR} expansion of one scalar, reporting unset variables at `at`.
  std::optional<std::string> expand(const std::string& text, const YAML::Mark& at);

  void error(const YAML::Mark& at, std::string message, std::string rule);
  void error(std::string message, std::string rule);  // file-level
  const std::string& path() const { return path_; }
  std::size_t errors() const { return out_.size() - first_; }

 private:
  std::optional<YAML::Node> scalar(const YAML::Node& map, std::string_view key, bool required,
                                   std::string_view expected);

  std::string path_;
  Diagnostics& out_;
  std::size_t first_;
  EnvLookup env_;
};

}  // namespace privacyd
