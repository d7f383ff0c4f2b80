#include "daemon/crypto/receipt.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <fstream>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdexcept>
#include <vector>

#include "daemon/base/files.hpp"
#include "daemon/crypto/primitives.hpp"

namespace privacyd::crypto {

namespace json = boost::json;

namespace {

void write_canonical(const json::value& v, std::string& out) {
  switch (v.kind()) {
    case json::kind::object: {
      const auto& o = v.get_object();
      std::vector<const json::key_value_pair*> members;
      members.reserve(o.size());
      for (const auto& m : o) members.push_back(&m);
      std::sort(members.begin(), members.end(),
                [](const json::key_value_pair* a, const json::key_value_pair* b) { return a->key() < b->key(); });
      out += '{';
      for (std::size_t i = 0; i < members.size(); ++i) {
        if (i != 0) out += ',';
        out += json::serialize(json::string(members[i]->key()));
        out += ':';
        write_canonical(members[i]->value(), out);
      }
      out += '}';
      return;
    }
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v.get_array()) {
        if (!first) out += ',';
        first = false;
        write_canonical(e, out);
      }
      out += ']';
      return;
    }
    case json::kind::double_:
      throw std::invalid_argument("a receipt holds integers only");
    default:
      out += json::serialize(v);  // a string, an integer, true, false or null
  }
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct CtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using Ctx = std::unique_ptr<EVP_MD_CTX, CtxFree>;

std::shared_ptr<EVP_PKEY> owned(EVP_PKEY* key) { return std::shared_ptr<EVP_PKEY>(key, EVP_PKEY_free); }

std::string raw_public_key(EVP_PKEY* key) {
  unsigned char raw[32];
  std::size_t len = sizeof raw;
  if (EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 || len != sizeof raw) {
    throw std::runtime_error("cannot read the receipt key's public half");
  }
  return std::string(reinterpret_cast<const char*>(raw), len);
}

}  // namespace

std::string canonical_json(const json::value& v) {
  std::string out;
  write_canonical(v, out);
  return out;
}

ReceiptSigner ReceiptSigner::load(const std::filesystem::path& pem_file) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(pem_file, ec);
  if (ec) throw std::runtime_error("cannot read the receipt key file " + pem_file.string());
  if (size > 16 * 1024) throw std::runtime_error("the receipt key file " + pem_file.string() + " is too large");
  std::ifstream in(pem_file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read the receipt key file " + pem_file.string());
  std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (pem.size() > 16 * 1024) throw std::runtime_error("the receipt key file " + pem_file.string() + " is too large");
  // An encrypted key is refused, never asked for on a terminal.
  auto no_passphrase = [](char*, int, int, void*) { return 0; };
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) throw std::runtime_error("out of memory reading the receipt key");
  auto key = owned(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  OPENSSL_cleanse(pem.data(), pem.size());
  if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) {
    throw std::runtime_error("the receipt key file " + pem_file.string() +
                             " does not hold an Ed25519 private key in PEM (openssl genpkey -algorithm ed25519)");
  }
  ReceiptSigner signer;
  signer.key_id_ = sha256_hex(raw_public_key(key.get()));
  signer.key_ = std::move(key);
  return signer;
}

json::object ReceiptSigner::sign(json::object receipt) const {
  const std::string message = canonical_json(receipt);
  Ctx ctx(EVP_MD_CTX_new());
  unsigned char sig[64];
  std::size_t len = sizeof sig;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig, &len, reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    throw std::runtime_error("Ed25519 signing failed");
  }
  return json::object{{"receipt", std::move(receipt)},
                      {"signature", json::object{{"algorithm", "Ed25519"},
                                                 {"key_id", key_id_},
                                                 {"value", base64_encode(std::string_view(
                                                               reinterpret_cast<const char*>(sig), len))}}}};
}

std::string ReceiptSigner::public_key_pem() const {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key_.get()) != 1) throw std::runtime_error("cannot write the public key");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

std::string verify_receipt(const json::value& signed_receipt, std::string_view public_key_pem) {
  if (public_key_pem.size() > 16 * 1024) return "the public key is too large";
  Bio bio(BIO_new_mem_buf(public_key_pem.data(), static_cast<int>(public_key_pem.size())));
  auto no_passphrase = [](char*, int, int, void*) { return 0; };
  auto key = bio ? owned(PEM_read_bio_PUBKEY(bio.get(), nullptr, no_passphrase, nullptr)) : nullptr;
  if (!key || EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) return "the public key is not an Ed25519 key in PEM";

  const auto* doc = signed_receipt.if_object();
  const auto* receipt = doc ? doc->if_contains("receipt") : nullptr;
  const auto* signature = doc ? doc->if_contains("signature") : nullptr;
  if (receipt == nullptr || !receipt->is_object() || signature == nullptr || !signature->is_object()) {
    return "not a signed receipt: {\"receipt\": {...}, \"signature\": {...}} expected";
  }
  const auto& sig = signature->get_object();
  const auto* algorithm = sig.if_contains("algorithm");
  const auto* value = sig.if_contains("value");
  if (algorithm == nullptr || !algorithm->is_string() || algorithm->get_string() != "Ed25519") {
    return "the signature's algorithm is not Ed25519";
  }
  if (const auto* id = sig.if_contains("key_id");
      id == nullptr || !id->is_string() || id->get_string() != sha256_hex(raw_public_key(key.get()))) {
    return "signed with another key (key_id differs)";
  }
  std::optional<Bytes> raw;
  if (value != nullptr && value->is_string()) raw = base64_decode(value->get_string());
  if (!raw || raw->size() != 64) return "the signature's value is not 64 bytes in base64";
  std::string message;
  try {
    message = canonical_json(*receipt);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  Ctx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) {
    return "cannot set up Ed25519 verification";
  }
  if (EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(raw->data()), raw->size(),
                       reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    return "the signature does not match the receipt";
  }
  return {};
}

std::string new_receipt_key_pem() {
  auto key = owned(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!key) throw std::runtime_error("Ed25519 key generation failed");
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    throw std::runtime_error("cannot write the receipt key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  std::string pem(data, static_cast<std::size_t>(len));
  OPENSSL_cleanse(data, static_cast<std::size_t>(len));
  return pem;
}

void create_receipt_key(const std::filesystem::path& pem_file) {
  auto pem = new_receipt_key_pem();
  const bool created = create_file_once(pem_file, pem, 0600);
  OPENSSL_cleanse(pem.data(), pem.size());
  if (!created) throw std::runtime_error("cannot create " + pem_file.string() + ": it exists already");
}

}  // namespace privacyd::crypto
