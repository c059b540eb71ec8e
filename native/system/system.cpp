#include "system/system.h"

#include "system/backends.h"

#include <string>
#include <thread>

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

namespace genai {

namespace {

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

Napi::Value Versions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("addon", GENAI_VERSION);
  o.Set("llamaCppCommit", GENAI_LLAMA_COMMIT);
  o.Set("llamaCppSource", GENAI_LLAMA_SOURCE);
  o.Set("ggml", ggml_version());
  o.Set("ggmlCommit", ggml_commit());
  o.Set("napi", NAPI_VERSION);
#ifdef GENAI_SD_COMMIT
  o.Set("stableDiffusionCommit", GENAI_SD_COMMIT);
#else
  o.Set("stableDiffusionCommit", env.Null());  // built without the diffusion engine
#endif
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
