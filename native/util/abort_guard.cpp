#include "util/abort_guard.h"

#include <cstdio>
#include <mutex>
#include <string>

#include "ggml.h"
#include "util/errors.h"

namespace genai {
namespace {
thread_local AbortToException* t_scope = nullptr;
}  // namespace

void OnGgmlAbort(const char* message) {
  if (AbortToException* s = t_scope) {
    t_scope = s->prev_;  // one throw per scope: a second assertion while unwinding aborts
    s->message_ = std::string(s->what_) + ": " + message;
    throw CodedError(s->code_, s->message_);
  }
  // as ggml without a callback (less its backtrace, which ggml does not export); ggml_abort calls abort() when this returns
  std::fprintf(stderr, "%s\n", message);
  std::fflush(stderr);
}

void InstallAbortCallback() {
  static std::once_flag once;
  std::call_once(once, [] { ggml_set_abort_callback(OnGgmlAbort); });
}

AbortToException::AbortToException(const char* code, const char* what) : code_(code), what_(what), prev_(t_scope) { t_scope = this; }

AbortToException::~AbortToException() {
  if (t_scope == this) t_scope = prev_;
}

}  // namespace genai
