/**
 * Generates a Stable Diffusion 1.x checkpoint (UNet + VAE + CLIP ViT-L/14 text
 * encoder in one GGUF file) with deterministic random weights, so tests can run
 * real diffusion through stable-diffusion.cpp without downloads. The images
 * are noise-like; every kernel of the SD1 pipeline (CLIP, UNet with
 * cross-attention, sampler, VAE decoder) runs for real.
 *
 * Tensor names are the original LDM checkpoint names (as in
 * v1-5-pruned-emaonly.safetensors), which sd.cpp uses internally, so its name
 * conversion leaves them unchanged (deps/stable-diffusion.cpp:
 * src/name_conversion.cpp). Shapes follow the block definitions:
 * src/model/diffusion/unet.hpp (UnetModelBlock), src/model/common/block.hpp
 * (ResBlock, SpatialTransformer, BasicTransformerBlock), src/model/vae/
 * auto_encoder_kl.hpp (Encoder, Decoder, ResnetBlock, AttnBlock) and
 * src/model/te/clip.hpp (CLIPTextModel, OPENAI_CLIP_VIT_L_14).
 *
 * sd.cpp detects the version from tensor names (src/model_loader.cpp
 * `get_sd_version`: a 768-wide CLIP token embedding plus `middle_block.1` and
 * `output_blocks.7.1` → VERSION_SD1) and reads these sizes from the weights:
 * the UNet's model channels / time-embedding width (`input_blocks.0.0.weight`,
 * `time_embed.0.weight`) and the VAE decoder's base channels
 * (`decoder.conv_in.weight`). Everything else is fixed by the SD1 code: CLIP
 * ViT-L/14 (12 layers, 768 wide, 77 positions, vocab 49408), the UNet topology
 * (channel mult 1,2,4,4, 2 res blocks, attention at 1/1, 1/2, 1/4, 8 heads,
 * context 768) and the VAE encoder (128 base channels). Hence two presets:
 *  - "sd15": the real SD1.5 shapes (UNet 320/640/1280, VAE 128/256/512),
 *    ~1.07 G parameters;
 *  - "tiny" (default): the same SD1 architecture with 32 UNet model channels
 *    (32/64/128/128) and 32 VAE decoder base channels; CLIP and the VAE
 *    encoder keep their fixed sizes (~162 M parameters, ~150 MB as q8_0).
 *
 * Why GGUF written here rather than through GgufWriter: SD1 tensor names reach
 * 83 bytes (cond_stage_model.transformer.text_model.encoder.layers.11.self_attn
 * .out_proj.weight), and GgufWriter enforces llama.cpp's default GGML_MAX_NAME
 * of 64. sd.cpp reads them: this project builds ggml with GGML_MAX_NAME=160,
 * and when a stock ggml refuses a long name sd.cpp falls back to its own GGUF
 * reader (src/model_io/gguf_reader_ext.h). So this file builds the GGUF header
 * itself (no array metadata: that fallback reader mis-parses arrays) and
 * reuses gguf-writer's GgufDataSink for the streamed, padded tensor data.
 * GGUF rather than safetensors so that "q8_0" files can exist.
 *
 * Types: norm weights are 1.0 and biases 0.0 (f32), the CLIP position
 * embedding is f32 (sd.cpp keeps it f32); convolution kernels are f16 (f32
 * for type "f32": sd.cpp always holds conv kernels as f16 and converts on
 * load; q8_0 cannot hold 3×3 kernels, whose rows are 3 wide); linear weights
 * and the token embedding have `type` (f16 where q8_0's 32-wide rows do not fit).
 *
 * CLI (after the TypeScript build):
 *   node dist/cjs/tools/gen-sd-model.js --out FILE [--preset tiny|sd15]
 *     [--type f16|f32|q8_0] [--seed S] [--scale X] [--name S]
 * prints one JSON line: { path, bytes, tensors, seconds, ... }.
 */
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import {
  GGUF_DEFAULT_ALIGNMENT,
  GGUF_VERSION,
  GgmlType,
  GgufDataSink,
  GgufValueType,
  alignUp,
  tensorByteSize,
  type GgufTensorEntry,
} from "../models/gguf-writer";
import { f32ToF16Bits, mulberry32 } from "./gen-model";

