// Internals of the chat template guard, shared by its three parts:
// chat_template_check.cpp (parse + static checks), chat_template_guard.cpp
// (guard nodes that count and measure while llama.cpp's interpreter renders)
// and chat_template_render.cpp (llama.cpp common's pipeline on the guarded
// program). The public interface and the limits are in chat_template_check.h.
#pragma once
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "jinja/runtime.h"
#include "jinja/value.h"
#include "llm/chat_template_check.h"
#include "util/errors.h"
#include "util/jobs.h"
#include "util/stack_thread.h"

namespace genai::tmpl_detail {

namespace jj = jinja;
using namespace tmpl_limits;

[[noreturn]] inline void Refuse(const std::string& msg) { throw CodedError(code::INVALID_ARGUMENT, "chat template refused: " + msg); }

inline std::string Num(uint64_t n) { return std::to_string(n); }

// ---------------------------------------------------------------- AST walking

// The child slots and statement lists of a node (every node type of jinja/runtime.h).
struct Slots {
  std::vector<jj::statement_ptr*> children;
  std::vector<jj::statements*> bodies;
};
Slots SlotsOf(jj::statement* n);

// Items of range(start, stop, step); 0 when empty, UINT64_MAX on a zero step.
inline uint64_t RangeCount(int64_t start, int64_t stop, int64_t step) {
  if (step == 0) return 0;
  __int128 span = step > 0 ? static_cast<__int128>(stop) - start : static_cast<__int128>(start) - stop;
  if (span <= 0) return 0;
  __int128 st = step > 0 ? step : -static_cast<__int128>(step);
  __int128 n = (span + st - 1) / st;
  return n > static_cast<__int128>(UINT64_MAX) ? UINT64_MAX : static_cast<uint64_t>(n);
}

struct Parsed {
  jj::program prog;
  std::string source;  // as the lexer normalized it (what common_chat_template keeps)
};

// Lexes, parses and checks a template before anything runs (chat_template_check.cpp).
// Throws CodedError INVALID_ARGUMENT.
Parsed ParseAndCheck(const std::string& raw);

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

// Rewrites `prog` in place with guard nodes that charge `budget` (chat_template_guard.cpp).
void GuardProgram(jj::program& prog, Budget* budget);

}  // namespace genai::tmpl_detail
