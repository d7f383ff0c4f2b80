#include "daemon/notify/notice_actions.hpp"

#include <boost/json.hpp>
#include <soci/soci.h>

#include "daemon/base/time.hpp"
#include "daemon/crypto/primitives.hpp"
#include "daemon/notify/callbacks.hpp"
#include "daemon/notify/dates.hpp"
#include "daemon/store/async.hpp"
#include "daemon/store/prepared.hpp"
#include "daemon/store/rows.hpp"

namespace privacyd::notify {

namespace json = boost::json;
namespace net = boost::asio;
using engine::ActionContext;
using engine::ActionResult;

std::filesystem::path templates_dir(const std::filesystem::path& policies_dir) { return policies_dir / "notices"; }

engine::ActionCatalog notice_action_specs() {
  using engine::ActionParam;
  return {{"notify.partner", {{"template", ActionParam::Kind::text, true}}},
          {"notify.partners", {{"template", ActionParam::Kind::text, true}}},
          {"notify.subject", {{"template", ActionParam::Kind::text, true}}}};
}

void check_workflow_templates(const engine::WorkflowSet& workflows, const Templates& templates, Diagnostics& out) {
  if (!templates.has(kRejectionTemplate)) {
    out.push_back({templates.path_of(kRejectionTemplate).string(), 0, 0,
                   "a rejected request tells the person why: this template is required", "template"});
  }
  if (!templates.has(kReminderTemplate)) {
    out.push_back({templates.path_of(kReminderTemplate).string(), 0, 0,
                   "a partner that has not acknowledged a notice is reminded: this template is required", "template"});
  }
  for (const auto& w : workflows.workflows) {
    for (const auto& step : w.steps) {
      if (!step.action.starts_with("notify.")) continue;
      std::string name(step.with.at("template").as_string());
      if (!templates.has(name)) {
        const auto at = step.with_at.find("template");
        const auto [line, column] = at != step.with_at.end() ? at->second : std::pair{1, 1};
        out.push_back({w.path, line, column, "step " + step.id + " names template \"" + name +
                                                 "\", which has no " + name + ".en.mustache", "template"});
      }
    }
  }
}

namespace {

const json::value* at(const json::value& v, std::initializer_list<const char*> path) {
  const json::value* p = &v;
  for (const char* k : path) {
    if (!p->is_object()) return nullptr;
    p = p->get_object().if_contains(k);
    if (p == nullptr) return nullptr;
  }
  return p;
}
std::string text(const json::value& v, std::initializer_list<const char*> path) {
  const auto* p = at(v, path);
  return p != nullptr && p->is_string() ? std::string(p->get_string()) : std::string();
}

int step_index(const ActionContext& ctx) {
  for (std::size_t i = 0; i < ctx.workflow->steps.size(); ++i) {
    if (ctx.workflow->steps[i].id == ctx.step.id) return static_cast<int>(i);
  }
  return -1;
}

// The output of the earlier step that ran `action`, or null.
const json::value* output_of(const ActionContext& ctx, std::string_view action) {
  for (const auto& s : ctx.workflow->steps) {
    if (s.id == ctx.step.id) break;
    if (s.action == action) return at(ctx.context, {"steps", s.id.c_str()});
  }
  return nullptr;
}

json::array described(const policy::Policies& p, const json::array& names) {
  json::array out;
  for (const auto& n : names) {
    std::string name(n.as_string());
    auto it = p.categories.find(name);
    out.push_back(json::object{{"category", name}, {"description", it != p.categories.end() ? it->second.description : ""}});
  }
  return out;
}

bool usable_email(std::string_view email) { return email.find_first_of("\r\n<>") == std::string_view::npos; }

// A mail to the person, rendered in their locale and sealed for the outbox.
// Sealed under the subject's key (`key`): the mail holds their address.
engine::NoticeDraft subject_mail(const NoticeDependencies& deps, const std::string& key,
                                 const std::string& template_name, std::string locale, const std::string& email,
                                 const json::object& values, UnixMillis now) {
  if (locale.empty()) locale = "en";
  engine::NoticeDraft n;
  n.id = crypto::new_id("ntc", now);
  n.channel = "subject";
  n.recipient = "subject";
  n.template_name = template_name;
  std::string rendered = deps.templates.get()->render(n.template_name, locale, values);
  // A template's first line is "Subject: …"; the rest is the body.
  std::string subject_line = "Your privacy request";
  if (rendered.starts_with("Subject: ")) {
    auto eol = rendered.find('\n');
    subject_line = rendered.substr(9, eol == std::string::npos ? std::string::npos : eol - 9);
    rendered = eol == std::string::npos ? std::string() : rendered.substr(eol + 1);
    while (rendered.starts_with("\n")) rendered.erase(0, 1);
  }
  json::object message{{"to", email}, {"from", deps.from()}, {"subject", subject_line}, {"body", rendered},
                       {"locale", locale}};
  n.payload_enc = deps.keys.seal_for(key, json::serialize(message), "notices.payload");
  return n;
}

class NoticeAction : public engine::LocalAction {
 public:
  NoticeAction(const NoticeDependencies& d, engine::ActionSpec spec) : deps_(d), spec_(std::move(spec)) {}
  const engine::ActionSpec& spec() const override { return spec_; }

