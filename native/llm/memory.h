// Memory of the LLM engine: a context's KV state to and from host memory
// (for the orchestrator's free/restore), what llama.cpp allocated per device,
// and a no-allocation load that measures what a model + context would take.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "llama.h"

namespace genai {

struct DeviceBytes {
  std::string device;  // ggml device name ("CPU", "CUDA0", ...)
  double model = 0, context = 0, compute = 0;  // bytes
};

// Bytes llama.cpp allocated for this context (and its model), per device.
std::vector<DeviceBytes> ContextMemory(const llama_context* ctx);
Napi::Array DeviceBytesToJs(Napi::Env env, const std::vector<DeviceBytes>& v);

// estimateMemory(path, { gpuLayers }, { contextSize, batchSize, embeddings }) -> Promise<[{device, model, context, compute}]>
// Loads with no_alloc (llama.cpp's own measurement, as its fit routine does).
Napi::Value EstimateMemory(const Napi::CallbackInfo& info);

}  // namespace genai
