/**
 * OpenAI's chat and completion request fields mapped onto this library's
 * options, and results onto OpenAI's response shapes (the API reference of
 * /v1/chat/completions, /v1/completions, /v1/embeddings; llama-server's
 * extensions top_k, min_p, repeat_penalty and reasoning_content). Fields not
 * listed in the request schemas (schemas.ts) are refused with a 400 naming
 * them; the ones accepted here all take effect.
 */
import type { ChatMessage, ChatOptions, ChatResult, CompletionResult, ResponseFormat, TokenLogprob, ToolCall, ToolChoice, ToolDefinition } from "../llm/types";
import { HttpError } from "./errors";
import { GenaiError } from "../errors";
import type { ChatContentPart } from "../llm/media";

/** The request bodies as the schemas admit them. */
export interface ChatRequest {
  model: string;
  messages: OpenAiMessage[];
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  max_tokens?: number;
  max_completion_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repeat_penalty?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  seed?: number;
  stop?: string | string[];
  logit_bias?: Record<string, number>;
  logprobs?: boolean;
  top_logprobs?: number;
  n?: number;
  user?: string;
  tools?: { type: "function"; function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean } }[];
  tool_choice?: "auto" | "none" | "required" | { type: "function"; function: { name: string } };
  parallel_tool_calls?: boolean;
  response_format?:
    | { type: "text" }
    | { type: "json_object" }
    | { type: "json_schema"; json_schema: { name: string; schema?: Record<string, unknown>; strict?: boolean; description?: string } };
  reasoning_effort?: "none";
  reasoning_budget?: number;
}

type OpenAiContent = string | null | ({ type: "text"; text: string } | { type: "image_url"; image_url: { url: string; detail?: string } })[];
export interface OpenAiMessage {
  role: "system" | "developer" | "user" | "assistant" | "tool";
  content?: OpenAiContent;
  name?: string;
  tool_call_id?: string;
  tool_calls?: { id: string; type: "function"; function: { name: string; arguments: string } }[];
  reasoning_content?: string;
}

export interface CompletionRequest {
  model: string;
  prompt: string;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  repeat_penalty?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  seed?: number;
  stop?: string | string[];
  logit_bias?: Record<string, number>;
  n?: number;
  user?: string;
}

/**
 * A message's content: text, or parts with images (`image_url` with a base64
 * `data:` URL; the server fetches nothing). @throws GenaiError INVALID_ARGUMENT
 */
function content(c: OpenAiContent | undefined): ChatMessage["content"] {
  if (c === undefined || c === null) return "";
  if (typeof c === "string") return c;
  if (c.every((p) => p.type === "text")) return c.map((p) => (p as { text: string }).text).join("");
  return c.map((p): ChatContentPart => {
    if (p.type === "text") return p;
    const m = /^data:image\/[\w.+-]+;base64,(.*)$/s.exec(p.image_url.url);
    if (!m) throw new GenaiError("INVALID_ARGUMENT", "image_url.url must be a data: URL with base64 image bytes (the server fetches no URLs)");
    return { type: "image", image: Buffer.from(m[1], "base64") };
  });
}

/** OpenAI messages as ChatMessages ("developer" is the system role of newer models). */
export function chatMessages(messages: OpenAiMessage[]): ChatMessage[] {
  return messages.map((m) => {
    const out: ChatMessage = { role: m.role === "developer" ? "system" : m.role, content: content(m.content) };
    if (m.tool_calls) out.toolCalls = m.tool_calls.map((c) => ({ id: c.id, name: c.function.name, arguments: c.function.arguments }));
    if (m.tool_call_id !== undefined) out.toolCallId = m.tool_call_id;
    if (m.name !== undefined && m.role === "tool") out.toolName = m.name;
    if (m.reasoning_content !== undefined) out.reasoning = m.reasoning_content;
    return out;
  });
}

