/**
 * The native binding contract: what genai_native.node exports, typed once and
 * named like the C++ classes that implement it (native/addon.cpp registers
 * them). Internal: the public API (lib/index.ts) never re-exports these; its
 * option and result types live in each topic's `types.ts`.
 *
 * Every parameter object below is complete: the TypeScript layer fills each
 * default (lib/llm/defaults.ts, lib/diffusion/defaults.ts) and C++ reads and
 * range-checks every field, falling back only to llama.cpp's or
 * stable-diffusion.cpp's own `*_default_params()` for the fields marked
 * optional. Every error the addon throws or rejects with is a GenaiError
 * (the class is handed to the addon by `Addon.init`).
 */
import type { EngineGenerateParams } from "../diffusion/engine";
import type { DenoiserReads } from "../diffusion/types";
import type { ChatFormat, ChatMessage, CompletionResult, ContextInfo, DeviceMemory, ParsedChatReply } from "../llm/types";
import type { ParsedHeader } from "../models/gguf-worker";
import type { GenaiError, GenaiErrorCode } from "../errors";

/** ModelHandle::ApplyChatTemplate's options (native/llm/chat_format.h ChatInputsFromJs); tools' parameters as JSON text. */
export interface NativeChatOptions {
  addAssistant: boolean;
  template: string | null;
  tools: { name: string; description: string; parameters: string }[];
  toolChoice: "auto" | "required" | "none";
  parallelToolCalls: boolean;
  enableThinking: boolean;
}

/** native/util/jobs.h CancelToken: a flag a native job polls. */
export interface CancelToken {
  cancel(): void;
  readonly cancelled: boolean;
}

/** ModelHandle::Info (native/llm/model.cpp). */
export interface ModelInfo {
  description: string;
  sizeBytes: number;
  parameters: number;
  trainContextSize: number;
  embeddingSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
  /** Loaded with vocabOnly: layers, heads and kvHeads are 0. */
  vocabOnly: boolean;
  vocabSize: number;
  bos: number;
  eos: number;
  hasEncoder: boolean;
  hasDecoder: boolean;
  chatTemplate: string | null;
  /** Native steps of the load (ms): the GGUF pre-check, then llama_model_load_from_file. */
  loadTimings: { checkMs: number; llamaLoadMs: number };
  /** The multimodal projector (loadProjector), or null. */
  projector: { path: string; vision: boolean; audio: boolean } | null;
}

/** loadModel()'s options (native/llm/model.cpp). */
export interface ModelLoadParams {
  /** Layers on the GPU; -1 = all. */
  gpuLayers: number;
  /** Absent: llama.cpp's choice (llama_model_default_params). */
  useMmap?: boolean;
  vocabOnly: boolean;
  /** A resolved device spec (lib/system/backends.ts resolveDevice). */
  device: string;
  /** "host:port" of rpc-servers whose devices take layers (native/system/rpc.h). */
  rpcServers?: string[];
  rpcTimeouts?: RpcTimeouts;
  /** Share of layers per device: the RPC servers' devices first, then the local GPUs. */
  tensorSplit?: number[];
}

/** Bounds on an RPC server's answers (native/system/rpc_relay.h), ms. */
export interface RpcTimeouts {
  /** TCP connect and handshake (default 5,000). */
  connectMs?: number;
  /** The longest wait for one answer, a whole graph compute included (default 60,000). */
  callMs?: number;
}

/** A device of an RPC server (native/system/rpc.cpp rpcDevices). */
export interface NativeRpcDevice {
  /** ggml's name, "RPC0", "RPC1", … in the order servers were connected. */
  name: string;
  description: string;
  /** The server, "host:port". */
  endpoint: string;
  /** Bytes, as of the last refresh (connect, refreshRpcDevices). */
  freeBytes: number;
  totalBytes: number;
  /** The link failed: the server went away or stopped answering. */
  failed: boolean;
  error?: string;
}