  ActionResult run_local(soci::session& sql, const ActionContext& ctx) override {
    // Already queued on an earlier run: report how delivery went.
    const std::string& request_id = ctx.request_id;
    const int idx = step_index(ctx);
    std::vector<std::pair<std::string, std::string>> queued;
    {
      soci::row r;
      Prepared select(sql, "SELECT id, status FROM notices WHERE request_id = :r AND step_idx = :i ORDER BY id");
      select.bind(soci::use(request_id, "r"), soci::use(idx, "i"), soci::into(r));
      for (bool got = select.execute(); got; got = select.fetch()) {
        queued.emplace_back(r.get<std::string>(0), r.get<std::string>(1));
      }
    }
    if (!queued.empty()) {
      json::array ids;
      for (const auto& [id, status] : queued) {
        if (status == "dead") return ActionResult::failure("notice " + id + " could not be delivered", false);
        ids.emplace_back(id);
      }
      for (const auto& [id, status] : queued) {
        if (status != "delivered") {
          ActionResult r;
          r.kind = ActionResult::Kind::await_notices;  // not all delivered yet: keep waiting
          return r;
        }
      }
      return ActionResult::success(json::object{{"notices", std::move(ids)}});
    }
    ActionResult r;
    r.kind = ActionResult::Kind::await_notices;
    try {
      r.notices = draft(sql, ctx);
    } catch (const engine::PermanentFailure&) {
      throw;
    } catch (const soci::soci_error&) {
      throw;  // privacyd's own database: the engine retries the run, not the step
    } catch (const DatabaseUnavailable&) {
      throw;
    } catch (const DatabaseConflict&) {
      throw;
    } catch (const std::exception& e) {
      return ActionResult::failure(std::string(spec_.name) + ": " + e.what(), false);
    }
    if (r.notices.empty()) return ActionResult::success(json::object{{"notices", json::array{}}});
    return r;
  }

 protected:
  // In the step's transaction (`sql`), like run_local.
  virtual std::vector<engine::NoticeDraft> draft(soci::session& sql, const ActionContext& ctx) = 0;

  // The §7 body, with its text in the partner's locale and dates as its
  // readers write them; the body's own dates stay RFC 3339.
  engine::NoticeDraft partner_notice(const ActionContext& ctx, const policy::Partner& partner, json::object body) {
    engine::NoticeDraft n;
    n.id = crypto::new_id("ntc", ctx.now);
    n.channel = "partner";
    n.recipient = partner.id;
    n.template_name = std::string(ctx.step.with.at("template").as_string());
    body["notice_id"] = n.id;
    body["request_id"] = ctx.request_id;
    body["partner_id"] = partner.id;
    body["subject"] = json::object{{"huawei_id", engine::required_huawei_id(ctx)}};
    const std::string token = ask_for_acknowledgement(deps_, partner, n, ctx.now);
    body["acknowledge_by"] = format_rfc3339(*n.ack_due_at);
    const std::string& locale = partner.notice_locale;
    json::object values = body;
    values["partner_name"] = partner.name;
    values["categories"] = described(*deps_.policies.current(), body["categories"].as_array());
    for (const char* key : {"disassociated_at", "associated_from"}) {
      if (const auto* v = body.if_contains(key); v != nullptr && v->is_string()) {
        values[key] = display_date(v->get_string(), locale);
      }
    }
    values["acknowledge_by"] = display_date(*n.ack_due_at, locale);
    if (!token.empty()) values["ack_url"] = deps_.public_url + "/v1/acks/" + token;
    body["text"] = deps_.templates.get()->render(n.template_name, locale, values);
    n.payload_enc = deps_.keys.seal_for(engine::subject_key(ctx), json::serialize(body), "notices.payload");
    return n;
  }

