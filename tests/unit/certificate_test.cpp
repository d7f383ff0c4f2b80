#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/base/files.hpp"
#include "daemon/crypto/certificate.hpp"

using namespace privacyd;
using namespace privacyd::crypto;

namespace {

std::filesystem::path scratch(const char* name) {
  auto dir = std::filesystem::temp_directory_path() / (std::string(name) + "-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

}  // namespace

TEST_CASE("only host names and addresses go into a certificate", "[certificate]") {
  for (const char* ok : {"localhost", "privacy.example.com", "a-b.c", "127.0.0.1", "::1", "xn--bcher-kva.example"}) {
    CHECK(certifiable_name(ok));
  }
  for (const char* bad : {"", "*.evil.com", "x y", "a,b", "-a.example", "a-.example", "a..b", "\xc3\xbc.example",
                          "DNS:x"}) {
    CHECK_FALSE(certifiable_name(bad));
  }
  CHECK_FALSE(certifiable_name(std::string(64, 'a') + ".example"));
  CHECK(certifiable_name(std::string(63, 'a') + ".example"));
  CHECK_THROWS(self_signed_certificate({"localhost", "a,b"}, std::chrono::days(1)));
}

TEST_CASE("a self-signed pair matches, and a certificate for a given key is for that key", "[certificate]") {
  const auto dir = scratch("privacyd-cert");
  auto pair = self_signed_certificate({std::string(60, 'a') + ".example", "127.0.0.1"}, std::chrono::days(1));
  REQUIRE(create_file_once(dir / "a.pem", pair.certificate_pem, 0644));
  REQUIRE(create_file_once(dir / "a.key", pair.key_pem));
  CHECK(check_certificate_pair((dir / "a.pem").string(), (dir / "a.key").string()).empty());

  auto other = self_signed_certificate({"localhost"}, std::chrono::days(1));
  REQUIRE(create_file_once(dir / "b.key", other.key_pem));
  CHECK(check_certificate_pair((dir / "a.pem").string(), (dir / "b.key").string()) ==
        (dir / "b.key").string() + ": not the private key of " + (dir / "a.pem").string());

  auto again = self_signed_certificate({"localhost"}, std::chrono::days(1), other.key_pem);
  CHECK(again.key_pem.empty());  // the key is the caller's
  REQUIRE(create_file_once(dir / "b.pem", again.certificate_pem, 0644));
  CHECK(check_certificate_pair((dir / "b.pem").string(), (dir / "b.key").string()).empty());

  CHECK_THROWS(self_signed_certificate({"localhost"}, std::chrono::days(1), "-----BEGIN PRIVATE KEY-----\nAAAA\n"));
  CHECK(check_certificate_pair((dir / "none.pem").string(), (dir / "b.key").string()) ==
        (dir / "none.pem").string() + ": cannot read the certificate");
  std::filesystem::remove_all(dir);
}

TEST_CASE("a file made once is whole, has its mode whatever the umask, and is never written over", "[files]") {
  const auto dir = scratch("privacyd-files");
  const mode_t old = ::umask(0);
  CHECK(create_file_once(dir / "k", "first\n", 0600));
  ::umask(old);
  struct stat st {};
  REQUIRE(::stat((dir / "k").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_FALSE(create_file_once(dir / "k", "second\n", 0600));
  CHECK(slurp(dir / "k") == "first\n");
  // A link to nothing is something there: never followed, never replaced.
  std::filesystem::create_symlink(dir / "elsewhere", dir / "link");
  CHECK_FALSE(create_file_once(dir / "link", "x", 0600));
  CHECK_FALSE(std::filesystem::exists(dir / "elsewhere"));
  CHECK(std::distance(std::filesystem::directory_iterator(dir), {}) == 2);  // no temporary file left
  CHECK_THROWS_AS(create_file_once(dir / "missing" / "k", "x", 0600), std::system_error);
  std::filesystem::remove_all(dir);
}
