/**
 * Random-weight LoRAs for the generated SD1 checkpoints
 * (generateRandomSd15Model), as safetensors with kohya's tensor names, which
 * stable-diffusion.cpp's LoRA loader maps onto its LDM names
 * (deps/stable-diffusion.cpp: src/name_conversion.cpp convert_tensor_name):
 *
 *   lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight
 *     → model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight (its lora_down)
 *
 * ("lora_unet_" + the diffusers module path with "_" for ".", then
 * ".lora_down.weight" / ".lora_up.weight"). Per adapted linear W (PyTorch
 * shape [out, in]): lora_down [rank, in] and lora_up [out, rank], f32, no
 * alpha; sd.cpp adds multiplier · up · down to W (src/model/adapter/lora.hpp).
 */
import fs from "node:fs";
import path from "node:path";
import { mulberry32, tensorSeed, uint32Seed } from "../random";
import { SD1_FIXED, SD_PRESETS, type SdPresetName } from "./shape";

/** The linear layers of a transformer block that can be adapted. */
export type SdLoraTarget = "attn1_to_q" | "attn1_to_k" | "attn1_to_v" | "attn2_to_q" | "attn2_to_k" | "attn2_to_v";

export interface SdLoraOptions {
  /** The checkpoint's preset (generateRandomSd15Model's). Default "tiny". */
  preset?: SdPresetName;
  /** Rank of lora_down / lora_up. Default 4. */
  rank?: number;
  /** Adapted layers, in both transformer blocks of the UNet's first level. Default ["attn2_to_k", "attn2_to_v"]. */
  targets?: readonly SdLoraTarget[];
  /** PRNG seed (uint32). Default 1. */
  seed?: number;
  /** Values are uniform in ±scale. Default 0.5 (on the "tiny" checkpoint: a mean pixel change of about 3 of 255 at LoRA scale 1, 2 steps). */
  scale?: number;
}

/** One tensor of the file: its name, PyTorch shape, f32 values. */
export interface LoraTensor {
  name: string;
  shape: [number, number];
  data: Float32Array;
}

/** The tensors of a random SD1 LoRA (see the file comment). @throws RangeError */
export function sdLoraTensors(opts: SdLoraOptions = {}): LoraTensor[] {
  const rank = opts.rank ?? 4;
  if (!Number.isInteger(rank) || rank < 1 || rank > 1024) throw new RangeError(`rank must be an integer in [1, 1024], got ${rank}`);
  const preset = SD_PRESETS[opts.preset ?? "tiny"];
  if (!preset) throw new RangeError(`unknown preset ${opts.preset}`);
  const seed = opts.seed ?? 1;
  const scale = opts.scale ?? 0.5;
  const c = preset.unetChannels; // the first level's width (channel mult 1)
  const out: LoraTensor[] = [];
  const fill = (name: string, shape: [number, number]): void => void out.push(randomLoraTensor(name, shape, seed, scale));
  for (const block of [0, 1]) {
    for (const target of opts.targets ?? ["attn2_to_k", "attn2_to_v"]) {
      const inFeatures = target.startsWith("attn2_to_k") || target.startsWith("attn2_to_v") ? SD1_FIXED.contextDim : c;
      const base = `lora_unet_down_blocks_0_attentions_${block}_transformer_blocks_0_${target}`;
      fill(`${base}.lora_down.weight`, [rank, inFeatures]);
      fill(`${base}.lora_up.weight`, [c, rank]);
    }
  }
  return out;
}

/**
 * Writes a random LoRA for SD1 checkpoints of `opts.preset` to `file` (safetensors).
 * @returns the path, the file size in bytes and the number of tensors.
 */
export async function generateRandomSdLora(file: string, opts: SdLoraOptions = {}): Promise<{ path: string; bytes: number; tensors: number }> {
  return writeLoraSafetensors(file, sdLoraTensors(opts), "genai-native random SD1 LoRA");
}

/** A LoRA matrix of `shape` with values uniform in ±scale, seeded by (seed, name). */
export function randomLoraTensor(name: string, shape: [number, number], seed: number, scale: number): LoraTensor {
  const rnd = mulberry32(tensorSeed(seed, name));
  const data = new Float32Array(shape[0] * shape[1]);
  for (let i = 0; i < data.length; i++) data[i] = (rnd() / 0x1_0000_0000) * 2 * scale - scale;
  return { name, shape, data };
}

/** Options of a random DiT LoRA (./flux1.ts, ./flux2.ts). */
export interface DitLoraOptions {
  /** Default 4; an integer in [1, 1024]. */
  rank?: number;
  /** Default 1. */
  seed?: number;
  /** Values are uniform in ±scale. Default 0.5. */
  scale?: number;
}

/**
 * Writes a random LoRA for the DiT layers `targets` ([name, in, out]: PyTorch's
 * Linear in/out features) to `file` (safetensors, f32), in the PEFT / ComfyUI
 * naming Flux LoRAs ship with: "diffusion_model.<layer>.lora_A.weight"
 * [rank, in] and ".lora_B.weight" [out, rank], no alpha (src/name_conversion.cpp
 * maps "diffusion_model." to "model.diffusion_model." and lora_A / lora_B to
 * lora_down / lora_up; src/model/adapter/lora.hpp adds scale · B · A to the
 * layer's weight).
 * @throws RangeError for a rank outside [1, 1024] or a seed that is not a uint32
 */
export async function writeRandomDitLora(
  file: string,
  targets: readonly [string, number, number][],
  opts: DitLoraOptions,
  generator: string,
): Promise<{ path: string; bytes: number; tensors: number }> {
  const rank = opts.rank ?? 4;
  if (!Number.isInteger(rank) || rank < 1 || rank > 1024) throw new RangeError(`rank must be an integer in [1, 1024], got ${rank}`);
  const seed = uint32Seed(opts.seed);
  const scale = opts.scale ?? 0.5;
  const tensors = targets.flatMap(([name, inF, outF]) => [
    randomLoraTensor(`diffusion_model.${name}.lora_A.weight`, [rank, inF], seed, scale),
    randomLoraTensor(`diffusion_model.${name}.lora_B.weight`, [outF, rank], seed, scale),
  ]);
  return writeLoraSafetensors(file, tensors, generator);
}

/** Writes LoRA tensors (f32) to a safetensors file. @returns the path, the file size in bytes and the number of tensors. */
export async function writeLoraSafetensors(file: string, tensors: LoraTensor[], generator: string): Promise<{ path: string; bytes: number; tensors: number }> {
  const header: Record<string, unknown> = { __metadata__: { format: "pt", generator } };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8); // data 8-byte aligned
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const parts = [len, Buffer.from(json), ...tensors.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength))];
  await fs.promises.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  await fs.promises.writeFile(file, Buffer.concat(parts));
  return { path: file, bytes: parts.reduce((s, p) => s + p.length, 0), tensors: tensors.length };
}
