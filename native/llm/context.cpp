#include "llm/context.h"

#include <cmath>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "ggml-backend.h"
#include "llm/batch.h"
#include "system/backends.h"
#include "util/abort_guard.h"
#include "util/args.h"
#include "util/errors.h"

namespace genai {

ContextState::~ContextState() {
  if (batch.token) llama_batch_free(batch);
  if (ctx) llama_free(ctx);
  FreeCpuThreadpool(threadpool);
  FreeCpuThreadpool(threadpool_batch);
  ReleaseFreedMemory();
}

BusyGuard::BusyGuard(std::shared_ptr<ContextState> s, Napi::Env env, int32_t seq) {
  {
    std::lock_guard<std::mutex> lock(s->busy_mu);
    bool any = s->exclusive;
    for (bool b : s->seq_busy) any = any || b;
    if (seq == kWholeContext ? any : s->exclusive || s->seq_busy[static_cast<size_t>(seq)])
      Throw(env, code::BUSY,
            seq == kWholeContext || s->exclusive ? "the context is busy with another operation" : "the sequence is busy with another operation");
    if (seq == kWholeContext)
      s->exclusive = true;
    else
      s->seq_busy[static_cast<size_t>(seq)] = true;
  }
  s_ = std::move(s);
  seq_ = seq;
}

BusyGuard::~BusyGuard() {
  if (!s_) return;
  std::lock_guard<std::mutex> lock(s_->busy_mu);
  if (seq_ == kWholeContext)
    s_->exclusive = false;
  else
    s_->seq_busy[static_cast<size_t>(seq_)] = false;
  bool any = s_->exclusive;
  for (bool b : s_->seq_busy) any = any || b;
  if (any) return;
  // the last operation is over: the CPU workers sleep instead of spinning
  PauseCpuThreadpool(s_->threadpool);
  PauseCpuThreadpool(s_->threadpool_batch);
}

Napi::Function ContextHandle::Init(Napi::Env env) {
  return DefineClass(env, "ContextHandle",
                     {
                         InstanceMethod<&ContextHandle::Info>("info"),
                         InstanceMethod<&ContextHandle::Generate>("generate"),
                         InstanceMethod<&ContextHandle::Embed>("embed"),
                         InstanceMethod<&ContextHandle::ClearHistory>("clearHistory"),
                         InstanceMethod<&ContextHandle::SetLoras>("setLoras"),
                         InstanceMethod<&ContextHandle::SaveState>("saveState"),
                         InstanceMethod<&ContextHandle::RestoreState>("restoreState"),
                         InstanceMethod<&ContextHandle::Memory>("memory"),
                         InstanceMethod<&ContextHandle::Dispose>("dispose"),
                     });
}

ContextHandle::ContextHandle(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<ContextHandle>(info), state_(info, "ContextHandle is created by createContext()", "the context has been disposed") {}

namespace {

std::string MetaString(const llama_model* m, const std::string& key) {
  char buf[256];
  int32_t n = llama_model_meta_val_str(m, key.c_str(), buf, sizeof(buf));
  return n < 0 ? std::string() : std::string(buf);
}

// KV cache bytes for n_ctx tokens with f16 K and V:
//   n_layer * n_ctx * n_head_kv * (head_dim_k + head_dim_v) * 2 bytes
// (the cache layout of llama.cpp's llama_kv_cache; head dims from
// <arch>.attention.key_length/value_length, else n_embd / n_head).
double EstimateKvBytes(const llama_model* m, uint32_t n_ctx) {
  std::string arch = MetaString(m, "general.architecture");
  double n_head = std::max(1, llama_model_n_head(m));
  double head_k = llama_model_n_embd(m) / n_head, head_v = head_k;
  std::string k = MetaString(m, arch + ".attention.key_length"), v = MetaString(m, arch + ".attention.value_length");
  if (!k.empty()) head_k = std::atof(k.c_str());
  if (!v.empty()) head_v = std::atof(v.c_str());
  return static_cast<double>(llama_model_n_layer(m)) * n_ctx * llama_model_n_head_kv(m) * (head_k + head_v) * 2.0;
}

double FreeDeviceBytes() {
  auto reading = RegistryReadLock();
  double total = 0;
  for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
    size_t free = 0, all = 0;
    ggml_backend_dev_memory(ggml_backend_dev_get(i), &free, &all);
    total += static_cast<double>(free);
  }
  return total;
}

bool AbortCallback(void* data) {
  CancelFlag* f = static_cast<ContextState*>(data)->active_cancel.load();
  return f != nullptr && f->IsCancelled();
}

}  // namespace

int32_t DecodeAndWait(ContextState& s, llama_batch& batch) {
  const int32_t rc = llama_decode(s.ctx, batch);
  // A GPU backend computes asynchronously: the step is done when the device
  // is. Also after a failed or aborted decode: llama.cpp returns 2 as soon as
  // the CPU backend sees the abort callback, while the splits it already
  // submitted to a GPU backend are still running.
  llama_synchronize(s.ctx);
  CheckRpcLinks(s.model->rpc_links);
  return rc;
}

llama_flash_attn_type FlashAttnField(Napi::Env env, const Napi::Object& o) {
  std::string fa = StringField(o, "flashAttention");
  if (fa == "auto") return LLAMA_FLASH_ATTN_TYPE_AUTO;
  if (fa == "on") return LLAMA_FLASH_ATTN_TYPE_ENABLED;
  if (fa == "off") return LLAMA_FLASH_ATTN_TYPE_DISABLED;
  Throw(env, code::INVALID_ARGUMENT, "flashAttention must be 'auto', 'on' or 'off'");
}

Napi::Value ContextHandle::Create(const Napi::CallbackInfo& info, std::shared_ptr<ModelState> model) {
  Napi::Env env = info.Env();
  Napi::Object opts = ObjectArg(info, 0, "options");
  llama_context_params p = llama_context_default_params();
  CheckKeys(opts, {"contextSize", "batchSize", "microBatchSize", "threads", "batchThreads", "flashAttention", "embeddings", "sequences"}, "context");
  p.n_ctx = static_cast<uint32_t>(IntField(opts, "contextSize", 1, 1 << 24));
  p.n_batch = static_cast<uint32_t>(IntField(opts, "batchSize", 1, 1 << 20));
  if (std::optional<int64_t> ub = OptIntField(opts, "microBatchSize", 1, 1 << 20)) p.n_ubatch = static_cast<uint32_t>(*ub);
  p.n_ubatch = std::min(p.n_batch, p.n_ubatch);
  p.n_threads = static_cast<int32_t>(IntField(opts, "threads", 1, 1024));
  p.n_threads_batch = static_cast<int32_t>(IntField(opts, "batchThreads", 1, 1024));
  // each sequence gets contextSize / sequences cells of its own (llama.cpp's split KV cache, as llama-server's slots)
  p.n_seq_max = static_cast<uint32_t>(IntField(opts, "sequences", 1, kMaxSequences));
  p.kv_unified = false;
  p.flash_attn_type = FlashAttnField(env, opts);
  bool embeddings = BoolField(opts, "embeddings");
  p.embeddings = embeddings;
  if (embeddings && p.n_seq_max != 1) Throw(env, code::INVALID_ARGUMENT, "an embeddings context has one sequence");
  if (embeddings) p.n_ubatch = p.n_batch;  // non-causal pooling needs the whole input in one ubatch
  p.no_perf = true;

  double kv = EstimateKvBytes(model->model, p.n_ctx), avail = FreeDeviceBytes();
  if (kv > avail)
    Throw(env, code::OUT_OF_MEMORY,
          "a context of " + std::to_string(p.n_ctx) + " tokens needs about " + std::to_string(static_cast<int64_t>(kv / 1048576)) +
              " MiB of KV cache; the devices have " + std::to_string(static_cast<int64_t>(avail / 1048576)) + " MiB free");

  auto work = [model, p, embeddings](ThreadJob&) -> ThreadJob::ValueMaker {
    llama_context* ctx;
    // a graph-building assertion (e.g. head sizes a model file contradicts) is an exception that llama_init_from_model catches
    AbortToException abort_guard(code::INVALID_MODEL, "llama.cpp failed an assertion while creating the context");
    {
      BackendSetupLock setup;
      ctx = llama_init_from_model(model->model, p);
    }
    if (!ctx) CheckRpcLinks(model->rpc_links);  // the KV cache on a server that went away
    if (!ctx && abort_guard.fired()) throw CodedError(code::INVALID_MODEL, abort_guard.message());
    if (!ctx)
      throw CodedError(code::OUT_OF_MEMORY,
                       "llama.cpp could not allocate the context (KV cache and compute buffers) for " + std::to_string(p.n_ctx) + " tokens");
    auto state = std::make_shared<ContextState>();
    state->model = model;
    state->ctx = ctx;
    // persistent CPU worker threads (llama-bench and llama-server do the same)
    state->threadpool = NewCpuThreadpool(p.n_threads);
    if (p.n_threads_batch != p.n_threads) state->threadpool_batch = NewCpuThreadpool(p.n_threads_batch);
    if (state->threadpool) llama_attach_threadpool(ctx, state->threadpool, state->threadpool_batch);
    state->embeddings = embeddings;
    state->kv_tokens.resize(p.n_seq_max);
    state->seq_busy.assign(p.n_seq_max, false);
    state->batch = llama_batch_init(static_cast<int32_t>(llama_n_batch(ctx)), 0, 1);
    llama_set_abort_callback(ctx, AbortCallback, state.get());
    return [state](Napi::Env env) -> Napi::Value { return SharedHandle<ContextState>::New(env, Data(env).context_ctor, state); };
  };
  return ThreadJob::Start(env, "genai.createContext", std::make_shared<CancelFlag>(), Napi::Function(), std::move(work));
}

Napi::Value ContextHandle::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  Napi::Object o = Napi::Object::New(env);
  o.Set("contextSize", llama_n_ctx(s->ctx));
  o.Set("batchSize", llama_n_batch(s->ctx));
  o.Set("threads", llama_n_threads(s->ctx));
  o.Set("batchThreads", llama_n_threads_batch(s->ctx));
  o.Set("embeddings", s->embeddings);
  o.Set("kvTokens", Napi::Number::New(env, static_cast<double>(s->kv_tokens[0].size())));
  o.Set("sequences", s->sequences());
  o.Set("sequenceSize", llama_n_ctx_seq(s->ctx));
  auto per_seq = Napi::Array::New(env, s->kv_tokens.size());
  for (size_t i = 0; i < s->kv_tokens.size(); i++) per_seq.Set(static_cast<uint32_t>(i), Napi::Number::New(env, static_cast<double>(s->kv_tokens[i].size())));
  o.Set("sequenceTokens", per_seq);
  o.Set("stateBytes", Napi::Number::New(env, static_cast<double>(llama_state_seq_get_size(s->ctx, 0))));
  return o;
}

