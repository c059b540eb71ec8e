// LlamaContext's native half: one llama_context (KV cache, compute buffers)
// over a shared ModelState, with one or more sequences (conversations) in its
// KV cache. One operation runs per sequence at a time (others get BUSY);
// generations on different sequences run together, their tokens decoded in
// one batch (llm/batch.h). Whole-context operations (state, embeddings) wait
// for no one: they get BUSY while any sequence works. The context tracks
// which tokens each sequence holds so a following prompt that extends them (a
// chat) decodes only the new part.
#pragma once
#include <napi.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "llama.h"
#include "llm/model.h"
#include "util/jobs.h"
#include "util/shared_handle.h"

namespace genai {

class Generation;  // llm/generation.h
struct LoraState;  // llm/lora.h

// llama.cpp's LLAMA_MAX_SEQ (src/llama-cparams.h): the most sequences a context can have.
constexpr int64_t kMaxSequences = 256;

struct ContextState {
  std::shared_ptr<ModelState> model;
  llama_context* ctx = nullptr;
  ggml_threadpool_t threadpool = nullptr;           // generation (n_threads)
  ggml_threadpool_t threadpool_batch = nullptr;     // prompt batches, when n_threads_batch differs
  std::vector<std::vector<llama_token>> kv_tokens;  // per sequence: the tokens it holds in the KV cache
  std::atomic<CancelFlag*> active_cancel{nullptr};  // read by llama's abort callback (set while one generation decodes alone)
  bool embeddings = false;
  std::vector<std::shared_ptr<LoraState>> loras;  // the adapters applied (held while applied)
  std::vector<float> lora_scales;

  // Who works (BusyGuard): a sequence, or the whole context.
  std::mutex busy_mu;
  std::vector<bool> seq_busy;
  bool exclusive = false;

  // The generations running together (llm/batch.cpp): one thread at a time
  // drives the decode loop for all of them.
  std::mutex batch_mu;
  std::condition_variable batch_cv;
  std::vector<Generation*> active;
  bool driving = false;
  llama_batch batch{};                          // n_batch tokens, used by the driving thread only
  std::vector<Generation*> step_gens, step_in;  // the driving thread's scratch (no allocation per token)

  int32_t sequences() const { return static_cast<int32_t>(kv_tokens.size()); }
  ~ContextState();
};

// Marks a sequence (0 … sequences − 1), or with kWholeContext the whole
// context, busy for one operation; throws BUSY when it, or the context, is.
class BusyGuard {
 public:
  static constexpr int32_t kWholeContext = -1;
  // Called on the JS thread: throws a JS error with code BUSY.
  BusyGuard(std::shared_ptr<ContextState> s, Napi::Env env, int32_t seq = kWholeContext);
  ~BusyGuard();
  BusyGuard(const BusyGuard&) = delete;

 private:
  std::shared_ptr<ContextState> s_;
  int32_t seq_ = kWholeContext;
};

// The "flashAttention" field ("auto" | "on" | "off") as llama.cpp's type. Throws INVALID_ARGUMENT.
llama_flash_attn_type FlashAttnField(Napi::Env env, const Napi::Object& o);

// llama_decode of `batch` on s's context and the wait for the device, the one
// way every decode runs, then CheckRpcLinks for a model with layers on RPC
// servers (a server that went away answered nothing real: BACKEND_ERROR).
// Returns llama_decode's code; throws CodedError.
int32_t DecodeAndWait(ContextState& s, llama_batch& batch);

// A sequence index from JS: an integer in [0, sequences). Throws INVALID_ARGUMENT.
int32_t SequenceArg(Napi::Env env, Napi::Value v, const ContextState& s);

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
  // setLoras([{ lora: LoraHandle, scale }]): the adapters applied from the next decode on (lora.cpp)
  Napi::Value SetLoras(const Napi::CallbackInfo& info);
  // state.cpp: KV state to/from host memory, allocated bytes per device
  Napi::Value SaveState(const Napi::CallbackInfo& info);
  Napi::Value RestoreState(const Napi::CallbackInfo& info);
  Napi::Value Memory(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  SharedHandle<ContextState> state_;
};

}  // namespace genai
