/**
 * Shared by the random-weight generators of DiT-family diffusion models
 * (z-image.ts, flux2.ts, …): a tensor plan (names, ggml shapes, types, fills)
 * and the writer that streams it into one GGUF file with per-tensor seeds.
 * Shapes are ggml order, ne[0] first: linear [in, out], conv [kw, kh, in, out].
 */
import path from "node:path";
import { GgmlType, type GgufTensorEntry, GgufWriter } from "../gguf/writer";
import { produceTensor } from "../llama/generate";
import { CHUNK_BYTES, U32_TO_UNIT, f32ToF16Bits, mulberry32, tensorSeed } from "../random";
import { type Kv, writeLongNameGguf } from "./header";

/**
 * Random ±0.02 ("weight"), random with variance 1 / fan-in ("lecun":
 * uniform ±√(3 / fan-in), fan-in = every dimension but the last, so a deep
 * stack without norms, such as TAESD's, neither fades nor blows up), 1.0 (norm
 * weights), 0.0 (biases), 0 / −30 for the VAE encoder's mean / log-variance
 * halves, or "identity" (a square 1×1 conv [1, 1, C, C] that passes its input
 * through). q4_0 / q8_0 tensors (random blocks of about the same magnitude,
 * ../llama/generate.ts) must be "weight".
 */
export type PartInit = "weight" | "lecun" | "one" | "zero" | "logvar" | "identity";
/** One tensor of a part: name, ggml shape (ne[0] first), type and fill. */
export interface PartTensorSpec {
  name: string;
  shape: number[];
  type: GgmlType;
  init: PartInit;
}

/** Collects a tensor plan; `lin` is the type of linear weights, `conv` of conv kernels. */
/** q4_0 blocks hold 32 values of a row: a q4_0 tensor whose rows have another length is written f16. */
export const blockRows = (specs: PartTensorSpec[]): PartTensorSpec[] =>
  specs.map((t) => (t.type === GgmlType.Q4_0 && t.shape[0] % 32 !== 0 ? { ...t, type: GgmlType.F16 } : t));

export function planner(lin: GgmlType, conv: GgmlType) {
  const specs: PartTensorSpec[] = [];
  const add = (name: string, shape: number[], type: GgmlType, init: PartInit): void => void specs.push({ name, shape, type, init });
  return {
    specs,
    add,
    linear(p: string, inF: number, outF: number, bias = true, type = lin): void {
      add(`${p}.weight`, [inF, outF], type, "weight");
      if (bias) add(`${p}.bias`, [outF], GgmlType.F32, "zero");
    },
    rms(p: string, c: number): void {
      add(`${p}.weight`, [c], GgmlType.F32, "one");
    },
    norm(p: string, c: number): void {
      add(`${p}.weight`, [c], GgmlType.F32, "one");
      add(`${p}.bias`, [c], GgmlType.F32, "zero");
    },
    conv(p: string, inC: number, outC: number, k: number, biasInit: PartInit = "zero"): void {
      add(`${p}.weight`, [k, k, inC, outC], conv, "weight");
      add(`${p}.bias`, [outC], GgmlType.F32, biasInit);
    },
  };
}

/** The value at flat index `i` of a tensor of `n` elements and ggml `shape` with a non-random fill. */
function fixedValue(init: Exclude<PartInit, "weight" | "lecun">, i: number, n: number, shape: readonly number[]): number {
  switch (init) {
    case "one":
      return 1;
    case "zero":
      return 0;
    case "logvar":
      return i < n / 2 ? 0 : -30;
    case "identity": // [1, 1, C, C]: element (in c, out o) sits at o·C + c, so the diagonal is every (C + 1)-th
      return i % (shape[2] + 1) === 0 ? 1 : 0;
  }
}

/**
 * Streams one tensor's data through `write`: random ±0.02 from its own seed
 * (tensorSeed(seed, name), so bytes do not depend on file order) or the
 * fixed `init`; q4_0 / q8_0 random blocks by ../llama/generate.ts. `buf` is
 * scratch space of CHUNK_BYTES.
 */
export async function produceSpec(
  t: GgufTensorEntry,
  init: PartInit,
  seed: number,
  buf: ArrayBuffer,
  write: (chunk: Uint8Array) => Promise<void>,
): Promise<void> {
  const fanIn = t.shape.slice(0, -1).reduce((a, b) => a * b, 1);
  const scale = init === "lecun" ? Math.sqrt(3 / fanIn) : 0.02;
  if (t.type === GgmlType.Q4_0 || t.type === GgmlType.Q8_0) {
    if (init !== "weight") throw new Error(`tensor ${t.name}: a ${GgmlType[t.type]} tensor must be random ("weight"), not "${init}"`);
    return produceTensor(t, "weight", seed, scale, buf, write);
  }
  const n = t.shape.reduce((a, b) => a * b, 1);
  const rng = mulberry32(tensorSeed(seed, t.name));
  const f32 = t.type === GgmlType.F32;
  const f = new Float32Array(buf);
  const h = new Uint16Array(buf);
  for (let done = 0; done < n; ) {
    const m = Math.min(f32 ? f.length : h.length, n - done);
    for (let k = 0; k < m; k++) {
      const v = init === "weight" || init === "lecun" ? (rng() * U32_TO_UNIT - 1) * scale : fixedValue(init, done + k, n, t.shape);
      if (f32) f[k] = v;
      else h[k] = f32ToF16Bits(v);
    }
    await write(new Uint8Array(buf, 0, m * (f32 ? 4 : 2)));
    done += m;
  }
}

/** One written part. */
export interface GeneratedPart {
  path: string;
  /** File size in bytes. */
  bytes: number;
  tensors: number;
  /** Parameters (tensor elements). */
  parameters: number;
}

/**
 * Writes one GGUF file of `specs` (per-tensor seeds, so bytes do not depend on
 * file order). Tensor names of 64 bytes or more (past GgufWriter's
 * GGML_MAX_NAME, e.g. T5's "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
 * go through ./header.ts's writer instead; this project builds ggml with
 * GGML_MAX_NAME=160.
 */
export async function writePart(
  file: string,
  name: string,
  specs: PartTensorSpec[],
  seed: number,
  arch: string | undefined,
  family: string,
): Promise<GeneratedPart> {
  const description = `${family} part with random weights (genai-native tools)`;
  const buf = new ArrayBuffer(CHUNK_BYTES);
  let bytes: number;
  if (specs.some((t) => Buffer.byteLength(t.name, "utf8") >= 64)) {
    const kvs: Kv[] = [
      ...(arch ? [{ key: "general.architecture", value: arch }] : []),
      { key: "general.name", value: name },
      { key: "general.description", value: description },
    ];
    bytes = await writeLongNameGguf(file, kvs, specs, (i, entry, write) => produceSpec(entry, specs[i].init, seed, buf, write));
  } else {
    const w = new GgufWriter();
    if (arch) w.setString("general.architecture", arch);
    w.setString("general.name", name).setString("general.description", description);
    for (const t of specs) w.addTensor(t.name, t.shape, t.type);
    let i = 0;
    bytes = (await w.writeFile(file, (t, write) => produceSpec(t, specs[i++].init, seed, buf, write))).fileBytes;
  }
  return {
    path: path.resolve(file),
    bytes,
    tensors: specs.length,
    parameters: specs.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0),
  };
}
