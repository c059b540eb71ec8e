// What a model + context would take, per device, before loading them: a
// no-allocation load measured by llama.cpp itself (as its fit routine does).
#pragma once
#include <napi.h>

namespace genai {

// estimateMemory(path, { gpuLayers, device }, { contextSize, batchSize, embeddings }) -> Promise<[{device, model, context, compute}]>
Napi::Value EstimateMemory(const Napi::CallbackInfo& info);

}  // namespace genai
