#include "llm/generation.h"

#include <algorithm>

#include "llm/model.h"  // TokenPiece
#include "llm/overflow.h"
#include "util/errors.h"

namespace genai {

namespace {

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

// Drops KV entries of sequence `seq` past what its token list says (after an aborted or failed decode).
void TrimKv(ContextState& s, int32_t seq) {
  std::vector<llama_token>& kv = s.kv_tokens[static_cast<size_t>(seq)];
  llama_memory_t mem = llama_get_memory(s.ctx);
  if (!llama_memory_seq_rm(mem, seq, static_cast<llama_pos>(kv.size()), -1)) {
    llama_memory_seq_rm(mem, seq, -1, -1);
    kv.clear();
  }
}

Generation::Generation(ContextState& s, int32_t seq, const GenerateParams& p, CancelFlag& cancel, Emit emit)
    : s_(s), seq_(seq), p_(p), cancel_(cancel), emit_(std::move(emit)), kv_(s.kv_tokens[static_cast<size_t>(seq)]) {}

void Generation::Begin() {
  begun_ = true;
  try {
    const uint32_t n_ctx = llama_n_ctx_seq(s_.ctx);
    if (p_.media) {
      media_ = TokenizeMedia(*s_.model->media, *p_.media);  // decodes the images here, on this worker thread
      r_.media_tokens = media_.media_tokens;
    }
    const std::vector<llama_token>& prompt_in = p_.media ? media_.tokens : p_.prompt;
    r_.prompt_tokens = static_cast<int32_t>(prompt_in.size());
    if (prompt_in.empty()) throw CodedError(code::INVALID_ARGUMENT, "the prompt is empty (no tokens)");
    if (p_.media && prompt_in.size() >= n_ctx)
      throw CodedError(code::INVALID_ARGUMENT, "the prompt with its images is " + std::to_string(prompt_in.size()) + " tokens; the context holds " +
                                                   std::to_string(n_ctx) + " (an image is never cut)");
    if (p_.media && IsMediaToken(prompt_in.back())) throw CodedError(code::INVALID_ARGUMENT, "the prompt ends with an image: text must follow it");
    if (prompt_in.size() >= n_ctx && p_.overflow == Overflow::kError)
      throw CodedError(code::INVALID_ARGUMENT, "the prompt is " + std::to_string(prompt_in.size()) + " tokens; the context holds " + std::to_string(n_ctx) +
                                                   " (contextOverflow \"truncateMiddle\" or \"shift\" would cut it)");
    if (prompt_in.size() >= n_ctx) cut_ = TruncateMiddle(prompt_in, n_ctx, static_cast<size_t>(p_.keep_tokens));
    prompt_ = cut_.empty() ? &prompt_in : &cut_;
    const std::vector<llama_token>& prompt = *prompt_;
    r_.truncated_tokens = static_cast<int32_t>(prompt_in.size() - prompt.size());

    // Reuse the KV cache for the common prefix; the last prompt token is always
    // decoded again so its logits are fresh.
    size_t keep = 0;
    while (keep < kv_.size() && keep < prompt.size() && kv_[keep] == prompt[keep]) keep++;
    if (keep == prompt.size()) keep--;
    // a media chunk is in the KV cache whole or not at all
    if (const MediaTokens::Span* sp = p_.media ? media_.At(keep) : nullptr; sp && sp->start < keep) keep = sp->start;
    kv_.resize(keep);
    TrimKv(s_, seq_);
    next_ = kv_.size();
    r_.reused_tokens = static_cast<int32_t>(next_);

    sampler_ = std::make_unique<Sampler>(p_.sampling, s_.model->vocab);  // INVALID_ARGUMENT for a grammar or schema llama.cpp refuses
    const size_t last_n = static_cast<size_t>(std::max(0, p_.sampling.penalty_last_n));
    const size_t penalty_from = prompt.size() > last_n ? prompt.size() - last_n : 0;
    if (p_.media) {  // penalties count text tokens only
      std::vector<llama_token> text;
      for (size_t i = penalty_from; i < prompt.size(); i++)
        if (!IsMediaToken(prompt[i])) text.push_back(prompt[i]);
      sampler_->AcceptPrompt(text.data(), text.size());
    } else {
      sampler_->AcceptPrompt(prompt.data() + penalty_from, prompt.size() - penalty_from);
    }
    scanner_ = std::make_unique<StopScanner>(p_.stops);
  } catch (...) {
    Fail(std::current_exception());
    return;
  }
  t0_ = Clock::now();
}

bool Generation::Fill(llama_batch& batch, int32_t& n, int32_t room) {
  added_ = 0;
  logits_at_ = -1;
  if (done_) return false;
  if (cancel_.IsCancelled()) {
    if (!prompt_done_) r_.prompt_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0_).count();
    Finish("aborted");
    return false;
  }
  const std::vector<llama_token>& prompt = *prompt_;
  size_t take = prompt_done_ ? 1 : std::min(static_cast<size_t>(std::max(0, room)), prompt.size() - next_);
  if (!prompt_done_ && p_.media) {
    if (IsMediaToken(prompt[next_])) {  // a media chunk: decoded alone (EvalMedia)
      media_step_ = true;
      return false;
    }
    for (size_t j = 0; j < take; j++)  // text up to the next media chunk
      if (IsMediaToken(prompt[next_ + j])) {
        take = j;
        break;
      }
  }
  for (size_t j = 0; j < take && room > 0; j++) {
    const int32_t i = n++;
    batch.token[i] = prompt_done_ ? pending_ : prompt[next_ + j];
    batch.pos[i] = static_cast<llama_pos>(kv_.size() + j);
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = seq_;
    const bool last = prompt_done_ || next_ + j == prompt.size() - 1;
    batch.logits[i] = last;
    if (last) logits_at_ = i;
    added_++;
  }
  return added_ > 0;
}

void Generation::Decoded(int32_t rc, double decode_ms) {
  if (done_ || added_ == 0) return;
  try {
    if (rc == 2) {  // llama.cpp's abort callback: this generation's signal, while it decoded alone
      TrimKv(s_, seq_);
      if (!prompt_done_) r_.prompt_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0_).count();
      Finish("aborted");
      return;
    }
    if (rc != 0) {
      TrimKv(s_, seq_);
      if (rc == 1 && !prompt_done_) throw CodedError(code::OUT_OF_MEMORY, "no KV cache slot for the prompt (context full)");
      throw CodedError(code::BACKEND_ERROR, "llama_decode failed with " + std::to_string(rc));
    }
    if (prompt_done_) {
      kv_.push_back(pending_);
      r_.breakdown.decode_ms += decode_ms;
      mark_ = Clock::now();
    } else {
      const std::vector<llama_token>& prompt = *prompt_;
      kv_.insert(kv_.end(), prompt.begin() + static_cast<long>(next_), prompt.begin() + static_cast<long>(next_ + static_cast<size_t>(added_)));
      next_ += static_cast<size_t>(added_);
      if (logits_at_ < 0) return;  // more prompt to come
      prompt_done_ = true;
      t1_ = mark_ = Clock::now();
      r_.prompt_ms = std::chrono::duration<double, std::milli>(t1_ - t0_).count();
    }
    if (cancel_.IsCancelled()) {
      Finish("aborted");
      return;
    }
    SampleAndEmit();
  } catch (...) {
    Fail(std::current_exception());
  }
}

