// LlamaModel's native half: owns one llama_model. Contexts and running jobs
// hold the ModelState by shared_ptr, so dispose() never frees weights a worker
// still reads; the last holder frees them.
#pragma once
#include <napi.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "llama.h"
#include "llm/gguf_check.h"
#include "system/rpc.h"
#include "util/shared_handle.h"

namespace genai {

struct MediaState;  // llm/media.h

struct ModelState {
  llama_model* model = nullptr;
  const llama_vocab* vocab = nullptr;
  std::string path;
  bool vocab_only = false;                   // loaded with vocabOnly: no layers, no weights (no context, no layer hyperparameters)
  std::shared_ptr<const GgufHeader> header;  // as checked before the load (null when the check was skipped)
  double check_ms = 0;                       // CheckGgufFile: the GGUF pre-check before llama.cpp sees the file
  double llama_load_ms = 0;                  // llama_model_load_from_file (mmap or read, and upload to the devices)
  std::shared_ptr<MediaState> media;         // the multimodal projector (loadProjector), set on the JS thread before any context exists
  std::vector<RpcLink> rpc_links;            // the RPC servers holding some of its layers (system/rpc.h)
  ~ModelState();
};

class ModelHandle : public Napi::ObjectWrap<ModelHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit ModelHandle(const Napi::CallbackInfo& info);
  // loadModel(path, { gpuLayers, useMmap }, onProgress(fraction), cancelToken) -> Promise<ModelHandle>
  static Napi::Value Load(const Napi::CallbackInfo& info);
  // The model, or throws DISPOSED.
  std::shared_ptr<ModelState> State(Napi::Env env) const { return state_.State(env); }

 private:
  Napi::Value Info(const Napi::CallbackInfo& info);
  // ggufHeader() -> { metadata, tensorCount, parameterCount, tensorDataOffset } | null: the header the load checked.
  Napi::Value GgufHeaderJs(const Napi::CallbackInfo& info);
  Napi::Value Tokenize(const Napi::CallbackInfo& info);
  Napi::Value Detokenize(const Napi::CallbackInfo& info);
  Napi::Value ApplyChatTemplate(const Napi::CallbackInfo& info);
  // parseChat(text, partial, format) -> { content, reasoning, toolCalls } (llm/chat_format.h)
  Napi::Value ParseChat(const Napi::CallbackInfo& info);
  // loadLora(path, cancelToken?) -> Promise<LoraHandle> (llm/lora.h)
  Napi::Value LoadLoraJs(const Napi::CallbackInfo& info);
  // loadProjector(path, { threads, device }, cancelToken) -> Promise<{ vision, audio }> (llm/media.h)
  Napi::Value LoadProjectorJs(const Napi::CallbackInfo& info);
  Napi::Value CreateContext(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  SharedHandle<ModelState> state_;
};

// The one token-id check: `v` must be an Int32Array of ids in [0, n_vocab)
// (or negative: an image's placeholder ids in a KV token list, llm/media.h,
// with media_placeholders). Throws INVALID_ARGUMENT naming `name`.
std::vector<llama_token> TokensFromJs(Napi::Env env, Napi::Value v, int32_t n_vocab, const char* name, bool media_placeholders = false);

// Checks a file before llama.cpp sees it: exists (MODEL_NOT_FOUND, "<what> file
// not found"), regular, GGUF magic (INVALID_MODEL). Any thread.
void CheckModelFile(const std::string& path, const char* what = "model");

// Tokenizes on the calling thread (used by workers). Throws CodedError.
std::vector<llama_token> TokenizeText(const llama_vocab* vocab, const std::string& text, bool add_special, bool parse_special);
// Text of one token, as bytes (may be a partial UTF-8 sequence).
std::string TokenPiece(const llama_vocab* vocab, llama_token token, bool special);

}  // namespace genai
