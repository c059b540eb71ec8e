/**
 * Generates a Stable Diffusion 1.x ControlNet with deterministic random
 * weights (one GGUF file), for DiffusionModel.load({ model, controlNet }) with
 * the random SD1 checkpoints of ./generate.ts, so tests can run ControlNet
 * through stable-diffusion.cpp without downloads.
 *
 * Sources (deps/stable-diffusion.cpp):
 *  - src/model/diffusion/control.hpp, ControlNetBlock: time_embed.{0,2};
 *    input_hint_block.{0,2,…,14}, 3×3 convs 3 → 16 → 16 → 32 → 32 → 96 → 96
 *    → 256 → model channels (stride 2 at 4, 8 and 12, SiLU between);
 *    input_blocks.0 … 11 as the UNet's encoder half (src/model/diffusion/
 *    unet.hpp: ResBlock, SpatialTransformer with a 1×1 proj_in/proj_out,
 *    DownSampleBlock "op"; src/model/common/block.hpp); one 1×1
 *    zero_convs.N.0 per input block; middle_block.{0,1,2};
 *    middle_block_out.0 (1×1). No output blocks.
 *  - The block sizes are NOT read from the weights: ControlNetBlock builds
 *    the SD1 layout with model_channels = 320 (time_embed 1280), channel mult
 *    1,2,4,4, 2 res blocks, attention at 1/1, 1/2, 1/4, 8 heads, context 768,
 *    3 hint channels, whatever the checkpoint. A ControlNet of other widths is
 *    refused at load (src/model_manager.cpp: "ControlNet tensor '…' has wrong
 *    shape in model metadata", then "model metadata validation failed" in
 *    src/stable-diffusion.cpp: a clean error). So the default here is 320
 *    channels, and the checkpoint must have a 320-channel UNet too:
 *    generateRandomSd15Model(file, { preset: "tiny", shape: { unetChannels: 320 } })
 *    (the "tiny" preset's 32-channel UNet cannot take a ControlNet: sd.cpp
 *    loads the pair, then aborts the process in the first sampling step,
 *    GGML_ASSERT(ggml_can_repeat(b, a)) in ggml_add, from
 *    UnetModelBlock::forward adding the 1280-channel middle control to the
 *    128-channel UNet state). `unetChannels` / preset "tiny" still write
 *    narrower files, for tests of that refusal.
 *  - src/stable-diffusion.cpp: `control_net_path` is read into the same
 *    ModelLoader as the checkpoint, without a prefix, and ControlNet is built
 *    with prefix "" for the checkpoint's SD version; src/name_conversion.cpp
 *    (convert_tensor_name, "controlnet") strips "control_model.", the prefix
 *    of the original ControlNet .pth files, which these tensor names carry.
 *  - The file is GGUF with the header of ./header.ts (names reach 73 bytes,
 *    over GgufWriter's 64).
 *
 * Weights: a trained ControlNet starts with zero_convs / middle_block_out at
 * zero, which makes a fresh one a no-op; here every conv, linear and bias is
 * random (uniform ±gain·√(6 / fan-in), He-uniform, so the hint survives the
 * 8 hint convs), norm weights 1.0 and norm biases 0.0, so the control image
 * visibly changes the output. Large f16 tensors take two 16-bit quantized
 * uniform values per PRNG draw (faster); per-tensor seeds from the tensor
 * name, so the same seed and options give a byte-identical file. Types:
 * biases and norms f32, conv kernels f16 (f32 for type "f32"), linear
 * weights `type` (default "f16").
 */
import path from "node:path";
import { GgmlType, type GgufTensorEntry } from "../gguf/writer";
import { produceTensor } from "../llama/generate";
import { CHUNK_BYTES, U32_TO_UNIT, f32ToF16Bits, mulberry32, tensorSeed, uint32Seed } from "../random";
import { writeLongNameGguf } from "./header";
import { LINEAR_TYPE, SD1_FIXED, SD_PRESETS, type SdPresetName, type SdWeightType } from "./shape";

