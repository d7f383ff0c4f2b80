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

// Failures of a run that say nothing about the statement itself: the
// transaction's conflicts and the data's constraints (SQLSTATE classes
// 40 and 23), a lock or statement timeout (55P03, 57014), a lost
// connection (08), which ends the cache with it.
bool statement_intact(const std::string& state) {
  return state.starts_with("40") || state.starts_with("23") || state == "55P03" || state == "57014" ||
         state.starts_with("08");
}
}  // namespace

StatementCache::StatementCache(soci::session& sql) : sql_(sql) {}

StatementCache::~StatementCache() { clear(); }

void StatementCache::clear() { entries_.clear(); }

void StatementCache::invalidate() {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.busy) {
      it->second.doomed = true;
      ++it;
    } else {
      it = entries_.erase(it);
    }
  }
}

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

void StatementCache::drop(const std::string& query) { entries_.erase(query); }

Prepared::Prepared(soci::session& sql, std::string query) : query_(std::move(query)) {
  if (current_session == &sql && current_cache != nullptr && sql.get_backend_name() == "postgresql") {
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
  if (entry_->doomed) {
    cache_->drop(query_);
    return;
  }
  // The bindings go (they point at the caller's variables); the statement
  // stays prepared for the next run.
  entry_->statement->bind_clean_up();
  entry_->busy = false;
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
    } else if (!statement_intact(state)) {
      entry_->doomed = true;
    }
    throw;
  } catch (...) {
    entry_->doomed = true;  // failed in SOCI itself (a row it could not describe): its state is unknown
    throw;
  }
}

bool Prepared::fetch() { return statement_->fetch(); }

long long Prepared::affected_rows() { return statement_->get_affected_rows(); }

}  // namespace privacyd
