// genai_native.node entry: registers the classes and functions lib/binding/types.ts
// types. Context-aware: each env (main thread, worker_threads) gets its own
// AddonData; at env teardown running jobs are cancelled and awaited.
#include <napi.h>

#include <cstdlib>
#include <mutex>
#include <set>

#include "llama.h"
#ifdef GENAI_WITH_DIFFUSION
#include "diffusion/diffusion.h"
#endif
#include "llm/context.h"
#include "llm/estimate.h"
#include "llm/lora.h"
#include "llm/model.h"
#include "system/backends.h"
#include "system/rpc.h"
#include "system/system.h"
#include "util/jobs.h"
#include "util/abort_guard.h"
#include "util/log.h"

namespace genai {

namespace {
std::once_flag g_backend_once;

// Every env's running jobs, for process exit: exit() runs static destructors
// (ggml's, OpenMP's, the GPU driver's) that must not race a generation still
// on its thread.
//
// How long process exit waits for cancelled native work to stop. A cancelled
// job stops at its next check, but a step it cannot leave (a context's
// allocation, one GPU batch) runs to its end: on lavapipe under CI load that
// was over 5 s, the former bound, and exit then crashed (SIGSEGV) in the
// destructors. The wait ends as soon as the work has stopped.
constexpr int kExitWaitMs = 60000;
std::mutex g_trackers_mu;
std::set<std::shared_ptr<JobTracker>>* g_trackers = new std::set<std::shared_ptr<JobTracker>>();

void CancelEverythingAtExit() {
  std::set<std::shared_ptr<JobTracker>> all;
  {
    std::lock_guard<std::mutex> lock(g_trackers_mu);
    all = *g_trackers;
  }
  for (auto& t : all) t->CancelAllAndWait(kExitWaitMs);
}

// shutdown(): lib/native.ts calls it from process.on('exit'), which runs
// before exit() destroys any static (atexit is only a backstop: statics
// created lazily after it was registered are destroyed before it runs).
// Only this env's jobs: a worker_thread's exit must not stop the main thread's work.
Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  DetachLogger(info.Env());  // no JS runs after 'exit': later lines go to stderr
  Data(info.Env()).jobs->CancelAllAndWait(kExitWaitMs);
  return info.Env().Undefined();
}

// Env teardown (worker_threads terminate, main-thread shutdown).
void Cleanup(void* arg) {
  auto* data = static_cast<AddonData*>(arg);
  DetachLogger(data->env);
  data->jobs->CancelAllAndWait(10000);
  std::lock_guard<std::mutex> lock(g_trackers_mu);
  g_trackers->erase(data->jobs);
}
}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  static std::string init_error;
  std::call_once(g_backend_once, [] {
    InstallLogger();
    InstallAbortCallback();  // GGML_ASSERT on a guarded thread (model load, tokenizer) throws instead of aborting
    // the CPU module first: llama_backend_init() would otherwise make ggml
    // scan the node binary's folder and the working directory for modules
    try {
      LoadCpuBackend(AddonDir());
    } catch (const std::exception& e) {
      init_error = e.what();
      return;
    }
    llama_backend_init();
    std::atexit(CancelEverythingAtExit);
  });
  if (!init_error.empty()) Throw(env, code::ENGINE_UNAVAILABLE, init_error);
  auto* data = new AddonData();
  data->env = env;
  env.SetInstanceData<AddonData>(data);
  {
    std::lock_guard<std::mutex> lock(g_trackers_mu);
    g_trackers->insert(data->jobs);
  }
  napi_add_env_cleanup_hook(env, Cleanup, data);

  Napi::Function cancel = CancelToken::Init(env);
  data->cancel_token_ctor = Napi::Persistent(cancel);
  Napi::Function model = ModelHandle::Init(env);
  data->model_ctor = Napi::Persistent(model);
  Napi::Function context = ContextHandle::Init(env);
  data->context_ctor = Napi::Persistent(context);
  Napi::Function lora = LoraHandle::Init(env);
  data->lora_ctor = Napi::Persistent(lora);

  exports.Set("init", Napi::Function::New(env, InitErrors, "init"));
  exports.Set("CancelToken", cancel);
  exports.Set("ModelHandle", model);
  exports.Set("ContextHandle", context);
  exports.Set("LoraHandle", lora);
  exports.Set("loadModel", Napi::Function::New(env, ModelHandle::Load, "loadModel"));
  exports.Set("estimateMemory", Napi::Function::New(env, EstimateMemory, "estimateMemory"));
  exports.Set("systemInfo", Napi::Function::New(env, SystemInfo, "systemInfo"));
  exports.Set("versions", Napi::Function::New(env, Versions, "versions"));
  exports.Set("loadBackend", Napi::Function::New(env, LoadBackend, "loadBackend"));
  exports.Set("backendModules", Napi::Function::New(env, BackendModules, "backendModules"));
  exports.Set("deviceName", Napi::Function::New(env, DeviceName, "deviceName"));
  exports.Set("connectRpcServers", Napi::Function::New(env, ConnectRpcServersJs, "connectRpcServers"));
  exports.Set("rpcDevices", Napi::Function::New(env, RpcDevicesJs, "rpcDevices"));
  exports.Set("refreshRpcDevices", Napi::Function::New(env, RefreshRpcDevicesJs, "refreshRpcDevices"));
  exports.Set("startRpcServer", Napi::Function::New(env, StartRpcServerJs, "startRpcServer"));
  exports.Set("addonDir", Napi::String::New(env, AddonDir()));
  exports.Set("shutdown", Napi::Function::New(env, Shutdown, "shutdown"));
  exports.Set("setLogLevel", Napi::Function::New(env, SetLogLevel, "setLogLevel"));
  exports.Set("setLogger", Napi::Function::New(env, SetLogger, "setLogger"));
  Napi::Object caps = Napi::Object::New(env);
  caps.Set("llm", true);
#ifdef GENAI_WITH_DIFFUSION
  caps.Set("diffusion", true);
  exports.Set("DiffusionHandle", DiffusionHandleInit(env));
  exports.Set("loadDiffusionModel", Napi::Function::New(env, LoadDiffusionModel, "loadDiffusionModel"));
  exports.Set("UpscalerHandle", UpscalerHandleInit(env));
  exports.Set("loadUpscaler", Napi::Function::New(env, LoadUpscaler, "loadUpscaler"));
#else
  caps.Set("diffusion", false);
#endif
  exports.Set("capabilities", caps);
  return exports;
}

}  // namespace genai

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return genai::Init(env, exports); }

NODE_API_MODULE(genai_native, InitAddon)
