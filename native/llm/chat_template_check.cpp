#include "llm/chat_template_check.h"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>

#include "jinja/lexer.h"
#include "jinja/parser.h"
#include "llm/chat_template_internal.h"

namespace genai {
namespace tmpl_detail {

namespace {

void Add(Slots& s, jj::statement_ptr& p) {
  if (p) s.children.push_back(&p);
}
void AddAll(Slots& s, jj::statements& v) {
  for (auto& p : v) Add(s, p);
}

// Depth of the AST, refused past kMaxAstDepth (the walk itself stops there).
void CheckDepth(jj::statement* n, int depth) {
  if (depth > kMaxAstDepth) Refuse("nested deeper than " + Num(kMaxAstDepth) + " levels (expressions, blocks, operator chains)");
  Slots s = SlotsOf(n);
  for (auto* c : s.children) CheckDepth(c->get(), depth + 1);
  for (auto* b : s.bodies)
    for (auto& c : *b)
      if (c) CheckDepth(c.get(), depth + 1);
}

// ---------------------------------------------------------------- nesting before parsing

// An upper bound of the parser's recursion, from the tokens: blocks (if/for/
// macro/call/filter/set…endset; each elif nests), brackets, and the prefix
// and chain operators the parser recurses on (unary -/+/not, ternary else,
// call chains f()()). The parser has no limit of its own; it runs after this.
void CheckNesting(const std::vector<jj::token>& toks) {
  using T = jj::token;
  std::vector<int> blocks;     // per open block: the levels it holds (1 + its elifs)
  std::vector<int> frames{0};  // per open bracket (and the tag): its chain operators
  int block_levels = 0, bracket_levels = 0, chain_total = 0, worst = 0;
  bool in_tag = false;
  for (size_t i = 0; i < toks.size(); i++) {
    const T& t = toks[i];
    switch (t.t) {
      case T::open_statement:
      case T::open_expression: {
        in_tag = true;
        frames.assign(1, 0), bracket_levels = 0, chain_total = 0;
        if (t.t == T::open_statement && i + 1 < toks.size() && toks[i + 1].t == T::identifier) {
          const std::string& w = toks[i + 1].value;
          if (w == "if" || w == "for" || w == "macro" || w == "call" || w == "filter") {
            blocks.push_back(1), block_levels++;
          } else if (w == "elif" && !blocks.empty()) {
            blocks.back()++, block_levels++;
          } else if (w == "set") {
            bool has_equals = false;
            for (size_t j = i + 2; j < toks.size() && toks[j].t != T::close_statement; j++)
              if (toks[j].t == T::equals) has_equals = true;
            if (!has_equals) blocks.push_back(1), block_levels++;
          } else if ((w == "endif" || w == "endfor" || w == "endmacro" || w == "endcall" || w == "endfilter" || w == "endset") && !blocks.empty()) {
            block_levels -= blocks.back(), blocks.pop_back();
          }
          i++;  // the statement's keyword is not an operator
        }
        break;
      }
      case T::close_statement:
      case T::close_expression: in_tag = false; break;
      case T::open_paren:
      case T::open_square_bracket:
      case T::open_curly_bracket:
        if (t.t == T::open_paren && i > 0 && toks[i - 1].t == T::close_paren) frames.back()++, chain_total++;  // f()()
        frames.push_back(0), bracket_levels++;
        break;
      case T::close_paren:
      case T::close_square_bracket:
      case T::close_curly_bracket:
        if (frames.size() > 1) chain_total -= frames.back(), frames.pop_back(), bracket_levels--;
        break;
      case T::unary_operator: frames.back()++, chain_total++; break;
      case T::identifier:
        if (in_tag && (t.value == "not" || t.value == "else" || t.value == "if")) frames.back()++, chain_total++;
        break;
      default: break;
    }
    worst = std::max(worst, block_levels + bracket_levels + chain_total);
    if (worst > kMaxNesting) Refuse("nested deeper than " + Num(kMaxNesting) + " levels (blocks, brackets, operator chains) before parsing");
  }
}

// ---------------------------------------------------------------- static analysis

std::optional<int64_t> ConstInt(const jj::statement* n) {
  if (auto* i = dynamic_cast<const jj::integer_literal*>(n)) return i->val;
  if (auto* u = dynamic_cast<const jj::unary_expression*>(n))
    if (auto* i = dynamic_cast<const jj::integer_literal*>(u->argument.get())) {
      if (u->op.value == "-") return -i->val;
      if (u->op.value == "+") return i->val;
    }
  return std::nullopt;
}

// The constant iteration count of `range(<int literals>)`, if that is what n is.
std::optional<uint64_t> ConstRange(const jj::statement* n) {
  auto* c = dynamic_cast<const jj::call_expression*>(n);
  if (!c) return std::nullopt;
  auto* id = dynamic_cast<const jj::identifier*>(c->callee.get());
  if (!id || id->val != "range" || c->args.empty() || c->args.size() > 3) return std::nullopt;
  std::vector<int64_t> a;
  for (auto& arg : c->args) {
    auto v = ConstInt(arg.get());
    if (!v) return std::nullopt;
    a.push_back(*v);
  }
  if (a.size() == 1) return RangeCount(0, a[0], 1);
  return RangeCount(a[0], a[1], a.size() == 3 ? a[2] : 1);
}

struct MacroInfo {
  std::set<std::string> params;
  std::set<std::string> unconditional_calls;  // macros its body always calls
};

class StaticCheck {
 public:
  void Run(jj::program& prog) {
    for (auto& s : prog.body) Walk(s.get(), false, nullptr, 1);
    CheckCycles();
  }

