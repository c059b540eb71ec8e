/**
 * Public option and result types of the LLM API (LlamaModel, LlamaContext).
 * Defaults named here are the fields of lib/llm/defaults.ts, the one place
 * they are set.
 */
import type { GgufSummary } from "../models/metadata";
import type { ChatContentPart } from "./media";
import type { RpcTimeouts } from "../system/rpc";

export interface LoadModelOptions {
  /** Layers to offload to the GPU: an integer ≥ 0, or "max" / -1 for all (default "max"; ignored on CPU-only builds). */
  gpuLayers?: number | "max";
  /** Memory-map the file (default: llama.cpp's choice, mmap where supported). */
  useMmap?: boolean;
  /** Load only the vocabulary (tokenize/detokenize; no contexts). */
  vocabOnly?: boolean;
  /**
   * Where the layers run: "auto" (default, or GENAI_NATIVE_DEVICE: the first GPU backend
   * of CUDA → Metal → Vulkan that works here, else the CPU), "cpu", a backend name
   * ("vulkan") or a device name ("Vulkan0"). See lib/system/backends.ts.
   */
  device?: string;
  /**
   * A multimodal projector ("mmproj-….gguf", made for this model) for images in
   * chat messages, loaded by llama.cpp's libmtmd on the model's device (the CPU
   * when gpuLayers is 0). M-RoPE projectors (the Qwen2-VL family) are refused.
   */
  mmproj?: string;
  /** CPU threads of the projector's encoder (default: every logical core; an encode runs alone, between decodes). */
  projectorThreads?: number;
  /**
   * rpc-servers ("host:port") whose devices take layers, before the local GPUs
   * (lib/system/rpc.ts; default: GENAI_NATIVE_RPC, else none). `gpuLayers`
   * counts the layers on all of them; the CPU holds the rest. A trusted
   * network only: ggml RPC has no authentication or encryption.
   */
  rpcServers?: string[];
  /** Bounds on the servers' answers, ms: `connectMs` (connect and handshake, default 5,000), `callMs` (one answer, default 60,000). */
  rpcTimeouts?: RpcTimeouts;
  /**
   * Share of the offloaded layers per device, in the load's device order (the
   * RPC servers' devices, then the local GPUs), e.g. [3, 1]; default:
   * llama.cpp's, by each device's free memory. At most 16 entries.
   */
  tensorSplit?: number[];
  /** Load progress, a fraction in [0, 1], called on the JS thread. */
  onProgress?: (fraction: number) => void;
  /** Aborting stops the load, frees everything, and rejects with ABORTED. */
  signal?: AbortSignal;
}

/** What a model is, from its GGUF metadata and from llama.cpp once loaded. */
export interface ModelMetadata extends GgufSummary {
  /** Parameter count (from llama.cpp). */
  parameters: number;
  /** Bytes of tensor data. */
  sizeBytes: number;
  /** llama.cpp's one-line description, e.g. "llama 7B Q4_0". */
  description: string;
  /** The Jinja chat template embedded in the file, if any. */
  chatTemplate: string | null;
}

/**
 * One turn of a conversation. An assistant turn that called tools carries
 * `toolCalls` (as a chat result returned them); each tool's answer is a
 * `role: "tool"` message with the call's `toolCallId` (and the tool's name in
 * `toolName` for templates that show it). `reasoning` is an assistant turn's
 * thinking, for templates that render it back.
 */
export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool" | (string & {});
  /** Text, or parts: `{ type: "text", text }` and `{ type: "image", image }` (lib/llm/media.ts; images need a model loaded with `mmproj`). */
  content: string | ChatContentPart[];
  toolCalls?: ToolCall[];
  toolCallId?: string;
  toolName?: string;
  reasoning?: string;
}

/** A function the model may call (OpenAI's `tools[].function`). */
export interface ToolDefinition {
  /** The name the model calls it by. */
  name: string;
  /** What it does, shown to the model. */
  description?: string;
  /** JSON schema of its arguments object (default: an object with no properties). */
  parameters?: JsonSchema;
}

