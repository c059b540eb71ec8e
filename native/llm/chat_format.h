// The chat surface beyond plain text, all of it llama.cpp common's (chat.h):
// messages with tool calls and tool results, tool definitions, and what
// common_chat_templates_apply derives from the model's template for a reply —
// a tool-call grammar (lazy, with its triggers), preserved tokens, thinking
// tags and the parser (PEG) that turns the generated text back into content,
// reasoning and tool calls (common_chat_parse). JS holds that as a plain
// object (lib/llm/chat-format.ts ChatFormat) and hands it back to generate()
// and parseChat().
#pragma once
#include <napi.h>

#include <set>
#include <string>
#include <vector>

#include "chat.h"  // llama.cpp common
#include "llama.h"
#include "llm/sampler.h"

namespace genai {

// What the template is asked to render (ModelHandle::ApplyChatTemplate).
struct ChatInputs {
  std::vector<common_chat_msg> messages;
  bool add_assistant = true;
  std::string override_src;  // a template to use instead of the model's; empty = the model's
  std::vector<common_chat_tool> tools;
  common_chat_tool_choice tool_choice = COMMON_CHAT_TOOL_CHOICE_AUTO;
  bool parallel_tool_calls = false;
  bool enable_thinking = true;  // false: the template's own switch (e.g. Qwen3's enable_thinking) turns thinking off
};

// messages: [{ role, content, toolCalls?: [{ id, name, arguments }], toolCallId?, toolName?, reasoning? }]
// options:  { addAssistant, template: string|null, tools: [{ name, description, parameters }], toolChoice, parallelToolCalls, enableThinking }
// Throws INVALID_ARGUMENT naming the bad field.
ChatInputs ChatInputsFromJs(Napi::Env env, Napi::Value messages, Napi::Object options);

// { prompt, stops, format: { format, parser, generationPrompt, grammar, grammarLazy, triggers, preservedTokens,
//   supportsThinking, thinkingStartTag, thinkingEndTags } }
Napi::Object ChatParamsToJs(Napi::Env env, const common_chat_params& p);

// generate()'s `chat` field, { format: ChatFormat, reasoningBudget } (tokens;
// -1 = unlimited), on the JS thread: the format's tool-call grammar, triggers,
// generation prompt and thinking tags go into `sp` as llama.cpp common's
// common_sampler_init reads them; `preserved` gets the special tokens whose
// text stays in the output (tool-call and thinking markers; llama-server's
// preserved_tokens). Throws INVALID_ARGUMENT.
void ChatSamplingFromJs(Napi::Object chat, const llama_vocab* vocab, SamplingParams& sp, std::set<llama_token>& preserved);

// parseChat(text, partial, format) -> { content, reasoning, toolCalls: [{ id, name, arguments }] }:
// common_chat_parse with the format's parser; `partial` accepts text cut mid-way.
// Throws INVALID_ARGUMENT for a format that is not one applyChatTemplate returned,
// or for complete text the parser cannot read.
Napi::Value ParseChatJs(const Napi::CallbackInfo& info);

}  // namespace genai
