/**
 * Generates a llama-architecture GGUF model with deterministic random weights
 * of any shape, so large models exist for tests and benchmarks without
 * downloads. Random weights exercise the same kernels and memory paths as
 * trained ones; only the generated text is gibberish.
 *
 * The file mirrors what llama.cpp's `llama` loader reads (deps/llama.cpp:
 * src/models/llama.cpp `load_arch_tensors`, src/llama-model.cpp hparams,
 * src/llama-vocab.cpp for the SPM "llama" tokenizer) and the metadata of the
 * reference model stories260K.gguf.
 *
 * CLI (after the TypeScript build):
 *   node dist/cjs/tools/gen-model.js --out FILE [--preset tiny|small|medium]
 *     [--layers N] [--embd N] [--ff N] [--heads N] [--kv-heads N] [--vocab N]
 *     [--ctx N] [--type f32|f16|q8_0|q4_0] [--seed S] [--scale X] [--name S]
 *     [--chat-template] [--tie-embeddings]
 * prints one JSON line: { path, bytes, parameters, ... }.
 */
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { GgmlType, GgufWriter, type GgufLayout, type GgufTensorEntry } from "../models/gguf-writer";

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

export interface GenerateOptions {
  /** Weight matrix type, including token_embd and output. Default "q8_0". */
  type?: WeightType;
  /** PRNG seed (uint32). Same seed, shape and options give byte-identical files. Default 1. */
  seed?: number;
  /** Weights are roughly uniform in ±scale. Default 0.05. */
  scale?: number;
  /** `general.name`. Default "random-llama-<layers>x<embd>". */
  name?: string;
  /** true: embed a ChatML Jinja template (and add <|im_start|>/<|im_end|> control tokens); a string: embed that template. */
  chatTemplate?: boolean | string;
  /** Omit output.weight; llama.cpp then reuses token_embd for the output projection. Default false. */
  tieEmbeddings?: boolean;
  /** `llama.rope.freq_base`. Default 10000. */
  ropeFreqBase?: number;
  /** `llama.attention.layer_norm_rms_epsilon`. Default 1e-5. */
  rmsEps?: number;
}

export interface GenerateResult {
  path: string;
  /** File size in bytes. */
  bytes: number;
  /** Parameters (weight elements), norms included. */
  parameters: number;
  type: WeightType;
  shape: LlamaShape;
  seed: number;
  tensors: number;
  /** Offset of the data section in bytes. */
  dataOffset: number;
  /** Wall time in seconds. */
  seconds: number;
}

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

const WEIGHT_TYPES: Record<WeightType, { ggml: GgmlType; fileType: number }> = {
  // general.file_type = llama_ftype (include/llama.h)
  f32: { ggml: GgmlType.F32, fileType: 0 }, // LLAMA_FTYPE_ALL_F32
  f16: { ggml: GgmlType.F16, fileType: 1 }, // LLAMA_FTYPE_MOSTLY_F16
  q4_0: { ggml: GgmlType.Q4_0, fileType: 2 }, // LLAMA_FTYPE_MOSTLY_Q4_0
  q8_0: { ggml: GgmlType.Q8_0, fileType: 7 }, // LLAMA_FTYPE_MOSTLY_Q8_0
};

/** llama_token_type values (include/llama.h) used in `tokenizer.ggml.token_type`. */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, BYTE: 6 } as const;

/** A tensor of the llama architecture: name, ggml shape (ne[0] first) and type. */
export interface LlamaTensorSpec {
  name: string;
  shape: number[];
  type: GgmlType;
  /** "norm" tensors are filled with 1.0, "weight" tensors with random values. */
  init: "norm" | "weight";
}

