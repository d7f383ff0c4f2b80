// keys init (SPEC §11): every key, secret and token file a config names,
// created once with mode 0600 and never over an existing file. The unit
// hands them over as credentials, so `${CREDENTIALS_DIRECTORY}` in the config
// and the policies means --dir here.
#include <algorithm>
#include <fstream>
#include <iostream>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/url/parse.hpp>
#include <openssl/crypto.h>

#include "daemon/base/files.hpp"
#include "daemon/cli/commands.hpp"
#include "daemon/cli/key_files.hpp"
#include "daemon/config/config.hpp"
#include "daemon/crypto/certificate.hpp"
#include "daemon/crypto/primitives.hpp"
#include "daemon/crypto/receipt.hpp"
#include "daemon/policy/policies.hpp"

namespace privacyd::cli {
namespace {

namespace fs = std::filesystem;

// A secret held in memory only as long as it is written.
struct Secret {
  std::string text;
  ~Secret() { OPENSSL_cleanse(text.data(), text.size()); }
};

// Stands for an unset ${VAR} in a second reading of the config, so that a
// file path built on one is found (the first reading only says the
// variable is unset, not where it hid a file). Eight folders deep, so that
// no "../" after it normalises it away.
constexpr char kMark = '\x01';
std::string unset_mark(std::string_view name) {
  std::string mark;
  for (int i = 0; i < 8; ++i) mark += std::string(1, kMark) + std::string(name) + kMark + "/";
  mark.pop_back();
  return mark;
}

// Files keys init writes without --config: those the shipped production
// config (config/privacyd.production.yaml) names under the credentials.
std::vector<KeyFile> default_files(const fs::path& dir) {
  return {{dir / "data.key", {}, KeyKind::data_key, "the data key"},
          {dir / "webhook-secrets", {}, KeyKind::webhook_secret, "the Partner Center's webhook secret"},
          {dir / "admin-tokens", {}, KeyKind::admin_tokens, "admin API tokens"},
          {dir / "receipt.pem", {}, KeyKind::receipt_key, "the receipt signing key"},
          {dir / "partner-center-callback.secret", {}, KeyKind::webhook_secret, "the Partner Center callback's secret"}};
}

// The names a self-signed certificate is for: the public URL's host (else
// this machine's name), and loopback. A name no certificate can hold is
// left out, and said so.
std::vector<std::string> certificate_names(const Config* c) {
  std::vector<std::string> names;
  if (c != nullptr && !c->public_url.empty()) {
    if (auto url = boost::urls::parse_uri(c->public_url); url && !url->host_address().empty()) {
      names.emplace_back(url->host_address());
    }
  }
  if (names.empty()) {
    char host[256] = {};
    if (::gethostname(host, sizeof host - 1) == 0 && host[0] != '\0') names.emplace_back(host);
  }
  std::vector<std::string> out;
  for (const auto& n : names) {
    if (crypto::certifiable_name(n)) {
      out.push_back(n);
    } else {
      std::cerr << "note: \"" << n << "\" is no host name a certificate can hold; left out\n";
    }
  }
  for (const char* n : {"localhost", "127.0.0.1", "::1"}) {
    if (std::find(out.begin(), out.end(), n) == out.end()) out.emplace_back(n);
  }
  return out;
}

class Maker {
 public:
  Maker(const KeysInitOptions& options, const Config* config) : options_(options), config_(config) {}

  void make(const KeyFile& w) {
    switch (w.kind) {
      case KeyKind::previous_key:
      case KeyKind::given:
        if (kept(w.path, w.secret)) return;
        missing_.push_back(w.path.string() + " (" + w.what + ")");
        return;
      case KeyKind::tls_pair: return make_tls(w);
      case KeyKind::admin_tokens: return make_tokens(w);
      default: break;
    }
    if (kept(w.path)) return;
    Secret content;
    if (w.kind == KeyKind::data_key) content.text = crypto::base64_encode(crypto::random_bytes(32)) + "\n";
    if (w.kind == KeyKind::webhook_secret) content.text = "whsec_" + crypto::base64_encode(crypto::random_bytes(24)) + "\n";
    if (w.kind == KeyKind::receipt_key) content.text = crypto::new_receipt_key_pem();
    write(w.path, content.text, w.what);
  }

