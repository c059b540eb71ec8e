#include "diffusion/diffusion.h"

#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "stable-diffusion.h"
#include "util/args.h"
#include "util/errors.h"
#include "util/jobs.h"

namespace genai {

namespace {

struct SdModel {
  sd_ctx_t* ctx = nullptr;
  ~SdModel() {
    if (ctx) free_sd_ctx(ctx);
  }
};

// The one sd.cpp operation running in this process, for the global callbacks.
std::mutex g_sd_mu;
struct ActiveOp {
  ThreadJob* job = nullptr;
  bool generating = false;
  int image_index = -1;
  int last_percent = -1;
  bool decoding = false;
  std::string errors;
} g_op;

Napi::Object Event(Napi::Env env, const char* type) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", type);
  return o;
}

void OnProgress(int step, int steps, float, void*) {
  ActiveOp& op = g_op;
  if (!op.job || steps <= 0) return;
  if (!op.generating) {  // model load: tensors read so far
    int percent = static_cast<int>(100.0 * step / steps);
    if (percent == op.last_percent) return;
    op.last_percent = percent;
    double f = static_cast<double>(step) / steps;
    op.job->Post([f](Napi::Env env, Napi::Function cb) { cb.Call({Napi::Number::New(env, f)}); });
    return;
  }
  if (op.decoding) return;  // VAE tiling progress
  if (step == 0) {          // sampling of the next image starts
    op.image_index++;
    return;
  }
  int index = std::max(0, op.image_index);
  op.job->Post([index, step, steps](Napi::Env env, Napi::Function cb) {
    Napi::Object e = Event(env, "step");
    e.Set("imageIndex", index);
    e.Set("step", step);
    e.Set("steps", steps);
    cb.Call({e});
  });
}

void OnLog(sd_log_level_t level, const char* text, void*) {
  ActiveOp& op = g_op;
  if (!text) return;
  std::string line(text);
  if (level >= SD_LOG_ERROR && op.errors.size() < 2000) op.errors += line;
  if (op.job && op.generating && !op.decoding && line.find("decoding") != std::string::npos) {
    op.decoding = true;
    op.job->Post([](Napi::Env env, Napi::Function cb) {
      Napi::Object e = Event(env, "stage");
      e.Set("stage", "decoding");
      e.Set("imageIndex", 0);
      cb.Call({e});
    });
  }
  if (level >= SD_LOG_ERROR && std::getenv("GENAI_NATIVE_LOG")) std::fputs(text, stderr);
}

void OnPreview(int step, int frame_count, sd_image_t* frames, bool, void*) {
  ActiveOp& op = g_op;
  if (!op.job || frame_count < 1 || !frames || !frames[0].data) return;
  const sd_image_t& f = frames[0];
  auto data = std::make_shared<std::vector<uint8_t>>(f.data, f.data + static_cast<size_t>(f.width) * f.height * f.channel);
  int index = std::max(0, op.image_index);
  uint32_t w = f.width, h = f.height, c = f.channel;
  op.job->Post([data, index, step, w, h, c](Napi::Env env, Napi::Function cb) {
    Napi::Object e = Event(env, "preview");
    e.Set("imageIndex", index);
    e.Set("step", step);
    Napi::Object img = Napi::Object::New(env);
    img.Set("data", Napi::Buffer<uint8_t>::Copy(env, data->data(), data->size()));
    img.Set("width", w);
    img.Set("height", h);
    img.Set("channels", c);
    e.Set("image", img);
    cb.Call({e});
  });
}

// Holds the process-wide lock and routes the callbacks for one operation.
struct OpScope {
  std::lock_guard<std::mutex> lock{g_sd_mu};
  explicit OpScope(ThreadJob* job, bool generating) {
    g_op = ActiveOp{};
    g_op.job = job;
    g_op.generating = generating;
    sd_set_log_callback(OnLog, nullptr);
    sd_set_progress_callback(OnProgress, nullptr);
  }
  ~OpScope() {
    sd_set_preview_callback(nullptr, PREVIEW_NONE, 1, false, false, nullptr);
    g_op.job = nullptr;
  }
};

std::string OptString(Napi::Object o, const char* key) { return StringProp(o, key, ""); }

struct RawImg {
  std::vector<uint8_t> data;
  uint32_t width = 0, height = 0, channels = 0;
};

RawImg ImageProp(Napi::Object o, const char* key, uint32_t width, uint32_t height, bool mask) {
  RawImg r;
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return r;
  Napi::Env env = o.Env();
  if (!v.IsObject()) Throw(env, code::INVALID_ARGUMENT, std::string(key) + " must be an image object");
  Napi::Object img = v.As<Napi::Object>();
  Napi::Value d = img.Get("data");
  if (!d.IsTypedArray() || d.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) Throw(env, code::INVALID_ARGUMENT, std::string(key) + ".data must be a Uint8Array");
  auto arr = d.As<Napi::Uint8Array>();
  r.width = static_cast<uint32_t>(IntProp(img, "width", 0, 1, 16384));
  r.height = static_cast<uint32_t>(IntProp(img, "height", 0, 1, 16384));
  r.channels = static_cast<uint32_t>(IntProp(img, "channels", 3, 1, 4));
  if (r.width != width || r.height != height) Throw(env, code::INVALID_ARGUMENT, std::string(key) + " must be " + std::to_string(width) + "x" + std::to_string(height));
  if (!mask && r.channels != 3 && r.channels != 4) Throw(env, code::INVALID_ARGUMENT, std::string(key) + ".channels must be 3 or 4");
  if (arr.ElementLength() != static_cast<size_t>(r.width) * r.height * r.channels) Throw(env, code::INVALID_ARGUMENT, std::string(key) + ".data has the wrong length");
  r.data.assign(arr.Data(), arr.Data() + arr.ElementLength());
  return r;
}

class DiffusionHandle : public Napi::ObjectWrap<DiffusionHandle> {
 public:
  explicit DiffusionHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DiffusionHandle>(info) {
    if (info.Length() != 1 || !info[0].IsExternal()) Throw(info.Env(), code::INVALID_ARGUMENT, "DiffusionHandle is created by loadDiffusionModel()");
    model_ = *info[0].As<Napi::External<std::shared_ptr<SdModel>>>().Data();
  }

