// ggml backend modules (GGML_BACKEND_DL): the CPU backend and each GPU backend
// are shared libraries beside the addon, registered at run time. The CPU
// module is loaded when the addon initialises (before llama_backend_init, so
// ggml never scans other folders); GPU modules only when lib/system/backends.ts
// asks, after a child process has loaded them without crashing.
#pragma once
#include <napi.h>

#include <shared_mutex>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "ggml-cpu.h"

namespace genai {

// ggml's backend registry is a plain global list: registering a module while
// another thread walks the devices (a model load in another worker_thread)
// would be a data race. Registering takes this lock exclusively; whatever enumerates devices or
// creates backends (loads, context creation, systemInfo, device selection)
// holds it shared for that call. Never nest it.
std::shared_lock<std::shared_mutex> RegistryReadLock();

// Held while a model loads or a context is created (llama.cpp or sd.cpp):
// the registry lock shared, plus one process-wide mutex, so that loads from
// different worker_threads run one after another. Concurrent loads on one
// Vulkan device crashed in llama_model_loader::create_tensor (lavapipe, a
// null function pointer); loads are mostly file reads and gain little from
// running side by side.
struct BackendSetupLock {
  BackendSetupLock();
  std::shared_lock<std::shared_mutex> registry;
  std::unique_lock<std::mutex> setup;
};

// The folder genai_native.node was loaded from.
std::string AddonDir();

// Registers the best CPU variant in `dir` (ggml's own scoring: the module
// whose ggml_backend_score() is highest on this CPU), or the plain
// ggml-cpu module. Returns the loaded file's path; throws std::runtime_error
// when no CPU module loads. Idempotent.
std::string LoadCpuBackend(const std::string& dir);

// JS: loadBackend(path) -> { name, path, devices: [device names] }: registers
// one backend module (idempotent per path, process-wide). Rejects with
// BACKEND_ERROR and the loader's message when the module does not load.
Napi::Value LoadBackend(const Napi::CallbackInfo& info);

// Registers the module `name` beside the addon (libggml-<name>.so,
// ggml-<name>.dll), idempotent; nullptr (and *why) when it does not load.
// Takes the registry lock: never call it while holding RegistryReadLock.
ggml_backend_reg_t LoadModule(const std::string& name, std::string* why);

// JS: backendModules() -> [{ name, path }]: the modules registered so far.
Napi::Value BackendModules(const Napi::CallbackInfo& info);

// Devices for a model, from a device spec:
//   "auto"            the devices of the first GPU backend registered in the
//                     order CUDA, Metal, Vulkan, then any other; none: CPU
//   "cpu"             no GPU device (CPU only)
//   a backend name    its devices ("cuda", "vulkan", "metal", case-insensitive)
//   a device name     that device ("Vulkan0", "CUDA1")
// Returns the list with a terminating nullptr (llama_model_params.devices).
// Throws CodedError INVALID_ARGUMENT when the spec names nothing registered.
std::vector<ggml_backend_dev_t> SelectDevices(const std::string& spec);

// SelectDevices(o.device), on the JS thread: a bad spec throws INVALID_ARGUMENT.
std::vector<ggml_backend_dev_t> DevicesProp(Napi::Object o);

// A persistent ggml CPU threadpool of n threads (through the CPU module's
// proc addresses, resolved once by LoadCpuBackend, as llama-bench does with
// GGML_BACKEND_DL), or nullptr when the CPU module has none. Without one, ggml starts and joins its worker
// threads on every graph compute — once per generated token — and without
// OpenMP that costs far more than a small model's token. Free with
// FreeCpuThreadpool after the context that uses it.
// The pool starts paused; a graph compute resumes it. Pause it when an
// operation ends: an unpaused pool's idle workers spin for ~0.1-0.3 s after
// each graph (ggml's poll, 1024 * 128 * 50 rounds), taking cores from the
// app and from other contexts.
ggml_threadpool_t NewCpuThreadpool(int n_threads);
void PauseCpuThreadpool(ggml_threadpool_t tp);
void FreeCpuThreadpool(ggml_threadpool_t tp);

// The name of the first device for o.device (SelectDevices; "CPU" when none):
// the device sd.cpp's backend spec takes. On the JS thread: a bad spec
// throws INVALID_ARGUMENT.
std::string DeviceNameProp(Napi::Object o);

// JS: deviceName(spec) -> the first device a load with this spec places the
// model on ("CPU" when none): what memory ledgers key its bytes by.
// Throws INVALID_ARGUMENT when the spec names nothing registered.
Napi::Value DeviceName(const Napi::CallbackInfo& info);

}  // namespace genai