/** Checks a shape for the llama loader and the chosen type. @throws RangeError */
export function validateShape(shape: LlamaShape, type: WeightType = "q8_0", chatTemplate = false): void {
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
  const minVocab = 3 + 256 + (chatTemplate ? 2 : 0) + 1;
  if (shape.vocab < minVocab) throw new RangeError(`vocab must be at least ${minVocab} (3 special + 256 byte tokens + pieces), got ${shape.vocab}`);
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

/** The synthetic SPM vocabulary: tokens, scores and token types, `size` entries. */
export interface SyntheticVocab {
  tokens: string[];
  scores: Float32Array;
  tokenTypes: Int32Array;
  /** Ids of the ChatML control tokens when present. */
  imStart?: number;
  imEnd?: number;
}

/**
 * Builds a deterministic SPM vocabulary of exactly `size` unique tokens:
 * `<unk>`=0 (UNKNOWN), `<s>`=1, `</s>`=2 (CONTROL), `<0x00>`..`<0xFF>` (BYTE, ids 3..258),
 * optionally `<|im_start|>`, `<|im_end|>` (CONTROL), then printable pieces
 * ('▁', single ASCII characters, '▁'-prefixed and bare letter n-grams) with
 * scores -1, -2, ... (special and byte tokens score 0, as in stories260K).
 */
export function syntheticSpmVocab(size: number, opts: { chatTokens?: boolean } = {}): SyntheticVocab {
  const tokens: string[] = ["<unk>", "<s>", "</s>"];
  const types: number[] = [TOKEN_TYPE.UNKNOWN, TOKEN_TYPE.CONTROL, TOKEN_TYPE.CONTROL];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`);
    types.push(TOKEN_TYPE.BYTE);
  }
  let imStart: number | undefined;
  let imEnd: number | undefined;
  if (opts.chatTokens) {
    imStart = tokens.length;
    tokens.push("<|im_start|>");
    types.push(TOKEN_TYPE.CONTROL);
    imEnd = tokens.length;
    tokens.push("<|im_end|>");
    types.push(TOKEN_TYPE.CONTROL);
  }
  if (size < tokens.length) throw new RangeError(`vocab size ${size} is smaller than the ${tokens.length} fixed tokens`);
  const nFixed = tokens.length;
  const seen = new Set(tokens);
  const scores = new Float32Array(size);
  const push = (piece: string): boolean => {
    if (tokens.length >= size) return false;
    if (seen.has(piece)) return true;
    seen.add(piece);
    scores[tokens.length] = -(tokens.length - nFixed + 1);
    tokens.push(piece);
    types.push(TOKEN_TYPE.NORMAL);
    return true;
  };
  const SP = "\u2581"; // '▁', SentencePiece's space
  push(SP);
  for (let c = 0x21; c <= 0x7e; c++) push(String.fromCharCode(c));
  const lower = "abcdefghijklmnopqrstuvwxyz";
  const upper = lower.toUpperCase();
  for (const ch of lower + upper + "0123456789") push(SP + ch);
  // n-grams over a-z, n = 2, 3, ...: "▁xy" then "xy", lexicographic
  for (let n = 2; tokens.length < size; n++) {
    const total = 26 ** n;
    for (let k = 0; k < total && tokens.length < size; k++) {
      let s = "";
      let x = k;
      for (let j = 0; j < n; j++) {
        s = lower[x % 26] + s;
        x = Math.floor(x / 26);
      }
      push(SP + s);
      push(s);
    }
  }
  return { tokens, scores, tokenTypes: Int32Array.from(types), imStart, imEnd };
}

// ---------------------------------------------------------------------------
// Deterministic random data

/** mulberry32: a small, fast 32-bit PRNG. Returns uint32 values. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** Seed for one tensor: the model seed mixed with an FNV-1a hash of the name (order-independent). */
function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h >>> 0;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE binary16 bits of `v` (round half up; values here are small and finite). */
export function f32ToF16Bits(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = ((x >>> 23) & 0xff) - 127 + 15;
  let mant = x & 0x7fffff;
  if (exp >= 31) return sign | 0x7c00; // overflow → inf (NaN not produced here)
  if (exp <= 0) {
    if (exp < -10) return sign; // underflow → ±0
    mant |= 0x800000;
    const shift = 14 - exp;
    let h = mant >>> shift;
    if ((mant >>> (shift - 1)) & 1) h++;
    return sign | h;
  }
  let h = sign | (exp << 10) | (mant >>> 13);
  if (mant & 0x1000) h++; // carries into the exponent correctly
  return h;
}

const CHUNK_BYTES = 4 * 1024 * 1024;
const U32_TO_UNIT = 1 / 2147483648; // uint32 → [0, 2)

type Write = (chunk: Uint8Array) => Promise<void>;

/** Streams `tensor` filled with random values (or 1.0 for norms) to `write`. */
async function produceTensor(t: GgufTensorEntry, init: "norm" | "weight", seed: number, scale: number, buf: ArrayBuffer, write: Write): Promise<void> {
  const bytes = new Uint8Array(buf);
  const n = t.shape.reduce((a, b) => a * b, 1);
  const rng = mulberry32(tensorSeed(seed, t.name));
  if (t.type === GgmlType.F32) {
    const f = new Float32Array(buf);
    for (let done = 0; done < n; ) {
      const m = Math.min(f.length, n - done);
      if (init === "norm") f.fill(1.0, 0, m);
      else for (let i = 0; i < m; i++) f[i] = (rng() * U32_TO_UNIT - 1) * scale;
      await write(bytes.subarray(0, m * 4));
      done += m;
    }
    return;
  }
  if (init === "norm") throw new Error(`norm tensor ${t.name} must be f32`);
  if (t.type === GgmlType.F16) {
    const h = new Uint16Array(buf);
    for (let done = 0; done < n; ) {
      const m = Math.min(h.length, n - done);
      for (let i = 0; i < m; i++) h[i] = f32ToF16Bits((rng() * U32_TO_UNIT - 1) * scale);
      await write(bytes.subarray(0, m * 2));
      done += m;
    }
    return;
  }
  if (t.type === GgmlType.Q8_0 || t.type === GgmlType.Q4_0) {
    // Both blocks: ggml_half d, then 32 (q8_0: int8, value = q·d) or 16 bytes
    // (q4_0: two nibbles per byte, value = (nibble - 8)·d). A random sign on d
    // keeps q4_0's [-8, 7] range unbiased; |d| in [0.5, 1]·dmax.
    const q8 = t.type === GgmlType.Q8_0;
    const typeSize = q8 ? 34 : 18;
    const qBytes = q8 ? 32 : 16;
    const dMax = q8 ? scale / 127 : scale / 8;
    const blocks = n / 32;
    const perChunk = Math.floor(bytes.length / typeSize);
    // fp16 table of 256 scale magnitudes (both signs), picked per block by the PRNG
    const dTable = new Uint16Array(512);
    for (let i = 0; i < 256; i++) {
      const d = dMax * (0.5 + (0.5 * i) / 255);
      dTable[i] = f32ToF16Bits(d);
      dTable[256 + i] = f32ToF16Bits(-d);
    }
    for (let done = 0; done < blocks; ) {
      const m = Math.min(perChunk, blocks - done);
      let p = 0;
      for (let b = 0; b < m; b++) {
        const d = dTable[rng() & 511];
        bytes[p] = d & 0xff;
        bytes[p + 1] = d >>> 8;
        p += 2;
        for (let j = 0; j < qBytes; j += 4) {
          const r = rng();
          let v0 = r & 0xff;
          let v1 = (r >>> 8) & 0xff;
          let v2 = (r >>> 16) & 0xff;
          let v3 = r >>> 24;
          if (q8) {
            // ggml never stores -128 in q8_0 (range is ±127); some SIMD paths rely on it
            if (v0 === 0x80) v0 = 0x81;
            if (v1 === 0x80) v1 = 0x81;
            if (v2 === 0x80) v2 = 0x81;
            if (v3 === 0x80) v3 = 0x81;
          }
          bytes[p] = v0;
          bytes[p + 1] = v1;
          bytes[p + 2] = v2;
          bytes[p + 3] = v3;
          p += 4;
        }
      }
      await write(bytes.subarray(0, p));
      done += m;
    }
    return;
  }
  throw new Error(`unsupported tensor type ${t.type} for ${t.name}`);
}

interface Prepared {
  writer: GgufWriter;
  init: Map<string, "norm" | "weight">;
  type: WeightType;
  seed: number;
  scale: number;
  tie: boolean;
}

function prepare(shape: LlamaShape, opts: GenerateOptions): Prepared {
  const type = opts.type ?? "q8_0";
  const scale = opts.scale ?? 0.05;
  const chat = opts.chatTemplate === true ? CHATML_TEMPLATE : typeof opts.chatTemplate === "string" ? opts.chatTemplate : undefined;
  const tie = opts.tieEmbeddings ?? false;
  validateShape(shape, type, chat !== undefined);
  if (!(scale > 0 && scale < 1e3)) throw new RangeError(`scale must be positive, got ${scale}`);
  if (opts.seed !== undefined && (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffffffff)) {
    throw new RangeError(`seed must be a uint32, got ${opts.seed}`);
  }
  const seed = (opts.seed ?? 1) >>> 0;

  const { layers, embd, ff, heads, kvHeads, vocab, ctx } = shape;
  const vocabData = syntheticSpmVocab(vocab, { chatTokens: chat !== undefined });
  const w = new GgufWriter();
  w.setString("general.architecture", "llama");
  w.setString("general.name", opts.name ?? `random-llama-${layers}x${embd}`);
  w.setUint32("general.file_type", WEIGHT_TYPES[type].fileType);
  w.setUint32("general.quantization_version", 2);
  w.setUint32("llama.context_length", ctx);
  w.setUint32("llama.embedding_length", embd);
  w.setUint32("llama.block_count", layers);
  w.setUint32("llama.feed_forward_length", ff);
  w.setUint32("llama.attention.head_count", heads);
  w.setUint32("llama.attention.head_count_kv", kvHeads);
  w.setUint32("llama.rope.dimension_count", embd / heads);
  w.setFloat32("llama.rope.freq_base", opts.ropeFreqBase ?? 10000);
  w.setFloat32("llama.attention.layer_norm_rms_epsilon", opts.rmsEps ?? 1e-5);
  w.setString("tokenizer.ggml.model", "llama");
  w.setStringArray("tokenizer.ggml.tokens", vocabData.tokens);
  w.setFloat32Array("tokenizer.ggml.scores", vocabData.scores);
  w.setInt32Array("tokenizer.ggml.token_type", vocabData.tokenTypes);
  w.setUint32("tokenizer.ggml.unknown_token_id", 0);
  w.setUint32("tokenizer.ggml.bos_token_id", 1);
  w.setUint32("tokenizer.ggml.eos_token_id", 2);
  w.setBool("tokenizer.ggml.add_bos_token", true);
  w.setBool("tokenizer.ggml.add_eos_token", false);
  if (chat !== undefined) {
    if (vocabData.imEnd !== undefined) w.setUint32("tokenizer.ggml.eot_token_id", vocabData.imEnd);
    w.setString("tokenizer.chat_template", chat);
  }

  const init = new Map<string, "norm" | "weight">();
  for (const t of llamaTensorPlan(shape, type, { tieEmbeddings: tie })) {
    w.addTensor(t.name, t.shape, t.type);
    init.set(t.name, t.init);
  }
  return { writer: w, init, type, seed, scale, tie };
}

/**
 * File layout (sizes in bytes) that `generateRandomLlamaModel` would write
 * for these arguments, computed without writing anything.
 */
export function randomLlamaModelLayout(shape: LlamaShape, opts: GenerateOptions = {}): GgufLayout {
  return prepare(shape, opts).writer.layout();
}

/**
 * Writes a llama-architecture GGUF with random weights to `file`.
 * Norm weights are 1.0 (f32); every other matrix (token_embd and output too)
 * has `opts.type`, filled from a seeded PRNG; the bytes depend only on the
 * shape and options, so the same seed gives an identical file.
 * @returns what was written (sizes in bytes).
 * @throws RangeError for a shape the llama loader or the type cannot take.
 */
export async function generateRandomLlamaModel(file: string, shape: LlamaShape, opts: GenerateOptions = {}): Promise<GenerateResult> {
  const t0 = process.hrtime.bigint();
  const { writer, init, type, seed, scale, tie } = prepare(shape, opts);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const buf = new ArrayBuffer(CHUNK_BYTES);
  const layout = await writer.writeFile(file, (t, write) => produceTensor(t, init.get(t.name) ?? "weight", seed, scale, buf, write));
  const st = fs.statSync(file);
  if (st.size !== layout.fileBytes) throw new Error(`internal: wrote ${st.size} bytes, expected ${layout.fileBytes}`);
  return {
    path: path.resolve(file),
    bytes: st.size,
    parameters: llamaParameterCount(shape, { tieEmbeddings: tie }),
    type,
    shape: { ...shape },
    seed,
    tensors: writer.tensors.length,
    dataOffset: layout.dataOffset,
    seconds: Number(process.hrtime.bigint() - t0) / 1e9,
  };
}

// ---------------------------------------------------------------------------
// CLI

const USAGE = `usage: gen-model --out FILE [--preset tiny|small|medium] [--layers N] [--embd N] [--ff N]
       [--heads N] [--kv-heads N] [--vocab N] [--ctx N] [--type f32|f16|q8_0|q4_0]
       [--seed S] [--scale X] [--name S] [--chat-template] [--tie-embeddings]
Writes a llama-architecture GGUF with deterministic random weights and prints JSON
{ path, bytes, parameters, ... }. Defaults: preset tiny, type q8_0, seed 1.`;

/** Parses CLI arguments and generates the model. Exported for tests. */
export async function runCli(argv: string[]): Promise<GenerateResult> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: "string", short: "o" },
      preset: { type: "string" },
      layers: { type: "string" },
      embd: { type: "string" },
      ff: { type: "string" },
      heads: { type: "string" },
      "kv-heads": { type: "string" },
      vocab: { type: "string" },
      ctx: { type: "string" },
      type: { type: "string" },
      seed: { type: "string" },
      scale: { type: "string" },
      name: { type: "string" },
      "chat-template": { type: "boolean" },
      "tie-embeddings": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(USAGE + "\n");
    process.exit(0);
  }
  if (!values.out) throw new Error(`--out is required\n${USAGE}`);
  const presetName = (values.preset ?? "tiny") as PresetName;
  const preset = PRESETS[presetName];
  if (!preset) throw new Error(`unknown preset ${values.preset}; one of ${Object.keys(PRESETS).join(", ")}`);
  const int = (v: string | undefined, name: string, dflt: number): number => {
    if (v === undefined) return dflt;
    if (!/^\d+$/.test(v)) throw new Error(`--${name} must be a non-negative integer, got ${v}`);
    return Number(v);
  };
  const heads = int(values.heads, "heads", preset.heads);
  const shape: LlamaShape = {
    layers: int(values.layers, "layers", preset.layers),
    embd: int(values.embd, "embd", preset.embd),
    ff: int(values.ff, "ff", preset.ff),
    heads,
    // --heads alone keeps MHA/GQA ratio sane: default kv-heads to heads when the preset's no longer divides
    kvHeads: int(values["kv-heads"], "kv-heads", heads % preset.kvHeads === 0 ? preset.kvHeads : heads),
    vocab: int(values.vocab, "vocab", preset.vocab),
    ctx: int(values.ctx, "ctx", preset.ctx),
  };
  const type = (values.type ?? "q8_0") as WeightType;
  if (!(type in WEIGHT_TYPES)) throw new Error(`--type must be one of ${Object.keys(WEIGHT_TYPES).join(", ")}`);
  const scale = values.scale === undefined ? undefined : Number(values.scale);
  return generateRandomLlamaModel(values.out, shape, {
    type,
    seed: int(values.seed, "seed", 1),
    scale,
    name: values.name,
    chatTemplate: values["chat-template"] ?? false,
    tieEmbeddings: values["tie-embeddings"] ?? false,
  });
}

if (typeof require !== "undefined" && typeof module !== "undefined" && require.main === module) {
  runCli(process.argv.slice(2)).then(
    (r) => process.stdout.write(JSON.stringify(r) + "\n"),
    (e: unknown) => {
      process.stderr.write(`gen-model: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
