#pragma once
// What the admin API shows: requests, their steps and notices, as JSON.
// Ids, types, statuses, times and error texts only — never the subject's
// identifiers or contact details, which stay sealed.

#include <boost/json/value.hpp>
#include <optional>
#include <string>
#include <vector>

#include "daemon/base/time.hpp"
#include "daemon/crypto/keyring.hpp"

namespace soci {
class session;
}

namespace privacyd::admin {

inline const std::vector<std::string>& request_statuses() {
  static const std::vector<std::string> all = {"received", "running", "awaiting_approval", "completed", "rejected",
                                               "failed"};
  return all;
}
inline const std::vector<std::string>& request_types() {
  static const std::vector<std::string> all = {"access", "deletion", "disassociation"};
  return all;
}
inline const std::vector<std::string>& notice_statuses() {
  static const std::vector<std::string> all = {"pending", "delivered", "dead"};
  return all;
}

struct RequestFilter {
  std::string status;  // "" = any
  std::string type;    // "" = any
  std::string cursor;  // "" = from the newest; else the last id of the previous page
  int limit = 50;
};

// {"requests": [...], "next_cursor": "req_…" | null}, newest first.
boost::json::value list_requests(soci::session& sql, const RequestFilter& filter, UnixMillis now);

// The request with its deadline, workflow, steps and notices; nullopt when
// there is no such request.
std::optional<boost::json::value> show_request(soci::session& sql, const std::string& id, UnixMillis now,
                                               const crypto::KeyRing& keys);

struct NoticeFilter {
  std::string status;
  std::string acknowledged;  // "", "true" or "false" (partner notices that ask for one)
  std::string overdue;       // "", "true" or "false"
  std::string cursor;  // the last notice id of the previous page
  int limit = 50;
};
// {"notices": [...], "next_cursor": "ntc_…" | null}, newest first.
boost::json::value list_notices(soci::session& sql, const NoticeFilter& filter, UnixMillis now,
                               const crypto::KeyRing& keys);

// One notice as the list shows it; nullopt when there is none.
std::optional<boost::json::value> show_notice(soci::session& sql, const std::string& id, UnixMillis now,
                                              const crypto::KeyRing& keys);

// The console's overview: per request type, how many are open, due within
// seven days and overdue; notices dead, and partner notices that await an
// acknowledgement (and of those, how many are overdue).
boost::json::value overview(soci::session& sql, UnixMillis now);

// The request's audit entries, oldest first (ids, events and details: no
// personal data is ever audited); nullopt when there is no such request.
std::optional<boost::json::value> request_audit(soci::session& sql, const std::string& id);

// The request's status; "" when there is no such request.
std::string request_status(soci::session& sql, const std::string& id);

struct Deadline {
  std::string jurisdiction;
  UnixMillis at = 0;
};
std::optional<Deadline> request_deadline(soci::session& sql, const std::string& id);

// The request's access package, sealed, with the download audited under
// `who` in the same transaction: "" when it has none, "erased" once expired.
std::string take_export(soci::session& sql, const std::string& id, const std::string& who, UnixMillis now);

// Whole days from `now` to `deadline`, rounded down (negative once overdue).
std::int64_t days_left(UnixMillis deadline, UnixMillis now);

}  // namespace privacyd::admin
