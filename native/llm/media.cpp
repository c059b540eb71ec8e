#include "llm/media.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>

#include "llm/gguf_check.h"
#include "llm/model.h"
#include "mtmd-helper.h"
#include "system/backends.h"
#include "util/abort_guard.h"
#include "util/args.h"
#include "util/errors.h"
#include "util/log.h"

namespace genai {

namespace {

// The generation whose media chunk this thread encodes. ggml_backend_sched's
// eval callback is asked about every node before the compute; the nodes it
// wants to see end a piece of the graph, computed alone, after which it may
// stop the rest. It wants each encoder layer's output (clip.cpp names it
// "layer_out-<il>"), so a cancel ends the encode within one layer.
thread_local const CancelFlag* t_media_cancel = nullptr;

bool MediaEvalCallback(ggml_tensor* t, bool ask, void*) {
  const bool cancelled = t_media_cancel != nullptr && t_media_cancel->IsCancelled();
  if (!ask) return !cancelled;
  return t_media_cancel != nullptr && std::strncmp(ggml_get_name(t), "layer_out-", 10) == 0;
}

uint64_t Fnv1a(const uint8_t* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// A placeholder id for every token of a media chunk: negative, from the chunk's id (the image's hash).
llama_token Placeholder(const char* id) {
  const uint64_t h = id ? Fnv1a(reinterpret_cast<const uint8_t*>(id), std::strlen(id)) : 0;
  return -1 - static_cast<llama_token>(h & 0x3fffffff);
}

// Runs `work` with ggml's assertions turned into an error: clip.cpp asserts
// (GGML_ASSERT) on graphs a corrupt projector makes. An assertion — thrown
// through, or caught by libmtmd and turned into a failure code — is
// INVALID_MODEL, and the projector is not used again.
template <typename Work>
auto Guarded(MediaState& m, const char* what, Work work) -> decltype(work()) {
  if (m.broken) throw CodedError(code::INVALID_MODEL, "the projector failed an assertion earlier (" + m.path + "): load the model again");
  AbortToException guard(code::INVALID_MODEL, what);
  std::optional<decltype(work())> out;
  try {
    out = work();
  } catch (...) {
    t_media_cancel = nullptr;
    if (!guard.fired()) throw;
  }
  if (guard.fired()) {
    m.broken = true;
    throw CodedError(code::INVALID_MODEL, std::string(what) + ": " + guard.message());
  }
  return std::move(*out);
}

constexpr uint32_t kMaxSide = 16384;        // pixels, raw images
constexpr size_t kMaxImages = 64;           // per prompt
constexpr size_t kMaxEncoded = 256u << 20;  // bytes, one encoded image

}  // namespace

MediaState::~MediaState() {
  if (ctx) mtmd_free(ctx);
}

const MediaTokens::Span* MediaTokens::At(size_t i) const {
  for (const Span& s : spans)
    if (i >= s.start && i < s.start + s.n) return &s;
  return nullptr;
}

static MediaTokens TokenizeMediaUnguarded(MediaState& m, const MediaPrompt& p);

MediaTokens TokenizeMedia(MediaState& m, const MediaPrompt& p) {
  return Guarded(m, "libmtmd failed an assertion while preprocessing the image (a corrupt projector?)", [&] { return TokenizeMediaUnguarded(m, p); });
}

static MediaTokens TokenizeMediaUnguarded(MediaState& m, const MediaPrompt& p) {
  std::vector<std::unique_ptr<mtmd_bitmap, void (*)(mtmd_bitmap*)>> bitmaps;
  for (size_t i = 0; i < p.inputs.size(); i++) {
    const MediaInput& in = p.inputs[i];
    mtmd_bitmap* b = nullptr;
    if (in.width > 0) {
      b = mtmd_bitmap_init(in.width, in.height, in.bytes.data());
      if (b) {
        const std::string id =
            "rgb" + std::to_string(in.width) + "x" + std::to_string(in.height) + ":" + std::to_string(Fnv1a(in.bytes.data(), in.bytes.size()));
        mtmd_bitmap_set_id(b, id.c_str());
      }
    } else {
      b = mtmd_helper_bitmap_init_from_buf(m.ctx, in.bytes.data(), in.bytes.size(), false, mtmd_helper_init_opt_default()).bitmap;
    }
    if (!b) throw CodedError(code::INVALID_ARGUMENT, "image " + std::to_string(i) + " could not be decoded (PNG, JPEG, BMP or GIF bytes, or raw RGB pixels)");
    bitmaps.emplace_back(b, mtmd_bitmap_free);
    const bool audio = mtmd_bitmap_is_audio(b);
    if (audio ? !m.audio : !m.vision)
      throw CodedError(code::INVALID_ARGUMENT, std::string("input ") + std::to_string(i) + (audio ? " is audio" : " is an image") +
                                                   "; this model's projector (" + m.path + ") takes " + (m.vision ? "images" : "audio") + " only");
  }
  std::vector<const mtmd_bitmap*> raw;
  for (auto& b : bitmaps) raw.push_back(b.get());
  mtmd_input_text text{p.text.c_str(), p.text.size(), p.add_special, p.parse_special};
  MediaTokens out;
  out.owner.reset(mtmd_input_chunks_init(), mtmd_input_chunks_free);
  const int32_t rc = mtmd_tokenize(m.ctx, out.owner.get(), &text, raw.data(), raw.size());
  if (rc == 1) throw CodedError(code::INVALID_ARGUMENT, "the prompt's media markers and its " + std::to_string(raw.size()) + " images do not match in number");
  if (rc == 2) throw CodedError(code::INVALID_ARGUMENT, "an image could not be preprocessed for the projector");
  if (rc != 0) throw CodedError(code::BACKEND_ERROR, "libmtmd could not tokenize the prompt (" + std::to_string(rc) + ")");
  for (size_t i = 0; i < mtmd_input_chunks_size(out.owner.get()); i++) {
    const mtmd_input_chunk* c = mtmd_input_chunks_get(out.owner.get(), i);
    if (mtmd_input_chunk_get_type(c) == MTMD_INPUT_CHUNK_TYPE_TEXT) {
      size_t n = 0;
      const llama_token* t = mtmd_input_chunk_get_tokens_text(c, &n);
      out.tokens.insert(out.tokens.end(), t, t + n);
      continue;
    }
    const size_t n = mtmd_input_chunk_get_n_tokens(c);
    out.spans.push_back({out.tokens.size(), n, c});
    out.tokens.insert(out.tokens.end(), n, Placeholder(mtmd_input_chunk_get_id(c)));
    out.media_tokens += static_cast<int32_t>(n);
  }
  return out;
}

static bool EvalMediaChunkUnguarded(MediaState& m, llama_context* ctx, const mtmd_input_chunk* chunk, llama_pos n_past, llama_seq_id seq, int32_t n_batch,
                                    const CancelFlag& cancel, double& encode_ms, double& decode_ms);

bool EvalMediaChunk(MediaState& m, llama_context* ctx, const mtmd_input_chunk* chunk, llama_pos n_past, llama_seq_id seq, int32_t n_batch,
                    const CancelFlag& cancel, double& encode_ms, double& decode_ms) {
  return Guarded(m, "libmtmd failed an assertion while encoding the image (a corrupt projector?)",
                 [&] { return EvalMediaChunkUnguarded(m, ctx, chunk, n_past, seq, n_batch, cancel, encode_ms, decode_ms); });
}

static bool EvalMediaChunkUnguarded(MediaState& m, llama_context* ctx, const mtmd_input_chunk* chunk, llama_pos n_past, llama_seq_id seq, int32_t n_batch,
                                    const CancelFlag& cancel, double& encode_ms, double& decode_ms) {
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); };
  std::lock_guard<std::mutex> lock(m.mu);  // the encoder's output buffer is the projector's own until the decode has read it
  if (cancel.IsCancelled()) return false;
  t_media_cancel = &cancel;
  auto t0 = Clock::now();
  int32_t rc = mtmd_encode_chunk(m.ctx, chunk);
  encode_ms += ms(t0);
  t_media_cancel = nullptr;
  if (cancel.IsCancelled()) return false;
  if (rc != 0) throw CodedError(code::BACKEND_ERROR, "the projector could not encode the image (" + std::to_string(rc) + ")");
  if (!std::isfinite(mtmd_get_output_embd(m.ctx)[0]))
    throw CodedError(code::INVALID_MODEL, "the projector's output is not finite (corrupt weights?): " + m.path);
  llama_pos new_n_past = n_past;
  t0 = Clock::now();
  rc = mtmd_helper_decode_image_chunk(m.ctx, ctx, chunk, mtmd_get_output_embd(m.ctx), n_past, seq, n_batch, &new_n_past, nullptr, nullptr);
  decode_ms += ms(t0);
  if (cancel.IsCancelled()) return false;
  if (rc != 0) throw CodedError(code::BACKEND_ERROR, "decoding the image's embeddings failed (" + std::to_string(rc) + ")");
  return true;
}

