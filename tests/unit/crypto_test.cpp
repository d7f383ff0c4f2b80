#include <catch2/catch.hpp>
#include <chrono>

#include "daemon/crypto/keyring.hpp"
#include "daemon/crypto/webhook_signature.hpp"

using namespace privacyd::crypto;
using namespace std::chrono_literals;

// The official test vector of the Standard Webhooks specification
// (standard-webhooks/standard-webhooks, libraries/testdata/signatures.json).
TEST_CASE("webhook signatures match the Standard Webhooks test vector", "[crypto]") {
  auto key = parse_webhook_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  REQUIRE(key);
  const std::string payload =
      R"({"type": "example.created", "timestamp":"2023-09-28T19:20:22+00:00", "data":{"str":"string","bool":true,"int":42}})";
  CHECK(webhook_signature(*key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1696200454, payload) ==
        "v1,GgjvufBlIj71MBIVQotYGb+xEC3LNXCsIZp0HsDC8qs=");

  auto at = std::chrono::system_clock::time_point(std::chrono::seconds(1696200454));
  SignedHeaders h{"msg_p5jXN8AQM9LWM0D4loKWxJek", "1696200454", "v1,GgjvufBlIj71MBIVQotYGb+xEC3LNXCsIZp0HsDC8qs="};
  CHECK_FALSE(verify_webhook({*key}, h, payload, at, 300s).has_value());
}

namespace {
struct Fixture {
  Bytes old_key = *parse_webhook_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  Bytes new_key = random_bytes(32);
  std::chrono::system_clock::time_point now = std::chrono::system_clock::time_point(std::chrono::seconds(1800000000));
  std::string body = R"({"type":"request.access"})";
  std::string ts = "1800000000";

  std::optional<SignatureProblem> check(const std::vector<Bytes>& secrets, std::string_view signature,
                                        std::string_view timestamp = "1800000000", std::string_view id = "msg_1") {
    return verify_webhook(secrets, {id, timestamp, signature}, body, now, 300s);
  }
};
}  // namespace

TEST_CASE("any one valid entry verifies, so secrets can rotate", "[crypto]") {
  Fixture f;
  auto by_old = webhook_signature(f.old_key, "msg_1", 1800000000, f.body);
  auto by_new = webhook_signature(f.new_key, "msg_1", 1800000000, f.body);
  CHECK_FALSE(f.check({f.old_key, f.new_key}, by_old).has_value());
  CHECK_FALSE(f.check({f.old_key, f.new_key}, by_new).has_value());
  CHECK_FALSE(f.check({f.new_key}, "v1,AAAA " + by_new).has_value());
  CHECK_FALSE(f.check({f.new_key}, "v1a,whatever " + by_new).has_value());
  CHECK(f.check({f.new_key}, by_old) == SignatureProblem::no_valid_signature);
}

TEST_CASE("tampering, staleness and malformed headers are refused", "[crypto]") {
  Fixture f;
  auto good = webhook_signature(f.new_key, "msg_1", 1800000000, f.body);
  CHECK(f.check({f.new_key}, good, "1800000000", "msg_2") == SignatureProblem::no_valid_signature);
  CHECK(f.check({f.new_key}, good, "1799999000") == SignatureProblem::timestamp_too_old);
  CHECK(f.check({f.new_key}, good, "1800001000") == SignatureProblem::timestamp_too_new);
  CHECK(f.check({f.new_key}, good, "18e8") == SignatureProblem::malformed_headers);
  CHECK(f.check({f.new_key}, good, "-1") == SignatureProblem::malformed_headers);
  CHECK(f.check({f.new_key}, good, "666666666666666") == SignatureProblem::timestamp_too_new);
  CHECK(f.check({f.new_key}, good, "9223372036854775807") == SignatureProblem::timestamp_too_new);
  CHECK(f.check({f.new_key}, "", "1800000000") == SignatureProblem::missing_headers);
  CHECK(f.check({f.new_key}, good, "") == SignatureProblem::missing_headers);
  CHECK(f.check({f.new_key}, "v2,abc") == SignatureProblem::malformed_headers);
  CHECK(f.check({f.new_key}, good, "1800000000", std::string(300, 'x')) == SignatureProblem::malformed_headers);
  f.body += " ";
  CHECK(f.check({f.new_key}, good) == SignatureProblem::no_valid_signature);
}

