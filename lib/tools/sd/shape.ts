/**
 * Sizes, presets and tensor kinds of the random-weight Stable Diffusion 1.x
 * checkpoint (overview and sources: ./plan.ts).
 */
import { GgmlType } from "../gguf/writer";

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

/** Ggml type of linear weights for each `SdWeightType`. */
export const LINEAR_TYPE: Record<SdWeightType, GgmlType> = { f16: GgmlType.F16, f32: GgmlType.F32, q8_0: GgmlType.Q8_0 };

/** Checks sizes and type. @throws RangeError */
export function validateSdShape(shape: Sd1Shape, type: SdWeightType = "q8_0"): void {
  if (!(type in LINEAR_TYPE)) throw new RangeError(`type must be one of ${Object.keys(LINEAR_TYPE).join(", ")}, got ${type}`);
  for (const k of ["unetChannels", "vaeDecoderChannels"] as const) {
    const v = shape[k];
    if (!Number.isSafeInteger(v) || v <= 0 || v % 32 !== 0) throw new RangeError(`${k} must be a positive multiple of 32, got ${v}`);
  }
}

/** One cross-attention (SpatialTransformer) block of the SD1 UNet: its LDM name and width. */
export interface Sd1CrossAttention {
  /** e.g. "input_blocks.1.1.transformer_blocks.0" (under "model.diffusion_model."). */
  block: string;
  /** Channels = the attention's inner width (heads × head width). */
  channels: number;
}

/**
 * The SD1 UNet's 16 cross-attention blocks (src/model/diffusion/unet.hpp; the
 * same as ./plan.ts writes) in diffusers' attention-processor order: the
 * input (down) blocks, then the output (up) blocks, then the middle block.
 * IP-Adapter numbers its per-attention weights 1, 3, 5, … in this order
 * (sd.cpp: src/name_conversion.cpp ip_adapter_index_map).
 */
export function sd1CrossAttentions(unetChannels: number): Sd1CrossAttention[] {
  const F = SD1_FIXED;
  const att = F.unetAttentionLevels as readonly number[];
  const levels = F.unetChannelMult.length;
  const out: Sd1CrossAttention[] = [];
  const tb = "1.transformer_blocks.0";
  for (let i = 0; i < levels; i++) {
    for (let j = 0; j < F.unetResBlocks; j++) {
      if (att.includes(i)) out.push({ block: `input_blocks.${1 + i * (F.unetResBlocks + 1) + j}.${tb}`, channels: F.unetChannelMult[i] * unetChannels });
    }
  }
  for (let i = levels - 1; i >= 0; i--) {
    for (let j = 0; j < F.unetResBlocks + 1; j++) {
      if (att.includes(i))
        out.push({ block: `output_blocks.${(levels - 1 - i) * (F.unetResBlocks + 1) + j}.${tb}`, channels: F.unetChannelMult[i] * unetChannels });
    }
  }
  out.push({ block: `middle_block.${tb}`, channels: F.unetChannelMult[levels - 1] * unetChannels });
  return out;
}
