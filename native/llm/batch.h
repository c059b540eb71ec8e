// Continuous batching of a context's generations. Each generation's own
// native thread calls RunGeneration; one of them at a time drives: it starts
// new generations, puts every running one's next tokens (prompt chunks, or
// the last sampled token) into one llama_batch, decodes it and lets each
// sample from its own logits. The others wait; when the driver's own
// generation ends, another takes over. Alone on its context a generation is
// the plain single-sequence loop (and keeps llama.cpp's abort callback for
// its signal, which stops a long prompt mid-decode).
#pragma once
#include <functional>
#include <string>

#include "llm/context.h"
#include "llm/generate.h"

namespace genai {

// Runs on the generation's worker thread; returns when it has ended.
// `emit` receives text pieces as they become final (on whichever thread
// drives) and says whether it woke the JS thread for them. Throws the
// generation's own error (CodedError).
GenerateResult RunGeneration(ContextState& s, int32_t seq, const GenerateParams& p, CancelFlag& cancel, const std::function<bool(std::string)>& emit);

// Sets the cancel flag of every running generation (dispose()).
void CancelGenerations(ContextState& s);

}  // namespace genai
