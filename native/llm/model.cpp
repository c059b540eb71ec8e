#include "llm/model.h"

#include "llm/media.h"

#include "system/backends.h"
#include "llm/placement.h"

#include <chrono>
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "chat.h"
#include "llm/chat_template_check.h"
#include "llm/context.h"
#include "llm/gguf_check.h"
#include "llm/lora.h"
#include "util/abort_guard.h"
#include "util/args.h"
#include "util/errors.h"
#include "util/jobs.h"
#include "util/log.h"
#include "util/stack_thread.h"

namespace genai {

ModelState::~ModelState() {
  media.reset();  // the projector refers to the text model
  if (model) llama_model_free(model);
  ReleaseFreedMemory();
}

namespace {
// llama.cpp asserts, rather than reports, a tokenizer call its vocabulary cannot
// serve (llama-vocab.cpp impl::tokenize: "Tokenizer not initialized", and
// special_bos_id/special_eos_id/special_sep_id != LLAMA_TOKEN_NULL when it adds
// them; token_to_piece: GGML_ABORT for a model without a vocabulary).
void CheckVocabServes(const llama_vocab* vocab, bool add_special) {
  enum llama_vocab_type type = llama_vocab_type(vocab);
  if (type == LLAMA_VOCAB_TYPE_NONE)
    throw CodedError(code::INVALID_MODEL, "the model has no vocabulary (tokenizer.ggml.model is none): it cannot tokenize or detokenize");
  if (!add_special) return;
  bool wpm = type == LLAMA_VOCAB_TYPE_WPM;
  if ((wpm || llama_vocab_get_add_bos(vocab)) && llama_vocab_bos(vocab) == LLAMA_TOKEN_NULL)
    throw CodedError(
        code::INVALID_MODEL,
        "the model's vocabulary adds a BOS token but has none (tokenizer.ggml.bos_token_id missing or out of range); tokenize with addSpecial: false");
  if (!wpm && llama_vocab_get_add_eos(vocab) && llama_vocab_eos(vocab) == LLAMA_TOKEN_NULL)
    throw CodedError(
        code::INVALID_MODEL,
        "the model's vocabulary adds an EOS token but has none (tokenizer.ggml.eos_token_id missing or out of range); tokenize with addSpecial: false");
  if (wpm && llama_vocab_sep(vocab) == LLAMA_TOKEN_NULL)
    throw CodedError(code::INVALID_MODEL,
                     "the model's WordPiece vocabulary adds a SEP token but has none (tokenizer.ggml.seperator_token_id); tokenize with addSpecial: false");
}
}  // namespace

std::vector<llama_token> TokenizeText(const llama_vocab* vocab, const std::string& text, bool add_special, bool parse_special) {
  CheckVocabServes(vocab, add_special);
  AbortToException guard(code::INVALID_MODEL, "llama.cpp's tokenizer failed an assertion");
  if (text.size() > static_cast<size_t>(INT32_MAX) / 2) throw CodedError(code::INVALID_ARGUMENT, "text is too long to tokenize");
  std::vector<llama_token> tokens(text.size() + 8);
  int32_t n;
  try {
    n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(), static_cast<int32_t>(tokens.size()), add_special, parse_special);
    if (n < 0) {
      tokens.resize(static_cast<size_t>(-n));
      n = llama_tokenize(vocab, text.data(), static_cast<int32_t>(text.size()), tokens.data(), static_cast<int32_t>(tokens.size()), add_special, parse_special);
    }
  } catch (const CodedError&) {
    throw;
  } catch (const std::exception& e) {  // a malformed vocabulary (e.g. unordered_map::at of a missing byte token)
    throw CodedError(code::INVALID_MODEL, std::string("llama.cpp's tokenizer failed on this model's vocabulary: ") + e.what());
  }
  if (n < 0) throw CodedError(code::BACKEND_ERROR, "tokenization failed");
  tokens.resize(static_cast<size_t>(n));
  return tokens;
}

