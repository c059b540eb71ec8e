#include "system/system.h"

#include "system/backends.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"
#include "util/errors.h"
#include "util/jobs.h"

namespace genai {

thread_local const CancelFlag* t_quiet_when_cancelled = nullptr;
thread_local LogCapture* t_capture = nullptr;

LogCapture::LogCapture() : prev_(t_capture) { t_capture = this; }
LogCapture::~LogCapture() { t_capture = prev_; }

std::string LogCapture::Errors() const {
  std::string s = errors_.empty() ? warnings_ : errors_;
  while (!s.empty() && (s.back() == ' ' || s.back() == ';')) s.pop_back();
  return s;
}

void CaptureLine(int level, const char* text) {
  LogCapture* c = t_capture;
  if (!c || (level != GGML_LOG_LEVEL_ERROR && level != GGML_LOG_LEVEL_WARN)) return;
  std::string line(text);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (line.empty()) return;
  std::string& dst = level == GGML_LOG_LEVEL_ERROR ? c->errors_ : c->warnings_;
  if (dst.size() < 2000) dst += line + "; ";
}

namespace {

std::atomic<int> g_min_level{GGML_LOG_LEVEL_ERROR};
std::atomic<int> g_last_level{GGML_LOG_LEVEL_NONE};

int ParseLevel(const std::string& s) {
  if (s == "debug") return GGML_LOG_LEVEL_DEBUG;
  if (s == "info") return GGML_LOG_LEVEL_INFO;
  if (s == "warn") return GGML_LOG_LEVEL_WARN;
  if (s == "error") return GGML_LOG_LEVEL_ERROR;
  if (s == "none") return 100;
  return -1;
}

void LogCallback(ggml_log_level level, const char* text, void*) {
  int effective = level == GGML_LOG_LEVEL_CONT ? g_last_level.load() : static_cast<int>(level);
  if (level != GGML_LOG_LEVEL_CONT) g_last_level = level;
  CaptureLine(effective, text);
  if (t_quiet_when_cancelled && t_quiet_when_cancelled->IsCancelled()) return;
  if (effective >= g_min_level.load()) std::fputs(text, stderr);
}

const char* DevType(enum ggml_backend_dev_type t) {
  switch (t) {
    case GGML_BACKEND_DEVICE_TYPE_CPU: return "cpu";
    case GGML_BACKEND_DEVICE_TYPE_GPU: return "gpu";
    case GGML_BACKEND_DEVICE_TYPE_IGPU: return "igpu";
    case GGML_BACKEND_DEVICE_TYPE_ACCEL: return "accel";
    default: return "other";
  }
}

}  // namespace

void InstallLogger() {
  const char* env = std::getenv("GENAI_NATIVE_LOG");
  if (env) {
    int l = ParseLevel(env);
    if (l >= 0) g_min_level = l;
  }
  llama_log_set(LogCallback, nullptr);
}

Napi::Value SetLogLevel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) Throw(env, code::INVALID_ARGUMENT, "level must be a string");
  int l = ParseLevel(info[0].As<Napi::String>().Utf8Value());
  if (l < 0) Throw(env, code::INVALID_ARGUMENT, "level must be one of debug, info, warn, error, none");
  g_min_level = l;
  return env.Undefined();
}

Napi::Value Versions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("addon", GENAI_VERSION);
  o.Set("llamaCppCommit", GENAI_LLAMA_COMMIT);
  o.Set("llamaCppSource", GENAI_LLAMA_SOURCE);
  o.Set("ggml", ggml_version());
  o.Set("ggmlCommit", ggml_commit());
  o.Set("napi", NAPI_VERSION);
  return o;
}

Napi::Value SystemInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  Napi::Array devices = Napi::Array::New(env);
  auto reading = RegistryReadLock();
  for (size_t i = 0; i < ggml_backend_dev_count(); i++) {
    ggml_backend_dev_t dev = ggml_backend_dev_get(i);
    size_t free = 0, total = 0;
    ggml_backend_dev_memory(dev, &free, &total);
    Napi::Object d = Napi::Object::New(env);
    d.Set("name", ggml_backend_dev_name(dev));
    d.Set("description", ggml_backend_dev_description(dev));
    d.Set("type", DevType(ggml_backend_dev_type(dev)));
    d.Set("backend", ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev)));
    d.Set("freeBytes", Napi::Number::New(env, static_cast<double>(free)));
    d.Set("totalBytes", Napi::Number::New(env, static_cast<double>(total)));
    devices.Set(static_cast<uint32_t>(i), d);
  }
  o.Set("devices", devices);
  Napi::Array backends = Napi::Array::New(env);
  for (size_t i = 0; i < ggml_backend_reg_count(); i++) backends.Set(static_cast<uint32_t>(i), ggml_backend_reg_name(ggml_backend_reg_get(i)));
  o.Set("backends", backends);
  o.Set("cpuThreads", std::thread::hardware_concurrency());
  o.Set("cpuFeatures", llama_print_system_info());
  o.Set("gpuOffload", llama_supports_gpu_offload());
  o.Set("mmap", llama_supports_mmap());
  o.Set("versions", Versions(info));
  return o;
}

}  // namespace genai
