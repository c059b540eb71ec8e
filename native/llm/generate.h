// Text generation's parameters and result, and ContextHandle::Generate (the
// JS side). The token loop is llm/generation.h, run by llm/batch.h.
#pragma once
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "llama.h"
#include "llm/context.h"
#include "llm/media.h"
#include "llm/overflow.h"
#include "llm/sampler.h"

namespace genai {

struct GenerateParams {
  int32_t sequence = 0;              // the context's sequence (conversation) it continues
  std::vector<llama_token> prompt;   // empty when `media` holds the prompt
  std::optional<MediaPrompt> media;  // a prompt with images: text with media markers, tokenized by libmtmd on the worker
  int32_t max_tokens = 256;
  std::vector<std::string> stops;
  bool ignore_eos = false;
  int32_t logprobs = -1;                 // -1: off; 0 … 20: the chosen token's log-probability and this many alternatives
  Overflow overflow = Overflow::kError;  // llm/overflow.h
  int32_t keep_tokens = 0;               // never dropped by truncation or shifts (at most half the context)
  SamplingParams sampling;
  std::set<llama_token> preserved;  // special tokens whose text is output (a chat format's tool-call and thinking markers)
};

struct GenerateResult {
  std::string text;
  int32_t generated_tokens = 0;
  std::vector<llama_token> tokens;     // the generated token ids (an end-of-generation token that stopped it excluded)
  std::vector<TokenLogprob> logprobs;  // one per generated token when asked for
  std::string stop_reason;             // eos | maxTokens | stop | aborted | contextFull
  int32_t prompt_tokens = 0;           // media tokens included
  int32_t media_tokens = 0;            // the prompt's image tokens (libmtmd's count)
  double media_encode_ms = 0;          // the projector encoding the prompt's images
  double media_decode_ms = 0;          // their embeddings decoded into the KV cache
  int32_t reused_tokens = 0;           // prompt tokens found in the KV cache, not decoded again
  int32_t truncated_tokens = 0;        // prompt tokens cut from the middle (contextOverflow)
  int32_t discarded_tokens = 0;        // KV tokens dropped by context shifts while generating
  double prompt_ms = 0;
  double generation_ms = 0;
  // Where generation_ms went, summed over the generated tokens (ms): the
  // per-token profile of `npm run bench:llm -- --profile`.
  struct Breakdown {
    double decode_ms = 0;      // llama_decode of each generated token, waited for (llama_synchronize)
    double sample_ms = 0;      // the sampler chain, and the end-of-generation check
    double detokenize_ms = 0;  // token → bytes (llama_token_to_piece)
    double stop_ms = 0;        // UTF-8 assembly and stop-sequence matching (StopScanner)
    double deliver_ms = 0;     // handing text to the JS thread (buffer and thread-safe-function post)
    int32_t deliveries = 0;    // JS-thread wake-ups posted for text
  } breakdown;
};

}  // namespace genai
