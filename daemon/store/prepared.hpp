#pragma once
// Statements prepared once per PostgreSQL connection and run again with
// fresh bindings. A one-time query is parsed, analysed and planned by the
// server at every run, and that was a third of PostgreSQL's time per
// request in the end-to-end bench (SPEC §12); a prepared one is parsed
// once, and planned generically once its plans stop differing.
//
//   Prepared update(sql, "UPDATE requests SET run_at = :at WHERE id = :id");
//   update.bind(soci::use(at, "at"), soci::use(id, "id"));
//   if (update.execute() && update.affected_rows() == 1) ...
//
// The statements of a connection live in its StatementCache, which a
// Database on PostgreSQL gives to the work it runs on that connection and
// clears before the connection is opened again (a new server session
// knows none of them). Elsewhere — SQLite, whose in-process prepare is
// cheap and whose prepared SELECTs would hold read snapshots open; a
// session that is not the Database's; a statement already in use on the
// connection — the query runs as a one-time statement, exactly as
// `sql << query` would.
//
// Named statements outlive a rolled-back transaction on the server, so a
// statement whose run the server refused stays, unless the refusal says
// the statement itself is broken (its result type or its tables changed).
// One that failed in SOCI itself (a value it could not convert, a row it
// could not describe) is dropped, its state unknown. Dropped statements
// are deallocated once the work has ended (bury()), outside the
// transaction their failure aborted. When the server has lost one
// (SQLSTATE 26000: DISCARD ALL, DEALLOCATE ALL), it has lost them all:
// the cache forgets every one, and the Database runs the work again once.
// Named statements need a server session per connection (so does the
// rest of privacyd: its session deadlines, SOCI's own prepared queries):
// a pooler must keep one per client connection (session pooling).

#include <cstddef>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace soci {
class session;
class statement;
}  // namespace soci

namespace privacyd {

class StatementCache {
 public:
  // At most this many statements per connection; queries past it run as
  // one-time statements (the hot statements are few and fixed).
  static constexpr std::size_t kMaxStatements = 128;

  explicit StatementCache(soci::session& sql);
  ~StatementCache();
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  // Forgets every statement; call before the connection closes (each one
  // refers to it).
  void clear();
  // Forgets every statement not in use now, and each one in use when it
  // is released (the server no longer has them).
  void invalidate();
  // Deallocates the statements dropped during the work just ended. Not
  // before: a statement dropped because its run failed inside a
  // transaction would be deallocated in the aborted transaction, which the
  // server refuses, and stay on the server for the connection's life.
  void bury();
  std::size_t size() const { return entries_.size(); }

  // While alive, work on this thread that prepares on `sql` uses `cache`.
  class Scope {
   public:
    Scope(soci::session& sql, StatementCache& cache);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    soci::session* previous_session_;
    StatementCache* previous_cache_;
  };

 private:
  friend class Prepared;
  struct Entry {
    std::unique_ptr<soci::statement> statement;
    bool busy = false;
    bool doomed = false;  // dropped when released
  };
  // The entry for `query`, prepared now if new; nullptr when it cannot be
  // cached (full, or busy: the caller runs a one-time statement).
  Entry* take(const std::string& query);
  void drop(const std::string& query);

  soci::session& sql_;
  std::unordered_map<std::string, Entry> entries_;
  std::vector<std::unique_ptr<soci::statement>> dropped_;  // until bury()
};

class Prepared {
 public:
  Prepared(soci::session& sql, std::string query);
  ~Prepared();
  Prepared(const Prepared&) = delete;
  Prepared& operator=(const Prepared&) = delete;

  // soci::use(...) and soci::into(...) elements, held by reference as SOCI
  // holds them: the bound variables must outlive execute().
  template <class... Elements>
  Prepared& bind(Elements&&... elements) {
    (exchange(std::forward<Elements>(elements)), ...);
    return *this;
  }

  // Runs it, once; true when a row was fetched into the `into` elements.
  bool execute();
  // The next row of a SELECT into a soci::row; false past the last.
  bool fetch();
  long long affected_rows();

 private:
  template <class Element>
  void exchange(Element&& element);

  std::string query_;
  StatementCache* cache_ = nullptr;
  StatementCache::Entry* entry_ = nullptr;
  std::unique_ptr<soci::statement> own_;  // a one-time statement
  soci::statement* statement_ = nullptr;
  bool executed_ = false;
};

}  // namespace privacyd

#include <soci/statement.h>

namespace privacyd {
template <class Element>
void Prepared::exchange(Element&& element) {
  statement_->exchange(std::forward<Element>(element));
}
}  // namespace privacyd
