/**
 * LlamaModel: GGUF weights loaded by llama.cpp on a native thread.
 *
 *   const model = await LlamaModel.load("model.gguf", { onProgress: (f) => ..., signal });
 *   const ctx = await model.createContext({ contextSize: 2048 });
 *   for await (const piece of ctx.generate("Once upon a time")) process.stdout.write(piece);
 *   await model.dispose();
 */
import os from "node:os";
import { GenaiError } from "../errors";
import { native, withCancelToken } from "../binding/load";
import type { ModelHandle, NativeChatOptions } from "../binding/types";
import { checkGgufFile, type GgufSummary, parseGgufHeader, summarizeGguf } from "../models/metadata";
import { initBackends, resolveDevice } from "../system/backends";
import { checkPlacement } from "../system/rpc";
import { optBool, optFunction, optInt, optSignal, optString, requireString, options as validOptions, tokenIds } from "../util/validate";
import { nativeChatOptions, nativeMessages } from "./chat-format";
import { LlamaContext } from "./context";
import { LoraAdapter } from "./lora";
import { LOAD_DEFAULTS } from "./defaults";
import { CHAT_TEMPLATE_KEYS, DETOKENIZE_KEYS, LOAD_KEYS, TOKENIZE_KEYS } from "./keys";
import type {
  ChatFormat,
  ChatMessage,
  ChatTemplateOptions,
  ContextOptions,
  DetokenizeOptions,
  LoadModelOptions,
  ModelLoadTimings,
  ModelMetadata,
  ParsedChatReply,
  TokenizeOptions,
} from "./types";

export class LlamaModel implements AsyncDisposable {
  readonly path: string;
  readonly metadata: ModelMetadata;
  /** @internal llama.cpp's training context size (n_ctx_train), tokens. */
  readonly trainContextSize: number;
  /** Loaded with `vocabOnly`: tokenizer and metadata only, no weights (createContext rejects). */
  readonly vocabOnly: boolean;
  /** Where load() spent its time (ms). */
  readonly loadTimings: ModelLoadTimings;
  /** The input kinds besides text the model takes: images (and audio) with the projector given as `mmproj`. */
  readonly capabilities: Readonly<{ vision: boolean; audio: boolean }>;
  /** @internal the BOS token id (llama_vocab_bos; -1 when the vocabulary has none). */
  readonly bosToken: number;
  #native: ModelHandle | undefined;
  #contexts = new Set<LlamaContext>();
  /** createContext() calls still running: dispose() waits for them (each frees what it made). */
  #creating = new Set<Promise<LlamaContext>>();
  #disposing: Promise<void> | undefined;

  private constructor(path: string, handle: ModelHandle, summary: GgufSummary, t: { metadataMs: number; backendsMs: number; nativeMs: number }) {
    this.path = path;
    this.#native = handle;
    const info = handle.info();
    this.bosToken = info.bos;
    const { checkMs, llamaLoadMs } = info.loadTimings;
    this.loadTimings = { metadataMs: t.metadataMs, backendsMs: t.backendsMs, checkMs, llamaLoadMs, otherMs: Math.max(0, t.nativeMs - checkMs - llamaLoadMs) };
    this.trainContextSize = info.trainContextSize;
    this.vocabOnly = info.vocabOnly === true;
    this.capabilities = Object.freeze({ vision: info.projector?.vision === true, audio: info.projector?.audio === true });
    this.metadata = { ...summary, parameters: info.parameters, sizeBytes: info.sizeBytes, description: info.description, chatTemplate: info.chatTemplate };
  }

