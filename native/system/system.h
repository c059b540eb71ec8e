// systemInfo(), versions(): what ggml sees of the machine. (Log routing: util/log.h.)
#pragma once
#include <napi.h>

namespace genai {
Napi::Value SystemInfo(const Napi::CallbackInfo& info);
Napi::Value Versions(const Napi::CallbackInfo& info);
}  // namespace genai
