#include "llm/estimate.h"

#include <algorithm>
#include <string>
#include <vector>

#include "llama.h"
#include "llm/context.h"
#include "llm/gguf_check.h"
#include "llm/placement.h"
#include "util/abort_guard.h"
#include "llm/state.h"
#include "system/backends.h"
#include "util/args.h"
#include "util/errors.h"
#include "util/jobs.h"
#include "util/log.h"

namespace genai {

Napi::Value EstimateMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");
  Napi::Object mo = ObjectArg(info, 1, "modelOptions");
  Napi::Object co = ObjectArg(info, 2, "contextOptions");
  llama_model_params mp = llama_model_default_params();
  CheckKeys(mo, {"gpuLayers", "device", "rpcServers", "rpcTimeouts", "tensorSplit"}, "estimate model");
  CheckKeys(co, {"contextSize", "batchSize", "embeddings", "flashAttention"}, "estimate context");
  mp.n_gpu_layers = static_cast<int32_t>(IntField(mo, "gpuLayers", -1, 100000));
  Placement placement = Placement::FromJs(mo);
  mp.no_alloc = true;
  mp.load_mode = LLAMA_LOAD_MODE_NONE;
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(IntField(co, "contextSize", 0, 1 << 24));  // 0: the training context
  cp.n_batch = static_cast<uint32_t>(IntField(co, "batchSize", 1, 1 << 20));
  cp.n_ubatch = std::min(cp.n_batch, cp.n_ubatch);  // llama.cpp's default n_ubatch, as a context gets
  cp.n_seq_max = 1;
  cp.embeddings = BoolField(co, "embeddings");
  cp.flash_attn_type = FlashAttnField(env, co);
  if (cp.embeddings) cp.n_ubatch = cp.n_batch;
  cp.no_perf = true;
  return RunAsync<std::vector<DeviceBytes>>(
      env,
      [path, mp, cp, placement]() mutable {
        placement.Resolve(mp, true);  // RPC servers: connected here, off the JS thread
        AbortToException abort_guard(code::INVALID_MODEL, "llama.cpp failed an assertion while reading the model");
        CheckGgufFile(path, false);  // what llama.cpp would abort on (GGML_ASSERT): INVALID_MODEL
        LogCapture capture;
        BackendSetupLock setup;
        llama_model* model = llama_model_load_from_file(path.c_str(), mp);
        if (!model) throw CodedError(code::INVALID_MODEL, "llama.cpp could not read the model: " + path + " — " + capture.Errors());
        llama_context* ctx = llama_init_from_model(model, cp);
        if (!ctx) {
          llama_model_free(model);
          throw CodedError(code::BACKEND_ERROR, "llama.cpp could not plan the context: " + capture.Errors());
        }
        auto out = ContextMemory(ctx);
        llama_free(ctx);
        llama_model_free(model);
        CheckRpcLinks(placement.links);  // sizes a server that went away did not give are not its
        return out;
      },
      [](Napi::Env env, std::vector<DeviceBytes>& v) -> Napi::Value { return DeviceBytesToJs(env, v); });
}

}  // namespace genai