  /**
   * Loads a GGUF model on a native thread (the JS thread only validates).
   * @throws GenaiError MODEL_NOT_FOUND, INVALID_MODEL (directory, empty, not GGUF, truncated, unsupported),
   *   INVALID_ARGUMENT (bad options), ABORTED (signal), OUT_OF_MEMORY.
   */
  static async load(path: string, options: LoadModelOptions = {}): Promise<LlamaModel> {
    requireString("path", path);
    const o = validOptions("options", options, LOAD_KEYS) as LoadModelOptions;
    const gpuLayers =
      o.gpuLayers === undefined || o.gpuLayers === "max" ? LOAD_DEFAULTS.gpuLayers : optInt("gpuLayers", o.gpuLayers, LOAD_DEFAULTS.gpuLayers, -1, 100000);
    const useMmap = o.useMmap === undefined ? undefined : optBool("useMmap", o.useMmap, true);
    const vocabOnly = optBool("vocabOnly", o.vocabOnly, LOAD_DEFAULTS.vocabOnly);
    const device = resolveDevice(o.device);
    const onProgress = optFunction<(f: number) => void>("onProgress", o.onProgress);
    const signal = optSignal("signal", o.signal);
    const mmproj = optString("mmproj", o.mmproj);
    const projectorThreads = optInt("projectorThreads", o.projectorThreads, os.availableParallelism?.() ?? os.cpus().length, 1, 1024);
    if (mmproj !== undefined && vocabOnly) throw new GenaiError("INVALID_ARGUMENT", "mmproj needs the model's weights: not with vocabOnly");
    const placement = checkPlacement(o);
    if (signal?.aborted) throw new GenaiError("ABORTED", "model load was aborted before it started");
    let t0 = performance.now();
    const fileBytes = await checkGgufFile(path);
    let metadataMs = performance.now() - t0;
    t0 = performance.now();
    await initBackends();
    const backendsMs = performance.now() - t0;
    const addon = native();
    t0 = performance.now();
    const handle = await withCancelToken(signal, (cancel) =>
      addon.loadModel(path, { gpuLayers, useMmap, vocabOnly, device, ...placement }, onProgress, cancel),
    );
    const nativeMs = performance.now() - t0;
    if (signal?.aborted) {
      // aborted while the last progress events were on their way: free what loaded
      handle.dispose();
      throw new GenaiError("ABORTED", "model load was aborted");
    }
    t0 = performance.now();
    let summary: GgufSummary;
    try {
      if (mmproj !== undefined) {
        const threads = projectorThreads;
        await withCancelToken(signal, (cancel) => handle.loadProjector(mmproj, { threads, device: gpuLayers === 0 ? "cpu" : device }, cancel));
      }
      // the header the native load checked (ggml's reader), else parsed again (@huggingface/gguf, worker thread)
      summary = summarizeGguf(path, handle.ggufHeader() ?? (await parseGgufHeader(path)), fileBytes);
    } catch (e) {
      handle.dispose();
      throw e;
    }
    metadataMs += performance.now() - t0;
    return new LlamaModel(path, handle, summary, { metadataMs, backendsMs, nativeMs });
  }

