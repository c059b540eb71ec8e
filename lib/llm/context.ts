/**
 * LlamaContext: a KV cache and compute buffers over a LlamaModel, with text
 * generation (streamed), chat, and embeddings. One operation runs at a time;
 * a second concurrent call fails with BUSY. The context remembers the tokens
 * in its KV cache, so a prompt that extends the previous one (a chat turn)
 * decodes only the new tokens.
 */
import os from "node:os";
import { GenaiError, wrapErrors } from "../errors";
import { native, type DeviceMemory, type NativeContext, type NativeContextInfo, type NativeGenerateResult } from "../native";
import { optBool, optFunction, optInt, optNumber, optObject, optOneOf, optSignal, optString } from "../validate";
import type { ChatMessage, LlamaModel } from "./model";
import { TextStream } from "./text-stream";

export interface ContextOptions {
  /** KV cache size in tokens (default min(training context, 4096)). llama.cpp may round it up. */
  contextSize?: number;
  /** Logical batch size in tokens for prompt decoding (default 512). */
  batchSize?: number;
  /** Threads for generation (default max(1, logical cores − 1), leaving a core to the host's event loop). */
  threads?: number;
  /** Threads for prompt decoding (default = threads). */
  batchThreads?: number;
  /** Default sampling seed for this context (default random per generation). */
  seed?: number;
  /** Flash attention: "auto" (llama.cpp decides), "on", "off" (default "auto"). */
  flashAttention?: "auto" | "on" | "off" | boolean;
  /** Create an embedding context (use {@link LlamaContext.embed}). */
  embeddings?: boolean;
}

/** Sampling and stopping for one generation. Defaults follow llama.cpp's common sampling defaults. */
export interface GenerateOptions {
  /** Most tokens to generate (default 256). */
  maxTokens?: number;
  /** Softmax temperature; 0 = greedy (default 0.8). */
  temperature?: number;
  /** Keep the k most likely tokens; 0 = off (default 40). */
  topK?: number;
  /** Nucleus sampling: smallest set with cumulative probability ≥ p; 1 = off (default 0.95). */
  topP?: number;
  /** Drop tokens with probability < minP × the top token's; 0 = off (default 0.05). */
  minP?: number;
  /** Repetition penalty (> 0; 1 = off, default 1). */
  repeatPenalty?: number;
  /** Presence penalty (0 = off). */
  presencePenalty?: number;
  /** Frequency penalty (0 = off). */
  frequencyPenalty?: number;
  /** How many recent tokens the penalties look at (default 64). */
  penaltyLastN?: number;
  /** Sampling seed (0 … 2^32−1); default the context's seed, else random. */
  seed?: number;
  /** Stop before any of these strings; the stop string is not included in the text. */
  stop?: string[];
  /** Keep going past end-of-generation tokens (benchmarks). */
  ignoreEos?: boolean;
  /**
   * Aborting ends generation within one token (and interrupts a long prompt
   * decode through llama.cpp's abort callback). The stream then ends normally
   * and the result has stopReason "aborted" with the text generated so far.
   */
  signal?: AbortSignal;
}

export interface CompletionTimings {
  /** Tokens in the prompt. */
  promptTokens: number;
  /** Prompt tokens already in the KV cache (not decoded again). */
  reusedTokens: number;
  /** Prompt decode time in ms. */
  promptMs: number;
  /** Tokens generated. */
  generatedTokens: number;
  /** Generation time in ms (first sample to last token). */
  generationMs: number;
}

