#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "daemon/policy/policies.hpp"

using namespace privacyd;
using namespace privacyd::policy;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {
struct PolicyDir {
  PolicyDir() {
    dir = fs::temp_directory_path() / ("privacyd-policy-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    fs::create_directories(dir);
  }
  ~PolicyDir() { fs::remove_all(dir); }
  void write(const std::string& name, const std::string& text) { std::ofstream(dir / name) << text; }
  std::string problems() {
    Diagnostics out;
    load_policies(dir, "/etc/privacyd", out);
    std::string all;
    for (const auto& d : out) all += format_text(d).substr(dir.string().size() + 1) + "\n";
    return all;
  }
  fs::path dir;
  static inline int n = 0;
};
const char* kBase = R"(categories:
  email_address: { description: "Email address" }
  exam_records: { description: "Exam records" }
jurisdictions:
  default: { deadline: 30d, extension: 60d }
)";
}  // namespace

TEST_CASE("the shipped policies load clean", "[policy]") {
  Diagnostics out;
  auto p = load_policies(fs::path(PRIVACYD_SOURCE_DIR) / "policies", fs::path(PRIVACYD_SOURCE_DIR) / "config", out);
  for (const auto& d : out) FAIL(format_text(d));
  CHECK(p.categories.size() == 8);
  CHECK(p.systems.size() == 2);
  REQUIRE(p.partner("P-1001") != nullptr);
  CHECK(p.partner("P-1001")->shared_categories.size() == 5);
  CHECK(p.partner("P-1001")->notice_secret_file == fs::path(PRIVACYD_SOURCE_DIR) / "var/keys/partner-P-1001.secret");
  CHECK(p.systems[0].database.parameters == "db=" + (fs::path(PRIVACYD_SOURCE_DIR) / "var/demo/partner-center.db").string());
  REQUIRE(p.hold_for("certificates") != nullptr);
  CHECK(p.hold_for("certificates")->hold == Duration(3 * 365 * 24h));
  CHECK(p.jurisdiction("US-CA").deadline == Duration(45 * 24h));
  CHECK(p.jurisdiction("nowhere").deadline == Duration(30 * 24h));
}

TEST_CASE("only :subject and :partner are binds; casts and quotes are not", "[policy]") {
  CHECK(named_binds("SELECT a FROM t WHERE h = :subject AND p = :partner") ==
        std::vector<std::string>{"subject", "partner"});
  CHECK(named_binds("SELECT a::text FROM t WHERE h = :subject AND note = ':not_a_bind'") ==
        std::vector<std::string>{"subject"});
  CHECK(named_binds("SELECT 1") .empty());
}

TEST_CASE("policy problems carry their positions", "[policy]") {
  PolicyDir d;
  d.write("a.yaml", kBase);
  d.write("b.yaml", R"(systems:
  - name: institute
    database: "sqlite3://db=x.db"
    categories:
      exam_record:
        access: "SELECT * FROM exams WHERE huawei_id = :subject"
        erase: "DROP TABLE exams"
      email_address:
        access: "SELECT email FROM accounts WHERE huawei_id = :subject OR name = :name"
        erase: "DELETE FROM accounts; DELETE FROM other WHERE huawei_id = :subject"
    unlink: "DELETE FROM members WHERE huawei_id = :subject"
partners:
  - id: P-1
    name: One
    shared_categories: [email_address, phone]
    notice: { webhook: { url: "ftp://x", secret_file: s } }
retention:
  - category: exam_records
    hold: forever
    reason: audits
categories:
  email_address: { description: "again" }
)");
  CHECK(d.problems() ==
        "b.yaml:5:7: unknown category \"exam_record\" (did you mean \"exam_records\"?) [policy]\n"
        "b.yaml:7:16: \"erase\" must start with one of: DELETE UPDATE [sql]\n"
        "b.yaml:7:16: \"erase\" must use :subject, or it would touch every subject [sql]\n"
        "b.yaml:9:17: \"access\" binds :name; only :subject and :partner exist [sql]\n"
        "b.yaml:10:16: \"erase\" must be one statement [sql]\n"
        "b.yaml:11:13: \"unlink\" must use :partner, or it would end every association [sql]\n"
        "b.yaml:13:5: missing required key \"contact\" (people are told how to reach the partner) [missing-key]\n"
        "b.yaml:15:40: unknown category \"phone\" [policy]\n"
        "b.yaml:16:31: \"url\" must be an http:// or https:// URL [value]\n"
        "b.yaml:19:11: bad duration \"forever\" for \"hold\" (write e.g. 500ms, 30s, 10m, 2h, 7d) [duration]\n"
        "b.yaml:22:3: category \"email_address\" is already defined in " + (d.dir / "a.yaml").string() +
            " [policy]\n");
}

TEST_CASE("a default jurisdiction is required", "[policy]") {
  PolicyDir d;
  d.write("a.yaml", "categories:\n  x: { description: y }\n");
  CHECK(d.problems().find("no \"default\" jurisdiction") != std::string::npos);
}
