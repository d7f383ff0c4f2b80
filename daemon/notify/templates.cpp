#include "daemon/notify/templates.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <fstream>
#include <kainjow/mustache.hpp>
#include <sstream>
#include <stdexcept>

namespace privacyd::notify {

namespace fs = std::filesystem;
namespace json = boost::json;
using kainjow::mustache::data;
using kainjow::mustache::mustache;

const std::map<std::string, std::set<std::string>, std::less<>>& template_variables() {
  static const std::map<std::string, std::set<std::string>, std::less<>> all = {
      // To a partner after a disassociation: what it still holds.
      {"partner-holdings",
       {"partner_name", "partner_id", "request_id", "disassociated_at", "associated_from", "categories",
        "category", "description", "first_disclosed_at", "last_disclosed_at", "acknowledge_by", "ack_url"}},
      // To a partner after a deletion: what to erase.
      {"partner-erasure",
       {"partner_name", "partner_id", "request_id", "categories", "category", "description", "acknowledge_by",
        "ack_url"}},
      // To a partner that has not acknowledged a notice: a reminder naming it.
      {"partner-reminder",
       {"partner_name", "partner_id", "request_id", "first_notice_id", "first_sent", "acknowledge_by", "ack_url",
        "overdue"}},
      // To the person after a disassociation: who may still hold what.
      {"subject-disassociated",
       {"name", "partner_name", "partner_id", "contact_email", "contact_url", "request_id", "disassociated_at",
        "categories", "category", "description"}},
      // To the person after a deletion: what was erased and what is kept.
      {"subject-erased",
       {"name", "request_id", "erased", "retained", "has_retained", "category", "description", "reason", "until"}},
      // To the person: the access package is ready.
      {"subject-access-ready", {"name", "request_id", "package_url", "package_expires"}},
      // To the person: the request was rejected, and why. `reason` is the
      // code (not_associated) or an operator's words; one of the three
      // flags is true and picks the text.
      {"subject-rejected", {"name", "request_id", "reason", "not_associated", "by_operator", "by_step"}},
  };
  return all;
}

std::set<std::string> used_variables(std::string_view source) {
  std::set<std::string> names;
  std::size_t pos = 0;
  while ((pos = source.find("{{", pos)) != std::string_view::npos) {
    pos += 2;
    bool triple = pos < source.size() && source[pos] == '{';
    if (triple) ++pos;
    auto end = source.find("}}", pos);
    if (end == std::string_view::npos) break;
    std::string_view tag = source.substr(pos, end - pos);
    pos = end + 2;
    while (!tag.empty() && tag.front() == ' ') tag.remove_prefix(1);
    if (tag.empty()) continue;
    char kind = tag.front();
    if (kind == '!') continue;  // a comment
    if (kind == '#' || kind == '^' || kind == '/' || kind == '&') tag.remove_prefix(1);
    while (!tag.empty() && (tag.front() == ' ')) tag.remove_prefix(1);
    while (!tag.empty() && (tag.back() == ' ' || tag.back() == '}')) tag.remove_suffix(1);
    if (kind == '=' || kind == '>') {
      names.insert(std::string(1, kind));  // set-delimiter and partials: reported as unsupported
      continue;
    }
    if (!tag.empty() && tag != ".") names.insert(std::string(tag));
  }
  return names;
}

Templates Templates::load(const fs::path& dir, Diagnostics& out) {
  Templates t;
  t.dir_ = dir;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    out.push_back({dir.string(), 0, 0, "notice templates folder not found", "io"});
    return t;
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".mustache") files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  const auto& known = template_variables();
  for (const auto& file : files) {
    // NAME.LOCALE.mustache
    std::string stem = file.stem().string();
    auto dot = stem.rfind('.');
    if (dot == std::string::npos) {
      out.push_back({file.string(), 0, 0, "a template is named NAME.LOCALE.mustache, e.g. partner-holdings.en.mustache",
                     "template"});
      continue;
    }
    std::string name = stem.substr(0, dot);
    std::string locale = stem.substr(dot + 1);
    auto kind = known.find(name);
    if (kind == known.end()) {
      std::vector<std::string_view> names;
      for (const auto& [n, v] : known) names.push_back(n);
      std::string message = "no notice is called \"" + name + "\"";
      if (auto hint = did_you_mean(name, names); !hint.empty()) message += " (did you mean \"" + hint + "\"?)";
      out.push_back({file.string(), 0, 0, message, "template"});
      continue;
    }
    std::ifstream in(file, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    mustache parsed(text.str());
    if (!parsed.is_valid()) {
      out.push_back({file.string(), 0, 0, "template does not parse: " + parsed.error_message(), "template"});
      continue;
    }
    for (const auto& var : used_variables(text.str())) {
      if (var == "=" || var == ">") {
        out.push_back({file.string(), 0, 0, "partials and changed delimiters are not supported", "template"});
      } else if (!kind->second.contains(var)) {
        out.push_back({file.string(), 0, 0, "\"" + var + "\" is not something a " + name + " notice provides", "template"});
      }
    }
    t.sources_[name][locale] = text.str();
  }
  for (const auto& [name, locales] : t.sources_) {
    if (!locales.contains("en")) {
      out.push_back({(dir / (name + ".en.mustache")).string(), 0, 0,
                     "every notice needs an English template to fall back to", "template"});
    }
  }
  return t;
}

bool Templates::has(std::string_view name) const {
  auto it = sources_.find(name);
  return it != sources_.end() && it->second.contains("en");
}

namespace {
data to_mustache(const json::value& v) {
  switch (v.kind()) {
    case json::kind::object: {
      // An empty string is absent, so {{#name}}…{{/name}} leaves it out.
      data d{data::type::object};
      for (const auto& [key, value] : v.get_object()) {
        if (value.is_string() && value.get_string().empty()) continue;
        d.set(std::string(key), to_mustache(value));
      }
      return d;
    }
    case json::kind::array: {
      data list{data::type::list};
      for (const auto& item : v.get_array()) list.push_back(to_mustache(item));
      return list;
    }
    case json::kind::string: return data(std::string(v.get_string()));
    case json::kind::bool_: return v.get_bool() ? data(data::type::bool_true) : data(data::type::bool_false);
    case json::kind::null: return data(std::string());
    default: return data(json::serialize(v));
  }
}
}  // namespace

std::string Templates::render(std::string_view name, std::string_view locale, const json::value& values) const {
  auto it = sources_.find(name);
  if (it == sources_.end()) throw std::runtime_error("no template " + std::string(name));
  const auto& locales = it->second;
  std::string wanted(locale);
  auto found = locales.find(wanted);
  if (found == locales.end()) found = locales.find(wanted.substr(0, wanted.find('-')));
  if (found == locales.end()) found = locales.find("en");
  if (found == locales.end()) throw std::runtime_error("no English template " + std::string(name));
  mustache m(found->second);
  // Notices are plain text (mail bodies, the partner's JSON "text"), not
  // HTML: "O'Brien" must not arrive as "O&#39;Brien".
  m.set_custom_escape([](const std::string& s) { return s; });
  std::string text = m.render(to_mustache(values));
  // Sections that render nothing leave their lines behind (kainjow keeps a
  // false section's standalone tag lines): a notice never has more than one
  // blank line in a row.
  std::string out;
  out.reserve(text.size());
  std::size_t newlines = 0;
  for (char c : text) {
    newlines = c == '\n' ? newlines + 1 : 0;
    if (newlines <= 2) out += c;
  }
  return out;
}

}  // namespace privacyd::notify
