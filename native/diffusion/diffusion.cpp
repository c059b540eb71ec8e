#include "diffusion/diffusion.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <array>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "diffusion/gen_request.h"
#include "diffusion/part_check.h"
#include "diffusion/sd_ops.h"
#include "system/backends.h"
#include "stable-diffusion.h"
#include "util/args.h"
#include "util/errors.h"
#include "util/jobs.h"
#include "util/log.h"
#include "util/shared_handle.h"

namespace genai {

namespace {

struct SdModel {
  sd_ctx_t* ctx = nullptr;
  bool vae_tiling = false;              // decode (and encode) the VAE in tiles to bound its compute memory
  bool has_control_net = false;         // a ControlNet was loaded (a controlImage needs one)
  int photo_maker = 0;                  // the PhotoMaker version loaded (1, 2: sd.cpp's rule, "v2" in the file's name), 0: none
  bool has_ip_adapter = false;          // an IP-Adapter was loaded (an ipAdapter image prompt needs one)
  bool has_taesd = false;               // a TAESD was loaded, decoding or for previews only (a "tae" preview needs one)
  DenoiserInputs inputs;                // the generation inputs its denoiser reads (CheckDiffusionParts)
  bool graph_abort = false;             // runs on the CPU backend: cancel("all") stops sd.cpp's running graph (OpScope::EnableGraphAbort)
  std::atomic<bool> cancel_all{false};  // cancel("all") of the running generation (from the JS thread)
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
    // sd.cpp's defaults for this model's family (euler_a for SD1/SDXL, euler for DiT families; the scheduler per sampler)
    o.Set("defaultSampler", sd_sample_method_name(sd_get_default_sample_method(m->ctx)));
    Napi::Object default_schedulers = Napi::Object::New(env);
    for (int i = 0; i < SAMPLE_METHOD_COUNT; i++) {
      auto method = static_cast<sample_method_t>(i);
      default_schedulers.Set(sd_sample_method_name(method), sd_scheduler_name(sd_get_default_scheduler(m->ctx, method)));
    }
    o.Set("defaultSchedulers", default_schedulers);
    o.Set("imageGeneration", sd_ctx_supports_image_generation(m->ctx));
    o.Set("controlNet", m->has_control_net);
    o.Set("photoMaker", m->photo_maker);
    o.Set("ipAdapter", m->has_ip_adapter);
    o.Set("taesd", m->has_taesd);
    Napi::Object reads = Napi::Object::New(env);
    reads.Set("guidance", m->inputs.guidance);
    reads.Set("flowShift", m->inputs.flow_shift);
    reads.Set("refImages", m->inputs.ref_images);
    o.Set("reads", reads);
    return o;
  }

  // cancel('all' | 'newLatents'): sd_cancel_generation, from the JS thread.
  Napi::Value Cancel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = Model(env);
    std::string mode = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "all";
    if (mode != "newLatents") m->cancel_all.store(true, std::memory_order_relaxed);
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

Napi::Value DiffusionHandle::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto m = Model(env);
  GenRequest r = ReadGenRequest(ObjectArg(info, 0, "params"), ModelFeatures{m->has_control_net, m->photo_maker, m->has_ip_adapter, m->has_taesd, m->inputs});
  Napi::Function on_event = FunctionArg(info, 1, "onEvent");
  auto cancel = CancelToken::From(info.Length() > 2 ? info[2] : env.Undefined());

