#include "llm/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>

#include "llm/batch.h"
#include "llm/chat_format.h"
#include "util/args.h"
#include "util/errors.h"
#include "util/jobs.h"
#include "util/log.h"

namespace genai {

namespace {

using Clock = std::chrono::steady_clock;

// Text on its way to JS. A piece is posted at once unless a post is already
// queued or one went out under kCoalesce ago; then it rides with the next
// one. When tokens come faster than JS takes them (small models make
// thousands a second) this saves a JS wake-up per token; a piece waits at
// most one token's time.
class PieceBuffer {
 public:
  static constexpr std::chrono::microseconds kCoalesce{2000};
  // Appends; true when the caller should post a drain.
  bool Add(const std::string& piece) {
    std::lock_guard<std::mutex> lock(mu_);
    buf_ += piece;
    auto now = Clock::now();
    if (queued_ || now - last_post_ < kCoalesce) return false;
    queued_ = true;
    last_post_ = now;
    return true;
  }
  std::string Take() {
    std::lock_guard<std::mutex> lock(mu_);
    queued_ = false;
    std::string out;
    out.swap(buf_);
    return out;
  }

 private:
  std::mutex mu_;
  std::string buf_;
  bool queued_ = false;
  Clock::time_point last_post_{};
};

GenerateParams ParseGenerateParams(Napi::Object o, const ContextState& s) {
  Napi::Env env = o.Env();
  GenerateParams p;
  CheckKeys(o, {"sequence",        "tokens",           "maxTokens",       "temperature", "topK", "topP",      "minP",    "repeatPenalty",
                "presencePenalty", "frequencyPenalty", "penaltyLastN",    "seed",        "stop", "ignoreEos", "grammar", "jsonSchema",
                "logitBias",       "logprobs",         "contextOverflow", "keepTokens",  "chat", "media"},
            "generate");
  p.sequence = SequenceArg(env, o.Get("sequence"), s);
  p.prompt = TokensFromJs(env, o.Get("tokens"), llama_vocab_n_tokens(s.model->vocab), "tokens");
  p.media = MediaPromptFromJs(env, o.Get("media"));
  if (p.media && !s.model->media)
    Throw(env, code::INVALID_ARGUMENT, "the prompt has images but the model has no projector: load it with { mmproj: \"mmproj-….gguf\" }");
  if (p.media && !p.prompt.empty()) Throw(env, code::INVALID_ARGUMENT, "a prompt with media takes its text from media.text: tokens must be empty");
  p.max_tokens = static_cast<int32_t>(IntField(o, "maxTokens", 1, 1 << 30));
  p.ignore_eos = BoolField(o, "ignoreEos");
  p.logprobs = static_cast<int32_t>(IntField(o, "logprobs", -1, 20));
  if (!ParseOverflow(StringField(o, "contextOverflow"), p.overflow))
    Throw(env, code::INVALID_ARGUMENT, "contextOverflow must be \"error\", \"truncateMiddle\" or \"shift\"");
  p.keep_tokens = static_cast<int32_t>(IntField(o, "keepTokens", 0, 1 << 30));
  SamplingParams& sp = p.sampling;
  sp.temperature = static_cast<float>(NumberField(o, "temperature", 0, 100));
  sp.top_k = static_cast<int32_t>(IntField(o, "topK", 0, 1 << 30));
  sp.top_p = static_cast<float>(NumberField(o, "topP", 0, 1));
  sp.min_p = static_cast<float>(NumberField(o, "minP", 0, 1));
  sp.repeat_penalty = static_cast<float>(NumberField(o, "repeatPenalty", 1e-6, 100));
  sp.presence_penalty = static_cast<float>(NumberField(o, "presencePenalty", -100, 100));
  sp.frequency_penalty = static_cast<float>(NumberField(o, "frequencyPenalty", -100, 100));
  sp.penalty_last_n = static_cast<int32_t>(IntField(o, "penaltyLastN", 0, 1 << 24));
  // LLAMA_DEFAULT_SEED (2^32−1) would mean "random" to llama.cpp: refused
  sp.seed = static_cast<uint32_t>(IntField(o, "seed", 0, static_cast<int64_t>(LLAMA_DEFAULT_SEED) - 1));
  sp.grammar = StringField(o, "grammar");
  sp.json_schema = StringField(o, "jsonSchema");
  Napi::Value bias = o.Get("logitBias");
  if (bias.IsUndefined() || bias.IsNull()) Throw(env, code::INVALID_ARGUMENT, "logitBias is required");
  if (!bias.IsArray()) Throw(env, code::INVALID_ARGUMENT, "logitBias must be an array of [token, bias] pairs");
  const int32_t n_vocab = llama_vocab_n_tokens(s.model->vocab);
  auto pairs = bias.As<Napi::Array>();
  for (uint32_t i = 0; i < pairs.Length(); i++) {
    Napi::Value pair = pairs.Get(i);
    if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2) Throw(env, code::INVALID_ARGUMENT, "logitBias entries must be [token, bias] pairs");
    Napi::Value t = pair.As<Napi::Array>().Get(0u), b = pair.As<Napi::Array>().Get(1u);
    const double token = t.IsNumber() ? t.As<Napi::Number>().DoubleValue() : -1;
    if (token != std::floor(token) || token < 0 || token >= n_vocab)
      Throw(env, code::INVALID_ARGUMENT, "logitBias token ids must be integers in [0, " + std::to_string(n_vocab) + ")");
    const double value = b.IsNumber() ? b.As<Napi::Number>().DoubleValue() : NAN;
    // -Infinity bans a token; +Infinity or NaN would poison the softmax
    if (std::isnan(value) || value == INFINITY || std::fabs(value) > 1e9 && value != -INFINITY)
      Throw(env, code::INVALID_ARGUMENT, "logitBias values must be numbers in [-1e9, 1e9], or -Infinity");
    sp.logit_bias.push_back({static_cast<llama_token>(token), static_cast<float>(value)});
  }
  Napi::Value chat = o.Get("chat");
  if (chat.IsUndefined()) Throw(env, code::INVALID_ARGUMENT, "chat is required");
  if (!chat.IsNull()) {
    if (!chat.IsObject()) Throw(env, code::INVALID_ARGUMENT, "chat must be null or { format, reasoningBudget }");
    ChatSamplingFromJs(chat.As<Napi::Object>(), s.model->vocab, sp, p.preserved);
  }
  Napi::Value stops = o.Get("stop");
  if (stops.IsUndefined() || stops.IsNull()) Throw(env, code::INVALID_ARGUMENT, "stop is required");
  if (!stops.IsArray()) Throw(env, code::INVALID_ARGUMENT, "stop must be an array of strings");
  auto a = stops.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    if (!v.IsString() || v.As<Napi::String>().Utf8Value().empty()) Throw(env, code::INVALID_ARGUMENT, "stop sequences must be non-empty strings");
    p.stops.push_back(v.As<Napi::String>().Utf8Value());
  }
  return p;
}

