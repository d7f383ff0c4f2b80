#pragma once
// What store code asks of the backend it runs on: reading soci::row
// columns whose type the backend decides (SQLite reports aggregates — MIN,
// MAX, COUNT — without a declared type, PostgreSQL as bigint or numeric),
// and the row locks only PostgreSQL takes.

#include <soci/soci.h>
#include <stdexcept>
#include <string>
#include <string_view>

namespace privacyd {

inline long long row_integer(const soci::row& row, std::size_t i) {
  switch (row.get_properties(i).get_data_type()) {
    case soci::dt_integer: return row.get<int>(i);
    case soci::dt_long_long: return row.get<long long>(i);
    case soci::dt_unsigned_long_long: return static_cast<long long>(row.get<unsigned long long>(i));
    case soci::dt_double: return static_cast<long long>(row.get<double>(i));
    case soci::dt_string: return std::stoll(row.get<std::string>(i));
    default: throw std::runtime_error("column " + std::to_string(i) + " is not a number");
  }
}

inline bool is_postgresql(soci::session& sql) { return sql.get_backend_name() == "postgresql"; }

// For a claim: " FOR UPDATE [OF table] SKIP LOCKED" on PostgreSQL, so that
// rows another instance is claiming are passed over, not waited for; ""
// on SQLite, where one writer at a time makes it moot.
inline std::string skip_locked(soci::session& sql, std::string_view of = {}) {
  if (!is_postgresql(sql)) return {};
  return of.empty() ? std::string(" FOR UPDATE SKIP LOCKED") : " FOR UPDATE OF " + std::string(of) + " SKIP LOCKED";
}

}  // namespace privacyd
