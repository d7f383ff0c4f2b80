#include "daemon/store/receipts.hpp"

#include <boost/json.hpp>
#include <soci/soci.h>

#include "daemon/store/row_json.hpp"

namespace privacyd::receipts {

namespace json = boost::json;

namespace {

const json::value* member(const json::value& v, const char* key) {
  return v.is_object() ? v.get_object().if_contains(key) : nullptr;
}

// What a step's output says it did outside privacyd, per system and
// category: the statement kind and the rows it affected.
void effects_of(const std::string& step, const std::string& action, const json::value& output, json::array& out) {
  auto add = [&](json::value system, json::value category, const char* statement, std::int64_t rows) {
    out.push_back(json::object{{"step", step}, {"system", std::move(system)}, {"category", std::move(category)},
                               {"statement", statement}, {"rows", rows}});
  };
  auto rows_of = [](const json::value* v) { return v != nullptr && v->is_int64() ? v->get_int64() : 0; };
  if (action == "systems.unlink") {
    if (const auto* unlinked = member(output, "unlinked"); unlinked && unlinked->is_object()) {
      for (const auto& [system, rows] : unlinked->get_object()) add(json::string(system), nullptr, "unlink", rows_of(&rows));
    }
    if (const auto* ledger = member(output, "ledger")) add("privacyd", "associations", "unlink", rows_of(ledger));
  } else if (action == "systems.erase" || action == "systems.collect") {
    const char* kind = action == "systems.erase" ? "erase" : "access";
    const auto* list = member(output, action == "systems.erase" ? "erased" : "read");
    if (list != nullptr && list->is_array()) {
      for (const auto& e : list->get_array()) {
        const auto* system = member(e, "system");
        const auto* category = member(e, "category");
        add(system ? *system : json::value(nullptr), category ? *category : json::value(nullptr), kind,
            rows_of(member(e, "rows")));
      }
    } else if (const auto* counts = member(output, "rows"); counts && counts->is_object()) {
      for (const auto& [category, rows] : counts->get_object()) add(nullptr, json::string(category), kind, rows_of(&rows));
    }
  }
}

}  // namespace

std::optional<Facts> facts(soci::session& sql, const std::string& id, UnixMillis now) {
  Facts f;
  json::object request;
  std::string subject_id;
  {
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT id, type, status, reason, jurisdiction, partner_id, received_at, deadline_at,"
                        " updated_at, workflow_name, workflow_version, subject_id FROM requests WHERE id = :id",
         soci::use(id, "id"));
    bool found = false;
    for (const auto& r : rows) {
      found = true;
      const std::string status = r.get<std::string>(2);
      // Final: a failed request can be retried, and then ends otherwise.
      f.finished = status == "completed" || status == "rejected";
      request = json::object{{"id", r.get<std::string>(0)},
                             {"type", r.get<std::string>(1)},
                             {"status", status},
                             {"reason", text_or_null(r, 3)},
                             {"jurisdiction", r.get<std::string>(4)},
                             {"partner_id", text_or_null(r, 5)},
                             {"received_at", time_or_null(r, 6)},
                             {"deadline", time_or_null(r, 7)},
                             {"finished_at", f.finished ? time_or_null(r, 8) : json::value(nullptr)}};
      request["workflow"] = r.get_indicator(9) == soci::i_null
                                ? json::value(nullptr)
                                : json::value(json::object{{"name", r.get<std::string>(9)}, {"version", row_integer(r, 10)}});
      subject_id = r.get<std::string>(11);
    }
    if (!found) return std::nullopt;
  }
  json::array steps;
  json::array effects;
  {
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT idx, step_id, action, status, attempts, finished_at, output FROM request_steps"
                        " WHERE request_id = :id ORDER BY idx",
         soci::use(id, "id"));
    for (const auto& r : rows) {
      const std::string step = r.get<std::string>(1);
      const std::string action = r.get<std::string>(2);
      steps.push_back(json::object{{"index", row_integer(r, 0)}, {"id", step}, {"action", action},
                                   {"status", r.get<std::string>(3)}, {"attempts", row_integer(r, 4)},
                                   {"finished_at", time_or_null(r, 5)}});
      if (r.get_indicator(6) == soci::i_null) continue;
      boost::system::error_code ec;
      json::value output = json::parse(r.get<std::string>(6), ec);
      if (!ec) effects_of(step, action, output, effects);
    }
  }
  json::array holds;
  {
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT system, category, reason, until_at, status, erased_at FROM retention_holds"
                        " WHERE request_id = :id ORDER BY system, category",
         soci::use(id, "id"));
    for (const auto& r : rows) {
      holds.push_back(json::object{{"system", r.get<std::string>(0)}, {"category", r.get<std::string>(1)},
                                   {"reason", r.get<std::string>(2)}, {"until", time_or_null(r, 3)},
                                   {"status", r.get<std::string>(4)}, {"erased_at", time_or_null(r, 5)}});
    }
  }
  json::array notices;
  {
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT id, channel, recipient, template, status, created_at, delivered_at, acknowledged_at,"
                        " ack_outcome FROM notices WHERE request_id = :id ORDER BY created_at, id",
         soci::use(id, "id"));
    for (const auto& r : rows) {
      notices.push_back(json::object{{"id", r.get<std::string>(0)}, {"channel", r.get<std::string>(1)},
                                     {"recipient", r.get<std::string>(2)}, {"template", r.get<std::string>(3)},
                                     {"status", r.get<std::string>(4)}, {"queued_at", time_or_null(r, 5)},
                                     {"delivered_at", time_or_null(r, 6)}, {"acknowledged_at", time_or_null(r, 7)},
                                     {"acknowledgement", text_or_null(r, 8)}});
    }
  }
  // The chain's head first, and only entries up to it: an entry appended
  // meanwhile (a delivery, an acknowledgement) is not left out of a head
  // that covers it.
  long long head_seq = 0;
  std::string head_hash;
  sql << "SELECT seq, hash FROM audit_head WHERE id = 1", soci::into(head_seq), soci::into(head_hash);
  json::array entries;
  long long first_seq = 0;
  {
    soci::rowset<soci::row> rows = (sql.prepare << "SELECT seq, event, hash FROM audit_log WHERE request_id = :id"
                                                   " AND seq <= :head ORDER BY seq",
                                    soci::use(id, "id"), soci::use(head_seq, "head"));
    for (const auto& r : rows) {
      if (first_seq == 0) first_seq = row_integer(r, 0);
      entries.push_back(json::object{{"seq", row_integer(r, 0)}, {"event", r.get<std::string>(1)},
                                     {"hash", r.get<std::string>(2)}});
    }
  }
  // privacyd's own copies of the subject's data: shredded (the first
  // shredding of this subject after this request arrived, from the audit
  // chain: a subject row is reused by a later association), or due.
  json::object own{{"shredding_pending", false}, {"shredded", false}, {"shredded_at", nullptr}};
  {
    std::string escaped;  // LIKE's wildcards in an id stand for themselves
    for (char c : subject_id) {
      if (c == '_' || c == '%' || c == '!') escaped += '!';
      escaped += c;
    }
    const std::string pattern = "%\"subject_id\":\"" + escaped + "\"%";
    long long at = 0;
    soci::indicator at_ind = soci::i_null;
    sql << "SELECT MIN(at) FROM audit_log WHERE request_id = '' AND event = 'subject.shredded' AND seq > :first"
           " AND seq <= :head AND detail LIKE :pattern ESCAPE '!'",
        soci::use(first_seq, "first"), soci::use(head_seq, "head"), soci::use(pattern, "pattern"),
        soci::into(at, at_ind);
    if (at_ind == soci::i_ok) {
      own["shredded"] = true;
      own["shredded_at"] = format_rfc3339(at);
    } else {
      soci::indicator due_ind = soci::i_null;
      long long due = 0;
      sql << "SELECT shred_after FROM subjects WHERE id = :s", soci::use(subject_id, "s"), soci::into(due, due_ind);
      own["shredding_pending"] = sql.got_data() && due_ind == soci::i_ok;
    }
  }
  f.receipt = json::object{{"format", "privacyd.receipt/1"},
                           {"request", std::move(request)},
                           {"steps", std::move(steps)},
                           {"effects", std::move(effects)},
                           {"holds", std::move(holds)},
                           {"notices", std::move(notices)},
                           {"own_copies", std::move(own)},
                           {"audit", json::object{{"entries", std::move(entries)},
                                                  {"chain_head", json::object{{"seq", head_seq}, {"hash", head_hash}}}}},
                           {"signed_at", format_rfc3339(now)}};
  return f;
}

}  // namespace privacyd::receipts