  const NoticeDependencies& deps_;
  engine::ActionSpec spec_;
};

// To the request's partner, after a disassociation: what it still holds.
class NotifyPartner final : public NoticeAction {
 public:
  explicit NotifyPartner(const NoticeDependencies& d) : NoticeAction(d, notice_action_specs()[0]) {}

 protected:
  std::vector<engine::NoticeDraft> draft(soci::session&, const ActionContext& ctx) override {
    auto policies = deps_.policies.current();
    const auto* partner = policies->partner(text(ctx.context, {"request", "partner_id"}));
    if (partner == nullptr) throw std::runtime_error("the request's partner is not in the policies");
    const json::value* holdings = output_of(ctx, "ledger.holdings");
    if (holdings == nullptr) throw std::runtime_error("needs an earlier ledger.holdings step");
    json::object body{{"type", "notice.disassociation"},
                      {"categories", holdings->at("categories")},
                      {"disclosed", holdings->at("disclosed")},
                      {"disassociated_at", holdings->at("disassociated_at")},
                      {"associated_from", holdings->at("associated_from")}};
    return {partner_notice(ctx, *partner, std::move(body))};
  }
};

// To every partner the subject's data was disclosed to, after a deletion:
// which of the categories in scope to erase.
class NotifyPartners final : public NoticeAction {
 public:
  explicit NotifyPartners(const NoticeDependencies& d) : NoticeAction(d, notice_action_specs()[1]) {}

 protected:
  std::vector<engine::NoticeDraft> draft(soci::session& sql, const ActionContext& ctx) override {
    const std::string subject_id = text(ctx.context, {"request", "subject_id"});
    std::vector<std::array<std::string, 4>> rows;
    {
      soci::row r;
      Prepared select(sql, "SELECT partner_id, category, MIN(disclosed_at), MAX(disclosed_at) FROM disclosures"
                           " WHERE subject_id = :s GROUP BY partner_id, category ORDER BY partner_id, category");
      select.bind(soci::use(subject_id, "s"), soci::into(r));
      for (bool got = select.execute(); got; got = select.fetch()) {
        rows.push_back({r.get<std::string>(0), r.get<std::string>(1), format_rfc3339(row_integer(r, 2)),
                        format_rfc3339(row_integer(r, 3))});
      }
    }
    std::vector<std::string> scope;
    if (const auto* cats = at(ctx.context, {"request", "categories"}); cats && cats->is_array()) {
      for (const auto& c : cats->get_array()) scope.emplace_back(c.get_string());
    }
    auto policies = deps_.policies.current();
    std::vector<engine::NoticeDraft> notices;
    std::map<std::string, std::pair<json::array, json::array>> per_partner;  // categories, disclosed
    for (const auto& [partner, category, first, last] : rows) {
      if (!scope.empty() && std::find(scope.begin(), scope.end(), category) == scope.end()) continue;
      auto& [cats, disclosed] = per_partner[partner];
      cats.emplace_back(category);
      disclosed.push_back(json::object{{"category", category}, {"first_disclosed_at", first}, {"last_disclosed_at", last}});
    }
    for (auto& [partner_id, lists] : per_partner) {
      const auto* partner = policies->partner(partner_id);
      // Never skipped silently (SPEC §13.3): a partner that holds the data
      // but has left the policies stops the step until an operator acts.
      if (partner == nullptr) {
        throw engine::PermanentFailure("partner " + partner_id +
                                       " received this person's data but is no longer in the policies; add it"
                                       " back with a notice channel, then retry the request");
      }
      json::object body{{"type", "notice.erasure"}, {"categories", lists.first}, {"disclosed", lists.second}};
      notices.push_back(partner_notice(ctx, *partner, std::move(body)));
    }
    return notices;
  }
};

// To the person, by email (SMTP) or as a file: in their locale.
class NotifySubject final : public NoticeAction {
 public:
  explicit NotifySubject(const NoticeDependencies& d) : NoticeAction(d, notice_action_specs()[2]) {}