/** Fill of one tensor: random (uniform ±scale), 1.0 (norm weights) or 0.0 (norm biases). */
export type SdControlNetInit = "weight" | "one" | "zero";

/** One tensor of the ControlNet: name, ggml shape (ne[0] first), type, fill and, for "weight", the bound of its uniform values. */
export interface SdControlNetTensorSpec {
  name: string;
  shape: number[];
  type: GgmlType;
  init: SdControlNetInit;
  scale: number;
}

/** The model channels sd.cpp builds every SD1 ControlNet with (control.hpp, ControlNetBlock::model_channels); the checkpoint's UNet must have as many. */
export const SD1_CONTROLNET_CHANNELS = 320;

/** The channel widths of sd.cpp's SD1 ControlNet input hint block (control.hpp, ControlNetBlock). */
export const SD1_CONTROLNET_HINT_CHANNELS = [16, 16, 32, 32, 96, 96, 256] as const;

export interface SdControlNetOptions {
  /**
   * The checkpoint preset (generateRandomSd15Model's) whose UNet width to take. Default: none, 320
   * channels (SD1_CONTROLNET_CHANNELS, the only width sd.cpp loads); "tiny" writes a 32-channel file sd.cpp refuses.
   */
  preset?: SdPresetName;
  /** Model channels (a positive multiple of 32); overrides the preset. Default 320. */
  unetChannels?: number;
  /** Storage type of linear weights. Default "f16". */
  type?: SdWeightType;
  /** PRNG seed (uint32). Same seed and options give byte-identical files. Default 1. */
  seed?: number;
  /** Multiplies every random tensor's bound (√(6 / fan-in), He-uniform). Default 1. */
  gain?: number;
}

export interface SdControlNetResult {
  path: string;
  /** File size in bytes. */
  bytes: number;
  tensors: number;
  /** Parameters (tensor elements). */
  parameters: number;
  unetChannels: number;
  type: SdWeightType;
  seed: number;
}

/** Model channels of the ControlNet for `opts` (validated). @throws RangeError */
function modelChannels(opts: SdControlNetOptions): number {
  let mc: number = SD1_CONTROLNET_CHANNELS;
  if (opts.preset !== undefined) {
    const preset = SD_PRESETS[opts.preset];
    if (!preset) throw new RangeError(`unknown preset ${String(opts.preset)}; one of ${Object.keys(SD_PRESETS).join(", ")}`);
    mc = preset.unetChannels;
  }
  if (opts.unetChannels !== undefined) mc = opts.unetChannels;
  if (!Number.isSafeInteger(mc) || mc <= 0 || mc % 32 !== 0) throw new RangeError(`unetChannels must be a positive multiple of 32, got ${mc}`);
  return mc;
}

/**
 * The tensors of an SD1 ControlNet with `unetChannels` model channels, in file
 * order (names without the prefix; ggml shapes, ne[0] first: linear [in, out],
 * conv [kw, kh, in, out]).
 */
