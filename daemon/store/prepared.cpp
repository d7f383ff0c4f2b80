#include "daemon/store/prepared.hpp"

#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>

namespace privacyd {

namespace {
// The cache of the connection the work on this thread runs on.
thread_local soci::session* current_session = nullptr;
thread_local StatementCache* current_cache = nullptr;

// "prepared statement ... does not exist": the server session lost it.
bool lost_statement(const soci::postgresql_soci_error& e) { return e.sqlstate() == "26000"; }
}  // namespace

StatementCache::StatementCache(soci::session& sql) : sql_(sql) {}

StatementCache::~StatementCache() { clear(); }

void StatementCache::clear() { entries_.clear(); }

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
  // The bindings go (they point at the caller's variables); the statement
  // stays prepared for the next run.
  entry_->statement->bind_clean_up();
  entry_->busy = false;
}

bool Prepared::execute() {
  if (entry_ == nullptr) {
    own_->prepare(query_, soci::details::st_one_time_query);
    own_->define_and_bind();
    return own_->execute(true);
  }
  try {
    entry_->statement->define_and_bind();
    return entry_->statement->execute(true);
  } catch (const soci::postgresql_soci_error& e) {
    if (lost_statement(e)) {
      entry_ = nullptr;  // destroyed with the entry, bindings and all
      statement_ = nullptr;
      cache_->drop(query_);
    }
    throw;
  }
}

bool Prepared::fetch() { return statement_->fetch(); }

long long Prepared::affected_rows() { return statement_->get_affected_rows(); }

}  // namespace privacyd
