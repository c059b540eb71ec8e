#include "llm/lora.h"

#include <sys/stat.h>

#include "llm/context.h"
#include "llm/gguf_check.h"
#include "util/args.h"
#include "util/errors.h"
#include "util/jobs.h"
#include "util/log.h"

namespace genai {

LoraState::~LoraState() {
  if (adapter) llama_adapter_lora_free(adapter);
}

Napi::Function LoraHandle::Init(Napi::Env env) {
  return DefineClass(env, "LoraHandle",
                     {
                         InstanceMethod<&LoraHandle::Info>("info"),
                         InstanceMethod<&LoraHandle::Dispose>("dispose"),
                     });
}

LoraHandle::LoraHandle(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<LoraHandle>(info), state_(info, "LoraHandle is created by a model's loadLora()", "the LoRA adapter has been disposed") {}

Napi::Value LoraHandle::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  char buf[64] = {0};
  Napi::Object o = Napi::Object::New(env);
  o.Set("path", s->path);
  o.Set("alpha", llama_adapter_meta_val_str(s->adapter, "adapter.lora.alpha", buf, sizeof(buf)) < 0 ? 0.0 : std::atof(buf));
  o.Set("metadataCount", llama_adapter_meta_count(s->adapter));
  return o;
}

Napi::Value LoraHandle::Dispose(const Napi::CallbackInfo& info) {
  state_.Reset();
  return info.Env().Undefined();
}

Napi::Value LoadLora(Napi::Env env, std::shared_ptr<ModelState> model, const std::string& path, Napi::Value cancel_value) {
  if (model->vocab_only) Throw(env, code::INVALID_ARGUMENT, "the model was loaded with vocabOnly: it has no weights to adapt");
  auto cancel = CancelToken::From(cancel_value);
  return ThreadJob::Start(env, "genai.loadLora", cancel, Napi::Function(), [model, path](ThreadJob& job) -> ThreadJob::ValueMaker {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) throw CodedError(code::MODEL_NOT_FOUND, "LoRA adapter not found: " + path);
    if (!S_ISREG(st.st_mode)) throw CodedError(code::INVALID_MODEL, "not a regular file: " + path);
    CheckGgufAdapter(path);  // what llama.cpp's GGUF reader would abort on
    if (job.cancel()->IsCancelled()) throw CodedError(code::ABORTED, "loadLora was aborted");
    auto state = std::make_shared<LoraState>();
    state->model = model;
    state->path = path;
    {
      LogCapture capture;  // llama.cpp says why it refused the adapter in its log
      state->adapter = llama_adapter_lora_init(model->model, path.c_str());
      if (!state->adapter) {
        std::string why = capture.Errors();
        throw CodedError(code::INVALID_MODEL, "llama.cpp refused the LoRA adapter" + (why.empty() ? std::string() : " (" + why + ")") + ": " + path);
      }
    }
    return [state](Napi::Env env) -> Napi::Value { return SharedHandle<LoraState>::New(env, Data(env).lora_ctor, state); };
  });
}

}  // namespace genai

namespace genai {

// setLoras([{ lora, scale }]): replaces the context's adapters. The KV cache
// was computed with the old weights: when the set changes, every sequence's
// history is forgotten (the next prompt is decoded again).
Napi::Value ContextHandle::SetLoras(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  if (info.Length() < 1 || !info[0].IsArray()) Throw(env, code::INVALID_ARGUMENT, "loras must be an array of { lora, scale }");
  auto arr = info[0].As<Napi::Array>();
  std::vector<std::shared_ptr<LoraState>> loras;
  std::vector<float> scales;
  Napi::FunctionReference& ctor = Data(env).lora_ctor;
  for (uint32_t i = 0; i < arr.Length(); i++) {
    const std::string where = "loras[" + std::to_string(i) + "]";
    if (!arr.Get(i).IsObject()) Throw(env, code::INVALID_ARGUMENT, where + " must be { lora, scale }");
    Napi::Object e = arr.Get(i).As<Napi::Object>();
    CheckKeys(e, {"lora", "scale"}, "LoRA");
    Napi::Value h = e.Get("lora");
    if (!h.IsObject() || !h.As<Napi::Object>().InstanceOf(ctor.Value())) Throw(env, code::INVALID_ARGUMENT, where + ".lora must be a LoraHandle");
    std::shared_ptr<LoraState> l = LoraHandle::Unwrap(h.As<Napi::Object>())->State(env);
    if (l->model != s->model) Throw(env, code::INVALID_ARGUMENT, where + ".lora was loaded for another model");
    for (const auto& seen : loras)
      if (seen == l) Throw(env, code::INVALID_ARGUMENT, where + ".lora is given twice");
    loras.push_back(l);
    scales.push_back(static_cast<float>(NumberField(e, "scale", -100, 100)));
  }
  BusyGuard guard(s, env);
  if (loras == s->loras && scales == s->lora_scales) return env.Undefined();
  std::vector<llama_adapter_lora*> ptrs;
  for (const auto& l : loras) ptrs.push_back(l->adapter);
  llama_set_adapters_lora(s->ctx, ptrs.empty() ? nullptr : ptrs.data(), ptrs.size(), scales.empty() ? nullptr : scales.data());
  llama_memory_clear(llama_get_memory(s->ctx), true);
  for (auto& t : s->kv_tokens) t.clear();
  s->loras = std::move(loras);
  s->lora_scales = std::move(scales);
  return env.Undefined();
}

}  // namespace genai
