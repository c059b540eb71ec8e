#include "llm/chat_format.h"

#include <cctype>
#include <exception>

#include "common.h"  // regex_escape
#include "llm/model.h"
#include "llm/sampler.h"  // CheckSchemaShape
#include "util/args.h"
#include "util/errors.h"

namespace genai {

namespace {

[[noreturn]] void Bad(Napi::Env env, const std::string& what) { Throw(env, code::INVALID_ARGUMENT, what); }

std::string OptString(Napi::Object o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return {};
  if (!v.IsString()) Bad(o.Env(), where + "." + key + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

std::vector<std::string> StringArray(Napi::Object o, const char* key, const std::string& where) {
  Napi::Value v = o.Get(key);
  if (!v.IsArray()) Bad(o.Env(), where + "." + key + " must be an array of strings");
  auto a = v.As<Napi::Array>();
  std::vector<std::string> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value e = a.Get(i);
    if (!e.IsString()) Bad(o.Env(), where + "." + key + " must be an array of strings");
    out.push_back(e.As<Napi::String>().Utf8Value());
  }
  return out;
}

Napi::Array StringsToJs(Napi::Env env, const std::vector<std::string>& v) {
  auto a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) a.Set(static_cast<uint32_t>(i), v[i]);
  return a;
}

common_chat_msg MessageFromJs(Napi::Env env, Napi::Value v, uint32_t i) {
  const std::string where = "messages[" + std::to_string(i) + "]";
  if (!v.IsObject()) Bad(env, where + " must be an object");
  Napi::Object m = v.As<Napi::Object>();
  CheckKeys(m, {"role", "content", "toolCalls", "toolCallId", "toolName", "reasoning"}, "chat message");
  if (!m.Get("role").IsString() || !m.Get("content").IsString()) Bad(env, where + " needs string role and content");
  common_chat_msg msg;
  msg.role = m.Get("role").As<Napi::String>().Utf8Value();
  msg.content = m.Get("content").As<Napi::String>().Utf8Value();
  msg.tool_call_id = OptString(m, "toolCallId", where);
  msg.tool_name = OptString(m, "toolName", where);
  msg.reasoning_content = OptString(m, "reasoning", where);
  Napi::Value calls = m.Get("toolCalls");
  if (!calls.IsUndefined() && !calls.IsNull()) {
    if (!calls.IsArray()) Bad(env, where + ".toolCalls must be an array");
    auto a = calls.As<Napi::Array>();
    for (uint32_t k = 0; k < a.Length(); k++) {
      const std::string cw = where + ".toolCalls[" + std::to_string(k) + "]";
      if (!a.Get(k).IsObject()) Bad(env, cw + " must be an object");
      Napi::Object c = a.Get(k).As<Napi::Object>();
      CheckKeys(c, {"id", "name", "arguments"}, "tool call");
      common_chat_tool_call tc;
      tc.id = OptString(c, "id", cw);
      tc.name = OptString(c, "name", cw);
      tc.arguments = OptString(c, "arguments", cw);
      if (tc.name.empty()) Bad(env, cw + ".name must be a non-empty string");
      msg.tool_calls.push_back(std::move(tc));
    }
  }
  return msg;
}

common_chat_tool ToolFromJs(Napi::Env env, Napi::Value v, uint32_t i) {
  const std::string where = "tools[" + std::to_string(i) + "]";
  if (!v.IsObject()) Bad(env, where + " must be an object");
  Napi::Object t = v.As<Napi::Object>();
  CheckKeys(t, {"name", "description", "parameters"}, "tool");
  common_chat_tool tool;
  tool.name = OptString(t, "name", where);
  tool.description = OptString(t, "description", where);
  tool.parameters = OptString(t, "parameters", where);  // JSON text
  if (tool.name.empty()) Bad(env, where + ".name must be a non-empty string");
  if (tool.parameters.empty()) tool.parameters = "{\"type\":\"object\",\"properties\":{}}";
  // the template and llama.cpp's schema-to-grammar converter read it: the same limits as jsonSchema
  try {
    CheckSchemaShape(tool.parameters, where + ".parameters");
    common_json::parse(tool.parameters);
  } catch (const CodedError& e) {
    Throw(env, e.code, e.what());
  } catch (const std::exception& e) {
    Bad(env, where + ".parameters is not valid JSON: " + e.what());
  }
  return tool;
}

// The sampling side reads only what the format says; a changed field must fail, not drift.
const char* const kTriggerTypes[] = {"token", "word", "pattern", "patternFull"};

std::vector<llama_token> Tokens(const llama_vocab* vocab, const std::string& text) {
  return text.empty() ? std::vector<llama_token>{} : TokenizeText(vocab, text, false, true);
}

}  // namespace

ChatInputs ChatInputsFromJs(Napi::Env env, Napi::Value messages, Napi::Object o) {
  if (!messages.IsArray()) Bad(env, "messages must be an array");
  CheckKeys(o, {"addAssistant", "template", "tools", "toolChoice", "parallelToolCalls", "enableThinking"}, "applyChatTemplate");
  ChatInputs in;
  auto arr = messages.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); i++) in.messages.push_back(MessageFromJs(env, arr.Get(i), i));
  in.add_assistant = BoolField(o, "addAssistant");
  in.override_src = OptStringField(o, "template").value_or("");
  Napi::Value tools = o.Get("tools");
  if (!tools.IsArray()) Bad(env, "tools must be an array");
  auto ta = tools.As<Napi::Array>();
  for (uint32_t i = 0; i < ta.Length(); i++) in.tools.push_back(ToolFromJs(env, ta.Get(i), i));
  const std::string choice = StringField(o, "toolChoice");
  if (choice == "auto")
    in.tool_choice = COMMON_CHAT_TOOL_CHOICE_AUTO;
  else if (choice == "required")
    in.tool_choice = COMMON_CHAT_TOOL_CHOICE_REQUIRED;
  else if (choice == "none")
    in.tool_choice = COMMON_CHAT_TOOL_CHOICE_NONE;
  else
    Bad(env, "toolChoice must be \"auto\", \"required\" or \"none\"");
  if (in.tool_choice == COMMON_CHAT_TOOL_CHOICE_REQUIRED && in.tools.empty()) Bad(env, "toolChoice \"required\" needs at least one tool");
  in.parallel_tool_calls = BoolField(o, "parallelToolCalls");
  in.enable_thinking = BoolField(o, "enableThinking");
  return in;
}

