#include "llm/sampler.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "json-schema-to-grammar.h"  // llama.cpp common
#include "reasoning-budget.h"        // llama.cpp common
#include "llm/model.h"               // TokenPiece
#include "util/errors.h"
#include "util/log.h"

namespace genai {

namespace {

[[noreturn]] void Refuse(const std::string& what) { throw CodedError(code::INVALID_ARGUMENT, what); }

// Deepest ( … ) nesting of a GBNF text, outside "literals", [classes] and # comments.
int GrammarNesting(const std::string& g) {
  int depth = 0, deepest = 0;
  for (size_t i = 0; i < g.size(); i++) {
    char c = g[i];
    if (c == '"' || c == '[') {
      const char close = c == '"' ? '"' : ']';
      for (i++; i < g.size() && g[i] != close; i++)
        if (g[i] == '\\') i++;
    } else if (c == '#') {
      while (i < g.size() && g[i] != '\n') i++;
    } else if (c == '(') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ')') {
      depth--;
    }
  }
  return deepest;
}

// Deepest { … } / [ … ] nesting of a JSON text outside strings, and how many "$ref" keys it has.
void JsonShape(const std::string& j, int& deepest, int& refs) {
  int depth = 0;
  deepest = refs = 0;
  for (size_t i = 0; i < j.size(); i++) {
    char c = j[i];
    if (c == '"') {
      size_t start = i + 1;
      for (i++; i < j.size() && j[i] != '"'; i++)
        if (j[i] == '\\') i++;
      if (j.compare(start, i - start, "$ref") == 0) refs++;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if (c == '}' || c == ']') {
      depth--;
    }
  }
}

std::string SchemaToGrammar(const std::string& schema) {
  CheckSchemaShape(schema, "jsonSchema");
  try {
    return json_schema_to_grammar(common_json::parse(schema));
  } catch (const std::exception& e) {
    Refuse(std::string("jsonSchema is not supported by llama.cpp's converter: ") + e.what());
  }
}

}  // namespace

void CheckSchemaShape(const std::string& schema, const std::string& what) {
  int deepest = 0, refs = 0;
  JsonShape(schema, deepest, refs);
  if (deepest > kMaxSchemaNesting)
    Refuse(what + " nests " + std::to_string(deepest) + " levels deep; at most " + std::to_string(kMaxSchemaNesting) + " are accepted");
  if (refs > kMaxSchemaRefs) Refuse(what + " has " + std::to_string(refs) + " $ref keys; at most " + std::to_string(kMaxSchemaRefs) + " are accepted");
}

llama_token ArgmaxFirst(const float* logits, int32_t n) {
  // The maximum in 16 independent lanes (vectorizable: `x > m ? x : m` is
  // maxps, and like the greedy loop it never picks a NaN), then its first index.
  constexpr int32_t kLanes = 16;
  float lane[kLanes];
  const float first = logits[0];
  for (float& m : lane) m = first;
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int32_t k = 0; k < kLanes; k++) lane[k] = logits[i + k] > lane[k] ? logits[i + k] : lane[k];
  float best = first;
  for (float m : lane) best = m > best ? m : best;
  for (; i < n; i++) best = logits[i] > best ? logits[i] : best;
  if (!(best > first)) return 0;  // logits[0] is the maximum (or NaN, which the greedy loop keeps too)
  for (i = 1; i < n; i++)
    if (logits[i] == best) return i;
  return 0;
}

