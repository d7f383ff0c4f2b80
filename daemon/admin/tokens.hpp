#pragma once
// Admin API bearer tokens (SPEC §8). The file holds only hashes, one per
// line: "ROLE NAME sha256:HEX" with ROLE viewer (reads) or operator (reads
// and acts); blank lines and # comments are ignored. A presented token is
// hashed and compared with every configured hash in constant time, so
// neither the match nor its position shows in the timing.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace privacyd::admin {

enum class Role { viewer, operator_ };

struct Token {
  Role role = Role::viewer;
  std::string name;    // who acted, for the audit trail ("by")
  std::string sha256;  // raw 32 bytes
};

// Throws std::runtime_error naming the file and line of the first problem
// (never the line's text: it may hold a token pasted by mistake).
std::vector<Token> load_tokens(const std::filesystem::path& file);
std::vector<Token> parse_tokens(std::string_view text, const std::string& origin);

// The token an `Authorization` header presents, if it is a configured one.
std::optional<Token> authenticate(const std::vector<Token>& tokens, std::string_view authorization);

std::string_view role_name(Role role);

}  // namespace privacyd::admin