export interface CompletionResult {
  /** The generated text (without the prompt and without a matched stop string). */
  text: string;
  /** Tokens generated. */
  tokenCount: number;
  /**
   * Why generation ended: end-of-generation token, maxTokens reached, a stop
   * string matched, aborted by the signal/dispose, or the context is full.
   */
  stopReason: "eos" | "maxTokens" | "stop" | "aborted" | "contextFull";
  timings: CompletionTimings;
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

export interface ChatOptions extends GenerateOptions {
  /** A Jinja chat template to use instead of the model's own. */
  template?: string;
}

const UINT32_MAX = 0xffffffff;

function generateParams(o: GenerateOptions): Record<string, unknown> {
  const stop = o.stop;
  if (stop !== undefined && (!Array.isArray(stop) || stop.some((s) => typeof s !== "string" || s.length === 0)))
    throw new GenaiError("INVALID_ARGUMENT", "stop must be an array of non-empty strings");
  return {
    maxTokens: optInt("maxTokens", o.maxTokens, 256, 1, 2 ** 30),
    temperature: optNumber("temperature", o.temperature, 0.8, 0, 100),
    topK: optInt("topK", o.topK, 40, 0, 2 ** 30),
    topP: optNumber("topP", o.topP, 0.95, 0, 1),
    minP: optNumber("minP", o.minP, 0.05, 0, 1),
    repeatPenalty: optNumber("repeatPenalty", o.repeatPenalty, 1, 1e-6, 100),
    presencePenalty: optNumber("presencePenalty", o.presencePenalty, 0, -100, 100),
    frequencyPenalty: optNumber("frequencyPenalty", o.frequencyPenalty, 0, -100, 100),
    penaltyLastN: optInt("penaltyLastN", o.penaltyLastN, 64, 0, 2 ** 24),
    seed: o.seed === undefined ? undefined : optInt("seed", o.seed, 0, 0, UINT32_MAX),
    stop,
    ignoreEos: optBool("ignoreEos", o.ignoreEos, false),
  };
}

export class LlamaContext implements AsyncDisposable {
  readonly model: LlamaModel;
  #native: NativeContext | undefined;
  #running: Promise<unknown> | undefined;
  #cancelRunning: (() => void) | undefined;
  #onDispose: (() => void)[] = [];

  private constructor(model: LlamaModel, handle: NativeContext) {
    this.model = model;
    this.#native = handle;
  }

  /** @internal use {@link LlamaModel.createContext} */
  static async create(model: LlamaModel, options: ContextOptions): Promise<LlamaContext> {
    const o = optObject("options", options) as ContextOptions;
    const cores = os.availableParallelism?.() ?? os.cpus().length;
    const threads = optInt("threads", o.threads, Math.max(1, cores - 1), 1, 1024);
    const fa = typeof o.flashAttention === "boolean" ? (o.flashAttention ? "on" : "off") : optOneOf("flashAttention", o.flashAttention, ["auto", "on", "off"] as const, "auto");
    const params = {
      contextSize: o.contextSize === undefined ? undefined : optInt("contextSize", o.contextSize, 0, 1, 2 ** 24),
      batchSize: optInt("batchSize", o.batchSize, 512, 1, 2 ** 20),
      threads,
      batchThreads: optInt("batchThreads", o.batchThreads, threads, 1, 1024),
      seed: o.seed === undefined ? Math.floor(Math.random() * UINT32_MAX) : optInt("seed", o.seed, 0, 0, UINT32_MAX),
      flashAttention: fa,
      embeddings: optBool("embeddings", o.embeddings, false),
    };
    const handle = await wrapErrors(() => model.handle().createContext(params));
    return new LlamaContext(model, handle);
  }

