#include "daemon/actions/plan.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <map>
#include <set>
#include <soci/soci.h>
#include <sstream>

#include "daemon/store/rows.hpp"

namespace privacyd::actions {

namespace json = boost::json;

namespace {

// Runs `work` in a transaction that changes nothing: read-only on
// PostgreSQL, and rolled back on both backends.
template <class Work>
void read_only(Database& db, Work&& work) {
  db.with_session([&](soci::session& sql) {
    soci::transaction tr(sql);
    if (is_postgresql(sql)) sql << "SET TRANSACTION READ ONLY";
    work(sql);
    tr.rollback();
  });
}

struct Subject {
  bool known = false;
  std::string id;
  json::object contact;  // email, name, …: for `if:` only, never shown
  std::string locale;
  std::set<std::string> associated;                       // partners, associations not ended
  std::map<std::string, std::set<std::string>> disclosed;  // partner → categories
};

Subject find_subject(const PlanDependencies& deps, const std::string& huawei_id) {
  Subject s;
  const std::string index = deps.keys.blind_index(huawei_id, "subjects.huawei_id");
  read_only(deps.db, [&](soci::session& sql) {
    s = Subject{};
    std::string contact_enc, locale, key_id;
    long long shredded = 0;
    soci::indicator contact_ind = soci::i_null, locale_ind = soci::i_null, key_ind = soci::i_null,
                    shredded_ind = soci::i_null;
    // As intake finds it: a subject shredded once is the same row when it
    // comes back (with a new key).
    sql << "SELECT id, contact_enc, locale, key_id, shredded_at FROM subjects WHERE huawei_index = :i",
        soci::use(index, "i"), soci::into(s.id), soci::into(contact_enc, contact_ind), soci::into(locale, locale_ind),
        soci::into(key_id, key_ind), soci::into(shredded, shredded_ind);
    if (!sql.got_data()) return;
    s.known = key_ind == soci::i_ok || shredded_ind == soci::i_null;
    if (locale_ind == soci::i_ok) s.locale = locale;
    if (contact_ind == soci::i_ok) {
      if (auto plain = deps.keys.open(contact_enc, "subjects.contact")) {
        boost::system::error_code ec;
        auto parsed = json::parse(*plain, ec);
        if (!ec && parsed.is_object()) s.contact = parsed.get_object();
      }
    }
    {
      soci::rowset<std::string> rows = (sql.prepare << "SELECT partner_id FROM associations WHERE subject_id = :s"
                                                        " AND ended_at IS NULL",
                                        soci::use(s.id, "s"));
      for (const auto& p : rows) s.associated.insert(p);
    }
    soci::rowset<soci::row> rows = (sql.prepare << "SELECT partner_id, category FROM disclosures WHERE subject_id = :s"
                                                   " GROUP BY partner_id, category",
                                    soci::use(s.id, "s"));
    for (const auto& r : rows) s.disclosed[r.get<std::string>(0)].insert(r.get<std::string>(1));
  });
  return s;
}

json::value channel_of(const policy::Partner* partner) {
  if (partner == nullptr) return "not in the policies";
  return partner->notice_url.empty() ? "email" : "webhook";
}

}  // namespace

PlanQuery plan_query(const json::object& query) {
  auto text = [&](const char* key) {
    const auto* v = query.if_contains(key);
    if (v == nullptr || v->is_null()) return std::string();
    if (!v->is_string()) throw BadPlanQuery(std::string(key) + " must be a string");
    return std::string(v->get_string());
  };
  PlanQuery q{text("type"), text("subject"), text("partner"), {}, text("jurisdiction")};
  if (const auto* list = query.if_contains("categories"); list != nullptr && !list->is_null()) {
    if (!list->is_array()) throw BadPlanQuery("categories must be a list");
    for (const auto& c : list->get_array()) {
      if (!c.is_string()) throw BadPlanQuery("categories must be names");
      q.categories.emplace_back(c.get_string());
    }
  }
  return q;
}

json::object plan(const PlanDependencies& deps, const PlanQuery& q, UnixMillis now) {
  if (q.type != "access" && q.type != "deletion" && q.type != "disassociation") {
    throw BadPlanQuery("type must be access, deletion or disassociation");
  }
  if (q.subject.empty() || q.subject.size() > 256) throw BadPlanQuery("subject must be a HUAWEI ID (1 to 256 bytes)");
  if (q.type == "disassociation" && q.partner.empty()) throw BadPlanQuery("a disassociation names its partner");
  auto bounded = [](const std::string& value, const char* what) {
    if (value.size() > 128 || std::any_of(value.begin(), value.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
      throw BadPlanQuery(std::string(what) + " must be at most 128 printable bytes");
    }
  };
  bounded(q.partner, "partner");
  bounded(q.jurisdiction, "jurisdiction");
  if (q.categories.size() > 256) throw BadPlanQuery("at most 256 categories");
  const policy::Policies& p = deps.policies;
  for (const auto& c : q.categories) {
    if (!p.categories.contains(c)) throw BadPlanQuery("unknown category \"" + c + "\"");
  }
  const std::vector<std::string> scope = p.scope(q.categories);
  auto in_scope = [&](const std::string& c) { return std::find(scope.begin(), scope.end(), c) != scope.end(); };
  auto ms = [](Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };

  const Subject subject = find_subject(deps, q.subject);
  const std::string jurisdiction = q.jurisdiction.empty() ? "default" : q.jurisdiction;
  json::object request{{"type", q.type},
                       {"subject", json::object{{"known", subject.known},
                                                {"has_email", subject.contact.contains("email")},
                                                {"locale", subject.locale.empty() ? json::value(nullptr)
                                                                                  : json::value(subject.locale)}}},
                       {"partner", q.partner.empty() ? json::value(nullptr) : json::value(q.partner)},
                       {"categories", json::value_from(scope)},
                       {"jurisdiction", jurisdiction},
                       {"deadline", format_rfc3339(now + ms(p.jurisdiction(jurisdiction).deadline))}};

  json::object out{{"dry_run", true},
                   {"note", "nothing was changed: access queries ran read-only and were rolled back; erase and unlink"
                            " statements were not run; no row, audit entry or notice was written"},
                   {"planned_at", format_rfc3339(now)},
                   {"request", request}};
  const engine::Workflow* w = deps.workflows.for_trigger("request." + q.type);
  if (w == nullptr) {
    out["workflow"] = nullptr;
    out["steps"] = json::array{};
    return out;
  }
  out["workflow"] = json::object{{"name", w->name}, {"version", w->version}};

  // What `if:` sees, as the engine builds it; earlier steps' outputs are
  // not known before they run.
  json::object subject_context = subject.contact;
  subject_context["huawei_id"] = q.subject;
  if (!subject.locale.empty()) subject_context["locale"] = subject.locale;
  json::object request_context{{"type", q.type}, {"jurisdiction", jurisdiction},
                               {"categories", json::value_from(q.categories)}};
  if (!q.partner.empty()) request_context["partner_id"] = q.partner;
  const json::value context = json::object{{"request", request_context},
                                           {"subject", subject_context},
                                           {"partner", q.partner.empty() ? json::object{}
                                                                         : json::object{{"id", q.partner}}},
                                           {"steps", json::object{}}};

  json::array steps;
  for (const auto& step : w->steps) {
    json::object s{{"id", step.id}, {"action", step.action}};
    bool runs = true;
    bool known = true;  // whether the plan can tell if it runs
    if (step.condition) {
      // What only the run knows: earlier steps' outputs, and the request's
      // own id, status and times.
      for (const auto& path : step.condition->paths()) {
        if (path.empty()) continue;
        if (path[0] == "steps" ||
            (path[0] == "request" && path.size() > 1 &&
             (path[1] == "id" || path[1] == "status" || path[1] == "subject_id" || path[1] == "received_at" ||
              path[1] == "subject_key"))) {
          known = false;
        }
      }
      if (known) runs = step.condition->evaluate(context);
      s["if"] = json::object{{"condition", step.condition->text()},
                             {"holds", known ? json::value(runs) : json::value(nullptr)}};
    }
    s["runs"] = known ? json::value(runs) : json::value(nullptr);
    json::array systems;
    json::array notices;
    const std::string& a = step.action;
    if (a == "systems.collect") {
      for (const auto& system : p.systems) {
        for (const auto& [category, queries] : system.categories) {
          if (!queries.access || !in_scope(category)) continue;
          json::object entry{{"system", system.name}, {"category", category}, {"statement", "access"},
                             {"sql", queries.access->sql}};
          try {
            const Binds binds{q.subject, ""};
            std::size_t rows = 0;
            read_only(deps.systems.of(system), [&](soci::session& sql) { rows = read_rows(sql, *queries.access, binds).size(); });
            entry["rows"] = static_cast<std::int64_t>(rows);
          } catch (const std::exception& e) {
            entry["error"] = describe_system_failure(e);
          }
          systems.push_back(std::move(entry));
        }
      }
    } else if (a == "systems.erase") {
      for (const auto& system : p.systems) {
        for (const auto& [category, queries] : system.categories) {
          if (!queries.erase || !in_scope(category)) continue;
          json::object entry{{"system", system.name}, {"category", category}, {"statement", "erase"},
                             {"sql", queries.erase->sql}, {"run", false}};
          if (const auto* hold = p.hold_for(category)) {
            entry["hold"] = json::object{{"reason", hold->reason}, {"until", format_rfc3339(now + ms(hold->hold))}};
          }
          systems.push_back(std::move(entry));
        }
      }
    } else if (a == "systems.unlink") {
      for (const auto& system : p.systems) {
        if (!system.unlink) continue;
        systems.push_back(json::object{{"system", system.name}, {"statement", "unlink"}, {"sql", system.unlink->sql},
                                       {"run", false}});
      }
      s["associated_in_ledger"] = subject.associated.contains(q.partner);
    } else if (a == "ledger.holdings") {
      json::array categories;
      if (auto it = subject.disclosed.find(q.partner); it != subject.disclosed.end()) {
        for (const auto& c : it->second) categories.emplace_back(c);
      }
      s["categories_disclosed"] = std::move(categories);
    } else if (a == "notify.partner") {
      notices.push_back(json::object{{"channel", "partner"}, {"recipient", q.partner},
                                     {"via", channel_of(p.partner(q.partner))}});
    } else if (a == "notify.partners") {
      for (const auto& [partner, categories] : subject.disclosed) {
        if (std::none_of(categories.begin(), categories.end(), in_scope)) continue;
        notices.push_back(json::object{{"channel", "partner"}, {"recipient", partner},
                                       {"via", channel_of(p.partner(partner))}});
      }
    } else if (a == "notify.subject") {
      notices.push_back(json::object{{"channel", "subject"}, {"recipient", "subject"}, {"via", "email"}});
    } else if (a == "approval") {
      s["waits"] = "for an operator to approve or reject";
    } else if (a == "wait") {
      s["waits"] = step.with.contains("for") ? step.with.at("for") : json::value(nullptr);
    } else if (a == "webhook.call") {
      s["calls"] = step.with.contains("url") ? step.with.at("url") : json::value(nullptr);
    }
    if (!systems.empty()) s["systems"] = std::move(systems);
    if (!notices.empty() && (runs || !known)) s["notices"] = std::move(notices);
    steps.push_back(std::move(s));
  }
  out["steps"] = std::move(steps);
  // After the last step: the Partner Center is told the request's end.
  json::array after;
  if (deps.callbacks) after.push_back(json::object{{"channel", "partner_center"}, {"recipient", "partner-center"},
                                                   {"via", "webhook"}});
  out["on_completion"] = json::object{{"notices", std::move(after)}};
  return out;
}

std::string plan_text(const json::object& plan) {
  std::ostringstream o;
  auto str = [](const json::value& v) {
    return v.is_string() ? std::string(v.get_string()) : v.is_null() ? std::string("-") : json::serialize(v);
  };
  const auto& r = plan.at("request").as_object();
  o << "Dry run: " << str(plan.at("note")) << ".\n";
  o << "Request: " << str(r.at("type"));
  if (!r.at("partner").is_null()) o << " with partner " << str(r.at("partner"));
  const auto& subject = r.at("subject").as_object();
  o << "; subject " << (subject.at("known").as_bool() ? "known" : "not known") << " to privacyd"
    << (subject.at("has_email").as_bool() ? ", with an email address" : ", no email address") << "\n";
  o << "Deadline: " << str(r.at("deadline")) << " (" << str(r.at("jurisdiction")) << ")\n";
  if (plan.at("workflow").is_null()) {
    o << "No workflow for this type: the request would wait for one.\n";
    return o.str();
  }
  o << "Workflow: " << str(plan.at("workflow").at("name")) << " version " << str(plan.at("workflow").at("version"))
    << "\n";
  int n = 0;
  for (const auto& step : plan.at("steps").as_array()) {
    const auto& s = step.as_object();
    o << "\n" << ++n << ". " << str(s.at("id")) << " (" << str(s.at("action")) << ")";
    if (const auto* cond = s.if_contains("if")) {
      const auto& holds = cond->at("holds");
      o << ", if " << str(cond->at("condition")) << ": "
        << (holds.is_null() ? "decided when it runs" : holds.as_bool() ? "holds" : "does not hold");
    }
    o << (s.at("runs").is_bool() && !s.at("runs").as_bool() ? " -- skipped" : "") << "\n";
    if (const auto* systems = s.if_contains("systems")) {
      for (const auto& e : systems->as_array()) {
        const auto& x = e.as_object();
        o << "   " << str(x.at("statement")) << " on " << str(x.at("system"));
        if (const auto* c = x.if_contains("category")) o << "/" << str(*c);
        if (const auto* rows = x.if_contains("rows")) o << ": " << str(*rows) << " rows now";
        if (const auto* err = x.if_contains("error")) o << ": cannot read now (" << str(*err) << ")";
        if (x.contains("run")) o << " (not run)";
        if (const auto* hold = x.if_contains("hold")) {
          o << "; held until " << str(hold->at("until")) << " (" << str(hold->at("reason")) << ")";
        }
        o << "\n     " << str(x.at("sql")) << "\n";
      }
    }
    if (const auto* a = s.if_contains("associated_in_ledger")) {
      o << "   ledger: "
        << (a->as_bool() ? "associated" : "not associated (rejected as not_associated unless a system unlinks a row)")
        << "\n";
    }
    if (const auto* c = s.if_contains("categories_disclosed")) o << "   disclosed to the partner: " << str(*c) << "\n";
    if (const auto* notices = s.if_contains("notices")) {
      for (const auto& e : notices->as_array()) {
        o << "   notice to " << str(e.at("recipient")) << " (" << str(e.at("channel")) << ", by " << str(e.at("via"))
          << ")\n";
      }
    }
    if (const auto* waits = s.if_contains("waits")) o << "   waits " << str(*waits) << "\n";
    if (const auto* calls = s.if_contains("calls")) o << "   calls " << str(*calls) << "\n";
  }
  for (const auto& e : plan.at("on_completion").at("notices").as_array()) {
    o << "\nOn completion: notice to " << str(e.at("recipient")) << " (" << str(e.at("channel")) << ", by "
      << str(e.at("via")) << ")\n";
  }
  return o.str();
}

}  // namespace privacyd::actions
