#pragma once
// What one accepted webhook writes, in the caller's transaction: the
// delivery (for idempotency), the subject (encrypted, found by its blind
// index), and then the event with its ledger rows, or the request.
// What is personal is sealed here, under the subject's own key (SPEC §14),
// which is known only once the subject is found.

#include <optional>
#include <string>
#include <vector>

#include "daemon/base/time.hpp"
#include "daemon/crypto/keyring.hpp"
#include "daemon/store/key_store.hpp"

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

  // The subject, in clear until write_intake seals it.
  std::string new_subject_id;  // used only if the subject is new
  std::string huawei_index;
  std::string huawei_id;
  std::optional<std::string> contact_json;  // replaces the stored contact fields as a set
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

// Seals a subject's fields under its key, and makes a key for a subject
// that has none (new, shredded, or from before subject keys). Without a
// key store (tests of the store alone) everything is sealed under the
// master key.
class SubjectSealer {
 public:
  SubjectSealer(const crypto::KeyRing& keys, SubjectKeyStore* store) : keys_(keys), store_(store) {}
  std::string new_key(UnixMillis now) const { return store_ != nullptr ? store_->take(now) : std::string(); }
  std::string seal(const std::string& key, std::string_view plain, std::string_view context) const {
    return keys_.seal_for(key, plain, context);
  }
  std::optional<std::string> open(std::string_view sealed, std::string_view context) const {
    return keys_.open(sealed, context);
  }
  // `sealed` (under another key) sealed again under `key`; nullopt when
  // no configured key opens it.
  std::optional<std::string> reseal(const std::string& key, std::string_view sealed, std::string_view context) const {
    auto plain = keys_.open(sealed, context);
    if (!plain) return std::nullopt;
    return keys_.seal_for(key, *plain, context);
  }

 private:
  const crypto::KeyRing& keys_;
  SubjectKeyStore* store_;
};

// Runs inside a transaction the caller owns (a group commit).
IntakeOutcome write_intake(soci::session& sql, const IntakeWrite& w, const SubjectSealer& sealer);

}  // namespace privacyd