  #handle(): NativeContext {
    if (!this.#native) throw new GenaiError("DISPOSED", "the context has been disposed");
    return this.#native;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  /** Sizes and state: contextSize/batchSize in tokens, kvTokens held, stateBytes of the sequence state. */
  get info(): NativeContextInfo {
    return this.#handle().info();
  }

  /** Runs one operation at a time; a concurrent one fails with BUSY. */
  #exclusive<T>(work: () => Promise<T>, cancel?: () => void): Promise<T> {
    this.#handle();
    if (this.#running) return Promise.reject(new GenaiError("BUSY", "the context is busy with another operation"));
    const p = work();
    this.#running = p;
    this.#cancelRunning = cancel;
    const clear = () => {
      if (this.#running === p) {
        this.#running = undefined;
        this.#cancelRunning = undefined;
      }
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
    return this.#stream(prompt, options, false, []);
  }

  /** Like {@link generate}, resolving with the whole result; `onText` sees each piece. */
  async complete(prompt: string | Int32Array, options: GenerateOptions & { onText?: (piece: string) => void } = {}): Promise<CompletionResult> {
    const onText = optFunction<(p: string) => void>("onText", options.onText);
    const stream = this.generate(prompt, options);
    if (onText) for await (const piece of stream) onText(piece);
    return stream.result;
  }

  /**
   * Streams the assistant's reply to `messages`, formatted with the model's
   * chat template (or `options.template`). Earlier turns already in the KV
   * cache are not decoded again.
   * @throws (via the stream) GenaiError INVALID_ARGUMENT when the model has no chat template and none is given.
   */
  chat(messages: readonly ChatMessage[], options: ChatOptions = {}): TextStream<CompletionResult> {
    return this.#stream(messages, options, true, []);
  }

  #stream(input: string | Int32Array | readonly ChatMessage[], options: ChatOptions, isChat: boolean, extraStops: string[]): TextStream<CompletionResult> {
    return new TextStream<CompletionResult>((push) => {
      let params: Record<string, unknown>;
      let signal: AbortSignal | undefined;
      try {
        const o = optObject("options", options) as ChatOptions;
        params = generateParams(o);
        signal = optSignal("signal", o.signal);
        optString("template", o.template);
        this.#handle();
      } catch (e) {
        return Promise.reject(e);
      }
      const cancel = new (native().CancelToken)();
      return this.#exclusive(async () => {
        const onAbort = () => cancel.cancel();
        signal?.addEventListener("abort", onAbort, { once: true });
        try {
          let tokens: Int32Array;
          let stops = extraStops;
          if (isChat) {
            const { prompt, stops: tmplStops } = await this.model.applyChatTemplate(input as ChatMessage[], { template: options.template });
            stops = [...stops, ...tmplStops];
            tokens = await this.model.tokenize(prompt, { addSpecial: true, parseSpecial: true });
          } else if (typeof input === "string") {
            tokens = await this.model.tokenize(input, { addSpecial: true, parseSpecial: false });
          } else if (input instanceof Int32Array) {
            tokens = input;
          } else {
            throw new GenaiError("INVALID_ARGUMENT", "prompt must be a string or an Int32Array of token ids");
          }
          if (signal?.aborted) cancel.cancel();
          const allStops = [...((params.stop as string[] | undefined) ?? []), ...stops];
          const result: NativeGenerateResult = await wrapErrors(() =>
            this.#handle().generate({ ...params, tokens, stop: allStops.length ? allStops : undefined }, push, cancel),
          );
          return result;
        } finally {
          signal?.removeEventListener("abort", onAbort);
        }
      }, () => cancel.cancel());
    });
  }

  /**
   * Pooled embedding of `text` (the model's pooling, else the mean over
   * tokens), L2-normalized unless `normalize: false`. Needs a context created
   * with `{ embeddings: true }`; the text must fit one batch.
   * @returns Float32Array of the model's embedding size.
   */
  async embed(text: string, options: { normalize?: boolean } = {}): Promise<Float32Array> {
    if (typeof text !== "string") throw new GenaiError("INVALID_ARGUMENT", "text must be a string");
    const normalize = optBool("normalize", options.normalize, true);
    return this.#exclusive(() => wrapErrors(() => this.#handle().embed(text, normalize)));
  }

  /** Copies the KV state to host memory (on a worker thread). @throws GenaiError BUSY, DISPOSED */
  async saveState(): Promise<SavedContextState> {
    return this.#exclusive(() => wrapErrors(() => this.#handle().saveState()));
  }

  /**
   * Replaces the KV cache with a saved state; the next prompt that extends
   * `saved.tokens` decodes only its new tokens.
   * @throws GenaiError INVALID_ARGUMENT (state of another model/shape, more tokens than the context), BUSY, DISPOSED
   */
  async restoreState(saved: SavedContextState): Promise<void> {
    if (typeof saved !== "object" || saved === null || !Buffer.isBuffer(saved.state) || !(saved.tokens instanceof Int32Array))
      throw new GenaiError("INVALID_ARGUMENT", "saved must be { state: Buffer, tokens: Int32Array } from saveState()");
    return this.#exclusive(() => wrapErrors(() => this.#handle().restoreState(saved.state, saved.tokens)));
  }

  /** Bytes llama.cpp allocated per device for this context (KV cache, compute buffers) and its model's weights. */
  memory(): DeviceMemory[] {
    return this.#handle().memory();
  }

  /** Forgets the conversation held in the KV cache. @throws GenaiError BUSY, DISPOSED */
  clearHistory(): void {
    if (this.#running) throw new GenaiError("BUSY", "the context is busy with another operation");
    this.#handle().clearHistory();
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
    this.#cancelRunning?.();
    const running = this.#running;
    if (running) await running.catch(() => undefined);
    handle.dispose();
    for (const fn of this.#onDispose.splice(0)) fn();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}
