#include "daemon/store/prepared.hpp"

#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#include <stdexcept>
#include <string>

namespace privacyd {

namespace {
// The cache of the connection the work on this thread runs on.
thread_local soci::session* current_session = nullptr;
thread_local StatementCache* current_cache = nullptr;

// A server's error leaves its named statement as it was, but for a plan
// that can no longer be (0A000: its result type changed) and one whose
// tables or columns changed under it (class 42): prepared afresh, it
// may run again.
bool statement_broken(const std::string& state) { return state == "0A000" || state.starts_with("42"); }
}  // namespace

StatementCache::StatementCache(soci::session& sql) : sql_(sql) {}

StatementCache::~StatementCache() { clear(); }

void StatementCache::clear() {
  entries_.clear();
  dropped_.clear();
}

void StatementCache::invalidate() {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.busy) {
      it->second.doomed = true;
      ++it;
    } else {
      dropped_.push_back(std::move(it->second.statement));
      it = entries_.erase(it);
    }
  }
}

void StatementCache::bury() { dropped_.clear(); }

StatementCache::Scope::Scope(soci::session& sql, StatementCache& cache)
    : previous_session_(current_session), previous_cache_(current_cache) {
  current_session = &sql;
  current_cache = &cache;
}

StatementCache::Scope::~Scope() {
  current_session = previous_session_;
  current_cache = previous_cache_;
}

StatementCache::Entry* StatementCache::take(const std::string& query) {
  auto it = entries_.find(query);
  if (it == entries_.end()) {
    if (entries_.size() >= kMaxStatements) return nullptr;
    auto statement = std::make_unique<soci::statement>(sql_);
    statement->alloc();
    statement->prepare(query);  // PQprepare: a failure leaves nothing cached
    it = entries_.emplace(query, Entry{std::move(statement), false}).first;
  }
  if (it->second.busy) return nullptr;
  it->second.busy = true;
  return &it->second;
}

void StatementCache::drop(const std::string& query) {
  auto it = entries_.find(query);
  if (it == entries_.end()) return;
  dropped_.push_back(std::move(it->second.statement));
  entries_.erase(it);
}

Prepared::Prepared(soci::session& sql, std::string query) : query_(std::move(query)) {
  if (current_session == &sql && current_cache != nullptr) {
    cache_ = current_cache;
    entry_ = cache_->take(query_);
  }
  if (entry_ != nullptr) {
    statement_ = entry_->statement.get();
    return;
  }
  own_ = std::make_unique<soci::statement>(sql);
  own_->alloc();
  statement_ = own_.get();
}

Prepared::~Prepared() {
  if (entry_ == nullptr) return;
  // The bindings go now, while the caller's variables they point at live.
  entry_->statement->bind_clean_up();
  if (entry_->doomed) {
    cache_->drop(query_);  // deallocated once the work has ended
    return;
  }
  entry_->busy = false;  // and stays prepared for the next run
}

bool Prepared::execute() {
  // A second run would bind and (one-time) prepare again: neither is
  // meant to be repeated on a SOCI statement.
  if (executed_) throw std::logic_error("a Prepared statement runs once");
  executed_ = true;
  if (entry_ == nullptr) {
    own_->prepare(query_, soci::details::st_one_time_query);
    own_->define_and_bind();
    return own_->execute(true);
  }
  try {
    entry_->statement->define_and_bind();
    return entry_->statement->execute(true);
  } catch (const soci::postgresql_soci_error& e) {
    const std::string state = e.sqlstate();
    if (state == "26000") {
      cache_->invalidate();  // this one with the others, when released
    } else if (statement_broken(state)) {
      entry_->doomed = true;
    }
    throw;
  } catch (...) {
    entry_->doomed = true;  // failed in SOCI itself (a row it could not describe): its state is unknown
    throw;
  }
}

bool Prepared::fetch() {
  if (!executed_) throw std::logic_error("a Prepared statement fetches after it runs");
  return statement_->fetch();
}

long long Prepared::affected_rows() {
  // Before its run, a kept statement would answer for its last user.
  if (!executed_ || statement_ == nullptr) throw std::logic_error("a Prepared statement counts rows after it runs");
  return statement_->get_affected_rows();
}

}  // namespace privacyd
