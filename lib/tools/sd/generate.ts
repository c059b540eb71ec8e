/**
 * Generates a Stable Diffusion 1.x checkpoint (UNet + VAE + CLIP ViT-L/14 text
 * encoder in one GGUF file) with deterministic random weights, so tests can run
 * real diffusion through stable-diffusion.cpp without downloads. The images
 * are noise-like; every kernel of the SD1 pipeline (CLIP, UNet with
 * cross-attention, sampler, VAE decoder) runs for real.
 *
 * Sizes and presets are in ./shape.ts, the tensor plan (names, shapes, types,
 * sources) in ./plan.ts, the GGUF header in ./header.ts; the CLI is
 * ../gen-sd-model.ts.
 */
import fs from "node:fs";
import path from "node:path";
import { GGUF_DEFAULT_ALIGNMENT, GgmlType, GgufDataSink, alignUp, tensorByteSize, type GgufTensorEntry } from "../gguf/writer";
import { CHUNK_BYTES, U32_TO_UNIT, f32ToF16Bits, mulberry32, tensorSeed, uint32Seed } from "../random";
import { ggufHeader, type Kv } from "./header";
import { sd1TensorPlan, sdParameterCount } from "./plan";
import { SD_PRESETS, type Sd1Shape, type SdInit, type SdPresetName, type SdTensorSpec, type SdWeightType } from "./shape";

export interface GenerateSdOptions {
  /** Storage type of linear weights and the token embedding. Default "q8_0". */
  type?: SdWeightType;
  /** PRNG seed (uint32). Same seed and options give byte-identical files. Default 1. */
  seed?: number;
  /** Random weights are uniform in ±scale. Default 0.02. */
  scale?: number;
  /** Size preset. Default "tiny". */
  preset?: SdPresetName;
  /** Overrides the preset's sizes. */
  shape?: Partial<Sd1Shape>;
  /** `general.name`. Default "random-sd1-<preset>". */
  name?: string;
}

export interface GenerateSdResult {
  path: string;
  /** File size in bytes. */
  bytes: number;
  tensors: number;
  /** Parameters (tensor elements). */
  parameters: number;
  type: SdWeightType;
  preset: SdPresetName | "custom";
  shape: Sd1Shape;
  seed: number;
  /** Wall time in seconds. */
  seconds: number;
}

/** Streams the data of tensor `t` (`init` fill, uniform ±scale for weights) to `write`. */
async function produceTensor(
  t: GgufTensorEntry,
  init: SdInit,
  seed: number,
  scale: number,
  buf: ArrayBuffer,
  write: (chunk: Uint8Array) => Promise<void>,
): Promise<void> {
  const bytes = new Uint8Array(buf);
  const n = t.shape.reduce((a, b) => a * b, 1);
  const rng = mulberry32(tensorSeed(seed, t.name));
  if (t.type === GgmlType.F32) {
    const f = new Float32Array(buf);
    for (let done = 0; done < n; ) {
      const m = Math.min(f.length, n - done);
      if (init === "one") f.fill(1, 0, m);
      else if (init === "zero") f.fill(0, 0, m);
      else if (init === "logvar") for (let i = 0; i < m; i++) f[i] = done + i < n / 2 ? 0 : -30;
      else for (let i = 0; i < m; i++) f[i] = (rng() * U32_TO_UNIT - 1) * scale;
      await write(bytes.subarray(0, m * 4));
      done += m;
    }
    return;
  }
  if (init !== "weight") throw new Error(`internal: ${init} tensor ${t.name} must be f32`);
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
  if (t.type === GgmlType.Q8_0) {
    // block_q8_0: ggml_half d, int8 qs[32]; value = qs·d with d = scale/127, qs uniform in [-127, 127]
    const d = f32ToF16Bits(scale / 127);
    const blocks = n / 32;
    const perChunk = Math.floor(bytes.length / 34);
    for (let done = 0; done < blocks; ) {
      const m = Math.min(perChunk, blocks - done);
      let p = 0;
      for (let b = 0; b < m; b++) {
        bytes[p] = d & 0xff;
        bytes[p + 1] = d >>> 8;
        p += 2;
        for (let j = 0; j < 32; j++) bytes[p++] = (Math.floor((rng() / 4294967296) * 255) - 127) & 0xff;
      }
      await write(bytes.subarray(0, p));
      done += m;
    }
    return;
  }
  throw new Error(`unsupported tensor type ${t.type} for ${t.name}`);
}

