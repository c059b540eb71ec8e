#include "diffusion/diffusion.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "diffusion/sd_ops.h"
#include "system/backends.h"
#include "stable-diffusion.h"
#include "util/args.h"
#include "util/errors.h"
#include "util/jobs.h"
#include "util/shared_handle.h"

namespace genai {

namespace {

struct SdModel {
  sd_ctx_t* ctx = nullptr;
  bool vae_tiling = false;  // decode (and encode) the VAE in tiles to bound its compute memory
  ~SdModel() {
    if (ctx) free_sd_ctx(ctx);
  }
};

class DiffusionHandle : public Napi::ObjectWrap<DiffusionHandle> {
 public:
  explicit DiffusionHandle(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<DiffusionHandle>(info), model_(info, "DiffusionHandle is created by loadDiffusionModel()", "the diffusion model has been disposed") {}

  std::shared_ptr<SdModel> Model(Napi::Env env) const { return model_.State(env); }

  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = Model(env);
    Napi::Object o = Napi::Object::New(env);
    Napi::Array samplers = Napi::Array::New(env), schedulers = Napi::Array::New(env);
    for (int i = 0; i < SAMPLE_METHOD_COUNT; i++) samplers.Set(static_cast<uint32_t>(i), sd_sample_method_name(static_cast<sample_method_t>(i)));
    for (int i = 0; i < SCHEDULER_COUNT; i++) schedulers.Set(static_cast<uint32_t>(i), sd_scheduler_name(static_cast<scheduler_t>(i)));
    o.Set("samplers", samplers);
    o.Set("schedulers", schedulers);
    o.Set("defaultSampler", sd_sample_method_name(sd_get_default_sample_method(m->ctx)));
    o.Set("imageGeneration", sd_ctx_supports_image_generation(m->ctx));
    return o;
  }

  // cancel('all' | 'newLatents'): sd_cancel_generation, from the JS thread.
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = Model(env);
    std::string mode = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "all";
    sd_cancel_generation(m->ctx, mode == "newLatents" ? SD_CANCEL_NEW_LATENTS : SD_CANCEL_ALL);
    return env.Undefined();
  }

  // generate(params, onEvent, cancelToken) -> Promise<[{ data: Buffer, width, height, channels }]>
  Napi::Value Generate(const Napi::CallbackInfo& info);

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model_.Reset();
    return info.Env().Undefined();
  }

 private:
  SharedHandle<SdModel> model_;
};

// One generation's parameters, every one read from JS (lib/diffusion/params.ts
// fills the defaults); the optional ones fall back to sd_img_gen_params_init().
struct GenRequest {
  std::string prompt, negative, sampler, scheduler;
  int width = 0, height = 0, steps = 0, count = 0, preview_interval = 1;
  float cfg = 0;
  std::optional<int> clip_skip;
  std::optional<float> guidance, strength;
  int64_t seed = 0;
  RawImg init, mask;
  std::vector<std::pair<std::string, float>> loras;
  preview_t preview = PREVIEW_NONE;
};

