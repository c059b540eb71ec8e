// Chat templates are code (from the GGUF's tokenizer.chat_template or the
// caller) run by llama.cpp's Jinja interpreter (common/jinja), which has no
// limits: a recursive macro overflowed the stack (a segfault), range(10**9)
// looped for minutes with no way to stop it. Here a template is
//  1. checked before anything runs (CheckChatTemplate): size, nesting (the
//     parser and the interpreter recurse per level), macros that call
//     themselves unconditionally, constant range()/loop/repetition sizes;
//  2. rendered through llama.cpp common's own chat pipeline, but on an AST
//     that is ours: parsed with the same lexer/parser, with guard nodes in it
//     (subclasses of the node types they replace, so the interpreter's type
//     checks still see what they expect) that count steps, call depth and
//     stack, measure every value printed, assigned or passed to a builtin
//     (size, nesting, cycles), pre-check range() and string repetition, and
//     stop at the caller's cancel flag or the deadline.
// Every refusal is a CodedError: INVALID_ARGUMENT naming the limit, or
// ABORTED when the flag was set. Rendering must run on a thread made by
// RunOnStackThread with kRenderStackBytes of stack.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "llama.h"
#include "llm/chat_format.h"  // ChatInputs, common_chat_params

namespace genai {

struct CancelFlag;

namespace tmpl_limits {
constexpr size_t kMaxSourceBytes = 256 << 10;     // the largest template llama.cpp ships is 17 KB
constexpr int kMaxNesting = 64;                   // blocks + brackets + operator chains, estimated from the tokens before parsing
constexpr int kMaxAstDepth = 256;                 // AST depth after parsing (left-deep chains: a + b + c …)
constexpr int kMaxCallDepth = 200;                // nested calls (macro recursion over a JSON schema stays far below)
constexpr uint64_t kMaxSteps = 2'000'000;         // statements, loop iterations, calls, operators, filters: per applyChatTemplate call
constexpr size_t kMaxItems = 100'000;             // elements of one array/object (a range(), a list), and nodes of one value
constexpr size_t kMaxBytes = 16u << 20;           // one string, and the rendered prompt
constexpr uint64_t kMaxPrinted = 256u << 20;      // text printed in all (each level that prints a piece counts it), per call
constexpr size_t kMaxParts = 1'000'000;           // pieces of one string (the interpreter keeps concatenations as parts)
constexpr int kMaxDataDepth = 64;                 // nesting of one value
constexpr uint64_t kMaxGrowth = 200'000;          // total nesting added to existing values by append()/set ns.x (bounds the depth of linked structures)
constexpr int kMaxRenderMs = 30'000;              // wall clock per applyChatTemplate call
constexpr size_t kRenderStackBytes = 256u << 20;  // the render thread's stack (reserved, committed as used)
constexpr size_t kStackReserve = 64u << 20;       // a guard refuses to go deeper once less than this is left
}  // namespace tmpl_limits

// The static check alone (parse + AST checks); throws CodedError INVALID_ARGUMENT.
void CheckChatTemplate(const std::string& source);

// Picks the template (override, else the model's own), checks it and renders
// it under the limits through llama.cpp common's common_chat_templates_apply
// (tools, tool choice, thinking switch): the prompt, extra stops, and the
// reply's format (grammar, triggers, parser). Throws CodedError.
common_chat_params RenderChatTemplate(const llama_model* model, const ChatInputs& in, const CancelFlag& cancel);

}  // namespace genai
