// systemInfo(), versions() and log routing: what ggml sees of the machine.
#pragma once
#include <napi.h>

namespace genai {
Napi::Value SystemInfo(const Napi::CallbackInfo& info);
Napi::Value Versions(const Napi::CallbackInfo& info);
// setLogLevel('debug'|'info'|'warn'|'error'|'none'): llama.cpp/ggml log lines
// at or above the level go to stderr (default 'error', or GENAI_NATIVE_LOG).
Napi::Value SetLogLevel(const Napi::CallbackInfo& info);
void InstallLogger();
}  // namespace genai
