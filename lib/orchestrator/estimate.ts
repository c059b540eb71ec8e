/**
 * Memory estimates for llama.cpp models before loading them.
 * - {@link estimateLlamaFromMetadata}: from GGUF metadata alone (file layout and hyperparameters).
 * - {@link measureLlamaMemory}: llama.cpp's own numbers from a load that allocates nothing
 *   (`no_alloc`, as its fit routine in common/fit.cpp does) — exact for weights and KV cache.
 */
import { GenaiError } from "../errors";
import { readGgufSummary, type GgufSummary } from "../models/metadata";
import { native } from "../binding/load";
import { CONTEXT_DEFAULTS, LOAD_DEFAULTS, flashAttentionMode } from "../llm/defaults";
import type { DeviceMemory } from "../llm/types";
import { optBool, optInt, options, requireString } from "../util/validate";
import { initBackends, resolveDevice } from "../system/backends";
import { checkPlacement, type RpcTimeouts } from "../system/rpc";

export interface LlamaMemoryEstimate {
  /** Weights, bytes (the file's tensor data). */
  weights: number;
  /** KV cache for `contextSize` tokens, bytes. */
  kv: number;
  /** Compute buffers, bytes (a rough bound; see {@link estimateLlamaFromMetadata}). */
  compute: number;
  total: number;
}

/**
 * KV cache bytes for `contextSize` tokens with f16 K and V:
 *   layers × contextSize × kvHeads × (headDimK + headDimV) × 2 bytes,
 * the layout of llama.cpp's llama_kv_cache (src/llama-kv-cache.cpp); head
 * dims from `<arch>.attention.key_length` / `value_length`, else embedding / heads.
 */
export function kvCacheBytes(s: GgufSummary, contextSize: number): number {
  const heads = s.headCount ?? 1;
  const headDim = (s.embeddingLength ?? 0) / heads;
  const k = Number(s.raw[`${s.architecture}.attention.key_length`] ?? headDim);
  const v = Number(s.raw[`${s.architecture}.attention.value_length`] ?? headDim);
  return (s.layerCount ?? 0) * contextSize * (s.headCountKv ?? heads) * (k + v) * 2;
}

/**
 * From metadata alone. Weights: the tensor-data part of the file (all layers
 * on one device). KV: {@link kvCacheBytes}. Compute buffers, approximating
 * ggml's graph allocator for one micro-batch u = min(batchSize, 512):
 *   logits u × vocab × 4 + mask u × contextSize × 2 + activations u × (ff + embd) × 2
 *   (+ u × contextSize × heads × 4 for the attention scores without flash attention);
 * fitted to llama.cpp's own no-allocation measurement (see the tests for the error).
 * `compute` is the buffer of the device that runs the layers; with layers on a
 * GPU, llama.cpp also allocates a host-side compute buffer that this does not count.
 */
export async function estimateLlamaFromMetadata(
  path: string,
  contextSize: number,
  opts: { batchSize?: number; flashAttention?: boolean } = {},
): Promise<LlamaMemoryEstimate> {
  requireString("path", path);
  if (contextSize === undefined) throw new GenaiError("INVALID_ARGUMENT", "contextSize (tokens) is required");
  optInt("contextSize", contextSize, 0, 1, 2 ** 24);
  const o = options("options", opts, ["batchSize", "flashAttention"]) as { batchSize?: number; flashAttention?: boolean };
  optInt("batchSize", o.batchSize, CONTEXT_DEFAULTS.batchSize, 1, 2 ** 20);
  optBool("flashAttention", o.flashAttention, true);
  return estimateFromSummary(await readGgufSummary(path), contextSize, o);
}

/** {@link estimateLlamaFromMetadata} from a GGUF summary already read (a remote file's, before download). */
export function estimateFromSummary(s: GgufSummary, contextSize: number, o: { batchSize?: number; flashAttention?: boolean } = {}): LlamaMemoryEstimate {
  const weights = s.tensorDataBytes;
  const kv = kvCacheBytes(s, contextSize);
  const embd = s.embeddingLength ?? 0;
  const ff = Number(s.raw[`${s.architecture}.feed_forward_length`] ?? 4 * embd);
  const u = Math.min(o.batchSize ?? CONTEXT_DEFAULTS.batchSize, 512); // 512: llama.cpp's n_ubatch default
  let compute = u * (s.vocabSize ?? 0) * 4 + u * contextSize * 2 + u * (ff + embd) * 2;
  if (o.flashAttention === false) compute += u * contextSize * (s.headCount ?? 1) * 4;
  return { weights, kv, compute, total: weights + kv + compute };
}

/** Options of {@link measureLlamaMemory}: the load and context options that change what llama.cpp allocates. */
export interface MeasureLlamaOptions {
  /** Layers on the GPU (default LOAD_DEFAULTS.gpuLayers: all). */
  gpuLayers?: number;
  /** Tokens (default 0: the model's training context, as llama.cpp). */
  contextSize?: number;
  /** Tokens per decode call (default CONTEXT_DEFAULTS.batchSize). */
  batchSize?: number;
  /** An embeddings context (its micro-batch is the whole batch). */
  embeddings?: boolean;
  /** "auto" (default), "on", "off" or a boolean, as the context option (LlamaModel.createContext). */
  flashAttention?: "auto" | "on" | "off" | boolean;
  /** Where the layers go, as LoadModelOptions.device (default GENAI_NATIVE_DEVICE, else "auto"). */
  device?: string;
  /** RPC servers taking layers, as LoadModelOptions.rpcServers (default GENAI_NATIVE_RPC, else none): their devices are measured too. */
  rpcServers?: string[];
  /** As LoadModelOptions.rpcTimeouts. */
  rpcTimeouts?: RpcTimeouts;
  /** Share of layers per device, as LoadModelOptions.tensorSplit. */
  tensorSplit?: number[];
}

/**
 * llama.cpp's per-device bytes for this model and context, measured without
 * allocating, on the devices a load with the same `device` option would use.
 * With flashAttention "auto", llama.cpp turns flash attention off where the
 * device running the layers has no kernel for the model's head size (CUDA has
 * none for a head size of 8, stories260K's); the compute buffer then holds the
 * attention scores (see {@link estimateLlamaFromMetadata}).
 * @throws GenaiError INVALID_ARGUMENT (an unknown option, a value out of range), MODEL_NOT_FOUND, INVALID_MODEL, BACKEND_ERROR
 */
export async function measureLlamaMemory(path: string, opts: MeasureLlamaOptions = {}): Promise<DeviceMemory[]> {
  requireString("path", path);
  const o = options("options", opts, [
    "gpuLayers",
    "contextSize",
    "batchSize",
    "embeddings",
    "flashAttention",
    "device",
    "rpcServers",
    "rpcTimeouts",
    "tensorSplit",
  ]) as MeasureLlamaOptions;
  const fa = flashAttentionMode(o.flashAttention);
  const device = resolveDevice(o.device);
  const placement = checkPlacement(o);
  await initBackends();
  return native().estimateMemory(
    path,
    { gpuLayers: optInt("gpuLayers", o.gpuLayers, LOAD_DEFAULTS.gpuLayers, -1, 100000), device, ...placement },
    // contextSize 0: llama.cpp's default, the model's training context
    {
      contextSize: optInt("contextSize", o.contextSize, 0, 0, 2 ** 24),
      batchSize: optInt("batchSize", o.batchSize, CONTEXT_DEFAULTS.batchSize, 1, 2 ** 20),
      embeddings: optBool("embeddings", o.embeddings, CONTEXT_DEFAULTS.embeddings),
      flashAttention: fa,
    },
  );
}
