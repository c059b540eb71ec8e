// A generation's sampler: llama.cpp common's sampler in its order — the
// reasoning budget, the grammar (a GBNF grammar, a JSON schema through
// json_schema_to_grammar, or a chat format's lazy tool-call grammar), then the
// chain: logit bias, repetition penalties, then greedy or top-k → top-p →
// min-p → temperature → seeded draw. Built on the generation's native thread.
#pragma once
#include <string>
#include <vector>

#include "llama.h"

namespace genai {

struct SamplingParams {
  float temperature = 0.8f;  // 0 = greedy
  int32_t top_k = 40;        // 0 = off
  float top_p = 0.95f;       // 1 = off
  float min_p = 0.05f;       // 0 = off
  float repeat_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  int32_t penalty_last_n = 64;
  uint32_t seed = 0;                         // 0 … 2^32−2; the TS layer picks one per generation
  std::string grammar;                       // GBNF, root rule "root"; empty = none
  std::string json_schema;                   // a JSON schema (text) turned into GBNF; empty = none
  std::vector<llama_logit_bias> logit_bias;  // added to the logits before anything else
  // A chat format's tool-call grammar and thinking tags (llm/chat_format.h), as
  // llama.cpp common_sampler_init builds them: `grammar` is then the format's.
  bool grammar_lazy = false;                  // the grammar starts constraining at a trigger
  std::vector<std::string> trigger_patterns;  // regexes over the generated text
  std::vector<llama_token> trigger_tokens;
  bool prefill_grammar = false;                        // feed `prefill` to the grammar (a tool-call grammar, not a user's)
  std::vector<llama_token> prefill;                    // the template's generation prompt, as tokens
  int32_t reasoning_budget = -1;                       // tokens allowed inside the thinking block; -1 = unlimited
  std::vector<llama_token> thinking_start;             // the format's thinking start tag
  std::vector<std::vector<llama_token>> thinking_end;  // its end tags; the first is forced when the budget runs out
};

// Nesting limits checked before llama.cpp's recursive-descent parsers see the
// text (deeper input would overflow the native thread's stack, a crash).
constexpr int kMaxGrammarNesting = 128;  // ( … ) groups in GBNF
constexpr int kMaxSchemaNesting = 64;    // { … } / [ … ] levels in a JSON schema
constexpr int kMaxSchemaRefs = 256;      // $ref keys (each is resolved recursively by the converter)

// Refuses (INVALID_ARGUMENT, naming `what`) a JSON schema text nested deeper
// than kMaxSchemaNesting or with more than kMaxSchemaRefs $ref keys: the
// limits of jsonSchema and of tool parameters, checked before any parser.
void CheckSchemaShape(const std::string& schema, const std::string& what);

class Sampler {
 public:
  // Throws CodedError INVALID_ARGUMENT naming what llama.cpp refused (grammar
  // syntax, undefined rules, left recursion, unsupported schema).
  Sampler(const SamplingParams& sp, const llama_vocab* vocab);
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // Feeds prompt tokens to the repetition penalties (only to them: the
  // grammar constrains the generated text, not the prompt).
  void AcceptPrompt(const llama_token* tokens, size_t n);
  // Picks the next token from the logits of the batch's token `idx` and
  // records it. Throws CodedError INVALID_ARGUMENT when the grammar admits no token.
  llama_token Sample(llama_context* ctx, int32_t idx);

 private:
  bool GrammarApplies() const;

  llama_sampler* chain_ = nullptr;
  llama_sampler* penalties_ = nullptr;  // owned by chain_
  llama_sampler* grammar_ = nullptr;    // applied before the chain (llama.cpp common_sampler's order)
  llama_sampler* budget_ = nullptr;     // llama.cpp common's reasoning budget sampler, applied first
  bool lazy_ = false;
  bool plain_greedy_ = false;  // the chain is llama.cpp's greedy sampler alone
  int32_t n_vocab_ = 0;
  std::vector<llama_token_data> cur_;
};

// A generated token's log-probability under the model's own distribution
// (log-softmax of the raw logits, before bias, grammar or sampling), and the
// `top_n` most likely tokens with theirs, most likely first.
// Texts are the tokens' pieces (special tokens as text); a piece that is part
// of a multi-byte character is not valid UTF-8 on its own.
struct TokenLogprob {
  struct Alt {
    llama_token token;
    float logprob;
    std::string text;
  };
  llama_token token = 0;
  float logprob = 0;
  std::string text;
  std::vector<Alt> top;
};
TokenLogprob LogprobOf(const float* logits, const llama_vocab* vocab, llama_token token, int32_t top_n);

// llama.cpp's greedy sampler (llama_sampler_greedy_apply) over raw logits: the
// first of equal maxima, never a NaN unless logits[0] is one.
llama_token ArgmaxFirst(const float* logits, int32_t n);

}  // namespace genai
