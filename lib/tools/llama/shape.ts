/**
 * Shapes, presets and the tensor plan of a llama-architecture model, as the
 * llama.cpp `llama` loader reads them (deps/llama.cpp: src/models/llama.cpp
 * `load_arch_tensors`, src/llama-model.cpp hparams).
 */
import { GgmlType } from "../gguf/writer";

/** The shape of a llama-architecture transformer. */
export interface LlamaShape {
  /** Transformer blocks (`llama.block_count`). */
  layers: number;
  /** Hidden size (`llama.embedding_length`); a multiple of `heads`, and of 32 for q8_0/q4_0. */
  embd: number;
  /** Feed-forward size (`llama.feed_forward_length`); a multiple of 32 for q8_0/q4_0. */
  ff: number;
  /** Attention heads (`llama.attention.head_count`); embd / heads (the head size) must be even. */
  heads: number;
  /** KV heads (`llama.attention.head_count_kv`); must divide `heads` (GQA). */
  kvHeads: number;
  /** Tokens in the vocabulary (at least 260; 262 with the chat template). */
  vocab: number;
  /** Training context length in tokens (`llama.context_length`). */
  ctx: number;
}

/** Storage type of the 2-D weight matrices (norm weights are always f32). */
export type WeightType = "f32" | "f16" | "q8_0" | "q4_0";

/**
 * Presets. Parameter counts from `llamaParameterCount` (per layer:
 * 2·embd² (q,o) + 2·embd·kvDim (k,v) + 3·embd·ff + 2·embd; plus
 * 2·vocab·embd (token_embd, output) + embd (output_norm)).
 */
export const PRESETS = {
  /**
   * 4 layers, embd 256, 8 heads (head 32), 4 KV heads, ff 768, vocab 2048:
   * layer = 131072 + 65536 + 589824 + 512 = 786944; ×4 = 3147776;
   * + 2·2048·256 + 256 = 1048832 → 4,196,608 params (~4.2 M).
   * q8_0 ≈ 4.5 MB, f32 ≈ 16.8 MB.
   */
  tiny: { layers: 4, embd: 256, ff: 768, heads: 8, kvHeads: 4, vocab: 2048, ctx: 2048 },
  /**
   * 8 layers, embd 512, 8 heads (head 64), 4 KV heads, ff 1536, vocab 8192:
   * layer = 524288 + 262144 + 2359296 + 1024 = 3146752; ×8 = 25174016;
   * + 2·8192·512 + 512 = 8389120 → 33,563,136 params (~34 M).
   */
  small: { layers: 8, embd: 512, ff: 1536, heads: 8, kvHeads: 4, vocab: 8192, ctx: 4096 },
  /**
   * 12 layers, embd 768, 12 heads (head 64), 4 KV heads, ff 2048, vocab 16000:
   * layer = 1179648 + 393216 + 4718592 + 1536 = 6292992; ×12 = 75515904;
   * + 2·16000·768 + 768 = 24576768 → 100,092,672 params (~100 M).
   * f16 ≈ 200 MB (the benchmarks' F16 shape).
   */
  base: { layers: 12, embd: 768, ff: 2048, heads: 12, kvHeads: 4, vocab: 16000, ctx: 4096 },
  /**
   * 16 layers, embd 1024, 16 heads (head 64), 8 KV heads, ff 2816, vocab 32000:
   * layer = 2097152 + 1048576 + 8650752 + 2048 = 11798528; ×16 = 188776448;
   * + 2·32000·1024 + 1024 = 65537024 → 254,313,472 params (~254 M).
   * q8_0 ≈ 270 MB.
   */
  medium: { layers: 16, embd: 1024, ff: 2816, heads: 16, kvHeads: 8, vocab: 32000, ctx: 4096 },
} as const satisfies Record<string, LlamaShape>;

export type PresetName = keyof typeof PRESETS;

/** A simple ChatML template (detected by llama.cpp as "chatml"). */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Ggml type and `general.file_type` of each weight type. */
export const WEIGHT_TYPES: Record<WeightType, { ggml: GgmlType; fileType: number }> = {
  // general.file_type = llama_ftype (include/llama.h)
  f32: { ggml: GgmlType.F32, fileType: 0 }, // LLAMA_FTYPE_ALL_F32
  f16: { ggml: GgmlType.F16, fileType: 1 }, // LLAMA_FTYPE_MOSTLY_F16
  q4_0: { ggml: GgmlType.Q4_0, fileType: 2 }, // LLAMA_FTYPE_MOSTLY_Q4_0
  q8_0: { ggml: GgmlType.Q8_0, fileType: 7 }, // LLAMA_FTYPE_MOSTLY_Q8_0
};

