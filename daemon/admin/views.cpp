#include "daemon/admin/views.hpp"

#include <boost/json.hpp>
#include <soci/soci.h>

#include "daemon/audit/audit.hpp"
#include "daemon/store/row_json.hpp"

namespace privacyd::admin {

namespace json = boost::json;

namespace {

constexpr std::int64_t kDay = 24LL * 3600 * 1000;

bool is_open(std::string_view status) { return status != "completed" && status != "rejected"; }

// The columns every request view starts with, in this order.
constexpr const char* kRequestColumns =
    "id, type, status, reason, partner_id, jurisdiction, received_at, deadline_at, extended_at, extension_reason,"
    " workflow_name, workflow_version, updated_at";

json::object request_summary(const soci::row& r, UnixMillis now) {
  const std::string status = r.get<std::string>(2);
  const UnixMillis deadline = row_integer(r, 7);
  json::object o{{"id", r.get<std::string>(0)},
                 {"type", r.get<std::string>(1)},
                 {"status", status},
                 {"reason", text_or_null(r, 3)},
                 {"partner_id", text_or_null(r, 4)},
                 {"jurisdiction", r.get<std::string>(5)},
                 {"received_at", format_rfc3339(row_integer(r, 6))},
                 {"deadline", format_rfc3339(deadline)},
                 {"updated_at", format_rfc3339(row_integer(r, 12))}};
  // A finished request has no time left to count.
  o["days_left"] = is_open(status) ? json::value(days_left(deadline, now)) : json::value(nullptr);
  o["overdue"] = is_open(status) && now > deadline;
  if (r.get_indicator(8) != soci::i_null) {
    o["extended"] = json::object{{"at", format_rfc3339(row_integer(r, 8))}, {"reason", text_or_null(r, 9)}};
  } else {
    o["extended"] = nullptr;
  }
  if (r.get_indicator(10) != soci::i_null) {
    o["workflow"] = json::object{{"name", r.get<std::string>(10)}, {"version", row_integer(r, 11)}};
  } else {
    o["workflow"] = nullptr;
  }
  return o;
}

// The columns every notice view reads, in this order.
constexpr const char* kNoticeColumns =
    "id, request_id, channel, recipient, template, status, attempts, last_error, created_at, delivered_at,"
    " next_attempt_at, ack_outcome, ack_note_enc, ack_by, acknowledged_at, ack_due_at, reminders_sent, reminder_of";

// A partner notice's acknowledgement (SPEC §13.3): who answered what and
// when, by when it was due, and whether it is overdue. The partner's note
// is sealed at rest and opened here for the operator.
void add_acknowledgement(json::object& o, const soci::row& r, UnixMillis now, const crypto::KeyRing& keys) {
  const bool asks = r.get<std::string>(2) == "partner" && r.get_indicator(17) == soci::i_null;
  const bool answered = r.get_indicator(11) != soci::i_null;
  if (answered) {
    json::value note = nullptr;
    if (r.get_indicator(12) != soci::i_null) {
      if (auto opened = keys.open(r.get<std::string>(12), "notices.ack_note")) note = json::value(*opened);
    }
    o["acknowledgement"] = json::object{{"outcome", r.get<std::string>(11)},
                                        {"note", std::move(note)},
                                        {"by", text_or_null(r, 13)},
                                        {"at", time_or_null(r, 14)}};
  } else {
    o["acknowledgement"] = nullptr;
  }
  const bool due = r.get_indicator(15) != soci::i_null;
  o["acknowledge_by"] = asks && due ? time_or_null(r, 15) : json::value(nullptr);
  o["overdue"] = asks && due && !answered && row_integer(r, 15) < now;
  o["reminders_sent"] = row_integer(r, 16);
  o["reminder_of"] = text_or_null(r, 17);
}

json::object notice_summary(const soci::row& r, UnixMillis now, const crypto::KeyRing& keys) {
  const std::string status = r.get<std::string>(5);
  json::object o{{"id", r.get<std::string>(0)},
                      {"request_id", r.get<std::string>(1)},
                      {"channel", r.get<std::string>(2)},
                      {"recipient", r.get<std::string>(3)},
                      {"template", r.get<std::string>(4)},
                      {"status", status},
                      {"attempts", row_integer(r, 6)},
                      {"last_error", text_or_null(r, 7)},
                      {"created_at", time_or_null(r, 8)},
                      {"delivered_at", time_or_null(r, 9)},
                      {"next_attempt_at", status == "pending" ? time_or_null(r, 10) : nullptr}};
  add_acknowledgement(o, r, now, keys);
  return o;
}

// {KEY: [up to `limit` summaries], "next_cursor": the last id shown, or
// null when the query (which asks for one row more) found no more.
template <class Summary>
json::value page(soci::rowset<soci::row>& rows, int limit, std::string_view key, Summary summary) {
  json::array out;
  json::value next = nullptr;
  for (const auto& r : rows) {
    if (static_cast<int>(out.size()) == limit) {
      next = out.back().at("id");
      break;
    }
    out.push_back(summary(r));
  }
  return json::object{{key, std::move(out)}, {"next_cursor", std::move(next)}};
}

}  // namespace

std::int64_t days_left(UnixMillis deadline, UnixMillis now) {
  std::int64_t diff = deadline - now;
  return diff >= 0 ? diff / kDay : -((-diff + kDay - 1) / kDay);
}

json::value list_requests(soci::session& sql, const RequestFilter& f, UnixMillis now) {
  const int fetch = f.limit + 1;  // one more says whether there is a next page
  soci::rowset<soci::row> rows =
      (sql.prepare << std::string("SELECT ") + kRequestColumns +
                          " FROM requests WHERE (:status = '' OR status = :status2) AND (:type = '' OR type = :type2)"
                          " AND (:cursor = '' OR id < :cursor2) ORDER BY id DESC LIMIT :n",
       soci::use(f.status, "status"), soci::use(f.status, "status2"), soci::use(f.type, "type"),
       soci::use(f.type, "type2"), soci::use(f.cursor, "cursor"), soci::use(f.cursor, "cursor2"),
       soci::use(fetch, "n"));
  return page(rows, f.limit, "requests", [now](const soci::row& r) { return request_summary(r, now); });
}

std::optional<json::value> show_request(soci::session& sql, const std::string& id, UnixMillis now,
                                        const crypto::KeyRing& keys) {
  std::optional<json::object> request;
  {
    soci::rowset<soci::row> rows =
        (sql.prepare << std::string("SELECT ") + kRequestColumns + ", categories, next_step FROM requests WHERE id = :id",
         soci::use(id, "id"));
    for (const auto& r : rows) {
      auto o = request_summary(r, now);
      boost::system::error_code ec;
      auto categories = json::parse(r.get<std::string>(13), ec);
      o["categories"] = ec ? json::value(json::array{}) : std::move(categories);
      o["next_step"] = row_integer(r, 14);
      request = std::move(o);
    }
  }
  if (!request) return std::nullopt;
  json::array steps;
  {
    soci::rowset<soci::row> rows =
        (sql.prepare << "SELECT idx, step_id, action, status, attempts, error, started_at, finished_at, wake_at"
                        " FROM request_steps WHERE request_id = :id ORDER BY idx",
         soci::use(id, "id"));
    for (const auto& r : rows) {
      steps.push_back(json::object{{"index", row_integer(r, 0)},
                                   {"id", r.get<std::string>(1)},
                                   {"action", r.get<std::string>(2)},
                                   {"status", r.get<std::string>(3)},
                                   {"attempts", row_integer(r, 4)},
                                   {"error", text_or_null(r, 5)},
                                   {"started_at", time_or_null(r, 6)},
                                   {"finished_at", time_or_null(r, 7)},
                                   {"wake_at", time_or_null(r, 8)}});
    }
  }
  json::array notices;
  {
    soci::rowset<soci::row> rows =
        (sql.prepare << std::string("SELECT ") + kNoticeColumns + " FROM notices WHERE request_id = :id ORDER BY id",
         soci::use(id, "id"));
    for (const auto& r : rows) notices.push_back(notice_summary(r, now, keys));
  }
  (*request)["steps"] = std::move(steps);
  (*request)["notices"] = std::move(notices);
  return json::value(std::move(*request));
}

std::optional<json::value> show_notice(soci::session& sql, const std::string& id, UnixMillis now,
                                       const crypto::KeyRing& keys) {
  soci::rowset<soci::row> rows =
      (sql.prepare << std::string("SELECT ") + kNoticeColumns + " FROM notices WHERE id = :id", soci::use(id, "id"));
  for (const auto& r : rows) return json::value(notice_summary(r, now, keys));
  return std::nullopt;
}

json::value list_notices(soci::session& sql, const NoticeFilter& f, UnixMillis at, const crypto::KeyRing& keys) {
  const int fetch = f.limit + 1;
  const long long now = at;
  // Fixed fragments only: nothing the caller sent is spliced into SQL.
  std::string where = " WHERE (:status = '' OR status = :status2) AND (:cursor = '' OR id < :cursor2)";
  constexpr const char* kAsks = " AND channel = 'partner' AND reminder_of IS NULL AND ack_due_at IS NOT NULL";
  if (f.acknowledged == "false") where += std::string(kAsks) + " AND ack_outcome IS NULL";
  if (f.acknowledged == "true") where += " AND ack_outcome IS NOT NULL";
  if (f.overdue == "true") where += std::string(kAsks) + " AND ack_outcome IS NULL AND ack_due_at < :now";
  if (f.overdue == "false") where += " AND NOT (ack_outcome IS NULL AND ack_due_at IS NOT NULL AND ack_due_at < :now)";
  soci::rowset<soci::row> rows =
      f.overdue.empty()
          ? (sql.prepare << std::string("SELECT ") + kNoticeColumns + " FROM notices" + where +
                                " ORDER BY id DESC LIMIT :n",
             soci::use(f.status, "status"), soci::use(f.status, "status2"), soci::use(f.cursor, "cursor"),
             soci::use(f.cursor, "cursor2"), soci::use(fetch, "n"))
          : (sql.prepare << std::string("SELECT ") + kNoticeColumns + " FROM notices" + where +
                                " ORDER BY id DESC LIMIT :n",
             soci::use(f.status, "status"), soci::use(f.status, "status2"), soci::use(f.cursor, "cursor"),
             soci::use(f.cursor, "cursor2"), soci::use(now, "now"), soci::use(fetch, "n"));
  return page(rows, f.limit, "notices", [at, &keys](const soci::row& r) { return notice_summary(r, at, keys); });
}

json::value overview(soci::session& sql, UnixMillis at) {
  const long long now = at;
  const long long week = at + 7 * kDay;
  json::object requests;
  for (const auto& type : request_types()) {
    requests[type] = json::object{{"open", 0}, {"due_within_7_days", 0}, {"overdue", 0}};
  }
  // Each count through an index: open requests by status, dead notices by
  // status, awaited acknowledgements by their due time.
  soci::rowset<soci::row> rows =
      (sql.prepare << "SELECT type, COUNT(*),"
                      " SUM(CASE WHEN deadline_at >= :now AND deadline_at <= :week THEN 1 ELSE 0 END),"
                      " SUM(CASE WHEN deadline_at < :now2 THEN 1 ELSE 0 END)"
                      " FROM requests WHERE status IN ('received', 'running', 'awaiting_approval', 'failed')"
                      " GROUP BY type",
       soci::use(now, "now"), soci::use(week, "week"), soci::use(now, "now2"));
  for (const auto& r : rows) {
    const std::string type = r.get<std::string>(0);
    if (!requests.contains(type)) continue;
    requests[type] = json::object{{"open", row_integer(r, 1)},
                                  {"due_within_7_days", r.get_indicator(2) == soci::i_null ? 0 : row_integer(r, 2)},
                                  {"overdue", r.get_indicator(3) == soci::i_null ? 0 : row_integer(r, 3)}};
  }
  long long dead = 0, awaiting = 0, overdue_acks = 0;
  sql << "SELECT COUNT(*) FROM notices WHERE status = 'dead'", soci::into(dead);
  soci::rowset<soci::row> acks =
      (sql.prepare << "SELECT COUNT(*), SUM(CASE WHEN ack_due_at < :now THEN 1 ELSE 0 END) FROM notices"
                      " WHERE ack_due_at IS NOT NULL AND ack_outcome IS NULL AND channel = 'partner'"
                      " AND reminder_of IS NULL",
       soci::use(now, "now"));
  for (const auto& r : acks) {
    awaiting = row_integer(r, 0);
    if (r.get_indicator(1) != soci::i_null) overdue_acks = row_integer(r, 1);
  }
  return json::object{{"requests", std::move(requests)},
                      {"notices", json::object{{"dead", dead},
                                               {"awaiting_acknowledgement", awaiting},
                                               {"acknowledgement_overdue", overdue_acks}}}};
}

std::optional<json::value> request_audit(soci::session& sql, const std::string& id) {
  if (request_status(sql, id).empty()) return std::nullopt;
  json::array entries;
  soci::rowset<soci::row> rows =
      (sql.prepare << "SELECT seq, at, event, detail FROM audit_log WHERE request_id = :id ORDER BY seq",
       soci::use(id, "id"));
  for (const auto& r : rows) {
    json::value detail;
    try {
      detail = json::parse(r.get<std::string>(3));
    } catch (const std::exception&) {
      detail = nullptr;  // never expected: every detail is written as JSON
    }
    entries.push_back(json::object{{"seq", row_integer(r, 0)},
                                   {"at", format_rfc3339(row_integer(r, 1))},
                                   {"event", r.get<std::string>(2)},
                                   {"detail", std::move(detail)}});
  }
  return json::value(json::object{{"request_id", id}, {"entries", std::move(entries)}});
}

std::string request_status(soci::session& sql, const std::string& id) {
  std::string status;
  sql << "SELECT status FROM requests WHERE id = :id", soci::use(id, "id"), soci::into(status);
  return sql.got_data() ? status : std::string();
}

std::optional<Deadline> request_deadline(soci::session& sql, const std::string& id) {
  Deadline d;
  long long at = 0;
  sql << "SELECT jurisdiction, deadline_at FROM requests WHERE id = :id", soci::use(id, "id"),
      soci::into(d.jurisdiction), soci::into(at);
  if (!sql.got_data()) return std::nullopt;
  d.at = at;
  return d;
}

std::string take_export(soci::session& sql, const std::string& id, const std::string& who, UnixMillis at) {
  std::string sealed;
  soci::indicator ind = soci::i_null;
  sql << "SELECT package_enc FROM exports WHERE request_id = :id", soci::use(id, "id"), soci::into(sealed, ind);
  if (!sql.got_data() || ind != soci::i_ok) return std::string();
  if (sealed.empty()) return std::string("erased");  // expired, and erased by the follow-up loop
  soci::transaction tr(sql);
  audit::append(sql, at, id, "export.downloaded", json::serialize(json::object{{"by", who}}));
  tr.commit();
  return sealed;
}

}  // namespace privacyd::admin
