#include "daemon/cli/key_files.hpp"

#include <algorithm>
#include <fstream>
#include <map>

#include "daemon/admin/tokens.hpp"
#include "daemon/config/config.hpp"
#include "daemon/crypto/certificate.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/crypto/receipt.hpp"
#include "daemon/crypto/webhook_signature.hpp"
#include "daemon/policy/policies.hpp"

namespace privacyd::cli {

namespace fs = std::filesystem;

std::vector<KeyFile> key_files(const Config& c, const policy::Policies& policies) {
  std::vector<KeyFile> out;
  auto add = [&](const fs::path& p, KeyKind kind, std::string what, bool secret = true) {
    if (!p.empty()) out.push_back({p, {}, kind, std::move(what), secret});
  };
  add(c.keys.data_key_file, KeyKind::data_key, "the data key");
  add(c.keys.index_key_file, KeyKind::data_key, "the blind index key");
  for (const auto& p : c.keys.previous_key_files) {
    add(p, KeyKind::previous_key, "a previous data key: restore it, keys init never makes one");
  }
  add(c.keys.receipt_key_file, KeyKind::receipt_key, "the receipt signing key");
  add(c.webhook.secrets_file, KeyKind::webhook_secret, "the Partner Center's webhook secret");
  add(c.admin.tokens_file, KeyKind::admin_tokens, "admin API tokens");
  add(c.partner_center.secret_file, KeyKind::webhook_secret, "the Partner Center callback's secret");
  for (const auto& [id, partner] : policies.partners) {
    add(partner.notice_secret_file, KeyKind::webhook_secret, "partner " + id + "'s notice secret");
  }
  add(c.notices.smtp_password_file, KeyKind::given, "the SMTP relay's password: its operator gives it");
  add(c.notices.smtp_ca_file, KeyKind::given, "the SMTP relay's CA certificates", false);
  for (const TlsConfig* tls : {&c.tls, &c.admin.tls}) {
    if (tls->enabled()) {
      out.push_back({tls->certificate_file, tls->key_file, KeyKind::tls_pair,
                     tls == &c.tls ? "the public listener's TLS certificate" : "the admin listener's TLS certificate"});
    }
  }
  return out;
}

fs::path operator_token_file(const fs::path& tokens_file) { return tokens_file.parent_path() / "operator-token"; }

std::optional<std::string> clashing_names(const std::vector<KeyFile>& files) {
  // Each path with what it is named as; the same key may serve as data,
  // index and previous key, and one pair may serve both listeners.
  struct Use {
    std::string group;
    std::string what;
  };
  std::map<fs::path, Use> uses;
  auto claim = [&](const fs::path& named, std::string group, const std::string& what) -> std::optional<std::string> {
    // The same file by another spelling or through a linked folder.
    std::error_code ec;
    fs::path p = fs::weakly_canonical(named, ec);
    if (ec) p = named;
    auto [it, fresh] = uses.try_emplace(p, Use{group, what});
    if (fresh || (it->second.group == group && group != "secret")) return std::nullopt;
    return named.string() + " is named both as " + it->second.what + " and as " + what;
  };
  for (const auto& f : files) {
    std::optional<std::string> clash;
    switch (f.kind) {
      case KeyKind::data_key:
      case KeyKind::previous_key: clash = claim(f.path, "data key", f.what); break;
      case KeyKind::webhook_secret: clash = claim(f.path, "secret", f.what); break;
      case KeyKind::admin_tokens:
        clash = claim(f.path, "tokens", f.what);
        if (!clash) clash = claim(operator_token_file(f.path), "token", "the operator token kept beside the tokens");
        break;
      case KeyKind::receipt_key: clash = claim(f.path, "receipt", f.what); break;
      case KeyKind::given: clash = claim(f.path, "given " + f.what, f.what); break;
      case KeyKind::tls_pair:
        clash = claim(f.path, "certificate " + f.key_path.string(), f.what);
        if (!clash) clash = claim(f.key_path, "certificate key", f.what + "'s key");
        break;
    }
    if (clash) return clash;
  }
  return std::nullopt;
}

void check_key_files(const Config& config, const std::vector<KeyFile>& files, Diagnostics& problems) {
  auto problem = [&](const KeyFile& f, const std::string& why) {
    problems.push_back({config.file.string(), 0, 0, f.what + ": " + why, "key"});
  };
  // Whether `p` is a file to read: a FIFO would hang check, a folder fail
  // obscurely.
  auto readable_file = [&](const KeyFile& f, const fs::path& p) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return true;
    problem(f, fs::exists(p, ec) ? p.string() + " is not a file" : "cannot read " + p.string());
    return false;
  };
  std::vector<std::string> partner_center_secrets;  // as bytes: the same key however it is spelled or linked
  std::vector<std::pair<const KeyFile*, std::vector<std::string>>> other_secrets;
  for (const auto& f : files) {
    if (!readable_file(f, f.path) || (f.kind == KeyKind::tls_pair && !readable_file(f, f.key_path))) continue;
    try {
      switch (f.kind) {
        case KeyKind::data_key:
        case KeyKind::previous_key: crypto::KeyRing::read_key_file(f.path); break;
        case KeyKind::webhook_secret: {
          auto keys = crypto::load_webhook_secrets(f.path);
          if (f.path == config.webhook.secrets_file) {
            partner_center_secrets = std::move(keys);
          } else {
            other_secrets.emplace_back(&f, std::move(keys));
          }
          break;
        }
        case KeyKind::admin_tokens: admin::load_tokens(f.path); break;
        case KeyKind::receipt_key: crypto::ReceiptSigner::load(f.path); break;
        case KeyKind::tls_pair:
          if (auto why = crypto::check_certificate_pair(f.path.string(), f.key_path.string()); !why.empty()) {
            problem(f, why);
          }
          break;
        case KeyKind::given: {
          std::ifstream in(f.path, std::ios::binary);
          if (!in || in.peek() == std::ifstream::traits_type::eof()) problem(f, "cannot read " + f.path.string());
          break;
        }
      }
    } catch (const std::exception& e) {
      problem(f, e.what());
    }
  }
  for (const auto& [f, keys] : other_secrets) {
    for (const auto& key : keys) {
      if (std::find(partner_center_secrets.begin(), partner_center_secrets.end(), key) != partner_center_secrets.end()) {
        problem(*f, "is one of the Partner Center's webhook secrets; whoever holds it could sign its requests");
        break;
      }
    }
  }
}

}  // namespace privacyd::cli