/** ModelHandle::CreateContext's options (native/llm/context.cpp). */
export interface ContextParams {
  /** Tokens. */
  contextSize: number;
  /** Tokens. */
  batchSize: number;
  /** Tokens; absent: llama_context_default_params().n_ubatch. */
  microBatchSize?: number;
  threads: number;
  batchThreads: number;
  flashAttention: "auto" | "on" | "off";
  embeddings: boolean;
  /** Sequences (conversations) in the KV cache, each with contextSize / sequences cells. */
  sequences: number;
}

/** ContextHandle::Generate's params (native/llm/generate.cpp). */
export interface GenerateParams {
  /** The sequence it continues, 0 … sequences − 1. */
  sequence: number;
  tokens: Int32Array;
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repeatPenalty: number;
  presencePenalty: number;
  frequencyPenalty: number;
  penaltyLastN: number;
  /** 0 … 2^32−2 (2^32−1 is llama.cpp's LLAMA_DEFAULT_SEED, "random"). */
  seed: number;
  stop: string[];
  ignoreEos: boolean;
  /** GBNF; "" = none. */
  grammar: string;
  /** JSON schema text; "" = none. */
  jsonSchema: string;
  /** [token id, bias] pairs. */
  logitBias: [number, number][];
  contextOverflow: "error" | "truncateMiddle" | "shift";
  /** Tokens never dropped by the overflow strategy. */
  keepTokens: number;
  /** -1: off; 0 … 20 alternatives per token. */
  logprobs: number;
  /** A chat reply: the template's format (tool-call grammar, thinking tags) and the reasoning budget in tokens (-1 = unlimited); null otherwise. */
  chat: { format: ChatFormat; reasoningBudget: number } | null;
  /**
   * A prompt with images (tokens then empty): `text` holds one media marker per image,
   * tokenized by libmtmd with the images (native/llm/media.h); null otherwise.
   */
  media: {
    text: string;
    images: (Uint8Array | { width: number; height: number; rgb: Uint8Array })[];
    addSpecial: boolean;
    parseSpecial: boolean;
  } | null;
}

/** ContextHandle::Generate's result: the public CompletionResult as C++ builds it (generate.cpp ResultToJs). */
export type GenerateResult = CompletionResult;

/** ContextHandle::Info: the public ContextInfo. */
export type { ContextInfo };

/** native/llm/context.h ContextHandle. */
export interface ContextHandle {
  info(): ContextInfo;
  saveState(): Promise<{ state: Buffer; tokens: Int32Array }>;
  restoreState(state: Buffer, tokens: Int32Array): Promise<void>;
  memory(): DeviceMemory[];
  generate(params: GenerateParams, onText: (piece: string) => void, cancel: CancelToken): Promise<GenerateResult>;
  embed(text: string, normalize: boolean): Promise<Float32Array>;
  /** One sequence, or (no argument) every sequence. */
  clearHistory(sequence?: number): void;
  /** The adapters applied from the next decode on; a changed set clears every sequence's history. */
  setLoras(loras: { lora: LoraHandle; scale: number }[]): void;
  dispose(): void;
}

/** native/llm/model.h ModelHandle. */
export interface ModelHandle {
  info(): ModelInfo;
  /** The header the load checked (ggml's gguf reader), as gguf-worker.ts's ParsedHeader; null when GENAI_NATIVE_GGUF_CHECK=0 skipped the check. */
  ggufHeader(): ParsedHeader | null;
  tokenize(text: string, addSpecial: boolean, parseSpecial: boolean): Promise<Int32Array>;
  detokenize(tokens: Int32Array, removeSpecial: boolean, unparseSpecial: boolean): Promise<string>;
  applyChatTemplate(
    messages: ChatMessage[],
    options: NativeChatOptions,
    cancel?: CancelToken,
  ): Promise<{ prompt: string; stops: string[]; format: ChatFormat }>;
  /** common_chat_parse with the format's parser; throws INVALID_ARGUMENT when `text` (complete, partial=false) does not parse. */
  parseChat(text: string, partial: boolean, format: ChatFormat): ParsedChatReply;
  loadLora(path: string, cancel?: CancelToken): Promise<LoraHandle>;
  /** libmtmd's projector for this model (native/llm/media.h); `device`: a resolved spec, "cpu" keeps it on the CPU. */
  loadProjector(path: string, options: { threads: number; device: string }, cancel?: CancelToken): Promise<{ vision: boolean; audio: boolean }>;
  createContext(params: ContextParams): Promise<ContextHandle>;
  dispose(): void;
}

