#include "llm/state.h"

#include <cstdlib>
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

// ---- the saved-state format ----
// saveState()'s Buffer is a header followed by llama.cpp's sequence state
// (llama_state_seq_get_data). restoreState() checks the header before
// llama.cpp sees the bytes: llama.cpp accepts many corrupted states and
// generates from them.
//   0  "GNKV"  magic
//   4  u32     format version (2: Hash64 in four lanes)
//   8  u64     model fingerprint (ModelFingerprint)
//   16 u64     payload bytes
//   24 u32     tokens in the state
//   28 u32     reserved (0)
//   32 u64     checksum of the payload and the tokens (Hash64)
namespace {
constexpr char kMagic[4] = {'G', 'N', 'K', 'V'};
constexpr uint32_t kVersion = 2;
constexpr size_t kHeader = 40;

uint64_t Mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

// A 64-bit hash over 8-byte words (multiply-xorshift, the finalizer of
// SplitMix64 / MurmurHash3's fmix64), four independent lanes over 32-byte
// blocks so the multiplies overlap: ~4x the one-lane speed, near memory
// bandwidth (a 200 MB KV state in tens of ms). Catches corruption; not an
// authenticator.
uint64_t Hash64(const uint8_t* p, size_t n, uint64_t seed) {
  uint64_t lane[4] = {seed, seed ^ 0x9e3779b97f4a7c15ULL, seed ^ 0xbf58476d1ce4e5b9ULL, seed ^ 0x94d049bb133111ebULL};
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; k++) {
      uint64_t w;
      std::memcpy(&w, p + i + 8 * k, 8);
      lane[k] = Mix64(lane[k] ^ w) + 0x9e3779b97f4a7c15ULL;
    }
  }
  uint64_t h = seed;
  for (int k = 0; k < 4; k++) h = Mix64(h ^ lane[k]) + 0x9e3779b97f4a7c15ULL;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = Mix64(h ^ w) + 0x9e3779b97f4a7c15ULL;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, p + i, n - i);
  return Mix64(h ^ tail ^ (static_cast<uint64_t>(n) << 56));
}

// What must match between the model that saved a state and the one restoring it.
uint64_t ModelFingerprint(const llama_model* m) {
  char desc[256] = {0};
  llama_model_desc(m, desc, sizeof(desc));
  uint64_t fields[] = {llama_model_n_params(m), llama_model_size(m), static_cast<uint64_t>(llama_vocab_n_tokens(llama_model_get_vocab(m))),
                       static_cast<uint64_t>(llama_model_n_embd(m)), static_cast<uint64_t>(llama_model_n_layer(m))};
  uint64_t h = Hash64(reinterpret_cast<const uint8_t*>(fields), sizeof(fields), 0x676e6b76);
  return Hash64(reinterpret_cast<const uint8_t*>(desc), std::strlen(desc), h);
}

uint64_t StateChecksum(const uint8_t* payload, size_t n, const std::vector<llama_token>& tokens) {
  uint64_t h = Hash64(payload, n, 0x5eed);
  return Hash64(reinterpret_cast<const uint8_t*>(tokens.data()), tokens.size() * sizeof(llama_token), h);
}

template <typename T>
void Put(uint8_t* b, size_t at, T v) {
  std::memcpy(b + at, &v, sizeof(T));
}
template <typename T>
T Get(const uint8_t* b, size_t at) {
  T v;
  std::memcpy(&v, b + at, sizeof(T));
  return v;
}

// malloc, not a zero-filled vector: llama.cpp writes every byte once.
// (Transparent huge pages for it were tried: with the usual defrag=madvise
// setting the faults compact memory and saving took 80-110 ms instead of ~53.)
struct FreeDeleter {
  void operator()(uint8_t* p) const { std::free(p); }
};
}  // namespace

// ---- ContextHandle methods implemented here (declared in llm/context.h) ----

struct SavedState {
  std::unique_ptr<uint8_t, FreeDeleter> bytes;  // header + payload, written once by llama.cpp (no zero-fill, no copy)
  size_t size = 0;
  std::vector<llama_token> tokens;
};

