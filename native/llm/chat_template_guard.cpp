// Guard nodes: subclasses of the interpreter's node types (so its type checks
// still see what they expect) that charge the Budget for every step, call and
// value, and the Rewriter that puts them into a parsed program.
#include <memory>
#include <set>
#include <typeinfo>
#include <utility>

#include "llm/chat_template_internal.h"

namespace genai::tmpl_detail {

namespace {

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

}  // namespace

void GuardProgram(jj::program& prog, Budget* budget) { Rewriter(budget).Program(prog); }

}  // namespace genai::tmpl_detail
