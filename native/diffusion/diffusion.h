// DiffusionModel's native half: stable-diffusion.cpp (sd_ctx_t) on the same
// ggml as llama.cpp. Compiled only when deps/stable-diffusion.cpp is present
// (GENAI_WITH_DIFFUSION). sd.cpp's progress/log/preview callbacks are
// process-wide, so one sd.cpp operation (load, generation or upscale) runs at a time
// in the process and the callbacks are routed to it.
#pragma once
#include <napi.h>

namespace genai {
// loadDiffusionModel({ model | diffusionModel, vae, clipL, clipG, t5xxl, llm, llmVision, clipVision, controlNet, photoMaker,
//                      taesd, weightType, threads, flashAttention, … },
//                    onProgress(fraction), cancelToken) -> Promise<DiffusionHandle>
Napi::Value LoadDiffusionModel(const Napi::CallbackInfo& info);
Napi::Function DiffusionHandleInit(Napi::Env env);
// loadUpscaler({ model: ESRGAN file, threads, tileSize }, cancelToken) -> Promise<UpscalerHandle>
// UpscalerHandle: scale() -> the model's factor per pass; upscale({ image, passes }, cancelToken)
//   -> Promise<[image]>; dispose().
Napi::Value LoadUpscaler(const Napi::CallbackInfo& info);
Napi::Function UpscalerHandleInit(Napi::Env env);
}  // namespace genai
