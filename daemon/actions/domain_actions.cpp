#include "daemon/actions/domain_actions.hpp"

#include <boost/json.hpp>
#include <map>
#include <soci/soci.h>

#include "daemon/base/time.hpp"
#include "daemon/crypto/primitives.hpp"
#include "daemon/store/async.hpp"
#include "daemon/store/prepared.hpp"
#include "daemon/store/rows.hpp"

namespace privacyd::actions {

namespace json = boost::json;
namespace net = boost::asio;
using engine::ActionContext;
using engine::ActionResult;
using engine::ActionSpec;

namespace {

std::string text_at(const json::value& context, std::initializer_list<const char*> path) {
  const json::value* v = &context;
  for (const char* key : path) {
    if (!v->is_object()) return {};
    v = v->get_object().if_contains(key);
    if (v == nullptr) return {};
  }
  return v->is_string() ? std::string(v->get_string()) : std::string();
}

// The categories the request covers (Policies::scope of those it names).
std::vector<std::string> scope(const ActionContext& ctx, const policy::Policies& p) {
  std::vector<std::string> named;
  if (const auto* cats = ctx.context.at("request").as_object().if_contains("categories");
      cats != nullptr && cats->is_array()) {
    for (const auto& c : cats->get_array()) {
      if (c.is_string()) named.emplace_back(c.get_string());
    }
  }
  return p.scope(named);
}

bool in(const std::vector<std::string>& list, const std::string& x) {
  return std::find(list.begin(), list.end(), x) != list.end();
}

// The privacyd database's own subject id and the HUAWEI ID to bind.
struct Subject {
  std::string id;
  std::string huawei_id;
};
// Throws PermanentFailure when the HUAWEI ID cannot be decrypted: acting
// on an empty identifier would "succeed" on no rows.
Subject subject_of(const ActionContext& ctx) {
  return {text_at(ctx.context, {"request", "subject_id"}), engine::required_huawei_id(ctx)};
}

// The rows earlier attempts of this step reported under `key`, by name
// (system, or "system/category"), so a retry adds to them.
std::map<std::string, long long> earlier_counts(const ActionContext& ctx, const char* key) {
  std::map<std::string, long long> out;
  if (ctx.earlier == nullptr || !ctx.earlier->is_object()) return out;
  const auto* list = ctx.earlier->get_object().if_contains(key);
  if (list == nullptr) return out;
  if (list->is_object()) {
    for (const auto& [name, rows] : list->get_object()) {
      if (rows.is_int64()) out[std::string(name)] = rows.get_int64();
    }
  } else if (list->is_array()) {
    for (const auto& e : list->get_array()) {
      if (!e.is_object()) continue;
      const auto& o = e.get_object();
      const auto* system = o.if_contains("system");
      const auto* category = o.if_contains("category");
      const auto* rows = o.if_contains("rows");
      if (system && system->is_string() && category && category->is_string() && rows && rows->is_int64()) {
        out[std::string(system->get_string()) + "/" + std::string(category->get_string())] = rows->get_int64();
      }
    }
  }
  return out;
}

class DomainAction : public engine::Action {
 public:
  DomainAction(const Dependencies& d, ActionSpec spec) : deps_(d), spec_(std::move(spec)) {}
  const ActionSpec& spec() const override { return spec_; }

 protected:
  const Dependencies& deps_;
  ActionSpec spec_;
};

// Ends the association in every system with an `unlink` and in the ledger.
// Nothing to end anywhere: the request is rejected as not_associated. A
// second run recognises the ledger rows its first run ended.
class Unlink final : public DomainAction {
 public:
  explicit Unlink(const Dependencies& d) : DomainAction(d, {"systems.unlink", {}}) {}

