/**
 * LlamaContext: a KV cache and compute buffers over a LlamaModel, with text
 * generation (streamed), chat, and embeddings. One operation runs at a time;
 * a second concurrent call fails with BUSY. The context remembers the tokens
 * in its KV cache, so a prompt that extends the previous one (a chat turn)
 * decodes only the new tokens.
 */
import { GenaiError } from "../errors";
import type { CancelToken, ContextHandle, GenerateParams } from "../binding/types";
import { withCancelToken } from "../binding/load";
import { optBool, optFunction, optInt, optNumber, optOneOf, optSignal, optString, options as validOptions } from "../util/validate";
import { CONTEXT_DEFAULTS, MAX_SEED, SAMPLING_DEFAULTS, defaultContextSize, defaultThreads, flashAttentionMode, randomSeed } from "./defaults";
import type { LlamaModel } from "./model";
import { LoraAdapter } from "./lora";
import { TextStream } from "./text-stream";
import { constraintParams } from "./constraints";
import { defaultKeepTokens } from "./overflow";
import { CHAT_KEYS, COMPLETE_KEYS, CONTEXT_KEYS, EMBED_KEYS, GENERATE_KEYS } from "./keys";
import { ChatReplyTracker, type TextMessage, formatNeedsParsing, nativeChatOptions, nativeMessages } from "./chat-format";
import { type ChatImage, nativeImages } from "./media";
import type {
  ChatEvent,
  ChatMessage,
  ChatOptions,
  ChatResult,
  CompleteOptions,
  CompletionResult,
  ContextInfo,
  ContextOptions,
  DeviceMemory,
  EmbedOptions,
  GenerateOptions,
  SavedContextState,
} from "./types";

/** The #running key of whole-context operations. */
const WHOLE = -1;
/** llama.cpp's LLAMA_MAX_SEQ (src/llama-cparams.h). */
const MAX_SEQUENCES = 256;

/** What a generation needs besides its options: prompt tokens, extra stops, the chat format, and how pieces and the result are shaped. */
interface Prepared<R> {
  tokens: Int32Array;
  /** A prompt with images: its text and images for libmtmd (tokens then empty). */
  media?: GenerateParams["media"];
  stops: string[];
  chat: GenerateParams["chat"];
  /** For the default keepTokens of a chat: its leading system messages. */
  keepMessages: { messages: ChatMessage[]; template: string | undefined } | undefined;
  onText: (piece: string) => void;
  finish: (r: CompletionResult) => R;
}

/** Validates one generation's options and fills every default (the seed: the given one, else the context's, else a new random one). */
function generateParams(o: ChatOptions, contextSeed: number | undefined): Omit<GenerateParams, "sequence" | "tokens" | "keepTokens" | "chat" | "media"> {
  const d = SAMPLING_DEFAULTS;
  const stop = o.stop ?? [];
  if (!Array.isArray(stop) || stop.some((s) => typeof s !== "string" || s.length === 0))
    throw new GenaiError("INVALID_ARGUMENT", "stop must be an array of non-empty strings");
  return {
    maxTokens: optInt("maxTokens", o.maxTokens, d.maxTokens, 1, 2 ** 30),
    temperature: optNumber("temperature", o.temperature, d.temperature, 0, 100),
    topK: optInt("topK", o.topK, d.topK, 0, 2 ** 30),
    topP: optNumber("topP", o.topP, d.topP, 0, 1),
    minP: optNumber("minP", o.minP, d.minP, 0, 1),
    repeatPenalty: optNumber("repeatPenalty", o.repeatPenalty, d.repeatPenalty, 1e-6, 100),
    presencePenalty: optNumber("presencePenalty", o.presencePenalty, d.presencePenalty, -100, 100),
    frequencyPenalty: optNumber("frequencyPenalty", o.frequencyPenalty, d.frequencyPenalty, -100, 100),
    penaltyLastN: optInt("penaltyLastN", o.penaltyLastN, d.penaltyLastN, 0, 2 ** 24),
    seed: o.seed === undefined ? (contextSeed ?? randomSeed()) : optInt("seed", o.seed, 0, 0, MAX_SEED),
    stop: [...stop],
    ignoreEos: optBool("ignoreEos", o.ignoreEos, d.ignoreEos),
    logprobs: o.logprobs === undefined ? -1 : optInt("logprobs", o.logprobs, 0, 0, 20),
    contextOverflow: optOneOf("contextOverflow", o.contextOverflow, ["error", "truncateMiddle", "shift"] as const, d.contextOverflow),
    ...constraintParams(o),
  };
}