/** A tool call the model made. */
export interface ToolCall {
  /** The call's id (the model's own where its format has one, else generated: "call_" + 24 random characters). */
  id: string;
  name: string;
  /** The arguments, as JSON text (as generated; the grammar keeps it to the tool's schema). */
  arguments: string;
}

/**
 * Which tools the model may call: "auto" (it decides; the tool-call grammar
 * starts only when the model opens a call), "required" (it must call one; the
 * grammar constrains the reply from its first token), "none" (tools are shown
 * but not called), or one tool by name (the others are not offered).
 */
export type ToolChoice = "auto" | "required" | "none" | { name: string };

/**
 * What the chat template derived for a reply (llama.cpp common's
 * common_chat_templates_apply): the parser and grammar of the model's own
 * tool-call and thinking syntax. Hand it back unchanged to parseChat().
 */
export interface ChatFormat {
  /** llama.cpp's name of the format: "Content-only", "peg-native", "peg-simple", "peg-gemma4", … */
  format: string;
  /** The PEG parser of the reply, serialized by llama.cpp (JSON); empty for content-only. */
  parser: string;
  /** What the template appended to open the assistant's turn (the parser reads the reply after it). */
  generationPrompt: string;
  /** GBNF of the tool calls; empty without tools. */
  grammar: string;
  /** The grammar waits for a trigger (toolChoice "auto"). */
  grammarLazy: boolean;
  triggers: { type: "token" | "word" | "pattern" | "patternFull"; value: string; token: number }[];
  /** Special tokens whose text is kept in the reply (markers the parser reads). */
  preservedTokens: string[];
  /** The template has a thinking block. */
  supportsThinking: boolean;
  thinkingStartTag: string;
  thinkingEndTags: string[];
}

/** A reply split by the model's format: what the user sees, the model's thinking, and its tool calls. */
export interface ParsedChatReply {
  content: string;
  reasoning: string;
  toolCalls: ToolCall[];
}

/**
 * A chat stream's events, in order: text of the reply, text of the model's
 * thinking, and tool calls as they form (`argumentsDelta` pieces joined give
 * the call's arguments; `name` and `id` come with a call's first event).
 */
export type ChatEvent =
  | { type: "content"; text: string }
  | { type: "reasoning"; text: string }
  | { type: "toolCall"; index: number; id: string; name: string; argumentsDelta: string };

export interface TokenizeOptions {
  /** Add the model's special tokens (BOS) as it is configured to (default true). */
  addSpecial?: boolean;
  /** Parse special-token text such as `<|im_start|>` into special tokens (default false). */
  parseSpecial?: boolean;
}

export interface DetokenizeOptions {
  /** Drop special tokens such as BOS/EOS from the text (default false). */
  removeSpecial?: boolean;
  /** Render special tokens as their text, e.g. `<|im_end|>` (default false). */
  unparseSpecial?: boolean;
}

export interface ChatTemplateOptions {
  /** A Jinja chat template to use instead of the model's own. */
  template?: string;
  /** Functions the model may call, rendered the template's way. */
  tools?: readonly ToolDefinition[];
  /** Default "auto". */
  toolChoice?: ToolChoice;
  /** Allow several tool calls in one reply where the format supports it (default false). */
  parallelToolCalls?: boolean;
  /** false: the template's own switch turns thinking off (e.g. Qwen3's enable_thinking); default true. */
  enableThinking?: boolean;
  /** End with the assistant's turn opened, ready for generation (default true). */
  addAssistant?: boolean;
  /** Rejects with ABORTED at once when it aborts; the native render stops at its next step. */
  signal?: AbortSignal;
}

export interface EmbedOptions {
  /** L2-normalize the vector (default true). */
  normalize?: boolean;
}

