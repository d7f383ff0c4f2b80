// keys init (SPEC §11): every key, secret and token file a config names,
// created once with mode 0600 and never over an existing file. The unit
// hands them over as credentials, so `${CREDENTIALS_DIRECTORY}` in the config
// and the policies means --dir here.
#include <algorithm>
#include <fstream>
#include <iostream>
#include <set>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/url/parse.hpp>
#include <openssl/crypto.h>

#include "daemon/base/files.hpp"
#include "daemon/cli/commands.hpp"
#include "daemon/config/config.hpp"
#include "daemon/crypto/certificate.hpp"
#include "daemon/crypto/primitives.hpp"
#include "daemon/crypto/receipt.hpp"
#include "daemon/policy/policies.hpp"

namespace privacyd::cli {
namespace {

namespace fs = std::filesystem;

enum class Kind {
  data_key,          // 32 random bytes, base64
  webhook_secret,    // whsec_ and base64 of 24 random bytes
  admin_tokens,      // "operator NAME sha256:HEX"; the token beside it
  receipt_key,       // Ed25519, PEM
  tls_pair,          // certificate and key, self-signed, only when asked
  never_made,        // what someone else gives: previous keys, the relay's password, a CA
};

struct Wanted {
  fs::path path;
  fs::path key_path;  // tls_pair: the private key's file
  Kind kind;
  std::string what;
};

// A secret held in memory only as long as it is written.
struct Secret {
  std::string text;
  ~Secret() { OPENSSL_cleanse(text.data(), text.size()); }
};

std::string whsec() { return "whsec_" + crypto::base64_encode(crypto::random_bytes(24)) + "\n"; }

// Files keys init writes without --config: those the shipped production
// config (config/privacyd.production.yaml) names under the credentials.
std::vector<Wanted> default_files(const fs::path& dir) {
  return {{dir / "data.key", {}, Kind::data_key, "the data key"},
          {dir / "webhook-secrets", {}, Kind::webhook_secret, "the Partner Center's webhook secret"},
          {dir / "admin-tokens", {}, Kind::admin_tokens, "admin API tokens"},
          {dir / "receipt.pem", {}, Kind::receipt_key, "the receipt signing key"},
          {dir / "partner-center-callback.secret", {}, Kind::webhook_secret, "the Partner Center callback's secret"}};
}

std::vector<Wanted> files_of(const Config& c, const policy::Policies& policies) {
  std::vector<Wanted> out;
  auto add = [&](const fs::path& p, Kind kind, std::string what) {
    if (!p.empty()) out.push_back({p, {}, kind, std::move(what)});
  };
  add(c.keys.data_key_file, Kind::data_key, "the data key");
  add(c.keys.index_key_file, Kind::data_key, "the blind index key");
  for (const auto& p : c.keys.previous_key_files) add(p, Kind::never_made, "a previous data key: restore it, keys init never makes one");
  add(c.keys.receipt_key_file, Kind::receipt_key, "the receipt signing key");
  add(c.webhook.secrets_file, Kind::webhook_secret, "the Partner Center's webhook secret");
  add(c.admin.tokens_file, Kind::admin_tokens, "admin API tokens");
  add(c.partner_center.secret_file, Kind::webhook_secret, "the Partner Center callback's secret");
  for (const auto& [id, partner] : policies.partners) {
    add(partner.notice_secret_file, Kind::webhook_secret, "partner " + id + "'s notice secret");
  }
  add(c.notices.smtp_password_file, Kind::never_made, "the SMTP relay's password: its operator gives it");
  add(c.notices.smtp_ca_file, Kind::never_made, "the SMTP relay's CA certificates");
  for (const TlsConfig* tls : {&c.tls, &c.admin.tls}) {
    if (tls->enabled()) {
      out.push_back({tls->certificate_file, tls->key_file, Kind::tls_pair,
                     tls == &c.tls ? "the public listener's TLS certificate" : "the admin listener's TLS certificate"});
    }
  }
  return out;
}

bool present(const fs::path& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

// A key others can read is worth a word, never a silent chmod.
void warn_if_loose(const fs::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) != 0) {
    std::cerr << "warning: " << p.string() << " can be read by others than its owner (chmod 600 it)\n";
  }
}

// The names a self-signed certificate is for: the public URL's host, this
// machine's name, and loopback.
std::vector<std::string> certificate_names(const Config* c) {
  std::vector<std::string> names;
  if (c != nullptr && !c->public_url.empty()) {
    if (auto url = boost::urls::parse_uri(c->public_url); url && !url->host_address().empty()) {
      names.push_back(std::string(url->host_address()));
    }
  }
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0 && host[0] != '\0') names.emplace_back(host);
  names.emplace_back("localhost");
  names.emplace_back("127.0.0.1");
  names.emplace_back("::1");
  std::vector<std::string> unique;
  for (auto& n : names) {
    if (std::find(unique.begin(), unique.end(), n) == unique.end()) unique.push_back(n);
  }
  return unique;
}

class Maker {
 public:
  Maker(const KeysInitOptions& options, const Config* config) : options_(options), config_(config) {}

  void make(const Wanted& w) {
    switch (w.kind) {
      case Kind::never_made:
        if (present(w.path)) return kept(w);
        missing_.push_back(w.path.string() + " (" + w.what + ")");
        return;
      case Kind::tls_pair: return make_tls(w);
      case Kind::admin_tokens: return make_tokens(w);
      default: break;
    }
    if (present(w.path)) return kept(w);
    Secret content;
    if (w.kind == Kind::data_key) content.text = crypto::base64_encode(crypto::random_bytes(32)) + "\n";
    if (w.kind == Kind::webhook_secret) content.text = whsec();
    if (w.kind == Kind::receipt_key) content.text = crypto::new_receipt_key_pem();
    write(w.path, content.text, w.what);
  }

