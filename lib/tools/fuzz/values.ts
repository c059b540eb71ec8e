/** Shared pieces of the GGUF mutator (mutate.ts): the seed mix, the value tables of wrong values, and small document helpers. */
import { GgufValueType } from "../gguf/format";
import type { GgufDoc, RawScalar, RawValue } from "./gguf-doc";

export type Rng = () => number;

/** The seed of case `index` of a run with seed `runSeed` (a 32-bit mix of both). */
export function caseSeed(runSeed: number, index: number): number {
  let h = (Math.imul(runSeed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

export const U32 = GgufValueType.UINT32;
export const I32 = GgufValueType.INT32;
export const F32 = GgufValueType.FLOAT32;
export const STR = GgufValueType.STRING;

/** Hyperparameter keys (after "<arch>.") with values that are wrong for the seed model, and their usual type. */
export const HPARAMS: { key: string; type: GgufValueType; values: RawScalar[] }[] = [
  { key: "block_count", type: U32, values: [0, 1, 4, 6, 512, 513, 4096, 0xffffffff] },
  { key: "embedding_length", type: U32, values: [0, 1, 7, 32, 63, 65, 128, 0xffffffff] },
  { key: "feed_forward_length", type: U32, values: [0, 1, 171, 173, 0xffffffff] },
  { key: "attention.head_count", type: U32, values: [0, 1, 3, 7, 16, 64, 65, 0xffffffff] },
  { key: "attention.head_count_kv", type: U32, values: [0, 1, 3, 5, 8, 16, 0xffffffff] },
  { key: "attention.layer_norm_rms_epsilon", type: F32, values: [Number.NaN, -1e-5, Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY, 0, -0, 1e30] },
  { key: "attention.layer_norm_epsilon", type: F32, values: [Number.NaN, -1e-5, Number.POSITIVE_INFINITY] },
  { key: "rope.dimension_count", type: U32, values: [0, 1, 3, 7, 16, 64, 65, 0xffffffff] },
  { key: "rope.freq_base", type: F32, values: [Number.NaN, 0, -1, Number.POSITIVE_INFINITY, 1e-30] },
  { key: "rope.scaling.type", type: STR, values: ["yarn", "linear", "longrope", "bogus", ""] },
  { key: "rope.scaling.factor", type: F32, values: [Number.NaN, 0, -1, Number.POSITIVE_INFINITY] },
  { key: "rope.scaling.original_context_length", type: U32, values: [0, 1, 0xffffffff] },
  { key: "rope.scaling.yarn_log_multiplier", type: F32, values: [Number.NaN, -1] },
  { key: "rope.dimension_sections", type: I32, values: [0, -1, 9] },
  { key: "context_length", type: U32, values: [0, 1, 0xffffffff] },
  { key: "expert_count", type: U32, values: [1, 2, 8, 256, 257, 513, 0xffffffff] },
  { key: "expert_used_count", type: U32, values: [1, 2, 9, 0xffffffff] },
  { key: "expert_shared_count", type: U32, values: [1, 0xffffffff] },
  { key: "attention.key_length", type: U32, values: [0, 1, 7, 9, 4096, 0xffffffff] },
  { key: "attention.value_length", type: U32, values: [0, 1, 7, 9, 4096, 0xffffffff] },
  { key: "vocab_size", type: U32, values: [0, 1, 511, 513, 0xffffffff] },
  { key: "attention.sliding_window", type: U32, values: [0, 1, 0xffffffff] },
  { key: "attention.clamp_kqv", type: F32, values: [Number.NaN, -1] },
  { key: "attention.max_alibi_bias", type: F32, values: [Number.NaN, -1, Number.POSITIVE_INFINITY] },
  { key: "logit_scale", type: F32, values: [Number.NaN, 0, Number.POSITIVE_INFINITY] },
  { key: "attn_logit_softcapping", type: F32, values: [Number.NaN, 0, -1] },
  { key: "final_logit_softcapping", type: F32, values: [Number.NaN, 0, -1] },
  { key: "embedding_scale", type: F32, values: [Number.NaN, Number.POSITIVE_INFINITY] },
  { key: "residual_scale", type: F32, values: [Number.NaN] },
  { key: "attention.scale", type: F32, values: [Number.NaN, 0, Number.NEGATIVE_INFINITY] },
  { key: "leading_dense_block_count", type: U32, values: [0xffffffff, 6] },
  { key: "pooling_type", type: U32, values: [0xffffffff, 7] },
  { key: "attention.causal", type: GgufValueType.BOOL, values: [false] },
];

/** Per-layer array forms of keys llama.cpp reads with get_key_or_arr. */
export const ARRAY_HPARAMS = ["attention.head_count", "attention.head_count_kv", "feed_forward_length"];

export const ARCHS = [
  "gpt2",
  "qwen2",
  "qwen3moe",
  "mamba",
  "mamba2",
  "bert",
  "t5",
  "gemma2",
  "gemma3",
  "phi3",
  "falcon",
  "rwkv6",
  "deepseek2",
  "granitemoe",
  "llama4",
  "mpt",
  "bloom",
  "no-such-arch",
  "",
];
export const TOKENIZERS = ["gpt2", "bert", "t5", "rwkv", "plamo2", "none", "no_vocab", "bogus", ""];
export const SPECIAL_IDS = [
  "bos",
  "eos",
  "unknown",
  "padding",
  "seperator",
  "eot",
  "eom",
  "mask",
  "fim_pre",
  "fim_suf",
  "fim_mid",
  "fim_pad",
  "fim_rep",
  "fim_sep",
];
export const BAD_IDS = [-1, -2, 511, 512, 513, 0x7fffffff, 0xffffffff];
export const ALIGNMENTS = [0, 1, 2, 3, 4, 8, 16, 24, 48, 64, 4096, 1 << 20, 0x80000000, 0xffffffff];
export const GGML_TYPES = [1, 8, 2, 30, 3, 4, 39, 40, 100, 0xffffffff];

export const pick = <T>(rng: Rng, a: readonly T[]): T => a[rng() % a.length];
export const chance = (rng: Rng, p: number): boolean => rng() / 0x100000000 < p;

export function archOf(doc: GgufDoc): string {
  const a = doc.kv.find((k) => k.key === "general.architecture");
  return a && a.value.type === STR ? String(a.value.value) : "llama";
}

export function setKv(doc: GgufDoc, key: string, value: RawValue): void {
  const i = doc.kv.findIndex((k) => k.key === key);
  if (i >= 0) doc.kv[i] = { key, value };
  else doc.kv.push({ key, value });
}

export function getArr(doc: GgufDoc, key: string): RawScalar[] | undefined {
  const k = doc.kv.find((x) => x.key === key);
  return k && k.value.type === GgufValueType.ARRAY ? k.value.items : undefined;
}

export const fmt = (v: RawScalar): string => (typeof v === "string" ? JSON.stringify(v) : typeof v === "number" && Object.is(v, -0) ? "-0" : String(v));

/** A value of a different GGUF type than the key expects. */
export function wrongType(rng: Rng, expected: GgufValueType): { value: RawValue; desc: string } {
  const options: { value: RawValue; desc: string }[] = [
    { value: { type: STR, value: "5" }, desc: 'string "5"' },
    { value: { type: F32, value: 5.5 }, desc: "float32 5.5" },
    { value: { type: GgufValueType.INT64, value: -1n }, desc: "int64 -1" },
    { value: { type: GgufValueType.UINT64, value: 1n << 40n }, desc: "uint64 2^40" },
    { value: { type: GgufValueType.BOOL, value: true }, desc: "bool true" },
    { value: { type: GgufValueType.UINT8, value: 5 }, desc: "uint8 5" },
    { value: { type: GgufValueType.INT32, value: -5 }, desc: "int32 -5" },
    { value: { type: GgufValueType.ARRAY, itemType: STR, items: ["a"] }, desc: 'string[] ["a"]' },
    { value: { type: GgufValueType.ARRAY, itemType: U32, items: [] }, desc: "uint32[] []" },
    { value: { type: GgufValueType.ARRAY, itemType: GgufValueType.ARRAY, items: [] }, desc: "array[] []" },
  ];
  const o = options.filter((x) => x.value.type !== expected);
  return pick(rng, o);
}

// ---- semantic (structure-level) mutations: edit the doc, return a description
