// DiffusionHandle.generate's parameters: read and checked on the JS thread
// (lib/diffusion/params.ts validated them first and filled the defaults; the
// optional ones fall back to sd_img_gen_params_init()), then turned into
// sd.cpp's sd_img_gen_params_t on the worker thread.
#pragma once
#include <napi.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "diffusion/part_check.h"
#include "diffusion/sd_ops.h"
#include "stable-diffusion.h"

namespace genai {

// One generation's parameters, owned by the job (strings and pixels copied
// from JS), so that the sd.cpp parameters can point into them on the worker.
struct GenRequest {
  std::string prompt, negative, sampler, scheduler;
  int width = 0, height = 0, steps = 0, count = 0, preview_interval = 1;
  float cfg = 0;
  std::optional<int> clip_skip;
  std::optional<float> guidance, strength, flow_shift, control_strength;
  int64_t seed = 0;
  RawImg init, mask, control;  // control: 3 channels (an alpha channel is dropped)
  std::vector<RawImg> refs;
  std::vector<std::pair<std::string, float>> loras;  // path, scale
  preview_t preview = PREVIEW_NONE;
  // the hires fix (lib/diffusion/params.ts resolveHires filled it in): target size, second pass
  struct Hires {
    bool enabled = false;
    int width = 0, height = 0, steps = 0;
    float strength = 0;
    sd_hires_upscaler_t upscaler = SD_HIRES_UPSCALER_LATENT;
    std::string model;  // ESRGAN file for SD_HIRES_UPSCALER_MODEL
  } hires;
  // step caching (lib/diffusion/params.ts resolveCache): the mode and the fields given
  struct Cache {
    bool enabled = false;
    sd_cache_mode_t mode = SD_CACHE_DISABLED;
    std::string name;  // as the option named it
    std::optional<float> threshold, start, end;
    std::optional<int> warmup;
  } cache;
  // PhotoMaker (lib/diffusion/params.ts resolvePhotoMaker): identity photos (3 channels), style strength, v2's embeddings file
  struct PhotoMaker {
    bool enabled = false;
    std::vector<RawImg> images;
    float style_strength = 20;
    std::string id_embeddings;
  } photo_maker;
  // an IP-Adapter image prompt (lib/diffusion/params.ts resolveIpAdapter): 3 channels, its strength
  struct IpAdapter {
    bool enabled = false;
    RawImg image;
    float strength = 1;
  } ip_adapter;
};

// What the loaded model has that some parameters need.
struct ModelFeatures {
  bool control_net = false;  // a controlImage needs a ControlNet
  int photo_maker = 0;       // photoMaker needs PhotoMaker weights (their version, 1 or 2; 0: none)
  bool ip_adapter = false;   // ipAdapter needs an IP-Adapter
  bool taesd = false;        // a "tae" preview needs a TAESD, a "vae" preview none (sd.cpp decodes both with the TAESD when loaded)
  DenoiserInputs inputs;     // guidance, flowShift and refImages need a denoiser that reads them
};

// Reads `o` (every key known, every value in range) for a model with
// `model`'s features. Throws INVALID_ARGUMENT naming the field.
GenRequest ReadGenRequest(Napi::Object o, const ModelFeatures& model);

// The sd.cpp parameters of `r`. They point into `r`, `loras`, `refs` and
// `id_images`, which must outlive the generate_image() call.
void FillImgGenParams(const GenRequest& r, bool vae_tiling, sd_img_gen_params_t& p, std::vector<sd_lora_t>& loras, std::vector<sd_image_t>& refs,
                      std::vector<sd_image_t>& id_images);

}  // namespace genai