/** Storage type of linear weights and the token embedding. */
export type SdWeightType = "f16" | "f32" | "q8_0";

/** The sizes sd.cpp reads from an SD1 checkpoint's weights. */
export interface Sd1Shape {
  /** UNet model channels (320 in SD1.5); a multiple of 32 (GroupNorm32 and 8 heads). */
  unetChannels: number;
  /** VAE decoder base channels (128 in SD1.5); a multiple of 32 (GroupNorm32). */
  vaeDecoderChannels: number;
}

export const SD_PRESETS = {
  /** UNet 32/64/128/128 channels, VAE decoder 32/64/128/128; CLIP and VAE encoder full size. */
  tiny: { unetChannels: 32, vaeDecoderChannels: 32 },
  /** The real Stable Diffusion 1.5 shapes. */
  sd15: { unetChannels: 320, vaeDecoderChannels: 128 },
} as const satisfies Record<string, Sd1Shape>;

export type SdPresetName = keyof typeof SD_PRESETS;

/** Fixed SD1 sizes (sd.cpp hard-codes them for VERSION_SD1). */
export const SD1_FIXED = {
  clipVocab: 49408,
  clipPositions: 77,
  clipHidden: 768,
  clipLayers: 12,
  clipIntermediate: 3072,
  contextDim: 768,
  unetChannelMult: [1, 2, 4, 4],
  unetResBlocks: 2,
  /** Levels (index into channel mult) that have a SpatialTransformer: ds 1, 2, 4. */
  unetAttentionLevels: [0, 1, 2],
  unetHeads: 8,
  latentChannels: 4,
  vaeEncoderChannels: 128,
  vaeChannelMult: [1, 2, 4, 4],
  vaeResBlocks: 2,
} as const;

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

/**
 * How a tensor is filled: random ±scale, all ones (norm weights), zeros
 * (biases), or "logvar": the VAE's quant_conv bias, 0 for the 4 mean channels
 * and −30 for the 4 log-variance channels, so that the encoder is (almost)
 * deterministic like a trained SD VAE's (std = exp(−15) ≈ 3e-7 at sd.cpp's
 * clamp of −30, src/model/vae/auto_encoder_kl.hpp) and img2img/inpainting
 * results depend on the init image, not on encoder noise drawn from the seed.
 */
export type SdInit = "weight" | "one" | "zero" | "logvar";

/** One tensor of the checkpoint: name, ggml shape (ne[0] first), type and fill. */
export interface SdTensorSpec {
  name: string;
  shape: number[];
  type: GgmlType;
  init: SdInit;
}

const LINEAR_TYPE: Record<SdWeightType, GgmlType> = { f16: GgmlType.F16, f32: GgmlType.F32, q8_0: GgmlType.Q8_0 };

/** Checks sizes and type. @throws RangeError */
export function validateSdShape(shape: Sd1Shape, type: SdWeightType = "q8_0"): void {
  if (!(type in LINEAR_TYPE)) throw new RangeError(`type must be one of ${Object.keys(LINEAR_TYPE).join(", ")}, got ${type}`);
  for (const k of ["unetChannels", "vaeDecoderChannels"] as const) {
    const v = shape[k];
    if (!Number.isSafeInteger(v) || v <= 0 || v % 32 !== 0) throw new RangeError(`${k} must be a positive multiple of 32, got ${v}`);
  }
}

/**
 * The tensors of an SD1 checkpoint, in file order, with LDM names and ggml
 * shapes (ne[0] first: linear [in, out], conv [kw, kh, in, out]).
 */