  const std::vector<std::string>& missing() const { return missing_; }

 private:
  void kept(const Wanted& w) {
    std::cout << "kept " << w.path.string() << '\n';
    warn_if_loose(w.path);
  }

  void write(const fs::path& p, std::string_view content, const std::string& what, mode_t mode = 0600) {
    privacyd::create_directories(p.parent_path());
    if (create_file_once(p, content, mode)) {
      std::cout << "created " << p.string() << " (" << what << ")\n";
    } else {
      std::cout << "kept " << p.string() << " (made by another writer just now)\n";
    }
  }

  // The tokens file holds only the token's hash; the token itself is kept
  // beside it (0600) for the operator to take, and printed on request only:
  // a package's postinst output lands in apt's logs.
  void make_tokens(const Wanted& w) {
    const fs::path token_file = w.path.parent_path() / "operator-token";
    if (present(w.path)) return kept(w);
    // The token file first, then the hash of whichever token stands in it:
    // a run that stopped between the two, or another run that got there
    // first, leaves a token this run must not contradict.
    if (!present(token_file)) {
      Secret fresh{crypto::new_link_token()};
      write(token_file, fresh.text + "\n", "the operator's admin token");
    }
    Secret token{read_token(token_file)};
    write(w.path, "operator initial sha256:" + crypto::sha256_hex(token.text) + "\n", w.what);
    std::cout << "the operator token is in " << token_file.string()
              << " (give it to PRIVACYD_TOKEN or --token-file; delete the file once it is kept elsewhere)\n";
    if (options_.print_token) std::cout << "operator token: " << token.text << '\n';
  }

  static std::string read_token(const fs::path& p) {
    std::ifstream in(p);
    std::string token;
    std::getline(in, token);
    if (!in && token.empty()) throw std::runtime_error("cannot read " + p.string());
    if (crypto::token_digest(token).empty()) {
      throw std::runtime_error(p.string() + " holds no token (43 characters, base64url): move it away");
    }
    return token;
  }

  void make_tls(const Wanted& w) {
    const bool have_cert = present(w.path);
    const bool have_key = present(w.key_path);
    if (have_cert && have_key) {
      kept(w);
      kept({w.key_path, {}, w.kind, w.what});
      return;
    }
    if (!options_.self_signed_tls) {
      missing_.push_back(w.path.string() + " and " + w.key_path.string() + " (" + w.what +
                         ": install yours, or run keys init again with --self-signed-tls)");
      return;
    }
    if (have_cert != have_key) {
      throw std::runtime_error("only one of " + w.path.string() + " and " + w.key_path.string() +
                               " exists; keys init will not pair a new half with an old one");
    }
    auto pair = crypto::self_signed_certificate(certificate_names(config_), std::chrono::days(365));
    Secret key{std::move(pair.key_pem)};
    // The key first: a certificate without its key is what a crash must
    // never leave, since the next run would then refuse to pair them.
    write(w.key_path, key.text, w.what + ", its private key");
    write(w.path, pair.certificate_pem, w.what + ", self-signed for a year", 0644);
  }

  const KeysInitOptions& options_;
  const Config* config_;
  std::vector<std::string> missing_;
};

}  // namespace

int keys_init(const KeysInitOptions& options) {
  std::error_code ec;
  const fs::path dir = fs::absolute(options.dir, ec).lexically_normal();
  if (ec || options.dir.empty()) {
    std::cerr << "keys init: --dir must name a folder\n";
    return 2;
  }
  // ${CREDENTIALS_DIRECTORY} is where systemd will put what is written here.
  EnvLookup env = [dir, real = process_env()](std::string_view name) -> std::optional<std::string> {
    if (name == "CREDENTIALS_DIRECTORY") return dir.string();
    return real(name);
  };
  std::vector<Wanted> wanted;
  std::optional<ConfigResult> loaded;
  if (options.config_file.empty()) {
    wanted = default_files(dir);
  } else {
    loaded = load_config(options.config_file, env);
    Diagnostics problems = loaded->problems;
    auto policies = policy::load_policies(loaded->draft.policies, loaded->draft.file.parent_path(), problems, env);
    // An unset ${VAR} (the database's, in a fresh install) does not stop
    // keys init, unless it hides a file keys init must make.
    bool fatal = false;
    for (const auto& p : problems) {
      const bool unset = p.rule == "env";
      std::cerr << (unset ? "note: " : "") << format_text(p) << (unset ? " (not needed to create keys)" : "") << '\n';
      fatal = fatal || !unset;
    }
    if (fatal) {
      std::cerr << "keys init: nothing was created; fix the problems above first\n";
      return 1;
    }
    wanted = files_of(loaded->draft, policies);
    if (loaded->draft.keys.data_key_file.empty() || loaded->draft.webhook.secrets_file.empty()) {
      std::cerr << "keys init: the config names no data key or webhook secrets file it can resolve\n";
      return 1;
    }
  }
  try {
    privacyd::create_directories(dir);
    Maker maker(options, loaded ? &loaded->draft : nullptr);
    std::set<fs::path> seen;
    for (const auto& w : wanted) {
      if (seen.insert(w.path).second) maker.make(w);
    }
    for (const auto& m : maker.missing()) std::cerr << "not created: " << m << '\n';
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "keys init: " << e.what() << '\n';
    return 2;
  }
}

}  // namespace privacyd::cli