void Generation::EvalMedia() {
  media_step_ = false;
  if (done_) return;
  try {
    const MediaTokens::Span* sp = media_.At(next_);
    const bool ok = EvalMediaChunk(*s_.model->media, s_.ctx, sp->chunk, static_cast<llama_pos>(kv_.size()), seq_, static_cast<int32_t>(llama_n_batch(s_.ctx)),
                                   cancel_, r_.media_encode_ms, r_.media_decode_ms);
    if (!ok) {
      TrimKv(s_, seq_);
      r_.prompt_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0_).count();
      Finish("aborted");
      return;
    }
    const std::vector<llama_token>& prompt = *prompt_;
    kv_.insert(kv_.end(), prompt.begin() + static_cast<long>(next_), prompt.begin() + static_cast<long>(next_ + sp->n));
    next_ += sp->n;
  } catch (...) {
    TrimKv(s_, seq_);
    Fail(std::current_exception());
  }
}

void Generation::Lap(double& into) {
  Clock::time_point now = Clock::now();
  into += std::chrono::duration<double, std::milli>(now - mark_).count();
  mark_ = now;
}

// Samples the next token from this step's logits and hands its text on; ends
// the generation at an end-of-generation token, a stop string, maxTokens or
// a full sequence (which "shift" makes room in instead).
void Generation::SampleAndEmit() {
  GenerateResult::Breakdown& bd = r_.breakdown;
  const llama_vocab* vocab = s_.model->vocab;
  const llama_token tok = sampler_->Sample(s_.ctx, logits_at_);
  const bool eog = !p_.ignore_eos && llama_vocab_is_eog(vocab, tok);
  Lap(bd.sample_ms);
  if (eog) return Finish("eos");
  r_.generated_tokens++;
  r_.tokens.push_back(tok);
  if (p_.logprobs >= 0) r_.logprobs.push_back(LogprobOf(llama_get_logits_ith(s_.ctx, logits_at_), vocab, tok, p_.logprobs));
  bool stopped = false;
  std::string piece = TokenPiece(vocab, tok, !p_.preserved.empty() && p_.preserved.count(tok) > 0);
  Lap(bd.detokenize_ms);
  std::string text = scanner_->Push(piece, stopped);
  Lap(bd.stop_ms);
  if (!text.empty()) {
    r_.text += text;
    if (emit_(std::move(text))) bd.deliveries++;
    Lap(bd.deliver_ms);
  }
  if (stopped) return Finish("stop");
  if (r_.generated_tokens >= p_.max_tokens) return Finish("maxTokens");
  if (kv_.size() + 1 >= llama_n_ctx_seq(s_.ctx)) {
    const size_t dropped = p_.overflow == Overflow::kShift ? ShiftKv(s_, seq_, static_cast<size_t>(p_.keep_tokens)) : 0;
    if (dropped == 0) return Finish("contextFull");
    r_.discarded_tokens += static_cast<int32_t>(dropped);
  }
  pending_ = tok;
}

void Generation::Finish(const std::string& reason) {
  if (reason != "stop" && scanner_) {
    std::string rest = scanner_->Flush();
    if (!rest.empty()) {
      r_.text += rest;
      if (emit_(std::move(rest))) r_.breakdown.deliveries++;
    }
  }
  if (prompt_done_) r_.generation_ms = std::chrono::duration<double, std::milli>(Clock::now() - t1_).count();
  r_.stop_reason = reason;
  done_ = true;
}

void Generation::Fail(std::exception_ptr e) {
  error_ = std::move(e);
  done_ = true;
}

GenerateResult Generation::Result() {
  if (error_) std::rethrow_exception(error_);
  return std::move(r_);
}

}  // namespace genai