export function sd1TensorPlan(shape: Sd1Shape, type: SdWeightType = "q8_0"): SdTensorSpec[] {
  validateSdShape(shape, type);
  const F = SD1_FIXED;
  const out: SdTensorSpec[] = [];
  const lin = LINEAR_TYPE[type];
  const convType = type === "f32" ? GgmlType.F32 : GgmlType.F16;
  const names = new Set<string>();
  const add = (name: string, shp: number[], t: GgmlType, init: SdInit): void => {
    if (names.has(name)) throw new Error(`internal: duplicate tensor ${name}`);
    names.add(name);
    out.push({ name, shape: shp, type: t, init });
  };
  // q8_0 needs rows that are a multiple of 32 wide; fall back to f16 otherwise
  const linType = (inFeatures: number): GgmlType => (lin === GgmlType.Q8_0 && inFeatures % 32 !== 0 ? GgmlType.F16 : lin);
  const linear = (p: string, inF: number, outF: number, bias = true): void => {
    add(`${p}.weight`, [inF, outF], linType(inF), "weight");
    if (bias) add(`${p}.bias`, [outF], GgmlType.F32, "zero");
  };
  const conv = (p: string, inC: number, outC: number, k: number, biasInit: SdInit = "zero"): void => {
    add(`${p}.weight`, [k, k, inC, outC], convType, "weight");
    add(`${p}.bias`, [outC], GgmlType.F32, biasInit);
  };
  const norm = (p: string, c: number): void => {
    add(`${p}.weight`, [c], GgmlType.F32, "one");
    add(`${p}.bias`, [c], GgmlType.F32, "zero");
  };

  // --- UNet (model.diffusion_model.*), src/model/diffusion/unet.hpp
  const u = "model.diffusion_model";
  const mc = shape.unetChannels;
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
  linear(`${u}.time_embed.0`, mc, ted);
  linear(`${u}.time_embed.2`, ted, ted);
  conv(`${u}.input_blocks.0.0`, F.latentChannels, mc, 3);
  const skipChans: number[] = [mc];
  let ch = mc;
  let idx = 0;
  const levels = F.unetChannelMult.length;
  for (let i = 0; i < levels; i++) {
    for (let j = 0; j < F.unetResBlocks; j++) {
      idx++;
      const o = F.unetChannelMult[i] * mc;
      resBlock(`${u}.input_blocks.${idx}.0`, ch, o);
      ch = o;
      if ((F.unetAttentionLevels as readonly number[]).includes(i)) spatialTransformer(`${u}.input_blocks.${idx}.1`, ch);
      skipChans.push(ch);
    }
    if (i !== levels - 1) {
      idx++;
      conv(`${u}.input_blocks.${idx}.0.op`, ch, ch, 3);
      skipChans.push(ch);
    }
  }
  resBlock(`${u}.middle_block.0`, ch, ch);
  spatialTransformer(`${u}.middle_block.1`, ch);
  resBlock(`${u}.middle_block.2`, ch, ch);
  let oidx = 0;
  for (let i = levels - 1; i >= 0; i--) {
    for (let j = 0; j < F.unetResBlocks + 1; j++) {
      const ich = skipChans.pop();
      if (ich === undefined) throw new Error("internal: skip channel stack underflow");
      const o = F.unetChannelMult[i] * mc;
      resBlock(`${u}.output_blocks.${oidx}.0`, ch + ich, o);
      ch = o;
      let sub = 1;
      if ((F.unetAttentionLevels as readonly number[]).includes(i)) {
        spatialTransformer(`${u}.output_blocks.${oidx}.1`, ch);
        sub++;
      }
      if (i > 0 && j === F.unetResBlocks) conv(`${u}.output_blocks.${oidx}.${sub}.conv`, ch, ch, 3);
      oidx++;
    }
  }
  norm(`${u}.out.0`, ch);
  conv(`${u}.out.2`, mc, F.latentChannels, 3);

  // --- VAE (first_stage_model.*), src/model/vae/auto_encoder_kl.hpp
  const v = "first_stage_model";
  const resnet = (p: string, c: number, o: number): void => {
    norm(`${p}.norm1`, c);
    conv(`${p}.conv1`, c, o, 3);
    norm(`${p}.norm2`, o);
    conv(`${p}.conv2`, o, o, 3);
    if (c !== o) conv(`${p}.nin_shortcut`, c, o, 1);
  };
  const attnBlock = (p: string, c: number): void => {
    norm(`${p}.norm`, c);
    for (const n of ["q", "k", "v", "proj_out"]) conv(`${p}.${n}`, c, c, 1);
  };
  const vm = F.vaeChannelMult;
  const ec = F.vaeEncoderChannels;
  conv(`${v}.encoder.conv_in`, 3, ec, 3);
  let bin: number = ec;
  for (let i = 0; i < vm.length; i++) {
    const bout = ec * vm[i];
    for (let j = 0; j < F.vaeResBlocks; j++) {
      resnet(`${v}.encoder.down.${i}.block.${j}`, bin, bout);
      bin = bout;
    }
    if (i !== vm.length - 1) conv(`${v}.encoder.down.${i}.downsample.conv`, bin, bin, 3);
  }
  resnet(`${v}.encoder.mid.block_1`, bin, bin);
  attnBlock(`${v}.encoder.mid.attn_1`, bin);
  resnet(`${v}.encoder.mid.block_2`, bin, bin);
  norm(`${v}.encoder.norm_out`, bin);
  conv(`${v}.encoder.conv_out`, bin, 2 * F.latentChannels, 3);
  conv(`${v}.quant_conv`, 2 * F.latentChannels, 2 * F.latentChannels, 1, "logvar");
  conv(`${v}.post_quant_conv`, F.latentChannels, F.latentChannels, 1);
  const dc = shape.vaeDecoderChannels;
  bin = dc * vm[vm.length - 1];
  conv(`${v}.decoder.conv_in`, F.latentChannels, bin, 3);
  resnet(`${v}.decoder.mid.block_1`, bin, bin);
  attnBlock(`${v}.decoder.mid.attn_1`, bin);
  resnet(`${v}.decoder.mid.block_2`, bin, bin);
  for (let i = vm.length - 1; i >= 0; i--) {
    const bout = dc * vm[i];
    for (let j = 0; j < F.vaeResBlocks + 1; j++) {
      resnet(`${v}.decoder.up.${i}.block.${j}`, bin, bout);
      bin = bout;
    }
    if (i !== 0) conv(`${v}.decoder.up.${i}.upsample.conv`, bin, bin, 3);
  }
  norm(`${v}.decoder.norm_out`, bin);
  conv(`${v}.decoder.conv_out`, bin, 3, 3);

  // --- CLIP ViT-L/14 text encoder (cond_stage_model.transformer.text_model.*), src/model/te/clip.hpp
  const t = "cond_stage_model.transformer.text_model";
  const hd = F.clipHidden;
  add(`${t}.embeddings.token_embedding.weight`, [hd, F.clipVocab], linType(hd), "weight");
  add(`${t}.embeddings.position_embedding.weight`, [hd, F.clipPositions], GgmlType.F32, "weight");
  for (let l = 0; l < F.clipLayers; l++) {
    const p = `${t}.encoder.layers.${l}`;
    for (const n of ["q_proj", "k_proj", "v_proj", "out_proj"]) linear(`${p}.self_attn.${n}`, hd, hd);
    norm(`${p}.layer_norm1`, hd);
    linear(`${p}.mlp.fc1`, hd, F.clipIntermediate);
    linear(`${p}.mlp.fc2`, F.clipIntermediate, hd);
    norm(`${p}.layer_norm2`, hd);
  }
  norm(`${t}.final_layer_norm`, hd);
  return out;
}