Napi::Value DiffusionHandle::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = Model(env);
  Napi::Object o = ObjectArg(info, 0, "params");
  GenRequest r;
  CheckKeys(o,
            {"prompt", "negativePrompt", "width", "height", "steps", "count", "cfgScale", "guidance", "strength", "clipSkip", "seed", "sampler", "scheduler",
             "initImage", "mask", "loras", "preview"},
            "generate");
  r.prompt = StringField(o, "prompt");
  r.negative = StringField(o, "negativePrompt");
  // sd.cpp's prompt-attention parser recurses per character (lib/diffusion/defaults.ts MAX_PROMPT_CHARS)
  constexpr size_t kMaxPromptBytes = 4096 * 4;
  if (r.prompt.size() > kMaxPromptBytes || r.negative.size() > kMaxPromptBytes)
    Throw(env, code::INVALID_ARGUMENT, "prompt and negativePrompt are limited to " + std::to_string(kMaxPromptBytes) + " bytes");
  r.width = static_cast<int>(IntField(o, "width", 64, 4096));
  r.height = static_cast<int>(IntField(o, "height", 64, 4096));
  // sd.cpp rounds other sizes up without saying so (lib/diffusion/defaults.ts SIDE_MULTIPLE)
  if (r.width % 64 || r.height % 64) Throw(env, code::INVALID_ARGUMENT, "width and height must be multiples of 64");
  r.steps = static_cast<int>(IntField(o, "steps", 1, 1000));
  r.count = static_cast<int>(IntField(o, "count", 1, 64));
  r.cfg = static_cast<float>(NumberField(o, "cfgScale", 0, 100));
  if (auto g = OptNumberField(o, "guidance", 0, 100)) r.guidance = static_cast<float>(*g);
  if (auto st = OptNumberField(o, "strength", 0, 1)) r.strength = static_cast<float>(*st);
  if (auto cs = OptIntField(o, "clipSkip", -1, 12)) r.clip_skip = static_cast<int>(*cs);
  r.seed = IntField(o, "seed", 0, 9007199254740991LL);
  r.sampler = StringField(o, "sampler");
  r.scheduler = StringField(o, "scheduler");
  if (str_to_sample_method(r.sampler.c_str()) == SAMPLE_METHOD_COUNT) Throw(env, code::INVALID_ARGUMENT, "unknown sampler " + r.sampler);
  if (str_to_scheduler(r.scheduler.c_str()) == SCHEDULER_COUNT) Throw(env, code::INVALID_ARGUMENT, "unknown scheduler " + r.scheduler);
  r.init = ImageProp(o, "initImage", r.width, r.height, false);
  r.mask = ImageProp(o, "mask", r.width, r.height, true);
  Napi::Value loras = o.Get("loras");
  if (!loras.IsArray()) Throw(env, code::INVALID_ARGUMENT, "loras must be an array");
  auto la = loras.As<Napi::Array>();
  for (uint32_t i = 0; i < la.Length(); i++) {
    Napi::Value l = la.Get(i);
    if (!l.IsObject()) Throw(env, code::INVALID_ARGUMENT, "loras must be objects");
    r.loras.emplace_back(StringField(l.As<Napi::Object>(), "path"), static_cast<float>(NumberField(l.As<Napi::Object>(), "multiplier", -10, 10)));
  }
  Napi::Value pv = o.Get("preview");
  if (pv.IsObject()) {
    std::string mode = StringField(pv.As<Napi::Object>(), "mode");
    if (mode != "proj" && mode != "tae" && mode != "vae") Throw(env, code::INVALID_ARGUMENT, "preview.mode must be proj, tae or vae");
    r.preview = mode == "vae" ? PREVIEW_VAE : mode == "tae" ? PREVIEW_TAE : PREVIEW_PROJ;
    r.preview_interval = static_cast<int>(IntField(pv.As<Napi::Object>(), "intervalSteps", 1, 1000));
  }
  Napi::Function on_event = FunctionArg(info, 1, "onEvent");
  auto cancel = CancelToken::From(info.Length() > 2 ? info[2] : env.Undefined());

  return ThreadJob::Start(env, "genai.diffusion.generate", cancel, on_event, [m, r](ThreadJob& job) -> ThreadJob::ValueMaker {
    // sd.cpp skips a LoRA it cannot open and generates without it
    for (const auto& lora : r.loras) CheckModelFileExtent(lora.first, "LoRA");
    std::vector<RawImg> images;
    std::string errors;
    bool ok = false;
    {
      OpScope scope(&job, true);
      sd_cancel_generation(m->ctx, SD_CANCEL_RESET);
      scope.EnablePreview(r.preview, r.preview_interval);
      job.Post([](Napi::Env env, Napi::Function cb) {
        Napi::Object e = Event(env, "stage");
        e.Set("stage", "encoding");
        e.Set("imageIndex", 0);
        cb.Call({e});
      });
      sd_img_gen_params_t p;
      sd_img_gen_params_init(&p);
      std::vector<sd_lora_t> loras;
      for (const auto& [path, mult] : r.loras) loras.push_back(sd_lora_t{false, mult, path.c_str()});
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
      p.seed = r.seed;
      p.batch_count = r.count;
      if (!r.init.data.empty()) {
        p.init_image = sd_image_t{r.init.width, r.init.height, r.init.channels, const_cast<uint8_t*>(r.init.data.data())};
        if (r.strength) p.strength = *r.strength;
      }
      p.vae_tiling_params.enabled = m->vae_tiling;
      if (!r.mask.data.empty()) p.mask_image = sd_image_t{r.mask.width, r.mask.height, r.mask.channels, const_cast<uint8_t*>(r.mask.data.data())};
      sd_image_t* out = nullptr;
      int n = 0;
      ok = generate_image(m->ctx, &p, &out, &n);
      images = TakeImages(out, n);
      errors = scope.Op().errors;
    }
    if (!ok && images.empty() && !job.cancel()->IsCancelled()) throw CodedError(FailureCode(errors), "stable-diffusion.cpp failed to generate: " + errors);
    for (size_t i = 0; i < images.size(); i++) {
      int index = static_cast<int>(i);
      job.Post([index](Napi::Env env, Napi::Function cb) {
        Napi::Object e = Event(env, "image");
        e.Set("imageIndex", index);
        cb.Call({e});
      });
    }
    auto shared = std::make_shared<std::vector<RawImg>>(std::move(images));
    return [shared](Napi::Env env) -> Napi::Value { return ImagesToJs(env, *shared); };
  });
}

}  // namespace

