#include "daemon/actions/systems.hpp"

#include <boost/json.hpp>
#include <ctime>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>
#include <stdexcept>

namespace privacyd::actions {

namespace json = boost::json;

Database& SystemConnections::of(const policy::DataSystem& system) {
  std::lock_guard lock(mutex_);
  auto key = system.name + "\n" + system.database.parameters;
  auto& pool = pools_[key];
  if (!pool) {
    DatabaseConfig config = system.database;
    config.foreign = true;
    pool = std::make_unique<Database>(std::move(config), log_, /*connect_now=*/false);
  }
  return *pool;
}

void SystemConnections::shutdown() {
  std::lock_guard lock(mutex_);
  for (auto& [key, pool] : pools_) pool->shutdown();
}

namespace {

bool uses(const policy::Query& q, std::string_view name) {
  for (const auto& b : q.binds) {
    if (b == name) return true;
  }
  return false;
}

json::value cell(const soci::row& row, std::size_t i) {
  if (row.get_indicator(i) == soci::i_null) return nullptr;
  switch (row.get_properties(i).get_data_type()) {
    case soci::dt_integer: return row.get<int>(i);
    case soci::dt_long_long: return row.get<long long>(i);
    case soci::dt_unsigned_long_long: return row.get<unsigned long long>(i);
    case soci::dt_double: return row.get<double>(i);
    case soci::dt_date: {
      std::tm tm = row.get<std::tm>(i);
      char buf[32];
      std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
      return json::string(buf);
    }
    case soci::dt_string:
    case soci::dt_xml:
      return json::string(row.get<std::string>(i));
    case soci::dt_blob:
      return "(binary)";
  }
  return nullptr;
}

}  // namespace

json::array read_rows(soci::session& sql, const policy::Query& query, const Binds& binds) {
  auto prepared = sql.prepare << query.sql;
  if (uses(query, "subject")) prepared, soci::use(binds.subject, "subject");
  if (uses(query, "partner")) prepared, soci::use(binds.partner, "partner");
  soci::rowset<soci::row> rows(prepared);
  json::array out;
  for (const auto& row : rows) {
    if (out.size() >= kMaxRows) throw ResultTooLarge("a query returned more than 10000 rows");
    json::object object;
    for (std::size_t i = 0; i < row.size(); ++i) object[row.get_properties(i).get_name()] = cell(row, i);
    out.push_back(std::move(object));
  }
  return out;
}

long long change_rows(soci::session& sql, const policy::Query& query, const Binds& binds) {
  auto prepared = sql.prepare << query.sql;
  if (uses(query, "subject")) prepared, soci::use(binds.subject, "subject");
  if (uses(query, "partner")) prepared, soci::use(binds.partner, "partner");
  soci::statement statement(prepared);
  statement.execute(true);
  return statement.get_affected_rows();
}

}  // namespace privacyd::actions

namespace privacyd::actions {

std::string describe_system_failure(const std::exception& e) {
  if (dynamic_cast<const ResultTooLarge*>(&e) != nullptr) return e.what();
  if (dynamic_cast<const DatabaseUnavailable*>(&e) != nullptr) return "the system's database is unreachable";
  if (dynamic_cast<const DatabaseConflict*>(&e) != nullptr) return "the system's database is busy";
  if (dynamic_cast<const soci::soci_error*>(&e) != nullptr) return describe_failure(e);
  return "the query failed";
}

}  // namespace privacyd::actions
