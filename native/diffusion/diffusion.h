// DiffusionModel's native half: stable-diffusion.cpp (sd_ctx_t) on the same
// ggml as llama.cpp. Compiled only when deps/stable-diffusion.cpp is present
// (GENAI_WITH_DIFFUSION). sd.cpp's progress/log/preview callbacks are
// process-wide, so one sd.cpp operation (load or generation) runs at a time
// in the process and the callbacks are routed to it.
#pragma once
#include <napi.h>

namespace genai {
// loadDiffusionModel({ model | diffusionModel, vae, clipL, clipG, t5xxl, taesd, weightType, threads, flashAttention },
//                    onProgress(fraction), cancelToken) -> Promise<DiffusionHandle>
Napi::Value LoadDiffusionModel(const Napi::CallbackInfo& info);
Napi::Function DiffusionHandleInit(Napi::Env env);
}  // namespace genai
