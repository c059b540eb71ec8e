// Process-wide plumbing shared by every stable-diffusion.cpp operation (model
// load, generation, upscaling): sd.cpp's log/progress/preview callbacks are
// global, so one operation runs at a time in the process (OpScope holds the
// lock) and the callbacks are routed to that operation's ThreadJob.
// Also: raw images crossing the JS boundary.
#pragma once
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "stable-diffusion.h"
#include "util/jobs.h"

namespace genai {

// What the callbacks know about the running operation.
struct ActiveOp {
  ThreadJob* job = nullptr;
  bool generating = false;  // false: a load (progress = tensors read, as a fraction)
  int image_index = -1;
  int last_percent = -1;
  bool decoding = false;
  // the hires fix's second pass (from sd.cpp's log lines): its steps, and the images it finished
  bool hires = false;
  int hires_steps = 0;
  int hires_done = 0;
  int decoded = 0;
  sd_ctx_t* ctx = nullptr;        // the generating context (a refused option cancels it)
  const char* refused = nullptr;  // an option sd.cpp cannot honour for this model ("cache.mode", "scheduler")
  std::string refused_line;       // sd.cpp's line saying so  // images decoded (sd.cpp's "latent i decoded" lines), each
                                  // posted as an "image" event
  int preview_interval = 1;
  std::string errors;        // sd.cpp's error lines, for the typed error's message
  std::string part_failed;   // a load: sd.cpp's warning that it could not read a model part, and went on without it
  std::string last_line;     // the line before (the reason sd.cpp gives before "Turn off PhotoMaker for this request")
  bool photo_maker = false;  // the generation asked for PhotoMaker (sd.cpp turns it off, also when not asked, with the same line)
  // The generating model's cancel("all") (DiffusionHandle::Cancel), for the graph hook (OpScope::EnableGraphAbort);
  // null: the hook is off
  const std::atomic<bool>* cancel_all = nullptr;
  // The hook's chunks: nodes asked for since the chunk began, nodes per chunk (adapted to kGraphChunkUs), the chunk's start
  int chunk_nodes = 0;
  int chunk_size = 16;
  int64_t chunk_start_us = 0;
  // A decode cancelled (its remaining nodes skipped) after the batch's first image: images from this index on are
  // unfinished and dropped (-1: none)
  int kept_images = -1;
};

// Takes the process-wide sd.cpp lock and routes the callbacks to `job` for
// its lifetime. `Op()` is the running operation's state (valid inside a scope).
class OpScope {
 public:
  OpScope(ThreadJob* job, bool generating);
  ~OpScope();
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;
  ActiveOp& Op();
  // Sends previews of every `interval` steps of this generation to the job.
  void EnablePreview(preview_t mode, int interval);
  // Ends sd.cpp's running graph within one chunk of it once `cancel_all` is set: sd.cpp's graph eval hook
  // (sd_set_backend_eval_callback) computes each graph in chunks of about 50 ms. Where sd.cpp takes a failed compute
  // as a failure (a sampling step, the hires fix's pass, the first image's VAE decode, an upscale) the graph ends
  // with GGML_STATUS_ABORTED. Where a failure would abort the process (the text encoders and image encodes before
  // sampling: sd.cpp asserts on a failed text encoder) or lose finished images (a decode after the batch's first
  // image: sd.cpp then returns none), the graph's remaining nodes are skipped instead: sd.cpp then stops at its own
  // cancel flag before sampling, or returns the finished images and the unfinished one, whose index kept_images
  // records. sd.cpp ignores the hook for a graph split across devices.
  void EnableGraphAbort(const std::atomic<bool>* cancel_all);
};

// Raw pixels, row-major, 8 bits per channel.
struct RawImg {
  std::vector<uint8_t> data;
  uint32_t width = 0, height = 0, channels = 0;
};

// An event object { type } for the job's JS callback.
Napi::Object Event(Napi::Env env, const char* type);

// o[key] as { data: Uint8Array, width, height, channels } (absent: empty
// image). Width/height must equal `width`/`height` when those are non-zero;
// channels 3 or 4 (1..4 for a mask); data.length = width × height × channels.
RawImg ImageProp(Napi::Object o, const char* key, uint32_t width, uint32_t height, bool mask);
// The same for a value (an array element), `name` naming it in errors.
RawImg ImageValue(Napi::Env env, Napi::Value v, const std::string& name, uint32_t width, uint32_t height, bool mask);

// Checks, before sd.cpp opens it, that a model file exists (MODEL_NOT_FOUND)
// and that every tensor's data lies inside the file (INVALID_MODEL): sd.cpp
// loads a truncated checkpoint without complaint and then crashes the process
// reading past its end. GGUF (ggml's gguf reader, no data read) and
// safetensors (its JSON header's data_offsets) are checked; other formats
// (.ckpt/.pth zip archives) only for existence.
void CheckModelFileExtent(const std::string& path, const char* what);

// The error code for a failed sd.cpp operation from the error lines it (and
// ggml) logged: OUT_OF_MEMORY when an allocation failed ("failed to allocate
// ..." from ggml-backend / ggml-alloc / sd.cpp), else BACKEND_ERROR.
const char* FailureCode(const std::string& errors);

// Moves sd.cpp's malloc'd images into RawImgs and frees them (and the array).
std::vector<RawImg> TakeImages(sd_image_t* images, int n);

// [{ data: Buffer, width, height, channels }] on the JS thread.
Napi::Array ImagesToJs(Napi::Env env, const std::vector<RawImg>& images);

}  // namespace genai