Napi::Function DiffusionHandleInit(Napi::Env env) {
  Napi::Function f = DiffusionHandle::DefineClass(env, "DiffusionHandle",
                                                  {
                                                      DiffusionHandle::InstanceMethod<&DiffusionHandle::Info>("info"),
                                                      DiffusionHandle::InstanceMethod<&DiffusionHandle::Generate>("generate"),
                                                      DiffusionHandle::InstanceMethod<&DiffusionHandle::Cancel>("cancel"),
                                                      DiffusionHandle::InstanceMethod<&DiffusionHandle::Dispose>("dispose"),
                                                  });
  Data(env).diffusion_ctor = Napi::Persistent(f);
  return f;
}

Napi::Value LoadDiffusionModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ObjectArg(info, 0, "options");
  CheckKeys(o,
            {"model", "diffusionModel", "vae", "clipL", "clipG", "t5xxl", "taesd", "weightType", "threads", "flashAttention", "vaeTiling", "keepClipOnCpu",
             "keepVaeOnCpu", "offloadParamsToCpu", "device"},
            "diffusion load");
  struct Paths {
    std::string model, diffusion, vae, clip_l, clip_g, t5, taesd, wtype;
  } paths{StringField(o, "model"), StringField(o, "diffusionModel"), StringField(o, "vae"),   StringField(o, "clipL"),
          StringField(o, "clipG"), StringField(o, "t5xxl"),          StringField(o, "taesd"), StringField(o, "weightType")};
  if (paths.model.empty() && paths.diffusion.empty()) Throw(env, code::INVALID_ARGUMENT, "give model or diffusionModel");
  // sd.cpp's module placement specs (examples/common/common.cpp maps its
  // --clip-on-cpu / --vae-on-cpu / --offload-to-cpu flags the same way).
  std::string backend, params_backend;
  auto add = [](std::string& spec, const std::string& a) { spec = spec.empty() ? a : spec + "," + a; };
  // the device every module runs on unless placed below (a bare name is sd.cpp's default assignment)
  add(backend, DeviceNameProp(o));
  if (BoolField(o, "keepClipOnCpu")) add(backend, "te=cpu");
  if (BoolField(o, "keepVaeOnCpu")) add(backend, "vae=cpu");
  if (BoolField(o, "offloadParamsToCpu")) add(params_backend, "*=cpu");
  bool vae_tiling = BoolField(o, "vaeTiling");
  int threads = static_cast<int>(OptIntField(o, "threads", 1, 1024).value_or(sd_get_num_physical_cores()));
  bool fa = BoolField(o, "flashAttention");
  sd_type_t wtype = SD_TYPE_COUNT;
  if (!paths.wtype.empty()) {
    wtype = str_to_sd_type(paths.wtype.c_str());
    if (wtype == SD_TYPE_COUNT) Throw(env, code::INVALID_ARGUMENT, "unknown weightType " + paths.wtype);
  }
  Napi::Function on_progress;
  if (info.Length() > 1 && info[1].IsFunction()) on_progress = info[1].As<Napi::Function>();
  auto cancel = CancelToken::From(info.Length() > 2 ? info[2] : env.Undefined());
  auto work = [paths, threads, fa, wtype, backend, params_backend, vae_tiling](ThreadJob& job) -> ThreadJob::ValueMaker {
    for (const std::string* p : {&paths.model, &paths.diffusion, &paths.vae, &paths.clip_l, &paths.clip_g, &paths.t5, &paths.taesd})
      if (!p->empty()) CheckModelFileExtent(*p, "model");
    auto model = std::make_shared<SdModel>();
    model->vae_tiling = vae_tiling;
    std::string errors;
    {
      OpScope scope(&job, false);
      sd_ctx_params_t p;
      sd_ctx_params_init(&p);
      auto c = [](const std::string& s) { return s.empty() ? nullptr : s.c_str(); };
      p.model_path = c(paths.model);
      p.diffusion_model_path = c(paths.diffusion);
      p.vae_path = c(paths.vae);
      p.clip_l_path = c(paths.clip_l);
      p.clip_g_path = c(paths.clip_g);
      p.t5xxl_path = c(paths.t5);
      p.taesd_path = c(paths.taesd);
      p.n_threads = threads;
      p.flash_attn = fa;
      p.enable_mmap = true;
      // Read every weight now (progress reported), not lazily at the first
      // generation: load() means resident, and a lazy load's progress would
      // arrive during a generation looking like sampling steps.
      p.eager_load = true;
      p.backend = c(backend);
      p.params_backend = c(params_backend);
      if (wtype != SD_TYPE_COUNT) p.wtype = wtype;
      BackendSetupLock setup;
      model->ctx = new_sd_ctx(&p);
      errors = scope.Op().errors;
    }
    if (!model->ctx) throw CodedError(code::INVALID_MODEL, "stable-diffusion.cpp could not load the model: " + errors);
    if (job.cancel()->IsCancelled()) throw CodedError(code::ABORTED, "diffusion model load was aborted");
    return [model](Napi::Env env) -> Napi::Value { return SharedHandle<SdModel>::New(env, Data(env).diffusion_ctor, model); };
  };
  return ThreadJob::Start(env, "genai.diffusion.load", cancel, on_progress, std::move(work));
}

}  // namespace genai
