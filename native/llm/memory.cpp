#include "llm/memory.h"

#include "system/backends.h"

#include <cstring>
#include <map>

#include "../src/llama-ext.h"  // llama_get_memory_breakdown (llama.cpp's staging API)
#include "ggml-backend.h"
#include "llm/context.h"
#include "system/system.h"
#include "util/args.h"
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

Napi::Value EstimateMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");
  Napi::Object mo = ObjectArg(info, 1, "modelOptions");
  Napi::Object co = ObjectArg(info, 2, "contextOptions");
  llama_model_params mp = llama_model_default_params();
  mp.n_gpu_layers = static_cast<int32_t>(IntProp(mo, "gpuLayers", -1, -1, 100000));
  std::vector<ggml_backend_dev_t> devices = DevicesProp(mo);
  mp.no_alloc = true;
  mp.load_mode = LLAMA_LOAD_MODE_NONE;
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(IntProp(co, "contextSize", 0, 0, 1 << 24));
  cp.n_batch = static_cast<uint32_t>(IntProp(co, "batchSize", 512, 1, 1 << 20));
  cp.n_ubatch = std::min<uint32_t>(cp.n_batch, 512);
  cp.n_seq_max = 1;
  cp.embeddings = BoolProp(co, "embeddings", false);
  if (cp.embeddings) cp.n_ubatch = cp.n_batch;
  cp.no_perf = true;
  return RunAsync<std::vector<DeviceBytes>>(
      env,
      [path, mp, cp, devices]() mutable {
        mp.devices = devices.data();
        LogCapture capture;
        BackendSetupLock setup;
        llama_model* model = llama_model_load_from_file(path.c_str(), mp);
        if (!model) throw CodedError(code::INVALID_MODEL, "llama.cpp could not read the model: " + path + " — " + capture.Errors());
        llama_context* ctx = llama_init_from_model(model, cp);
        if (!ctx) {
          llama_model_free(model);
          throw CodedError(code::BACKEND_ERROR, "llama.cpp could not plan the context: " + capture.Errors());
        }
        auto out = ContextMemory(ctx);
        llama_free(ctx);
        llama_model_free(model);
        return out;
      },
      [](Napi::Env env, std::vector<DeviceBytes>& v) -> Napi::Value { return DeviceBytesToJs(env, v); });
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
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    Throw(env, code::INVALID_ARGUMENT, "tokens must be an Int32Array");
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  auto tarr = info[1].As<Napi::Int32Array>();
  auto bytes = std::make_shared<std::vector<uint8_t>>(buf.Data(), buf.Data() + buf.Length());
  std::vector<llama_token> tokens(tarr.Data(), tarr.Data() + tarr.ElementLength());
  int32_t n_vocab = llama_vocab_n_tokens(s->model->vocab);
  for (llama_token t : tokens)
    if (t < 0 || t >= n_vocab) Throw(env, code::INVALID_ARGUMENT, "token id " + std::to_string(t) + " is outside the vocabulary");
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
