#include "daemon/crypto/keyring.hpp"

#include <fstream>
#include <openssl/evp.h>
#include <memory>
#include <sstream>
#include <stdexcept>

namespace privacyd::crypto {

namespace {

constexpr std::size_t kKeySize = 32;
constexpr std::size_t kNonceSize = 12;
constexpr std::size_t kTagSize = 16;

std::string key_id_of(const Bytes& key) { return hex(hmac_sha256(key, "privacyd/key-id/v1")).substr(0, 12); }

struct CipherCtx {
  CipherCtx() : ctx(EVP_CIPHER_CTX_new()) {
    if (ctx == nullptr) throw std::runtime_error("EVP_CIPHER_CTX_new failed");
  }
  ~CipherCtx() { EVP_CIPHER_CTX_free(ctx); }
  CipherCtx(const CipherCtx&) = delete;
  CipherCtx& operator=(const CipherCtx&) = delete;
  EVP_CIPHER_CTX* ctx;
};

const unsigned char* u8(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
unsigned char* u8(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

}  // namespace

KeyRing::KeyRing(Bytes primary, std::vector<Bytes> previous, std::optional<Bytes> index_key) {
  if (primary.size() != kKeySize) throw std::runtime_error("the data key must be 32 bytes");
  keys_.push_back({key_id_of(primary), primary});
  for (auto& k : previous) {
    if (k.size() != kKeySize) throw std::runtime_error("a previous data key must be 32 bytes");
    keys_.push_back({key_id_of(k), std::move(k)});
  }
  index_key_ = hmac_sha256(index_key ? *index_key : primary, "privacyd/blind-index/v1");
}

Bytes KeyRing::read_key_file(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read key file " + file.string());
  std::ostringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  if (text.size() == kKeySize) return text;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  if (text.size() == 2 * kKeySize && text.find_first_not_of("0123456789abcdefABCDEF") == std::string::npos) {
    Bytes out;
    for (std::size_t i = 0; i < text.size(); i += 2) out += static_cast<char>(std::stoi(text.substr(i, 2), nullptr, 16));
    return out;
  }
  if (auto decoded = base64_decode(text); decoded && decoded->size() == kKeySize) return *decoded;
  throw std::runtime_error("key file " + file.string() + " must hold 32 bytes (raw, hex or base64)");
}

KeyRing KeyRing::load(const std::filesystem::path& primary, const std::vector<std::filesystem::path>& previous,
                      const std::filesystem::path& index_key) {
  std::vector<Bytes> old;
  for (const auto& p : previous) old.push_back(read_key_file(p));
  std::optional<Bytes> index;
  if (!index_key.empty()) index = read_key_file(index_key);
  return KeyRing(read_key_file(primary), std::move(old), std::move(index));
}

std::string KeyRing::encrypt(const Bytes& key, std::string_view plaintext, std::string_view context) {
  Bytes nonce = random_bytes(kNonceSize);
  std::string out = nonce;
  out.resize(kNonceSize + plaintext.size() + kTagSize);
  CipherCtx c;
  int len = 0;
  if (EVP_EncryptInit_ex(c.ctx, EVP_aes_256_gcm(), nullptr, u8(key), u8(nonce)) != 1 ||
      EVP_EncryptUpdate(c.ctx, nullptr, &len, u8(context), static_cast<int>(context.size())) != 1 ||
      EVP_EncryptUpdate(c.ctx, u8(out) + kNonceSize, &len, u8(plaintext), static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(c.ctx, u8(out) + kNonceSize + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_GCM_GET_TAG, kTagSize, u8(out) + kNonceSize + plaintext.size()) != 1) {
    throw std::runtime_error("AES-256-GCM encryption failed");
  }
  return base64_encode(out);
}

std::optional<std::string> KeyRing::decrypt(const Bytes& key, std::string_view text, std::string_view context) {
  auto raw = base64_decode(text);
  if (!raw || raw->size() < kNonceSize + kTagSize || key.size() != kKeySize) return std::nullopt;
  std::size_t body = raw->size() - kNonceSize - kTagSize;
  std::string plain(body, '\0');
  std::string tag = raw->substr(kNonceSize + body);
  CipherCtx c;
  int len = 0;
  if (EVP_DecryptInit_ex(c.ctx, EVP_aes_256_gcm(), nullptr, u8(key), u8(*raw)) != 1 ||
      EVP_DecryptUpdate(c.ctx, nullptr, &len, u8(context), static_cast<int>(context.size())) != 1 ||
      EVP_DecryptUpdate(c.ctx, u8(plain), &len, u8(*raw) + kNonceSize, static_cast<int>(body)) != 1 ||
      EVP_CIPHER_CTX_ctrl(c.ctx, EVP_CTRL_GCM_SET_TAG, kTagSize, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(c.ctx, u8(plain) + len, &len) != 1) {
    return std::nullopt;
  }
  return plain;
}

std::string KeyRing::seal(std::string_view plaintext, std::string_view context) const {
  const Key& key = keys_.front();
  return "v1." + key.id + "." + encrypt(key.secret, plaintext, context);
}

std::string KeyRing::seal_for(std::string_view subject_key, std::string_view plaintext, std::string_view context) const {
  if (subject_key.empty()) return seal(plaintext, context);
  if (subjects_ == nullptr) throw std::runtime_error("no subject key store is attached");
  auto key = subjects_->subject_key(subject_key);
  if (!key) throw std::runtime_error("the subject's key is gone (destroyed after a deletion)");
  return "s1." + std::string(subject_key) + "." + encrypt(*key, plaintext, context);
}

std::optional<std::string> KeyRing::open(std::string_view sealed, std::string_view context) const {
  const bool subject = sealed.starts_with("s1.");
  if (!subject && !sealed.starts_with("v1.")) return std::nullopt;
  auto dot = sealed.find('.', 3);
  if (dot == std::string_view::npos) return std::nullopt;
  auto id = sealed.substr(3, dot - 3);
  if (subject) {
    if (subjects_ == nullptr) return std::nullopt;
    auto key = subjects_->subject_key(id);
    if (!key) return std::nullopt;
    return decrypt(*key, sealed.substr(dot + 1), context);
  }
  for (const auto& k : keys_) {
    if (k.id == id) return decrypt(k.secret, sealed.substr(dot + 1), context);
  }
  return std::nullopt;
}

std::string KeyRing::blind_index(std::string_view value, std::string_view context) const {
  std::string message(context);
  message += '\0';
  message += value;
  return hex(hmac_sha256(index_key_, message));
}

}  // namespace privacyd::crypto
