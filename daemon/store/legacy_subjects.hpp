#pragma once
// Subjects from before subject keys (SPEC §14, migration 7): their data is
// sealed under the master key, so shredding could not reach the copies in
// the main database's backups. The follow-up loop moves them, online and
// in batches, each under a key of its own: the key is taken (and committed
// in the key store) first, then in one transaction the subject gets it and
// every value of its own under the master key is sealed again under it.
// A crash before that commit leaves at worst an unused key.
//
// A subject is moved only while no step is driving one of its requests (a
// step seals with the key it loaded when it was claimed); on PostgreSQL its
// requests are locked for the move, so no claim starts meanwhile. No new
// subject is ever made without a key, so once a pass finds none, the work
// is done for good.

#include <string>

#include "daemon/base/time.hpp"
#include "daemon/store/intake_writes.hpp"

namespace soci {
class session;
}

namespace privacyd::legacy {

struct Moved {
  int examined = 0;          // subjects looked at, after the cursor
  std::string last;          // the last of them: where the next batch starts
  int subjects = 0;          // moved
  long long values = 0;      // sealed again under a subject key
  long long unreadable = 0;  // no configured key opens them: left as they are
};

// Moves up to `limit` subjects whose id comes after `after` ("" for the
// first), in the caller's transaction. One that cannot move now (a step is
// driving it, or its identifier does not open) is passed over, so the
// next batch starts after it; a batch that examines fewer than `limit`
// ends the pass.
Moved move_to_subject_keys(soci::session& sql, const SubjectSealer& sealer, UnixMillis now, int limit,
                           const std::string& after);

// How many subjects are still to move (for `keys status`).
long long count_legacy_subjects(soci::session& sql);

}  // namespace privacyd::legacy
