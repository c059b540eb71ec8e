// A context's memory: its KV state to and from host memory (saveState /
// restoreState, for the orchestrator's free/restore; ContextHandle methods
// declared in llm/context.h) and what llama.cpp allocated for it per device.
#pragma once
#include <napi.h>

#include <string>
#include <vector>

#include "llama.h"

namespace genai {

struct DeviceBytes {
  std::string device;                          // ggml device name ("CPU", "CUDA0", ...)
  double model = 0, context = 0, compute = 0;  // bytes
};

// Bytes llama.cpp allocated for this context (and its model), per device.
std::vector<DeviceBytes> ContextMemory(const llama_context* ctx);
Napi::Array DeviceBytesToJs(Napi::Env env, const std::vector<DeviceBytes>& v);

}  // namespace genai