/** A tensor of the llama architecture: name, ggml shape (ne[0] first) and type. */
export interface LlamaTensorSpec {
  name: string;
  shape: number[];
  type: GgmlType;
  /** "norm" tensors are filled with 1.0, "weight" tensors with random values. */
  init: "norm" | "weight";
}

/** Checks a shape for the llama loader and the chosen type. @throws RangeError */
export function validateShape(shape: LlamaShape, type: WeightType = "q8_0", chatTemplate = false, userTokens = 0): void {
  const ints: (keyof LlamaShape)[] = ["layers", "embd", "ff", "heads", "kvHeads", "vocab", "ctx"];
  for (const k of ints) {
    const v = shape[k];
    if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`${k} must be a positive integer, got ${v}`);
  }
  if (!(type in WEIGHT_TYPES)) throw new RangeError(`type must be one of ${Object.keys(WEIGHT_TYPES).join(", ")}, got ${type}`);
  if (shape.embd % shape.heads !== 0) throw new RangeError(`embd ${shape.embd} is not a multiple of heads ${shape.heads}`);
  if ((shape.embd / shape.heads) % 2 !== 0) throw new RangeError(`head size ${shape.embd / shape.heads} must be even (RoPE)`);
  if (shape.heads % shape.kvHeads !== 0) throw new RangeError(`heads ${shape.heads} is not a multiple of kvHeads ${shape.kvHeads}`);
  if (type === "q8_0" || type === "q4_0") {
    if (shape.embd % 32 !== 0) throw new RangeError(`${type} needs embd to be a multiple of 32, got ${shape.embd}`);
    if (shape.ff % 32 !== 0) throw new RangeError(`${type} needs ff to be a multiple of 32, got ${shape.ff}`);
  }
  const minVocab = 3 + 256 + (chatTemplate ? 2 : 0) + userTokens + 1;
  if (shape.vocab < minVocab)
    throw new RangeError(`vocab must be at least ${minVocab} (3 special + 256 byte tokens + chat and user tokens + pieces), got ${shape.vocab}`);
  if (shape.vocab > 0x7fffffff) throw new RangeError(`vocab too large: ${shape.vocab}`);
}

/** Number of parameters (tensor elements, norms included) of a llama model of `shape`. */
export function llamaParameterCount(shape: LlamaShape, opts: { tieEmbeddings?: boolean } = {}): number {
  const { layers, embd, ff, heads, kvHeads, vocab } = shape;
  const kvDim = (embd / heads) * kvHeads;
  const perLayer = 2 * embd * embd + 2 * embd * kvDim + 3 * embd * ff + 2 * embd;
  return layers * perLayer + (opts.tieEmbeddings ? 1 : 2) * vocab * embd + embd;
}

/**
 * The tensors of a llama model, in file order, with the names and shapes the
 * llama.cpp loader expects (src/models/llama.cpp). Shapes are ggml order:
 * ne[0] (the input/contiguous dimension) first.
 */
export function llamaTensorPlan(shape: LlamaShape, type: WeightType = "q8_0", opts: { tieEmbeddings?: boolean } = {}): LlamaTensorSpec[] {
  const w = WEIGHT_TYPES[type].ggml;
  const { layers, embd, ff, heads, kvHeads, vocab } = shape;
  const headDim = embd / heads;
  const kvDim = headDim * kvHeads;
  const out: LlamaTensorSpec[] = [
    { name: "token_embd.weight", shape: [embd, vocab], type: w, init: "weight" },
    { name: "output_norm.weight", shape: [embd], type: GgmlType.F32, init: "norm" },
  ];
  if (!opts.tieEmbeddings) out.push({ name: "output.weight", shape: [embd, vocab], type: w, init: "weight" });
  for (let i = 0; i < layers; i++) {
    const b = `blk.${i}`;
    out.push(
      { name: `${b}.attn_norm.weight`, shape: [embd], type: GgmlType.F32, init: "norm" },
      { name: `${b}.attn_q.weight`, shape: [embd, headDim * heads], type: w, init: "weight" },
      { name: `${b}.attn_k.weight`, shape: [embd, kvDim], type: w, init: "weight" },
      { name: `${b}.attn_v.weight`, shape: [embd, kvDim], type: w, init: "weight" },
      { name: `${b}.attn_output.weight`, shape: [headDim * heads, embd], type: w, init: "weight" },
      { name: `${b}.ffn_norm.weight`, shape: [embd], type: GgmlType.F32, init: "norm" },
      { name: `${b}.ffn_gate.weight`, shape: [embd, ff], type: w, init: "weight" },
      { name: `${b}.ffn_up.weight`, shape: [embd, ff], type: w, init: "weight" },
      { name: `${b}.ffn_down.weight`, shape: [ff, embd], type: w, init: "weight" },
    );
  }
  return out;
}
