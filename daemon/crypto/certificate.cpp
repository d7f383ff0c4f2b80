#include "daemon/crypto/certificate.hpp"

#include <functional>
#include <memory>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdexcept>

namespace privacyd::crypto {
namespace {

template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const { Free(p); }
};
using Key = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using Ext = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using Num = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;

[[noreturn]] void fail(const char* what) { throw std::runtime_error(std::string("self-signed certificate: ") + what); }

std::string pem_of(const std::function<int(BIO*)>& write) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || write(bio.get()) != 1) fail("cannot write PEM");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  std::string out(data, static_cast<std::size_t>(len));
  OPENSSL_cleanse(data, static_cast<std::size_t>(len));
  return out;
}

bool is_ip_address(const std::string& name) {
  ASN1_OCTET_STRING* ip = a2i_IPADDRESS(name.c_str());
  if (ip == nullptr) return false;
  ASN1_OCTET_STRING_free(ip);
  return true;
}

// An encrypted key is refused, never asked a passphrase for on a terminal.
int no_passphrase(char*, int, int, void*) { return 0; }

Key read_key(const std::string& pem) {
  Bio bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) fail("cannot read the key");
  Key key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) fail("the key file holds no private key in PEM");
  return key;
}

void add_extension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  Ext ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) fail("cannot add an extension");
}

}  // namespace

bool certifiable_name(const std::string& name) {
  if (is_ip_address(name)) return true;
  if (name.empty() || name.size() > 253) return false;
  std::size_t label = 0;
  for (std::size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      if (label == 0 || label > 63 || name[i - 1] == '-' || name[i - label] == '-') return false;
      label = 0;
      continue;
    }
    const char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) return false;
    ++label;
  }
  return true;
}

CertificatePair self_signed_certificate(const std::vector<std::string>& names, std::chrono::days valid,
                                        const std::string& key_pem) {
  if (names.empty()) fail("no name to certify");
  for (const auto& name : names) {
    if (!certifiable_name(name)) fail("a name is neither an IP address nor a host name");
  }
  Key key = key_pem.empty() ? Key(EVP_EC_gen("P-256")) : read_key(key_pem);
  if (!key) fail("key generation failed");
  Cert cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) fail("cannot make a certificate");

  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) fail("no randomness");
  serial[0] &= 0x7f;  // a positive serial number
  Num bn(BN_bin2bn(serial, sizeof serial, nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) == nullptr) fail("cannot set the serial");

  const long seconds = static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(valid).count());
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300) == nullptr ||  // tolerate a little clock skew
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), seconds) == nullptr) {
    fail("cannot set the validity");
  }
  X509_NAME* subject = X509_get_subject_name(cert.get());
  static const unsigned char kCommonName[] = "privacyd";
  if (X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, kCommonName, -1, -1, 0) != 1 ||
      X509_set_issuer_name(cert.get(), subject) != 1 || X509_set_pubkey(cert.get(), key.get()) != 1) {
    fail("cannot set the names");
  }
  std::string alt;
  for (const auto& name : names) {
    alt += (alt.empty() ? "" : ",") + std::string(is_ip_address(name) ? "IP:" : "DNS:") + name;
  }
  add_extension(cert.get(), NID_subject_alt_name, alt);
  add_extension(cert.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(cert.get(), NID_key_usage, "critical,digitalSignature");
  add_extension(cert.get(), NID_ext_key_usage, "serverAuth");
  add_extension(cert.get(), NID_subject_key_identifier, "hash");
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) fail("cannot sign");

  CertificatePair pair;
  pair.certificate_pem = pem_of([&](BIO* b) { return PEM_write_bio_X509(b, cert.get()); });
  if (key_pem.empty()) {
    pair.key_pem =
        pem_of([&](BIO* b) { return PEM_write_bio_PrivateKey(b, key.get(), nullptr, nullptr, 0, nullptr, nullptr); });
  }
  return pair;
}

std::string check_certificate_pair(const std::string& certificate_file, const std::string& key_file) {
  Bio cert_bio(BIO_new_file(certificate_file.c_str(), "r"));
  if (!cert_bio) return certificate_file + ": cannot read the certificate";
  Cert cert(PEM_read_bio_X509(cert_bio.get(), nullptr, no_passphrase, nullptr));
  if (!cert) return certificate_file + ": no PEM certificate in it";
  Bio key_bio(BIO_new_file(key_file.c_str(), "r"));
  if (!key_bio) return key_file + ": cannot read the private key";
  Key key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) return key_file + ": no unencrypted PEM private key in it";
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    return key_file + ": not the private key of " + certificate_file;
  }
  return {};
}

}  // namespace privacyd::crypto
