// What a generation does when its tokens do not fit the context (the
// contextOverflow option; lib/llm/types.ts documents it for users):
//   error          a prompt longer than the context is INVALID_ARGUMENT; a
//                  generation that fills it stops ("contextFull");
//   truncateMiddle a prompt longer than the context keeps its first
//                  keep_tokens and its newest tokens, dropping whole blocks
//                  from the middle (llama-server's prompt truncation);
//                  generation stops when the context is full;
//   shift          as truncateMiddle for the prompt, and when generation
//                  fills the context the older half after keep_tokens is
//                  dropped from the KV cache and the rest moved down
//                  (llama.cpp's context shift: llama_memory_seq_rm +
//                  llama_memory_seq_add); a model whose memory cannot shift
//                  (llama_memory_can_shift false) stops with "contextFull".
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "llama.h"
#include "llm/context.h"

namespace genai {

enum class Overflow { kError, kTruncateMiddle, kShift };

// "error" | "truncateMiddle" | "shift"; false for anything else.
bool ParseOverflow(const std::string& name, Overflow& out);

// The prompt cut to fit a context of n_ctx tokens with room to generate:
// the first `keep` tokens (at most n_ctx / 2), then the newest tokens, whole
// blocks of (n_ctx − keep) / 2 dropped from the middle. For a prompt of at
// least n_ctx tokens.
std::vector<llama_token> TruncateMiddle(const std::vector<llama_token>& prompt, size_t n_ctx, size_t keep);

// Frees room in a full sequence of the KV cache: drops the older half of its
// tokens after the first `keep` (at most half of them) and moves the rest
// down. Returns how many were dropped (0: nothing could be, or the memory
// cannot shift).
size_t ShiftKv(ContextState& s, int32_t seq, size_t keep);

}  // namespace genai