  const std::vector<std::string>& missing() const { return missing_; }

 private:
  // True when `p` is there to keep. What is there but cannot serve as a key
  // file (a folder, a dangling link) is an error, and one others may read
  // or that someone else owns is worth a word, never a silent change.
  static bool kept(const fs::path& p, bool secret = true) {
    struct stat link {};
    if (::lstat(p.c_str(), &link) != 0) return false;
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      throw std::runtime_error(p.string() + " exists but is not a file (a folder, or a link to nothing)");
    }
    std::cout << "kept " << p.string() << '\n';
    if (!secret) return true;
    if ((st.st_mode & 077) != 0) {
      std::cerr << "warning: " << p.string() << " can be read by others than its owner (chmod 600 it)\n";
    }
    if (st.st_uid != ::geteuid()) {
      std::cerr << "warning: " << p.string() << " belongs to uid " << st.st_uid << ", not to this user\n";
    }
    return true;
  }

  // Another user who can write in the folder could have planted a key, or
  // swap one later: no key is made there.
  static void refuse_shared_folder(const fs::path& dir) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0 && ((st.st_mode & 022) != 0 || st.st_uid != ::geteuid())) {
      throw std::runtime_error("the folder " + dir.string() +
                               " is writable by others or owned by another user; keys init makes no key there");
    }
  }

  // Another run may make the file first: then its file stands.
  void write(const fs::path& p, std::string_view content, const std::string& what, mode_t mode = 0600) {
    privacyd::create_directories(p.parent_path());
    refuse_shared_folder(p.parent_path());
    if (create_file_once(p, content, mode)) {
      std::cout << "created " << p.string() << " (" << what << ")\n";
    } else {
      std::cout << "kept " << p.string() << " (made by another writer just now)\n";
    }
  }

  // The tokens file holds only the token's hash; the token itself is kept
  // beside it (0600) for the operator to take, and printed on request only:
  // a package's postinst output lands in apt's logs.
  void make_tokens(const KeyFile& w) {
    const fs::path token_file = operator_token_file(w.path);
    if (kept(w.path)) return;
    // The token file first, then the hash of whichever token stands in it:
    // a run that stopped between the two, or another run that got there
    // first, leaves a token this run must not contradict.
    if (kept(token_file)) {
      std::cout << "the tokens file is made for the operator token already in " << token_file.string()
                << " (delete that file first for a new token)\n";
    } else {
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
    if (!in) throw std::runtime_error("cannot read " + p.string());
    Secret line;
    std::getline(in, line.text);
    if (crypto::token_digest(line.text).empty()) {
      throw std::runtime_error(p.string() + " holds no token (43 characters, base64url): move it away");
    }
    return line.text;
  }

  void make_tls(const KeyFile& w) {
    const bool have_cert = kept(w.path, false);
    const bool have_key = kept(w.key_path);
    if (have_cert && have_key) return;
    if (!options_.self_signed_tls) {
      missing_.push_back(w.path.string() + " and " + w.key_path.string() + " (" + w.what +
                         ": install yours, or run keys init again with --self-signed-tls)");
      return;
    }
    if (have_cert) {
      throw std::runtime_error(w.path.string() + " exists without its key " + w.key_path.string() +
                               "; keys init will not pair a new key with it");
    }
    // The key first: a crash between the two leaves a key, which the next
    // run certifies, never a certificate without its key. The certificate
    // is for the key on disk, whoever wrote it: a run that lost the race
    // to write the key certifies the winner's.
    const auto names = certificate_names(config_);
    if (!have_key) {
      Secret fresh{crypto::self_signed_certificate(names, kYear).key_pem};
      write(w.key_path, fresh.text, w.what + ", its private key");
    }
    Secret key;
    if (std::ifstream in(w.key_path, std::ios::binary); in) key.text.assign(std::istreambuf_iterator<char>(in), {});
    if (key.text.empty()) throw std::runtime_error("cannot read the key " + w.key_path.string());
    write(w.path, crypto::self_signed_certificate(names, kYear, key.text).certificate_pem,
          w.what + ", self-signed for a year", 0644);
  }

  static constexpr std::chrono::days kYear{365};

  const KeysInitOptions& options_;
  const Config* config_;
  std::vector<std::string> missing_;
};