/** Number of parameters (tensor elements) of a plan. */
export function sdParameterCount(plan: readonly SdTensorSpec[]): number {
  return plan.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
}

// ---------------------------------------------------------------------------
// GGUF header (names may be longer than GgufWriter's 64-byte limit)

type Kv = { key: string; value: string } | { key: string; value: number; u32: true };

function ggufHeader(kvs: readonly Kv[], tensors: readonly GgufTensorEntry[]): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number): void => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    parts.push(b);
  };
  const i32 = (v: number): void => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    parts.push(b);
  };
  const u64 = (v: number): void => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    parts.push(b);
  };
  const str = (s: string): void => {
    const b = Buffer.from(s, "utf8");
    u64(b.length);
    parts.push(b);
  };
  parts.push(Buffer.from("GGUF", "latin1"));
  u32(GGUF_VERSION);
  u64(tensors.length);
  u64(kvs.length);
  for (const kv of kvs) {
    str(kv.key);
    if ("u32" in kv) {
      u32(GgufValueType.UINT32);
      u32(kv.value);
    } else {
      u32(GgufValueType.STRING);
      str(kv.value);
    }
  }
  for (const t of tensors) {
    str(t.name);
    u32(t.shape.length);
    for (const d of t.shape) u64(d);
    i32(t.type);
    u64(t.offset);
  }
  return Buffer.concat(parts);
}

