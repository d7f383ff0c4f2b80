#pragma once
// The audit trail: append-only and hash-chained. Each entry holds the
// SHA-256 of the one before it, so an edited, removed or reordered entry
// breaks the chain at that point. Entries are appended in the same
// transaction as the transition they record; appenders (from any number of
// instances) serialise on the single audit_head row, so there is one chain.
// Entries carry ids and event names, never personal data.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "daemon/base/time.hpp"

namespace soci {
class session;
}

namespace privacyd::audit {

inline constexpr std::string_view kGenesis = "0000000000000000000000000000000000000000000000000000000000000000";

// The hash of an entry: SHA-256 over the previous hash and every field,
// each length-prefixed so no two field lists hash alike.
std::string entry_hash(std::string_view prev_hash, std::int64_t seq, UnixMillis at, std::string_view request_id,
                       std::string_view event, std::string_view detail);

// Appends one entry inside the caller's transaction. `detail` is a small
// JSON object of ids and reasons.
void append(soci::session& sql, UnixMillis at, std::string_view request_id, std::string_view event,
            std::string_view detail);

struct Verification {
  bool intact = true;
  std::int64_t entries = 0;
  std::int64_t broken_seq = 0;  // the first entry that does not fit, when !intact
  std::string problem;          // what does not fit
};

// Walks the whole chain in order.
Verification verify(soci::session& sql);

}  // namespace privacyd::audit
