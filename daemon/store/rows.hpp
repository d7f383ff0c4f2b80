#pragma once
// Reading soci::row columns whose type the backend decides: SQLite reports
// aggregates (MIN, MAX, COUNT) without a declared type, PostgreSQL as
// bigint or numeric.

#include <soci/soci.h>
#include <stdexcept>
#include <string>

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

}  // namespace privacyd
