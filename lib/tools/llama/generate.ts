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
 * Shapes and the tensor plan are in ./shape.ts, the vocabulary in ./vocab.ts;
 * the CLI is ../gen-model.ts.
 */
import fs from "node:fs";
import path from "node:path";
import { GgmlType, GgufWriter, type GgufLayout, type GgufTensorEntry } from "../gguf/writer";
import { CHUNK_BYTES, U32_TO_UNIT, f32ToF16Bits, mulberry32, tensorSeed, uint32Seed } from "../random";
import { CHATML_TEMPLATE, WEIGHT_TYPES, llamaParameterCount, llamaTensorPlan, validateShape, type LlamaShape, type WeightType } from "./shape";
import { syntheticSpmVocab } from "./vocab";

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
  /** Extra USER_DEFINED tokens (after the ChatML ones), e.g. `<think>`, `<tool_call>`: single tokens wherever they appear in text. */
  userTokens?: readonly string[];
  /** `tokenizer.ggml.add_space_prefix`; unset = llama.cpp's SPM default (true: "▁" before text, also after a special token). */
  addSpacePrefix?: boolean;
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

type Write = (chunk: Uint8Array) => Promise<void>;

/** Streams `tensor` filled with random values (or 1.0 for norms) to `write`. */
export async function produceTensor(t: GgufTensorEntry, init: "norm" | "weight", seed: number, scale: number, buf: ArrayBuffer, write: Write): Promise<void> {
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
  validateShape(shape, type, chat !== undefined, opts.userTokens?.length ?? 0);
  if (!(scale > 0 && scale < 1e3)) throw new RangeError(`scale must be positive, got ${scale}`);
  const seed = uint32Seed(opts.seed);

  const { layers, embd, ff, heads, kvHeads, vocab, ctx } = shape;
  const vocabData = syntheticSpmVocab(vocab, { chatTokens: chat !== undefined, userTokens: opts.userTokens });
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
  if (opts.addSpacePrefix !== undefined) w.setBool("tokenizer.ggml.add_space_prefix", opts.addSpacePrefix);
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
