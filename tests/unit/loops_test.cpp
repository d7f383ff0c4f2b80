// The pieces that close the loops (SPEC §13) that need no daemon: dates for
// people, the mail a partner gets, link tokens, the guess limit, and the
// policies' notice channels and acknowledgement terms.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "daemon/base/text.hpp"
#include "daemon/crypto/primitives.hpp"
#include "daemon/links/links.hpp"
#include "daemon/notify/dates.hpp"
#include "daemon/notify/mail.hpp"
#include <soci/soci.h>
#include "daemon/policy/policies.hpp"
#include "daemon/store/follow_ups.hpp"
#include "store_fixture.hpp"

using namespace privacyd;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

TEST_CASE("a reminder's offset is used once, and an outage sends one reminder, not one per offset", "[loops]") {
  const std::vector<long long> offsets = {1000, 2000, 3000};  // after the notice was created at 10,000
  using follow_ups::next_reminder_at;
  // On time: each reminder schedules the next offset.
  CHECK(next_reminder_at(10000, offsets, 1, 11000) == 12000);
  CHECK(next_reminder_at(10000, offsets, 2, 12000) == 13000);
  CHECK(next_reminder_at(10000, offsets, 3, 13000) == std::nullopt);
  // The first reminder was due from when the notice was drafted (9,990), a
  // little before it was stored: sent at 10,995, it must not name the 1 s
  // offset again, still ahead of it.
  CHECK(next_reminder_at(10000, offsets, 1, 10995) == 12000);
  // After an outage that ran past two offsets: the one still ahead, if any.
  CHECK(next_reminder_at(10000, offsets, 1, 12500) == 13000);
  CHECK(next_reminder_at(10000, offsets, 1, 13500) == std::nullopt);
}

TEST_CASE("dates are written as their readers write them", "[loops]") {
  const UnixMillis at = *parse_rfc3339("2026-11-27T10:30:32.197Z");
  CHECK(notify::display_date(at, "en") == "27 November 2026");
  CHECK(notify::display_date(at, "zh-CN") == "2026年11月27日");
  CHECK(notify::display_date(at, "fr") == "27 November 2026");  // falls back to English
  CHECK(notify::display_date("2026-01-05T23:59:59+08:00", "en") == "5 January 2026");  // a UTC day
  CHECK(notify::display_date("not a date", "en") == "not a date");
}

TEST_CASE("a partner's mail carries the notice as notice.json", "[loops]") {
  notify::Mail m{"ntc_01ABC", "dpo@partner.example", "privacy@example.com", "删除个人信息请求", "第一行\n第二行\n",
                 "zh-CN", std::string(R"({"type":"notice.erasure"})")};
  auto text = notify::compose(m);
  REQUIRE(text);
  CHECK(text->find("Message-ID: <ntc_01ABC@privacyd>\r\n") != std::string::npos);
  CHECK(text->find("Subject: =?UTF-8?B?") != std::string::npos);  // RFC 2047, not raw UTF-8
  CHECK(text->find("Content-Type: multipart/mixed; boundary=\"=_privacyd_") != std::string::npos);
  CHECK(text->find("filename=\"notice.json\"") != std::string::npos);
  CHECK(text->find(crypto::base64_encode(R"({"type":"notice.erasure"})")) != std::string::npos);
  CHECK(text->find("第一行\r\n第二行\r\n") != std::string::npos);
  CHECK(text->find("\n\n") == std::string::npos);  // every line ends in CRLF
}

TEST_CASE("a header with a line break is refused, not sent", "[loops]") {
  notify::Mail m{"ntc_1", "a@b.example", "c@d.example", "hi\r\nBcc: e@f.example", "body", "en", std::nullopt};
  CHECK_FALSE(notify::compose(m));
  m.subject = "hi";
  m.to = "a@b.example>\nBcc: <e@f.example";
  CHECK_FALSE(notify::compose(m));
}

TEST_CASE("a link token is 43 base64url characters and only its digest is looked up", "[loops]") {
  const std::string token = crypto::new_link_token();
  CHECK(token.size() == 43);
  CHECK(token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == std::string::npos);
  CHECK(crypto::token_digest(token) == crypto::sha256_hex(token));
  CHECK(crypto::new_link_token() != token);
  CHECK(crypto::token_digest(token + "A").empty());
  CHECK(crypto::token_digest(token.substr(1) + "/").empty());
  CHECK(crypto::token_digest("").empty());
}

TEST_CASE("a client that keeps guessing waits out the minute; others do not", "[loops]") {
  links::GuessLimiter limiter(3, 60s, 4);
  const auto t0 = std::chrono::system_clock::time_point(1000h);
  for (int i = 0; i < 3; ++i) {
    CHECK(limiter.wait("10.0.0.1", t0).count() == 0);
    limiter.missed("10.0.0.1", t0);
  }
  CHECK(limiter.wait("10.0.0.1", t0 + 1s).count() == 59);
  CHECK(limiter.wait("10.0.0.2", t0 + 1s).count() == 0);
  CHECK(limiter.wait("10.0.0.1", t0 + 60s).count() == 0);  // a new window
  // Many addresses cannot grow it past its bound.
  for (int i = 0; i < 100; ++i) limiter.missed("10.1.0." + std::to_string(i), t0 + 2s);
  CHECK(limiter.wait("10.1.0.99", t0 + 2s).count() == 0);
  CHECK(links::client_of("127.0.0.1:5555") == "127.0.0.1");
  CHECK(links::client_of("::1:5555") == "::1");
}