export function sd15ControlNetTensorPlan(unetChannels: number, type: SdWeightType = "f16", gain = 1): SdControlNetTensorSpec[] {
  if (!Number.isSafeInteger(unetChannels) || unetChannels <= 0 || unetChannels % 32 !== 0) {
    throw new RangeError(`unetChannels must be a positive multiple of 32, got ${unetChannels}`);
  }
  if (!(type in LINEAR_TYPE)) throw new RangeError(`type must be one of ${Object.keys(LINEAR_TYPE).join(", ")}, got ${type}`);
  if (!(gain > 0 && gain < 1e3)) throw new RangeError(`gain must be positive, got ${gain}`);
  const F = SD1_FIXED;
  const out: SdControlNetTensorSpec[] = [];
  const names = new Set<string>();
  const lin = LINEAR_TYPE[type];
  const convType = type === "f32" ? GgmlType.F32 : GgmlType.F16;
  const add = (name: string, shape: number[], t: GgmlType, init: SdControlNetInit, fanIn = 1): void => {
    if (names.has(name)) throw new Error(`internal: duplicate tensor ${name}`);
    names.add(name);
    out.push({ name, shape, type: t, init, scale: init === "weight" ? gain * Math.sqrt(6 / fanIn) : 0 });
  };
  const linear = (p: string, inF: number, outF: number, bias = true): void => {
    add(`${p}.weight`, [inF, outF], lin === GgmlType.Q8_0 && inF % 32 !== 0 ? GgmlType.F16 : lin, "weight", inF);
    if (bias) add(`${p}.bias`, [outF], GgmlType.F32, "weight", inF);
  };
  const conv = (p: string, inC: number, outC: number, k: number): void => {
    add(`${p}.weight`, [k, k, inC, outC], convType, "weight", k * k * inC);
    add(`${p}.bias`, [outC], GgmlType.F32, "weight", k * k * inC);
  };
  const norm = (p: string, c: number): void => {
    add(`${p}.weight`, [c], GgmlType.F32, "one");
    add(`${p}.bias`, [c], GgmlType.F32, "zero");
  };
  const mc = unetChannels;
  const ted = mc * 4;
  const resBlock = (p: string, c: number, o: number): void => {
    norm(`${p}.in_layers.0`, c);
    conv(`${p}.in_layers.2`, c, o, 3);
    linear(`${p}.emb_layers.1`, ted, o);
    norm(`${p}.out_layers.0`, o);
    conv(`${p}.out_layers.3`, o, o, 3);
    if (c !== o) conv(`${p}.skip_connection`, c, o, 1);
  };
  const spatialTransformer = (p: string, c: number): void => {
    norm(`${p}.norm`, c);
    conv(`${p}.proj_in`, c, c, 1);
    const b = `${p}.transformer_blocks.0`;
    linear(`${b}.attn1.to_q`, c, c, false);
    linear(`${b}.attn1.to_k`, c, c, false);
    linear(`${b}.attn1.to_v`, c, c, false);
    linear(`${b}.attn1.to_out.0`, c, c);
    linear(`${b}.ff.net.0.proj`, c, c * 4 * 2); // GEGLU
    linear(`${b}.ff.net.2`, c * 4, c);
    linear(`${b}.attn2.to_q`, c, c, false);
    linear(`${b}.attn2.to_k`, F.contextDim, c, false);
    linear(`${b}.attn2.to_v`, F.contextDim, c, false);
    linear(`${b}.attn2.to_out.0`, c, c);
    norm(`${b}.norm1`, c);
    norm(`${b}.norm2`, c);
    norm(`${b}.norm3`, c);
    conv(`${p}.proj_out`, c, c, 1);
  };
  const zeroConv = (idx: number, c: number): void => conv(`zero_convs.${idx}.0`, c, c, 1);

  linear("time_embed.0", mc, ted);
  linear("time_embed.2", ted, ted);
  conv("input_blocks.0.0", F.latentChannels, mc, 3);
  zeroConv(0, mc);
  // input_hint_block.{0,2,…,14}: 3×3 convs 3 → 16 → 16 → 32 → 32 → 96 → 96 → 256 → mc (SiLU between)
  const hint = [3, ...SD1_CONTROLNET_HINT_CHANNELS, mc];
  for (let i = 0; i + 1 < hint.length; i++) conv(`input_hint_block.${2 * i}`, hint[i], hint[i + 1], 3);
  let ch = mc;
  let idx = 0;
  const levels = F.unetChannelMult.length;
  for (let i = 0; i < levels; i++) {
    for (let j = 0; j < F.unetResBlocks; j++) {
      idx++;
      const o = F.unetChannelMult[i] * mc;
      resBlock(`input_blocks.${idx}.0`, ch, o);
      ch = o;
      if ((F.unetAttentionLevels as readonly number[]).includes(i)) spatialTransformer(`input_blocks.${idx}.1`, ch);
      zeroConv(idx, ch);
    }
    if (i !== levels - 1) {
      idx++;
      conv(`input_blocks.${idx}.0.op`, ch, ch, 3);
      zeroConv(idx, ch);
    }
  }
  resBlock("middle_block.0", ch, ch);
  spatialTransformer("middle_block.1", ch);
  resBlock("middle_block.2", ch, ch);
  conv("middle_block_out.0", ch, ch, 1);
  return out;
}

