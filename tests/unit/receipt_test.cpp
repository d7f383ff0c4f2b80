#include <boost/json.hpp>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "daemon/crypto/receipt.hpp"

using namespace privacyd::crypto;
namespace json = boost::json;

// The bytes Python's json.dumps(v, sort_keys=True, separators=(",", ":"),
// ensure_ascii=False) writes for the same value: what the README tells a
// verifier to compute.
TEST_CASE("the canonical serialisation sorts members and escapes as Python's json does", "[receipt]") {
  const json::value v = json::parse(R"({"b":1,"a":[true,null,"x\"\n\u0001\u00e9/\t"],"\u00e9":{"z":-2,"y":"\u007f"},"A":{}})");
  CHECK(canonical_json(v) == "{\"A\":{},\"a\":[true,null,\"x\\\"\\n\\u0001\xc3\xa9/\\t\"],\"b\":1,\"\xc3\xa9\":{\"y\":\"\x7f\",\"z\":-2}}");
  CHECK_THROWS_AS(canonical_json(json::parse(R"({"rows": 1.5})")), std::invalid_argument);
}

TEST_CASE("a receipt verifies under its key, and not once changed or under another key", "[receipt]") {
  const auto dir = std::filesystem::temp_directory_path() / ("privacyd-receipt-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  create_receipt_key(dir / "a.pem");
  create_receipt_key(dir / "b.pem");
  CHECK_THROWS(create_receipt_key(dir / "a.pem"));  // never over an existing key
  CHECK((std::filesystem::status(dir / "a.pem").permissions() & std::filesystem::perms::group_all) ==
        std::filesystem::perms::none);
  const auto a = ReceiptSigner::load(dir / "a.pem");
  const auto b = ReceiptSigner::load(dir / "b.pem");
  CHECK(a.key_id().size() == 64);
  CHECK(a.key_id() != b.key_id());

  json::object receipt{{"request", json::object{{"id", "req_1"}, {"status", "completed"}}}, {"rows", 3}};
  const json::value signed_receipt = a.sign(receipt);
  CHECK(verify_receipt(signed_receipt, a.public_key_pem()).empty());
  CHECK(verify_receipt(signed_receipt, b.public_key_pem()) == "signed with another key (key_id differs)");

  json::value changed = signed_receipt;
  changed.at("receipt").as_object()["rows"] = 4;
  CHECK(verify_receipt(changed, a.public_key_pem()) == "the signature does not match the receipt");
  json::value forged = signed_receipt;
  forged.at("signature").as_object()["key_id"] = b.key_id();
  CHECK_FALSE(verify_receipt(forged, b.public_key_pem()).empty());  // b's id, a's signature
  CHECK_FALSE(verify_receipt(json::parse("[]"), a.public_key_pem()).empty());
  CHECK_FALSE(verify_receipt(signed_receipt, "not a key").empty());

  std::ofstream(dir / "bad.pem") << "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
  CHECK_THROWS_AS(ReceiptSigner::load(dir / "bad.pem"), std::runtime_error);
  std::filesystem::remove_all(dir);
}
