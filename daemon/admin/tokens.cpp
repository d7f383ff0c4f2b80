#include "daemon/admin/tokens.hpp"

#include <boost/algorithm/hex.hpp>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "daemon/crypto/primitives.hpp"

namespace privacyd::admin {

namespace {

constexpr std::size_t kMaxFile = 1024 * 1024;
constexpr std::size_t kMaxToken = 1024;

std::optional<std::string> unhex(std::string_view text) {
  try {
    return boost::algorithm::unhex(std::string(text));
  } catch (const boost::algorithm::hex_decode_error&) {
    return std::nullopt;
  }
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.' || c == '@';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string_view role_name(Role role) { return role == Role::operator_ ? "operator" : "viewer"; }

std::vector<Token> parse_tokens(std::string_view text, const std::string& origin) {
  std::vector<Token> tokens;
  std::set<std::string, std::less<>> names;
  std::istringstream in{std::string(text)};
  std::string line;
  int number = 0;
  auto fail = [&](const std::string& why) {
    throw std::runtime_error(origin + ":" + std::to_string(number) + ": " + why);
  };
  while (std::getline(in, line)) {
    ++number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::istringstream fields(line);
    std::string role;
    std::string name;
    std::string hash;
    std::string extra;
    fields >> role;
    if (role.empty() || role.starts_with('#')) continue;
    fields >> name >> hash >> extra;
    if (hash.empty() || !extra.empty()) fail("expected \"ROLE NAME sha256:HEX\"");
    Token t;
    if (role == "viewer") {
      t.role = Role::viewer;
    } else if (role == "operator") {
      t.role = Role::operator_;
    } else {
      fail("the role is viewer or operator");
    }
    if (!valid_name(name)) fail("a name is 1-64 letters, digits, '-', '_', '.' or '@'");
    if (!names.insert(name).second) fail("the name \"" + name + "\" is used twice");
    auto digest = hash.starts_with("sha256:") ? unhex(std::string_view(hash).substr(7)) : std::nullopt;
    if (!digest || digest->size() != 32) fail("the hash is sha256: and 64 hex digits (sha256sum of the token)");
    t.name = name;
    t.sha256 = std::move(*digest);
    tokens.push_back(std::move(t));
  }
  return tokens;
}

std::vector<Token> load_tokens(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error(file.string() + ": cannot read the admin tokens file");
  std::string text(kMaxFile + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > kMaxFile) throw std::runtime_error(file.string() + ": the admin tokens file is larger than 1 MiB");
  return parse_tokens(text, file.string());
}

std::optional<Token> authenticate(const std::vector<Token>& tokens, std::string_view authorization) {
  constexpr std::string_view scheme = "bearer ";
  if (authorization.size() <= scheme.size() || authorization.size() > scheme.size() + kMaxToken) return std::nullopt;
  for (std::size_t i = 0; i < scheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != scheme[i]) return std::nullopt;
  }
  auto presented = authorization.substr(scheme.size());
  while (!presented.empty() && presented.front() == ' ') presented.remove_prefix(1);
  while (!presented.empty() && presented.back() == ' ') presented.remove_suffix(1);
  if (presented.empty()) return std::nullopt;
  const auto digest = crypto::sha256(presented);
  std::optional<Token> found;
  for (const auto& t : tokens) {  // every hash is compared, whichever matches
    if (crypto::constant_time_equal(digest, t.sha256) && !found) found = t;
  }
  return found;
}

}  // namespace privacyd::admin
