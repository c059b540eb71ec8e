// One generation on one sequence of a context, as steps the batch loop
// (llm/batch.h) drives: Begin (prompt cut to fit, KV prefix reuse, sampler),
// then per decode step Fill (its next tokens into the shared batch) and
// Decoded (tokens committed; a token sampled, streamed, checked against stops,
// maxTokens and the context's end). Alone on its context, the steps are
// exactly the single-sequence loop: the prompt in n_batch chunks, then one
// token per decode.
#pragma once
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llama.h"
#include "llm/context.h"
#include "llm/generate.h"
#include "llm/media.h"
#include "llm/sampler.h"

namespace genai {

// Splits streamed bytes into text that can be shown: holds back an incomplete
// UTF-8 sequence and any suffix that could start a stop sequence.
class StopScanner {
 public:
  explicit StopScanner(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Appends bytes; returns the text now safe to emit. Sets `stopped` when a
  // stop sequence completed (the text before it is returned, the rest dropped).
  std::string Push(const std::string& bytes, bool& stopped);
  // Remaining held-back text at the end of generation.
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  std::string pending_;
};

// Drops KV entries of sequence `seq` past what its token list says (after an aborted or failed decode).
void TrimKv(ContextState& s, int32_t seq);

class Generation {
 public:
  using Emit = std::function<bool(std::string)>;
  Generation(ContextState& s, int32_t seq, const GenerateParams& p, CancelFlag& cancel, Emit emit);

  // Prompt checks and cut, KV prefix reuse on its sequence, the sampler.
  // Errors end the generation (stored; Result() rethrows them).
  void Begin();
  // Adds its next tokens (a prompt chunk, or the last sampled token) to
  // `batch` at n, at most `room`; true when it added any. Ends an aborted one.
  bool Fill(llama_batch& batch, int32_t& n, int32_t room);
  // After llama_decode of the batch (rc) and the wait for it (ms).
  void Decoded(int32_t rc, double decode_ms);
  // Ends it with this error (a failure outside its own steps).
  void Fail(std::exception_ptr e);
  // Its next prompt item is a media chunk (Fill added nothing): EvalMedia
  // encodes and decodes it, alone, in this step. Never throws.
  bool NeedsMedia() const { return media_step_; }
  int32_t seq() const { return seq_; }
  void EvalMedia();

  bool begun() const { return begun_; }
  bool done() const { return done_; }
  CancelFlag& cancel() const { return cancel_; }
  // The result, or the error that ended it.
  GenerateResult Result();

  bool retired = false;  // taken out of the batch loop (llm/batch.cpp; under the context's batch_mu)

 private:
  using Clock = std::chrono::steady_clock;
  void SampleAndEmit();
  void Finish(const std::string& reason);
  void Lap(double& into);

  ContextState& s_;
  const int32_t seq_;
  const GenerateParams& p_;
  CancelFlag& cancel_;
  Emit emit_;
  std::vector<llama_token>& kv_;  // s_.kv_tokens[seq_]
  std::vector<llama_token> cut_;  // the prompt cut to fit (contextOverflow), only when it does not
  MediaTokens media_;             // a prompt with media, tokenized (its tokens are the prompt)
  const std::vector<llama_token>* prompt_ = nullptr;
  size_t next_ = 0;                     // the next prompt token to decode
  llama_token pending_ = -1;            // the sampled token to decode next
  int32_t added_ = 0, logits_at_ = -1;  // this step's tokens in the batch, and the batch index of its logits
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<StopScanner> scanner_;
  GenerateResult r_;
  std::exception_ptr error_;
  bool begun_ = false, done_ = false, prompt_done_ = false, media_step_ = false;
  Clock::time_point t0_, t1_, mark_;
};

}  // namespace genai
