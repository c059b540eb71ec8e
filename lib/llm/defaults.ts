/**
 * The LLM API's defaults and limits: the one place each is set. The native
 * addon receives every field filled in (lib/binding/types.ts) and only
 * range-checks it.
 */
import os from "node:os";
import { optOneOf } from "../util/validate";
import type { GenerateOptions } from "./types";

/**
 * Sampling defaults of one generation: llama.cpp's `common_params_sampling`
 * (common/common.h: top_k 40, top_p 0.95, min_p 0.05, temp 0.8,
 * penalty_last_n 64, penalty_repeat 1.0), and 256 tokens at most.
 */
export const SAMPLING_DEFAULTS: Readonly<
  Required<Omit<GenerateOptions, "seed" | "stop" | "signal" | "grammar" | "jsonSchema" | "logitBias" | "logprobs" | "keepTokens">>
> = Object.freeze({
  maxTokens: 256,
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  repeatPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  penaltyLastN: 64,
  ignoreEos: false,
  /** Stop (or refuse a too-long prompt) rather than drop tokens; see GenerateOptions.contextOverflow. */
  contextOverflow: "error",
});

/** Context defaults (the KV cache size comes from the model, see {@link defaultContextSize}). */
export const CONTEXT_DEFAULTS: Readonly<{ batchSize: number; flashAttention: "auto" | "on" | "off"; embeddings: boolean; maxContextSize: number }> =
  Object.freeze({
    /** Tokens per llama_decode call while reading a prompt (llama.cpp's n_batch default). */
    batchSize: 512,
    flashAttention: "auto",
    embeddings: false,
    /** Upper bound of the default KV cache size, tokens (a model's training context can be 128 K or more). */
    maxContextSize: 4096,
  });

/** Model load defaults. */
export const LOAD_DEFAULTS: Readonly<{ gpuLayers: number; vocabOnly: boolean }> = Object.freeze({
  /** All layers on the GPU (llama.cpp's -1). */
  gpuLayers: -1,
  vocabOnly: false,
});

/**
 * The largest seed a caller may give: 2^32−2. llama.cpp's samplers take a
 * uint32 and read 2^32−1 (LLAMA_DEFAULT_SEED, include/llama.h) as "pick one at random".
 */
export const MAX_SEED = 0xfffffffe;

/** A uniformly random seed in [0, MAX_SEED], for a generation given none. */
export function randomSeed(): number {
  return Math.floor(Math.random() * (MAX_SEED + 1));
}

/** Threads for generation: the logical cores less one, left to the host's event loop (at least 1). */
export function defaultThreads(): number {
  const cores = os.availableParallelism?.() ?? os.cpus().length;
  return Math.max(1, cores - 1);
}

/** The default KV cache size in tokens: the model's training context, at most CONTEXT_DEFAULTS.maxContextSize. */
export function defaultContextSize(trainContextSize: number): number {
  return trainContextSize > 0 ? Math.min(trainContextSize, CONTEXT_DEFAULTS.maxContextSize) : CONTEXT_DEFAULTS.maxContextSize;
}

/**
 * The flashAttention option as llama.cpp's mode: "auto" | "on" | "off", a
 * boolean for on/off, undefined for CONTEXT_DEFAULTS.flashAttention.
 * @throws GenaiError INVALID_ARGUMENT for anything else
 */
export function flashAttentionMode(v: unknown): "auto" | "on" | "off" {
  if (typeof v === "boolean") return v ? "on" : "off";
  return optOneOf("flashAttention", v, ["auto", "on", "off"] as const, CONTEXT_DEFAULTS.flashAttention);
}
