// `privacyd receipt verify FILE --public-key PEM` (SPEC §16): checks a
// receipt offline, with nothing but the file and the signer's public key.
#include <boost/json.hpp>
#include <fstream>
#include <iostream>

#include "daemon/cli/commands.hpp"
#include "daemon/crypto/receipt.hpp"

namespace privacyd::cli {

namespace {
// At most `limit` bytes; nullopt when the file cannot be read or is larger.
std::optional<std::string> read_bounded(const std::filesystem::path& file, std::size_t limit) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  std::string text;
  char buffer[8192];
  while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
    text.append(buffer, static_cast<std::size_t>(in.gcount()));
    if (text.size() > limit) return std::nullopt;
  }
  return text;
}
}  // namespace

int receipt_verify(const std::filesystem::path& receipt_file, const std::filesystem::path& public_key_file) {
  auto receipt = read_bounded(receipt_file, 16 * 1024 * 1024);
  if (!receipt) {
    std::cerr << "cannot read " << receipt_file.string() << " (or it is over 16 MiB)\n";
    return 2;
  }
  auto pem = read_bounded(public_key_file, 16 * 1024);
  if (!pem) {
    std::cerr << "cannot read " << public_key_file.string() << " (or it is over 16 KiB)\n";
    return 2;
  }
  boost::system::error_code ec;
  auto doc = boost::json::parse(*receipt, ec);
  if (ec) {
    std::cout << "receipt not valid: " << receipt_file.string() << " is not JSON (" << ec.message() << ")\n";
    return 1;
  }
  if (auto why = crypto::verify_receipt(doc, *pem); !why.empty()) {
    std::cout << "receipt not valid: " << why << '\n';
    return 1;
  }
  std::cout << "receipt valid";
  const auto* id = doc.at("receipt").as_object().if_contains("request");
  if (id != nullptr && id->is_object()) id = id->get_object().if_contains("id");
  if (id != nullptr && id->is_string()) std::cout << ": request " << id->get_string().c_str();
  std::cout << '\n';
  return 0;
}

}  // namespace privacyd::cli