std::string TokenPiece(const llama_vocab* vocab, llama_token token, bool special) {
  CheckVocabServes(vocab, false);
  AbortToException guard(code::INVALID_MODEL, "llama.cpp's tokenizer failed an assertion");
  char buf[256];
  int32_t n = llama_token_to_piece(vocab, token, buf, sizeof(buf), 0, special);
  if (n >= 0) return std::string(buf, static_cast<size_t>(n));
  std::string big(static_cast<size_t>(-n), '\0');
  n = llama_token_to_piece(vocab, token, big.data(), static_cast<int32_t>(big.size()), 0, special);
  return n < 0 ? std::string() : big.substr(0, static_cast<size_t>(n));
}

Napi::Function ModelHandle::Init(Napi::Env env) {
  return DefineClass(env, "ModelHandle",
                     {
                         InstanceMethod<&ModelHandle::Info>("info"),
                         InstanceMethod<&ModelHandle::GgufHeaderJs>("ggufHeader"),
                         InstanceMethod<&ModelHandle::Tokenize>("tokenize"),
                         InstanceMethod<&ModelHandle::Detokenize>("detokenize"),
                         InstanceMethod<&ModelHandle::ApplyChatTemplate>("applyChatTemplate"),
                         InstanceMethod<&ModelHandle::ParseChat>("parseChat"),
                         InstanceMethod<&ModelHandle::LoadLoraJs>("loadLora"),
                         InstanceMethod<&ModelHandle::LoadProjectorJs>("loadProjector"),
                         InstanceMethod<&ModelHandle::CreateContext>("createContext"),
                         InstanceMethod<&ModelHandle::Dispose>("dispose"),
                     });
}

ModelHandle::ModelHandle(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<ModelHandle>(info), state_(info, "ModelHandle is created by loadModel()", "the model has been disposed") {}

// Checks the file before llama.cpp sees it: exists, regular, GGUF magic.
void CheckModelFile(const std::string& path, const char* what) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) throw CodedError(code::MODEL_NOT_FOUND, std::string(what) + " file not found: " + path);
  if (!S_ISREG(st.st_mode)) throw CodedError(code::INVALID_MODEL, "not a regular file: " + path);
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw CodedError(code::MODEL_NOT_FOUND, "cannot open " + std::string(what) + " file: " + path);
  char magic[4] = {0, 0, 0, 0};
  size_t n = std::fread(magic, 1, 4, f);
  std::fclose(f);
  if (n != 4 || std::memcmp(magic, "GGUF", 4) != 0) throw CodedError(code::INVALID_MODEL, "not a GGUF file (bad magic): " + path);
}

namespace {

struct LoadProgress {
  ThreadJob* job;
  // Whether a cancel may stop the load between tensors. Not when llama.cpp
  // uploads to a GPU asynchronously (no mmap): its loader returns on a false
  // progress callback without waiting for the uploads in flight
  // (llama-model-loader.cpp load_all_data: the event synchronisation is after
  // the loop), and the weights are then freed under them — on Vulkan the
  // driver's queue thread crashed the process writing into freed memory. Such
  // a load finishes its uploads, then is freed and reported ABORTED.
  bool stop_midway = true;
  int last_percent = -1;
};

// A load can stop between tensors unless llama.cpp may upload asynchronously:
// without mmap, onto a device that is not the CPU.
bool CanStopMidway(const llama_model_params& params, const std::vector<ggml_backend_dev_t>& devices) {
  if (params.load_mode != LLAMA_LOAD_MODE_NONE || params.n_gpu_layers == 0) return true;
  for (ggml_backend_dev_t d : devices)
    if (d && ggml_backend_dev_type(d) != GGML_BACKEND_DEVICE_TYPE_CPU) return false;
  return true;
}

bool OnLoadProgress(float p, void* data) {
  auto* lp = static_cast<LoadProgress*>(data);
  if (lp->stop_midway && lp->job->cancel()->IsCancelled()) return false;
  int percent = static_cast<int>(std::floor(p * 100.0f));
  if (percent != lp->last_percent) {
    lp->last_percent = percent;
    double value = p;
    lp->job->Post([value](Napi::Env env, Napi::Function cb) { cb.Call({Napi::Number::New(env, value)}); });
  }
  return true;
}

}  // namespace