Napi::Object ChatParamsToJs(Napi::Env env, const common_chat_params& p) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("prompt", p.prompt);
  o.Set("stops", StringsToJs(env, p.additional_stops));
  Napi::Object f = Napi::Object::New(env);
  f.Set("format", common_chat_format_name(p.format));
  f.Set("parser", p.parser);
  f.Set("generationPrompt", p.generation_prompt);
  f.Set("grammar", p.grammar);
  f.Set("grammarLazy", p.grammar_lazy);
  auto triggers = Napi::Array::New(env, p.grammar_triggers.size());
  for (size_t i = 0; i < p.grammar_triggers.size(); i++) {
    const common_grammar_trigger& t = p.grammar_triggers[i];
    Napi::Object e = Napi::Object::New(env);
    e.Set("type", kTriggerTypes[t.type]);
    e.Set("value", t.value);
    e.Set("token", t.token);
    triggers.Set(static_cast<uint32_t>(i), e);
  }
  f.Set("triggers", triggers);
  f.Set("preservedTokens", StringsToJs(env, p.preserved_tokens));
  f.Set("supportsThinking", p.supports_thinking);
  f.Set("thinkingStartTag", p.thinking_start_tag);
  f.Set("thinkingEndTags", StringsToJs(env, p.thinking_end_tags));
  o.Set("format", f);
  return o;
}