/** Sampling fields shared by both endpoints. `maxTokens` default: until the end of the context (OpenAI's default). */
function sampling(b: ChatRequest | CompletionRequest, defaultMaxTokens: number): ChatOptions {
  const o: ChatOptions = { maxTokens: defaultMaxTokens };
  const max = "max_completion_tokens" in b && b.max_completion_tokens !== undefined ? b.max_completion_tokens : b.max_tokens;
  if (max !== undefined) o.maxTokens = max;
  if (b.temperature !== undefined) o.temperature = b.temperature;
  if (b.top_p !== undefined) o.topP = b.top_p;
  if (b.top_k !== undefined) o.topK = b.top_k;
  if (b.min_p !== undefined) o.minP = b.min_p;
  if (b.repeat_penalty !== undefined) o.repeatPenalty = b.repeat_penalty;
  if (b.presence_penalty !== undefined) o.presencePenalty = b.presence_penalty;
  if (b.frequency_penalty !== undefined) o.frequencyPenalty = b.frequency_penalty;
  if (b.seed !== undefined) o.seed = b.seed;
  if (b.stop !== undefined) o.stop = typeof b.stop === "string" ? [b.stop] : b.stop;
  if (b.logit_bias !== undefined) o.logitBias = b.logit_bias;
  return o;
}

export function completionOptions(b: CompletionRequest): ChatOptions {
  return sampling(b, 16); // OpenAI's default max_tokens for /v1/completions
}

export function chatOptions(b: ChatRequest): ChatOptions {
  const o = sampling(b, 2 ** 30);
  if (b.logprobs) o.logprobs = b.top_logprobs ?? 0;
  else if (b.top_logprobs !== undefined) throw new HttpError(400, "INVALID_REQUEST", "top_logprobs needs logprobs: true", "top_logprobs");
  if (b.tools !== undefined)
    o.tools = b.tools.map(
      (t): ToolDefinition => ({
        name: t.function.name,
        ...(t.function.description !== undefined ? { description: t.function.description } : {}),
        ...(t.function.parameters !== undefined ? { parameters: t.function.parameters } : {}),
      }),
    );
  if (b.tool_choice !== undefined) o.toolChoice = (typeof b.tool_choice === "string" ? b.tool_choice : { name: b.tool_choice.function.name }) as ToolChoice;
  if (b.parallel_tool_calls !== undefined) o.parallelToolCalls = b.parallel_tool_calls;
  if (b.response_format !== undefined) {
    const rf = b.response_format;
    o.responseFormat = (rf.type === "json_schema" ? { type: "json_schema", schema: rf.json_schema.schema ?? {} } : { type: rf.type }) as ResponseFormat;
  }
  if (b.reasoning_effort === "none") o.reasoningBudget = 0;
  if (b.reasoning_budget !== undefined) o.reasoningBudget = b.reasoning_budget;
  return o;
}

/** OpenAI's finish_reason for a result. */
export function finishReason(r: CompletionResult, toolCalls: readonly ToolCall[] = []): "stop" | "length" | "tool_calls" {
  if (toolCalls.length > 0) return "tool_calls";
  return r.stopReason === "maxTokens" || r.stopReason === "contextFull" ? "length" : "stop";
}

export function openAiToolCalls(calls: readonly ToolCall[]) {
  return calls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } }));
}

const bytes = (s: string) => Array.from(Buffer.from(s, "utf8"));

export function openAiLogprobs(lps: readonly TokenLogprob[]) {
  return {
    content: lps.map((l) => ({
      token: l.text,
      logprob: l.logprob,
      bytes: bytes(l.text),
      top_logprobs: l.top.map((t) => ({ token: t.text, logprob: t.logprob, bytes: bytes(t.text) })),
    })),
  };
}

export function usage(r: CompletionResult) {
  return { prompt_tokens: r.timings.promptTokens, completion_tokens: r.tokenCount, total_tokens: r.timings.promptTokens + r.tokenCount };
}

/** A non-streamed chat.completion. */
export function chatCompletion(id: string, model: string, created: number, r: ChatResult) {
  const message: Record<string, unknown> = { role: "assistant", content: r.toolCalls.length > 0 && r.text === "" ? null : r.text };
  if (r.reasoning) message.reasoning_content = r.reasoning;
  if (r.toolCalls.length > 0) message.tool_calls = openAiToolCalls(r.toolCalls);
  return {
    id,
    object: "chat.completion",
    created,
    model,
    choices: [{ index: 0, message, finish_reason: finishReason(r, r.toolCalls), logprobs: r.logprobs ? openAiLogprobs(r.logprobs) : null }],
    usage: usage(r),
  };
}