TokenLogprob LogprobOf(const float* logits, const llama_vocab* vocab, llama_token token, int32_t top_n) {
  const int32_t n_vocab = llama_vocab_n_tokens(vocab);
  float max = -INFINITY;
  for (int32_t i = 0; i < n_vocab; i++) max = std::max(max, logits[i]);
  double sum = 0;
  for (int32_t i = 0; i < n_vocab; i++) sum += std::exp(static_cast<double>(logits[i] - max));
  const float lse = max + static_cast<float>(std::log(sum));
  TokenLogprob out;
  out.token = token;
  out.logprob = logits[token] - lse;
  out.text = TokenPiece(vocab, token, true);
  if (top_n <= 0) return out;
  // the top_n largest logits: a min-heap of size top_n over the vocabulary (ties: the lower id first)
  using Entry = std::pair<float, llama_token>;
  auto better = [](const Entry& a, const Entry& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  std::vector<Entry> heap;
  heap.reserve(static_cast<size_t>(top_n));
  for (int32_t i = 0; i < n_vocab; i++) {
    Entry e{logits[i], i};
    if (static_cast<int32_t>(heap.size()) < top_n) {
      heap.push_back(e);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (better(e, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = e;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  }
  std::sort_heap(heap.begin(), heap.end(), better);
  for (const Entry& e : heap) out.top.push_back({e.second, e.first - lse, TokenPiece(vocab, e.second, true)});
  return out;
}

Sampler::Sampler(const SamplingParams& sp, const llama_vocab* vocab) : n_vocab_(llama_vocab_n_tokens(vocab)) {
  if (!sp.grammar.empty() && !sp.json_schema.empty()) Refuse("grammar and jsonSchema cannot both be given");
  std::string grammar = sp.json_schema.empty() ? sp.grammar : SchemaToGrammar(sp.json_schema);
  if (!grammar.empty() && GrammarNesting(grammar) > kMaxGrammarNesting)
    Refuse("grammar nests groups more than " + std::to_string(kMaxGrammarNesting) + " deep");
  const bool penalties = sp.repeat_penalty != 1.0f || sp.presence_penalty != 0.0f || sp.frequency_penalty != 0.0f;
  lazy_ = sp.grammar_lazy && !grammar.empty();
  if (!grammar.empty()) {
    LogCapture capture;  // llama.cpp says what is wrong with the grammar in its log
    std::vector<const char*> patterns;
    for (const std::string& p : sp.trigger_patterns) patterns.push_back(p.c_str());
    grammar_ = lazy_ ? llama_sampler_init_grammar_lazy_patterns(vocab, grammar.c_str(), "root", patterns.data(), patterns.size(), sp.trigger_tokens.data(),
                                                                sp.trigger_tokens.size())
                     : llama_sampler_init_grammar(vocab, grammar.c_str(), "root");
    if (!grammar_) {
      std::string why = capture.Errors();
      Refuse("llama.cpp refused the grammar" + (why.empty() ? std::string() : ": " + why));
    }
  }
  // common_sampler_init: the reasoning budget when the format has thinking tags and a budget (or a lazy grammar) needs it
  if (!sp.thinking_start.empty() && !sp.thinking_end.empty() && (lazy_ || sp.reasoning_budget >= 0))
    budget_ = common_reasoning_budget_init(vocab, {sp.thinking_start}, sp.thinking_end, sp.thinking_end.front(),
                                           sp.reasoning_budget < 0 ? INT32_MAX : sp.reasoning_budget);
  try {
    // the template's generation prompt, already in the prompt: a tool-call grammar and the budget start after it
    for (llama_token t : sp.prefill) {
      if (grammar_ && !lazy_ && sp.prefill_grammar) llama_sampler_accept(grammar_, t);
      if (budget_) llama_sampler_accept(budget_, t);
    }
  } catch (const std::exception& e) {
    llama_sampler_free(grammar_), llama_sampler_free(budget_);
    Refuse(std::string("the chat format's grammar does not accept its own generation prompt: ") + e.what());
  }
  plain_greedy_ = sp.temperature <= 0.0f && !penalties && !grammar_ && !budget_ && sp.logit_bias.empty();
  chain_ = llama_sampler_chain_init(llama_sampler_chain_default_params());
  if (!sp.logit_bias.empty())
    llama_sampler_chain_add(chain_, llama_sampler_init_logit_bias(n_vocab_, static_cast<int32_t>(sp.logit_bias.size()), sp.logit_bias.data()));
  if (penalties) {
    penalties_ = llama_sampler_init_penalties(n_vocab_, sp.penalty_last_n, sp.repeat_penalty, sp.frequency_penalty, sp.presence_penalty);
    llama_sampler_chain_add(chain_, penalties_);
  }
  if (sp.temperature <= 0.0f) {
    llama_sampler_chain_add(chain_, llama_sampler_init_greedy());
    return;
  }
  // The order of llama.cpp common's default chain (common/sampling.cpp).
  if (sp.top_k > 0) llama_sampler_chain_add(chain_, llama_sampler_init_top_k(sp.top_k));
  if (sp.top_p < 1.0f) llama_sampler_chain_add(chain_, llama_sampler_init_top_p(sp.top_p, 1));
  if (sp.min_p > 0.0f) llama_sampler_chain_add(chain_, llama_sampler_init_min_p(sp.min_p, 1));
  llama_sampler_chain_add(chain_, llama_sampler_init_temp(sp.temperature));
  llama_sampler_chain_add(chain_, llama_sampler_init_dist(sp.seed));
}

Sampler::~Sampler() {
  llama_sampler_free(chain_);
  llama_sampler_free(grammar_);
  llama_sampler_free(budget_);
}

void Sampler::AcceptPrompt(const llama_token* tokens, size_t n) {
  if (!penalties_) return;
  for (size_t i = 0; i < n; i++) llama_sampler_accept(penalties_, tokens[i]);
}

// llama.cpp common's grammar_should_apply: a lazy grammar waits while the model thinks.
bool Sampler::GrammarApplies() const {
  if (!grammar_) return false;
  if (!budget_ || !lazy_) return true;
  const common_reasoning_budget_state st = common_reasoning_budget_get_state(budget_);
  return st == REASONING_BUDGET_IDLE || st == REASONING_BUDGET_DONE;
}

llama_token Sampler::Sample(llama_context* ctx, int32_t idx) {
  const float* logits = llama_get_logits_ith(ctx, idx);
  if (!logits) throw CodedError(code::BACKEND_ERROR, "llama.cpp returned no logits for the last token");
  if (plain_greedy_) return ArgmaxFirst(logits, n_vocab_);
  if (!grammar_ && !budget_) return llama_sampler_sample(chain_, ctx, idx);
  // llama_sampler_sample's steps done here, with the grammar applied before
  // the draw, so that a token the grammar forbids is never accepted:
  // llama.cpp's grammar aborts the process on an end-of-generation token it
  // does not allow (llama-grammar.cpp llama_grammar_accept_impl) and throws on others.
  cur_.resize(static_cast<size_t>(n_vocab_));
  for (llama_token t = 0; t < n_vocab_; t++) cur_[static_cast<size_t>(t)] = llama_token_data{t, logits[t], 0.0f};
  llama_token_data_array arr{cur_.data(), cur_.size(), -1, false};
  if (budget_) llama_sampler_apply(budget_, &arr);  // forces the end tag once the budget is spent
  const bool grammar = GrammarApplies();
  if (grammar) llama_sampler_apply(grammar_, &arr);
  llama_sampler_apply(chain_, &arr);
  if (arr.selected < 0 || arr.selected >= static_cast<int64_t>(arr.size) || !std::isfinite(arr.data[arr.selected].logit))
    throw CodedError(code::INVALID_ARGUMENT, "the grammar admits no next token (every token the model could produce breaks it)");
  const llama_token tok = arr.data[arr.selected].id;
  try {
    if (budget_) {
      llama_sampler_accept(budget_, tok);
      // common_sampler_accept: a lazy grammar that waited sees the end tag that closed the thinking block (it may trigger it)
      const llama_tokens* end = grammar_ && !grammar && common_reasoning_budget_get_state(budget_) == REASONING_BUDGET_DONE
                                    ? common_reasoning_budget_get_end_match(budget_)
                                    : nullptr;
      if (end)
        for (llama_token t : *end) llama_sampler_accept(grammar_, t);
    }
    if (grammar) llama_sampler_accept(grammar_, tok);
  } catch (const std::exception& e) {
    throw CodedError(code::INVALID_ARGUMENT, std::string("the grammar refused the sampled token: ") + e.what());
  }
  llama_sampler_accept(chain_, tok);
  return tok;
}

}  // namespace genai