Napi::Value ModelHandle::Load(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringArg(info, 0, "path");
  Napi::Object opts = ObjectArg(info, 1, "options");
  llama_model_params params = llama_model_default_params();
  CheckKeys(opts, {"gpuLayers", "useMmap", "vocabOnly", "device", "rpcServers", "rpcTimeouts", "tensorSplit"}, "load");
  params.n_gpu_layers = static_cast<int32_t>(IntField(opts, "gpuLayers", -1, 100000));
  if (std::optional<bool> mmap = OptBoolField(opts, "useMmap")) params.load_mode = *mmap ? LLAMA_LOAD_MODE_MMAP : LLAMA_LOAD_MODE_NONE;
  Placement placement = Placement::FromJs(opts);
  bool vocab_only = BoolField(opts, "vocabOnly");
  params.vocab_only = vocab_only;
  Napi::Function on_progress;
  if (info.Length() > 2 && info[2].IsFunction()) on_progress = info[2].As<Napi::Function>();
  auto cancel = CancelToken::From(info.Length() > 3 ? info[3] : env.Undefined());

  return ThreadJob::Start(env, "genai.loadModel", cancel, on_progress, [path, params, placement, vocab_only](ThreadJob& job) mutable -> ThreadJob::ValueMaker {
    const auto t_check = std::chrono::steady_clock::now();
    CheckModelFile(path);
    placement.Resolve(params, !vocab_only);
    std::vector<RpcLink>& rpc_links = placement.links;
    // an assertion in the load below is an exception on this thread, which llama_model_load catches (util/abort_guard.h)
    AbortToException abort_guard(code::INVALID_MODEL, "llama.cpp failed an assertion while loading the model");
    // what llama.cpp would abort the process on (GGML_ASSERT) rather than report: INVALID_MODEL here
    GgufCheck checked = CheckGgufFile(path, params.vocab_only);
    if (checked.mmap_misaligned) params.load_mode = LLAMA_LOAD_MODE_NONE;  // read, not mapped: ggml needs 32-byte aligned mapped tensors
    const auto t_load = std::chrono::steady_clock::now();
    LoadProgress lp{&job};
    lp.stop_midway = CanStopMidway(params, placement.devices);
    params.progress_callback = OnLoadProgress;
    params.progress_callback_user_data = &lp;
    LogCapture capture;  // llama.cpp's own error lines from this thread, for the message
    llama_model* model;
    {
      BackendSetupLock setup;
      model = llama_model_load_from_file(path.c_str(), params);
    }
    if (!model) {
      if (job.cancel()->IsCancelled()) throw CodedError(code::ABORTED, "model load was aborted");
      CheckRpcLinks(rpc_links);
      std::string why = capture.Errors();
      throw CodedError(code::INVALID_MODEL,
                       "llama.cpp could not load the model (corrupt, truncated or unsupported GGUF): " + path + (why.empty() ? "" : " — " + why));
    }
    if (job.cancel()->IsCancelled()) {
      llama_model_free(model);
      throw CodedError(code::ABORTED, "model load was aborted");
    }
    try {
      CheckRpcLinks(rpc_links);  // a server that went away mid-load
    } catch (...) {
      llama_model_free(model);
      throw;
    }
    auto state = std::make_shared<ModelState>();
    state->model = model;
    state->rpc_links = std::move(rpc_links);
    state->vocab = llama_model_get_vocab(model);
    state->path = path;
    state->vocab_only = vocab_only;
    state->header = std::move(checked.header);
    using Ms = std::chrono::duration<double, std::milli>;
    state->check_ms = Ms(t_load - t_check).count();
    state->llama_load_ms = Ms(std::chrono::steady_clock::now() - t_load).count();
    return [state](Napi::Env env) -> Napi::Value { return SharedHandle<ModelState>::New(env, Data(env).model_ctor, state); };
  });
}