 private:
  std::map<std::string, MacroInfo> macros_;

  void Walk(jj::statement* n, bool cond, MacroInfo* in_macro, uint64_t loops) {
    if (!n) return;
    if (auto* m = dynamic_cast<jj::macro_statement*>(n)) {
      auto* id = dynamic_cast<jj::identifier*>(m->name.get());
      MacroInfo& info = macros_[id ? id->val : ""];
      for (auto& a : m->args) {
        if (auto* p = dynamic_cast<jj::identifier*>(a.get())) info.params.insert(p->val);
        if (auto* k = dynamic_cast<jj::keyword_argument_expression*>(a.get())) {
          if (auto* p = dynamic_cast<jj::identifier*>(k->key.get())) info.params.insert(p->val);
          Walk(k->val.get(), true, &info, 1);
        }
      }
      for (auto& s : m->body) Walk(s.get(), false, &info, 1);
      return;
    }
    if (auto* c = dynamic_cast<jj::call_expression*>(n)) {
      if (auto r = ConstRange(c); r && *r > kMaxItems) Refuse("range() of " + Num(*r) + " items (the limit is " + Num(kMaxItems) + ")");
      if (auto* id = dynamic_cast<jj::identifier*>(c->callee.get()); id && in_macro && !cond && !in_macro->params.count(id->val))
        in_macro->unconditional_calls.insert(id->val);
    }
    if (auto* b = dynamic_cast<jj::binary_expression*>(n)) {
      if (b->op.value == "*") {
        const jj::string_literal* s = dynamic_cast<jj::string_literal*>(b->left.get());
        auto k = ConstInt(b->right.get());
        if (!s) s = dynamic_cast<jj::string_literal*>(b->right.get()), k = ConstInt(b->left.get());
        if (s && k && *k > 0 &&
            (static_cast<uint64_t>(*k) > kMaxParts || static_cast<__int128>(*k) * static_cast<__int128>(s->val.size()) > static_cast<__int128>(kMaxBytes)))
          Refuse("a string repeated " + Num(static_cast<uint64_t>(*k)) + " times (the limits are " + Num(kMaxBytes) + " bytes, " + Num(kMaxParts) + " pieces)");
      }
      if (b->op.value == "and" || b->op.value == "or") {
        Walk(b->left.get(), cond, in_macro, loops);
        Walk(b->right.get(), true, in_macro, loops);
        return;
      }
    }
    if (auto* f = dynamic_cast<jj::for_statement*>(n)) {
      Walk(f->iterable.get(), cond, in_macro, loops);
      uint64_t inner = loops;
      const jj::statement* it = f->iterable.get();
      if (auto* sel = dynamic_cast<const jj::select_expression*>(it)) it = sel->lhs.get();
      if (auto r = ConstRange(it)) {
        __int128 p = static_cast<__int128>(loops) * *r;
        if (p > static_cast<__int128>(kMaxSteps)) Refuse("nested loops of more than " + Num(kMaxSteps) + " iterations over constant ranges");
        inner = static_cast<uint64_t>(p);
      }
      for (auto& s : f->body) Walk(s.get(), true, in_macro, std::max<uint64_t>(inner, 1));
      for (auto& s : f->default_block) Walk(s.get(), true, in_macro, loops);
      return;
    }
    if (auto* i = dynamic_cast<jj::if_statement*>(n)) {
      Walk(i->test.get(), cond, in_macro, loops);
      for (auto& s : i->body) Walk(s.get(), true, in_macro, loops);
      for (auto& s : i->alternate) Walk(s.get(), true, in_macro, loops);
      return;
    }
    if (auto* t = dynamic_cast<jj::ternary_expression*>(n)) {
      Walk(t->condition.get(), cond, in_macro, loops);
      Walk(t->true_expr.get(), true, in_macro, loops);
      Walk(t->false_expr.get(), true, in_macro, loops);
      return;
    }
    if (auto* s = dynamic_cast<jj::select_expression*>(n)) {
      Walk(s->test.get(), cond, in_macro, loops);
      Walk(s->lhs.get(), true, in_macro, loops);
      return;
    }
    if (auto* cs = dynamic_cast<jj::call_statement*>(n)) {
      Walk(cs->call.get(), cond, in_macro, loops);
      for (auto& s : cs->body) Walk(s.get(), true, in_macro, loops);  // runs when the macro calls caller()
      return;
    }
    Slots s = SlotsOf(n);
    for (auto* c : s.children) Walk(c->get(), cond, in_macro, loops);
    for (auto* b : s.bodies)
      for (auto& c : *b) Walk(c.get(), cond, in_macro, loops);
  }