/** native/llm/lora.h LoraHandle. */
export interface LoraHandle {
  info(): { path: string; alpha: number; metadataCount: number };
  dispose(): void;
}

/** A ggml device (native/system/system.cpp SystemInfo). */
export interface DeviceInfo {
  name: string;
  description: string;
  type: "cpu" | "gpu" | "igpu" | "accel" | "rpc" | "other";
  backend: string;
  freeBytes: number;
  totalBytes: number;
  /** RPC devices: the server ("host:port"); memory as of its last refresh. */
  endpoint?: string;
}

export interface VersionsInfo {
  addon: string;
  llamaCppCommit: string;
  llamaCppSource: string;
  ggml: string;
  ggmlCommit: string;
  napi: number;
  /** The stable-diffusion.cpp commit the diffusion engine was built from; null without the engine. */
  stableDiffusionCommit: string | null;
}

export interface SystemInfoResult {
  devices: DeviceInfo[];
  backends: string[];
  cpuThreads: number;
  cpuFeatures: string;
  gpuOffload: boolean;
  mmap: boolean;
  versions: VersionsInfo;
}

/** Pixels as the addon takes and returns them (row-major, 8 bits per channel). */
export interface NativeImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

/** loadDiffusionModel()'s options (native/diffusion/diffusion.cpp). Paths are "" when not given. */
export interface DiffusionLoadParams {
  model: string;
  diffusionModel: string;
  vae: string;
  clipL: string;
  clipG: string;
  t5xxl: string;
  /** sd_ctx_params_t.llm_path, llm_vision_path, clip_vision_path, control_net_path, photo_maker_path ("" = none). */
  llm: string;
  llmVision: string;
  clipVision: string;
  controlNet: string;
  /** sd_ctx_params_t.ip_adapter_path */
  ipAdapter: string;
  photoMaker: string;
  taesd: string;
  /** sd_ctx_params_t.tae_preview_only: the TAESD makes previews only (needs taesd). */
  taesdPreviewOnly: boolean;
  /** "" = the file's own types. */
  weightType: string;
  /** Absent: sd.cpp's sd_get_num_physical_cores(). */
  threads?: number;
  flashAttention: boolean;
  vaeTiling: boolean;
  keepClipOnCpu: boolean;
  keepVaeOnCpu: boolean;
  offloadParamsToCpu: boolean;
  device: string;
}

/**
 * DiffusionHandle::Generate's params: the engine interface's validated
 * parameters (lib/diffusion/params.ts fills them); the optional fields fall
 * back to sd_img_gen_params_init().
 */
export type DiffusionGenerateParams = EngineGenerateParams;

/** native/diffusion/diffusion.cpp DiffusionHandle (only in builds with the diffusion engine). */
export interface DiffusionHandle {
  info(): {
    samplers: string[];
    schedulers: string[];
    /** sd.cpp's sampler for this model's family (sd_get_default_sample_method). */
    defaultSampler: string;
    /** sd.cpp's scheduler for each sampler on this model (sd_get_default_scheduler). */
    defaultSchedulers: Record<string, string>;
    imageGeneration: boolean;
    controlNet: boolean;
    /** The PhotoMaker version loaded (generate's photoMaker needs one; 2: the file's name contains "v2"), 0: none. */
    photoMaker: 0 | 1 | 2;
    /** IP-Adapter weights were loaded (generate's ipAdapter needs them). */
    ipAdapter: boolean;
    /** A TAESD was loaded, decoding or for previews only (a "tae" preview needs one). */
    taesd: boolean;
    /** The generation inputs the model's denoiser reads (native/diffusion/part_check.h DenoiserInputs); generate refuses the others. */
    reads: DenoiserReads;
  };
  generate(params: DiffusionGenerateParams, onEvent: (e: Record<string, unknown>) => void, cancel: CancelToken): Promise<(NativeImage & { data: Buffer })[]>;
  cancel(mode: "all" | "newLatents"): void;
  dispose(): void;
}

