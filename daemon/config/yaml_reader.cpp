#include "daemon/config/yaml_reader.hpp"

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

namespace privacyd {

EnvLookup process_env() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* v = std::getenv(std::string(name).c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

EnvLookup with_credentials_default(EnvLookup env, const std::filesystem::path& config_folder) {
  return [env = std::move(env), keys = (config_folder / "keys").string()](std::string_view name) {
    auto value = env(name);
    if (!value && name == "CREDENTIALS_DIRECTORY") value = keys;
    return value;
  };
}

YamlReader::YamlReader(std::string path, Diagnostics& out, EnvLookup env)
    : path_(std::move(path)), out_(out), first_(out.size()), env_(std::move(env)) {}

void YamlReader::error(const YAML::Mark& at, std::string message, std::string rule) {
  // yaml-cpp marks are 0-based; a null mark (-1) has no position.
  int line = at.line >= 0 ? at.line + 1 : 0;
  int column = at.column >= 0 ? at.column + 1 : 0;
  out_.push_back({path_, line, column, std::move(message), std::move(rule)});
}

void YamlReader::error(std::string message, std::string rule) {
  out_.push_back({path_, 0, 0, std::move(message), std::move(rule)});
}

std::optional<YAML::Node> YamlReader::parse(std::string_view text) {
  try {
    std::string owned(text);
    return YAML::Load(owned);
  } catch (const YAML::Exception& e) {
    error(e.mark, e.msg, "syntax");
    return std::nullopt;
  }
}

std::optional<YAML::Node> YamlReader::parse_file() {
  std::ifstream in(path_, std::ios::binary);
  if (!in) {
    error("cannot read file", "io");
    return std::nullopt;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse(text.str());
}

bool YamlReader::expect_map(const YAML::Node& node, std::string_view what,
                            const std::vector<std::string_view>& known) {
  if (!node.IsMap()) {
    error(node.Mark(), std::string(what) + " must be a mapping", "type");
    return false;
  }
  std::set<std::string, std::less<>> seen;
  for (const auto& entry : node) {
    const YAML::Node& key = entry.first;
    if (!key.IsScalar()) {
      error(key.Mark(), "keys in " + std::string(what) + " must be plain strings", "type");
      continue;
    }
    const std::string& name = key.Scalar();
    if (!seen.insert(name).second) {
      error(key.Mark(), "duplicate key \"" + name + "\" in " + std::string(what), "duplicate-key");
      continue;
    }
    bool is_known = false;
    for (auto k : known) is_known = is_known || k == name;
    if (!is_known) {
      std::string message = "unknown key \"" + name + "\" in " + std::string(what);
      if (auto hint = did_you_mean(name, known); !hint.empty()) {
        message += " (did you mean \"" + hint + "\"?)";
      }
      error(key.Mark(), std::move(message), "unknown-key");
    }
  }
  return true;
}

std::optional<YAML::Node> YamlReader::scalar(const YAML::Node& map, std::string_view key, bool required,
                                             std::string_view expected) {
  const YAML::Node value = map[std::string(key)];
  if (!value.IsDefined() || value.IsNull()) {
    if (required) error(map.Mark(), "missing required key \"" + std::string(key) + "\"", "missing-key");
    return std::nullopt;
  }
  if (!value.IsScalar()) {
    error(value.Mark(), "\"" + std::string(key) + "\" must be " + std::string(expected), "type");
    return std::nullopt;
  }
  return value;
}

std::optional<std::string> YamlReader::expand(const std::string& text, const YAML::Mark& at) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '$' && i + 1 < text.size() && text[i + 1] == '{') {
      auto close = text.find('}', i + 2);
      if (close == std::string::npos) {
        error(at, "unterminated \"${\" in \"" + text + "\"", "syntax");
        return std::nullopt;
      }
      std::string name = text.substr(i + 2, close - i - 2);
      auto value = env_(name);
      if (!value) {
        error(at, "environment variable " + name + " is not set", "env");
        return std::nullopt;
      }
      out += *value;
      i = close;
    } else {
      out += text[i];
    }
  }
  return out;
}

std::optional<std::string> YamlReader::string(const YAML::Node& map, std::string_view key, bool required) {
  auto value = scalar(map, key, required, "a string");
  if (!value) return std::nullopt;
  return expand(value->Scalar(), value->Mark());
}

std::optional<std::int64_t> YamlReader::integer(const YAML::Node& map, std::string_view key, std::int64_t min,
                                                std::int64_t max, bool required) {
  auto value = scalar(map, key, required, "an integer");
  if (!value) return std::nullopt;
  const std::string& text = value->Scalar();
  std::int64_t n = 0;
  std::size_t used = 0;
  try {
    n = std::stoll(text, &used, 10);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size()) {
    error(value->Mark(), "\"" + std::string(key) + "\" must be an integer, not \"" + text + "\"", "type");
    return std::nullopt;
  }
  if (n < min || n > max) {
    error(value->Mark(),
          "\"" + std::string(key) + "\" must be between " + std::to_string(min) + " and " + std::to_string(max),
          "value");
    return std::nullopt;
  }
  return n;
}

std::optional<bool> YamlReader::boolean(const YAML::Node& map, std::string_view key) {
  auto value = scalar(map, key, false, "true or false");
  if (!value) return std::nullopt;
  const std::string& text = value->Scalar();
  if (text == "true") return true;
  if (text == "false") return false;
  error(value->Mark(), "\"" + std::string(key) + "\" must be true or false, not \"" + text + "\"", "type");
  return std::nullopt;
}

std::optional<Duration> YamlReader::duration(const YAML::Node& map, std::string_view key, bool required) {
  auto value = scalar(map, key, required, "a duration");
  if (!value) return std::nullopt;
  auto d = parse_duration(value->Scalar());
  if (!d) {
    error(value->Mark(),
          "bad duration \"" + value->Scalar() + "\" for \"" + std::string(key) +
              "\" (write e.g. 500ms, 30s, 10m, 2h, 7d)",
          "duration");
  }
  return d;
}

std::optional<std::uint64_t> YamlReader::size(const YAML::Node& map, std::string_view key, bool required) {
  auto value = scalar(map, key, required, "a size");
  if (!value) return std::nullopt;
  auto s = parse_size(value->Scalar());
  if (!s) {
    error(value->Mark(),
          "bad size \"" + value->Scalar() + "\" for \"" + std::string(key) + "\" (write e.g. 8KiB, 64KiB, 1MiB)",
          "size");
  }
  return s;
}

}  // namespace privacyd
