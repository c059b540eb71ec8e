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

// While set and cancelled, this thread's llama.cpp log lines are dropped: an
// aborted decode logs its (expected) failure at error level.
struct CancelFlag;
extern thread_local const CancelFlag* t_quiet_when_cancelled;
}  // namespace genai