Napi::Object ResultToJs(Napi::Env env, const GenerateResult& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("text", r.text);
  o.Set("tokenCount", r.generated_tokens);
  auto ids = Napi::Int32Array::New(env, r.tokens.size());
  if (!r.tokens.empty()) std::memcpy(ids.Data(), r.tokens.data(), r.tokens.size() * sizeof(llama_token));
  o.Set("tokens", ids);
  if (!r.logprobs.empty()) {
    Napi::Array lps = Napi::Array::New(env, r.logprobs.size());
    for (size_t i = 0; i < r.logprobs.size(); i++) {
      const TokenLogprob& lp = r.logprobs[i];
      Napi::Object e = Napi::Object::New(env);
      e.Set("token", lp.token);
      e.Set("text", lp.text);
      e.Set("logprob", lp.logprob);
      Napi::Array top = Napi::Array::New(env, lp.top.size());
      for (size_t k = 0; k < lp.top.size(); k++) {
        Napi::Object t = Napi::Object::New(env);
        t.Set("token", lp.top[k].token);
        t.Set("text", lp.top[k].text);
        t.Set("logprob", lp.top[k].logprob);
        top.Set(static_cast<uint32_t>(k), t);
      }
      e.Set("top", top);
      lps.Set(static_cast<uint32_t>(i), e);
    }
    o.Set("logprobs", lps);
  }
  o.Set("stopReason", r.stop_reason);
  Napi::Object t = Napi::Object::New(env);
  t.Set("promptTokens", r.prompt_tokens);
  t.Set("mediaTokens", r.media_tokens);
  t.Set("mediaEncodeMs", r.media_encode_ms);
  t.Set("mediaDecodeMs", r.media_decode_ms);
  t.Set("reusedTokens", r.reused_tokens);
  t.Set("promptMs", r.prompt_ms);
  t.Set("generatedTokens", r.generated_tokens);
  t.Set("generationMs", r.generation_ms);
  t.Set("truncatedTokens", r.truncated_tokens);
  t.Set("discardedTokens", r.discarded_tokens);
  const GenerateResult::Breakdown& bd = r.breakdown;
  Napi::Object b = Napi::Object::New(env);
  b.Set("decodeMs", bd.decode_ms);
  b.Set("sampleMs", bd.sample_ms);
  b.Set("detokenizeMs", bd.detokenize_ms);
  b.Set("stopMs", bd.stop_ms);
  b.Set("deliverMs", bd.deliver_ms);
  b.Set("deliveries", bd.deliveries);
  t.Set("breakdown", b);
  o.Set("timings", t);
  return o;
}

}  // namespace

// generate({ sequence, tokens, maxTokens, temperature, ... }, onText(piece), cancelToken) -> Promise<result>
Napi::Value ContextHandle::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  GenerateParams p = ParseGenerateParams(ObjectArg(info, 0, "params"), *s);
  Napi::Function on_text = FunctionArg(info, 1, "onText");
  auto cancel = CancelToken::From(info.Length() > 2 ? info[2] : env.Undefined());
  auto guard = std::make_shared<BusyGuard>(s, env, p.sequence);
  return ThreadJob::Start(env, "genai.generate", cancel, on_text, [s, p, guard](ThreadJob& job) mutable -> ThreadJob::ValueMaker {
    // Not busy any more once the promise can settle, even though this lambda lives on.
    std::shared_ptr<BusyGuard> busy = std::move(guard);
    auto pieces = std::make_shared<PieceBuffer>();
    auto drain = [pieces](Napi::Env env, Napi::Function cb) {
      std::string text = pieces->Take();
      if (!text.empty()) cb.Call({Napi::String::New(env, text)});
    };
    GenerateResult r;
    try {
      r = RunGeneration(*s, p.sequence, p, *job.cancel(), [&](std::string piece) {
        if (!pieces->Add(piece)) return false;
        job.Post(drain);
        return true;
      });
    } catch (...) {
      job.Post(drain);
      throw;
    }
    job.Post(drain);  // whatever is still buffered reaches JS before the result
    return [r](Napi::Env env) -> Napi::Value { return ResultToJs(env, r); };
  });
}

}  // namespace genai