export class LlamaContext implements AsyncDisposable {
  readonly model: LlamaModel;
  #native: ContextHandle | undefined;
  /** The context's seed option; undefined = a random seed per generation. */
  readonly #seed: number | undefined;
  /** Running operations by sequence; WHOLE for the whole context (state, embeddings). */
  readonly #running = new Map<number, { promise: Promise<unknown>; cancel: () => void }>();
  readonly #sequences: LlamaSequence[];
  #onDispose: (() => void)[] = [];

  private constructor(model: LlamaModel, handle: ContextHandle, seed: number | undefined, sequences: number) {
    this.model = model;
    this.#native = handle;
    this.#seed = seed;
    this.#sequences = Array.from({ length: sequences }, (_, i) => new LlamaSequence(this, i));
  }

  /** @internal use {@link LlamaModel.createContext} */
  static async create(model: LlamaModel, options: ContextOptions): Promise<LlamaContext> {
    const o = validOptions("options", options, CONTEXT_KEYS) as ContextOptions;
    const d = CONTEXT_DEFAULTS;
    const threads = optInt("threads", o.threads, defaultThreads(), 1, 1024);
    const fa = flashAttentionMode(o.flashAttention);
    const seed = o.seed === undefined ? undefined : optInt("seed", o.seed, 0, 0, MAX_SEED);
    const params = {
      contextSize: optInt("contextSize", o.contextSize, defaultContextSize(model.trainContextSize), 1, 2 ** 24),
      batchSize: optInt("batchSize", o.batchSize, d.batchSize, 1, 2 ** 20),
      threads,
      batchThreads: optInt("batchThreads", o.batchThreads, threads, 1, 1024),
      flashAttention: fa,
      embeddings: optBool("embeddings", o.embeddings, d.embeddings),
      sequences: optInt("sequences", o.sequences, 1, 1, MAX_SEQUENCES),
    };
    if (params.embeddings && params.sequences !== 1) throw new GenaiError("INVALID_ARGUMENT", "an embeddings context has one sequence");
    const handle = await model.handle().createContext(params);
    return new LlamaContext(model, handle, seed, params.sequences);
  }

  #handle(): ContextHandle {
    if (!this.#native) throw new GenaiError("DISPOSED", "the context has been disposed");
    return this.#native;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  /** Sizes and state: contextSize/batchSize in tokens, kvTokens held, stateBytes of the sequence state. */
  get info(): ContextInfo {
    return this.#handle().info();
  }

  /**
   * Sequence `index` (0 … sequences − 1) of this context: a conversation of
   * its own, generating together with the others. Sequence 0 is the one the
   * context's own generate/complete/chat use.
   * @throws GenaiError INVALID_ARGUMENT (no such sequence), DISPOSED
   */
  sequence(index: number): LlamaSequence {
    this.#handle();
    const seq = optInt("index", index, 0, 0, this.#sequences.length - 1);
    return this.#sequences[seq];
  }

  /**
   * Runs one operation per sequence at a time, or (WHOLE) one on the whole
   * context while no sequence works; anything else fails with BUSY. The work
   * gets a native cancel token that `signal` and dispose() cancel.
   */
  #exclusive<T>(seq: number, signal: AbortSignal | undefined, work: (token: CancelToken) => Promise<T>): Promise<T> {
    this.#handle();
    if (this.#running.has(WHOLE) || (seq === WHOLE ? this.#running.size > 0 : this.#running.has(seq)))
      return Promise.reject(
        new GenaiError(
          "BUSY",
          seq === WHOLE || this.#running.has(WHOLE) ? "the context is busy with another operation" : "the sequence is busy with another operation",
        ),
      );
    let cancel: (() => void) | undefined;
    const p = withCancelToken(signal, (token) => {
      cancel = () => token.cancel();
      return work(token);
    });
    this.#running.set(seq, { promise: p, cancel: () => cancel?.() });
    const clear = () => {
      if (this.#running.get(seq)?.promise === p) this.#running.delete(seq);
    };
    p.then(clear, clear);
    return p;
  }

  /**
   * Streams a completion of `prompt` (text, tokenized with BOS, or token ids).
   * Iterate the stream for text pieces; `stream.result` has the full result.
   * @throws (via the stream) GenaiError DISPOSED, BUSY, INVALID_ARGUMENT (bad options, prompt longer than the context).
   */
  generate(prompt: string | Int32Array, options: GenerateOptions = {}): TextStream<CompletionResult> {
    return this.generateOn(0, prompt, options);
  }

  /** @internal {@link generate} on a sequence (LlamaSequence) */
  generateOn(seq: number, prompt: string | Int32Array, options: GenerateOptions): TextStream<CompletionResult> {
    return this.#stream<CompletionResult, never>(seq, options, GENERATE_KEYS, async (_signal, push) => ({
      tokens: await this.#promptTokens(prompt),
      stops: [],
      chat: null,
      keepMessages: undefined,
      onText: push,
      finish: (r) => r,
    }));
  }

