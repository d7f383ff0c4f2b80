#pragma once
// The key, secret and token files a config and its policies name: what
// `keys init` makes and what `check` reads (SPEC §11).

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "daemon/base/diagnostic.hpp"

namespace privacyd {
struct Config;
namespace policy {
struct Policies;
}
}  // namespace privacyd

namespace privacyd::cli {

enum class KeyKind {
  data_key,        // 32 random bytes (the data key, the blind index key)
  previous_key,    // an older data key: restored, never made
  webhook_secret,  // whsec_: the Partner Center's, its callback's, a partner's
  admin_tokens,    // "operator NAME sha256:HEX"; the token in operator-token beside it
  receipt_key,     // Ed25519, PEM
  tls_pair,        // certificate (path) and private key (key_path)
  given,           // what someone else gives: the SMTP relay's password, its CA
};

struct KeyFile {
  std::filesystem::path path;
  std::filesystem::path key_path;  // tls_pair: the private key's file
  KeyKind kind;
  std::string what;    // for people: "partner P-1001's notice secret"
  bool secret = true;  // false for what anyone may read: a CA bundle (a certificate's key stays secret)
};

std::vector<KeyFile> key_files(const Config& config, const policy::Policies& policies);

// Where keys init keeps the operator token it hashed into `tokens_file`.
std::filesystem::path operator_token_file(const std::filesystem::path& tokens_file);

// A path named for two purposes (a partner given the Partner Center's
// secret, a key written as a certificate, the operator token as the
// tokens file) says which, else nullopt. The data key may also be the
// index key and a previous key; both listeners may share one TLS pair.
std::optional<std::string> clashing_names(const std::vector<KeyFile>& files);

// Reads each file as what it is (a key of the right size, whsec_ secrets,
// token lines, a receipt key, a certificate and its own key) and adds a
// problem, rule "key", for each that cannot serve, and for a secret of a
// partner or of the callback that is also one of the Partner Center's
// webhook secrets (whoever holds it could sign the Partner Center's
// requests), however the files are linked or copied. Never quotes content.
void check_key_files(const Config& config, const std::vector<KeyFile>& files, Diagnostics& problems);

}  // namespace privacyd::cli