void ChatSamplingFromJs(Napi::Object chat, const llama_vocab* vocab, SamplingParams& sp, std::set<llama_token>& preserved) {
  Napi::Env env = chat.Env();
  CheckKeys(chat, {"format", "reasoningBudget"}, "generate chat");
  if (!chat.Get("format").IsObject()) Bad(env, "chat.format must be the format applyChatTemplate returned");
  Napi::Object f = chat.Get("format").As<Napi::Object>();
  sp.reasoning_budget = static_cast<int32_t>(IntField(chat, "reasoningBudget", -1, 1 << 30));
  const std::string grammar = StringField(f, "grammar");
  if (!grammar.empty() && (!sp.grammar.empty() || !sp.json_schema.empty())) Bad(env, "grammar or jsonSchema cannot be given with tools");
  if (!grammar.empty()) sp.grammar = grammar, sp.prefill_grammar = true;
  sp.grammar_lazy = BoolField(f, "grammarLazy");
  Napi::Value tv = f.Get("triggers");
  if (!tv.IsArray()) Bad(env, "chat.format.triggers must be an array");
  auto triggers = tv.As<Napi::Array>();
  const int32_t n_vocab = llama_vocab_n_tokens(vocab);
  for (uint32_t i = 0; i < triggers.Length(); i++) {
    if (!triggers.Get(i).IsObject()) Bad(env, "chat.format.triggers entries must be objects");
    Napi::Object t = triggers.Get(i).As<Napi::Object>();
    const std::string type = StringField(t, "type"), value = StringField(t, "value");
    // llama.cpp common/sampling.cpp common_sampler_init's conversion
    if (type == "token") {
      sp.trigger_tokens.push_back(static_cast<llama_token>(IntField(t, "token", 0, n_vocab - 1)));
    } else if (type == "word") {
      sp.trigger_patterns.push_back(regex_escape(value));
    } else if (type == "pattern") {
      sp.trigger_patterns.push_back(value);
    } else if (type == "patternFull") {
      sp.trigger_patterns.push_back(value.empty() ? "^$" : (value.front() != '^' ? "^" : "") + value + (value.back() != '$' ? "$" : ""));
    } else {
      Bad(env, "chat.format.triggers[" + std::to_string(i) + "].type is not one llama.cpp knows: " + type);
    }
  }
  if (sp.grammar_lazy && grammar.empty()) Bad(env, "chat.format.grammarLazy needs a grammar");
  if (sp.grammar_lazy && sp.trigger_patterns.empty() && sp.trigger_tokens.empty()) Bad(env, "chat.format.grammarLazy needs triggers");
  try {
    // as llama-server reads preserved_tokens: each must be one token
    for (const std::string& s : StringArray(f, "preservedTokens", "chat.format")) {
      std::vector<llama_token> ids = Tokens(vocab, s);
      if (ids.size() == 1) preserved.insert(ids[0]);
    }
    const std::string gen_prompt = StringField(f, "generationPrompt");
    // common_sampler_init's prefill: the generation prompt's tokens, less a leading space a tokenizer put before a special token
    const std::vector<llama_token> gen_tokens = Tokens(vocab, gen_prompt);
    for (size_t i = 0; i < gen_tokens.size(); i++) {
      const std::string piece = i == 0 ? TokenPiece(vocab, gen_tokens[i], true) : std::string();
      if (!piece.empty() && std::isspace(static_cast<unsigned char>(piece[0])) && !std::isspace(static_cast<unsigned char>(gen_prompt[0]))) continue;
      sp.prefill.push_back(gen_tokens[i]);
    }
    sp.thinking_start = Tokens(vocab, StringField(f, "thinkingStartTag"));
    for (const std::string& tag : StringArray(f, "thinkingEndTags", "chat.format"))
      if (!tag.empty()) sp.thinking_end.push_back(Tokens(vocab, tag));
  } catch (const CodedError& e) {  // the tokenizer's
    Throw(env, e.code, e.what());
  }
}

Napi::Value ParseChatJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string text = StringArg(info, 0, "text");
  if (info.Length() < 2 || !info[1].IsBoolean()) Bad(env, "partial must be a boolean");
  const bool partial = info[1].As<Napi::Boolean>().Value();
  Napi::Object f = ObjectArg(info, 2, "format");
  common_chat_parser_params pp;
  const std::string name = StringField(f, "format");
  bool known = false;
  for (int k = 0; k < COMMON_CHAT_FORMAT_COUNT; k++)
    if (name == common_chat_format_name(static_cast<common_chat_format>(k))) pp.format = static_cast<common_chat_format>(k), known = true;
  if (!known) Bad(env, "format.format is not a chat format llama.cpp knows: " + name);
  pp.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;  // reasoning apart from content, in partial parses too
  pp.generation_prompt = StringField(f, "generationPrompt");
  common_chat_msg msg;
  try {
    // a stream parses the same format after every piece: its parser is loaded (from JSON) once per JS thread
    thread_local std::string loaded_src;
    thread_local common_peg_arena loaded;
    const std::string parser = StringField(f, "parser");
    if (parser != loaded_src) {
      common_peg_arena arena;
      if (!parser.empty()) arena.load(parser);
      loaded = std::move(arena), loaded_src = parser;
    }
    msg = common_chat_peg_parse(loaded, text, partial, pp);  // common_chat_parse with the cached parser
  } catch (const std::exception& e) {
    Bad(env, std::string("the reply does not parse as the template's format: ") + e.what());
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("content", msg.content);
  o.Set("reasoning", msg.reasoning_content);
  auto calls = Napi::Array::New(env, msg.tool_calls.size());
  for (size_t i = 0; i < msg.tool_calls.size(); i++) {
    Napi::Object c = Napi::Object::New(env);
    c.Set("id", msg.tool_calls[i].id);
    c.Set("name", msg.tool_calls[i].name);
    c.Set("arguments", msg.tool_calls[i].arguments);
    calls.Set(static_cast<uint32_t>(i), c);
  }
  o.Set("toolCalls", calls);
  return o;
}

}  // namespace genai
