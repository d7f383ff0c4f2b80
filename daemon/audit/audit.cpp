#include "daemon/audit/audit.hpp"

#include <algorithm>
#include <soci/soci.h>
#include <tuple>

#include "daemon/crypto/primitives.hpp"
#include "daemon/store/prepared.hpp"

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

namespace {
thread_local Deferral* deferring = nullptr;

// The head, locked until the transaction ends (every appender in every
// instance waits its turn; SQLite has one writer at a time anyway).
std::pair<long long, std::string> lock_head(soci::session& sql) {
  long long seq = 0;
  std::string hash;
  const bool postgresql = sql.get_backend_name() == "postgresql";
  Prepared select(sql, postgresql ? "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"
                                  : "SELECT seq, hash FROM audit_head WHERE id = 1");
  select.bind(soci::into(seq), soci::into(hash));
  select.execute();
  return {seq, hash};
}

void move_head(soci::session& sql, long long seq, const std::string& hash) {
  Prepared update(sql, "UPDATE audit_head SET seq = :seq, hash = :hash WHERE id = 1");
  update.bind(soci::use(seq, "seq"), soci::use(hash, "hash"));
  update.execute();
}
}  // namespace

Deferral::Deferral() : previous_(deferring) { deferring = this; }

Deferral::~Deferral() {
  if (active_) deferring = previous_;
}

void Deferral::flush(soci::session& sql) {
  deferring = previous_;
  active_ = false;
  if (entries_.empty()) return;
  auto [seq, prev] = lock_head(sql);
  struct Row {
    long long seq, at;
    std::string request_id, event, detail, prev_hash, hash;
  };
  std::vector<Row> rows;
  rows.reserve(entries_.size());  // bound by reference below: never reallocated
  for (auto& e : entries_) {
    ++seq;
    std::string hash = entry_hash(prev, seq, e.at, e.request_id, e.event, e.detail);
    rows.push_back({seq, e.at, std::move(e.request_id), std::move(e.event), std::move(e.detail), prev, hash});
    prev = std::move(hash);
  }
  constexpr std::size_t kPerStatement = 100;
  for (std::size_t from = 0; from < rows.size(); from += kPerStatement) {
    const std::size_t to = std::min(rows.size(), from + kPerStatement);
    std::string query = "INSERT INTO audit_log(seq, at, request_id, event, detail, prev_hash, hash) VALUES ";
    for (std::size_t i = from; i < to; ++i) {
      const std::string n = std::to_string(i);
      query += (i == from ? "(" : ", (") + (":s" + n) + ", :a" + n + ", :r" + n + ", :e" + n + ", :d" + n + ", :p" +
               n + ", :h" + n + ")";
    }
    // One statement, executed when `insert` goes out of scope.
    auto insert = (sql << query);
    for (std::size_t i = from; i < to; ++i) {
      const std::string n = std::to_string(i);
      auto& r = rows[i];
      insert, soci::use(r.seq, "s" + n), soci::use(r.at, "a" + n), soci::use(r.request_id, "r" + n),
          soci::use(r.event, "e" + n), soci::use(r.detail, "d" + n), soci::use(r.prev_hash, "p" + n),
          soci::use(r.hash, "h" + n);
    }
  }
  move_head(sql, rows.back().seq, rows.back().hash);
  entries_.clear();
}

void append(soci::session& sql, UnixMillis at, std::string_view request_id, std::string_view event,
            std::string_view detail) {
  if (deferring != nullptr) {
    deferring->entries_.push_back({at, std::string(request_id), std::string(event), std::string(detail)});
    return;
  }
  long long head_seq = 0;
  std::string head_hash;
  std::tie(head_seq, head_hash) = lock_head(sql);
  long long seq = head_seq + 1;
  std::string req(request_id);
  std::string ev(event);
  std::string det(detail);
  long long when = at;
  std::string hash = entry_hash(head_hash, seq, at, req, ev, det);
  Prepared insert(sql, "INSERT INTO audit_log(seq, at, request_id, event, detail, prev_hash, hash)"
                       " VALUES (:seq, :at, :request, :event, :detail, :prev, :hash)");
  insert.bind(soci::use(seq, "seq"), soci::use(when, "at"), soci::use(req, "request"), soci::use(ev, "event"),
              soci::use(det, "detail"), soci::use(head_hash, "prev"), soci::use(hash, "hash"));
  insert.execute();
  move_head(sql, seq, hash);
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
