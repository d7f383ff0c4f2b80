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
#include <vector>

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

// Group commit: while a Deferral is alive on this thread, append() queues
// its entries, and flush() writes them all — one turn on the head's lock,
// one INSERT — just before the shared transaction commits. A transaction
// that appends entry by entry holds the lock, which every instance waits
// on, from its first append to its commit; this holds it for three
// statements however many entries the batch has. Entries keep their order.
class Deferral {
 public:
  Deferral();
  ~Deferral();
  Deferral(const Deferral&) = delete;
  Deferral& operator=(const Deferral&) = delete;
  // Appends what was queued, in the caller's transaction; append() is
  // immediate again afterwards.
  void flush(soci::session& sql);

 private:
  friend void append(soci::session&, UnixMillis, std::string_view, std::string_view, std::string_view);
  struct Entry {
    UnixMillis at;
    std::string request_id;
    std::string event;
    std::string detail;
  };
  std::vector<Entry> entries_;
  Deferral* previous_;
  bool active_ = true;
};

struct Verification {
  bool intact = true;
  std::int64_t entries = 0;
  std::int64_t broken_seq = 0;  // the first entry that does not fit, when !intact
  std::string problem;          // what does not fit
};

// Walks the whole chain in order.
Verification verify(soci::session& sql);

}  // namespace privacyd::audit