// clearHistory(sequence?): forgets one sequence's tokens, or (no argument) every sequence's.
Napi::Value ContextHandle::ClearHistory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  if (info.Length() < 1 || info[0].IsUndefined()) {
    BusyGuard guard(s, env);
    llama_memory_clear(llama_get_memory(s->ctx), true);
    for (auto& t : s->kv_tokens) t.clear();
    return env.Undefined();
  }
  const int32_t seq = SequenceArg(env, info[0], *s);
  BusyGuard guard(s, env, seq);
  llama_memory_seq_rm(llama_get_memory(s->ctx), seq, -1, -1);
  s->kv_tokens[static_cast<size_t>(seq)].clear();
  return env.Undefined();
}

int32_t SequenceArg(Napi::Env env, Napi::Value v, const ContextState& s) {
  if (v.IsUndefined() || v.IsNull()) Throw(env, code::INVALID_ARGUMENT, "sequence is required");
  const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
  if (d != std::floor(d) || d < 0 || d >= s.sequences())
    Throw(env, code::INVALID_ARGUMENT, "sequence must be an integer in [0, " + std::to_string(s.sequences()) + ")");
  return static_cast<int32_t>(d);
}

// embed(text, normalize) -> Promise<Float32Array>: pooled embedding of text
// (the model's pooling, or the mean over tokens when it has none).
Napi::Value ContextHandle::Embed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  if (!s->embeddings) Throw(env, code::INVALID_ARGUMENT, "this context was not created with { embeddings: true }");
  std::string text = StringArg(info, 0, "text");
  bool normalize = info.Length() < 2 || info[1].ToBoolean().Value();
  auto guard = std::make_shared<BusyGuard>(s, env);
  return RunAsync<std::vector<float>>(
      env,
      [s, text, normalize, guard]() mutable {
        std::shared_ptr<BusyGuard> busy = std::move(guard);  // released before the promise settles
        auto tokens = TokenizeText(s->model->vocab, text, true, false);
        if (tokens.empty()) throw CodedError(code::INVALID_ARGUMENT, "text produced no tokens");
        if (tokens.size() > llama_n_batch(s->ctx))
          throw CodedError(code::INVALID_ARGUMENT, "text is " + std::to_string(tokens.size()) + " tokens; the embedding context's batch holds " +
                                                       std::to_string(llama_n_batch(s->ctx)));
        llama_memory_clear(llama_get_memory(s->ctx), true);
        s->kv_tokens[0].clear();
        llama_batch batch = llama_batch_init(static_cast<int32_t>(tokens.size()), 0, 1);
        for (size_t i = 0; i < tokens.size(); i++) {
          batch.token[i] = tokens[i];
          batch.pos[i] = static_cast<llama_pos>(i);
          batch.n_seq_id[i] = 1;
          batch.seq_id[i][0] = 0;
          batch.logits[i] = true;
        }
        batch.n_tokens = static_cast<int32_t>(tokens.size());
        int32_t rc;
        try {
          rc = DecodeAndWait(*s, batch);
        } catch (...) {
          llama_batch_free(batch);
          throw;
        }
        llama_batch_free(batch);
        if (rc != 0) throw CodedError(code::BACKEND_ERROR, "llama_decode failed with " + std::to_string(rc));
        int n_embd = llama_model_n_embd_out(s->model->model);
        std::vector<float> out(static_cast<size_t>(n_embd), 0.0f);
        const float* pooled = llama_pooling_type(s->ctx) != LLAMA_POOLING_TYPE_NONE ? llama_get_embeddings_seq(s->ctx, 0) : nullptr;
        if (pooled) {
          std::memcpy(out.data(), pooled, out.size() * sizeof(float));
        } else {
          for (size_t i = 0; i < tokens.size(); i++) {
            const float* e = llama_get_embeddings_ith(s->ctx, static_cast<int32_t>(i));
            if (!e) throw CodedError(code::BACKEND_ERROR, "no embeddings were produced");
            for (int j = 0; j < n_embd; j++) out[j] += e[j] / static_cast<float>(tokens.size());
          }
        }
        llama_memory_clear(llama_get_memory(s->ctx), true);
        if (normalize) {
          double norm = 0;
          for (float v : out) norm += static_cast<double>(v) * v;
          norm = std::sqrt(norm);
          if (norm > 0)
            for (float& v : out) v = static_cast<float>(v / norm);
        }
        return out;
      },
      [](Napi::Env env, std::vector<float>& v) -> Napi::Value {
        auto arr = Napi::Float32Array::New(env, v.size());
        std::memcpy(arr.Data(), v.data(), v.size() * sizeof(float));
        return arr;
      });
}

Napi::Value ContextHandle::Dispose(const Napi::CallbackInfo& info) {
  if (const auto& s = state_.Peek()) CancelGenerations(*s);  // running generations stop at their next check; they hold their own reference
  state_.Reset();
  return info.Env().Undefined();
}

}  // namespace genai