// saveState() -> Promise<{ state: Buffer, tokens: Int32Array }>: sequence 0's
// KV state (llama_state_seq_get_data: only the cells the sequence uses) and
// the tokens it holds. llama.cpp writes straight into the block that becomes
// the Buffer (handed over without a copy where the runtime allows external
// buffers; Electron's V8 sandbox does not, and there it is copied once).
Napi::Value ContextHandle::SaveState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  auto guard = std::make_shared<BusyGuard>(s, env);
  return RunAsync<SavedState>(
      env,
      [s, guard]() mutable {
        std::shared_ptr<BusyGuard> busy = std::move(guard);
        SavedState st;
        const size_t size = llama_state_seq_get_size(s->ctx, 0);
        st.bytes.reset(static_cast<uint8_t*>(std::malloc(kHeader + size)));
        if (!st.bytes) throw CodedError(code::OUT_OF_MEMORY, "no host memory for a " + std::to_string(kHeader + size) + "-byte saved state");
        uint8_t* b = st.bytes.get();
        const size_t n = llama_state_seq_get_data(s->ctx, b + kHeader, size, 0);
        CheckRpcLinks(s->model->rpc_links);  // cells read from a server that went away are not the state
        if (n == 0 && size != 0) throw CodedError(code::BACKEND_ERROR, "llama_state_seq_get_data failed");
        st.size = kHeader + n;
        st.tokens = s->kv_tokens[0];
        std::memcpy(b, kMagic, 4);
        Put<uint32_t>(b, 4, kVersion);
        Put<uint64_t>(b, 8, ModelFingerprint(s->model->model));
        Put<uint64_t>(b, 16, n);
        Put<uint32_t>(b, 24, static_cast<uint32_t>(st.tokens.size()));
        Put<uint32_t>(b, 28, 0);
        Put<uint64_t>(b, 32, StateChecksum(b + kHeader, n, st.tokens));
        return st;
      },
      [](Napi::Env env, SavedState& st) -> Napi::Value {
        Napi::Object o = Napi::Object::New(env);
        uint8_t* data = st.bytes.release();
        o.Set("state", Napi::Buffer<uint8_t>::NewOrCopy(env, data, st.size, [](Napi::Env, uint8_t* p) { std::free(p); }));
        auto t = Napi::Int32Array::New(env, st.tokens.size());
        if (!st.tokens.empty()) std::memcpy(t.Data(), st.tokens.data(), st.tokens.size() * sizeof(int32_t));
        o.Set("tokens", t);
        return o;
      });
}

// restoreState(state: Buffer, tokens: Int32Array) -> Promise<void>. Reads the
// Buffer in place on the worker thread (it is kept alive, not copied): the
// caller must not change it until the promise settles.
Napi::Value ContextHandle::RestoreState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  if (info.Length() < 2 || !info[0].IsBuffer()) Throw(env, code::INVALID_ARGUMENT, "state must be a Buffer");
  // a conversation with images holds their placeholder ids (llm/media.h): a model with a projector takes them back
  std::vector<llama_token> tokens = TokensFromJs(env, info[1], llama_vocab_n_tokens(s->model->vocab), "tokens", s->model->media != nullptr);
  auto buf = info[0].As<Napi::Buffer<uint8_t>>();
  const uint8_t* b = buf.Data();
  const size_t len = buf.Length();
  if (len < kHeader || std::memcmp(b, kMagic, 4) != 0) Throw(env, code::INVALID_ARGUMENT, "state is not a saved context state (no header)");
  if (Get<uint32_t>(b, 4) != kVersion)
    Throw(env, code::INVALID_ARGUMENT,
          "state has format version " + std::to_string(Get<uint32_t>(b, 4)) + "; this addon reads " + std::to_string(kVersion) + " (save it again)");
  if (Get<uint64_t>(b, 8) != ModelFingerprint(s->model->model)) Throw(env, code::INVALID_ARGUMENT, "state was saved by another model");
  if (Get<uint64_t>(b, 16) != len - kHeader) Throw(env, code::INVALID_ARGUMENT, "state is truncated or padded (its length does not match its header)");
  if (Get<uint32_t>(b, 24) != tokens.size()) Throw(env, code::INVALID_ARGUMENT, "tokens do not belong to this state (count differs)");
  const uint64_t checksum = Get<uint64_t>(b, 32);  // checked on the worker thread (hashing is O(bytes))
  if (tokens.size() >= llama_n_ctx_seq(s->ctx)) Throw(env, code::INVALID_ARGUMENT, "the saved state holds more tokens than this context's sequence");
  // Keeps the Buffer alive until the promise settles; released on the JS thread
  // with the job (only the result callback holds it, never the worker).
  auto keep = std::make_shared<Napi::Reference<Napi::Buffer<uint8_t>>>(Napi::Persistent(buf));
  const uint8_t* payload = b + kHeader;
  const size_t payload_len = len - kHeader;
  auto guard = std::make_shared<BusyGuard>(s, env);
  return RunAsync<bool>(
      env,
      [s, guard, payload, payload_len, tokens, checksum]() mutable {
        std::shared_ptr<BusyGuard> busy = std::move(guard);
        if (StateChecksum(payload, payload_len, tokens) != checksum)
          throw CodedError(code::INVALID_ARGUMENT, "state or tokens are corrupted (checksum mismatch); the context is unchanged");
        llama_memory_clear(llama_get_memory(s->ctx), true);  // every sequence: the context is restored as saved
        for (auto& t : s->kv_tokens) t.clear();
        if (payload_len > 0 && llama_state_seq_set_data(s->ctx, payload, payload_len, 0) == 0) {
          llama_memory_clear(llama_get_memory(s->ctx), true);
          throw CodedError(code::INVALID_ARGUMENT, "the saved state does not fit this context (another model or context shape?)");
        }
        CheckRpcLinks(s->model->rpc_links);
        s->kv_tokens[0] = tokens;
        return true;
      },
      [keep](Napi::Env env, bool&) -> Napi::Value { return env.Undefined(); });
}

// memory() -> [{ device, model, context, compute }] bytes llama.cpp allocated.
Napi::Value ContextHandle::Memory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return DeviceBytesToJs(env, ContextMemory(State(env)->ctx));
}

}  // namespace genai
