/**
 * Shared by the random-weight generators of DiT-family diffusion models
 * (z-image.ts, flux2.ts, …): a tensor plan (names, ggml shapes, types, fills)
 * and the writer that streams it into one GGUF file with per-tensor seeds.
 * Shapes are ggml order, ne[0] first: linear [in, out], conv [kw, kh, in, out].
 */
import path from "node:path";
import { GgmlType, GgufWriter } from "../gguf/writer";
import { CHUNK_BYTES, U32_TO_UNIT, f32ToF16Bits, mulberry32, tensorSeed } from "../random";

/** Random ±0.02, 1.0 (norm weights), 0.0 (biases), or 0 / −30 for the VAE encoder's mean / log-variance halves. */
export type PartInit = "weight" | "one" | "zero" | "logvar";
/** One tensor of a part: name, ggml shape (ne[0] first), type and fill. */
export interface PartTensorSpec {
  name: string;
  shape: number[];
  type: GgmlType;
  init: PartInit;
}

/** Collects a tensor plan; `lin` is the type of linear weights, `conv` of conv kernels. */
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

/** One written part. */
export interface GeneratedPart {
  path: string;
  /** File size in bytes. */
  bytes: number;
  tensors: number;
  /** Parameters (tensor elements). */
  parameters: number;
}

/** Writes one GGUF file of `specs` (per-tensor seeds, so bytes do not depend on file order). */
export async function writePart(
  file: string,
  name: string,
  specs: PartTensorSpec[],
  seed: number,
  arch: string | undefined,
  family: string,
): Promise<GeneratedPart> {
  const w = new GgufWriter();
  if (arch) w.setString("general.architecture", arch);
  w.setString("general.name", name).setString("general.description", `${family} part with random weights (genai-native tools)`);
  for (const t of specs) w.addTensor(t.name, t.shape, t.type);
  const scale = 0.02;
  const buf = new ArrayBuffer(CHUNK_BYTES);
  let i = 0;
  const layout = await w.writeFile(file, async (t, write) => {
    const { init } = specs[i++];
    const n = t.shape.reduce((a, b) => a * b, 1);
    const rng = mulberry32(tensorSeed(seed, t.name));
    const f32 = t.type === GgmlType.F32;
    const f = new Float32Array(buf);
    const h = new Uint16Array(buf);
    for (let done = 0; done < n; ) {
      const m = Math.min(f32 ? f.length : h.length, n - done);
      for (let k = 0; k < m; k++) {
        const v = init === "one" ? 1 : init === "zero" ? 0 : init === "logvar" ? (done + k < n / 2 ? 0 : -30) : (rng() * U32_TO_UNIT - 1) * scale;
        if (f32) f[k] = v;
        else h[k] = f32ToF16Bits(v);
      }
      await write(new Uint8Array(buf, 0, m * (f32 ? 4 : 2)));
      done += m;
    }
  });
  return {
    path: path.resolve(file),
    bytes: layout.fileBytes,
    tensors: specs.length,
    parameters: specs.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0),
  };
}
