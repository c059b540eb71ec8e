// ggml's GGML_ASSERT / GGML_ABORT end in abort(): one in-process assertion
// takes the host app down. ggml calls an abort callback first
// (ggml_set_abort_callback); ours throws a CodedError — but only on a thread
// inside an AbortToException scope, and such scopes wrap only single-threaded
// C++ work whose callers catch and unwind cleanly: llama.cpp's model load
// (llama_model_load catches std::exception and frees what it built), context
// creation (llama_init_from_model catches; graphs are built, not computed) and
// the tokenizer. Everywhere else (a decode: OpenMP/threadpool workers, barriers,
// other engines' threads) the callback prints ggml's message and
// ggml aborts as before: an exception there would leave workers waiting at a
// barrier or escape a thread with no handler (std::terminate).
// The exception unwinds through ggml_abort (C, ggml.c) and any ggml.c frame
// above it: they hold no locks and need only unwind tables, which GCC and
// Clang emit by default on x86-64 and AArch64 (and MSVC's unwinding is SEH).
// This is the second line: native/llm/gguf_check.cpp rejects the files known
// to reach an assertion before llama.cpp sees them.
#pragma once
#include <string>

namespace genai {

// Once per process (addon init): installs the callback.
void InstallAbortCallback();

class AbortToException {
 public:
  // An assertion on this thread while the scope lives throws CodedError(code, what + ": " + ggml's message).
  // `code` and `what` must outlive the scope (string literals).
  AbortToException(const char* code, const char* what);
  ~AbortToException();
  // Whether an assertion fired in this scope (llama.cpp may have caught the
  // exception and returned NULL), and ggml's message.
  bool fired() const { return !message_.empty(); }
  const std::string& message() const { return message_; }
  AbortToException(const AbortToException&) = delete;
  AbortToException& operator=(const AbortToException&) = delete;

 private:
  friend void OnGgmlAbort(const char* message);
  const char* code_;
  const char* what_;
  std::string message_;
  AbortToException* prev_;
};

}  // namespace genai
