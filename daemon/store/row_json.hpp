#pragma once
// A nullable column of a soci::row as the JSON views and receipts show it:
// null, or the text, or the time in RFC 3339.

#include <boost/json/value.hpp>
#include <soci/soci.h>

#include "daemon/base/time.hpp"
#include "daemon/store/rows.hpp"

namespace privacyd {

inline boost::json::value text_or_null(const soci::row& r, std::size_t i) {
  if (r.get_indicator(i) == soci::i_null) return nullptr;
  return boost::json::value(r.get<std::string>(i));
}

inline boost::json::value time_or_null(const soci::row& r, std::size_t i) {
  if (r.get_indicator(i) == soci::i_null) return nullptr;
  return boost::json::value(format_rfc3339(row_integer(r, i)));
}

}  // namespace privacyd