struct Read {
  std::optional<ConfigResult> config;
  std::vector<KeyFile> files;
};

// Reads the config and its policies twice: once as they are, to report
// problems (an unset ${VAR} is only a note), and once with a mark for
// every unset variable, to find a file path built on one.
std::optional<Read> read(const KeysInitOptions& options, const fs::path& dir) {
  auto lookup = [&](bool mark) -> EnvLookup {
    return [dir, mark, real = process_env()](std::string_view name) -> std::optional<std::string> {
      if (name == "CREDENTIALS_DIRECTORY") return dir.string();
      auto value = real(name);
      if (!value && mark) return unset_mark(name);
      return value;
    };
  };
  Read out;
  out.config = load_config(options.config_file, lookup(false));
  Diagnostics problems = out.config->problems;
  const Config& draft = out.config->draft;
  policy::load_policies(draft.policies, draft.file.parent_path(), problems, lookup(false));
  bool fatal = false;
  for (const auto& p : problems) {
    const bool unset = p.rule == "env";
    std::cerr << (unset ? "note: " : "") << format_text(p) << (unset ? " (not needed to create keys)" : "") << '\n';
    fatal = fatal || !unset;
  }
  if (!fatal) {
    Diagnostics ignored;
    auto marked = load_config(options.config_file, lookup(true));
    auto policies = policy::load_policies(marked.draft.policies, marked.draft.file.parent_path(), ignored, lookup(true));
    out.files = key_files(marked.draft, policies);
    for (const auto& f : out.files) {
      for (const auto& p : {f.path.string(), f.key_path.string()}) {
        if (auto at = p.find(kMark); at != std::string::npos) {
          std::cerr << "keys init: " << f.what << " is named with ${" << p.substr(at + 1, p.find(kMark, at + 1) - at - 1)
                    << "}, which is not set\n";
          fatal = true;
        }
      }
    }
  }
  if (!fatal && (draft.keys.data_key_file.empty() || draft.webhook.secrets_file.empty())) {
    std::cerr << "keys init: the config names no data key or webhook secrets file\n";
    fatal = true;
  }
  if (!fatal) {
    if (auto clash = clashing_names(out.files)) {
      std::cerr << "keys init: " << *clash << '\n';
      fatal = true;
    }
  }
  if (fatal) {
    std::cerr << "keys init: nothing was created; fix the problems above first\n";
    return std::nullopt;
  }
  return out;
}

}  // namespace

int keys_init(const KeysInitOptions& options) {
  std::error_code ec;
  const fs::path dir = fs::absolute(options.dir, ec).lexically_normal();
  if (ec || options.dir.empty()) {
    std::cerr << "keys init: --dir must name a folder\n";
    return 2;
  }
  Read what;
  if (options.config_file.empty()) {
    what.files = default_files(dir);
  } else if (auto read_ok = read(options, dir)) {
    what = std::move(*read_ok);
  } else {
    return 1;
  }
  try {
    privacyd::create_directories(dir);
    Maker maker(options, what.config ? &what.config->draft : nullptr);
    std::vector<fs::path> seen;
    for (const auto& f : what.files) {
      if (std::find(seen.begin(), seen.end(), f.path) != seen.end()) continue;  // a pair both listeners share
      seen.push_back(f.path);
      maker.make(f);
    }
    for (const auto& m : maker.missing()) std::cerr << "not created: " << m << '\n';
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "keys init: " << e.what() << '\n';
    return 2;
  }
}

}  // namespace privacyd::cli