  net::awaitable<ActionResult> run(const ActionContext& ctx) override {
    auto policies = deps_.policies.current();
    const Subject subject = subject_of(ctx);
    const std::string partner = text_at(ctx.context, {"request", "partner_id"});
    if (partner.empty()) co_return ActionResult::failure("systems.unlink needs a request with a partner", false);
    const std::string request_id = ctx.request_id;

    auto done_before = [&](soci::session& sql) {
      std::pair<long long, long long> out{0, 0};  // when, and how many rows
      soci::indicator ind = soci::i_null;
      sql << "SELECT MAX(ended_at), COUNT(*) FROM associations WHERE ended_by = :request",
          soci::use(request_id, "request"), soci::into(out.first, ind), soci::into(out.second);
      if (ind != soci::i_ok) out = {0, 0};
      return out;
    };
    // Only a step that ran before can have ended it: a first attempt (no
    // "started" of this step was ever committed) need not read the ledger.
    const bool ran_before = ctx.attempt > 1 || ctx.earlier != nullptr;
    if (ran_before) {
      if (auto [at, ended] = co_await run_in_db(deps_.db, done_before); at != 0) {
        // Every system was unlinked before the ledger was: what the earlier
        // attempts reported stays in the output (a receipt states it).
        json::object unlinked;
        for (const auto& [name, rows] : earlier_counts(ctx, "unlinked")) unlinked[name] = rows;
        co_return ActionResult::success(json::object{{"unlinked", std::move(unlinked)},
                                                     {"ledger", ended},
                                                     {"disassociated_at", format_rfc3339(at)},
                                                     {"repeated", true}});
      }
    }

    // What earlier attempts unlinked counts: a system that unlinked before
    // another failed reports 0 rows now, and the association it ended must
    // not make the request look not_associated.
    json::object unlinked;
    long long total = 0;
    for (const auto& [name, rows] : earlier_counts(ctx, "unlinked")) {
      unlinked[name] = rows;
      total += rows;
    }
    for (const auto& system : policies->systems) {
      if (!system.unlink) continue;
      Binds binds{subject.huawei_id, partner};
      const policy::Query query = *system.unlink;
      auto work = [query, binds](soci::session& sql) { return change_rows(sql, query, binds); };
      long long rows = 0;
      try {
        rows = co_await run_in_db(deps_.systems.of(system), work);
      } catch (const std::exception& e) {
        co_return ActionResult::failure("systems.unlink on " + system.name + ": " + describe_system_failure(e), true,
                                        json::object{{"unlinked", unlinked}});
      }
      const long long before = unlinked.contains(system.name) ? unlinked[system.name].as_int64() : 0;
      unlinked[system.name] = before + rows;
      total += rows;
    }
    const long long now = ctx.now;
    // When the ledger's association ended: now, or when an earlier run of
    // this step ended it.
    long long ended_at = now;
    auto end_in_ledger = [&](soci::session& sql) {
      ended_at = now;  // the work may run again (Database::with_session)
      soci::transaction tr(sql);
      long long n = 0;
      {
        Prepared end(sql, "UPDATE associations SET ended_at = :now, ended_by = :request"
                          " WHERE subject_id = :subject AND partner_id = :partner AND ended_at IS NULL");
        end.bind(soci::use(now, "now"), soci::use(request_id, "request"), soci::use(subject.id, "subject"),
                 soci::use(partner, "partner"));
        end.execute();
        n = end.affected_rows();
      }
      if (n == 0) {
        // Another attempt of this step (one given up on at its timeout,
        // or a holder that lost its claim) may have ended it meanwhile:
        // that is this request's disassociation, not "not associated".
        long long earlier = 0;
        soci::indicator earlier_ind = soci::i_null;
        sql << "SELECT COUNT(*), MAX(ended_at) FROM associations WHERE ended_by = :request",
            soci::use(request_id, "request"), soci::into(n), soci::into(earlier, earlier_ind);
        if (earlier_ind == soci::i_ok) ended_at = earlier;
      }
      tr.commit();
      return n;
    };
    long long ledger = co_await run_in_db(deps_.db, end_in_ledger);
    if (total + ledger == 0) {
      ActionResult r;
      r.kind = ActionResult::Kind::reject;
      r.reason = "not_associated";
      co_return r;
    }
    co_return ActionResult::success(json::object{
        {"unlinked", std::move(unlinked)}, {"ledger", ledger}, {"disassociated_at", format_rfc3339(ended_at)}});
  }
};

// What the request's partner still holds: every category disclosed to it,
// with the first and last disclosure, and the association's period.
class Holdings final : public engine::LocalAction {
 public:
  explicit Holdings(const Dependencies& d) : deps_(d) {}
  const ActionSpec& spec() const override { return spec_; }

