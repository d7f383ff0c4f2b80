#pragma once
// Subjects from before subject keys (SPEC §14, migration 7): their data is
// sealed under the master key alone, so shredding could not reach the
// copies in the main database's backups. The follow-up loop moves them,
// online, one subject per transaction: the subject gets a key (committed in
// the key store already) and every value of its own under the master key
// is sealed again under it, all at once. A crash before the commit leaves
// at worst an unused key. Intake leaves such a subject under the master key
// until then (intake_writes.cpp), so nothing of it is left behind.
//
// The same move picks up a subject that has a key but still owns values
// under the master key (an older intake gave subjects from before a key
// without moving what they had; a step that outlived its claim may have
// sealed with the key it loaded): those are sealed again under its key.
//
// A subject is moved only once all its requests are finished (a failed one
// holds it back: retry or reject it) and none is leased (a step seals with
// the key it loaded when it was claimed). Its row is locked first (on
// PostgreSQL; SQLite has one writer anyway), the order the engine's
// transitions and intake take too: no request of it can be stored
// meanwhile, and no deadlock.

#include <string>

#include "daemon/base/time.hpp"
#include "daemon/store/intake_writes.hpp"

namespace soci {
class session;
}

namespace privacyd::legacy {

struct Step {
  enum class Outcome { none, moved, busy, unreadable };
  Outcome outcome = Outcome::none;  // none: no subject after the cursor (the pass has ended)
  std::string subject_id;           // the subject looked at: where the next step starts
  long long values = 0;             // sealed again under its key
  long long unreadable = 0;         // values no configured key opens: left as they are
};

// Looks at the first subject to move (as above, and not busy) whose id
// comes after `after` ("" for the first) and moves it if it can, in the
// caller's transaction. Throws DatabaseConflict (roll back, try later) if another
// writer changed one of its values meanwhile. On PostgreSQL a subject
// another transaction holds is passed over: its id never comes back here.
Step move_next(soci::session& sql, const SubjectSealer& sealer, const std::string& after, UnixMillis now);

// How many subjects without a key are still to move (for `keys status`,
// and to tell a finished migration from a pass that passed some over).
// No locks.
long long count_legacy_subjects(soci::session& sql);

}  // namespace privacyd::legacy
