#pragma once
// Signed receipts (SPEC §16): what was done for a finished request, signed
// with Ed25519 (OpenSSL's EVP API) so that anyone holding the public key
// can check it offline, with privacyd or with any other tool.
//
// A signed receipt is {"receipt": R, "signature": {"algorithm": "Ed25519",
// "key_id": K, "value": S}}: S is the standard base64 of the Ed25519
// signature over canonical_json(R), and K the hex SHA-256 of the raw
// 32-byte public key.

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <boost/json/value.hpp>

struct evp_pkey_st;

namespace privacyd::crypto {

// The serialisation a receipt is signed over: objects' members sorted by
// key (bytewise, which for UTF-8 is by code point), no whitespace, strings
// escaped as JSON requires (\" \\ \b \f \n \r \t, other control characters
// as \u00xx, everything else as is, UTF-8), numbers as integers. The same
// bytes as Python's json.dumps(R, sort_keys=True, separators=(",", ":"),
// ensure_ascii=False).encode() for the values a receipt holds. Throws
// std::invalid_argument for a number that is not an integer.
std::string canonical_json(const boost::json::value& v);

class ReceiptSigner {
 public:
  // Reads an Ed25519 private key in PEM (PKCS#8, as `openssl genpkey
  // -algorithm ed25519` writes it). Throws std::runtime_error naming the
  // file, never its content.
  static ReceiptSigner load(const std::filesystem::path& pem_file);

  // Signs canonical_json(receipt).
  boost::json::object sign(boost::json::object receipt) const;
  std::string public_key_pem() const;
  const std::string& key_id() const { return key_id_; }

 private:
  std::shared_ptr<evp_pkey_st> key_;
  std::string key_id_;
};

// Checks a signed receipt against a public key in PEM. Empty when it
// holds; otherwise why not (a malformed document, another key, a
// signature that does not match).
std::string verify_receipt(const boost::json::value& signed_receipt, std::string_view public_key_pem);

// A new Ed25519 private key in PEM (PKCS#8).
std::string new_receipt_key_pem();
// Writes a new Ed25519 private key to `pem_file` (mode 0600, never over an
// existing file). Throws std::runtime_error.
void create_receipt_key(const std::filesystem::path& pem_file);

}  // namespace privacyd::crypto
