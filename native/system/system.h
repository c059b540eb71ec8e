// systemInfo(), versions() and log routing: what ggml sees of the machine.
#pragma once
#include <napi.h>

#include <string>

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

// Collects the error and warning lines llama.cpp logs on this thread while
// alive (whatever the log level), so a failure's message can carry them.
class LogCapture {
 public:
  LogCapture();
  ~LogCapture();
  LogCapture(const LogCapture&) = delete;
  // The captured error lines (warnings when there are none), joined by "; ".
  std::string Errors() const;

 private:
  friend void CaptureLine(int level, const char* text);
  std::string errors_, warnings_;
  LogCapture* prev_;
};
}  // namespace genai
