#include "llm/state.h"

#include <cstring>
#include <map>
#include <memory>

#include "../src/llama-ext.h"  // llama_get_memory_breakdown (llama.cpp's staging API)
#include "ggml-backend.h"
#include "llm/context.h"
#include "util/errors.h"
#include "util/jobs.h"

namespace genai {

std::vector<DeviceBytes> ContextMemory(const llama_context* ctx) {
  std::map<std::string, DeviceBytes> by_dev;
  for (const auto& [buft, mb] : llama_get_memory_breakdown(ctx)) {
    ggml_backend_dev_t dev = ggml_backend_buft_get_device(buft);
    std::string name = dev ? ggml_backend_dev_name(dev) : "CPU";
    if (ggml_backend_buft_is_host(buft) && dev && ggml_backend_dev_type(dev) != GGML_BACKEND_DEVICE_TYPE_CPU) name = "CPU";  // pinned host memory
    DeviceBytes& d = by_dev[name];
    d.device = name;
    d.model += static_cast<double>(mb.model);
    d.context += static_cast<double>(mb.context);
    d.compute += static_cast<double>(mb.compute);
  }
  std::vector<DeviceBytes> out;
  for (auto& [_, d] : by_dev) out.push_back(d);
  return out;
}

Napi::Array DeviceBytesToJs(Napi::Env env, const std::vector<DeviceBytes>& v) {
  Napi::Array arr = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("device", v[i].device);
    o.Set("model", v[i].model);
    o.Set("context", v[i].context);
    o.Set("compute", v[i].compute);
    arr.Set(static_cast<uint32_t>(i), o);
  }
  return arr;
}

// ---- ContextHandle methods implemented here (declared in llm/context.h) ----

struct SavedState {
  std::vector<uint8_t> bytes;
  std::vector<llama_token> tokens;
};

// saveState() -> Promise<{ state: Buffer, tokens: Int32Array }>: sequence 0's
// KV state (llama_state_seq_get_data) and the tokens it holds.
Napi::Value ContextHandle::SaveState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  auto guard = std::make_shared<BusyGuard>(s, env);
  return RunAsync<SavedState>(
      env,
      [s, guard]() mutable {
    std::shared_ptr<BusyGuard> busy = std::move(guard);
    SavedState st;
    st.bytes.resize(llama_state_seq_get_size(s->ctx, 0));
    size_t n = llama_state_seq_get_data(s->ctx, st.bytes.data(), st.bytes.size(), 0);
    if (n == 0 && !st.bytes.empty()) throw CodedError(code::BACKEND_ERROR, "llama_state_seq_get_data failed");
    st.bytes.resize(n);
    st.tokens = s->kv_tokens;
    return st;
      },
      [](Napi::Env env, SavedState& st) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        o.Set("state", Napi::Buffer<uint8_t>::Copy(env, st.bytes.data(), st.bytes.size()));
        auto t = Napi::Int32Array::New(env, st.tokens.size());
        if (!st.tokens.empty()) std::memcpy(t.Data(), st.tokens.data(), st.tokens.size() * sizeof(int32_t));
        o.Set("tokens", t);
        return o;
      });
}

// restoreState(state: Buffer, tokens: Int32Array) -> Promise<void>
Napi::Value ContextHandle::RestoreState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  if (info.Length() < 2 || !info[0].IsBuffer()) Throw(env, code::INVALID_ARGUMENT, "state must be a Buffer");
  std::vector<llama_token> tokens = TokensFromJs(env, info[1], llama_vocab_n_tokens(s->model->vocab), "tokens");
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  auto bytes = std::make_shared<std::vector<uint8_t>>(buf.Data(), buf.Data() + buf.Length());
  if (tokens.size() >= llama_n_ctx(s->ctx)) Throw(env, code::INVALID_ARGUMENT, "the saved state holds more tokens than this context");
  auto guard = std::make_shared<BusyGuard>(s, env);
  return RunAsync<bool>(
      env,
      [s, guard, bytes, tokens]() mutable {
    std::shared_ptr<BusyGuard> busy = std::move(guard);
    llama_memory_clear(llama_get_memory(s->ctx), true);
    s->kv_tokens.clear();
    if (!bytes->empty() && llama_state_seq_set_data(s->ctx, bytes->data(), bytes->size(), 0) == 0) {
      llama_memory_clear(llama_get_memory(s->ctx), true);
      throw CodedError(code::INVALID_ARGUMENT, "the saved state does not fit this context (another model or context shape?)");
    }
    s->kv_tokens = tokens;
    return true;
      },
      [](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

// memory() -> [{ device, model, context, compute }] bytes llama.cpp allocated.
Napi::Value ContextHandle::Memory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return DeviceBytesToJs(env, ContextMemory(State(env)->ctx));
}

}  // namespace genai
