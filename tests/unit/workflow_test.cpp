#include <catch2/catch.hpp>

#include "daemon/engine/action.hpp"
#include "daemon/engine/workflow.hpp"

using namespace privacyd;
using namespace privacyd::engine;
using namespace std::chrono_literals;

namespace {
ActionCatalog catalog() {
  ActionRegistry registry;
  add_builtin_actions(registry, "/tmp");
  return registry.catalog();
}
std::string problems_of(std::string_view text) {
  Diagnostics out;
  auto w = parse_workflow(text, "w.yaml", catalog(), out);
  CHECK_FALSE(w.has_value());
  std::string all;
  for (const auto& d : out) all += format_text(d) + "\n";
  return all;
}
}  // namespace

TEST_CASE("a valid workflow parses with its steps and defaults", "[workflow]") {
  Diagnostics out;
  auto w = parse_workflow(R"(workflow: review
version: 3
on: request.deletion
steps:
  - id: ask
    action: approval
  - id: pause
    action: wait
    with: { for: 7d }
  - id: tell
    action: webhook.call
    if: "subject.email && request.jurisdiction == 'EU'"
    retry: { attempts: 5, backoff: 2s, max_backoff: 10m }
    timeout: 10s
    with: { url: "http://127.0.0.1:9/hook", secret_file: secrets }
)",
                          "w.yaml", catalog(), out);
  INFO((out.empty() ? std::string() : format_text(out.front())));
  REQUIRE(w);
  CHECK(w->name == "review");
  CHECK(w->version == 3);
  CHECK(w->trigger == "request.deletion");
  REQUIRE(w->steps.size() == 3);
  CHECK(w->steps[0].retry.attempts == 1);
  CHECK(w->steps[0].timeout == Duration(30s));
  CHECK(w->steps[1].with.at("for").as_string() == "7d");
  CHECK(w->steps[2].retry.attempts == 5);
  CHECK(w->steps[2].retry.backoff == Duration(2s));
  CHECK(w->steps[2].timeout == Duration(10s));
  CHECK(w->steps[2].condition.has_value());
  CHECK(w->sha256.size() == 64);
}

TEST_CASE("every problem is reported at its position", "[workflow]") {
  CHECK(problems_of(R"(workflow: review
version: one
on: request.erasure
stepz: []
)") == "w.yaml:1:1: missing required key \"steps\" [missing-key]\n"
       "w.yaml:2:10: \"version\" must be an integer, not \"one\" [type]\n"
       "w.yaml:3:5: unknown trigger \"request.erasure\" (request.access, request.deletion, request.disassociation) "
       "[workflow]\n"
       "w.yaml:4:1: unknown key \"stepz\" in the workflow (did you mean \"steps\"?) [unknown-key]\n");

  CHECK(problems_of(R"(workflow: review
version: 1
on: request.deletion
steps:
  - id: erase
    action: systems.erse
  - id: Erase_2
    action: aproval
    retyr: { attempts: 3 }
  - id: erase
    action: wait
    with: { for: soon, extra: 1 }
  - id: later
    action: wait
    timeout: 0s
)") == "w.yaml:6:13: unknown action \"systems.erse\" [workflow]\n"
       "w.yaml:7:9: step id \"Erase_2\" must match [a-z0-9-]+ [workflow]\n"
       "w.yaml:8:13: unknown action \"aproval\" (did you mean \"approval\"?) [workflow]\n"
       "w.yaml:9:5: unknown key \"retyr\" in step 2 (did you mean \"retry\"?) [unknown-key]\n"
       "w.yaml:10:9: duplicate step id \"erase\" [workflow]\n"
       "w.yaml:12:18: bad duration \"soon\" for \"for\" (write e.g. 30s, 10m, 7d) [duration]\n"
       "w.yaml:12:24: unknown key \"extra\" in with (wait) [unknown-key]\n"
       "w.yaml:13:5: action \"wait\" needs with: { for: … } [workflow]\n"
       "w.yaml:15:14: timeout must be more than 0 and at most 24h [workflow]\n");
}

TEST_CASE("conditions are checked when the workflow loads", "[workflow]") {
  CHECK(problems_of(R"(workflow: review
version: 1
on: request.deletion
steps:
  - id: first
    action: approval
    if: "subject.email &&"
  - id: second
    action: approval
    if: subjct.email
  - id: third
    action: approval
    if: steps.fourth.ok
  - id: fourth
    action: approval
    if: steps.first.ok || steps.third.ok
)") == "w.yaml:7:26: bad condition: expected a path like subject.email [expression]\n"
       "w.yaml:10:9: condition reads \"subjct\"; it can read request, subject, partner or steps (did you mean "
       "\"subject\"?) [expression]\n"
       "w.yaml:13:9: condition reads steps.fourth, which is not an earlier step [expression]\n");
}

TEST_CASE("retry bounds are checked", "[workflow]") {
  CHECK(problems_of(R"(workflow: review
version: 1
on: request.access
steps:
  - id: a
    action: approval
    retry: { attempts: 0, backoff: 1m, max_backoff: 10s }
)") == "w.yaml:7:12: max_backoff is shorter than backoff [workflow]\n"
       "w.yaml:7:24: \"attempts\" must be between 1 and 100 [value]\n");
}

TEST_CASE("retry delays grow exponentially, capped, with jitter", "[workflow]") {
  RetryPolicy p{5, 2s, 10s};
  CHECK(retry_delay(p, 2, 0.0) == Duration(1s));    // half of 2s
  CHECK(retry_delay(p, 2, 0.999).count() < 2000);
  CHECK(retry_delay(p, 3, 0.0) == Duration(2s));    // half of 4s
  CHECK(retry_delay(p, 4, 0.5) == Duration(6s));    // 8s: 4 fixed + 2 jitter
  CHECK(retry_delay(p, 9, 0.0) == Duration(5s));    // capped at 10s, half fixed
  CHECK(retry_delay(p, 9, 0.999).count() <= 10000);
}
