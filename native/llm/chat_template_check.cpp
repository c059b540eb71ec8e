#include "llm/chat_template_check.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>
#include <utility>

#include "chat.h"
#include "common.h"
#include "jinja/caps.h"
#include "jinja/lexer.h"
#include "jinja/parser.h"
#include "jinja/runtime.h"
#include "jinja/value.h"
#include "util/errors.h"
#include "util/jobs.h"
#include "util/stack_thread.h"

// llama.cpp common/chat.cpp's definition of the type chat.h declares opaque,
// token for token (so it is the same type, not a look-alike): the rendering
// pipeline (common_chat_templates_apply: capability detection, workarounds,
// the autoparser's differential renders) runs on template_default->prog, and
// RenderChatTemplate puts its guarded program there. Checked at run time
// against the public accessors (a layout that no longer matches fails closed).
// clang-format off
struct common_chat_templates {
    bool add_bos;
    bool add_eos;
    bool has_explicit_template;  // Model had builtin template or template overridden was specified.
    std::unique_ptr<common_chat_template> template_default;  // always set (defaults to chatml)
    std::unique_ptr<common_chat_template> template_tool_use;
};
// clang-format on

namespace genai {

namespace jj = jinja;
using namespace tmpl_limits;

namespace {

[[noreturn]] void Refuse(const std::string& msg) { throw CodedError(code::INVALID_ARGUMENT, "chat template refused: " + msg); }

std::string Num(uint64_t n) { return std::to_string(n); }

// ---------------------------------------------------------------- AST walking

// The child slots and statement lists of a node (every node type of jinja/runtime.h).
struct Slots {
  std::vector<jj::statement_ptr*> children;
  std::vector<jj::statements*> bodies;
};

void Add(Slots& s, jj::statement_ptr& p) {
  if (p) s.children.push_back(&p);
}
void AddAll(Slots& s, jj::statements& v) {
  for (auto& p : v) Add(s, p);
}

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

// Items of range(start, stop, step); 0 when empty, UINT64_MAX on a zero step.
uint64_t RangeCount(int64_t start, int64_t stop, int64_t step) {
  if (step == 0) return 0;
  __int128 span = step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
  if (span <= 0) return 0;
  __int128 st = step > 0 ? step : -static_cast<__int128>(step);
  __int128 n = (span + st - 1) / st;
  return n > static_cast<__int128>(UINT64_MAX) ? UINT64_MAX : static_cast<uint64_t>(n);
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

struct Parsed {
  jj::program prog;
  std::string source;  // as the lexer normalized it (what common_chat_template keeps)
};

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

// ---------------------------------------------------------------- the budget

struct LimitHit : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Metrics {
  uint64_t nodes = 0, bytes = 0, parts = 0;
  int depth = 0;
};

class Budget {
 public:
  explicit Budget(const CancelFlag& cancel) : cancel_(cancel), deadline_(std::chrono::steady_clock::now() + std::chrono::milliseconds(kMaxRenderMs)) {}

  bool tripped() const { return tripped_; }
  [[noreturn]] void Rethrow() const { throw CodedError(code_, msg_); }

  [[noreturn]] void Trip(const char* c, const std::string& msg) {
    if (!tripped_) tripped_ = true, code_ = c, msg_ = msg;
    throw LimitHit(msg_);
  }
  [[noreturn]] void Limit(const std::string& msg) { Trip(code::INVALID_ARGUMENT, "chat template stopped: " + msg); }

  // Every guard node: once tripped, everything after fails at once (the
  // interpreter's capability probes swallow exceptions and render again).
  void Tick() {
    if (tripped_) throw LimitHit(msg_);
    if (cancel_.IsCancelled()) Trip(code::ABORTED, "chat template rendering was aborted");
    if (++steps_ > kMaxSteps) Limit("more than " + Num(kMaxSteps) + " steps (loop iterations, calls, operators)");
    if (std::chrono::steady_clock::now() > deadline_) Limit("rendering took longer than " + Num(kMaxRenderMs / 1000) + " s");
    char probe = 0;
    uintptr_t floor = StackThreadFloor();
    if (floor != 0 && reinterpret_cast<uintptr_t>(&probe) < floor + kStackReserve) Limit("nested too deeply (the render stack is nearly used up)");
  }

  struct CallScope {
    Budget& b;
    explicit CallScope(Budget& budget) : b(budget) {
      if (++b.call_depth_ > kMaxCallDepth) b.Limit("calls nested deeper than " + Num(kMaxCallDepth) + " (a recursive macro?)");
    }
    ~CallScope() { b.call_depth_--; }
  };

  // Measures v as the tree a traversal walks (a value shared twice counts
  // twice), refusing past the limits; `owner` is a container v must not reach
  // (it is being stored into it).
  Metrics Measure(const jj::value& v, const jj::value_t* owner = nullptr) {
    std::unordered_map<const jj::value_t*, Metrics> memo;
    return Walk(v.get(), 0, owner, memo);
  }

  // Output text: every printed value counts at each level that prints it
  // (the interpreter collects a loop's or macro's output before printing it).
  void Printed(uint64_t bytes) {
    printed_ += bytes;
    if (printed_ > kMaxPrinted) Limit("printed more than " + Num(kMaxPrinted) + " bytes in all");
  }

  // The value's own size (a string's text and pieces, an array's or object's
  // element count), not its contents: for values whose contents were checked
  // where they were made or stored.
  uint64_t Shallow(const jj::value& v) {
    if (!v) return 0;
    if (dynamic_cast<const jj::value_string_t*>(v.get())) {
      uint64_t bytes = v->val_str.length(), parts = v->val_str.parts.size();
      if (bytes > kMaxBytes) Limit("a string of " + Num(bytes) + " bytes (the limit is " + Num(kMaxBytes) + ")");
      if (parts > kMaxParts) Limit("a string of " + Num(parts) + " pieces (the limit is " + Num(kMaxParts) + ")");
      return bytes;
    }
    if (v->val_arr.size() > kMaxNodes() || v->val_obj.size() > kMaxNodes()) Limit("an array or object of more than " + Num(kMaxNodes()) + " elements");
    return 0;
  }

  // Nesting that a mutation (append, set ns.x) adds to values that already exist.
  void Grow(int depth) {
    growth_ += static_cast<uint64_t>(depth);
    if (growth_ > kMaxGrowth) Limit("values nested into existing ones more than " + Num(kMaxGrowth) + " levels in all (append / set ns.x)");
  }

 private:
  const CancelFlag& cancel_;
  std::chrono::steady_clock::time_point deadline_;
  uint64_t steps_ = 0, growth_ = 0, printed_ = 0;
  int call_depth_ = 0;
  bool tripped_ = false;
  const char* code_ = code::INVALID_ARGUMENT;
  std::string msg_;

  Metrics Walk(const jj::value_t* v, int depth, const jj::value_t* owner, std::unordered_map<const jj::value_t*, Metrics>& memo) {
    Metrics m;
    if (v == nullptr) return m;
    if (owner != nullptr && v == owner) Limit("a value would contain itself");
    if (depth > kMaxDataDepth) Limit("a value nested deeper than " + Num(kMaxDataDepth) + " levels (or one that contains itself)");
    if (auto* kw = dynamic_cast<const jj::value_kwarg_t*>(v)) return Walk(kw->val.get(), depth, owner, memo);
    bool is_array = dynamic_cast<const jj::value_array_t*>(v) != nullptr, is_object = dynamic_cast<const jj::value_object_t*>(v) != nullptr;
    if (!is_array && !is_object) {
      m.nodes = 1;
      if (dynamic_cast<const jj::value_string_t*>(v)) m.bytes = v->val_str.length(), m.parts = v->val_str.parts.size();
      if (m.bytes > kMaxBytes) Limit("a string of " + Num(m.bytes) + " bytes (the limit is " + Num(kMaxBytes) + ")");
      if (m.parts > kMaxParts) Limit("a string of " + Num(m.parts) + " pieces (the limit is " + Num(kMaxParts) + ")");
      return m;
    }
    auto it = memo.find(v);
    if (it != memo.end() && owner == nullptr) return it->second;
    m.nodes = 1;
    auto add = [&](const jj::value& c) {
      Metrics cm = Walk(c.get(), depth + 1, owner, memo);
      m.nodes += cm.nodes, m.bytes += cm.bytes, m.parts += cm.parts, m.depth = std::max(m.depth, cm.depth);
      if (m.nodes > kMaxNodes()) Limit("a value of more than " + Num(kMaxNodes()) + " elements (counting shared ones each time)");
      if (m.bytes > kMaxBytes) Limit("a value holding more than " + Num(kMaxBytes) + " bytes of text");
      if (m.parts > kMaxParts) Limit("a value holding more than " + Num(kMaxParts) + " string pieces");
    };
    if (is_array) {
      if (v->val_arr.size() > kMaxNodes()) Limit("an array of " + Num(v->val_arr.size()) + " elements");
      for (const auto& c : v->val_arr) add(c);
    } else {
      if (v->val_obj.size() > kMaxNodes()) Limit("an object of " + Num(v->val_obj.size()) + " keys");
      for (const auto& kv : v->val_obj) add(kv.first), add(kv.second);
    }
    m.depth += 1;
    memo[v] = m;
    return m;
  }

  // Values may hold more elements than one range()/list creates (a long conversation).
  static constexpr uint64_t kMaxNodes() { return kMaxItems * 10; }
};

// Builtins that read only the top level of their operands (or their own
// strings): their operands are not walked. The others (tojson, string, join,
// sort, unique, min, max, sum, dictsort, map, tests, comparisons…) traverse
// or compare contents, which are measured first.
bool Shallow(const std::string& name) {
  static const std::set<std::string> names = {
      "length",     "count",           "first",        "last",   "default", "d",     "items", "keys",  "values", "get",    "list",   "reverse", "slice",
      "pop",        "selectattr",      "rejectattr",   "select", "reject",  "upper", "lower", "strip", "trim",   "rstrip", "lstrip", "title",   "capitalize",
      "startswith", "endswith",        "split",        "rsplit", "replace", "int",   "float", "abs",   "safe",   "escape", "e",      "indent",  "truncate",
      "wordcount",  "raise_exception", "strftime_now", "range",  "format",  "center"};
  return names.count(name) > 0;
}

// ---------------------------------------------------------------- builtin pre-checks

const jj::value* Arg(const std::vector<jj::value>& args, size_t pos, const char* kw) {
  size_t n = 0;
  for (const auto& a : args) {
    if (auto* k = dynamic_cast<const jj::value_kwarg_t*>(a.get())) {
      if (k->key == kw) return &k->val;
      continue;
    }
    if (n++ == pos) return &a;
  }
  return nullptr;
}

bool IsString(const jj::value* v) { return v && dynamic_cast<const jj::value_string_t*>(v->get()); }
bool IsInt(const jj::value* v) { return v && dynamic_cast<const jj::value_int_t*>(v->get()); }

// Builtins whose output can be much larger than their input, checked on the
// evaluated input (`self`: the filtered value or the method's object) and arguments.
void CheckBuiltin(Budget& b, std::string name, const jj::value& self, const std::vector<jj::value>& args) {
  if (name == "count") name = "length";
  if (name == "trim") name = "strip";
  uint64_t len = 0, items = 0;
  if (self) {
    if (dynamic_cast<const jj::value_string_t*>(self.get())) len = self->val_str.length();
    if (dynamic_cast<const jj::value_array_t*>(self.get())) items = self->val_arr.size();
  }
  auto over = [&](__int128 est, const char* what) {
    if (est > static_cast<__int128>(kMaxBytes))
      b.Limit(std::string(what) + " would make about " + Num(static_cast<uint64_t>(std::min<__int128>(est, UINT64_MAX))) + " bytes (the limit is " +
              Num(kMaxBytes) + ")");
  };
  if (name == "join") {
    const jj::value* sep = Arg(args, 0, "d");
    uint64_t sep_len = IsString(sep) ? (*sep)->val_str.length() : 0;
    uint64_t n = items ? items : len;
    over(static_cast<__int128>(n) * sep_len + b.Measure(self).bytes + static_cast<__int128>(n) * 24, "join()");
  } else if (name == "indent") {
    const jj::value* w = Arg(args, 0, "width");
    __int128 width = IsInt(w) ? std::max<int64_t>(0, (*w)->val_int) : IsString(w) ? (*w)->val_str.length() : 4;
    uint64_t lines = 1;
    if (len) {
      std::string s = self->val_str.str();
      lines += std::count(s.begin(), s.end(), '\n');
    }
    over(width * lines + len, "indent()");
  } else if (name == "replace") {
    const jj::value* from = Arg(args, 0, "old");
    const jj::value* to = Arg(args, 1, "new");
    if (IsString(from) && IsString(to)) {
      uint64_t f = (*from)->val_str.length(), t = (*to)->val_str.length();
      over(static_cast<__int128>(len / std::max<uint64_t>(f, 1) + 1) * t + len, "replace()");
    }
  } else if (name == "list") {
    if (len > kMaxItems) b.Limit("list() of a " + Num(len) + "-character string (the limit is " + Num(kMaxItems) + " items)");
  } else if (name == "tojson" || name == "string") {
    Metrics m = b.Measure(self);
    const jj::value* ind = Arg(args, 0, "indent");
    __int128 indent = IsInt(ind) ? std::max<int64_t>(0, (*ind)->val_int) : 0;
    over(static_cast<__int128>(m.bytes) * 6 + static_cast<__int128>(m.nodes) * (16 + indent * (m.depth + 1)), "tojson()/string()");
  } else if (name == "center" || name == "ljust" || name == "rjust" || name == "truncate" || name == "wordwrap" || name == "batch" || name == "slice") {
    const jj::value* n = Arg(args, 0, "width");
    if (IsInt(n) && (*n)->val_int > static_cast<int64_t>(kMaxBytes)) b.Limit(name + "() with " + Num((*n)->val_int));
  }
}

// range() with its evaluated arguments.
void CheckRange(Budget& b, const std::vector<jj::value>& args) {
  std::vector<int64_t> a;
  for (const auto& v : args) {
    if (!dynamic_cast<const jj::value_int_t*>(v.get())) return;  // the builtin reports it
    a.push_back(v->val_int);
  }
  if (a.empty() || a.size() > 3) return;
  uint64_t n = a.size() == 1 ? RangeCount(0, a[0], 1) : RangeCount(a[0], a[1], a.size() == 3 ? a[2] : 1);
  if (n > kMaxItems) b.Limit("range() of " + Num(n) + " items (the limit is " + Num(kMaxItems) + ")");
}

// ---------------------------------------------------------------- guard nodes

// A value already computed, as an expression (to run an operator or filter
// of the interpreter on operands the guard evaluated and checked).
struct Held : jj::expression {
  jj::value v;
  Held(jj::value value, size_t at) : v(std::move(value)) { pos = at; }
  std::string type() const override { return "Held"; }
  jj::value execute_impl(jj::context&) const override { return v; }
};

jj::statement_ptr Hold(jj::value v, size_t at) { return std::make_unique<Held>(std::move(v), at); }

// First in every statement list: a step (each loop iteration, macro body, branch taken).
struct GuardStatement : jj::statement {
  Budget* b;
  explicit GuardStatement(Budget* budget, size_t at) : b(budget) { pos = at; }
  std::string type() const override { return "Guard"; }
  jj::value execute_impl(jj::context&) const override {
    b->Tick();
    return jj::mk_val<jj::value_undefined>();
  }
};

// An expression whose value is output ({{ … }} and text): measured before the interpreter prints it.
struct GuardedOutput : jj::statement {
  Budget* b;
  jj::statement_ptr expr;
  GuardedOutput(Budget* budget, jj::statement_ptr e) : b(budget), expr(std::move(e)) { pos = expr->pos; }
  std::string type() const override { return expr->type(); }
  jj::value execute_impl(jj::context& ctx) const override {
    b->Tick();
    jj::value v = expr->execute(ctx);
    // printing walks arrays (nested ones too); a string or number is printed as it is
    b->Printed(jj::is_val<jj::value_array>(v) ? b->Measure(v).bytes : b->Shallow(v));
    return v;
  }
};

struct GuardedCall : jj::call_expression {
  Budget* b;
  GuardedCall(Budget* budget, jj::statement_ptr&& callee, jj::statements&& args) : jj::call_expression(std::move(callee), std::move(args)), b(budget) {}
  // call_expression::execute_impl, with the checks between its steps
  jj::value execute_impl(jj::context& ctx) const override {
    b->Tick();
    Budget::CallScope scope(*b);
    jj::func_args args(ctx);
    for (const auto& a : this->args) args.push_back(a->execute(ctx));
    jj::value callee_val = callee->execute(ctx);
    if (!jj::is_val<jj::value_func>(callee_val)) throw std::runtime_error("Callee is not a function: got " + callee_val->type());
    const auto* f = jj::cast_val<jj::value_func>(callee_val);
    bool builtin = f->arg0 || jj::global_builtins().count(f->name);  // else a macro, or caller(): its arguments are not read here
    bool walk = builtin && !Shallow(f->name);
    for (const auto& a : args.get_args()) walk ? b->Measure(a) : (b->Shallow(a), Metrics());
    if (walk && f->arg0) b->Measure(f->arg0);
    if (f->name == "range" && !f->arg0) CheckRange(*b, args.get_args());
    if (f->arg0) CheckBuiltin(*b, f->name, f->arg0, args.get_args());
    if (f->name == "append" && f->arg0 && jj::is_val<jj::value_array>(f->arg0) && !args.get_args().empty()) {
      Metrics m = b->Measure(args.get_args()[0], f->arg0.get());
      if (m.depth > 0) b->Grow(m.depth);
    }
    jj::value r = f->invoke(args);
    b->Shallow(r);
    return r;
  }
};

struct GuardedBinary : jj::binary_expression {
  Budget* b;
  GuardedBinary(Budget* budget, jj::token op, jj::statement_ptr&& l, jj::statement_ptr&& r)
      : jj::binary_expression(std::move(op), std::move(l), std::move(r)), b(budget) {}
  jj::value execute_impl(jj::context& ctx) const override {
    b->Tick();
    if (op.value == "and" || op.value == "or") return jj::binary_expression::execute_impl(ctx);  // short-circuit: yields an operand
    jj::value l = left->execute(ctx);
    jj::value r = right->execute(ctx);
    const std::string& o = op.value;
    if (o == "==" || o == "!=" || o == "in" || o == "not in" || o == "<" || o == ">" || o == "<=" || o == ">=")
      b->Measure(l), b->Measure(r);  // compared element by element
    else
      b->Shallow(l), b->Shallow(r);
    if (op.value == "*") {
      const jj::value* s = jj::is_val<jj::value_string>(l) ? &l : jj::is_val<jj::value_string>(r) ? &r : nullptr;
      const jj::value* k = jj::is_val<jj::value_int>(l) ? &l : jj::is_val<jj::value_int>(r) ? &r : nullptr;
      if (s && k && (*k)->val_int > 0) {
        __int128 n = (*k)->val_int;
        if (n > static_cast<__int128>(kMaxParts) || n * static_cast<__int128>((*s)->val_str.parts.size()) > static_cast<__int128>(kMaxParts) ||
            n * static_cast<__int128>((*s)->val_str.length()) > static_cast<__int128>(kMaxBytes))
          b->Limit("a string repeated " + Num(static_cast<uint64_t>(n)) + " times");
      }
    }
    jj::binary_expression held(op, Hold(l, pos), Hold(r, pos));
    held.pos = pos;
    jj::value res = held.execute_impl(ctx);
    b->Shallow(res);
    return res;
  }
};

const char* FilterAlias(const std::string& id) {
  if (id == "count") return "length";
  if (id == "d") return "default";
  if (id == "e") return "escape";
  if (id == "trim") return "strip";
  return nullptr;
}

struct GuardedFilter : jj::filter_expression {
  Budget* b;
  GuardedFilter(Budget* budget, jj::statement_ptr&& operand, jj::statement_ptr&& filter)
      : jj::filter_expression(std::move(operand), std::move(filter)), b(budget) {}
  // filter_expression::execute_impl, with the operand and arguments evaluated
  // (in the same order) and checked before the filter runs on them
  jj::value execute_impl(jj::context& ctx) const override {
    b->Tick();
    jj::value input = operand->execute(ctx);
    std::string name;
    const jj::call_expression* call = dynamic_cast<const jj::call_expression*>(filter.get());
    if (auto* id = dynamic_cast<const jj::identifier*>(filter.get())) {
      name = id->val;
    } else if (call) {
      auto* cid = dynamic_cast<const jj::identifier*>(call->callee.get());
      if (!cid) throw std::runtime_error("Filter callee must be an identifier");
      name = cid->val;
    } else {
      throw std::runtime_error("Invalid filter expression");
    }
    std::vector<jj::value> args;
    if (call)
      for (const auto& a : call->args) args.push_back(a->execute(ctx));
    const char* alias = FilterAlias(name);
    bool walk = !Shallow(alias ? alias : name);
    walk ? b->Measure(input) : (b->Shallow(input), Metrics());
    for (const auto& a : args) walk ? b->Measure(a) : (b->Shallow(a), Metrics());
    CheckBuiltin(*b, alias ? alias : name, input, args);
    if (name == "append" && jj::is_val<jj::value_array>(input) && !args.empty()) {
      Metrics m = b->Measure(args[0], input.get());
      if (m.depth > 0) b->Grow(m.depth);
    }
    jj::statement_ptr f;
    if (call) {
      jj::statements held;
      for (auto& a : args) held.push_back(Hold(a, pos));
      auto c = std::make_unique<jj::call_expression>(std::make_unique<jj::identifier>(name), std::move(held));
      c->pos = c->callee->pos = pos;
      f = std::move(c);
    } else {
      f = std::make_unique<jj::identifier>(name);
      f->pos = pos;
    }
    jj::filter_expression run(Hold(input, pos), std::move(f));
    run.pos = pos;
    jj::value r = run.execute_impl(ctx);
    b->Shallow(r);
    return r;
  }
};

// set_statement::execute_impl for `set x = value` (the block form renders a
// string: left to it), with the value measured and, for `set ns.x`, neither
// containing ns nor nesting past the growth limit.
struct GuardedSet : jj::set_statement {
  Budget* b;
  GuardedSet(Budget* budget, jj::statement_ptr&& assignee, jj::statement_ptr&& value, jj::statements&& body)
      : jj::set_statement(std::move(assignee), std::move(value), std::move(body)), b(budget) {}
  jj::value execute_impl(jj::context& ctx) const override {
    b->Tick();
    if (!val) return jj::set_statement::execute_impl(ctx);
    jj::value rhs = val->execute(ctx);
    b->Measure(rhs);
    if (auto* id = dynamic_cast<const jj::identifier*>(assignee.get())) {
      ctx.set_val(id->val, rhs);
    } else if (auto* tuple = dynamic_cast<const jj::tuple_literal*>(assignee.get())) {
      if (!jj::is_val<jj::value_array>(rhs)) throw std::runtime_error("Cannot unpack non-iterable type in set: " + rhs->type());
      const auto& arr = rhs->as_array();
      if (arr.size() != tuple->val.size())
        throw std::runtime_error(std::string("Too ") + (tuple->val.size() > arr.size() ? "few" : "many") + " items to unpack in set");
      for (size_t i = 0; i < tuple->val.size(); ++i) {
        auto* e = dynamic_cast<const jj::identifier*>(tuple->val[i].get());
        if (!e) throw std::runtime_error("Cannot unpack to non-identifier in set: " + tuple->val[i]->type());
        ctx.set_val(e->val, arr[i]);
      }
    } else if (auto* member = dynamic_cast<const jj::member_expression*>(assignee.get())) {
      if (member->computed) throw std::runtime_error("Cannot assign to computed member");
      auto* prop = dynamic_cast<const jj::identifier*>(member->property.get());
      if (!prop) throw std::runtime_error("Cannot assign to member with non-identifier property");
      jj::value object = member->object->execute(ctx);
      if (!jj::is_val<jj::value_object>(object)) throw std::runtime_error("Cannot assign to member of non-object");
      Metrics m = b->Measure(rhs, object.get());
      if (m.depth > 0) b->Grow(m.depth);
      object->insert(jj::mk_val<jj::value_string>(prop->val), rhs);
    } else {
      throw std::runtime_error("Invalid LHS inside assignment expression: " + assignee->type());
    }
    return jj::mk_val<jj::value_undefined>();
  }
};

// {% call m() %}…{% endcall %}: a call, counted as one (its body runs as caller()).
struct GuardedCallStatement : jj::call_statement {
  Budget* b;
  GuardedCallStatement(Budget* budget, jj::statement_ptr&& call, jj::statements&& caller_args, jj::statements&& body)
      : jj::call_statement(std::move(call), std::move(caller_args), std::move(body)), b(budget) {}
  jj::value execute_impl(jj::context& ctx) const override {
    b->Tick();
    Budget::CallScope scope(*b);
    return jj::call_statement::execute_impl(ctx);
  }
};

// ---------------------------------------------------------------- rewriting

class Rewriter {
 public:
  explicit Rewriter(Budget* b) : b_(b) {}

  void Program(jj::program& prog) { Body(prog.body, 0); }

 private:
  Budget* b_;

  void Body(jj::statements& body, size_t at) {
    for (auto& s : body) Node(s);
    for (auto& s : body)
      if (s && dynamic_cast<jj::expression*>(s.get())) s = std::make_unique<GuardedOutput>(b_, std::move(s));
    body.insert(body.begin(), std::make_unique<GuardStatement>(b_, body.empty() || !body.front() ? at : body.front()->pos));
  }

  // A call_expression read as a description (a filter's or test's name and
  // arguments, a {% call %}'s callee): its arguments are rewritten, not it.
  void Descriptor(jj::statement_ptr& p) {
    if (auto* c = dynamic_cast<jj::call_expression*>(p.get())) {
      for (auto& a : c->args) Node(a);
    } else {
      Node(p);
    }
  }

  void Node(jj::statement_ptr& p) {
    if (!p) return;
    jj::statement* n = p.get();
    size_t at = n->pos;
    if (auto* fe = dynamic_cast<jj::filter_expression*>(n)) {
      Node(fe->operand), Descriptor(fe->filter);
    } else if (auto* fs = dynamic_cast<jj::filter_statement*>(n)) {
      Descriptor(fs->filter), Body(fs->body, at);
    } else if (auto* te = dynamic_cast<jj::test_expression*>(n)) {
      Node(te->operand), Descriptor(te->test);
    } else if (auto* cs = dynamic_cast<jj::call_statement*>(n)) {
      Descriptor(cs->call), Body(cs->body, at);
      for (auto& a : cs->caller_args) Node(a);
    } else {
      Slots s = SlotsOf(n);
      for (auto* c : s.children) Node(*c);
      for (auto* body : s.bodies) Body(*body, at);
    }
    const std::type_info& t = typeid(*n);
    if (t == typeid(jj::call_expression)) {
      auto* c = static_cast<jj::call_expression*>(n);
      p = std::make_unique<GuardedCall>(b_, std::move(c->callee), std::move(c->args));
    } else if (t == typeid(jj::binary_expression)) {
      auto* x = static_cast<jj::binary_expression*>(n);
      p = std::make_unique<GuardedBinary>(b_, x->op, std::move(x->left), std::move(x->right));
    } else if (t == typeid(jj::filter_expression)) {
      auto* x = static_cast<jj::filter_expression*>(n);
      p = std::make_unique<GuardedFilter>(b_, std::move(x->operand), std::move(x->filter));
    } else if (t == typeid(jj::set_statement)) {
      auto* x = static_cast<jj::set_statement*>(n);
      p = std::make_unique<GuardedSet>(b_, std::move(x->assignee), std::move(x->val), std::move(x->body));
    } else if (t == typeid(jj::call_statement)) {
      auto* x = static_cast<jj::call_statement*>(n);
      p = std::make_unique<GuardedCallStatement>(b_, std::move(x->call), std::move(x->caller_args), std::move(x->body));
    } else {
      return;
    }
    p->pos = at;
  }
};

// llama.cpp common's CHATML_TEMPLATE_SRC (chat.cpp), for the "chatml" override.
const char* kChatml =
    "{%- for message in messages -%}\n"
    "  {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|im_start|>assistant\n' -}}\n"
    "{%- endif -%}";

// A template that renders nothing: what common_chat_templates_init parses and
// probes before the guarded program replaces it.
const char* kPlaceholder = "{{ '' }}";

// common_chat_templates_init's source selection and its two source patches (chat.cpp).
std::string SelectSource(const llama_model* model, const std::string& override_src) {
  std::string src = override_src;
  if (src.empty()) {
    const char* t = llama_model_chat_template(model, nullptr);
    if (t == nullptr || *t == '\0') t = llama_model_chat_template(model, "tool_use");
    if (t == nullptr || *t == '\0') throw CodedError(code::INVALID_ARGUMENT, "the model has no chat template; pass one explicitly (chatTemplate option)");
    src = t;
  }
  if (src == "chatml") src = kChatml;
  if (src.find("<|channel|>") != std::string::npos && src.find("in message.content or") != std::string::npos)
    string_replace_all(src,
                       "{%- if \"<|channel|>analysis<|message|>\" in message.content or "
                       "\"<|channel|>final<|message|>\" in message.content %}",
                       "{%- if false %}");
  if (src.find("[TOOL_CALLS]") != std::string::npos && src.find("if (message['content'] is none or") != std::string::npos)
    string_replace_all(src,
                       "{%- if (message['content'] is none or message['content'] == '' or "
                       "message['content']|length == 0) and (message['tool_calls'] is not defined or "
                       "message['tool_calls'] is none or message['tool_calls']|length == 0) %}",
                       "{%- if false %}");
  return src;
}

}  // namespace

void CheckChatTemplate(const std::string& source) { ParseAndCheck(source); }

ChatRender RenderChatTemplate(const llama_model* model, const std::string& override_src, const std::vector<common_chat_msg>& msgs, bool add_assistant,
                              const CancelFlag& cancel) {
  if (cancel.IsCancelled()) throw CodedError(code::ABORTED, "chat template rendering was aborted");
  Parsed parsed = ParseAndCheck(SelectSource(model, override_src));
  Budget budget(cancel);
  Rewriter(&budget).Program(parsed.prog);

  common_chat_templates_ptr tmpls;
  try {
    tmpls = common_chat_templates_init(model, kPlaceholder);
  } catch (const std::exception& e) {
    throw CodedError(code::BACKEND_ERROR, std::string("chat templates: ") + e.what());
  }
  common_chat_templates* t = tmpls.get();
  if (!t || !t->template_default || t->template_default->source() != kPlaceholder || common_chat_templates_source(t, "") != kPlaceholder ||
      t->has_explicit_template != common_chat_templates_was_explicit(t))
    throw CodedError(code::BACKEND_ERROR, "this llama.cpp's common_chat_templates layout is not the one native/llm/chat_template_check.cpp knows");
  common_chat_template& ct = *t->template_default;
  t->template_tool_use.reset();
  ct.src = parsed.source;
  ct.prog = std::move(parsed.prog);

  common_chat_params p;
  try {
    ct.caps = jj::caps_get(ct.prog);  // renders the template several times (its probes swallow errors)
    if (budget.tripped()) budget.Rethrow();
    common_chat_templates_inputs in;
    in.messages = msgs;
    in.add_generation_prompt = add_assistant;
    in.use_jinja = true;
    p = common_chat_templates_apply(t, in);
  } catch (const CodedError&) {
    throw;
  } catch (const std::exception& e) {
    if (budget.tripped()) budget.Rethrow();
    throw CodedError(code::INVALID_ARGUMENT, std::string("chat template failed: ") + e.what());
  }
  if (budget.tripped()) budget.Rethrow();
  if (p.prompt.size() > kMaxBytes)
    throw CodedError(code::INVALID_ARGUMENT, "chat template stopped: the prompt is " + Num(p.prompt.size()) + " bytes (the limit is " + Num(kMaxBytes) + ")");
  return ChatRender{std::move(p.prompt), std::move(p.additional_stops)};
}

}  // namespace genai
