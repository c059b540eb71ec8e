#include "diffusion/sd_ops.h"

#include <cctype>
#include <cstdio>
#include <cstring>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "ggml.h"
#include "gguf.h"
#include "util/args.h"
#include "util/errors.h"
#include "util/log.h"

namespace genai {

namespace {

std::mutex g_sd_mu;
ActiveOp g_op;  // guarded by g_sd_mu (the callbacks run inside the holder's sd.cpp call)

// An engine event { type, <int fields>, stage?, hires? } to the job's JS callback.
struct EventFields {
  std::vector<std::pair<const char*, int>> ints;
  const char* stage = nullptr;
  bool hires = false;
};
void PostEvent(ActiveOp& op, const char* type, EventFields f) {
  op.job->Post([type, f = std::move(f)](Napi::Env env, Napi::Function cb) {
    Napi::Object e = Event(env, type);
    for (const auto& [key, value] : f.ints) e.Set(key, value);
    if (f.stage) e.Set("stage", f.stage);
    if (f.hires) e.Set("hires", true);
    cb.Call({e});
  });
}

// A step's time in whole microseconds for the event (0: not timed; at most ~35 minutes).
int StepUs(float seconds) { return seconds > 0 && seconds < 2000 ? static_cast<int>(seconds * 1e6f) : 0; }

// `seconds`: sd.cpp's own time of the step just done (report_sample_progress: since the previous report).
void OnProgress(int step, int steps, float seconds, void*) {
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
  if (op.decoding) {  // VAE tiling: the tiles of the image being decoded
    if (step <= 0) return;
    PostEvent(op, "decodeTile", {{{"imageIndex", op.decoded}, {"tile", step}, {"tiles", steps}}});
    return;
  }
  if (op.hires) {
    // only the second pass's sampling steps: not an ESRGAN's tiles or its load
    if (step <= 0 || steps != op.hires_steps) return;
    PostEvent(op, "step", {{{"imageIndex", op.hires_done}, {"step", step}, {"steps", steps}, {"stepUs", StepUs(seconds)}}, nullptr, true});
    return;
  }
  if (step == 0) {  // sampling of the next image starts
    op.image_index++;
    return;
  }
  PostEvent(op, "step", {{{"imageIndex", std::max(0, op.image_index)}, {"step", step}, {"steps", steps}, {"stepUs", StepUs(seconds)}}});
}

// The hires fix's lines of sd.cpp (487de75c, generate_image): "hires fix:
// upscaling to WxH" starts it, "hires fix: scheduler_steps=…,
// sigma_sched_size=N" gives its N - 1 steps, "hires sampling i/n completed"
// ends image i.
void OnHiresLog(ActiveOp& op, const std::string& line) {
  if (line.find("hires fix: upscaling to") != std::string::npos) {
    op.hires = true;
    PostEvent(op, "stage", {{{"imageIndex", 0}}, "hires"});
    return;
  }
  if (!op.hires) return;
  size_t at = line.find("sigma_sched_size=");
  if (at != std::string::npos) {
    op.hires_steps = std::atoi(line.c_str() + at + std::strlen("sigma_sched_size=")) - 1;
    return;
  }
  if (line.find("hires sampling ") != std::string::npos && line.find("completed") != std::string::npos) op.hires_done++;
}

// Options sd.cpp (487de75c) only logs about and then goes on without, or
// with an empty schedule: a step cache mode the model cannot use
// (runtime/sample-cache.cpp: "UCache requested but not supported for this
// model type", "… could not be initialized", "Cache disabled due to invalid
// percent range"), and the AYS scheduler on a model it has no noise levels for
// (runtime/denoiser.hpp: "Version not compatible with AYS_SCHEDULER
// scheduler": every step then lands on sigma 0 and the image is flat), and
// PhotoMaker turned off for a generation that asked for it
// (extensions/photomaker_extension.cpp: its reason is on the line before).
// The option's name, or nullptr.
const char* RefusedOption(const ActiveOp& op, const std::string& line) {
  // sd.cpp says the same when a PhotoMaker model generates without being asked for an identity: not a refusal then
  if (line.find("Turn off PhotoMaker for this request") != std::string::npos) return op.photo_maker ? "photoMaker" : nullptr;
  const bool cache = line.find("Cache") != std::string::npos || line.find("Spectrum") != std::string::npos;
  if ((cache && line.find(" requested but ") != std::string::npos) || line.find("Cache disabled due to") != std::string::npos) return "cache.mode";
  if (line.find("not compatible with AYS_SCHEDULER") != std::string::npos) return "scheduler";
  return nullptr;
}

// A refused option cancels the generation, which then fails INVALID_ARGUMENT
// (diffusion.cpp). "… skipped N/M steps" after each sampling pass counts the
// image's cached steps.
void OnSamplingLog(ActiveOp& op, const std::string& line) {
  if (const char* option = RefusedOption(op, line); option && op.ctx) {
    if (!op.refused) {
      op.refused = option;
      // PhotoMaker gives its reason on the line before ("PhotoMaker trigger word 'img' was not found in prompt")
      op.refused_line = std::string_view(option) == "photoMaker" ? op.last_line : line;
    }
    sd_cancel_generation(op.ctx, SD_CANCEL_ALL);
    return;
  }
  size_t at = line.find(" skipped ");
  if (at == std::string::npos || (line.find("Cache") == std::string::npos && line.find("Spectrum") == std::string::npos)) return;
  int skipped = std::atoi(line.c_str() + at + std::strlen(" skipped "));
  int index = op.hires ? op.hires_done : std::max(0, op.image_index);
  PostEvent(op, "cacheSteps", {{{"imageIndex", index}, {"skipped", skipped}}});
}

// sd.cpp's lines: the running operation's errors (its message), the hires
// fix and decoding stages, then the process's one log sink (util/log.h).
void OnLog(sd_log_level_t level, const char* text, void*) {
  ActiveOp& op = g_op;
  if (!text) return;
  std::string line(text);
  if (level >= SD_LOG_ERROR && op.errors.size() < 2000) op.errors += line;
  // "loading <part> from '<path>' failed" (stable-diffusion.cpp, photomaker_extension.cpp): a warning, the load goes on
  if (!op.generating && level == SD_LOG_WARN && line.find(" - loading ") != std::string::npos && line.find("' failed") != std::string::npos &&
      op.part_failed.size() < 2000)
    op.part_failed += line;
  if (op.job && op.generating && !op.decoding) {
    OnHiresLog(op, line);
    OnSamplingLog(op, line);
  }
  // generate_image's "latent i decoded, taking …" after each image's VAE decode
  if (op.job && op.generating && op.decoding && line.find("latent ") != std::string::npos && line.find(" decoded, taking") != std::string::npos) {
    // a decode whose rest was skipped after a cancel is no image (dropped by the generation)
    if (op.kept_images < 0 || op.decoded < op.kept_images) PostEvent(op, "image", {{{"imageIndex", op.decoded}}});
    op.decoded++;
  }
  if (op.job && op.generating && !op.decoding && line.find("decoding") != std::string::npos) {
    op.decoding = true;
    PostEvent(op, "stage", {{{"imageIndex", 0}}, "decoding"});
  }
  if (op.job && op.generating) op.last_line = line;
  LogLine(static_cast<LogLevel>(kLogDebug + (level - SD_LOG_DEBUG)), text, LogSource::Sd);
}

// The graph hook's target time per chunk (the cancel latency, against a chunk's cost of a graph view: tens of µs on
// CPU), and its largest chunk: node costs differ a thousandfold between graphs (a text encoder's against a VAE
// decode's full-size convolutions), so a size fitted to one graph's nodes must not carry a long run into the next.
constexpr int64_t kGraphChunkUs = 50'000;
constexpr int64_t kMaxChunkNodes = 64;

int64_t NowUs() { return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// What the graph hook does once cancel("all") has arrived (OpScope::EnableGraphAbort), by where sd.cpp (487de75c)
// is: abort the graph where sd.cpp takes a failed compute as a failure, skip its remaining nodes where a failure
// would abort the process or lose finished images.
//  - kAbort: a sampling step (the denoiser's, a ControlNet's and a preview decode's graphs: an empty result, as its
//    own cancel gives), the hires fix's pass (its VAE decode, ESRGAN and encode return empty and the generation
//    fails, as its own cancel does there), the first image's VAE decode ("cancelled before any latent images were
//    decoded"), and an upscale (a failed pass).
//  - kSkip: before sampling (text encoders, the encodes of init / control / reference images, PhotoMaker's and
//    IP-Adapter's image encoders): a failed text encoder trips GGML_ASSERT(!chunk_hidden_states.empty())
//    (conditioning/conditioner.hpp), a process abort. Skipped nodes leave their outputs unset; sd.cpp then finds
//    its cancel flag before the first sampling step and fails the generation, so nothing reads them. A decode after
//    the batch's first image: a failed one makes sd.cpp return none of the images; skipped, it returns the finished
//    ones and this unfinished one, which the generation drops (ActiveOp::kept_images).
enum class GraphCut { kNone, kAbort, kSkip };
GraphCut CutMode(const ActiveOp& op) {
  if (!op.cancel_all) return GraphCut::kNone;
  if (!op.generating) return GraphCut::kAbort;
  if (op.decoding) return op.decoded == 0 ? GraphCut::kAbort : GraphCut::kSkip;
  return op.image_index >= 0 || op.hires ? GraphCut::kAbort : GraphCut::kSkip;
}
bool CancelledAll(const ActiveOp& op) { return op.cancel_all && op.cancel_all->load(std::memory_order_relaxed); }

// sd.cpp's graph eval hook (src/core/ggml_extend_backend.cpp sd_backend_graph_compute_with_eval_callback): asked
// node by node whether to stop after it (`ask`), it computes up to the first node answered true, then calls back
// with ask = false; false ends the graph (GGML_STATUS_ABORTED). Until a cancel: true every chunk_size nodes, the
// chunk's time setting the next chunk's size. Once cancelled: kAbort answers true at once and ends the graph;
// kSkip turns every node not yet computed into a no-op (GGML_OP_NONE: ggml's CPU backend skips it; sd.cpp builds
// each graph anew per compute, so no later graph sees the change) and lets the graph finish.
bool OnGraphEval(ggml_tensor* t, bool ask, void*) {
  ActiveOp& op = g_op;
  const GraphCut mode = CutMode(op);
  if (mode == GraphCut::kNone) return !ask;
  const bool cancelled = CancelledAll(op);
  if (ask) {
    if (cancelled && mode == GraphCut::kSkip) {
      t->op = GGML_OP_NONE;
      if (op.decoding && op.kept_images < 0) op.kept_images = op.decoded;
      return false;
    }
    if (op.chunk_nodes++ == 0) op.chunk_start_us = NowUs();
    return op.chunk_nodes >= op.chunk_size || cancelled;
  }
  const int64_t took = std::max<int64_t>(1, NowUs() - op.chunk_start_us);
  op.chunk_size = static_cast<int>(std::clamp<int64_t>(op.chunk_nodes * kGraphChunkUs / took, 1, kMaxChunkNodes));
  op.chunk_nodes = 0;
  return !cancelled || mode == GraphCut::kSkip;
}

void OnPreview(int step, int frame_count, sd_image_t* frames, bool, void*) {
  ActiveOp& op = g_op;
  if (!op.job || frame_count < 1 || !frames || !frames[0].data) return;
  if (step % op.preview_interval != 0) return;  // sd.cpp (487de75c) stores the interval but calls back every step
  const sd_image_t& f = frames[0];
  auto data = std::make_shared<std::vector<uint8_t>>(f.data, f.data + static_cast<size_t>(f.width) * f.height * f.channel);
  int index = op.hires ? op.hires_done : std::max(0, op.image_index);
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

}  // namespace

OpScope::OpScope(ThreadJob* job, bool generating) {
  g_sd_mu.lock();
  g_op = ActiveOp{};
  g_op.job = job;
  g_op.generating = generating;
  sd_set_log_callback(OnLog, nullptr);
  sd_set_progress_callback(OnProgress, nullptr);
}

OpScope::~OpScope() {
  sd_set_preview_callback(nullptr, PREVIEW_NONE, 1, false, false, nullptr);
  sd_set_backend_eval_callback(nullptr, nullptr);
  ReinstallGgmlLogger();  // new_sd_ctx() sets ggml's logger to ggml's default
  g_op.job = nullptr;
  g_sd_mu.unlock();
}

ActiveOp& OpScope::Op() { return g_op; }

void OpScope::EnableGraphAbort(const std::atomic<bool>* cancel_all) {
  g_op.cancel_all = cancel_all;
  sd_set_backend_eval_callback(OnGraphEval, nullptr);
}

void OpScope::EnablePreview(preview_t mode, int interval) {
  if (mode == PREVIEW_NONE) return;
  g_op.preview_interval = interval > 0 ? interval : 1;
  sd_set_preview_callback(OnPreview, mode, g_op.preview_interval, true, false, nullptr);
}

Napi::Object Event(Napi::Env env, const char* type) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", type);
  return o;
}

void CheckModelFileExtent(const std::string& path, const char* what) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw CodedError(code::MODEL_NOT_FOUND, std::string(what) + " file not found: " + path);
  char magic[8] = {0};
  size_t got = std::fread(magic, 1, 8, f);
  std::fseek(f, 0, SEEK_END);
  const uint64_t file_size = static_cast<uint64_t>(std::ftell(f));
  auto truncated = [&](const std::string& detail) {
    return CodedError(code::INVALID_MODEL, std::string(what) + " file is truncated or corrupted (" + detail + "): " + path);
  };
  if (got == 8 && std::memcmp(magic, "GGUF", 4) == 0) {
    std::fclose(f);
    LogCapture capture;
    gguf_init_params params{/*no_alloc=*/true, /*ctx=*/nullptr};
    gguf_context* g = gguf_init_from_file(path.c_str(), params);
    if (!g) throw truncated("unreadable GGUF header: " + capture.Errors());
    const uint64_t data = gguf_get_data_offset(g);
    for (int64_t i = 0; i < gguf_get_n_tensors(g); i++) {
      uint64_t end = data + gguf_get_tensor_offset(g, i) + gguf_get_tensor_size(g, i);
      if (end > file_size) {
        std::string name = gguf_get_tensor_name(g, i);
        gguf_free(g);
        throw truncated("tensor " + name + " ends at byte " + std::to_string(end) + " of a " + std::to_string(file_size) + "-byte file");
      }
    }
    gguf_free(g);
    return;
  }
  if (got == 8 && (path.size() >= 12 && path.compare(path.size() - 12, 12, ".safetensors") == 0)) {
    uint64_t header_len = 0;
    std::memcpy(&header_len, magic, 8);  // little-endian u64, then a JSON header
    if (header_len > 100u * 1024 * 1024 || 8 + header_len > file_size) {
      std::fclose(f);
      throw truncated("safetensors header of " + std::to_string(header_len) + " bytes");
    }
    std::string header(header_len, '\0');
    std::fseek(f, 8, SEEK_SET);
    bool ok = std::fread(header.data(), 1, header_len, f) == header_len;
    std::fclose(f);
    if (!ok) throw truncated("unreadable safetensors header");
    // the largest "data_offsets":[begin,end] end, relative to the data after the header
    uint64_t max_end = 0;
    for (size_t at = header.find("\"data_offsets\""); at != std::string::npos; at = header.find("\"data_offsets\"", at + 1)) {
      size_t comma = header.find(',', at);
      if (comma == std::string::npos) break;
      max_end = std::max<uint64_t>(max_end, std::strtoull(header.c_str() + comma + 1, nullptr, 10));
    }
    if (8 + header_len + max_end > file_size)
      throw truncated("tensor data ends at byte " + std::to_string(8 + header_len + max_end) + " of a " + std::to_string(file_size) + "-byte file");
    return;
  }
  std::fclose(f);
}

const char* FailureCode(const std::string& errors) {
  std::string lower(errors);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  bool oom = lower.find("failed to allocate") != std::string::npos || lower.find("out of memory") != std::string::npos ||
             lower.find("alloc failed") != std::string::npos || lower.find("bad_alloc") != std::string::npos;
  return oom ? code::OUT_OF_MEMORY : code::BACKEND_ERROR;
}

RawImg ImageValue(Napi::Env env, Napi::Value v, const std::string& name, uint32_t width, uint32_t height, bool mask) {
  RawImg r;
  if (!v.IsObject()) Throw(env, code::INVALID_ARGUMENT, name + " must be an image object");
  Napi::Object img = v.As<Napi::Object>();
  Napi::Value d = img.Get("data");
  if (!d.IsTypedArray() || d.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    Throw(env, code::INVALID_ARGUMENT, name + ".data must be a Uint8Array");
  auto arr = d.As<Napi::Uint8Array>();
  r.width = static_cast<uint32_t>(IntField(img, "width", 1, 16384));
  r.height = static_cast<uint32_t>(IntField(img, "height", 1, 16384));
  r.channels = static_cast<uint32_t>(IntField(img, "channels", 1, 4));
  if ((width && r.width != width) || (height && r.height != height))
    Throw(env, code::INVALID_ARGUMENT, name + " must be " + std::to_string(width) + "x" + std::to_string(height));
  if (!mask && r.channels != 3 && r.channels != 4) Throw(env, code::INVALID_ARGUMENT, name + ".channels must be 3 or 4");
  if (arr.ElementLength() != static_cast<size_t>(r.width) * r.height * r.channels) Throw(env, code::INVALID_ARGUMENT, name + ".data has the wrong length");
  r.data.assign(arr.Data(), arr.Data() + arr.ElementLength());
  return r;
}

RawImg ImageProp(Napi::Object o, const char* key, uint32_t width, uint32_t height, bool mask) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return RawImg{};
  return ImageValue(o.Env(), v, key, width, height, mask);
}

std::vector<RawImg> TakeImages(sd_image_t* images, int n) {
  std::vector<RawImg> out;
  for (int i = 0; images && i < n; i++) {
    if (!images[i].data) continue;
    RawImg img;
    img.width = images[i].width;
    img.height = images[i].height;
    img.channels = images[i].channel;
    img.data.assign(images[i].data, images[i].data + static_cast<size_t>(img.width) * img.height * img.channels);
    std::free(images[i].data);
    out.push_back(std::move(img));
  }
  std::free(images);
  return out;
}

Napi::Array ImagesToJs(Napi::Env env, const std::vector<RawImg>& images) {
  Napi::Array arr = Napi::Array::New(env, images.size());
  for (size_t i = 0; i < images.size(); i++) {
    const RawImg& img = images[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("data", Napi::Buffer<uint8_t>::Copy(env, img.data.data(), img.data.size()));
    o.Set("width", img.width);
    o.Set("height", img.height);
    o.Set("channels", img.channels);
    arr.Set(static_cast<uint32_t>(i), o);
  }
  return arr;
}

}  // namespace genai
