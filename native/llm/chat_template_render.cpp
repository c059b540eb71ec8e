// RenderChatTemplate: llama.cpp common's own chat pipeline (capability
// probes, workarounds, the autoparser) run on the guarded program.
#include <list>
#include <memory>
#include <mutex>
#include <utility>

#include "chat.h"
#include "common.h"
#include "jinja/caps.h"
#include "llm/chat_template_internal.h"

// llama.cpp common/chat.cpp's definition of the type chat.h declares opaque,
// token for token (so it is the same type, not a look-alike): the rendering
// pipeline (common_chat_templates_apply: capability detection, workarounds,
// the autoparser's differential renders) runs on template_default->prog, and
// RenderChatTemplate puts its guarded program there. Checked at run time
// against the public accessors (a layout that no longer matches fails closed).
// clang-format off
struct common_chat_templates {
    bool add_bos;
    bool add_eos;
    bool has_explicit_template;  // Model had builtin template or template overridden was specified.
    std::unique_ptr<common_chat_template> template_default;  // always set (defaults to chatml)
    std::unique_ptr<common_chat_template> template_tool_use;
};
// clang-format on

namespace genai {

using namespace tmpl_detail;

namespace {

// llama.cpp common's CHATML_TEMPLATE_SRC (chat.cpp), for the "chatml" override.
const char* kChatml =
    "{%- for message in messages -%}\n"
    "  {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' -}}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "  {{- '<|im_start|>assistant\n' -}}\n"
    "{%- endif -%}";

// jj::caps_get's answers by template source (llama-server computes them once
// per template too): the last kCapsCacheSize sources, any thread. Never
// destroyed: a render thread may still run while the process exits.
constexpr size_t kCapsCacheSize = 16;
struct CapsCache {
  std::mutex mu;
  std::list<std::pair<std::string, jj::caps>> entries;  // most recent first
};
CapsCache& Caps() {
  static CapsCache* cache = new CapsCache();
  return *cache;
}

bool CachedCaps(const std::string& src, jj::caps& out) {
  CapsCache& c = Caps();
  std::lock_guard<std::mutex> lock(c.mu);
  for (auto it = c.entries.begin(); it != c.entries.end(); ++it)
    if (it->first == src) {
      out = it->second;
      c.entries.splice(c.entries.begin(), c.entries, it);
      return true;
    }
  return false;
}

void CacheCaps(const std::string& src, const jj::caps& caps) {
  CapsCache& c = Caps();
  std::lock_guard<std::mutex> lock(c.mu);
  c.entries.emplace_front(src, caps);
  if (c.entries.size() > kCapsCacheSize) c.entries.pop_back();
}

// A template that renders nothing: what common_chat_templates_init parses and
// probes before the guarded program replaces it.
const char* kPlaceholder = "{{ '' }}";

// common_chat_templates_init's source selection and its two source patches (chat.cpp).
std::string SelectSource(const llama_model* model, const std::string& override_src) {
  std::string src = override_src;
  if (src.empty()) {
    const char* t = llama_model_chat_template(model, nullptr);
    if (t == nullptr || *t == '\0') t = llama_model_chat_template(model, "tool_use");
    if (t == nullptr || *t == '\0') throw CodedError(code::INVALID_ARGUMENT, "the model has no chat template; pass one explicitly (chatTemplate option)");
    src = t;
  }
  if (src == "chatml") src = kChatml;
  if (src.find("<|channel|>") != std::string::npos && src.find("in message.content or") != std::string::npos)
    string_replace_all(src,
                       "{%- if \"<|channel|>analysis<|message|>\" in message.content or "
                       "\"<|channel|>final<|message|>\" in message.content %}",
                       "{%- if false %}");
  if (src.find("[TOOL_CALLS]") != std::string::npos && src.find("if (message['content'] is none or") != std::string::npos)
    string_replace_all(src,
                       "{%- if (message['content'] is none or message['content'] == '' or "
                       "message['content']|length == 0) and (message['tool_calls'] is not defined or "
                       "message['tool_calls'] is none or message['tool_calls']|length == 0) %}",
                       "{%- if false %}");
  return src;
}

}  // namespace

common_chat_params RenderChatTemplate(const llama_model* model, const ChatInputs& in_js, const CancelFlag& cancel) {
  if (cancel.IsCancelled()) throw CodedError(code::ABORTED, "chat template rendering was aborted");
  Parsed parsed = ParseAndCheck(SelectSource(model, in_js.override_src));
  Budget budget(cancel);
  GuardProgram(parsed.prog, &budget);

  common_chat_templates_ptr tmpls;
  try {
    tmpls = common_chat_templates_init(model, kPlaceholder);
  } catch (const std::exception& e) {
    throw CodedError(code::BACKEND_ERROR, std::string("chat templates: ") + e.what());
  }
  common_chat_templates* t = tmpls.get();
  if (!t || !t->template_default || t->template_default->source() != kPlaceholder || common_chat_templates_source(t, "") != kPlaceholder ||
      t->has_explicit_template != common_chat_templates_was_explicit(t))
    throw CodedError(code::BACKEND_ERROR, "this llama.cpp's common_chat_templates layout is not the one native/llm/chat_template_check.cpp knows");
  common_chat_template& ct = *t->template_default;
  t->template_tool_use.reset();
  ct.src = parsed.source;
  ct.prog = std::move(parsed.prog);

  common_chat_params p;
  try {
    // the capability probes render the template several times; their answer depends on the source alone
    if (!CachedCaps(parsed.source, ct.caps)) {
      ct.caps = jj::caps_get(ct.prog);  // (its probes swallow errors)
      if (budget.tripped()) budget.Rethrow();
      CacheCaps(parsed.source, ct.caps);
    }
    common_chat_templates_inputs in;
    in.messages = in_js.messages;
    in.add_generation_prompt = in_js.add_assistant;
    in.use_jinja = true;
    in.tools = in_js.tools;
    in.tool_choice = in_js.tool_choice;
    in.parallel_tool_calls = in_js.parallel_tool_calls;
    in.enable_thinking = in_js.enable_thinking;
    in.reasoning_format = COMMON_REASONING_FORMAT_DEEPSEEK;  // reasoning apart from content (llama-server's default, "auto")
    p = common_chat_templates_apply(t, in);
  } catch (const CodedError&) {
    throw;
  } catch (const std::exception& e) {
    if (budget.tripped()) budget.Rethrow();
    throw CodedError(code::INVALID_ARGUMENT, std::string("chat template failed: ") + e.what());
  }
  if (budget.tripped()) budget.Rethrow();
  if (p.prompt.size() > kMaxBytes)
    throw CodedError(code::INVALID_ARGUMENT, "chat template stopped: the prompt is " + Num(p.prompt.size()) + " bytes (the limit is " + Num(kMaxBytes) + ")");
  return p;
}

}  // namespace genai