  std::shared_ptr<SdModel> Model(Napi::Env env) {
    if (!model_) Throw(env, code::DISPOSED, "the diffusion model has been disposed");
    return model_;
  }

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
    model_.reset();
    return info.Env().Undefined();
  }

 private:
  std::shared_ptr<SdModel> model_;
};

struct GenRequest {
  std::string prompt, negative, sampler, scheduler;
  int width = 512, height = 512, steps = 20, count = 1, clip_skip = -1, preview_interval = 1;
  float cfg = 7.0f, guidance = 3.5f, strength = 0.75f;
  int64_t seed = 42;
  RawImg init, mask;
  std::vector<std::pair<std::string, float>> loras;
  preview_t preview = PREVIEW_NONE;
};

Napi::Value DiffusionHandle::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = Model(env);
  Napi::Object o = ObjectArg(info, 0, "params");
  GenRequest r;
  r.prompt = StringProp(o, "prompt", "");
  r.negative = StringProp(o, "negativePrompt", "");
  r.width = static_cast<int>(IntProp(o, "width", 512, 64, 4096));
  r.height = static_cast<int>(IntProp(o, "height", 512, 64, 4096));
  if (r.width % 8 || r.height % 8) Throw(env, code::INVALID_ARGUMENT, "width and height must be multiples of 8");
  r.steps = static_cast<int>(IntProp(o, "steps", 20, 1, 1000));
  r.count = static_cast<int>(IntProp(o, "count", 1, 1, 64));
  r.cfg = static_cast<float>(NumberProp(o, "cfgScale", 7.0, 0, 100));
  r.guidance = static_cast<float>(NumberProp(o, "guidance", 3.5, 0, 100));
  r.strength = static_cast<float>(NumberProp(o, "strength", 0.75, 0, 1));
  r.clip_skip = static_cast<int>(IntProp(o, "clipSkip", -1, -1, 12));
  r.seed = IntProp(o, "seed", 42, 0, 9007199254740991LL);
  r.sampler = StringProp(o, "sampler", "euler_a");
  r.scheduler = StringProp(o, "scheduler", "discrete");
  if (str_to_sample_method(r.sampler.c_str()) == SAMPLE_METHOD_COUNT) Throw(env, code::INVALID_ARGUMENT, "unknown sampler " + r.sampler);
  if (str_to_scheduler(r.scheduler.c_str()) == SCHEDULER_COUNT) Throw(env, code::INVALID_ARGUMENT, "unknown scheduler " + r.scheduler);
  r.init = ImageProp(o, "initImage", r.width, r.height, false);
  r.mask = ImageProp(o, "mask", r.width, r.height, true);
  Napi::Value loras = o.Get("loras");
  if (loras.IsArray()) {
    auto a = loras.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value l = a.Get(i);
      if (!l.IsObject()) Throw(env, code::INVALID_ARGUMENT, "loras must be objects");
      r.loras.emplace_back(StringProp(l.As<Napi::Object>(), "path", ""), static_cast<float>(NumberProp(l.As<Napi::Object>(), "multiplier", 1.0, -10, 10)));
    }
  }
  Napi::Value pv = o.Get("preview");
  if (pv.IsObject()) {
    std::string mode = StringProp(pv.As<Napi::Object>(), "mode", "proj");
    r.preview = mode == "vae" ? PREVIEW_VAE : mode == "tae" ? PREVIEW_TAE : PREVIEW_PROJ;
    r.preview_interval = static_cast<int>(IntProp(pv.As<Napi::Object>(), "intervalSteps", 1, 1, 1000));
  }
  Napi::Function on_event = FunctionArg(info, 1, "onEvent");
  auto cancel = CancelToken::From(info.Length() > 2 ? info[2] : env.Undefined());

  return ThreadJob::Start(env, "genai.diffusion.generate", cancel, on_event, [m, r](ThreadJob& job) -> ThreadJob::ValueMaker {
    std::vector<RawImg> images;
    std::string errors;
    bool ok = false;
    {
      OpScope scope(&job, true);
      sd_cancel_generation(m->ctx, SD_CANCEL_RESET);
      if (r.preview != PREVIEW_NONE) sd_set_preview_callback(OnPreview, r.preview, r.preview_interval, true, false, nullptr);
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
      p.clip_skip = r.clip_skip;
      p.width = r.width;
      p.height = r.height;
      p.sample_params.sample_method = str_to_sample_method(r.sampler.c_str());
      p.sample_params.scheduler = str_to_scheduler(r.scheduler.c_str());
      p.sample_params.sample_steps = r.steps;
      p.sample_params.guidance.txt_cfg = r.cfg;
      p.sample_params.guidance.distilled_guidance = r.guidance;
      p.seed = r.seed;
      p.batch_count = r.count;
      if (!r.init.data.empty()) {
        p.init_image = sd_image_t{r.init.width, r.init.height, r.init.channels, const_cast<uint8_t*>(r.init.data.data())};
        p.strength = r.strength;
      }
      if (!r.mask.data.empty()) p.mask_image = sd_image_t{r.mask.width, r.mask.height, r.mask.channels, const_cast<uint8_t*>(r.mask.data.data())};
      sd_image_t* out = nullptr;
      int n = 0;
      ok = generate_image(m->ctx, &p, &out, &n);
      for (int i = 0; out && i < n; i++) {
        if (!out[i].data) continue;
        RawImg img;
        img.width = out[i].width;
        img.height = out[i].height;
        img.channels = out[i].channel;
        img.data.assign(out[i].data, out[i].data + static_cast<size_t>(img.width) * img.height * img.channels);
        std::free(out[i].data);
        images.push_back(std::move(img));
      }
      std::free(out);
      errors = g_op.errors;
    }
    if (!ok && images.empty() && !job.cancel()->IsCancelled()) throw CodedError(code::BACKEND_ERROR, "stable-diffusion.cpp failed to generate: " + errors);
    for (size_t i = 0; i < images.size(); i++) {
      int index = static_cast<int>(i);
      job.Post([index](Napi::Env env, Napi::Function cb) {
        Napi::Object e = Event(env, "image");
        e.Set("imageIndex", index);
        cb.Call({e});
      });
    }
    auto shared = std::make_shared<std::vector<RawImg>>(std::move(images));
    return [shared](Napi::Env env) -> Napi::Value {
      Napi::Array arr = Napi::Array::New(env, shared->size());
      for (size_t i = 0; i < shared->size(); i++) {
        const RawImg& img = (*shared)[i];
        Napi::Object o = Napi::Object::New(env);
        o.Set("data", Napi::Buffer<uint8_t>::Copy(env, img.data.data(), img.data.size()));
        o.Set("width", img.width);
        o.Set("height", img.height);
        o.Set("channels", img.channels);
        arr.Set(static_cast<uint32_t>(i), o);
      }
      return arr;
    };
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
  struct Paths {
    std::string model, diffusion, vae, clip_l, clip_g, t5, taesd, wtype;
  } paths{OptString(o, "model"), OptString(o, "diffusionModel"), OptString(o, "vae"), OptString(o, "clipL"), OptString(o, "clipG"), OptString(o, "t5xxl"), OptString(o, "taesd"), OptString(o, "weightType")};
  if (paths.model.empty() && paths.diffusion.empty()) Throw(env, code::INVALID_ARGUMENT, "give model or diffusionModel");
  for (const char* k : {"keepClipOnCpu", "keepVaeOnCpu", "offloadParamsToCpu", "vaeTiling"})
    if (BoolProp(o, k, false)) Throw(env, code::INVALID_ARGUMENT, std::string(k) + " is not supported by this engine version yet");
  int threads = static_cast<int>(IntProp(o, "threads", sd_get_num_physical_cores(), 1, 1024));
  bool fa = BoolProp(o, "flashAttention", false);
  sd_type_t wtype = SD_TYPE_COUNT;
  if (!paths.wtype.empty()) {
    wtype = str_to_sd_type(paths.wtype.c_str());
    if (wtype == SD_TYPE_COUNT) Throw(env, code::INVALID_ARGUMENT, "unknown weightType " + paths.wtype);
  }
  Napi::Function on_progress;
  if (info.Length() > 1 && info[1].IsFunction()) on_progress = info[1].As<Napi::Function>();
  auto cancel = CancelToken::From(info.Length() > 2 ? info[2] : env.Undefined());
  return ThreadJob::Start(env, "genai.diffusion.load", cancel, on_progress, [paths, threads, fa, wtype](ThreadJob& job) -> ThreadJob::ValueMaker {
    for (const std::string* p : {&paths.model, &paths.diffusion, &paths.vae, &paths.clip_l, &paths.clip_g, &paths.t5, &paths.taesd}) {
      if (p->empty()) continue;
      FILE* f = std::fopen(p->c_str(), "rb");
      if (!f) throw CodedError(code::MODEL_NOT_FOUND, "model file not found: " + *p);
      std::fclose(f);
    }
    auto model = std::make_shared<SdModel>();
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
      if (wtype != SD_TYPE_COUNT) p.wtype = wtype;
      model->ctx = new_sd_ctx(&p);
      errors = g_op.errors;
    }
    if (!model->ctx) throw CodedError(code::INVALID_MODEL, "stable-diffusion.cpp could not load the model: " + errors);
    if (job.cancel()->IsCancelled()) throw CodedError(code::ABORTED, "diffusion model load was aborted");
    return [model](Napi::Env env) -> Napi::Value {
      return Data(env).diffusion_ctor.New({Napi::External<std::shared_ptr<SdModel>>::New(env, new std::shared_ptr<SdModel>(model), [](Napi::Env, std::shared_ptr<SdModel>* p) { delete p; })});
    };
  });
}

}  // namespace genai
