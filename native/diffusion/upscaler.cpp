// Upscaler's native half: stable-diffusion.cpp's ESRGAN (RRDBNet) upscaler.
#include <memory>
#include <string>
#include <vector>

#include "diffusion/diffusion.h"
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

struct SdUpscaler {
  upscaler_ctx_t* ctx = nullptr;
  int scale = 1;             // the model's own factor per pass (ESRGAN: 1, 2 or 4)
  bool graph_abort = false;  // runs on the CPU backend: a cancel ends the running pass (OpScope::EnableGraphAbort)
  ~SdUpscaler() {
    if (ctx) free_upscaler_ctx(ctx);
  }
};

class UpscalerHandle : public Napi::ObjectWrap<UpscalerHandle> {
 public:
  explicit UpscalerHandle(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<UpscalerHandle>(info), model_(info, "UpscalerHandle is created by loadUpscaler()", "the upscaler has been disposed") {}

  std::shared_ptr<SdUpscaler> Model(Napi::Env env) const { return model_.State(env); }

  Napi::Value Scale(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), Model(info.Env())->scale); }

  // upscale(image, passes, cancelToken) -> Promise<[{ data, width, height, channels }]>:
  // `passes` runs of the model, each multiplying the sides by its scale. A
  // cancel ends the running pass within one chunk of its graph on the CPU
  // backend (OpScope::EnableGraphAbort), elsewhere before the next pass.
  Napi::Value Upscale(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    auto m = Model(env);
    Napi::Object args = ObjectArg(info, 0, "args");
    RawImg input = ImageProp(args, "image", 0, 0, false);
    if (input.data.empty()) Throw(env, code::INVALID_ARGUMENT, "image is required");
    int passes = static_cast<int>(IntField(args, "passes", 1, 4));
    uint64_t out_side = std::max(input.width, input.height);
    for (int i = 0; i < passes; i++) out_side *= static_cast<uint64_t>(m->scale);
    if (out_side > 16384) Throw(env, code::INVALID_ARGUMENT, "the upscaled image would be wider or taller than 16384 pixels");
    auto cancel = CancelToken::From(info.Length() > 1 ? info[1] : env.Undefined());
    auto work = [m, input = std::move(input), passes](ThreadJob& job) -> ThreadJob::ValueMaker {
      RawImg img = input;
      if (img.channels == 4) {  // ESRGAN takes RGB: drop alpha
        RawImg rgb;
        rgb.width = img.width;
        rgb.height = img.height;
        rgb.channels = 3;
        rgb.data.resize(static_cast<size_t>(img.width) * img.height * 3);
        for (size_t p = 0, n = static_cast<size_t>(img.width) * img.height; p < n; p++)
          for (int c = 0; c < 3; c++) rgb.data[p * 3 + c] = img.data[p * 4 + c];
        img = std::move(rgb);
      }
      for (int i = 0; i < passes; i++) {
        if (job.cancel()->IsCancelled()) throw CodedError(code::ABORTED, "upscaling was aborted");
        std::string errors;
        std::vector<RawImg> out;
        {
          QuietWhenCancelled quiet(job.cancel().get());
          OpScope scope(&job, false);
          if (m->graph_abort) scope.EnableGraphAbort(&job.cancel()->cancelled);
          sd_image_t* res = nullptr;
          int n = 0;
          bool ok = upscale(m->ctx, sd_image_t{img.width, img.height, img.channels, img.data.data()}, static_cast<uint32_t>(m->scale), &res, &n);
          out = TakeImages(res, n);
          if (!ok || out.empty()) errors = scope.Op().errors.empty() ? "no output" : scope.Op().errors;
        }
        if (!errors.empty() && job.cancel()->IsCancelled()) throw CodedError(code::ABORTED, "upscaling was aborted");
        if (!errors.empty()) throw CodedError(FailureCode(errors), "stable-diffusion.cpp failed to upscale: " + errors);
        img = std::move(out[0]);
      }
      auto shared = std::make_shared<std::vector<RawImg>>();
      shared->push_back(std::move(img));
      return [shared](Napi::Env env) -> Napi::Value { return ImagesToJs(env, *shared); };
    };
    return ThreadJob::Start(env, "genai.diffusion.upscale", cancel, Napi::Function(), std::move(work));
  }

  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model_.Reset();
    return info.Env().Undefined();
  }

 private:
  SharedHandle<SdUpscaler> model_;
};

}  // namespace

Napi::Function UpscalerHandleInit(Napi::Env env) {
  Napi::Function f = UpscalerHandle::DefineClass(env, "UpscalerHandle",
                                                 {
                                                     UpscalerHandle::InstanceMethod<&UpscalerHandle::Scale>("scale"),
                                                     UpscalerHandle::InstanceMethod<&UpscalerHandle::Upscale>("upscale"),
                                                     UpscalerHandle::InstanceMethod<&UpscalerHandle::Dispose>("dispose"),
                                                 });
  Data(env).upscaler_ctor = Napi::Persistent(f);
  return f;
}

Napi::Value LoadUpscaler(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ObjectArg(info, 0, "options");
  CheckKeys(o, {"model", "threads", "tileSize", "device"}, "upscaler load");
  std::string path = StringField(o, "model");
  if (path.empty()) Throw(env, code::INVALID_ARGUMENT, "model (an ESRGAN file) is required");
  int threads = static_cast<int>(OptIntField(o, "threads", 1, 1024).value_or(sd_get_num_physical_cores()));
  int tile = static_cast<int>(IntField(o, "tileSize", 0, 4096));
  std::string backend = DeviceNameProp(o);
  auto cancel = CancelToken::From(info.Length() > 1 ? info[1] : env.Undefined());
  // the graph hook is verified on the CPU backend only (as for a diffusion model)
  const bool graph_abort = backend == "CPU";
  auto work = [path, threads, tile, backend, graph_abort](ThreadJob& job) -> ThreadJob::ValueMaker {
    CheckModelFileExtent(path, "model");
    auto model = std::make_shared<SdUpscaler>();
    model->graph_abort = graph_abort;
    std::string errors;
    {
      OpScope scope(&job, false);
      BackendSetupLock setup;
      model->ctx = new_upscaler_ctx(path.c_str(), false, threads, tile, backend.c_str(), nullptr);
      if (model->ctx) model->scale = get_upscale_factor(model->ctx);
      errors = scope.Op().errors;
    }
    if (!model->ctx) throw CodedError(code::INVALID_MODEL, "stable-diffusion.cpp could not load the ESRGAN model: " + errors);
    if (job.cancel()->IsCancelled()) throw CodedError(code::ABORTED, "upscaler load was aborted");
    return [model](Napi::Env env) -> Napi::Value { return SharedHandle<SdUpscaler>::New(env, Data(env).upscaler_ctor, model); };
  };
  return ThreadJob::Start(env, "genai.diffusion.loadUpscaler", cancel, Napi::Function(), std::move(work));
}

}  // namespace genai