// ---------------------------------------------------------------------------
// Deterministic random data

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

const CHUNK_BYTES = 4 * 1024 * 1024;
const U32_TO_UNIT = 1 / 2147483648; // uint32 → [0, 2)

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
  if (opts.seed !== undefined && (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffffffff)) {
    throw new RangeError(`seed must be a uint32, got ${opts.seed}`);
  }
  const seed = (opts.seed ?? 1) >>> 0;
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

// ---------------------------------------------------------------------------
// CLI

const USAGE = `usage: gen-sd-model --out FILE [--preset tiny|sd15] [--type f16|f32|q8_0]
       [--seed S] [--scale X] [--unet-channels N] [--vae-decoder-channels N] [--name S]
Writes a Stable Diffusion 1.x GGUF checkpoint (UNet + VAE + CLIP-L) with deterministic
random weights and prints JSON { path, bytes, tensors, seconds, ... }.
Defaults: preset tiny, type q8_0, seed 1, scale 0.02.`;

/** Parses CLI arguments and generates the model. Exported for tests. */
export async function runCli(argv: string[]): Promise<GenerateSdResult> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: "string", short: "o" },
      preset: { type: "string" },
      type: { type: "string" },
      seed: { type: "string" },
      scale: { type: "string" },
      "unet-channels": { type: "string" },
      "vae-decoder-channels": { type: "string" },
      name: { type: "string" },
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
  const int = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new Error(`--${name} must be a non-negative integer, got ${v}`);
    return Number(v);
  };
  const preset = (values.preset ?? "tiny") as SdPresetName;
  if (!(preset in SD_PRESETS)) throw new Error(`--preset must be one of ${Object.keys(SD_PRESETS).join(", ")}`);
  const type = (values.type ?? "q8_0") as SdWeightType;
  if (!(type in LINEAR_TYPE)) throw new Error(`--type must be one of ${Object.keys(LINEAR_TYPE).join(", ")}`);
  const shape: Partial<Sd1Shape> = {};
  const uc = int(values["unet-channels"], "unet-channels");
  const vc = int(values["vae-decoder-channels"], "vae-decoder-channels");
  if (uc !== undefined) shape.unetChannels = uc;
  if (vc !== undefined) shape.vaeDecoderChannels = vc;
  return generateRandomSd15Model(values.out, {
    preset,
    type,
    shape,
    seed: int(values.seed, "seed"),
    scale: values.scale === undefined ? undefined : Number(values.scale),
    name: values.name,
  });
}

if (typeof require !== "undefined" && typeof module !== "undefined" && require.main === module) {
  runCli(process.argv.slice(2)).then(
    (r) => process.stdout.write(JSON.stringify(r) + "\n"),
    (e: unknown) => {
      process.stderr.write(`gen-sd-model: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