  ActionResult run_local(soci::session& sql, const ActionContext& ctx) override {
    const Subject subject = subject_of(ctx);
    const std::string partner = text_at(ctx.context, {"request", "partner_id"});
    if (partner.empty()) return ActionResult::failure("ledger.holdings needs a request with a partner", false);
    json::array disclosed;
    json::array categories;
    {
      soci::row r;
      Prepared select(sql, "SELECT category, MIN(disclosed_at), MAX(disclosed_at) FROM disclosures"
                           " WHERE subject_id = :subject AND partner_id = :partner GROUP BY category ORDER BY category");
      select.bind(soci::use(subject.id, "subject"), soci::use(partner, "partner"), soci::into(r));
      for (bool got = select.execute(); got; got = select.fetch()) {
        categories.emplace_back(r.get<std::string>(0));
        disclosed.push_back(json::object{{"category", r.get<std::string>(0)},
                                         {"first_disclosed_at", format_rfc3339(row_integer(r, 1))},
                                         {"last_disclosed_at", format_rfc3339(row_integer(r, 2))}});
      }
    }
    long long from = 0;
    long long until = 0;
    soci::indicator from_ind = soci::i_null;
    soci::indicator until_ind = soci::i_null;
    Prepared associated(sql, "SELECT MIN(started_at), MAX(ended_at) FROM associations"
                       " WHERE subject_id = :subject AND partner_id = :partner");
    associated.bind(soci::use(subject.id, "subject"), soci::use(partner, "partner"), soci::into(from, from_ind),
              soci::into(until, until_ind));
    associated.execute();
    json::object out{{"partner_id", partner}, {"categories", std::move(categories)}, {"disclosed", std::move(disclosed)}};
    out["associated_from"] = from_ind == soci::i_ok ? json::value(format_rfc3339(from)) : json::value(nullptr);
    out["disassociated_at"] = until_ind == soci::i_ok ? json::value(format_rfc3339(until)) : json::value(nullptr);
    const auto policies = deps_.policies.current();  // held while the partner is read
    if (const auto* p = policies->partner(partner)) out["partner_name"] = p->name;
    return ActionResult::success(std::move(out));
  }

 private:
  const Dependencies& deps_;
  ActionSpec spec_{"ledger.holdings", {}};
};

// Reads every category in scope from every system that has it. The rows
// are personal data: they are sealed into request_data, and the step's
// output holds only counts.
class Collect final : public DomainAction {
 public:
  explicit Collect(const Dependencies& d) : DomainAction(d, {"systems.collect", {}}) {}

  net::awaitable<ActionResult> run(const ActionContext& ctx) override {
    auto policies = deps_.policies.current();
    const Subject subject = subject_of(ctx);
    const auto wanted = scope(ctx, *policies);
    json::object data;    // category → system → rows
    json::object counts;  // category → rows
    json::array read;     // {system, category, rows}: what the receipt states
    std::size_t bytes = 0;
    for (const auto& system : policies->systems) {
      for (const auto& [category, queries] : system.categories) {
        if (!queries.access || !in(wanted, category)) continue;
        const policy::Query query = *queries.access;
        Binds binds{subject.huawei_id, ""};
        auto work = [query, binds](soci::session& sql) { return read_rows(sql, query, binds); };
        json::array rows;
        try {
          rows = co_await run_in_db(deps_.systems.of(system), work);
        } catch (const std::exception& e) {
          co_return ActionResult::failure("systems.collect on " + system.name + ": " + describe_system_failure(e), true);
        }
        bytes += json::serialize(rows).size();
        if (bytes > kMaxBytes) co_return ActionResult::failure("collected data exceeds 16MiB", false);
        auto& per_category = data[category];
        if (!per_category.is_object()) per_category = json::object{};
        counts[category] = (counts.contains(category) ? counts[category].as_int64() : 0) +
                           static_cast<std::int64_t>(rows.size());
        read.push_back(json::object{{"system", system.name}, {"category", category},
                                    {"rows", static_cast<std::int64_t>(rows.size())}});
        per_category.as_object()[system.name] = std::move(rows);
      }
    }
    std::string sealed = deps_.keys.seal_for(engine::subject_key(ctx), json::serialize(data), "request_data.data");
    const std::string request_id = ctx.request_id;
    const std::string step_id = ctx.step.id;
    const long long now = ctx.now;
    auto store = [&](soci::session& sql) {
      sql << "INSERT INTO request_data(request_id, step_id, data_enc, created_at) VALUES (:r, :s, :d, :t)"
             " ON CONFLICT (request_id, step_id) DO UPDATE SET data_enc = excluded.data_enc, created_at = excluded.created_at",
          soci::use(request_id, "r"), soci::use(step_id, "s"), soci::use(sealed, "d"), soci::use(now, "t");
    };
    co_await run_in_db(deps_.db, store);
    co_return ActionResult::success(json::object{{"rows", std::move(counts)}, {"read", std::move(read)}});
  }
};

// The access package: what was collected, grouped by category and system,
// with each category's description and the partners it was disclosed to
// and when. Sealed into exports; the admin API hands it out.
class Export final : public DomainAction {
 public:
  explicit Export(const Dependencies& d) : DomainAction(d, {"export.package", {}}) {}