namespace {
std::string policy_problems(const std::string& partners) {
  auto dir = fs::temp_directory_path() / ("privacyd-loops-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "a.yaml") << "categories:\n  email_address: { description: \"Email\" }\n"
                                   "jurisdictions:\n  default: { deadline: 30d, extension: 60d }\n";
  std::ofstream(dir / "partners.yaml") << partners;
  Diagnostics out;
  auto p = policy::load_policies(dir, "/etc/privacyd", out);
  std::string all;
  for (const auto& d : out) all += format_text(d).substr(dir.string().size() + 1) + "\n";
  fs::remove_all(dir);
  return all;
}
}  // namespace

TEST_CASE("every partner has a notice channel, or the policies say where", "[loops][policy]") {
  CHECK(policy_problems("partners:\n"
                        "  - id: P-1\n"
                        "    name: One\n"
                        "    contact: { email: a@b.example }\n") ==
        "partners.yaml:2:5: partner \"P-1\" has no \"notice\": give it a webhook or an email address, or it could "
        "never be told what to erase [policy]\n");
  CHECK(policy_problems("partners:\n"
                        "  - id: P-1\n"
                        "    name: One\n"
                        "    contact: { email: a@b.example }\n"
                        "    notice: { locale: zh-CN }\n") ==
        "partners.yaml:5:13: a notice needs a \"webhook\" or an \"email\" [policy]\n");
  CHECK(policy_problems("partners:\n"
                        "  - id: P-1\n"
                        "    name: One\n"
                        "    contact: { email: a@b.example }\n"
                        "    notice: { email: \"x@y.example>\" }\n")
            .find("\"email\" must be a plain email address") != std::string::npos);
  CHECK(policy_problems("acknowledgement: { within: 30d, reminders: [21d, 7d] }\n"
                        "partners:\n"
                        "  - id: P-1\n"
                        "    name: One\n"
                        "    contact: { email: a@b.example }\n"
                        "    notice: { email: dpo@one.example, locale: zh-CN }\n")
            .find("reminders must come in order") != std::string::npos);
  CHECK(policy_problems("acknowledgement: { within: 10d, reminders: [2d] }\n"
                        "partners:\n"
                        "  - id: P-1\n"
                        "    name: One\n"
                        "    contact: { email: a@b.example }\n"
                        "    notice: { email: dpo@one.example, locale: zh-CN }\n"
                        "    acknowledgement: { within: 5d, reminders: [1d, 3d] }\n")
            .empty());
}

TEST_CASE("free text is kept only when a person can read it back", "[loops]") {
  CHECK(readable_text("erased on 27 November; 已删除\nline two\ttab"));
  CHECK(readable_text(""));
  CHECK_FALSE(readable_text("\xFF\xFE"));                // not UTF-8
  CHECK_FALSE(readable_text("a\x1B[31mred"));            // a terminal escape
  CHECK_FALSE(readable_text(std::string("nul\0x", 5)));  // NUL
  CHECK_FALSE(readable_text("\xC0\xAF"));                // an overlong '/'
  CHECK_FALSE(readable_text("\xED\xA0\x80"));            // a UTF-16 surrogate
  CHECK_FALSE(readable_text("\xE4\xB8"));                // cut short
  CHECK_FALSE(readable_text("\xC2\x85"));                // a C1 control (NEL)
}

TEST_CASE("every committed run's link fetches the one package, counted together", "[loops]") {
  testing::SqliteFixture f;
  f.add_request("req_1");
  // export.package ran twice (at least once): two links, one package.
  f.exec("INSERT INTO exports(request_id, package_enc, bytes, created_at, expires_at, downloads)"
         " VALUES ('req_1', 'sealed', 6, 1000, 10000, 0)");
  f.exec("INSERT INTO package_links(token_sha256, request_id, created_at) VALUES ('d1', 'req_1', 1000), ('d2', 'req_1', 1001)");
  auto take = [&](const std::string& digest, long long now) {
    follow_ups::FetchedPackage got;
    f.db->with_session([&](soci::session& sql) {
      soci::transaction tr(sql);
      got = follow_ups::take_package(sql, digest, 2, now);
      tr.commit();
    });
    return got;
  };
  auto first = take("d1", 2000);
  CHECK(first.result == follow_ups::Fetch::ok);
  CHECK(first.package_enc == "sealed");
  CHECK(first.download == 1);
  CHECK(take("d2", 2001).download == 2);
  CHECK(take("d1", 2002).result == follow_ups::Fetch::gone);  // max_downloads is the package's, not a link's
  CHECK(take("d3", 2003).result == follow_ups::Fetch::unknown);
  CHECK(f.scalar("SELECT COUNT(*) FROM audit_log WHERE event = 'package.downloaded'") == 2);

  f.exec("UPDATE exports SET downloads = 0");
  CHECK(take("d2", 9999).result == follow_ups::Fetch::ok);
  CHECK(take("d2", 10000).result == follow_ups::Fetch::gone);  // expired at its instant
  f.db->with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    CHECK(follow_ups::erase_expired_packages(sql, 10000, 10) == 1);
    CHECK(follow_ups::erase_expired_packages(sql, 10001, 10) == 0);  // once
    tr.commit();
  });
  CHECK(f.scalar<std::string>("SELECT package_enc FROM exports") == "");
  CHECK(take("d1", 10002).result == follow_ups::Fetch::gone);  // 410, not 404: the link was real
}
