#include "daemon/engine/expression.hpp"

#include <boost/json.hpp>

namespace privacyd::engine {

namespace json = boost::json;

struct Condition::Node {
  enum class Kind { path, equals, not_equals, negate, all, any };
  Kind kind;
  std::vector<std::string> path;          // path, equals, not_equals
  std::string literal;                    // equals, not_equals
  std::vector<std::shared_ptr<const Node>> children;  // negate (1), all, any
};

namespace {

using NodePtr = std::shared_ptr<const Condition::Node>;
using Kind = Condition::Node::Kind;

struct ParseError {
  std::size_t offset;
  std::string message;
};

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  NodePtr parse_all(std::vector<std::vector<std::string>>& paths) {
    paths_ = &paths;
    skip_space();
    if (pos_ == text_.size()) throw ParseError{0, "empty condition"};
    auto node = parse_or();
    skip_space();
    if (pos_ != text_.size()) throw ParseError{pos_, "unexpected \"" + std::string(text_.substr(pos_, 1)) + "\""};
    return node;
  }

 private:
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t')) ++pos_;
  }
  bool take(std::string_view token) {
    skip_space();
    if (text_.substr(pos_, token.size()) == token) {
      pos_ += token.size();
      return true;
    }
    return false;
  }

  NodePtr parse_or() {
    auto first = parse_and();
    if (!peek("||")) return first;
    auto node = std::make_shared<Condition::Node>(Condition::Node{Kind::any, {}, {}, {first}});
    while (take("||")) node->children.push_back(parse_and());
    return node;
  }

  NodePtr parse_and() {
    auto first = parse_unary();
    if (!peek("&&")) return first;
    auto node = std::make_shared<Condition::Node>(Condition::Node{Kind::all, {}, {}, {first}});
    while (take("&&")) node->children.push_back(parse_unary());
    return node;
  }

  bool peek(std::string_view token) {
    skip_space();
    return text_.substr(pos_, token.size()) == token;
  }

  NodePtr parse_unary() {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == '!' && text_.substr(pos_, 2) != "!=") {
      ++pos_;
      auto inner = parse_unary();
      return std::make_shared<Condition::Node>(Condition::Node{Kind::negate, {}, {}, {inner}});
    }
    if (take("(")) {
      auto inner = parse_or();
      if (!take(")")) throw ParseError{pos_, "missing \")\""};
      return inner;
    }
    auto path = parse_path();
    paths_->push_back(path);
    if (take("==")) return comparison(Kind::equals, std::move(path));
    if (take("!=")) return comparison(Kind::not_equals, std::move(path));
    return std::make_shared<Condition::Node>(Condition::Node{Kind::path, std::move(path), {}, {}});
  }

  NodePtr comparison(Kind kind, std::vector<std::string> path) {
    skip_space();
    if (pos_ >= text_.size() || text_[pos_] != '\'') throw ParseError{pos_, "expected a quoted string like 'x'"};
    auto close = text_.find('\'', pos_ + 1);
    if (close == std::string_view::npos) throw ParseError{pos_, "unterminated string"};
    std::string literal(text_.substr(pos_ + 1, close - pos_ - 1));
    pos_ = close + 1;
    return std::make_shared<Condition::Node>(Condition::Node{kind, std::move(path), std::move(literal), {}});
  }

  static bool ident_char(char c, bool first) {
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    return first ? alpha : alpha || (c >= '0' && c <= '9') || c == '-';
  }

  std::vector<std::string> parse_path() {
    skip_space();
    std::vector<std::string> path;
    for (;;) {
      std::size_t start = pos_;
      if (pos_ >= text_.size() || !ident_char(text_[pos_], true)) {
        throw ParseError{pos_, pos_ >= text_.size() ? "expected a path like subject.email" : "expected a path, not \"" +
                                                           std::string(text_.substr(pos_, 1)) + "\""};
      }
      while (pos_ < text_.size() && ident_char(text_[pos_], false)) ++pos_;
      path.emplace_back(text_.substr(start, pos_ - start));
      if (pos_ < text_.size() && text_[pos_] == '.') {
        ++pos_;
        continue;
      }
      return path;
    }
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  std::vector<std::vector<std::string>>* paths_ = nullptr;
};

bool truthy(const json::value* v) {
  if (v == nullptr) return false;
  switch (v->kind()) {
    case json::kind::null: return false;
    case json::kind::bool_: return v->get_bool();
    case json::kind::int64: return v->get_int64() != 0;
    case json::kind::uint64: return v->get_uint64() != 0;
    case json::kind::double_: return v->get_double() != 0.0;
    case json::kind::string: return !v->get_string().empty();
    case json::kind::array: return !v->get_array().empty();
    case json::kind::object: return !v->get_object().empty();
  }
  return false;
}

std::string as_text(const json::value* v) {
  if (v == nullptr || v->is_null()) return {};
  if (v->is_string()) return std::string(v->get_string());
  return json::serialize(*v);
}

bool eval(const Condition::Node& n, const json::value& ctx) {
  switch (n.kind) {
    case Kind::path: return truthy(lookup(ctx, n.path));
    case Kind::equals: return lookup(ctx, n.path) != nullptr && as_text(lookup(ctx, n.path)) == n.literal;
    case Kind::not_equals: return lookup(ctx, n.path) == nullptr || as_text(lookup(ctx, n.path)) != n.literal;
    case Kind::negate: return !eval(*n.children.front(), ctx);
    case Kind::all:
      for (const auto& c : n.children) {
        if (!eval(*c, ctx)) return false;
      }
      return true;
    case Kind::any:
      for (const auto& c : n.children) {
        if (eval(*c, ctx)) return true;
      }
      return false;
  }
  return false;
}

}  // namespace

const json::value* lookup(const json::value& context, const std::vector<std::string>& path) {
  const json::value* v = &context;
  for (const auto& key : path) {
    if (!v->is_object()) return nullptr;
    v = v->get_object().if_contains(key);
    if (v == nullptr) return nullptr;
  }
  return v;
}

std::variant<Condition, Condition::Error> Condition::parse(std::string_view text) {
  Condition c;
  c.text_ = std::string(text);
  try {
    Parser parser(text);
    c.root_ = parser.parse_all(c.paths_);
  } catch (const ParseError& e) {
    return Error{e.offset, e.message};
  }
  return c;
}

bool Condition::evaluate(const json::value& context) const { return eval(*root_, context); }

}  // namespace privacyd::engine