  net::awaitable<ActionResult> run(const ActionContext& ctx) override {
    auto policies = deps_.policies.current();
    const Subject subject = subject_of(ctx);
    const std::string request_id = ctx.request_id;
    struct Loaded {
      std::vector<std::string> sealed;
      json::array recipients;
    };
    auto load = [&](soci::session& sql) {
      Loaded l;
      soci::transaction tr(sql);  // both reads (and their statements' release) in one transaction
      {
        {
          soci::rowset<soci::row> rows =
              (sql.prepare << "SELECT data_enc FROM request_data WHERE request_id = :r ORDER BY step_id",
               soci::use(request_id, "r"));
          for (const auto& r : rows) l.sealed.push_back(r.get<std::string>(0));
        }
        soci::rowset<soci::row> disclosures =
            (sql.prepare << "SELECT partner_id, category, MIN(disclosed_at), MAX(disclosed_at) FROM disclosures"
                            " WHERE subject_id = :s GROUP BY partner_id, category ORDER BY partner_id, category",
             soci::use(subject.id, "s"));
        for (const auto& r : disclosures) {
          l.recipients.push_back(json::object{{"partner_id", r.get<std::string>(0)},
                                              {"category", r.get<std::string>(1)},
                                              {"first_disclosed_at", format_rfc3339(row_integer(r, 2))},
                                              {"last_disclosed_at", format_rfc3339(row_integer(r, 3))}});
        }
      }
      tr.commit();
      return l;
    };
    Loaded loaded = co_await run_in_db(deps_.db, load);
    json::object categories;
    for (const auto& sealed : loaded.sealed) {
      auto plain = deps_.keys.open(sealed, "request_data.data");
      if (!plain) co_return ActionResult::failure("collected data cannot be decrypted with the configured keys", false);
      json::value collected = json::parse(*plain);  // a named value: range-for must not iterate a temporary
      for (auto& [category, systems] : collected.as_object()) {
        auto& entry = categories[category];
        if (!entry.is_object()) {
          auto it = policies->categories.find(std::string(category));
          entry = json::object{{"description", it != policies->categories.end() ? it->second.description : ""},
                               {"systems", json::object{}}};
        }
        for (auto& [system, rows] : systems.as_object()) entry.as_object()["systems"].as_object()[system] = rows;
      }
    }
    json::array recipients;
    for (auto& r : loaded.recipients) {
      auto& o = r.as_object();
      if (const auto* p = policies->partner(std::string(o["partner_id"].as_string()))) o["partner_name"] = p->name;
      recipients.push_back(std::move(r));
    }
    json::object package{{"format", "privacyd.access-package/1"},
                         {"request_id", request_id},
                         {"generated_at", format_rfc3339(ctx.now)},
                         {"subject", json::object{{"huawei_id", subject.huawei_id}}},
                         {"categories", std::move(categories)},
                         {"disclosed_to", std::move(recipients)}};
    std::string text = json::serialize(package);
    const std::string key = engine::subject_key(ctx);
    std::string sealed = deps_.keys.seal_for(key, text, "exports.package");
    // The person's link (SPEC §13.2): only the token's digest is looked up
    // by. The token itself travels sealed in this step's output to the
    // mail and the callback that carry it; whoever could open it could open
    // the package itself.
    const std::string token = crypto::new_link_token();
    const std::string digest = crypto::token_digest(token);
    const long long now = ctx.now;
    const long long expires = now + std::chrono::duration_cast<std::chrono::milliseconds>(deps_.package_ttl).count();
    const long long bytes = static_cast<long long>(text.size());
    // A run that does not commit (it lost its lease, or the process died)
    // leaves a link nobody was given; the one that commits reaches the mail.
    auto store = [&](soci::session& sql) {
      soci::transaction tr(sql);
      sql << "INSERT INTO exports(request_id, package_enc, bytes, created_at, expires_at, downloads)"
             " VALUES (:r, :p, :b, :t, :expires, 0)"
             " ON CONFLICT (request_id) DO UPDATE SET package_enc = excluded.package_enc, bytes = excluded.bytes,"
             " created_at = excluded.created_at, expires_at = excluded.expires_at, erased_at = NULL",
          soci::use(request_id, "r"), soci::use(sealed, "p"), soci::use(bytes, "b"), soci::use(now, "t"),
          soci::use(expires, "expires");
      sql << "INSERT INTO package_links(token_sha256, request_id, created_at) VALUES (:d, :r, :t)",
          soci::use(digest, "d"), soci::use(request_id, "r"), soci::use(now, "t");
      tr.commit();
    };
    co_await run_in_db(deps_.db, store);
    co_return ActionResult::success(json::object{
        {"bytes", bytes},
        {"categories", package["categories"].as_object().size()},
        {"download", json::object{{"token_sealed", deps_.keys.seal_for(key, token, "exports.token")},
                                  {"expires_at", format_rfc3339(expires)}}}});
  }
};

// Erases every category in scope from every system that has an erase
// query, except categories under a retention hold: those are recorded
// with the reason and the day the hold ends, and erased on that day.
class Erase final : public DomainAction {
 public:
  explicit Erase(const Dependencies& d) : DomainAction(d, {"systems.erase", {}}) {}

