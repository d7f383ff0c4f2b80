#pragma once
// What happens after a request's notices go out (SPEC §13): the person
// fetches their access package by its link, and partners acknowledge the
// notices they got, or are reminded until they do. Every function runs in
// the caller's transaction.

#include <optional>
#include <string>
#include <vector>

#include "daemon/base/time.hpp"
#include "daemon/store/runs.hpp"

namespace soci {
class session;
}

namespace privacyd::follow_ups {

// ---- Access packages ----

enum class Fetch { ok, unknown, gone };
struct FetchedPackage {
  Fetch result = Fetch::unknown;
  std::string request_id;
  std::string package_enc;  // sealed; set when ok
  int download = 0;         // this download's number, from 1
};
// One download of the package whose token has `digest`: counted and
// audited, unless it has expired, been erased or been fetched
// `max_downloads` times (gone).
FetchedPackage take_package(soci::session& sql, const std::string& digest, int max_downloads, UnixMillis now);

// Erases up to `limit` expired packages' ciphertext (the row stays, so
// its link answers 410, not 404), each audited. Returns how many.
int erase_expired_packages(soci::session& sql, UnixMillis now, int limit);

// ---- Acknowledgements ----

inline bool valid_outcome(std::string_view o) { return o == "erased" || o == "retained" || o == "no_data"; }

struct AckTarget {
  std::string id;  // the notice acknowledged: a reminder's first notice
  std::string request_id;
  std::string channel;
  std::string recipient;  // the partner's id
  std::optional<std::string> outcome;  // set once acknowledged
};
// The notice `id` names, or the one a reminder `id` reminds of.
std::optional<AckTarget> find_ack_target(soci::session& sql, const std::string& id);
// The same, by the digest of the token in an email partner's link.
std::optional<AckTarget> find_ack_target_by_token(soci::session& sql, const std::string& digest);

enum class Ack { recorded, same, conflict, not_found, not_acknowledgeable };
// Records the acknowledgement of partner notice `id` (or of the notice a
// reminder `id` reminds of). The same outcome again is `same`; another is
// `conflict`. `note_enc` is sealed; `by` is partner, link or an operator.
// `acknowledged` (when given) receives the id of the notice that was
// acknowledged: `id` itself, or the first notice when `id` is a reminder.
Ack acknowledge(soci::session& sql, const std::string& id, const std::string& outcome, const std::string& note_enc,
                const std::string& by, UnixMillis now, std::string* acknowledged = nullptr);

// ---- Reminders ----

struct DueReminder {
  std::string id;  // the first notice
  std::string request_id;
  std::string partner_id;
  std::string template_name;
  UnixMillis created_at = 0;
  UnixMillis ack_due_at = 0;
  int reminders_sent = 0;
  bool by_link = false;  // the partner answers through a link (email)
};
// Delivered, unacknowledged partner notices whose next reminder is due,
// locked for this transaction (PostgreSQL: SKIP LOCKED).
std::vector<DueReminder> due_reminders(soci::session& sql, UnixMillis now, int limit);
// When the reminder after the `sent`-th is due: the first of the policies'
// offsets (milliseconds after the notice was created) that comes after the
// ones already used and is still ahead of `now`; none when none is. After an
// outage one reminder goes out, not one per offset missed, and an offset
// is never used twice: the first reminder is scheduled from the time the
// notice was drafted, a little before it was stored, so "still ahead"
// alone could name the offset just used again.
std::optional<UnixMillis> next_reminder_at(UnixMillis created_at, const std::vector<long long>& offsets_ms, int sent,
                                           UnixMillis now);
// Queues `reminder` for `first` and moves its next reminder to `next` (or
// none); fenced on the count of reminders sent so far.
bool record_reminder(soci::session& sql, const DueReminder& first, const runs::Transition::Notice& reminder,
                     std::optional<UnixMillis> next, UnixMillis now);

// Moves a notice's next reminder to `until` (none: no more), sending nothing.
void postpone_reminder(soci::session& sql, const std::string& id, std::optional<UnixMillis> until);

// ---- Crypto-shredding (SPEC §14) ----

struct Shredded {
  std::string subject_id;
  std::string key_id;  // doomed; empty: sealed before subject keys
};
// Subjects whose deletion completed and whose data nothing pending still
// needs (no open request, no notice pending or dead): privacyd's own
// copies are erased, and the subject's key is doomed (the subject is left
// keyless, so anything later gets a new key). Up to `limit`, in the
// caller's transaction.
std::vector<Shredded> shred_due(soci::session& sql, UnixMillis now, int limit);
// Doomed keys whose subject has no retention hold still held: the
// identifier sealed under them is erased (unless a later event re-sealed
// it under a new key) and they are marked ready. Returns how many.
int ready_doomed_keys(soci::session& sql, UnixMillis now, int limit);
// Keys ready to destroy in the key store (a crash may have come between).
std::vector<std::string> keys_to_destroy(soci::session& sql, int limit);
// After the key store destroyed them.
void keys_destroyed(soci::session& sql, const std::vector<std::string>& key_ids);

// ---- privacyd's own retention (SPEC §14) ----

struct OwnRetention {
  UnixMillis deliveries_before = 0;       // stored webhook answers received before this go
  UnixMillis notice_payloads_before = 0;  // delivered notices' payloads, delivered before this
  UnixMillis collected_before = 0;        // collected data, once its package step finished before this
};
struct Swept {
  long long deliveries = 0;
  long long notice_payloads = 0;
  long long collected = 0;
  long long total() const { return deliveries + notice_payloads + collected; }
};
// Erases up to `limit` of each, in the caller's transaction, and audits
// what it erased (retention.swept, counts only).
Swept sweep_own_retention(soci::session& sql, const OwnRetention& rules, UnixMillis now, int limit);

// Unacknowledged partner notices past their due date, by partner.
std::vector<std::pair<std::string, long long>> overdue_by_partner(soci::session& sql, UnixMillis now);

}  // namespace privacyd::follow_ups