  /** Like {@link generate}, resolving with the whole result; `onText` sees each piece. */
  async complete(prompt: string | Int32Array, options: CompleteOptions = {}): Promise<CompletionResult> {
    return this.completeOn(0, prompt, options);
  }

  /** @internal {@link complete} on a sequence (LlamaSequence) */
  async completeOn(seq: number, prompt: string | Int32Array, options: CompleteOptions): Promise<CompletionResult> {
    const { onText: onTextOption, ...rest } = validOptions("options", options, COMPLETE_KEYS) as CompleteOptions;
    const onText = optFunction<(p: string) => void>("onText", onTextOption);
    const stream = this.generateOn(seq, prompt, rest);
    if (onText) for await (const piece of stream) onText(piece);
    return stream.result;
  }

  /**
   * Streams the assistant's reply to `messages`, formatted with the model's
   * chat template (or `options.template`) through llama.cpp common's chat
   * pipeline. Earlier turns already in the KV cache are not decoded again.
   * The reply is split the model's own way (its template's format): iterating
   * the stream yields the content, `stream.events()` content / reasoning /
   * tool-call deltas, and the result has `text` (content), `reasoning`,
   * `toolCalls` and `rawText`. With `tools`, a tool-call grammar keeps calls
   * to the tools' schemas; `reasoningBudget` bounds the thinking block (tokens).
   * @throws (via the stream) GenaiError INVALID_ARGUMENT: no chat template and none given, bad messages or tools,
   *   tools together with grammar/jsonSchema/responseFormat, a format whose grammar refuses its own generation prompt.
   */
  chat(messages: readonly ChatMessage[], options: ChatOptions = {}): TextStream<ChatResult, ChatEvent> {
    return this.chatOn(0, messages, options);
  }