  net::awaitable<ActionResult> run(const ActionContext& ctx) override {
    auto policies = deps_.policies.current();
    const Subject subject = subject_of(ctx);
    const auto wanted = scope(ctx, *policies);
    json::array erased;
    json::array retained;
    // Rows erased by earlier attempts count: the person is told of every
    // category erased, not only of those the last attempt found rows in.
    auto before = earlier_counts(ctx, "erased");
    // Earlier attempts' rows in places this attempt has not reached (or,
    // the policies having changed, will not reach) still count.
    auto so_far = [&] {
      for (const auto& [key, n] : before) {
        auto slash = key.find('/');
        erased.push_back(json::object{{"system", key.substr(0, slash)}, {"category", key.substr(slash + 1)},
                                      {"rows", n}});
      }
      before.clear();
      return json::object{{"erased", erased}, {"retained", retained}};
    };
    for (const auto& system : policies->systems) {
      for (const auto& [category, queries] : system.categories) {
        if (!queries.erase || !in(wanted, category)) continue;
        if (const auto* hold = policies->hold_for(category)) {
          const long long until = ctx.now + std::chrono::duration_cast<std::chrono::milliseconds>(hold->hold).count();
          const std::string request_id = ctx.request_id;
          const std::string system_name = system.name;
          const std::string cat = category;
          const std::string reason = hold->reason;
          auto record = [&](soci::session& sql) {
            long long stored_until = until;
            sql << "INSERT INTO retention_holds(request_id, subject_id, system, category, reason, until_at, status)"
                   " VALUES (:r, :s, :sys, :c, :reason, :until, 'held') ON CONFLICT DO NOTHING",
                soci::use(request_id, "r"), soci::use(subject.id, "s"), soci::use(system_name, "sys"),
                soci::use(cat, "c"), soci::use(reason, "reason"), soci::use(until, "until");
            sql << "SELECT until_at FROM retention_holds WHERE request_id = :r AND system = :sys AND category = :c",
                soci::use(request_id, "r"), soci::use(system_name, "sys"), soci::use(cat, "c"),
                soci::into(stored_until);
            return stored_until;
          };
          long long held_until = co_await run_in_db(deps_.db, record);
          retained.push_back(json::object{{"system", system.name},
                                          {"category", category},
                                          {"reason", hold->reason},
                                          {"until", format_rfc3339(held_until)}});
          continue;
        }
        const policy::Query query = *queries.erase;
        Binds binds{subject.huawei_id, ""};
        auto work = [query, binds](soci::session& sql) { return change_rows(sql, query, binds); };
        long long rows = 0;
        try {
          rows = co_await run_in_db(deps_.systems.of(system), work);
        } catch (const std::exception& e) {
          co_return ActionResult::failure("systems.erase on " + system.name + ": " + describe_system_failure(e), true,
                                          so_far());
        }
        if (auto it = before.find(system.name + "/" + category); it != before.end()) {
          rows += it->second;
          before.erase(it);
        }
        erased.push_back(json::object{{"system", system.name}, {"category", category}, {"rows", rows}});
      }
    }
    co_return ActionResult::success(so_far());
  }
};

}  // namespace

engine::ActionCatalog domain_action_specs() {
  return {{"systems.unlink", {}}, {"ledger.holdings", {}}, {"systems.collect", {}}, {"export.package", {}},
          {"systems.erase", {}}};
}

void add_domain_actions(engine::ActionRegistry& registry, const Dependencies& deps) {
  registry.add(std::make_unique<Unlink>(deps));
  registry.add(std::make_unique<Holdings>(deps));
  registry.add(std::make_unique<Collect>(deps));
  registry.add(std::make_unique<Export>(deps));
  registry.add(std::make_unique<Erase>(deps));
}

}  // namespace privacyd::actions
