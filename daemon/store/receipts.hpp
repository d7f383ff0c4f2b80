#pragma once
// What a receipt states (SPEC §16), read from privacyd's database in one
// transaction: the request, what each step did per system and category,
// the retention holds, the notices with their delivery and
// acknowledgement, whether privacyd's own copies were erased, and the
// request's audit entries with the chain's head. Ids, counts, times and
// reasons only: no personal data.

#include <boost/json/object.hpp>
#include <optional>
#include <string>

#include "daemon/base/time.hpp"

namespace soci {
class session;
}

namespace privacyd::receipts {

// The unsigned receipt of request `id` as of `now`; nullopt when there is
// no such request. `finished` says whether it is completed, rejected or
// failed (only those get a receipt).
struct Facts {
  boost::json::object receipt;
  bool finished = false;
};
std::optional<Facts> facts(soci::session& sql, const std::string& id, UnixMillis now);

}  // namespace privacyd::receipts
