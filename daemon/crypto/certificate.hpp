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

// A certificate for `names` (each a subjectAltName: an IP address when it
// parses as one, else a DNS name; the subject's common name is "privacyd"),
// valid from now for `valid`, for `key_pem` when given, else for a new
// ECDSA P-256 key. Throws std::runtime_error for a name that is neither
// (see certifiable_name) or a key it cannot read.
CertificatePair self_signed_certificate(const std::vector<std::string>& names, std::chrono::days valid,
                                        const std::string& key_pem = {});

// An IP address, or a host name of letters, digits and hyphens in labels
// of at most 63 characters (253 in all).
bool certifiable_name(const std::string& name);

// Empty when `certificate_file` starts with a PEM certificate whose public
// key is the private key in `key_file`; otherwise what is wrong, naming
// the file, never its content.
std::string check_certificate_pair(const std::string& certificate_file, const std::string& key_file);

}  // namespace privacyd::crypto