  // A cycle of unconditional calls between macros never ends.
  void CheckCycles() {
    std::map<std::string, int> state;  // 1 on the path, 2 done
    std::vector<std::string> path;
    std::function<void(const std::string&)> visit = [&](const std::string& name) {
      state[name] = 1;
      path.push_back(name);
      for (const std::string& callee : macros_[name].unconditional_calls) {
        if (!macros_.count(callee)) continue;
        if (state[callee] == 1) {
          std::string cycle;
          for (auto it = std::find(path.begin(), path.end(), callee); it != path.end(); ++it) cycle += "'" + *it + "' -> ";
          Refuse("macro " + cycle + "'" + callee + "' calls itself unconditionally: infinite recursion");
        }
        if (state[callee] == 0) visit(callee);
      }
      path.pop_back();
      state[name] = 2;
    };
    std::vector<std::string> names;
    for (auto& kv : macros_) names.push_back(kv.first);
    for (auto& n : names)
      if (state[n] == 0) visit(n);
  }
};

// ---------------------------------------------------------------- parse

std::string NormalizeNewlines(const std::string& src) {
  // what jinja::lexer does, in linear time (its erase loop is quadratic in the number of \r\n)
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); i++) {
    if (src[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < src.size() && src[i + 1] == '\n') i++;
    } else {
      out.push_back(src[i]);
    }
  }
  return out;
}

}  // namespace