  /** @internal */
  handle(): ModelHandle {
    if (!this.#native) throw new GenaiError("DISPOSED", "the model has been disposed");
    return this.#native;
  }

  get disposed(): boolean {
    return this.#native === undefined;
  }

  /** Text → token ids, on a worker thread. @throws GenaiError DISPOSED, INVALID_ARGUMENT */
  async tokenize(text: string, options: TokenizeOptions = {}): Promise<Int32Array> {
    requireString("text", text);
    const o = validOptions("options", options, TOKENIZE_KEYS) as TokenizeOptions;
    const addSpecial = optBool("addSpecial", o.addSpecial, true);
    const parseSpecial = optBool("parseSpecial", o.parseSpecial, false);
    return this.handle().tokenize(text, addSpecial, parseSpecial);
  }

  /** Token ids → text, on a worker thread. @throws GenaiError DISPOSED, INVALID_ARGUMENT (ids outside the vocabulary) */
  async detokenize(tokens: Int32Array | readonly number[], options: DetokenizeOptions = {}): Promise<string> {
    const arr = tokenIds("tokens", tokens);
    const o = validOptions("options", options, DETOKENIZE_KEYS) as DetokenizeOptions;
    const removeSpecial = optBool("removeSpecial", o.removeSpecial, false);
    const unparseSpecial = optBool("unparseSpecial", o.unparseSpecial, false);
    return this.handle().detokenize(arr, removeSpecial, unparseSpecial);
  }

  /**
   * Formats messages with the model's own Jinja chat template (llama.cpp
   * common's renderer), or `template` when given.
   * With `tools`, the template shows them its own way and the returned
   * `format` carries the grammar and parser of its tool-call syntax
   * (common_chat_templates_apply).
   * @returns the prompt text, extra stop strings the template implies, and the reply's format (for parseChat).
   * @throws GenaiError INVALID_ARGUMENT when the model has no template and none is given, or the
   *   template is refused or fails (limits: native/llm/chat_template_check.h); ABORTED (signal).
   */
  async applyChatTemplate(
    messages: readonly ChatMessage[],
    options: ChatTemplateOptions = {},
  ): Promise<{ prompt: string; stops: string[]; format: ChatFormat }> {
    const o = validOptions("options", options, CHAT_TEMPLATE_KEYS) as ChatTemplateOptions;
    const msgs = nativeMessages(messages);
    const template = o.template === undefined ? null : requireString("template", o.template);
    const addAssistant = optBool("addAssistant", o.addAssistant, true);
    const chatOptions = nativeChatOptions(o);
    const signal = optSignal("signal", o.signal);
    return this.renderChat(msgs, { addAssistant, template, ...chatOptions }, signal);
  }

  /**
   * @internal applyChatTemplate on inputs already checked (nativeMessages,
   * nativeChatOptions): chat() renders through this, not through the public
   * method, so a request's messages and tools are checked and serialized once.
   */
  async renderChat(
    msgs: ChatMessage[],
    options: NativeChatOptions,
    signal: AbortSignal | undefined,
  ): Promise<{ prompt: string; stops: string[]; format: ChatFormat }> {
    if (signal?.aborted) throw new GenaiError("ABORTED", "applyChatTemplate was aborted before it started");
    const handle = this.handle();
    // the signal rejects at once; the native render (bounded: native/llm/chat_template_check.h) stops at its next step
    return withCancelToken(signal, (token) => handle.applyChatTemplate(msgs, options, token), {
      rejectOnAbort: "applyChatTemplate was aborted",
    });
  }

  /**
   * Splits a reply generated under `format` (from applyChatTemplate) into
   * content, reasoning and tool calls with llama.cpp's parser for the
   * template (common_chat_parse). `partial`: the reply may be cut mid-way
   * (a stream so far). chat() does this itself; this is for replies
   * generated elsewhere. Tool calls without an id in the model's syntax get "".
   * @throws GenaiError INVALID_ARGUMENT when a complete reply does not parse as the format, DISPOSED
   */
  parseChat(text: string, format: ChatFormat, options: { partial?: boolean } = {}): ParsedChatReply {
    if (typeof text !== "string") throw new GenaiError("INVALID_ARGUMENT", "text must be a string");
    const partial = optBool("partial", (validOptions("options", options, ["partial"]) as { partial?: boolean }).partial, false);
    return this.handle().parseChat(text, partial, format);
  }

  /**
   * Loads a LoRA adapter (GGUF, general.type "adapter") for this model on a
   * native thread; apply it with {@link LlamaContext.setLoras}.
   * @throws GenaiError MODEL_NOT_FOUND, INVALID_MODEL (not an adapter, or one for another architecture or
   *   shape: llama.cpp's message), INVALID_ARGUMENT (a vocabOnly model), ABORTED, DISPOSED
   */
  async loadLora(path: string, options: { signal?: AbortSignal } = {}): Promise<LoraAdapter> {
    const file = requireString("path", path);
    const signal = optSignal("signal", (validOptions("options", options, ["signal"]) as { signal?: AbortSignal }).signal);
    const handle = this.handle();
    const native = await withCancelToken(signal, (token) => handle.loadLora(file, token));
    return new LoraAdapter(native);
  }

  /**
   * Creates a context (KV cache + compute buffers) on a native thread.
   * @throws GenaiError DISPOSED, INVALID_ARGUMENT (also: a vocabOnly model), OUT_OF_MEMORY (the KV cache would not fit the devices' free memory).
   */
  async createContext(options: ContextOptions = {}): Promise<LlamaContext> {
    if (this.#disposing || !this.#native) throw new GenaiError("DISPOSED", "the model has been disposed");
    if (this.vocabOnly) throw new GenaiError("INVALID_ARGUMENT", "the model was loaded with vocabOnly: it has no weights to create a context from");
    const creation = this.#create(options);
    this.#creating.add(creation);
    try {
      return await creation;
    } finally {
      this.#creating.delete(creation);
    }
  }

  async #create(options: ContextOptions): Promise<LlamaContext> {
    const ctx = await LlamaContext.create(this, options);
    if (this.#disposing) {
      // dispose() was called while the native thread built it: not the caller's to keep
      await ctx.dispose();
      throw new GenaiError("DISPOSED", "the model was disposed while the context was being created");
    }
    this.#contexts.add(ctx);
    ctx.onDispose(() => this.#contexts.delete(ctx));
    return ctx;
  }

  /**
   * Disposes every context of this model (aborting their running work and
   * waiting for it; contexts still being created are freed when they are
   * done, and their createContext() rejects with DISPOSED), then releases
   * the weights. Idempotent: every call returns the same promise.
   */
  dispose(): Promise<void> {
    this.#disposing ??= this.#dispose();
    return this.#disposing;
  }

  async #dispose(): Promise<void> {
    await Promise.allSettled([...this.#creating]);
    await Promise.all([...this.#contexts].map((c) => c.dispose()));
    this.#native?.dispose();
    this.#native = undefined;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}