Napi::Value ModelHandle::GgufHeaderJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  if (!s->header) return env.Null();
  const GgufHeader& h = *s->header;
  using Kind = GgufHeader::Entry::Kind;
  Napi::Object md = Napi::Object::New(env);
  for (const GgufHeader::Entry& e : h.entries) {
    if (e.key == "__proto__") continue;  // would set the object's prototype, not a property
    Napi::Value v;
    switch (e.kind) {
      case Kind::kNumber: v = Napi::Number::New(env, e.number); break;
      case Kind::kUint64: v = Napi::BigInt::New(env, e.u64); break;
      case Kind::kInt64: v = Napi::BigInt::New(env, e.i64); break;
      case Kind::kBool: v = Napi::Boolean::New(env, e.boolean); break;
      case Kind::kString: v = Napi::String::New(env, e.str); break;
      case Kind::kArray: {
        Napi::Object a = Napi::Object::New(env);
        a.Set("arrayLength", Napi::Number::New(env, static_cast<double>(e.array_length)));
        v = a;
        break;
      }
    }
    md.Set(e.key, v);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("metadata", md);
  o.Set("tensorCount", Napi::Number::New(env, static_cast<double>(h.tensor_count)));
  o.Set("parameterCount", Napi::Number::New(env, h.parameter_count));
  o.Set("tensorDataOffset", Napi::Number::New(env, static_cast<double>(h.data_offset)));
  return o;
}

Napi::Value ModelHandle::Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  const llama_model* m = s->model;
  Napi::Object o = Napi::Object::New(env);
  char desc[256];
  llama_model_desc(m, desc, sizeof(desc));
  o.Set("description", desc);
  o.Set("sizeBytes", Napi::Number::New(env, static_cast<double>(llama_model_size(m))));
  o.Set("parameters", Napi::Number::New(env, static_cast<double>(llama_model_n_params(m))));
  o.Set("trainContextSize", llama_model_n_ctx_train(m));
  o.Set("embeddingSize", llama_model_n_embd(m));
  // a vocabulary-only model has no layers: llama.cpp asserts (llama-hparams.cpp n_head(il): il < n_layer) when asked their head counts
  o.Set("layers", s->vocab_only ? 0 : llama_model_n_layer(m));
  o.Set("heads", s->vocab_only ? 0 : llama_model_n_head(m));
  o.Set("kvHeads", s->vocab_only ? 0 : llama_model_n_head_kv(m));
  o.Set("vocabOnly", s->vocab_only);
  if (s->media) {
    Napi::Object pj = Napi::Object::New(env);
    pj.Set("path", s->media->path);
    pj.Set("vision", s->media->vision);
    pj.Set("audio", s->media->audio);
    o.Set("projector", pj);
  } else {
    o.Set("projector", env.Null());
  }
  o.Set("vocabSize", llama_vocab_n_tokens(s->vocab));
  o.Set("bos", llama_vocab_bos(s->vocab));
  o.Set("eos", llama_vocab_eos(s->vocab));
  o.Set("hasEncoder", llama_model_has_encoder(m));
  o.Set("hasDecoder", llama_model_has_decoder(m));
  const char* tmpl = llama_model_chat_template(m, nullptr);
  Napi::Object lt = Napi::Object::New(env);
  lt.Set("checkMs", s->check_ms);
  lt.Set("llamaLoadMs", s->llama_load_ms);
  o.Set("loadTimings", lt);
  o.Set("chatTemplate", tmpl ? Napi::Value(Napi::String::New(env, tmpl)) : env.Null());
  return o;
}

Napi::Value ModelHandle::Tokenize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  std::string text = StringArg(info, 0, "text");
  bool add_special = info.Length() > 1 && info[1].ToBoolean().Value();
  bool parse_special = info.Length() > 2 && info[2].ToBoolean().Value();
  return RunAsync<std::vector<llama_token>>(
      env, [s, text, add_special, parse_special] { return TokenizeText(s->vocab, text, add_special, parse_special); },
      [](Napi::Env env, std::vector<llama_token>& t) -> Napi::Value {
        auto arr = Napi::Int32Array::New(env, t.size());
        if (!t.empty()) std::memcpy(arr.Data(), t.data(), t.size() * sizeof(int32_t));
        return arr;
      });
}

