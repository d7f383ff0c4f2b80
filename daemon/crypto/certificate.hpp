#pragma once
// A self-signed TLS certificate for a listener, made with OpenSSL's own
// X.509 API: `privacyd keys init --self-signed-tls` writes one for tests
// and for a first start before the real certificate arrives.

#include <chrono>
#include <string>
#include <vector>

namespace privacyd::crypto {

struct CertificatePair {
  std::string certificate_pem;
  std::string key_pem;  // PKCS#8, unencrypted
};

// An ECDSA P-256 key and a certificate for `names` (the first is the
// subject's common name; each is a subjectAltName, an IP address when it
// parses as one, else a DNS name), valid from now for `valid`. Throws
// std::runtime_error.
CertificatePair self_signed_certificate(const std::vector<std::string>& names, std::chrono::days valid);

}  // namespace privacyd::crypto
