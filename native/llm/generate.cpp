#include "llm/generate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <mutex>

#include "llm/chat_format.h"
#include "util/args.h"
#include "util/errors.h"
#include "util/jobs.h"
#include "util/log.h"

namespace genai {

namespace {

using Clock = std::chrono::steady_clock;
double MsSince(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

// Length of the longest prefix of `s` that ends on a UTF-8 character boundary.
size_t CompleteUtf8Prefix(const std::string& s, size_t len) {
  size_t i = len;
  // Walk back over at most 3 continuation bytes to the lead byte of the last character.
  size_t back = 0;
  while (i > 0 && back < 4 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) {
    i--;
    back++;
  }
  if (i == 0) return back == 0 ? len : (back >= 4 ? len : 0);
  unsigned char lead = static_cast<unsigned char>(s[i - 1]);
  size_t need = lead < 0x80 ? 1 : (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : (lead >> 3) == 0x1E ? 4 : 1;
  return (back + 1 >= need) ? len : i - 1;
}

// A llama_batch freed on every way out, thrown or not.
struct Batch {
  llama_batch b;
  explicit Batch(size_t n) : b(llama_batch_init(static_cast<int32_t>(n), 0, 1)) {}
  ~Batch() { llama_batch_free(b); }
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
};

// Decodes tokens [from, to) of `prompt` in n_batch chunks; logits for the last only.
// Returns 0, or llama_decode's error (2 = aborted).
int32_t DecodePrompt(ContextState& s, const std::vector<llama_token>& prompt, size_t from, CancelFlag& cancel) {
  const size_t n_batch = llama_n_batch(s.ctx);
  Batch holder(n_batch);
  llama_batch& batch = holder.b;
  int32_t rc = 0;
  for (size_t i = from; i < prompt.size() && rc == 0; i += n_batch) {
    if (cancel.IsCancelled()) {
      rc = 2;
      break;
    }
    size_t n = std::min(n_batch, prompt.size() - i);
    for (size_t j = 0; j < n; j++) {
      batch.token[j] = prompt[i + j];
      batch.pos[j] = static_cast<llama_pos>(i + j);
      batch.n_seq_id[j] = 1;
      batch.seq_id[j][0] = 0;
      batch.logits[j] = (i + j == prompt.size() - 1);
    }
    batch.n_tokens = static_cast<int32_t>(n);
    rc = llama_decode(s.ctx, batch);
    if (rc == 0) s.kv_tokens.insert(s.kv_tokens.end(), prompt.begin() + static_cast<long>(i), prompt.begin() + static_cast<long>(i + n));
  }
  return rc;
}

// Drops KV entries past what kv_tokens says (after an aborted or failed decode).
void TrimKv(ContextState& s) {
  llama_memory_t mem = llama_get_memory(s.ctx);
  if (!llama_memory_seq_rm(mem, 0, static_cast<llama_pos>(s.kv_tokens.size()), -1)) {
    llama_memory_clear(mem, true);
    s.kv_tokens.clear();
  }
}

}  // namespace

std::string StopScanner::Push(const std::string& bytes, bool& stopped) {
  pending_ += bytes;
  stopped = false;
  size_t best = std::string::npos;
  for (const auto& stop : stops_) {
    size_t at = pending_.find(stop);
    if (at != std::string::npos && at < best) best = at;
  }
  if (best != std::string::npos) {
    stopped = true;
    std::string out = pending_.substr(0, best);
    pending_.clear();
    return out;
  }
  // Hold back the longest suffix that is a prefix of some stop sequence.
  size_t hold = 0;
  for (const auto& stop : stops_) {
    for (size_t k = std::min(stop.size() - 1, pending_.size()); k > hold; k--) {
      if (pending_.compare(pending_.size() - k, k, stop, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  size_t emit = CompleteUtf8Prefix(pending_, pending_.size() - hold);
  std::string out = pending_.substr(0, emit);
  pending_.erase(0, emit);
  return out;
}

std::string StopScanner::Flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

GenerateResult RunGeneration(ContextState& s, const GenerateParams& p, CancelFlag& cancel, const std::function<bool(std::string)>& emit) {
  GenerateResult r;
  const uint32_t n_ctx = llama_n_ctx(s.ctx);
  const std::vector<llama_token>& prompt_in = p.prompt;
  r.prompt_tokens = static_cast<int32_t>(prompt_in.size());
  if (prompt_in.empty()) throw CodedError(code::INVALID_ARGUMENT, "the prompt is empty (no tokens)");
  if (prompt_in.size() >= n_ctx && p.overflow == Overflow::kError)
    throw CodedError(code::INVALID_ARGUMENT, "the prompt is " + std::to_string(prompt_in.size()) + " tokens; the context holds " + std::to_string(n_ctx) +
                                                 " (contextOverflow \"truncateMiddle\" or \"shift\" would cut it)");
  std::vector<llama_token> cut;  // the prompt cut to fit (contextOverflow), only when it does not
  if (prompt_in.size() >= n_ctx) cut = TruncateMiddle(prompt_in, n_ctx, static_cast<size_t>(p.keep_tokens));
  const std::vector<llama_token>& prompt = cut.empty() ? prompt_in : cut;
  r.truncated_tokens = static_cast<int32_t>(prompt_in.size() - prompt.size());

  // Reuse the KV cache for the common prefix; the last prompt token is always
  // decoded again so its logits are fresh.
  size_t keep = 0;
  while (keep < s.kv_tokens.size() && keep < prompt.size() && s.kv_tokens[keep] == prompt[keep]) keep++;
  if (keep == prompt.size()) keep--;
  s.kv_tokens.resize(keep);
  TrimKv(s);
  keep = s.kv_tokens.size();
  r.reused_tokens = static_cast<int32_t>(keep);

  Sampler sampler(p.sampling, s.model->vocab);  // INVALID_ARGUMENT for a grammar or schema llama.cpp refuses
  size_t penalty_from = prompt.size() > static_cast<size_t>(std::max(0, p.sampling.penalty_last_n))
                            ? prompt.size() - static_cast<size_t>(std::max(0, p.sampling.penalty_last_n))
                            : 0;
  sampler.AcceptPrompt(prompt.data() + penalty_from, prompt.size() - penalty_from);

  s.active_cancel = &cancel;
  t_quiet_when_cancelled = &cancel;
  struct ClearActive {
    ContextState& s;
    ~ClearActive() {
      s.active_cancel = nullptr;
      t_quiet_when_cancelled = nullptr;
    }
  } clear_active{s};

  auto t0 = Clock::now();
  int32_t rc = DecodePrompt(s, prompt, keep, cancel);
  // a GPU backend computes asynchronously: the prompt is done when the device is
  if (rc == 0) llama_synchronize(s.ctx);
  r.prompt_ms = MsSince(t0);
  if (rc == 2 || cancel.IsCancelled()) {
    TrimKv(s);
    r.stop_reason = "aborted";
    return r;
  }
  if (rc != 0) {
    TrimKv(s);
    if (rc == 1) throw CodedError(code::OUT_OF_MEMORY, "no KV cache slot for the prompt (context full)");
    throw CodedError(code::BACKEND_ERROR, "llama_decode failed with " + std::to_string(rc));
  }

  StopScanner scanner(p.stops);
  const llama_vocab* vocab = s.model->vocab;
  GenerateResult::Breakdown& bd = r.breakdown;
  auto t1 = Clock::now();
  // Each phase ends where the next begins: one clock read per phase.
  Clock::time_point mark = t1;
  auto lap = [&mark](double& into) {
    Clock::time_point now = Clock::now();
    into += std::chrono::duration<double, std::milli>(now - mark).count();
    mark = now;
  };
  Batch holder(1);
  llama_batch& one = holder.b;
  std::string reason;
  while (reason.empty()) {
    if (cancel.IsCancelled()) {
      reason = "aborted";
      break;
    }
    const llama_token tok = sampler.Sample(s.ctx);
    const bool eog = !p.ignore_eos && llama_vocab_is_eog(vocab, tok);
    lap(bd.sample_ms);
    if (eog) {
      reason = "eos";
      break;
    }
    r.generated_tokens++;
    r.tokens.push_back(tok);
    if (p.logprobs >= 0) r.logprobs.push_back(LogprobOf(llama_get_logits_ith(s.ctx, -1), vocab, tok, p.logprobs));
    bool stopped = false;
    std::string piece = TokenPiece(vocab, tok, !p.preserved.empty() && p.preserved.count(tok) > 0);
    lap(bd.detokenize_ms);
    std::string text = scanner.Push(piece, stopped);
    lap(bd.stop_ms);
    if (!text.empty()) {
      r.text += text;
      if (emit(std::move(text))) bd.deliveries++;
      lap(bd.deliver_ms);
    }
    if (stopped) {
      reason = "stop";
      break;
    }
    if (r.generated_tokens >= p.max_tokens) {
      reason = "maxTokens";
      break;
    }
    if (s.kv_tokens.size() + 1 >= n_ctx) {
      const size_t dropped = p.overflow == Overflow::kShift ? ShiftKv(s, static_cast<size_t>(p.keep_tokens)) : 0;
      if (dropped == 0) {
        reason = "contextFull";
        break;
      }
      r.discarded_tokens += static_cast<int32_t>(dropped);
    }
    one.token[0] = tok;
    one.pos[0] = static_cast<llama_pos>(s.kv_tokens.size());
    one.n_seq_id[0] = 1;
    one.seq_id[0][0] = 0;
    one.logits[0] = true;
    one.n_tokens = 1;
    int32_t drc = llama_decode(s.ctx, one);
    // a GPU backend returns before the work is done; the sampler would wait for it anyway
    if (drc == 0) llama_synchronize(s.ctx);
    lap(bd.decode_ms);
    if (drc == 2) {
      TrimKv(s);
      reason = "aborted";
      break;
    }
    if (drc != 0) {
      TrimKv(s);
      throw CodedError(code::BACKEND_ERROR, "llama_decode failed with " + std::to_string(drc));
    }
    s.kv_tokens.push_back(tok);
  }
  if (reason != "stop") {
    std::string rest = scanner.Flush();
    if (!rest.empty()) {
      r.text += rest;
      if (emit(std::move(rest))) bd.deliveries++;
    }
  }
  r.generation_ms = MsSince(t1);
  r.stop_reason = reason;
  return r;
}

namespace {

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
  CheckKeys(o,
            {"tokens", "maxTokens", "temperature", "topK",    "topP",       "minP",      "repeatPenalty", "presencePenalty", "frequencyPenalty", "penaltyLastN",
             "seed",   "stop",      "ignoreEos",   "grammar", "jsonSchema", "logitBias", "logprobs",      "contextOverflow", "keepTokens",       "chat"},
            "generate");
  p.prompt = TokensFromJs(env, o.Get("tokens"), llama_vocab_n_tokens(s.model->vocab), "tokens");
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

// generate({ tokens, maxTokens, temperature, ... }, onText(piece), cancelToken) -> Promise<result>
Napi::Value ContextHandle::Generate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto s = State(env);
  GenerateParams p = ParseGenerateParams(ObjectArg(info, 0, "params"), *s);
  Napi::Function on_text = FunctionArg(info, 1, "onText");
  auto cancel = CancelToken::From(info.Length() > 2 ? info[2] : env.Undefined());
  auto guard = std::make_shared<BusyGuard>(s, env);
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
      r = RunGeneration(*s, p, *job.cancel(), [&](std::string piece) {
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