export interface ContextOptions {
  /** KV cache size in tokens (default: the training context, at most CONTEXT_DEFAULTS.maxContextSize). llama.cpp may round it up. */
  contextSize?: number;
  /** Logical batch size in tokens for prompt decoding (default CONTEXT_DEFAULTS.batchSize). */
  batchSize?: number;
  /** Threads for generation (default max(1, logical cores − 1), leaving a core to the host's event loop). */
  threads?: number;
  /** Threads for prompt decoding (default = threads). */
  batchThreads?: number;
  /** Sampling seed for this context's generations that give none, 0 … 2^32−2 (default: a new random seed per generation). */
  seed?: number;
  /** Flash attention: "auto" (llama.cpp decides), "on", "off" (default CONTEXT_DEFAULTS.flashAttention). */
  flashAttention?: "auto" | "on" | "off" | boolean;
  /** Create an embedding context (use {@link LlamaContext.embed}). */
  embeddings?: boolean;
  /**
   * Conversations held at once (default 1), each in its own part of the KV
   * cache (contextSize / sequences tokens; llama.cpp's split KV cache, as
   * llama-server's slots): `ctx.sequence(i)` generates on one, and
   * generations on different sequences run together, decoded in one batch.
   */
  sequences?: number;
}

/** Sampling and stopping for one generation. Defaults: SAMPLING_DEFAULTS (lib/llm/defaults.ts), which follow llama.cpp's common sampling defaults. */
export interface GenerateOptions {
  /** Most tokens to generate. */
  maxTokens?: number;
  /** Softmax temperature; 0 = greedy. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 = off. */
  topK?: number;
  /** Nucleus sampling: smallest set with cumulative probability ≥ p; 1 = off. */
  topP?: number;
  /** Drop tokens with probability < minP × the top token's; 0 = off. */
  minP?: number;
  /** Repetition penalty (> 0; 1 = off). */
  repeatPenalty?: number;
  /** Presence penalty (0 = off). */
  presencePenalty?: number;
  /** Frequency penalty (0 = off). */
  frequencyPenalty?: number;
  /** How many recent tokens the penalties look at. */
  penaltyLastN?: number;
  /**
   * Sampling seed, 0 … 2^32−2 (2^32−1 is llama.cpp's LLAMA_DEFAULT_SEED, which means "random", and is refused);
   * default: the context's seed, else a new random seed for each generation.
   */
  seed?: number;
  /** Stop before any of these strings; the stop string is not included in the text. */
  stop?: string[];
  /** Keep going past end-of-generation tokens (benchmarks). */
  ignoreEos?: boolean;
  /**
   * A GBNF grammar (llama.cpp's grammar format, root rule `root`) the output
   * must follow. Groups may nest at most 128 deep.
   * @throws (via the stream) GenaiError INVALID_ARGUMENT with llama.cpp's message for a grammar it refuses.
   */
  grammar?: string;
  /**
   * A JSON schema (object) the output must follow, turned into a grammar by
   * llama.cpp common's json_schema_to_grammar. At most 64 levels of nesting and
   * 256 `$ref`s. Not together with `grammar`.
   * @throws (via the stream) GenaiError INVALID_ARGUMENT for a schema llama.cpp's converter does not support.
   */
  jsonSchema?: JsonSchema;
  /**
   * Added to a token's logit before sampling, as OpenAI's `logit_bias`:
   * token id → bias (−1e9 … 1e9, or -Infinity to ban the token).
   */
  logitBias?: Readonly<Record<number, number>>;
  /**
   * Report each generated token's log-probability and this many most likely
   * alternatives (0 … 20), as llama-server's `n_probs` / OpenAI's
   * `top_logprobs`: `result.logprobs`. Off when absent.
   */
  logprobs?: number;
  /**
   * When the tokens do not fit the context: "error" (default) — a prompt
   * longer than the context is INVALID_ARGUMENT and a generation that fills
   * it stops with stopReason "contextFull"; "truncateMiddle" — a prompt
   * longer than the context keeps its first `keepTokens` and its newest
   * tokens, whole blocks of (contextSize − keepTokens) / 2 dropped from the
   * middle (llama-server's prompt truncation); "shift" — that, and when
   * generation fills the context the older half of the tokens after
   * `keepTokens` leaves the KV cache and the rest moves down (llama.cpp's
   * context shift), so generation goes on; a model whose KV cache cannot shift
   * stops with "contextFull". `timings.truncatedTokens` / `discardedTokens`
   * count what was dropped.
   */
  contextOverflow?: "error" | "truncateMiddle" | "shift";
  /**
   * Tokens at the start never dropped by contextOverflow (at most half the
   * context). Default: for chat, the leading system messages; otherwise the
   * BOS token.
   */
  keepTokens?: number;
  /**
   * Aborting ends generation within one token (and interrupts a long prompt
   * decode through llama.cpp's abort callback). The stream then ends normally
   * and the result has stopReason "aborted" with the text generated so far.
   */
  signal?: AbortSignal;
}