std::vector<llama_token> TokensFromJs(Napi::Env env, Napi::Value v, int32_t n_vocab, const char* name, bool media_placeholders) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
    Throw(env, code::INVALID_ARGUMENT, std::string(name) + " must be an Int32Array");
  auto arr = v.As<Napi::Int32Array>();
  std::vector<llama_token> t(arr.Data(), arr.Data() + arr.ElementLength());
  for (llama_token tok : t)
    if ((tok < 0 && !media_placeholders) || tok >= n_vocab)
      Throw(env, code::INVALID_ARGUMENT, "token id " + std::to_string(tok) + " is outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
  return t;
}

Napi::Value ModelHandle::Detokenize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  auto tokens = TokensFromJs(env, info.Length() > 0 ? info[0] : env.Undefined(), llama_vocab_n_tokens(s->vocab), "tokens");
  bool remove_special = info.Length() > 1 && info[1].ToBoolean().Value();
  bool unparse_special = info.Length() > 2 && info[2].ToBoolean().Value();
  return RunAsync<std::string>(
      env,
      [s, tokens, remove_special, unparse_special] {
        CheckVocabServes(s->vocab, false);
        AbortToException guard(code::INVALID_MODEL, "llama.cpp's tokenizer failed an assertion");
        std::string out(tokens.size() * 8 + 16, '\0');
        int32_t n = llama_detokenize(s->vocab, tokens.data(), static_cast<int32_t>(tokens.size()), out.data(), static_cast<int32_t>(out.size()), remove_special,
                                     unparse_special);
        if (n < 0) {
          out.resize(static_cast<size_t>(-n));
          n = llama_detokenize(s->vocab, tokens.data(), static_cast<int32_t>(tokens.size()), out.data(), static_cast<int32_t>(out.size()), remove_special,
                               unparse_special);
        }
        if (n < 0) throw CodedError(code::BACKEND_ERROR, "detokenization failed");
        out.resize(static_cast<size_t>(n));
        return out;
      },
      [](Napi::Env env, std::string& text) -> Napi::Value { return Napi::String::New(env, text); });
}

// applyChatTemplate(messages, { addAssistant, template, tools, toolChoice, parallelToolCalls, enableThinking }, cancelToken?)
//   -> Promise<{ prompt, stops, format }> (llm/chat_format.h)
Napi::Value ModelHandle::ApplyChatTemplate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  ChatInputs in = ChatInputsFromJs(env, info.Length() > 0 ? info[0] : env.Undefined(), ObjectArg(info, 1, "options"));
  std::shared_ptr<CancelFlag> cancel = CancelToken::From(info.Length() > 2 ? info[2] : env.Undefined());
  // a template is code: checked, then rendered under limits on its own thread with a large stack (llm/chat_template_check.h)
  return RunOnStackThread(env, "genai.chatTemplate", tmpl_limits::kRenderStackBytes, cancel, [s, in, cancel]() -> std::function<Napi::Value(Napi::Env)> {
    CheckVocabServes(s->vocab, false);  // the template renderer reads the BOS/EOS texts
    auto r = std::make_shared<common_chat_params>(RenderChatTemplate(s->model, in, *cancel));
    return [r](Napi::Env env) -> Napi::Value { return ChatParamsToJs(env, *r); };
  });
}

Napi::Value ModelHandle::ParseChat(const Napi::CallbackInfo& info) { return ParseChatJs(info); }

Napi::Value ModelHandle::LoadLoraJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return LoadLora(env, State(env), StringArg(info, 0, "path"), info.Length() > 1 ? info[1] : env.Undefined());
}

Napi::Value ModelHandle::LoadProjectorJs(const Napi::CallbackInfo& info) { return LoadProjector(info, State(info.Env())); }

Napi::Value ModelHandle::CreateContext(const Napi::CallbackInfo& info) {
  auto s = State(info.Env());
  if (s->vocab_only) Throw(info.Env(), code::INVALID_ARGUMENT, "the model was loaded with vocabOnly: it has no weights to create a context from");
  return ContextHandle::Create(info, s);
}

Napi::Value ModelHandle::Dispose(const Napi::CallbackInfo& info) {
  state_.Reset();
  return info.Env().Undefined();
}

}  // namespace genai
