#pragma once
// What one accepted webhook writes, in the caller's transaction: the
// delivery (for idempotency), the subject (encrypted, found by its blind
// index), and then the event with its ledger rows, or the request.
// Everything personal arrives here already sealed.

#include <optional>
#include <string>
#include <vector>

#include "daemon/base/time.hpp"

namespace soci {
class session;
}

namespace privacyd {

struct IntakeWrite {
  // The delivery and the answer to give for it, now and on every repeat.
  std::string webhook_id;
  std::string body_sha256;
  int status = 202;
  std::string response;
  UnixMillis received_at = 0;

  // The subject, sealed.
  std::string new_subject_id;  // used only if the subject is new
  std::string huawei_index;
  std::string huawei_id_enc;
  std::optional<std::string> contact_enc;  // replaces the stored contact fields as a set
  std::optional<std::string> locale;

  // The event or request.
  std::string id;    // event id or request id
  std::string type;  // "association.created", …, "request.access", …
  bool is_request = false;
  std::optional<std::string> partner_id;
  UnixMillis occurred_at = 0;
  std::vector<std::string> categories;  // disclosed categories, or the request's
  std::optional<std::string> statement_version;
  std::string jurisdiction;
  UnixMillis deadline_at = 0;
};

struct IntakeOutcome {
  enum class Kind { stored, replayed, conflict };
  Kind kind = Kind::stored;
  int status = 0;         // for stored and replayed: the status to answer
  std::string response;   // for stored and replayed: the body to answer
};

// Runs inside a transaction the caller owns (a group commit).
IntakeOutcome write_intake(soci::session& sql, const IntakeWrite& w);

}  // namespace privacyd
