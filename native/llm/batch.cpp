#include "llm/batch.h"

#include <algorithm>
#include <chrono>

#include "llm/generation.h"
#include "util/errors.h"
#include "util/log.h"

namespace genai {

namespace {

using Clock = std::chrono::steady_clock;

// One decode step for `gens` (a snapshot of the running ones), on the driving thread. Never throws.
void Step(ContextState& s, const std::vector<Generation*>& gens) {
  std::vector<Generation*>& in = s.step_in;
  in.clear();
  for (Generation* g : gens)
    if (!g->begun()) g->Begin();
  llama_batch& batch = s.batch;
  const int32_t n_batch = static_cast<int32_t>(llama_n_batch(s.ctx));
  int32_t n = 0;
  for (Generation* g : gens)  // in ascending sequence order (s.active is kept so: RunGeneration)
    if (g->Fill(batch, n, n_batch - n)) in.push_back(g);
  // a media chunk (an image's embeddings) is a decode of its own, alone on the context
  for (Generation* g : gens) {
    if (!g->NeedsMedia()) continue;
    s.active_cancel = &g->cancel();
    t_quiet_when_cancelled = &g->cancel();
    g->EvalMedia();
    s.active_cancel = nullptr;
    t_quiet_when_cancelled = nullptr;
  }
  if (in.empty()) return;
  batch.n_tokens = n;
  // llama.cpp's abort callback stops a decode for one generation's signal: only when it is alone in the batch
  CancelFlag* alone = in.size() == 1 ? &in[0]->cancel() : nullptr;
  s.active_cancel = alone;
  t_quiet_when_cancelled = alone;
  const auto t0 = Clock::now();
  int32_t rc = 0;
  try {
    rc = DecodeAndWait(s, batch);
  } catch (...) {
    s.active_cancel = nullptr;
    t_quiet_when_cancelled = nullptr;
    for (Generation* g : in) g->Fail(std::current_exception());
    return;
  }
  s.active_cancel = nullptr;
  t_quiet_when_cancelled = nullptr;
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  for (Generation* g : in) g->Decoded(rc, ms);
}

// Requests that arrive together reach the context a few milliseconds apart
// (an HTTP server parses, renders the chat template and queues each one:
// about 3.5 ms apart for 4 chats through `serve`). Their first step waits for
// them, so their prompts go into one batch, as llama-server's loop, which
// queues them all before its first decode, does. Without this, the first
// prompt was decoded alone and the others joined one step later: 4 streamed
// chats ran at 0.85x llama-server's tokens/s (bench:server).
constexpr auto kJoinQuiet = std::chrono::milliseconds(4);  // the step starts once no one joined for this long
constexpr auto kJoinMax = std::chrono::milliseconds(16);   // or after this long in all

// On the driving thread, under s.batch_mu (`lock`), before a step: waits while
// a fresh burst (no running generation has begun) keeps growing, on a context
// with free sequences. Joiners notify batch_cv.
void WaitForBurst(ContextState& s, std::unique_lock<std::mutex>& lock) {
  const size_t slots = static_cast<size_t>(s.sequences());
  if (slots < 2) return;
  for (const Generation* g : s.active)
    if (g->begun()) return;
  const auto deadline = Clock::now() + kJoinMax;
  for (size_t seen = s.active.size(); seen < slots; seen = s.active.size()) {
    const auto until = std::min(deadline, Clock::now() + kJoinQuiet);
    if (!s.batch_cv.wait_until(lock, until, [&] { return s.active.size() != seen; })) return;
  }
}

}  // namespace

GenerateResult RunGeneration(ContextState& s, int32_t seq, const GenerateParams& p, CancelFlag& cancel, const std::function<bool(std::string)>& emit) {
  Generation g(s, seq, p, cancel, emit);
  std::unique_lock<std::mutex> lock(s.batch_mu);
  // s.active in ascending sequence order, so each step's batch is: with a KV
  // cache per sequence (kv_unified off) llama.cpp puts into one micro-batch
  // only sequences whose ids follow each other in batch order (llama-batch.cpp
  // split_equal, sequential), and generations that had joined as [2, 0, 3, 1]
  // cost two graph computes per step ({2, 3}, {0, 1}), each reading every
  // weight: 1.6x the step time in the rounds where they joined out of order.
  s.active.insert(std::upper_bound(s.active.begin(), s.active.end(), &g, [](const Generation* a, const Generation* b) { return a->seq() < b->seq(); }), &g);
  s.batch_cv.notify_all();  // a driver holding a burst's first step (WaitForBurst) sees it join
  while (!g.retired) {
    if (s.driving) {
      s.batch_cv.wait(lock);
      continue;
    }
    s.driving = true;
    WaitForBurst(s, lock);
    std::vector<Generation*>& gens = s.step_gens;
    gens.assign(s.active.begin(), s.active.end());
    lock.unlock();
    Step(s, gens);
    lock.lock();
    s.driving = false;
    // ended generations leave the loop; their threads return once they see `retired`
    bool retired = false;
    for (Generation* e : gens)
      if (e->done()) e->retired = retired = true;
    if (!retired) continue;  // the others sleep on: waking them each step would take the cores from the decode
    s.active.erase(std::remove_if(s.active.begin(), s.active.end(), [](Generation* e) { return e->retired; }), s.active.end());
    s.batch_cv.notify_all();  // their owners return; if this one's ended, another takes over driving
  }
  lock.unlock();
  return g.Result();
}

void CancelGenerations(ContextState& s) {
  std::lock_guard<std::mutex> lock(s.batch_mu);
  for (Generation* g : s.active) g->cancel().cancelled = true;
}

}  // namespace genai