Napi::Value LoadProjector(const Napi::CallbackInfo& info, std::shared_ptr<ModelState> model) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");
  Napi::Object opts = ObjectArg(info, 1, "options");
  CheckKeys(opts, {"threads", "device"}, "projector");
  const int threads = static_cast<int>(IntField(opts, "threads", 1, 1024));
  std::vector<ggml_backend_dev_t> devices = DevicesProp(opts);
  auto cancel = CancelToken::From(info.Length() > 2 ? info[2] : env.Undefined());
  if (model->vocab_only) Throw(env, code::INVALID_ARGUMENT, "the model was loaded with vocabOnly: a projector needs its weights");
  if (model->media) Throw(env, code::INVALID_ARGUMENT, "the model has a projector already (" + model->media->path + ")");
  return ThreadJob::Start(env, "genai.loadProjector", cancel, Napi::Function(), [path, threads, devices, model](ThreadJob& job) -> ThreadJob::ValueMaker {
    CheckModelFile(path, "projector");
    AbortToException abort_guard(code::INVALID_MODEL, "libmtmd failed an assertion while loading the projector");
    CheckGgufProjector(path);
    mtmd_context_params mp = mtmd_context_params_default();
    // the model's device list (SelectDevices: null-terminated; {nullptr} is the CPU alone)
    const bool gpu = !devices.empty() && devices[0] != nullptr;
    mp.use_gpu = gpu;
    mp.device = gpu ? devices[0] : nullptr;
    mp.n_threads = threads;
    mp.print_timings = false;
    mp.warmup = false;
    mp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
    mp.cb_eval = MediaEvalCallback;
    LogCapture capture;
    mtmd_context* c;
    {
      BackendSetupLock setup;
      c = mtmd_init_from_file(path.c_str(), model->model, mp);
    }
    if (!c) {
      std::string why = capture.Errors();
      throw CodedError(code::INVALID_MODEL,
                       "libmtmd could not load the projector (corrupt, or made for another model): " + path + (why.empty() ? "" : " — " + why));
    }
    auto media = std::make_shared<MediaState>();
    media->ctx = c;
    media->path = path;
    media->vision = mtmd_support_vision(c);
    media->audio = mtmd_support_audio(c);
    // M-RoPE models (the Qwen2-VL family) place a media chunk at positions other
    // than one per token; the generation loop keeps one position per token
    if (mtmd_decode_use_mrope(c))
      throw CodedError(code::INVALID_MODEL, "projectors with M-RoPE positions (the Qwen2-VL / Qwen2.5-VL / Qwen3-VL families) are not supported yet: " + path);
    if (job.cancel()->IsCancelled()) throw CodedError(code::ABORTED, "projector load was aborted");
    return [model, media](Napi::Env env) -> Napi::Value {
      model->media = media;
      Napi::Object o = Napi::Object::New(env);
      o.Set("vision", media->vision);
      o.Set("audio", media->audio);
      return o;
    };
  });
}

