#pragma once
// The operator console (SPEC §15): pages served from the binary on the
// admin listener at /ui/. They hold no data and need no token: everything
// they show comes from the admin API, called with the operator's token
// (kept in the tab's sessionStorage, never in a cookie). No external
// assets, no inline scripts or styles: the CSP says `default-src 'self'`.

#include <string_view>
#include <vector>

#include "daemon/http/router.hpp"

namespace privacyd::admin {

struct EmbeddedFile {
  std::string_view name;
  std::string_view contents;
};
// daemon/admin/ui/, embedded at build time (cmake/EmbedFiles.cmake).
const std::vector<EmbeddedFile>& embedded_files();

// The headers every console response carries.
void add_console_headers(http::Response& response);

// GET /ui (redirected to /ui/), /ui/ and /ui/{file}.
void mount_console(http::Router& router);

}  // namespace privacyd::admin
