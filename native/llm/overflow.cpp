#include "llm/overflow.h"

#include <algorithm>

namespace genai {

bool ParseOverflow(const std::string& name, Overflow& out) {
  if (name == "error")
    out = Overflow::kError;
  else if (name == "truncateMiddle")
    out = Overflow::kTruncateMiddle;
  else if (name == "shift")
    out = Overflow::kShift;
  else
    return false;
  return true;
}

std::vector<llama_token> TruncateMiddle(const std::vector<llama_token>& prompt, size_t n_ctx, size_t keep) {
  const size_t n_keep = std::min(keep, n_ctx / 2);
  const size_t block = std::max<size_t>(1, (n_ctx - n_keep) / 2);
  // whole blocks out of the middle until the rest is under two blocks: n_keep + rest < n_ctx (llama-server's server_context::update_slots)
  const size_t erased = (prompt.size() - n_keep - block) / block;
  std::vector<llama_token> out(prompt.begin(), prompt.begin() + static_cast<long>(n_keep));
  size_t from = std::min(prompt.size() - 1, n_keep + erased * block);
  out.insert(out.end(), prompt.begin() + static_cast<long>(from), prompt.end());
  return out;
}

size_t ShiftKv(ContextState& s, int32_t seq, size_t keep) {
  std::vector<llama_token>& kv = s.kv_tokens[static_cast<size_t>(seq)];
  const size_t n_past = kv.size();
  const size_t n_keep = std::min(keep, n_past / 2);
  const size_t n_discard = (n_past - n_keep) / 2;
  if (n_discard == 0) return 0;
  llama_memory_t mem = llama_get_memory(s.ctx);
  if (!llama_memory_can_shift(mem)) return 0;
  const auto p0 = static_cast<llama_pos>(n_keep), p1 = static_cast<llama_pos>(n_keep + n_discard);
  if (!llama_memory_seq_rm(mem, seq, p0, p1)) return 0;
  llama_memory_seq_add(mem, seq, p1, static_cast<llama_pos>(n_past), -static_cast<llama_pos>(n_discard));
  kv.erase(kv.begin() + static_cast<long>(n_keep), kv.begin() + static_cast<long>(n_keep + n_discard));
  return n_discard;
}

}  // namespace genai