std::optional<MediaPrompt> MediaPromptFromJs(Napi::Env env, Napi::Value v) {
  if (v.IsUndefined()) Throw(env, code::INVALID_ARGUMENT, "media is required");
  if (v.IsNull()) return std::nullopt;
  if (!v.IsObject()) Throw(env, code::INVALID_ARGUMENT, "media must be null or { text, images, addSpecial, parseSpecial }");
  Napi::Object o = v.As<Napi::Object>();
  CheckKeys(o, {"text", "images", "addSpecial", "parseSpecial"}, "media");
  MediaPrompt p;
  p.text = StringField(o, "text");
  p.add_special = BoolField(o, "addSpecial");
  p.parse_special = BoolField(o, "parseSpecial");
  Napi::Value images = o.Get("images");
  if (!images.IsArray()) Throw(env, code::INVALID_ARGUMENT, "media.images must be an array");
  Napi::Array a = images.As<Napi::Array>();
  if (a.Length() == 0 || a.Length() > kMaxImages) Throw(env, code::INVALID_ARGUMENT, "media.images must hold 1 to " + std::to_string(kMaxImages) + " images");
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    const std::string name = "media.images[" + std::to_string(i) + "]";
    MediaInput in;
    Napi::Value data = e;
    if (!e.IsTypedArray() && e.IsObject()) {
      Napi::Object r = e.As<Napi::Object>();
      CheckKeys(r, {"width", "height", "rgb"}, name.c_str());
      in.width = static_cast<uint32_t>(IntField(r, "width", 1, kMaxSide));
      in.height = static_cast<uint32_t>(IntField(r, "height", 1, kMaxSide));
      data = r.Get("rgb");
    }
    if (!data.IsTypedArray() || data.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      Throw(env, code::INVALID_ARGUMENT, name + " must be a Uint8Array (an encoded image) or { width, height, rgb: Uint8Array }");
    Napi::Uint8Array bytes = data.As<Napi::Uint8Array>();
    const size_t want = static_cast<size_t>(in.width) * in.height * 3;
    if (in.width > 0 && bytes.ByteLength() != want)
      Throw(env, code::INVALID_ARGUMENT, name + ".rgb holds " + std::to_string(bytes.ByteLength()) + " bytes; width × height × 3 is " + std::to_string(want));
    if (in.width == 0 && (bytes.ByteLength() == 0 || bytes.ByteLength() > kMaxEncoded))
      Throw(env, code::INVALID_ARGUMENT, name + " must hold 1 byte to 256 MiB");
    in.bytes.assign(bytes.Data(), bytes.Data() + bytes.ByteLength());
    p.inputs.push_back(std::move(in));
  }
  return p;
}

}  // namespace genai