interface Prepared {
  plan: SdTensorSpec[];
  entries: GgufTensorEntry[];
  header: Buffer;
  dataOffset: number;
  fileBytes: number;
  type: SdWeightType;
  preset: SdPresetName | "custom";
  shape: Sd1Shape;
  seed: number;
  scale: number;
}

function prepare(opts: GenerateSdOptions): Prepared {
  const type = opts.type ?? "q8_0";
  const presetName = opts.preset ?? "tiny";
  const preset = SD_PRESETS[presetName];
  if (!preset) throw new RangeError(`unknown preset ${String(presetName)}; one of ${Object.keys(SD_PRESETS).join(", ")}`);
  const shape: Sd1Shape = { ...preset, ...opts.shape };
  const custom = shape.unetChannels !== preset.unetChannels || shape.vaeDecoderChannels !== preset.vaeDecoderChannels;
  const scale = opts.scale ?? 0.02;
  if (!(scale > 0 && scale < 1e3)) throw new RangeError(`scale must be positive, got ${scale}`);
  const seed = uint32Seed(opts.seed);
  const plan = sd1TensorPlan(shape, type);
  const entries: GgufTensorEntry[] = [];
  let offset = 0;
  for (const t of plan) {
    const nbytes = tensorByteSize(t.type, t.shape);
    entries.push({ name: t.name, shape: t.shape, type: t.type, offset, nbytes });
    offset += alignUp(nbytes, GGUF_DEFAULT_ALIGNMENT);
  }
  const kvs: Kv[] = [
    { key: "general.name", value: opts.name ?? `random-sd1-${custom ? "custom" : presetName}` },
    { key: "general.description", value: "Stable Diffusion 1.x checkpoint with random weights (genai-native gen-sd-model)" },
    { key: "general.quantization_version", value: 2, u32: true },
  ];
  const header = ggufHeader(kvs, entries);
  const dataOffset = alignUp(header.length, GGUF_DEFAULT_ALIGNMENT);
  return { plan, entries, header, dataOffset, fileBytes: dataOffset + offset, type, preset: custom ? "custom" : presetName, shape, seed, scale };
}

/** File size in bytes that `generateRandomSd15Model` would write for `opts`, computed without writing. */
export function randomSd15ModelBytes(opts: GenerateSdOptions = {}): number {
  return prepare(opts).fileBytes;
}

/**
 * Writes an SD1.x GGUF checkpoint with random weights to `file`.
 * The bytes depend only on the options, so the same seed gives an identical file.
 * @returns what was written (sizes in bytes).
 */
export async function generateRandomSd15Model(file: string, opts: GenerateSdOptions = {}): Promise<GenerateSdResult> {
  const t0 = process.hrtime.bigint();
  const p = prepare(opts);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const fh = await fs.promises.open(file, "w");
  let sink: GgufDataSink;
  try {
    const head = Buffer.alloc(p.dataOffset);
    p.header.copy(head, 0);
    let off = 0;
    while (off < head.length) off += (await fh.write(head, off, head.length - off)).bytesWritten;
    sink = new GgufDataSink(fh, p.entries, GGUF_DEFAULT_ALIGNMENT, p.dataOffset);
  } catch (e) {
    await fh.close();
    throw e;
  }
  try {
    const buf = new ArrayBuffer(CHUNK_BYTES);
    for (let i = 0; i < p.entries.length; i++) {
      await produceTensor(p.entries[i], p.plan[i].init, p.seed, p.scale, buf, (chunk) => sink.write(chunk));
    }
    await sink.close();
  } catch (e) {
    await sink.abort();
    throw e;
  }
  const st = fs.statSync(file);
  if (st.size !== p.fileBytes) throw new Error(`internal: wrote ${st.size} bytes, expected ${p.fileBytes}`);
  return {
    path: path.resolve(file),
    bytes: st.size,
    tensors: p.entries.length,
    parameters: sdParameterCount(p.plan),
    type: p.type,
    preset: p.preset,
    shape: p.shape,
    seed: p.seed,
    seconds: Number(process.hrtime.bigint() - t0) / 1e9,
  };
}