/**
 * A generated token's log-probability under the model's own distribution
 * (natural log of the softmax of the raw logits, before logit bias, grammar
 * and sampling), with the most likely alternatives, most likely first (ties:
 * the lower id first). `text` is the token's piece; a piece that is part of
 * a multi-byte character shows as U+FFFD.
 */
export interface TokenLogprob {
  token: number;
  text: string;
  logprob: number;
  top: { token: number; text: string; logprob: number }[];
}

/** A JSON schema (draft 2020-12 subset that llama.cpp's converter supports), as a plain object or boolean. */
export type JsonSchema = { readonly [key: string]: unknown } | boolean;

/** How chat() constrains the reply, as OpenAI's `response_format`. */
export type ResponseFormat = { type: "text" } | { type: "json_object" } | { type: "json_schema"; schema: JsonSchema };

export interface CompletionTimings {
  /** Tokens in the prompt (its images' tokens included). */
  promptTokens: number;
  /** The prompt's image tokens (libmtmd's count; 0 without images). */
  mediaTokens: number;
  /** Of promptMs: the projector encoding the images (ms). */
  mediaEncodeMs: number;
  /** Of promptMs: the images' embeddings decoded into the KV cache (ms). */
  mediaDecodeMs: number;
  /** Prompt tokens already in the KV cache (not decoded again). */
  reusedTokens: number;
  /** Prompt decode time in ms. */
  promptMs: number;
  /** Tokens generated. */
  generatedTokens: number;
  /** Generation time in ms (first sample to last token). */
  generationMs: number;
  /** Prompt tokens cut from the middle to fit the context (contextOverflow "truncateMiddle" / "shift"). */
  truncatedTokens: number;
  /** Tokens dropped from the KV cache by context shifts while generating (contextOverflow "shift"). */
  discardedTokens: number;
  /** Where generationMs went, summed over the generated tokens (ms); the rest is loop overhead. */
  breakdown: GenerationBreakdown;
}

/** Where LlamaModel.load() spent its time, in ms (the cold-start profile of `npm run bench:llm -- --cold`). */
export interface ModelLoadTimings {
  /** The GGUF header read into metadata (a worker thread; @huggingface/gguf). */
  metadataMs: number;
  /** Loading and probing ggml's backend modules (0 after the first load in a process). */
  backendsMs: number;
  /** The native GGUF pre-check: what llama.cpp would abort on, found before it reads the file. */
  checkMs: number;
  /** llama_model_load_from_file: tensors mapped (mmap) or read, repacked, uploaded to the devices. */
  llamaLoadMs: number;
  /** The rest of the native load: thread start-up, handing the model to JS. */
  otherMs: number;
}

/**
 * Per-phase time of a generation, summed over its tokens, measured on the
 * native thread (one clock read per phase). Divide by generatedTokens for the
 * per-token profile that `npm run bench:llm -- --profile` prints.
 */
export interface GenerationBreakdown {
  /** llama_decode of each generated token, including the wait for a GPU to finish (ms). */
  decodeMs: number;
  /** The sampler chain and the end-of-generation check (ms). */
  sampleMs: number;
  /** Token → bytes, llama_token_to_piece (ms). */
  detokenizeMs: number;
  /** UTF-8 assembly and stop-sequence matching (ms). */
  stopMs: number;
  /** Handing text to the JS thread: buffering and the thread-safe-function post (ms, native side only). */
  deliverMs: number;
  /** JS-thread wake-ups posted for text (pieces that arrive within 2 ms of a post ride with the next one). */
  deliveries: number;
}