  return ThreadJob::Start(env, "genai.diffusion.generate", cancel, on_event, [m, r](ThreadJob& job) -> ThreadJob::ValueMaker {
    // sd.cpp skips a LoRA it cannot open and generates without it
    for (const auto& lora : r.loras) CheckModelFileExtent(lora.first, "LoRA");
    if (!r.hires.model.empty()) CheckModelFileExtent(r.hires.model, "hires upscaler model");
    std::vector<RawImg> images;
    std::string errors;
    bool ok = false;
    int announced = 0;  // images already posted as decoded while sd.cpp ran
    {
      QuietWhenCancelled quiet(job.cancel().get());
      OpScope scope(&job, true);
      sd_cancel_generation(m->ctx, SD_CANCEL_RESET);
      m->cancel_all.store(false, std::memory_order_relaxed);
      if (m->graph_abort) scope.EnableGraphAbort(&m->cancel_all);
      scope.Op().ctx = m->ctx;
      scope.Op().photo_maker = r.photo_maker.enabled;
      scope.EnablePreview(r.preview, r.preview_interval);
      job.Post([](Napi::Env env, Napi::Function cb) {
        Napi::Object e = Event(env, "stage");
        e.Set("stage", "encoding");
        e.Set("imageIndex", 0);
        cb.Call({e});
      });
      sd_img_gen_params_t p;
      std::vector<sd_lora_t> loras;
      std::vector<sd_image_t> refs, id_images;
      FillImgGenParams(r, m->vae_tiling, p, loras, refs, id_images);
      sd_image_t* out = nullptr;
      int n = 0;
      ok = generate_image(m->ctx, &p, &out, &n);
      images = TakeImages(out, n);
      errors = scope.Op().errors;
      announced = scope.Op().decoded;
      // a decode cancelled after the first image made no image (OpScope::EnableGraphAbort)
      if (int kept = scope.Op().kept_images; kept >= 0) {
        if (images.size() > static_cast<size_t>(kept)) images.resize(static_cast<size_t>(kept));
        announced = std::min(announced, kept);
      }
      if (const char* option = scope.Op().refused) {
        const std::string_view o(option);
        const std::string value = o == "scheduler" ? r.scheduler + " " : o == "cache.mode" ? r.cache.name + " " : "";
        throw CodedError(code::INVALID_ARGUMENT,
                         std::string(option) + " " + value + "cannot be used with this model (stable-diffusion.cpp: " + scope.Op().refused_line + ")");
      }
    }
    if (!ok && images.empty() && !job.cancel()->IsCancelled()) throw CodedError(FailureCode(errors), "stable-diffusion.cpp failed to generate: " + errors);
    for (size_t i = static_cast<size_t>(std::max(0, announced)); i < images.size(); i++) {
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

namespace {
// A model file option and the sd_ctx_params_t path it fills; each given file
// is checked (CheckModelFileExtent) before sd.cpp opens it.
struct FilePart {
  const char* key;
  const char* sd_ctx_params_t::*path;
};
constexpr FilePart kFileParts[] = {
    {"model", &sd_ctx_params_t::model_path},
    {"diffusionModel", &sd_ctx_params_t::diffusion_model_path},
    {"vae", &sd_ctx_params_t::vae_path},
    {"clipL", &sd_ctx_params_t::clip_l_path},
    {"clipG", &sd_ctx_params_t::clip_g_path},
    {"t5xxl", &sd_ctx_params_t::t5xxl_path},
    {"llm", &sd_ctx_params_t::llm_path},
    {"llmVision", &sd_ctx_params_t::llm_vision_path},
    {"clipVision", &sd_ctx_params_t::clip_vision_path},
    {"controlNet", &sd_ctx_params_t::control_net_path},
    {"photoMaker", &sd_ctx_params_t::photo_maker_path},
    {"taesd", &sd_ctx_params_t::taesd_path},
    {"ipAdapter", &sd_ctx_params_t::ip_adapter_path},
};
constexpr size_t kModel = 0, kDiffusionModel = 1, kVae = 2, kClipL = 3, kClipG = 4, kT5xxl = 5, kLlm = 6, kLlmVision = 7, kClipVision = 8, kControlNet = 9,
                 kPhotoMaker = 10, kTaesd = 11,
                 kIpAdapter = 12;  // indices into kFileParts
static_assert(std::string_view(kFileParts[kModel].key) == "model" && std::string_view(kFileParts[kDiffusionModel].key) == "diffusionModel" &&
              std::string_view(kFileParts[kVae].key) == "vae" && std::string_view(kFileParts[kLlm].key) == "llm" &&
              std::string_view(kFileParts[kClipL].key) == "clipL" && std::string_view(kFileParts[kClipG].key) == "clipG" &&
              std::string_view(kFileParts[kT5xxl].key) == "t5xxl" && std::string_view(kFileParts[kLlmVision].key) == "llmVision" &&
              std::string_view(kFileParts[kControlNet].key) == "controlNet" && std::string_view(kFileParts[kPhotoMaker].key) == "photoMaker" &&
              std::string_view(kFileParts[kClipVision].key) == "clipVision" && std::string_view(kFileParts[kIpAdapter].key) == "ipAdapter" &&
              std::string_view(kFileParts[kTaesd].key) == "taesd");
}  // namespace

Napi::Value LoadDiffusionModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ObjectArg(info, 0, "options");
  // the model files first (kFileParts), then the other options
  std::vector<const char*> keys;
  for (const FilePart& f : kFileParts) keys.push_back(f.key);
  for (const char* k :
       {"weightType", "threads", "flashAttention", "vaeTiling", "keepClipOnCpu", "keepVaeOnCpu", "offloadParamsToCpu", "device", "taesdPreviewOnly"})
    keys.push_back(k);
  CheckKeysIn(o, keys, "diffusion load");
  std::array<std::string, std::size(kFileParts)> files;
  for (size_t i = 0; i < files.size(); i++) files[i] = StringField(o, kFileParts[i].key);
  const std::string wtype_name = StringField(o, "weightType");
  if (files[kModel].empty() && files[kDiffusionModel].empty()) Throw(env, code::INVALID_ARGUMENT, "give model or diffusionModel");
  // sd.cpp fails the load with one "CLIP vision tensor … not in model metadata" line per tensor
  if (!files[kIpAdapter].empty() && files[kClipVision].empty()) Throw(env, code::INVALID_ARGUMENT, "ipAdapter needs clipVision");
  // sd.cpp's tae_preview_only: the TAESD makes the previews, the model's VAE decodes (without it, the TAESD decodes)
  const bool taesd_preview_only = BoolField(o, "taesdPreviewOnly");
  if (taesd_preview_only && files[kTaesd].empty()) Throw(env, code::INVALID_ARGUMENT, "taesdPreviewOnly needs taesd");
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
  if (!wtype_name.empty()) {
    wtype = str_to_sd_type(wtype_name.c_str());
    if (wtype == SD_TYPE_COUNT) Throw(env, code::INVALID_ARGUMENT, "unknown weightType " + wtype_name);
  }
  Napi::Function on_progress;
  if (info.Length() > 1 && info[1].IsFunction()) on_progress = info[1].As<Napi::Function>();
  auto cancel = CancelToken::From(info.Length() > 2 ? info[2] : env.Undefined());
  // sd.cpp's graph hook splits each graph into views: verified on the CPU backend only (a GPU backend's fused or
  // captured graphs were not measured), so only a model wholly on the CPU gets it
  const bool graph_abort = backend == "CPU";
  auto work = [files, threads, fa, wtype, backend, params_backend, vae_tiling, graph_abort, taesd_preview_only](ThreadJob& job) -> ThreadJob::ValueMaker {
    for (size_t i = 0; i < files.size(); i++)
      if (!files[i].empty()) CheckModelFileExtent(files[i], kFileParts[i].key);
    const DenoiserInputs inputs =
        CheckDiffusionParts({files[kModel], files[kDiffusionModel], files[kVae], files[kClipL], files[kClipG], files[kT5xxl], files[kLlm], files[kLlmVision],
                             files[kControlNet], files[kPhotoMaker], files[kIpAdapter], files[kClipVision]});
    auto model = std::make_shared<SdModel>();
    model->inputs = inputs;
    model->vae_tiling = vae_tiling;
    model->graph_abort = graph_abort;
    std::string errors, part_failed;
    {
      OpScope scope(&job, false);
      sd_ctx_params_t p;
      sd_ctx_params_init(&p);
      auto c = [](const std::string& s) { return s.empty() ? nullptr : s.c_str(); };
      for (size_t i = 0; i < files.size(); i++) p.*kFileParts[i].path = c(files[i]);
      p.n_threads = threads;
      p.flash_attn = fa;
      p.tae_preview_only = taesd_preview_only;
      p.enable_mmap = true;
      // Read every weight now (progress reported), not lazily at the first
      // generation: load() means resident, and a lazy load's progress would
      // arrive during a generation looking like sampling steps.
      p.eager_load = true;
      // LoRAs as adapters beside the weights, never merged into them. sd.cpp's
      // default for unquantized weights merges them in ("immediately") and
      // takes them out again at the next generation: here (mmap'd, eagerly
      // loaded weights) the first LoRA generation came out white, every later
      // generation without it too, and the next LoRA generation segfaulted.
      p.lora_apply_mode = LORA_APPLY_AT_RUNTIME;
      p.backend = c(backend);
      p.params_backend = c(params_backend);
      if (wtype != SD_TYPE_COUNT) p.wtype = wtype;
      BackendSetupLock setup;
      model->ctx = new_sd_ctx(&p);
      errors = scope.Op().errors;
      part_failed = scope.Op().part_failed;
    }
    if (!model->ctx) throw CodedError(code::INVALID_MODEL, "stable-diffusion.cpp could not load the model: " + errors);
    // sd.cpp logs a part it cannot read ("loading clip_l from '…' failed", "loading stacked ID embedding from '…' failed")
    // as a warning and goes on without it
    if (!part_failed.empty()) throw CodedError(code::INVALID_MODEL, "stable-diffusion.cpp could not load a model part: " + part_failed);
    model->has_ip_adapter = !files[kIpAdapter].empty();
    model->has_taesd = !files[kTaesd].empty();
    if (!files[kPhotoMaker].empty()) model->photo_maker = files[kPhotoMaker].find("v2") != std::string::npos ? 2 : 1;  // sd.cpp's test
    model->has_control_net = sd_ctx_has_control_net(model->ctx);
    // sd.cpp logs a ControlNet it cannot load and goes on without it
    if (!files[kControlNet].empty() && !model->has_control_net)
      throw CodedError(code::INVALID_MODEL, "stable-diffusion.cpp could not load the ControlNet " + files[kControlNet] + ": " + errors);
    if (job.cancel()->IsCancelled()) throw CodedError(code::ABORTED, "diffusion model load was aborted");
    return [model](Napi::Env env) -> Napi::Value { return SharedHandle<SdModel>::New(env, Data(env).diffusion_ctor, model); };
  };
  return ThreadJob::Start(env, "genai.diffusion.load", cancel, on_progress, std::move(work));
}

}  // namespace genai