 protected:
  std::vector<engine::NoticeDraft> draft(soci::session&, const ActionContext& ctx) override {
    const std::string email = text(ctx.context, {"subject", "email"});
    if (email.empty()) throw std::runtime_error("the subject has no email address (guard the step with if: subject.email)");
    if (!usable_email(email)) throw std::runtime_error("the subject's email is malformed");
    auto policies = deps_.policies.current();
    std::string locale = text(ctx.context, {"subject", "locale"});
    if (locale.empty()) locale = "en";
    json::object values{{"name", text(ctx.context, {"subject", "name"})},
                        {"request_id", ctx.request_id},
                        {"reason", text(ctx.context, {"request", "reason"})}};
    if (const json::value* exported = output_of(ctx, "export.package")) {
      // The person's own link to their copy (SPEC §13.2).
      if (auto link = package_link(deps_, *exported)) {
        values["package_url"] = link->url;
        values["package_expires"] = display_date(link->expires_at, locale);
      }
    }
    if (const auto* p = policies->partner(text(ctx.context, {"request", "partner_id"}))) {
      values["partner_name"] = p->name;
      values["partner_id"] = p->id;
      values["contact_email"] = p->contact_email;
      values["contact_url"] = p->contact_url;
    }
    if (const json::value* h = output_of(ctx, "ledger.holdings")) {
      values["categories"] = described(*policies, h->at("categories").as_array());
      if (const auto& at = h->at("disassociated_at"); at.is_string()) {
        values["disassociated_at"] = display_date(at.get_string(), locale);
      }
    }
    if (const json::value* erase = output_of(ctx, "systems.erase")) {
      json::array erased;
      for (const auto& e : erase->at("erased").as_array()) {
        json::array one{e.at("category")};
        if (e.at("rows").to_number<long long>() > 0) erased.push_back(described(*policies, one)[0]);
      }
      values["erased"] = std::move(erased);
      json::array retained;
      for (const auto& k : erase->at("retained").as_array()) {
        json::array one{k.at("category")};
        json::object item = described(*policies, one)[0].as_object();
        item["reason"] = k.at("reason");
        item["until"] = k.at("until").is_string() ? json::value(display_date(k.at("until").get_string(), locale))
                                                  : k.at("until");
        retained.push_back(std::move(item));
      }
      values["has_retained"] = !retained.empty();
      values["retained"] = std::move(retained);
    }
    auto n = subject_mail(deps_, engine::subject_key(ctx), std::string(ctx.step.with.at("template").as_string()),
                          locale, email, values, ctx.now);
    return {std::move(n)};
  }
};

}  // namespace

std::vector<engine::NoticeDraft> rejection_notices(const NoticeDependencies& deps, const json::value& context,
                                                   std::string_view reason, bool by_operator, UnixMillis now) {
  const std::string email = text(context, {"subject", "email"});
  if (email.empty() || !usable_email(email)) return {};  // nowhere to write to
  const bool not_associated = reason == "not_associated";
  json::object values{{"request_id", text(context, {"request", "id"})},
                      {"reason", reason},
                      {"not_associated", not_associated},
                      {"by_operator", by_operator && !not_associated},
                      {"by_step", !by_operator && !not_associated}};
  // Absent, not empty: a template's {{#name}} section then leaves no blank.
  if (auto name = text(context, {"subject", "name"}); !name.empty()) values["name"] = name;
  return {subject_mail(deps, engine::subject_key(context), std::string(kRejectionTemplate),
                       text(context, {"subject", "locale"}), email, values, now)};
}

std::string ask_for_acknowledgement(const NoticeDependencies& deps, const policy::Partner& partner,
                                    engine::NoticeDraft& n, UnixMillis now) {
  const auto policies = deps.policies.current();  // held while its terms are read
  const auto& terms = policies->acknowledgement_for(partner);
  auto ms = [](Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  n.ack_due_at = now + ms(terms.within);
  if (!terms.reminders.empty()) n.next_reminder_at = now + ms(terms.reminders.front());
  // A webhook partner answers by webhook, signed; one reached by email
  // follows the link in its mail.
  if (!partner.notice_url.empty()) return {};
  std::string token = crypto::new_link_token();
  n.ack_token_sha256 = crypto::token_digest(token);
  return token;
}

void add_notice_actions(engine::ActionRegistry& registry, const NoticeDependencies& deps) {
  registry.add(std::make_unique<NotifyPartner>(deps));
  registry.add(std::make_unique<NotifyPartners>(deps));
  registry.add(std::make_unique<NotifySubject>(deps));
}

}  // namespace privacyd::notify