Slots SlotsOf(jj::statement* n) {
  Slots s;
  if (auto* p = dynamic_cast<jj::program*>(n)) {
    s.bodies.push_back(&p->body);
  } else if (auto* i = dynamic_cast<jj::if_statement*>(n)) {
    Add(s, i->test), s.bodies.push_back(&i->body), s.bodies.push_back(&i->alternate);
  } else if (auto* f = dynamic_cast<jj::for_statement*>(n)) {
    Add(s, f->loopvar), Add(s, f->iterable), s.bodies.push_back(&f->body), s.bodies.push_back(&f->default_block);
  } else if (auto* st = dynamic_cast<jj::set_statement*>(n)) {
    Add(s, st->assignee), Add(s, st->val), s.bodies.push_back(&st->body);
  } else if (auto* m = dynamic_cast<jj::macro_statement*>(n)) {
    Add(s, m->name), AddAll(s, m->args), s.bodies.push_back(&m->body);
  } else if (auto* me = dynamic_cast<jj::member_expression*>(n)) {
    Add(s, me->object), Add(s, me->property);
  } else if (auto* c = dynamic_cast<jj::call_expression*>(n)) {
    Add(s, c->callee), AddAll(s, c->args);
  } else if (auto* a = dynamic_cast<jj::array_literal*>(n)) {
    AddAll(s, a->val);
  } else if (auto* t = dynamic_cast<jj::tuple_literal*>(n)) {
    AddAll(s, t->val);
  } else if (auto* o = dynamic_cast<jj::object_literal*>(n)) {
    for (auto& kv : o->val) Add(s, kv.first), Add(s, kv.second);
  } else if (auto* b = dynamic_cast<jj::binary_expression*>(n)) {
    Add(s, b->left), Add(s, b->right);
  } else if (auto* fe = dynamic_cast<jj::filter_expression*>(n)) {
    Add(s, fe->operand), Add(s, fe->filter);
  } else if (auto* fs = dynamic_cast<jj::filter_statement*>(n)) {
    Add(s, fs->filter), s.bodies.push_back(&fs->body);
  } else if (auto* se = dynamic_cast<jj::select_expression*>(n)) {
    Add(s, se->lhs), Add(s, se->test);
  } else if (auto* te = dynamic_cast<jj::test_expression*>(n)) {
    Add(s, te->operand), Add(s, te->test);
  } else if (auto* u = dynamic_cast<jj::unary_expression*>(n)) {
    Add(s, u->argument);
  } else if (auto* sl = dynamic_cast<jj::slice_expression*>(n)) {
    Add(s, sl->start_expr), Add(s, sl->stop_expr), Add(s, sl->step_expr);
  } else if (auto* k = dynamic_cast<jj::keyword_argument_expression*>(n)) {
    Add(s, k->key), Add(s, k->val);
  } else if (auto* sp = dynamic_cast<jj::spread_expression*>(n)) {
    Add(s, sp->argument);
  } else if (auto* cs = dynamic_cast<jj::call_statement*>(n)) {
    Add(s, cs->call), AddAll(s, cs->caller_args), s.bodies.push_back(&cs->body);
  } else if (auto* te2 = dynamic_cast<jj::ternary_expression*>(n)) {
    Add(s, te2->condition), Add(s, te2->true_expr), Add(s, te2->false_expr);
  }
  return s;
}

Parsed ParseAndCheck(const std::string& raw) {
  if (raw.size() > kMaxSourceBytes) Refuse(Num(raw.size()) + " bytes long (the limit is " + Num(kMaxSourceBytes) + ")");
  jj::lexer lexer;
  jj::lexer_result lexed;
  Parsed out;
  try {
    lexed = lexer.tokenize(NormalizeNewlines(raw));
  } catch (const std::exception& e) {
    throw CodedError(code::INVALID_ARGUMENT, std::string("invalid chat template: ") + e.what());
  }
  CheckNesting(lexed.tokens);
  try {
    out.prog = jj::parse_from_tokens(lexed);
  } catch (const std::exception& e) {
    throw CodedError(code::INVALID_ARGUMENT, std::string("invalid chat template: ") + e.what());
  }
  out.source = lexed.source;
  CheckDepth(&out.prog, 0);
  StaticCheck().Run(out.prog);
  return out;
}

}  // namespace tmpl_detail

void CheckChatTemplate(const std::string& source) { tmpl_detail::ParseAndCheck(source); }

}  // namespace genai
