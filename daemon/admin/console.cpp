#include "daemon/admin/console.hpp"

#include <boost/asio/awaitable.hpp>

namespace privacyd::admin {

namespace {

std::string_view content_type_of(std::string_view name) {
  if (name.ends_with(".html")) return "text/html; charset=utf-8";
  if (name.ends_with(".js")) return "text/javascript; charset=utf-8";
  if (name.ends_with(".css")) return "text/css; charset=utf-8";
  if (name.ends_with(".svg")) return "image/svg+xml";
  return "application/octet-stream";
}

const EmbeddedFile* find(std::string_view name) {
  for (const auto& f : embedded_files()) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

http::Response serve(std::string_view name) {
  const auto* file = find(name);
  if (file == nullptr) {
    auto r = http::error(404, "not_found", "no such page");
    add_console_headers(r);
    return r;
  }
  http::Response r{200, std::string(content_type_of(name)), std::string(file->contents), {}};
  add_console_headers(r);
  return r;
}

}  // namespace

void add_console_headers(http::Response& r) {
  r.headers.emplace_back("Content-Security-Policy",
                         "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none';"
                         " object-src 'none'");
  r.headers.emplace_back("X-Content-Type-Options", "nosniff");
  r.headers.emplace_back("Referrer-Policy", "no-referrer");
  r.headers.emplace_back("X-Frame-Options", "DENY");
  // Small, and a new binary may bring new pages: always ask again.
  r.headers.emplace_back("Cache-Control", "no-cache");
}

void mount_console(http::Router& router) {
  router.add("GET", "/ui", [](http::Request& request) -> boost::asio::awaitable<http::Response> {
    if (request.path != "/ui/") {
      http::Response r{308, "text/plain; charset=utf-8", "", {{"Location", "/ui/"}}};
      add_console_headers(r);
      co_return r;
    }
    co_return serve("index.html");
  });
  router.add("GET", "/ui/{file}", [](http::Request& request) -> boost::asio::awaitable<http::Response> {
    co_return serve(request.param("file"));
  });
}

}  // namespace privacyd::admin
