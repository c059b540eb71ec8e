// LlamaContext's native half: one llama_context (KV cache, compute buffers)
// over a shared ModelState. One operation runs at a time (others get BUSY);
// the context tracks which tokens its KV cache holds so a following prompt
// that extends them (a chat) decodes only the new part.
#pragma once
#include <napi.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "llama.h"
#include "llm/model.h"
#include "util/jobs.h"
#include "util/shared_handle.h"

namespace genai {

struct ContextState {
  std::shared_ptr<ModelState> model;
  llama_context* ctx = nullptr;
  ggml_threadpool_t threadpool = nullptr;        // generation (n_threads)
  ggml_threadpool_t threadpool_batch = nullptr;  // prompt batches, when n_threads_batch differs
  std::vector<llama_token> kv_tokens;            // tokens held in sequence 0 of the KV cache
  std::atomic<bool> busy{false};
  std::atomic<CancelFlag*> active_cancel{nullptr};  // read by llama's abort callback
  bool embeddings = false;
  ~ContextState();
};

// Marks a context busy for one operation; throws BUSY when it already is.
class BusyGuard {
 public:
  // Called on the JS thread: throws a JS error with code BUSY.
  BusyGuard(std::shared_ptr<ContextState> s, Napi::Env env);
  ~BusyGuard();
  BusyGuard(const BusyGuard&) = delete;

 private:
  std::shared_ptr<ContextState> s_;
};

class ContextHandle : public Napi::ObjectWrap<ContextHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ContextHandle(const Napi::CallbackInfo& info);
  // createContext(options) on a model -> Promise<ContextHandle>
  static Napi::Value Create(const Napi::CallbackInfo& info, std::shared_ptr<ModelState> model);

 private:
  std::shared_ptr<ContextState> State(Napi::Env env) const { return state_.State(env); }
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Generate(const Napi::CallbackInfo& info);
  Napi::Value Embed(const Napi::CallbackInfo& info);
  Napi::Value ClearHistory(const Napi::CallbackInfo& info);
  // state.cpp: KV state to/from host memory, allocated bytes per device
  Napi::Value SaveState(const Napi::CallbackInfo& info);
  Napi::Value RestoreState(const Napi::CallbackInfo& info);
  Napi::Value Memory(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  SharedHandle<ContextState> state_;
};

}  // namespace genai