TEST_CASE("webhook secrets must be whsec_ and base64", "[crypto]") {
  CHECK_FALSE(parse_webhook_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").has_value());
  CHECK_FALSE(parse_webhook_secret("whsec_not base64!").has_value());
  CHECK_FALSE(parse_webhook_secret("whsec_AAAA").has_value());  // 3 bytes: too short to be a key
}

TEST_CASE("base64 decoding is strict", "[crypto]") {
  CHECK(base64_decode("aGVsbG8=") == std::optional<Bytes>("hello"));
  CHECK(base64_decode("aGVsbG8h") == std::optional<Bytes>("hello!"));
  CHECK(base64_encode("hello") == "aGVsbG8=");
  for (auto bad : {"aGVsbG8", "aGV=bG8=", "aGVs bG8=", "aGVsbG8===", "aGVsbG9="}) {
    INFO(bad);
    CHECK_FALSE(base64_decode(bad).has_value());
  }
}

TEST_CASE("sealed data opens only with its key and its context", "[crypto]") {
  KeyRing ring(random_bytes(32));
  auto sealed = ring.seal("lin@example.com", "subjects.contact");
  CHECK(sealed.starts_with("v1." + ring.key_id() + "."));
  CHECK(sealed.find("lin@example.com") == std::string::npos);
  CHECK(ring.open(sealed, "subjects.contact") == std::optional<std::string>("lin@example.com"));
  CHECK_FALSE(ring.open(sealed, "subjects.huawei_id").has_value());
  CHECK(ring.seal("lin@example.com", "subjects.contact") != sealed);  // fresh nonce every time

  std::string tampered = sealed;
  auto middle = sealed.size() - 20;  // inside the ciphertext, clear of base64 padding
  tampered[middle] = tampered[middle] == 'A' ? 'B' : 'A';
  CHECK_FALSE(ring.open(tampered, "subjects.contact").has_value());

  KeyRing other(random_bytes(32));
  CHECK_FALSE(other.open(sealed, "subjects.contact").has_value());
}

TEST_CASE("after a rotation the previous key still opens old data", "[crypto]") {
  auto old_key = random_bytes(32);
  KeyRing before(old_key);
  auto sealed = before.seal("hw-8f3a", "subjects.huawei_id");
  KeyRing after(random_bytes(32), {old_key}, old_key);
  CHECK(after.open(sealed, "subjects.huawei_id") == std::optional<std::string>("hw-8f3a"));
  CHECK(after.seal("x", "c").find(after.key_id()) == 3);
  // With the index key pinned to the old key, lookups keep working.
  CHECK(after.blind_index("hw-8f3a", "subjects.huawei_id") == before.blind_index("hw-8f3a", "subjects.huawei_id"));
}

TEST_CASE("the blind index is deterministic, keyed and context-bound", "[crypto]") {
  KeyRing a(random_bytes(32));
  KeyRing b(random_bytes(32));
  CHECK(a.blind_index("hw-1", "c") == a.blind_index("hw-1", "c"));
  CHECK(a.blind_index("hw-1", "c") != a.blind_index("hw-2", "c"));
  CHECK(a.blind_index("hw-1", "c") != a.blind_index("hw-1", "d"));
  CHECK(a.blind_index("hw-1", "c") != b.blind_index("hw-1", "c"));
  CHECK(a.blind_index("hw-1", "c").size() == 64);
}

TEST_CASE("ids sort by creation time and do not repeat", "[crypto]") {
  auto a = new_id("req", 1800000000000);
  auto b = new_id("req", 1800000000001);
  CHECK(a.size() == 4 + 26);
  CHECK(a.starts_with("req_"));
  CHECK(a < b);
  CHECK(new_id("req", 1) != new_id("req", 1));
}
