#include "daemon/audit/audit.hpp"

#include <soci/soci.h>

#include "daemon/crypto/primitives.hpp"

namespace privacyd::audit {

std::string entry_hash(std::string_view prev_hash, std::int64_t seq, UnixMillis at, std::string_view request_id,
                       std::string_view event, std::string_view detail) {
  std::string message;
  auto field = [&](std::string_view value) {
    message += std::to_string(value.size());
    message += ':';
    message += value;
    message += ';';
  };
  field(prev_hash);
  field(std::to_string(seq));
  field(std::to_string(at));
  field(request_id);
  field(event);
  field(detail);
  return crypto::sha256_hex(message);
}

void append(soci::session& sql, UnixMillis at, std::string_view request_id, std::string_view event,
            std::string_view detail) {
  long long head_seq = 0;
  std::string head_hash;
  // FOR UPDATE makes every appender in every instance wait its turn; SQLite
  // has one writer at a time anyway.
  const bool postgresql = sql.get_backend_name() == "postgresql";
  sql << (postgresql ? "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"
                     : "SELECT seq, hash FROM audit_head WHERE id = 1"),
      soci::into(head_seq), soci::into(head_hash);
  long long seq = head_seq + 1;
  std::string req(request_id);
  std::string ev(event);
  std::string det(detail);
  long long when = at;
  std::string hash = entry_hash(head_hash, seq, at, req, ev, det);
  sql << "INSERT INTO audit_log(seq, at, request_id, event, detail, prev_hash, hash)"
         " VALUES (:seq, :at, :request, :event, :detail, :prev, :hash)",
      soci::use(seq, "seq"), soci::use(when, "at"), soci::use(req, "request"), soci::use(ev, "event"),
      soci::use(det, "detail"), soci::use(head_hash, "prev"), soci::use(hash, "hash");
  sql << "UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1", soci::use(seq, "seq"),
      soci::use(hash, "hash");
}

Verification verify(soci::session& sql) {
  Verification v;
  std::string prev(kGenesis);
  long long expected = 1;
  soci::rowset<soci::row> rows =
      (sql.prepare << "SELECT seq, at, request_id, event, detail, prev_hash, hash FROM audit_log ORDER BY seq");
  for (const auto& row : rows) {
    auto seq = row.get<long long>(0);
    auto at = row.get<long long>(1);
    auto request_id = row.get_indicator(2) == soci::i_null ? std::string() : row.get<std::string>(2);
    auto event = row.get<std::string>(3);
    auto detail = row.get<std::string>(4);
    auto prev_hash = row.get<std::string>(5);
    auto hash = row.get<std::string>(6);
    auto broken = [&](std::int64_t at_seq, std::string problem) {
      v.intact = false;
      v.broken_seq = at_seq;
      v.problem = std::move(problem);
    };
    if (seq != expected) {
      broken(expected, seq > expected ? "entry " + std::to_string(expected) + " is missing"
                                      : "entry " + std::to_string(seq) + " is out of order");
      return v;
    }
    if (prev_hash != prev) {
      broken(seq, "entry " + std::to_string(seq) + " does not follow the entry before it");
      return v;
    }
    if (entry_hash(prev_hash, seq, at, request_id, event, detail) != hash) {
      broken(seq, "entry " + std::to_string(seq) + " was altered");
      return v;
    }
    prev = hash;
    ++expected;
    ++v.entries;
  }
  long long head_seq = 0;
  std::string head_hash;
  sql << "SELECT seq, hash FROM audit_head WHERE id = 1", soci::into(head_seq), soci::into(head_hash);
  if (head_seq != v.entries || (head_seq > 0 && head_hash != prev)) {
    v.intact = false;
    v.broken_seq = v.entries + 1;
    v.problem = "the chain ends at entry " + std::to_string(v.entries) + " but its head says " +
                std::to_string(head_seq) + ": entries were removed from the end";
  }
  return v;
}

}  // namespace privacyd::audit