/** loadUpscaler()'s options (native/diffusion/upscaler.cpp). */
export interface UpscalerLoadParams {
  model: string;
  /** Absent: sd.cpp's sd_get_num_physical_cores(). */
  threads?: number;
  /** Pixels; 0 = never tile. */
  tileSize: number;
  device: string;
}

/** native/diffusion/upscaler.cpp UpscalerHandle. */
export interface UpscalerHandle {
  scale(): number;
  upscale(args: { image: NativeImage; passes: number }, cancel: CancelToken): Promise<(NativeImage & { data: Buffer })[]>;
  dispose(): void;
}

/** What genai_native.node exports (native/addon.cpp). */
export interface Addon {
  /**
   * Hands the addon the JS error class it constructs for every error, and the
   * list of codes (lib/errors.ts ERROR_CODES); C++ checks that each code it
   * uses is in the list. Called once per thread by lib/binding/load.ts.
   * @throws Error when a native code is missing from the list
   */
  init(errorClass: typeof GenaiError, codes: readonly GenaiErrorCode[]): void;
  CancelToken: new () => CancelToken;
  loadModel(path: string, params: ModelLoadParams, onProgress: ((fraction: number) => void) | undefined, cancel: CancelToken): Promise<ModelHandle>;
  estimateMemory(
    path: string,
    model: Pick<ModelLoadParams, "gpuLayers" | "device" | "rpcServers" | "rpcTimeouts" | "tensorSplit">,
    context: Pick<ContextParams, "contextSize" | "batchSize" | "embeddings" | "flashAttention">,
  ): Promise<DeviceMemory[]>;
  systemInfo(): SystemInfoResult;
  versions(): VersionsInfo;
  setLogLevel(level: string): void;
  /**
   * native/util/log.cpp: the engines' log lines at or above the level go to
   * `fn` (on this thread's event loop, through an unref'd ThreadSafeFunction)
   * instead of stderr; null: stderr again. Process-wide: the last caller's
   * thread owns it. @throws INVALID_ARGUMENT when `fn` is neither
   */
  setLogger(fn: ((level: "debug" | "info" | "warn" | "error", message: string, source: "llama" | "ggml" | "sd") => void) | null): void;
  /** Cancels this thread's (env's) running jobs and waits, up to 5 s, for their native threads to finish. */
  shutdown(): void;
  capabilities: { llm: boolean; diffusion: boolean };
  /** The folder the .node file was loaded from (its shared libraries and backend modules are there). */
  addonDir: string;
  /** Registers a ggml backend module (process-wide, idempotent). @throws BACKEND_ERROR when it does not load */
  loadBackend(path: string): { name: string; path: string; devices: string[] };
  /** The backend modules registered so far. */
  backendModules(): { name: string; path: string }[];
  /** The first device a load with this device spec uses ("CPU" when none). @throws INVALID_ARGUMENT when the spec names nothing registered */
  deviceName(spec: string): string;
  /** Connects to rpc-servers ahead of a load. @throws INVALID_ARGUMENT, BACKEND_ERROR (down, not answering, other protocol) */
  connectRpcServers(options: { rpcServers: string[]; rpcTimeouts?: RpcTimeouts }): Promise<void>;
  /** The devices of every RPC server connected so far. */
  rpcDevices(): NativeRpcDevice[];
  /** Asks each healthy server for its free/total memory. */
  refreshRpcDevices(): Promise<void>;
  /** Serves this process's devices to RPC clients until the process ends. Rejects BACKEND_ERROR if the server stops. */
  startRpcServer(host: string, port: number, options: { device: string; threads: number; cache?: string }): Promise<void>;
  /** Present when capabilities.diffusion is true. */
  loadDiffusionModel?(params: DiffusionLoadParams, onProgress: ((fraction: number) => void) | undefined, cancel: CancelToken): Promise<DiffusionHandle>;
  /** Present when capabilities.diffusion is true. */
  loadUpscaler?(params: UpscalerLoadParams, cancel: CancelToken): Promise<UpscalerHandle>;
}