export interface CompletionResult {
  /** The generated text (without the prompt and without a matched stop string). */
  text: string;
  /** Tokens generated. */
  tokenCount: number;
  /** The generated token ids, in order (an end-of-generation token that ended it is not included). */
  tokens: Int32Array;
  /** With the `logprobs` option: one entry per generated token, in order. */
  logprobs?: TokenLogprob[];
  /**
   * Why generation ended: end-of-generation token, maxTokens reached, a stop
   * string matched, aborted by the signal/dispose, or the context is full.
   */
  stopReason: "eos" | "maxTokens" | "stop" | "aborted" | "contextFull";
  timings: CompletionTimings;
}

/**
 * chat()'s result: `text` is the reply's content (without thinking or
 * tool-call markup, the same text the stream yielded); `rawText` is what the
 * model generated, markup included.
 */
export interface ChatResult extends CompletionResult {
  rawText: string;
  /** The model's thinking ("" when it did not think). */
  reasoning: string;
  /** The tool calls it made, in order ([] when none). */
  toolCalls: ToolCall[];
  /**
   * Set when the finished reply did not parse as the template's format (a
   * model that broke its own syntax): llama.cpp's message, and `text` is then
   * the raw reply with toolCalls []; or when a tool call's arguments are not
   * complete JSON (a reply cut by maxTokens mid-call): that call is left out.
   */
  formatError?: string;
}

/**
 * A host-memory copy of a context's conversation: the KV cache of its
 * sequence (llama_state_seq_get_data) and the tokens it holds. Restoring it
 * into a context of the same model and at least the same size continues the
 * conversation without decoding its prompt again.
 */
export interface SavedContextState {
  /** llama.cpp's serialized sequence state; its byteLength is the host memory it takes. */
  state: Buffer;
  /** The tokens in the KV cache, in order. */
  tokens: Int32Array;
}

/** {@link GenerateOptions} plus a callback for each text piece (LlamaContext.complete). */
export interface CompleteOptions extends GenerateOptions {
  /** Each text piece as it is generated, on the JS thread. */
  onText?: (piece: string) => void;
}

export interface ChatOptions extends GenerateOptions {
  /** A Jinja chat template to use instead of the model's own. */
  template?: string;
  /**
   * Constrain the reply: "json_object" (any JSON object) or "json_schema"
   * (that schema), as OpenAI's `response_format`; "text" = no constraint.
   * Not together with `grammar` or `jsonSchema`.
   */
  responseFormat?: ResponseFormat;
  /** Functions the model may call; its calls come back in `toolCalls` (see ChatMessage for the next turn). Not with grammar, jsonSchema or responseFormat. */
  tools?: readonly ToolDefinition[];
  /** Default "auto". */
  toolChoice?: ToolChoice;
  /** Several tool calls in one reply where the format supports it (default false). */
  parallelToolCalls?: boolean;
  /**
   * Tokens the model may think for (inside its thinking block) before the
   * block's end tag is forced (llama.cpp common's reasoning budget sampler).
   * 0 also turns thinking off where the template has a switch for it. Default:
   * unlimited.
   */
  reasoningBudget?: number;
}

/** Bytes llama.cpp allocated (or would allocate) on one device. */
export interface DeviceMemory {
  /** ggml device name, e.g. "CPU", "CUDA0". */
  device: string;
  /** Weights, bytes. */
  model: number;
  /** KV cache (and other per-context state), bytes. */
  context: number;
  /** Compute buffers, bytes. */
  compute: number;
}

/** Sizes and state of a context (LlamaContext.info). */
export interface ContextInfo {
  /** KV cache size, tokens. */
  contextSize: number;
  /** Logical batch size, tokens. */
  batchSize: number;
  threads: number;
  batchThreads: number;
  embeddings: boolean;
  /** Tokens held in the KV cache by sequence 0 (the context's own generate/chat). */
  kvTokens: number;
  /** Bytes of the sequence state saveState() would copy. */
  stateBytes: number;
  /** Sequences (conversations) the context holds. */
  sequences: number;
  /** KV cache cells of each sequence, tokens (contextSize / sequences). */
  sequenceSize: number;
  /** Tokens each sequence holds in the KV cache. */
  sequenceTokens: number[];
}
