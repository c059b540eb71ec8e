// Images in prompts through llama.cpp's multimodal library (tools/mtmd,
// libmtmd): a projector ("mmproj" GGUF) loaded beside a model, a prompt whose
// text holds media markers tokenized with its images into text and media
// chunks, and one media chunk encoded by the projector and decoded into a
// sequence's KV cache. The batch loop (llm/batch.cpp) decodes a media chunk
// alone in its step; a generation's token list holds a media chunk as
// placeholder ids (llm/generation.cpp), so identical images at the same place
// are found again in the KV cache like identical text.
#pragma once
#include <napi.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "llama.h"
#include "mtmd.h"
#include "util/jobs.h"

namespace genai {

struct ModelState;

struct MediaState {
  mtmd_context* ctx = nullptr;
  std::string path;
  bool vision = false;
  bool audio = false;
  std::mutex mu;                    // encoding is not thread-safe (one mtmd_context per model; contexts share it)
  std::atomic<bool> broken{false};  // an assertion fired inside libmtmd: not used again
  ~MediaState();
};

// One image of a prompt: an encoded file (PNG, JPEG, BMP, GIF: what
// stb_image reads) or raw pixels (width × height × 3 bytes, RGB).
struct MediaInput {
  std::vector<uint8_t> bytes;
  uint32_t width = 0;  // > 0: raw RGB
  uint32_t height = 0;
};

// A prompt with media: `text` holds one marker (mtmd_default_marker(),
// "<__media__>") per input, in order.
struct MediaPrompt {
  std::string text;
  std::vector<MediaInput> inputs;
  bool add_special = true;
  bool parse_special = true;
};

// A media prompt tokenized: text tokens as they are, each media chunk as
// n_tokens placeholder ids (negative: never a vocabulary id; equal for equal
// images), and where each media chunk starts.
struct MediaTokens {
  std::vector<llama_token> tokens;
  struct Span {
    size_t start = 0;
    size_t n = 0;
    const mtmd_input_chunk* chunk = nullptr;
  };
  std::vector<Span> spans;
  std::shared_ptr<mtmd_input_chunks> owner;
  int32_t media_tokens = 0;
  // The span that starts at, or holds, token index i; null for a text token.
  const Span* At(size_t i) const;
};

inline bool IsMediaToken(llama_token t) { return t < 0; }

// Decodes the images (on the calling worker thread) and tokenizes. Throws
// CodedError INVALID_ARGUMENT: an image that cannot be decoded (its index),
// markers and images not matching in number.
MediaTokens TokenizeMedia(MediaState& m, const MediaPrompt& p);

// Encodes `chunk` with the projector and decodes its embeddings into `seq`
// from position n_past (n_batch at a time). Returns false when `cancel` was
// set: the encoder stops at its next graph node, the decode through llama's
// abort callback (the context's active_cancel, set by the caller). Throws
// CodedError BACKEND_ERROR when the encoder or decode fails.
// encode_ms / decode_ms: the projector's encode and the embeddings' decode (added to).
bool EvalMediaChunk(MediaState& m, llama_context* ctx, const mtmd_input_chunk* chunk, llama_pos n_past, llama_seq_id seq, int32_t n_batch,
                    const CancelFlag& cancel, double& encode_ms, double& decode_ms);

// JS: model.loadProjector(path, { threads, device }, cancelToken) -> Promise<{ vision, audio }>:
// mtmd_init_from_file on a worker thread; the projector stays with the model.
// INVALID_MODEL for a file libmtmd refuses (corrupt, or made for a model of another embedding size).
Napi::Value LoadProjector(const Napi::CallbackInfo& info, std::shared_ptr<ModelState> model);

// The generate params' `media` field: null, or { text, images: [Uint8Array | { width, height, rgb }] }.
// Throws INVALID_ARGUMENT on the JS thread.
std::optional<MediaPrompt> MediaPromptFromJs(Napi::Env env, Napi::Value v);

}  // namespace genai
