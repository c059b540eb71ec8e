#include "diffusion/gen_request.h"

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

#include "util/args.h"
#include "util/errors.h"

namespace genai {

namespace {

// The limits of lib/diffusion/defaults.ts, checked again here.
constexpr size_t kMaxPromptBytes = 4096 * 4;  // MAX_PROMPT_CHARS: sd.cpp's prompt-attention parser recurses per character
constexpr int kMinSide = 64, kMaxSide = 4096;
constexpr uint32_t kMaxRefImages = 16;                  // MAX_REF_IMAGES
constexpr uint32_t kMaxRefAspect = 8;                   // MAX_REF_ASPECT: sd.cpp would scale a thinner image to a 0-pixel side
constexpr double kMaxFlowShift = 100;                   // MAX_FLOW_SHIFT
constexpr uint32_t kMaxPhotoMakerImages = 16;           // MAX_PHOTO_MAKER_IMAGES
constexpr double kMaxIpAdapterStrength = 5;             // MAX_IP_ADAPTER_STRENGTH
constexpr std::string_view kPhotoMakerTrigger = "img";  // PHOTO_MAKER_TRIGGER: sd.cpp's photomaker_extension.cpp trigger_word

// An RGBA image as RGB (the ControlNet's hint input has 3 channels).
RawImg DropAlpha(RawImg img) {
  if (img.channels != 4) return img;
  RawImg rgb;
  rgb.width = img.width;
  rgb.height = img.height;
  rgb.channels = 3;
  size_t pixels = static_cast<size_t>(img.width) * img.height;
  rgb.data.resize(pixels * 3);
  for (size_t i = 0; i < pixels; i++) std::copy_n(img.data.data() + i * 4, 3, rgb.data.data() + i * 3);
  return rgb;
}

void ReadLoras(Napi::Object o, GenRequest& r) {
  Napi::Env env = o.Env();
  Napi::Value loras = o.Get("loras");
  if (!loras.IsArray()) Throw(env, code::INVALID_ARGUMENT, "loras must be an array");
  auto la = loras.As<Napi::Array>();
  for (uint32_t i = 0; i < la.Length(); i++) {
    Napi::Value l = la.Get(i);
    if (!l.IsObject()) Throw(env, code::INVALID_ARGUMENT, "loras must be objects");
    Napi::Object lo = l.As<Napi::Object>();
    CheckKeys(lo, {"path", "scale"}, "lora");
    std::string path = StringField(lo, "path");
    if (path.empty()) Throw(env, code::INVALID_ARGUMENT, "a LoRA's path is empty");
    r.loras.emplace_back(std::move(path), static_cast<float>(NumberField(lo, "scale", -10, 10)));
  }
}

// lib/diffusion/defaults.ts HIRES_UPSCALERS -> sd_hires_upscaler_t
constexpr std::pair<const char*, sd_hires_upscaler_t> kHiresUpscalers[] = {
    {"latent", SD_HIRES_UPSCALER_LATENT},
    {"latent-nearest", SD_HIRES_UPSCALER_LATENT_NEAREST},
    {"latent-nearest-exact", SD_HIRES_UPSCALER_LATENT_NEAREST_EXACT},
    {"latent-antialiased", SD_HIRES_UPSCALER_LATENT_ANTIALIASED},
    {"latent-bicubic", SD_HIRES_UPSCALER_LATENT_BICUBIC},
    {"latent-bicubic-antialiased", SD_HIRES_UPSCALER_LATENT_BICUBIC_ANTIALIASED},
    {"lanczos", SD_HIRES_UPSCALER_LANCZOS},
    {"nearest", SD_HIRES_UPSCALER_NEAREST},
    {"model", SD_HIRES_UPSCALER_MODEL},
};

void ReadHires(Napi::Object o, GenRequest& r) {
  Napi::Env env = o.Env();
  Napi::Value hv = o.Get("hires");
  if (!hv.IsObject()) Throw(env, code::INVALID_ARGUMENT, "hires must be an object");
  Napi::Object h = hv.As<Napi::Object>();
  CheckKeys(h, {"width", "height", "steps", "strength", "upscaler", "upscalerModel"}, "hires");
  GenRequest::Hires& x = r.hires;
  x.enabled = true;
  // at least the first pass's size: sd.cpp would sample a smaller latent again, for nothing
  x.width = static_cast<int>(IntField(h, "width", r.width, kMaxSide));
  x.height = static_cast<int>(IntField(h, "height", r.height, kMaxSide));
  if (x.width % 64 || x.height % 64) Throw(env, code::INVALID_ARGUMENT, "hires width and height must be multiples of 64");
  x.steps = static_cast<int>(IntField(h, "steps", 1, 1000));
  x.strength = static_cast<float>(NumberField(h, "strength", 0, 1));
  if (x.strength <= 0) Throw(env, code::INVALID_ARGUMENT, "hires.strength must be greater than 0");
  std::string name = StringField(h, "upscaler");
  auto it = std::find_if(std::begin(kHiresUpscalers), std::end(kHiresUpscalers), [&](const auto& u) { return name == u.first; });
  if (it == std::end(kHiresUpscalers)) Throw(env, code::INVALID_ARGUMENT, "unknown hires.upscaler " + name);
  x.upscaler = it->second;
  Napi::Value model = h.Get("upscalerModel");
  if (!model.IsUndefined()) x.model = StringField(h, "upscalerModel");
  if ((x.upscaler == SD_HIRES_UPSCALER_MODEL) != !x.model.empty())
    Throw(env, code::INVALID_ARGUMENT, "hires.upscalerModel is needed with, and only with, hires.upscaler \"model\"");
  // sd.cpp samples the second pass with the first pass's ControlNet hint (the job's size)
  if (!r.control.data.empty()) Throw(env, code::INVALID_ARGUMENT, "hires cannot be combined with controlImage");
}

// lib/diffusion/defaults.ts CACHE_MODES -> sd_cache_mode_t
constexpr std::pair<const char*, sd_cache_mode_t> kCacheModes[] = {
    {"ucache", SD_CACHE_UCACHE},         {"easycache", SD_CACHE_EASYCACHE}, {"dbcache", SD_CACHE_DBCACHE},
    {"taylorseer", SD_CACHE_TAYLORSEER}, {"cache-dit", SD_CACHE_CACHE_DIT}, {"spectrum", SD_CACHE_SPECTRUM},
};

void ReadCache(Napi::Object o, GenRequest& r) {
  Napi::Env env = o.Env();
  Napi::Value cv = o.Get("cache");
  if (!cv.IsObject()) Throw(env, code::INVALID_ARGUMENT, "cache must be an object");
  Napi::Object c = cv.As<Napi::Object>();
  CheckKeys(c, {"mode", "threshold", "start", "end", "warmup"}, "cache");
  GenRequest::Cache& x = r.cache;
  x.name = StringField(c, "mode");
  auto it = std::find_if(std::begin(kCacheModes), std::end(kCacheModes), [&](const auto& m) { return x.name == m.first; });
  if (it == std::end(kCacheModes)) Throw(env, code::INVALID_ARGUMENT, "unknown cache.mode " + x.name);
  x.enabled = true;
  x.mode = it->second;
  if (auto v = OptNumberField(c, "threshold", 0, 100)) x.threshold = static_cast<float>(*v);
  if (auto v = OptNumberField(c, "start", 0, 1)) x.start = static_cast<float>(*v);
  if (auto v = OptNumberField(c, "end", 0, 1)) x.end = static_cast<float>(*v);
  if (auto v = OptIntField(c, "warmup", 0, 1000)) x.warmup = static_cast<int>(*v);
  if (x.start.value_or(0.15f) >= x.end.value_or(0.95f)) Throw(env, code::INVALID_ARGUMENT, "cache: start must be less than end");
  const bool condition_level = x.mode == SD_CACHE_UCACHE || x.mode == SD_CACHE_EASYCACHE;
  if (x.threshold && (x.mode == SD_CACHE_TAYLORSEER || x.mode == SD_CACHE_SPECTRUM))
    Throw(env, code::INVALID_ARGUMENT, "cache.threshold is not used by cache mode " + x.name);
  if ((x.start || x.end) && !condition_level) Throw(env, code::INVALID_ARGUMENT, "cache.start and cache.end are not used by cache mode " + x.name);
  if (x.warmup && condition_level) Throw(env, code::INVALID_ARGUMENT, "cache.warmup is not used by cache mode " + x.name);
}

// An image of any size (a reference, an identity photo, an image prompt): sides in [kMinSide, kMaxSide].
RawImg AnySizeImage(Napi::Env env, Napi::Value v, const std::string& name) {
  RawImg img = ImageValue(env, v, name, 0, 0, false);
  if (std::min(img.width, img.height) < static_cast<uint32_t>(kMinSide) || std::max(img.width, img.height) > static_cast<uint32_t>(kMaxSide))
    Throw(env, code::INVALID_ARGUMENT, name + " sides must be in [" + std::to_string(kMinSide) + ", " + std::to_string(kMaxSide) + "]");
  return img;
}

// lib/diffusion/params.ts hasPhotoMakerTrigger: the trigger word as a CLIP token of its own (no letter, ASCII or
// not, right before or after it) with another token before it (the class word the identity is merged into).
bool HasPhotoMakerTrigger(const std::string& prompt) {
  auto letter = [](unsigned char c) { return std::isalpha(c) || c > 0x7f; };
  std::string lower(prompt);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (size_t at = lower.find(kPhotoMakerTrigger); at != std::string::npos; at = lower.find(kPhotoMakerTrigger, at + 1)) {
    size_t end = at + kPhotoMakerTrigger.size();
    if ((at > 0 && letter(lower[at - 1])) || (end < lower.size() && letter(lower[end]))) continue;
    if (lower.find_first_not_of(" \t\n\r", 0) < at) return true;
  }
  return false;
}

// photoMaker: sd.cpp generates without PhotoMaker, saying so only in its log, when the model has none, there
// are no id images, the prompt lacks the trigger word, or a v2 model has no embeddings file.
void ReadPhotoMaker(Napi::Object o, GenRequest& r, int photo_maker) {
  Napi::Env env = o.Env();
  Napi::Value pv = o.Get("photoMaker");
  if (!pv.IsObject()) Throw(env, code::INVALID_ARGUMENT, "photoMaker must be an object");
  Napi::Object pm = pv.As<Napi::Object>();
  CheckKeys(pm, {"idImages", "styleStrength", "idEmbeddings"}, "photoMaker");
  if (photo_maker == 0) Throw(env, code::INVALID_ARGUMENT, "photoMaker needs a model loaded with photoMaker weights");
  GenRequest::PhotoMaker& x = r.photo_maker;
  Napi::Value images = pm.Get("idImages");
  if (!images.IsArray() || images.As<Napi::Array>().Length() == 0 || images.As<Napi::Array>().Length() > kMaxPhotoMakerImages)
    Throw(env, code::INVALID_ARGUMENT, "photoMaker.idImages must be an array of 1.." + std::to_string(kMaxPhotoMakerImages) + " images");
  auto ia = images.As<Napi::Array>();
  for (uint32_t i = 0; i < ia.Length(); i++) {
    x.images.push_back(DropAlpha(AnySizeImage(env, ia.Get(i), "photoMaker.idImages[" + std::to_string(i) + "]")));
  }
  if (!HasPhotoMakerTrigger(r.prompt))
    Throw(env, code::INVALID_ARGUMENT, "photoMaker: the prompt must name the identity with the trigger word \"img\" after its class word");
  x.style_strength = static_cast<float>(NumberField(pm, "styleStrength", 0, 100));
  if (!pm.Get("idEmbeddings").IsUndefined()) x.id_embeddings = StringField(pm, "idEmbeddings");
  if (photo_maker == 1 && !x.id_embeddings.empty()) Throw(env, code::INVALID_ARGUMENT, "photoMaker.idEmbeddings is used only by PhotoMaker v2");
  if (photo_maker == 2 && x.id_embeddings.empty()) Throw(env, code::INVALID_ARGUMENT, "PhotoMaker v2 needs photoMaker.idEmbeddings");
  x.enabled = true;
}

// ipAdapter: sd.cpp ignores the image, without a word, on a model without an IP-Adapter.
void ReadIpAdapter(Napi::Object o, GenRequest& r, bool loaded) {
  Napi::Env env = o.Env();
  Napi::Value iv = o.Get("ipAdapter");
  if (!iv.IsObject()) Throw(env, code::INVALID_ARGUMENT, "ipAdapter must be an object");
  Napi::Object ip = iv.As<Napi::Object>();
  CheckKeys(ip, {"image", "strength"}, "ipAdapter");
  if (!loaded) Throw(env, code::INVALID_ARGUMENT, "ipAdapter needs a model loaded with ipAdapter (and clipVision)");
  r.ip_adapter.image = DropAlpha(AnySizeImage(env, ip.Get("image"), "ipAdapter.image"));
  r.ip_adapter.strength = static_cast<float>(NumberField(ip, "strength", 0, kMaxIpAdapterStrength));
  r.ip_adapter.enabled = true;
}

void ReadRefImages(Napi::Object o, GenRequest& r) {
  Napi::Env env = o.Env();
  Napi::Value refs = o.Get("refImages");
  if (!refs.IsArray()) Throw(env, code::INVALID_ARGUMENT, "refImages must be an array");
  auto ra = refs.As<Napi::Array>();
  if (ra.Length() > kMaxRefImages) Throw(env, code::INVALID_ARGUMENT, "refImages: at most " + std::to_string(kMaxRefImages) + " images");
  for (uint32_t i = 0; i < ra.Length(); i++) {
    std::string name = "refImages[" + std::to_string(i) + "]";
    RawImg img = AnySizeImage(env, ra.Get(i), name);
    uint32_t lo = std::min(img.width, img.height), hi = std::max(img.width, img.height);
    if (hi > kMaxRefAspect * lo) Throw(env, code::INVALID_ARGUMENT, name + " aspect ratio may be at most " + std::to_string(kMaxRefAspect) + ":1");
    r.refs.push_back(std::move(img));
  }
}

}  // namespace

GenRequest ReadGenRequest(Napi::Object o, const ModelFeatures& model) {
  Napi::Env env = o.Env();
  GenRequest r;
  CheckKeys(o, {"prompt",    "negativePrompt", "width",   "height",  "steps",     "count",      "cfgScale", "guidance",     "flowShift",
                "strength",  "clipSkip",       "seed",    "sampler", "scheduler", "initImage",  "mask",     "controlImage", "controlStrength",
                "refImages", "loras",          "preview", "hires",   "cache",     "photoMaker", "ipAdapter"},
            "generate");
  r.prompt = StringField(o, "prompt");
  r.negative = StringField(o, "negativePrompt");
  if (r.prompt.size() > kMaxPromptBytes || r.negative.size() > kMaxPromptBytes)
    Throw(env, code::INVALID_ARGUMENT, "prompt and negativePrompt are limited to " + std::to_string(kMaxPromptBytes) + " bytes");
  r.width = static_cast<int>(IntField(o, "width", kMinSide, kMaxSide));
  r.height = static_cast<int>(IntField(o, "height", kMinSide, kMaxSide));
  // sd.cpp rounds other sizes up without saying so (lib/diffusion/defaults.ts SIDE_MULTIPLE)
  if (r.width % 64 || r.height % 64) Throw(env, code::INVALID_ARGUMENT, "width and height must be multiples of 64");
  r.steps = static_cast<int>(IntField(o, "steps", 1, 1000));
  r.count = static_cast<int>(IntField(o, "count", 1, 64));
  r.cfg = static_cast<float>(NumberField(o, "cfgScale", 0, 100));
  // inputs this model's denoiser would leave unread (DenoiserInputs, part_check.h): the image would be the same
  if (auto g = OptNumberField(o, "guidance", 0, 100)) {
    if (!model.inputs.guidance) Throw(env, code::INVALID_ARGUMENT, "guidance: this model has no distilled-guidance embedder (guidance_in); use cfgScale");
    r.guidance = static_cast<float>(*g);
  }
  if (auto fs = OptNumberField(o, "flowShift", 0, kMaxFlowShift)) {
    if (*fs <= 0) Throw(env, code::INVALID_ARGUMENT, "flowShift must be greater than 0");
    if (!model.inputs.flow_shift) Throw(env, code::INVALID_ARGUMENT, "flowShift: this model is a UNet, sampled without a flow schedule");
    r.flow_shift = static_cast<float>(*fs);
  }
  if (auto st = OptNumberField(o, "strength", 0, 1)) r.strength = static_cast<float>(*st);
  if (auto cs = OptIntField(o, "clipSkip", -1, 12)) r.clip_skip = static_cast<int>(*cs);
  r.seed = IntField(o, "seed", 0, 9007199254740991LL);
  r.sampler = StringField(o, "sampler");
  r.scheduler = StringField(o, "scheduler");
  if (str_to_sample_method(r.sampler.c_str()) == SAMPLE_METHOD_COUNT) Throw(env, code::INVALID_ARGUMENT, "unknown sampler " + r.sampler);
  if (str_to_scheduler(r.scheduler.c_str()) == SCHEDULER_COUNT) Throw(env, code::INVALID_ARGUMENT, "unknown scheduler " + r.scheduler);
  r.init = ImageProp(o, "initImage", r.width, r.height, false);
  r.mask = ImageProp(o, "mask", r.width, r.height, true);
  if (!r.mask.data.empty() && r.init.data.empty()) Throw(env, code::INVALID_ARGUMENT, "mask needs an initImage");
  r.control = DropAlpha(ImageProp(o, "controlImage", r.width, r.height, false));
  if (!r.control.data.empty() && !model.control_net) Throw(env, code::INVALID_ARGUMENT, "controlImage needs a model loaded with a controlNet");
  if (auto cs = OptNumberField(o, "controlStrength", 0, 1)) r.control_strength = static_cast<float>(*cs);
  Napi::Value refs = o.Get("refImages");
  if (!refs.IsUndefined()) ReadRefImages(o, r);
  if (!r.refs.empty() && !model.inputs.ref_images)
    Throw(env, code::INVALID_ARGUMENT, "refImages: this model does not read reference images (use initImage for img2img)");
  if (!o.Get("photoMaker").IsUndefined()) ReadPhotoMaker(o, r, model.photo_maker);
  if (!o.Get("ipAdapter").IsUndefined()) ReadIpAdapter(o, r, model.ip_adapter);
  ReadLoras(o, r);
  Napi::Value hv = o.Get("hires");
  if (!hv.IsUndefined() && !hv.IsNull()) ReadHires(o, r);
  Napi::Value cv = o.Get("cache");
  if (!cv.IsUndefined() && !cv.IsNull()) ReadCache(o, r);
  Napi::Value pv = o.Get("preview");
  if (pv.IsObject()) {
    Napi::Object po = pv.As<Napi::Object>();
    CheckKeys(po, {"mode", "intervalSteps"}, "preview");
    std::string mode = StringField(po, "mode");
    if (mode != "proj" && mode != "tae" && mode != "vae") Throw(env, code::INVALID_ARGUMENT, "preview.mode must be proj, tae or vae");
    r.preview = mode == "vae" ? PREVIEW_VAE : mode == "tae" ? PREVIEW_TAE : PREVIEW_PROJ;
    // sd.cpp decodes "tae" and "vae" previews alike: with the TAESD when one is loaded, else with the VAE
    if (r.preview == PREVIEW_TAE && !model.taesd) Throw(env, code::INVALID_ARGUMENT, "preview.mode tae needs a model loaded with taesd");
    if (r.preview == PREVIEW_VAE && model.taesd) Throw(env, code::INVALID_ARGUMENT, "preview.mode vae: with a taesd loaded, every preview is the TAESD's");
    r.preview_interval = static_cast<int>(IntField(po, "intervalSteps", 1, 1000));
  } else if (!pv.IsUndefined() && !pv.IsNull()) {
    Throw(env, code::INVALID_ARGUMENT, "preview must be an object");
  }
  return r;
}

void FillImgGenParams(const GenRequest& r, bool vae_tiling, sd_img_gen_params_t& p, std::vector<sd_lora_t>& loras, std::vector<sd_image_t>& refs,
                      std::vector<sd_image_t>& id_images) {
  auto image = [](const RawImg& img) { return sd_image_t{img.width, img.height, img.channels, const_cast<uint8_t*>(img.data.data())}; };
  sd_img_gen_params_init(&p);
  loras.clear();
  for (const auto& [path, scale] : r.loras) loras.push_back(sd_lora_t{false, scale, path.c_str()});
  p.loras = loras.data();
  p.lora_count = static_cast<uint32_t>(loras.size());
  p.prompt = r.prompt.c_str();
  p.negative_prompt = r.negative.c_str();
  if (r.clip_skip) p.clip_skip = *r.clip_skip;
  p.width = r.width;
  p.height = r.height;
  p.sample_params.sample_method = str_to_sample_method(r.sampler.c_str());
  p.sample_params.scheduler = str_to_scheduler(r.scheduler.c_str());
  p.sample_params.sample_steps = r.steps;
  p.sample_params.guidance.txt_cfg = r.cfg;
  if (r.guidance) p.sample_params.guidance.distilled_guidance = *r.guidance;
  if (r.flow_shift) p.sample_params.flow_shift = *r.flow_shift;
  p.seed = r.seed;
  p.batch_count = r.count;
  if (!r.init.data.empty()) {
    p.init_image = image(r.init);
    if (r.strength) p.strength = *r.strength;
  }
  if (!r.mask.data.empty()) p.mask_image = image(r.mask);
  if (!r.control.data.empty()) {
    p.control_image = image(r.control);
    if (r.control_strength) p.control_strength = *r.control_strength;
  }
  refs.clear();
  for (const RawImg& ref : r.refs) refs.push_back(image(ref));
  p.ref_images = refs.empty() ? nullptr : refs.data();
  p.ref_images_count = static_cast<int>(refs.size());
  if (r.ip_adapter.enabled) {
    p.ip_adapter_image = image(r.ip_adapter.image);
    p.ip_adapter_strength = r.ip_adapter.strength;
  }
  id_images.clear();
  if (r.photo_maker.enabled) {
    for (const RawImg& id : r.photo_maker.images) id_images.push_back(image(id));
    p.pm_params.id_images = id_images.data();
    p.pm_params.id_images_count = static_cast<int>(id_images.size());
    p.pm_params.id_embed_path = r.photo_maker.id_embeddings.empty() ? nullptr : r.photo_maker.id_embeddings.c_str();
    p.pm_params.style_strength = r.photo_maker.style_strength;
  }
  p.vae_tiling_params.enabled = vae_tiling;
  if (r.hires.enabled) {
    p.hires.enabled = true;
    p.hires.upscaler = r.hires.upscaler;
    p.hires.model_path = r.hires.model.empty() ? nullptr : r.hires.model.c_str();
    p.hires.target_width = r.hires.width;
    p.hires.target_height = r.hires.height;
    p.hires.steps = r.hires.steps;
    p.hires.denoising_strength = r.hires.strength;
  }
  if (r.cache.enabled) {
    const GenRequest::Cache& c = r.cache;
    p.cache.mode = c.mode;
    const bool condition_level = c.mode == SD_CACHE_UCACHE || c.mode == SD_CACHE_EASYCACHE;
    if (c.threshold) (condition_level ? p.cache.reuse_threshold : p.cache.residual_diff_threshold) = *c.threshold;
    if (c.start) p.cache.start_percent = *c.start;
    if (c.end) p.cache.end_percent = *c.end;
    if (c.warmup) (c.mode == SD_CACHE_SPECTRUM ? p.cache.spectrum_warmup_steps : p.cache.max_warmup_steps) = *c.warmup;
  }
}

}  // namespace genai