/** f16 bits of the 65536 evenly spaced values (k + ½)/32768 − 1 (k = 0 … 65535) times `scale`, for the large tensors. */
function f16Table(scale: number, cache: Map<number, Uint16Array>): Uint16Array {
  let t = cache.get(scale);
  if (!t) {
    t = new Uint16Array(65536);
    for (let k = 0; k < 65536; k++) t[k] = f32ToF16Bits(((k + 0.5) / 32768 - 1) * scale);
    cache.set(scale, t);
  }
  return t;
}

/** f16 tensors with at least this many elements take two values per PRNG draw from `f16Table` (about 4× faster). */
const TABLE_MIN_ELEMENTS = 1 << 18;

/**
 * Streams the data of `t` (fill and bound from `spec`; seeded by the
 * unprefixed name) to `write`: random f16 weights of large tensors are 16-bit
 * quantized uniform values (two per PRNG draw), the others uniform ±scale.
 */
async function produce(
  t: GgufTensorEntry,
  spec: SdControlNetTensorSpec,
  seed: number,
  buf: ArrayBuffer,
  tables: Map<number, Uint16Array>,
  write: (chunk: Uint8Array) => Promise<void>,
): Promise<void> {
  if (t.type === GgmlType.Q8_0) return produceTensor({ ...t, name: spec.name }, "weight", seed, spec.scale, buf, write);
  const n = t.shape.reduce((a, b) => a * b, 1);
  const rng = mulberry32(tensorSeed(seed, spec.name));
  const f32 = t.type === GgmlType.F32;
  const f = new Float32Array(buf);
  const h = new Uint16Array(buf);
  const table = !f32 && spec.init === "weight" && n >= TABLE_MIN_ELEMENTS ? f16Table(spec.scale, tables) : undefined;
  for (let done = 0; done < n; ) {
    const m = Math.min(f32 ? f.length : h.length, n - done);
    if (table) {
      for (let k = 0; k < m; k += 2) {
        const r = rng();
        h[k] = table[r & 0xffff];
        if (k + 1 < m) h[k + 1] = table[r >>> 16];
      }
    } else {
      for (let k = 0; k < m; k++) {
        const v = spec.init === "weight" ? (rng() * U32_TO_UNIT - 1) * spec.scale : spec.init === "one" ? 1 : 0;
        if (f32) f[k] = v;
        else h[k] = f32ToF16Bits(v);
      }
    }
    await write(new Uint8Array(buf, 0, m * (f32 ? 4 : 2)));
    done += m;
  }
}

/**
 * Writes an SD1 ControlNet with random weights (GGUF) to `file`.
 * The bytes depend only on the options, so the same seed gives an identical file.
 */
export async function generateRandomSd15ControlNet(file: string, opts: SdControlNetOptions = {}): Promise<SdControlNetResult> {
  const mc = modelChannels(opts);
  const type = opts.type ?? "f16";
  const seed = uint32Seed(opts.seed);
  const prefix = "control_model.";
  const specs = sd15ControlNetTensorPlan(mc, type, opts.gain ?? 1);
  const kvs = [
    { key: "general.name", value: `random-sd1-controlnet-${mc}` },
    { key: "general.description", value: "Stable Diffusion 1.x ControlNet with random weights (genai-native tools)" },
    { key: "general.quantization_version", value: 2, u32: true as const },
  ];
  const buf = new ArrayBuffer(CHUNK_BYTES);
  const tables = new Map<number, Uint16Array>();
  const named = specs.map((t) => ({ ...t, name: prefix + t.name }));
  const bytes = await writeLongNameGguf(file, kvs, named, (i, entry, write) => produce(entry, specs[i], seed, buf, tables, write));
  return {
    path: path.resolve(file),
    bytes,
    tensors: specs.length,
    parameters: specs.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0),
    unetChannels: mc,
    type,
    seed,
  };
}
