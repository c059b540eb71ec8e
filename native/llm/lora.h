// LoRA adapters for the LLM (llama.cpp's llama_adapter_lora): loaded per
// model (ModelHandle::LoadLora, on a native thread, the file checked first),
// applied per context with a scale (ContextHandle::SetLoras). A context holds
// the adapters it uses, so disposing an adapter's handle never frees weights
// a context still computes with.
#pragma once
#include <napi.h>

#include <memory>
#include <string>

#include "llama.h"
#include "llm/model.h"
#include "util/shared_handle.h"

namespace genai {

struct LoraState {
  std::shared_ptr<ModelState> model;  // the adapter is freed before the model it belongs to
  llama_adapter_lora* adapter = nullptr;
  std::string path;
  ~LoraState();
};

class LoraHandle : public Napi::ObjectWrap<LoraHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit LoraHandle(const Napi::CallbackInfo& info);
  std::shared_ptr<LoraState> State(Napi::Env env) const { return state_.State(env); }

 private:
  // info() -> { path, alpha (adapter.lora.alpha; 0 when absent), tensors }
  Napi::Value Info(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  SharedHandle<LoraState> state_;
};

// loadLora(path, cancelToken?) on a ModelHandle -> Promise<LoraHandle>. Rejects
// MODEL_NOT_FOUND, INVALID_MODEL (not an adapter, another architecture or
// shape: llama.cpp's message).
Napi::Value LoadLora(Napi::Env env, std::shared_ptr<ModelState> model, const std::string& path, Napi::Value cancel);

}  // namespace genai