  /** @internal {@link chat} on a sequence (LlamaSequence) */
  chatOn(seq: number, messages: readonly ChatMessage[], options: ChatOptions): TextStream<ChatResult, ChatEvent> {
    let msgs: TextMessage[];
    const images: ChatImage[] = [];
    let o: ChatOptions;
    let chatOptions: ReturnType<typeof nativeChatOptions>;
    let reasoningBudget: number;
    try {
      o = validOptions("options", options, CHAT_KEYS) as ChatOptions;
      msgs = nativeMessages(messages, images);
      if (images.length > 0 && !this.model.capabilities.vision)
        throw new GenaiError("INVALID_ARGUMENT", 'the messages hold images but the model has no vision projector: load it with { mmproj: "mmproj-….gguf" }');
      reasoningBudget = o.reasoningBudget === undefined ? -1 : optInt("reasoningBudget", o.reasoningBudget, 0, 0, 2 ** 30);
      chatOptions = nativeChatOptions({ ...o, enableThinking: reasoningBudget !== 0 });
      const constrained = o.grammar !== undefined || o.jsonSchema !== undefined || o.responseFormat !== undefined;
      if (constrained && chatOptions.tools.length > 0 && chatOptions.toolChoice !== "none")
        throw new GenaiError(
          "INVALID_ARGUMENT",
          "tools cannot be combined with grammar, jsonSchema or responseFormat (the tool-call grammar constrains the reply)",
        );
    } catch (e) {
      return new TextStream<ChatResult, ChatEvent>(() => Promise.reject(e));
    }
    return this.#stream<ChatResult, ChatEvent>(seq, o, CHAT_KEYS, async (signal, push, pushEvent) => {
      const template = o.template === undefined ? null : o.template;
      const { prompt, stops, format } = await this.model.renderChat(msgs, { addAssistant: true, template, ...chatOptions }, signal);
      // with images, libmtmd tokenizes the prompt (the same flags) with them on the worker thread
      const media = images.length > 0 ? { text: prompt, images: await nativeImages(images), addSpecial: true, parseSpecial: true } : null;
      const tokens = media ? new Int32Array(0) : await this.model.tokenize(prompt, { addSpecial: true, parseSpecial: true });
      const tracker = formatNeedsParsing(format) ? new ChatReplyTracker(this.model.handle(), format) : undefined;
      const emit = (events: ChatEvent[]) => {
        for (const ev of events) {
          pushEvent(ev);
          if (ev.type === "content") push(ev.text);
        }
      };
      return {
        tokens,
        media,
        stops,
        chat: { format, reasoningBudget },
        keepMessages: { messages: msgs, template: o.template },
        onText: (piece) => emit(tracker ? tracker.feed(piece) : [{ type: "content", text: piece }]),
        finish: (r): ChatResult => {
          if (!tracker) return { ...r, rawText: r.text, reasoning: "", toolCalls: [] };
          const { reply, events, formatError } = tracker.finish();
          emit(events);
          return {
            ...r,
            text: reply.content,
            rawText: r.text,
            reasoning: reply.reasoning,
            toolCalls: reply.toolCalls,
            ...(formatError ? { formatError } : {}),
          };
        },
      };
    });
  }

  /** Text or token ids as a prompt: text is tokenized with BOS (special-token text is not parsed). */
  async #promptTokens(input: string | Int32Array): Promise<Int32Array> {
    if (typeof input === "string") return this.model.tokenize(input, { addSpecial: true, parseSpecial: false });
    if (input instanceof Int32Array) return input;
    throw new GenaiError("INVALID_ARGUMENT", "prompt must be a string or an Int32Array of token ids");
  }

  /**
   * One generation: options validated, then (on the exclusive slot) `prepare`
   * gives the prompt tokens, extra stops and how pieces and the result are
   * shaped; keepTokens defaults per contextOverflow.
   */
  #stream<R, E>(
    seq: number,
    options: ChatOptions,
    keys: readonly string[],
    prepare: (signal: AbortSignal | undefined, push: (piece: string) => void, pushEvent: (e: E) => void) => Promise<Prepared<R>>,
  ): TextStream<R, E> {
    return new TextStream<R, E>((push, pushEvent) => {
      let params: Omit<GenerateParams, "sequence" | "tokens" | "keepTokens" | "chat" | "media">;
      let signal: AbortSignal | undefined;
      let o: ChatOptions;
      try {
        o = validOptions("options", options, keys) as ChatOptions;
        params = generateParams(o, this.#seed);
        signal = optSignal("signal", o.signal);
        optString("template", o.template);
        this.#handle();
      } catch (e) {
        return Promise.reject(e);
      }
      return this.#exclusive(seq, signal, async (cancel) => {
        const p = await prepare(signal, push, pushEvent);
        const keepTokens =
          o.keepTokens !== undefined
            ? optInt("keepTokens", o.keepTokens, 0, 0, 2 ** 30)
            : params.contextOverflow === "error" || p.media
              ? 0
              : await defaultKeepTokens(this.model, p.tokens, p.keepMessages);
        const r = await this.#handle().generate(
          { ...params, sequence: seq, tokens: p.tokens, keepTokens, stop: [...params.stop, ...p.stops], chat: p.chat, media: p.media ?? null },
          p.onText,
          cancel,
        );
        return p.finish(r);
      });
    });
  }

  /**
   * Pooled embedding of `text` (the model's pooling, else the mean over
   * tokens), L2-normalized unless `normalize: false`. Needs a context created
   * with `{ embeddings: true }`; the text must fit one batch.
   * @returns Float32Array of the model's embedding size.
   */
  async embed(text: string, options: EmbedOptions = {}): Promise<Float32Array> {
    if (typeof text !== "string") throw new GenaiError("INVALID_ARGUMENT", "text must be a string");
    const o = validOptions("options", options, EMBED_KEYS) as EmbedOptions;
    const normalize = optBool("normalize", o.normalize, true);
    return this.#exclusive(WHOLE, undefined, () => this.#handle().embed(text, normalize));
  }

  /**
   * Copies the KV state to host memory (on a worker thread): only the cells
   * of the context's sequence (llama_state_seq_get_data), written once into
   * the returned Buffer; `state.byteLength` is header (40 bytes) + payload.
   * @throws GenaiError BUSY, DISPOSED, OUT_OF_MEMORY (no host memory for the copy)
   */
  async saveState(): Promise<SavedContextState> {
    return this.#exclusive(WHOLE, undefined, () => this.#handle().saveState());
  }

  /**
   * Replaces the KV cache with a saved state; the next prompt that extends
   * `saved.tokens` decodes only its new tokens. The Buffer is read in place
   * on a worker thread (not copied): do not change it until this settles.
   * @throws GenaiError INVALID_ARGUMENT (state of another model/shape, more tokens than the context), BUSY, DISPOSED
   */
  async restoreState(saved: SavedContextState): Promise<void> {
    if (typeof saved !== "object" || saved === null || !Buffer.isBuffer(saved.state) || !(saved.tokens instanceof Int32Array))
      throw new GenaiError("INVALID_ARGUMENT", "saved must be { state: Buffer, tokens: Int32Array } from saveState()");
    return this.#exclusive(WHOLE, undefined, () => this.#handle().restoreState(saved.state, saved.tokens));
  }

  /** Bytes llama.cpp allocated per device for this context (KV cache, compute buffers) and its model's weights. */
  memory(): DeviceMemory[] {
    return this.#handle().memory();
  }

  /**
   * Applies these LoRA adapters (each with its scale; [] removes all) from the
   * next decode on, replacing the ones applied before. The KV cache was
   * computed with the old weights, so a changed set forgets every sequence's
   * history (the next prompt is decoded in full). The context holds the
   * adapters it applies.
   * @throws GenaiError INVALID_ARGUMENT (an adapter of another model, given twice, a scale outside [-100, 100]),
   *   DISPOSED (the context or an adapter), BUSY (any sequence working)
   */
  setLoras(loras: readonly { adapter: LoraAdapter; scale?: number }[]): void {
    if (!Array.isArray(loras)) throw new GenaiError("INVALID_ARGUMENT", "loras must be an array of { adapter, scale }");
    const list = loras.map((l, i) => {
      const o = validOptions(`loras[${i}]`, l, ["adapter", "scale"]) as { adapter?: unknown; scale?: number };
      if (!(o.adapter instanceof LoraAdapter)) throw new GenaiError("INVALID_ARGUMENT", `loras[${i}].adapter must be a LoraAdapter from model.loadLora()`);
      return { lora: o.adapter.handle(), scale: optNumber(`loras[${i}].scale`, o.scale, 1, -100, 100) };
    });
    this.#handle();
    if (this.#running.size > 0) throw new GenaiError("BUSY", "the context is busy with another operation");
    this.#handle().setLoras(list);
  }

  /** Forgets every conversation held in the KV cache (all sequences). @throws GenaiError BUSY (any sequence working), DISPOSED */
  clearHistory(): void {
    this.#handle();
    if (this.#running.size > 0) throw new GenaiError("BUSY", "the context is busy with another operation");
    this.#handle().clearHistory();
  }

  /** @internal LlamaSequence.clearHistory */
  clearHistoryOn(seq: number): void {
    this.#handle();
    if (this.#running.has(seq) || this.#running.has(WHOLE)) throw new GenaiError("BUSY", "the sequence is busy with another operation");
    this.#handle().clearHistory(seq);
  }

  /** @internal */
  onDispose(fn: () => void): void {
    this.#onDispose.push(fn);
  }

  /**
   * Aborts running work, waits for it to end, then frees the KV cache and
   * buffers. Idempotent; later calls on this context fail with DISPOSED.
   */
  async dispose(): Promise<void> {
    const handle = this.#native;
    if (!handle) return;
    this.#native = undefined;
    const running = [...this.#running.values()];
    for (const r of running) r.cancel();
    await Promise.all(running.map((r) => r.promise.catch(() => undefined)));
    handle.dispose();
    for (const fn of this.#onDispose.splice(0)) fn();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}

/**
 * One conversation of a context created with `{ sequences: n }`: its own part
 * of the KV cache and history, generating together with the context's other
 * sequences (their tokens decoded in one batch). One operation per sequence
 * at a time (BUSY otherwise); whole-context operations (saveState,
 * restoreState, clearHistory of the context, embed) wait for none of them and
 * fail with BUSY while any sequence works.
 */
export class LlamaSequence {
  readonly context: LlamaContext;
  /** 0 … sequences − 1. */
  readonly index: number;

  /** @internal use {@link LlamaContext.sequence} */
  constructor(context: LlamaContext, index: number) {
    this.context = context;
    this.index = index;
  }

  /** Tokens this sequence holds in the KV cache. */
  get kvTokens(): number {
    return this.context.info.sequenceTokens[this.index];
  }

  /** {@link LlamaContext.generate} on this sequence. */
  generate(prompt: string | Int32Array, options: GenerateOptions = {}): TextStream<CompletionResult> {
    return this.context.generateOn(this.index, prompt, options);
  }

  /** {@link LlamaContext.complete} on this sequence. */
  complete(prompt: string | Int32Array, options: CompleteOptions = {}): Promise<CompletionResult> {
    return this.context.completeOn(this.index, prompt, options);
  }

  /** {@link LlamaContext.chat} on this sequence. */
  chat(messages: readonly ChatMessage[], options: ChatOptions = {}): TextStream<ChatResult, ChatEvent> {
    return this.context.chatOn(this.index, messages, options);
  }

  /** Forgets this sequence's conversation. @throws GenaiError BUSY, DISPOSED */
  clearHistory(): void {
    this.context.clearHistoryOn(this.index);
  }
}
