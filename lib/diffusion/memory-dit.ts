/**
 * The compute buffers of the DiT families (Z-Image, Flux 1, Flux 2 [klein],
 * Qwen-Image, SD3.5 Large) as a function of the image's size and the prompt's length,
 * fitted to stable-diffusion.cpp's own allocations: the DiT side of
 * ./memory.ts (estimateDiffusionMemory), which also holds the SD1 fit.
 */
import { GenaiError } from "../errors";
import { optInt } from "../util/validate";
import { MAX_SIDE, MIN_SIDE, SIDE_MULTIPLE } from "./defaults";
import type { DiffusionImageSize, DiffusionParts } from "./memory";
import type { UnetFamily } from "./memory-unet";
import { ditFamilyOf, type TensorInfo } from "./tensors";

/** A tensor whose name ends with `suffix` (any prefix: checkpoint "model.diffusion_model.", a split file's none). */
export const findTensor = (ts: readonly TensorInfo[], suffix: string) => ts.find((t) => t.name.endsWith(suffix));

/** Longest prompt the estimate takes, in tokens (a token is at least one of MAX_PROMPT_CHARS' characters). */
export const MAX_PROMPT_TOKENS = 4096;

/** width and height, checked: multiples of 64 pixels in 64..4096. */
export function checkImageSides(image: DiffusionImageSize): [number, number] {
  const w = optInt("width", image.width, 0, MIN_SIDE, MAX_SIDE);
  const h = optInt("height", image.height, 0, MIN_SIDE, MAX_SIDE);
  if (w % SIDE_MULTIPLE || h % SIDE_MULTIPLE)
    throw new GenaiError("INVALID_ARGUMENT", `width and height must be multiples of ${SIDE_MULTIPLE} pixels (got ${w}×${h})`);
  return [w, h];
}

/**
 * An upper bound of the text-encoder tokens of these prompts (the longest):
 * its UTF-8 bytes, since each token of the byte-level BPE tokenizers these
 * families use (Qwen2's) covers at least one byte; at most MAX_PROMPT_TOKENS.
 * A generation's DiffusionImageSize.promptTokens for budgeting.
 */
export function promptTokenBound(...prompts: (string | undefined)[]): number {
  const bytes = Math.max(1, ...prompts.map((p) => (typeof p === "string" ? Buffer.byteLength(p) : 0)));
  return Math.min(bytes, MAX_PROMPT_TOKENS);
}

/** The DiT families with fitted compute buffers. */
export type DitFamily = "zimage" | "flux1" | "flux2" | "qwenimage" | "sd3";

/** The widths a DiT family's compute buffers depend on (not its depth: ggml_gallocr reuses one layer's buffers for the next), read from the files' tensors. */
export interface DitShape {
  family: DitFamily;
  /** The DiT's hidden size and attention heads (Z-Image 3840 / 30; Flux 1, Flux 2 [klein] 4B and Qwen-Image 3072 / 24; SD3.5 Large 2432 / 38). */
  ditHidden: number;
  ditHeads: number;
  /** The text encoder's hidden size and FFN width (LLMs: Qwen3-4B 2560 / 9728, Qwen2.5-VL-7B 3584 / 18944; Flux 1's T5-XXL 4096 / 10240). */
  textHidden: number;
  textFfn: number;
  /** VAE decoder base channels (the Flux and Flux 2 VAEs 128, the Wan VAE 96). */
  vaeDecoderChannels: number;
  /**
   * The Wan VAE's layout (Qwen-Image): "2d" (conv2d kernels) or "causal3d"
   * (Qwen-Image's own VAE file: CausalConv3d kernels, which pad a single
   * frame to three in time). Absent: "2d", the only layout of the other VAEs.
   */
  vaeLayout?: "2d" | "causal3d";
}

/** One DiT family's fitted compute buffers (bytes), valid at the widths in `shape`. */
export interface DitFit {
  /** The widths measured (the real model's). */
  shape: Omit<DitShape, "family">;
  /**
   * The DiT, L = image tokens + the text tokens of its joint attention
   * ({@link ditTokens}). Without flash attention S·L² + Tᵢ·image + Tₜ·text
   * + K (S: the f32 attention scores, heads × 4 bytes per token pair, from
   * the graph). With flash attention (no L² term): per image token, per
   * text token, constant. `dualStream`: the image and text tokens' linear
   * parts do not add up, the larger one counts (max(Tᵢ·image, Tₜ·text):
   * Qwen-Image's blocks run each stream's MLP apart).
   */
  dit: {
    scores: number;
    perImageToken: number;
    perTextToken: number;
    constant: number;
    flashPerImageToken: number;
    flashPerTextToken: number;
    flashConstant: number;
    dualStream?: boolean;
    /**
     * SD3's MMDiT crops its 192 × 192 position grid before the blocks
     * (mmdit.hpp cropped_pos_embed): an f32 copy of the grid's rows for each
     * row of image patches (4 × hidden × 192 bytes) and two of the crop (8 ×
     * hidden per image token), + K. The buffer is the larger of that stage and
     * the blocks' (tall images with flash attention).
     */
    posEmbedCrop?: { perPatchRow: number; perImageToken: number; constant: number };
  };
  /**
   * The LLM text encoder over n tokens: T·n + K. Its FFN's activations are the
   * peak at the measured lengths (its attention scores, heads × n² × 4 bytes,
   * are not; sd.cpp's LLM never uses flash attention, and load.flashAttention
   * was measured to change nothing).
   */
  textEncoder: { perToken: number; constant: number };
  /**
   * The VAE decode: bytes per pixel per decoder base channel (the decoder's
   * full-resolution activations), plus per latent token (8 × 8 pixels);
   * `channels`: the decoder widths measured (the real model's is shape.vaeDecoderChannels).
   */
  vae: { perPixelChannel: number; perLatentToken: number; channels: readonly number[] } & VaeEncodeFit;
  /** The same for the causal-3D layout of the Wan VAE, where it was measured. */
  vaeCausal3d?: { perPixelChannel: number; perLatentToken: number } & VaeEncodeFit;
  /** vaeTiling: the largest tile sd.cpp decodes at once, pixels a side; undefined where tiling was not measured. */
  vaeTilePixels: number | undefined;
  /** vaeTiling: the largest tile sd.cpp encodes at once (img2img), pixels a side: 64 latent tokens (vae.hpp encode_tile_factor 2). */
  vaeEncodeTilePixels: number | undefined;
}

/** img2img's VAE encode (initImage): bytes per pixel + a constant (the encoder's widths are the family's, whatever the decoder's). */
export interface VaeEncodeFit {
  encodePerPixel: number;
  encodeConstant: number;
}

/** The prompt length (text-encoder tokens) the estimate assumes when DiffusionImageSize.promptTokens is not given: a long prompt, about 190 English words. */
export const DEFAULT_PROMPT_TOKENS = 256;

/**
 * The DiT families' fitted coefficients (bytes). Measured with sd-cli at
 * stable-diffusion.cpp commit 487de75c on CPU (the "RAM" buffers), one step,
 * euler, CFG 1, on random-weight models from lib/tools/sd at the real models'
 * widths and 1 or 2 layers (the buffers do not grow with depth: ggml_gallocr
 * reuses one layer's buffers for the next): the size sd.cpp logs at debug
 * level for each runner's ggml_gallocr reserve, "<runner> compute buffer
 * size: N MB(RAM)" (N in MiB, two decimals; runners z_image / flux /
 * qwen_image, qwen3 / qwen2.5vl / t5 + clip, vae / wan_vae). L counts the DiT's tokens:
 * image tokens (16 × 16 pixels each in every family) + the text tokens of its
 * joint attention ({@link ditTokens}). Least squares on relative error, the
 * L² coefficient held at the graph's f32 attention scores (heads × 4 bytes).
 * A GPU backend's allocator sizes the same graphs, but was not measured here.
 */
export const DIT_COMPUTE_FIT: Readonly<Record<DitFamily, DitFit>> = {
  /**
   * Z-Image-Turbo: generateRandomZImageModel with DiT hidden 3840 (30 heads
   * of 128), FFN 10240, 1 layer + 1 noise and 1 context refiner, Qwen3 text
   * encoder hidden 2560 / FFN 9728 / 32 heads (Qwen3-4B's), 1 layer.
   * Prompt "a lighthouse" (11 text-encoder tokens, 32 DiT text tokens) at
   * 128², 256², 512², 768², 1024² and 128×512 pixels, and a 139-token prompt
   * (147 / 160) at 256²; with flash attention in the DiT (sd-cli
   * --diffusion-fa) at 128², 512², 768², 128×512 and the long prompt at 256²
   * (--fa, what load.flashAttention sets for every runner, gave the same there).
   * Measured (MiB): DiT 16.62, 47.80, 238.22, 867.91, 2379.47, 47.80 and
   * 73.43 (flash attention: 15.69, 171.55, 379.36, 46.86, 58.59); text
   * encoder 1.20, 16.16, 31.71 and 47.40 at 11, 147, 287 and 427 tokens
   * (147: with or without flash attention). Largest error of the fit: DiT
   * −4.3 % (256²), flash attention < 0.01 %, text encoder 0.5 %.
   * The VAE is the Flux VAE, an SD1 decoder of 16 latent channels: its
   * buffer is SD1's, 52 bytes per pixel per decoder channel + 16 per latent
   * token (measured 104.02 and 416.06 MiB at 128² and 256² with 128
   * channels, and 26.02 to 1665.00 MiB from 128² to 1024² with 32: within
   * 0.05 %; flash attention changes nothing at 256²). vaeTiling: 256-pixel
   * tiles, as SD1's (512² decoded in 104.06 MiB at 32 channels, as 256² is).
   * VAE encode (img2img), as SD1's: 3394 B/px (13.26, 53.03, 212.13 and
   * 106.06 MiB at 64², 128², 256² and 128×256); tiled, 848.50 MiB at 768²
   * (512² tiles).
   */
  zimage: {
    shape: { ditHidden: 3840, ditHeads: 30, textHidden: 2560, textFfn: 9728, vaeDecoderChannels: 128 },
    dit: {
      scores: 120,
      perImageToken: 111_832,
      perTextToken: 142_343,
      constant: 4_826_411,
      flashPerImageToken: 170_238,
      flashPerTextToken: 96_081,
      flashConstant: 2_482_201,
    },
    textEncoder: { perToken: 115_920, constant: -17_117 },
    vae: { perPixelChannel: 52, perLatentToken: 16, channels: [32, 128], encodePerPixel: 3394, encodeConstant: 0 },
    vaeTilePixels: 256,
    vaeEncodeTilePixels: 512,
  },
  /**
   * Flux 1 [dev]: generateRandomFlux1Model (q4_0) with DiT hidden 3072 (24
   * heads), 1 double + 1 single block, T5 width 4096 / FFN 10240 (T5-XXL's),
   * 1 layer, CLIP-L, and a 32-channel VAE decoder. T5 runs on 256-token
   * chunks, the prompt padded to a whole number of them; the DiT sees every
   * chunk's tokens ({@link ditTokens}). At 128², 256², 512², 768², 1024² and
   * 128×512 with "a lighthouse" (one chunk) and at 256² with a 400-word
   * prompt (two chunks): DiT 60.96, 103.57, 341.50, 973.07, 2361.25, 103.57
   * and 173.82 MiB; flash attention (128², 512², 128×512, 1024², the long
   * prompt at 256²) 53.08, 230.50, 85.57, 780.25, 128.82. T5 68.25 MiB per
   * chunk (one or two chunks alike) and CLIP-L 1.42, one after the other:
   * the text-encoder part is their sum. The VAE is the Flux VAE as
   * Z-Image's: 26.02 to 1665.00 MiB from 128² to 1024² at 32 channels,
   * within 0.05 % of that fit; vaeTiling 104.06 MiB at 512² and 768² (256²
   * tiles). Reference images (Kontext's path) join the image's tokens as
   * Flux 2's do ({@link refImagePixels}): a 256² reference at a 256² target
   * 172.88 MiB, the DiT of 256×512; a 512×256 one, encoded at 368×176
   * (209.64 MiB), 172.00. Largest error of the fit: DiT 0.33 % (1024²),
   * flash attention 2.1 % (128×512).
   */
  flux1: {
    shape: { ditHidden: 3072, ditHeads: 24, textHidden: 4096, textFfn: 10240, vaeDecoderChannels: 128 },
    dit: {
      scores: 96,
      perImageToken: 151_693,
      perTextToken: 165_335,
      constant: 2_155_356,
      flashPerImageToken: 190_120,
      flashPerTextToken: 169_723,
      flashConstant: -491_449,
    },
    textEncoder: { perToken: 0, constant: 73_054_290 },
    vae: { perPixelChannel: 52, perLatentToken: 16, channels: [32, 128], encodePerPixel: 3394, encodeConstant: 0 },
    vaeTilePixels: 256,
    vaeEncodeTilePixels: 512,
  },
  /**
   * Flux 2 [klein] 4B: generateRandomFlux2KleinModel with DiT hidden 3072
   * (24 heads), 1 double + 1 single block, and Qwen3 hidden 2560 / FFN 9728 /
   * 32 heads, 27 layers (the three hidden states klein reads, after layers 9,
   * 18 and 27: context 7680). The DiT was swept with a 32-wide text encoder
   * (context 96: a fast run) and a 32-channel VAE decoder at 128², 256²,
   * 512², 768², 1024² and 128×512 with "a lighthouse" (15 tokens, padded to
   * 512) and at 256² with a 559-token prompt (571); measured (MiB) 125.66,
   * 181.06, 476.19, 1216.06, 2730.69, 181.06 and 199.44; flash attention
   * 121.53, 160.06, 350.19, 589.06, 1056.69, 160.06, 249.78 (384²) and 172.59.
   * The real context (7680) adds 8.06 MiB at 128² (5.82 at 256²; flash
   * attention 2.06), added to the constants. Text encoder at the real widths
   * (27 layers: it keeps three hidden states): 65.00 MiB at 512 tokens, with
   * or without flash attention; longer prompts are counted at Z-Image's
   * Qwen3 slope (not measured). VAE (32 latent channels, 2 × 2 patches):
   * 52 bytes per pixel per decoder channel + 128 per latent token (26.03 to
   * 1666.00 MiB from 128² to 1024² at 32 channels, 104.03 and 416.13 at 128
   * channels: within 0.05 %); vaeTiling decodes 32 × 32-latent tiles of 16
   * pixels, 512² (768² tiled: 416.50 MiB, as 512² untiled). Largest error
   * of the fit: DiT 0.6 % (+1.7 % at 256² with the real context), flash
   * attention 6.5 % (+6.5 % at 1024², −5.0 % at 384²). VAE encode
   * (img2img, reference images): 3394 B/px as SD1's (13.26 to 212.13 MiB from
   * 64² to 256², 1909.13 at 768²); tiled, 1024² tiles (3394.00 MiB at 1280²).
   */
  flux2: {
    shape: { ditHidden: 3072, ditHeads: 24, textHidden: 2560, textFfn: 9728, vaeDecoderChannels: 128 },
    dit: {
      scores: 96,
      perImageToken: 181_379,
      perTextToken: 156_040,
      constant: 16_390_225,
      flashPerImageToken: 236_682,
      flashPerTextToken: 133_819,
      flashConstant: 46_132_333,
    },
    textEncoder: { perToken: 115_920, constant: 8_806_400 },
    vae: { perPixelChannel: 52, perLatentToken: 128, channels: [32, 128], encodePerPixel: 3394, encodeConstant: 0 },
    vaeTilePixels: 512,
    vaeEncodeTilePixels: 1024,
  },
  /**
   * Qwen-Image: generateRandomQwenImageModel (DiT hidden 3072, 24 heads,
   * 1 block; Qwen2.5-VL text encoder hidden 3584, FFN 18944 (7B's), 1 layer;
   * q4_0) with its 2D Wan VAE (96 channels).
   * At 128², 256², 512², 768² and 128×512 with "a lighthouse" (42 text
   * encoder tokens: 34 of them a system prompt the DiT does not see, so 8 DiT
   * text tokens), at 256² with a 139-token prompt (178 / 144) and at 128² and
   * 256² with a 559-token prompt (598 / 564). Measured (MiB): DiT 8.61,
   * 30.59, 183.25, 681.69, 30.59, 37.13, 74.63, 104.96; flash attention
   * (256², 512², 768², long 256², 559 tokens at 128²) 30.50, 121.37, 272.93,
   * 32.42, 41.46; text encoder 7.80, 33.15, 112.33 at 42, 178, 598 tokens
   * (with or without flash attention); the 2D Wan VAE 48 bytes per pixel per
   * channel (96) + 64 per latent token: 72.02 to 2592.56 MiB from 128² to
   * 768², within 0.01 %. vaeTiling with the Wan VAE was not measured.
   * Qwen-Image's own VAE file is the causal-3D layout of the Wan VAE
   * (generateRandomQwenImageModel with vae "causal3d", 126.9 M parameters as
   * Wan 2.1's): its single-frame decode is padded to three frames in time,
   * measured (MiB) 117.58, 469.19, 1054.83, 1874.50 and 469.47 at 128²,
   * 256², 384², 512² and 128×512: 78 bytes per pixel per channel + 525 per
   * latent token, within 0.5 % (128²) and 0.05 % from 256².
   * VAE encode (img2img): 2D 2892 B/px (11.30, 45.19, 180.75 and 90.38 MiB
   * at 64², 128², 256² and 128×256); causal-3D 7710 B/px + 0.4 MiB (30.36,
   * 120.87, 482.29 and 241.44 MiB: within 0.6 %).
   * CFG > 1 (2.5, a negative prompt) changes no buffer: the unconditioned
   * pass reuses the DiT's graph (the longer of the two prompts counts: the
   * orchestrator bounds both), the text encoder runs once per prompt.
   * Largest error of the fit: DiT +4.0 % (256², 139 tokens), flash attention
   * −5.9 % (the same), text encoder 0.4 %.
   */
  qwenimage: {
    shape: { ditHidden: 3072, ditHeads: 24, textHidden: 3584, textFfn: 18944, vaeDecoderChannels: 96 },
    dit: {
      scores: 96,
      perImageToken: 86_453,
      perTextToken: 70_800,
      constant: 3_012_928,
      flashPerImageToken: 124_120,
      flashPerTextToken: 76_720,
      flashConstant: 206_000,
      dualStream: true,
    },
    textEncoder: { perToken: 196_473, constant: -78_535 },
    vae: { perPixelChannel: 48, perLatentToken: 64, channels: [96], encodePerPixel: 2892, encodeConstant: 0 },
    vaeCausal3d: { perPixelChannel: 78, perLatentToken: 525, encodePerPixel: 7710, encodeConstant: 417_300 },
    vaeTilePixels: undefined,
    vaeEncodeTilePixels: undefined,
  },
  /**
   * SD3.5 Large: generateRandomSd3Model (type q4_0) with its MMDiT at SD3.5
   * Large's widths and depth (sd.cpp gives the MMDiT as many heads as joint
   * blocks: 38 blocks of hidden 2432, 38 heads, 8.1 G parameters, 4.9 GB
   * written in a minute), RMS q/k norms, 192² position grid; CLIP-L and bigG
   * at full size, T5 4096 / FFN 10240 with 1 layer. Text runs in 77-token
   * chunks (CLIP-L, bigG and T5 each), the DiT sees 154 tokens per chunk
   * ({@link ditTokens}). "a lighthouse" (one chunk) at 128², 256², 512²,
   * 768², 1024², and 256² with 100 and 400 prompt tokens (2 and 6 chunks):
   * DiT 27.41, 58.70, 277.97, 1022.75, 2865.44, 93.82, 300.62 MiB; flash
   * attention (the same but 768²) 20.52, 35.73, 101.02, 356.84, 47.71, 107.36.
   * Position-grid crop, flash attention, W × H 64×512, 128×512, 64×1024,
   * 128×1024, 256×1024, 64×2048: 61.82, 64.23, 121.23, 126.04, 135.66,
   * 240.04 MiB (without flash attention 128×512 is 64.23 too). Text
   * encoders 1.42 (CLIP-L), 2.36 (bigG) and 9.65 (T5) MiB per chunk, all
   * three held until the conditioner ends (runner_done): their sum. VAE:
   * the Flux VAE's layout, as Flux 1's: measured with SD3's tiny VAE 26.02
   * and 104.06 MiB at 128² and 256² (32 channels), encode 53.03 at 128²,
   * 512² tiled 104.06. Largest error of the fit: DiT 2.4 % (256²), flash
   * attention 4.6 % (100 tokens), the crop 0.13 %.
   */
  sd3: {
    shape: { ditHidden: 2432, ditHeads: 38, textHidden: 4096, textFfn: 10240, vaeDecoderChannels: 128 },
    dit: {
      scores: 152,
      perImageToken: 65_889,
      perTextToken: 92_901,
      constant: 3_341_806,
      flashPerImageToken: 86_932,
      flashPerTextToken: 94_088,
      flashConstant: 1_073_759,
      posEmbedCrop: { perPatchRow: 1_867_776, perImageToken: 19_456, constant: 2_646_781 },
    },
    textEncoder: { perToken: 0, constant: 14_082_376 },
    vae: { perPixelChannel: 52, perLatentToken: 16, channels: [32, 128], encodePerPixel: 3394, encodeConstant: 0 },
    vaeTilePixels: 256,
    vaeEncodeTilePixels: 512,
  },
};

/** Tokens the chat templates add around the prompt (src/conditioning/conditioner.hpp; counted in sd.cpp's tokenizer log). */
const TEMPLATE_TOKENS: Readonly<Record<DitFamily, number>> = { zimage: 8, flux1: 1, flux2: 12, qwenimage: 39, sd3: 0 };
/**
 * SD3 encodes the prompt in chunks of 77 tokens with each of CLIP-L, bigG and
 * T5 (conditioner.hpp SD3CLIPEmbedder), 75 of the prompt's in CLIP's (BOS and
 * EOS around them), and joins CLIP's and T5's states: 154 DiT tokens a chunk.
 */
const SD3_CHUNK = 77;
const SD3_PROMPT_PER_CHUNK = 75;
/** Flux 1's T5 runs on chunks of this many tokens, the prompt's padded to a whole number of them (conditioner.hpp FluxCLIPEmbedder chunk_len). */
const FLUX1_T5_CHUNK = 256;
/** Qwen-Image drops its system prompt's tokens (prompt_template_encode_start_idx) from the DiT's context. */
const QWEN_IMAGE_DROPPED_TOKENS = 34;
/** Flux 2 [klein] pads the prompt to at least this many tokens. */
const FLUX2_KLEIN_MIN_TOKENS = 512;
/** Z-Image pads its caption and image tokens to multiples of this (z_image.hpp SEQ_MULTI_OF). */
const Z_IMAGE_SEQ_MULTIPLE = 32;

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/**
 * The token counts a generation of a DiT family runs on: the text encoder's
 * input (`text`), the text tokens of the DiT's joint attention (`ditText`) and
 * the image tokens (`image`, one per 16 × 16 pixels: an 8× VAE and 2 × 2
 * patches, or Flux 2's 16× VAE with patch 1), for a prompt of `promptTokens`.
 */
export function ditTokens(family: DitFamily, width: number, height: number, promptTokens: number): { text: number; ditText: number; image: number } {
  const image = (width / 16) * (height / 16);
  const text = promptTokens + TEMPLATE_TOKENS[family];
  switch (family) {
    case "zimage":
      return { text, ditText: roundUp(text, Z_IMAGE_SEQ_MULTIPLE), image: roundUp(image, Z_IMAGE_SEQ_MULTIPLE) };
    case "flux1":
      // T5 runs once per 256-token chunk (its buffer is one chunk's); the DiT sees every chunk's tokens
      return { text: FLUX1_T5_CHUNK, ditText: roundUp(text, FLUX1_T5_CHUNK), image };
    case "flux2": {
      const padded = Math.max(text, FLUX2_KLEIN_MIN_TOKENS);
      return { text: padded, ditText: padded, image };
    }
    case "qwenimage":
      return { text, ditText: text - QWEN_IMAGE_DROPPED_TOKENS, image };
    case "sd3":
      return { text: SD3_CHUNK, ditText: 2 * SD3_CHUNK * Math.max(1, Math.ceil(promptTokens / SD3_PROMPT_PER_CHUNK)), image };
  }
}

/**
 * The size sd.cpp VAE-encodes a reference image at, pixels [width, height]
 * (src/stable-diffusion.cpp, resize_before_vae, the default of the flux2
 * and qwen presets): the target's area, at most 1024², at the reference's
 * aspect ratio, each side rounded to a multiple of 16 (Qwen-Image: 32). Its
 * DiT tokens are one per 16 × 16 pixels, as the image's: measured, a 256²
 * target with two 256² references takes the DiT buffer of a 256×768 target
 * (Flux 2 [klein] 367.81 MiB both), and with one Qwen-Image's 68.00 MiB
 * against 67.94 for 256×512.
 */
export function refImagePixels(family: DitFamily | UnetFamily, width: number, height: number, ref: { width: number; height: number }): [number, number] {
  const area = Math.min(1024 * 1024, width * height);
  const w = Math.sqrt(Math.floor((area * ref.width) / ref.height)); // sd.cpp: integer product and quotient, then sqrt
  const h = (w * ref.height) / ref.width;
  const factor = family === "qwenimage" ? 32 : 16;
  return [Math.round(w / factor) * factor, Math.round(h / factor) * factor];
}

/**
 * A TAESD's compute buffers (load.taesd decoding and encoding in place of the VAE), bytes per pixel: measured
 * as the VAEs' ("taesd compute buffer size" at debug level, CPU backend) with generateRandomTaesd's files
 * (tae.hpp's 64-channel layout). SD1 with 4 latent channels, decoding at 64², 128², 256², 256×512 and 512²: 7.50,
 * 30.00, 120.02, 240.03, 480.06 MiB; encoding (img2img) at 128², 256², 512²: 31.03, 124.13, 496.50 MiB. Flux 2
 * [klein] with TAEF2's 32 latent channels (and its group-norm branch): 7.51, 30.03, 120.13 MiB decoding at 64²,
 * 128², 256², the same encodes. Largest error of these rates: 0.1 %. tae.hpp fixes the width; the latent channels
 * change the first and last convs only, so Z-Image's 16 lie between. Per image (sd.cpp decodes a batch one by
 * one). Not measured: vaeTiling with a TAESD, and Qwen-Image's (the video tiny autoencoder, TAEHV).
 */
export const TAESD_COMPUTE_FIT = { decodePerPixel: 1922, encodePerPixel: 1986 } as const;

/**
 * The VAE part when a TAESD decodes and encodes (TAESD_COMPUTE_FIT), bytes: its decode of one width × height
 * image or its largest encode of `encodes` ([width, height] pixels each), whichever is larger. Untiled only.
 */
export function taesdComputeBytes(width: number, height: number, encodes: readonly (readonly [number, number])[]): number {
  return Math.max(TAESD_COMPUTE_FIT.decodePerPixel * width * height, largestEncodeBytes(encodes, TAESD_COMPUTE_FIT.encodePerPixel, 0, undefined));
}

/**
 * The largest VAE encode of one generation, bytes: perPixel × pixels + constant for each image sd.cpp encodes
 * (`sizes`: [width, height] pixels; an init or control image, resized references), each at most `tile` pixels a
 * side (vaeTiling; undefined: untiled); 0 when nothing is encoded. The UNet and DiT families' shared rule.
 */
export function largestEncodeBytes(sizes: readonly (readonly [number, number])[], perPixel: number, constant: number, tile: number | undefined): number {
  const side = (s: number) => (tile === undefined ? s : Math.min(s, tile));
  return Math.max(0, ...sizes.map(([w, h]) => perPixel * side(w) * side(h) + constant));
}

/** Whether `shape` has the widths `fit` was measured at (the VAE decoder: one of those measured). */
const measuredWidths = (fit: DitFit, shape: DitShape) =>
  fit.shape.ditHidden === shape.ditHidden &&
  fit.shape.ditHeads === shape.ditHeads &&
  fit.shape.textHidden === shape.textHidden &&
  fit.shape.textFfn === shape.textFfn &&
  fit.vae.channels.includes(shape.vaeDecoderChannels);

/** A tensor of `ts` whose name ends with one of `suffixes`. */
const findAny = (ts: readonly TensorInfo[], ...suffixes: string[]) => ts.find((t) => suffixes.some((s) => t.name.endsWith(s)));

/** SD3's joint blocks: 1 + the largest N of `joint_blocks.N.` (sd.cpp's MMDiTConfig depth, its head count too). */
function sd3Depth(d: readonly TensorInfo[]): number {
  let depth = 0;
  for (const t of d) {
    const m = /joint_blocks\.(\d+)\./.exec(t.name);
    if (m) depth = Math.max(depth, Number(m[1]) + 1);
  }
  return depth;
}

/** Why an SD3 MMDiT is not one the fit holds for, beyond its widths: SD3.5 Medium's MMDiT-X blocks, another position grid. */
function sd3Unmeasured(d: readonly TensorInfo[]): string | undefined {
  if (d.some((t) => t.name.includes("x_block.attn2."))) return "SD3.5 Medium's MMDiT-X blocks (x_block.attn2) were not measured, only SD3.5 Large";
  const grid = findTensor(d, "pos_embed");
  if (grid && grid.shape[1] !== 192 * 192) return `a ${Math.round(Math.sqrt(grid.shape[1]))}² position grid was not measured, only SD3's 192²`;
  return undefined;
}

/** What the files' parts hold, by part. */
type PartTensors = Record<keyof DiffusionParts, readonly TensorInfo[]>;

/**
 * The DiT family of these tensors and its widths, or why its compute buffers
 * cannot be estimated; undefined when the denoiser is none of the three
 * (sd.cpp's own tests: src/model_loader.cpp get_sd_version).
 */
export function ditShape(parts: PartTensors): { family: DitFamily; shape: DitShape | string } | undefined {
  const d = parts.diffusion;
  const tag = ditFamilyOf(d);
  if (!tag) return undefined;
  const family: DitFamily = tag === "flux2-klein" || tag === "flux2-dev" ? "flux2" : tag;
  let why = tag === "flux2-dev" ? "Flux 2 [dev] (48 single blocks, a Mistral text encoder) was not measured, only Flux 2 [klein] 4B" : undefined;
  // the DiT's hidden size (the image embedding's outputs; Z-Image: sd.cpp's or diffusers' name) and head width
  const embedIn = {
    zimage: findAny(d, "x_embedder.weight", "all_x_embedder.2-1.weight"),
    flux1: findTensor(d, "img_in.weight"),
    flux2: findTensor(d, "img_in.weight"),
    qwenimage: findTensor(d, "img_in.weight"),
    sd3: findTensor(d, "x_embedder.proj.weight"), // a patch conv [2, 2, latent, hidden]
  }[family];
  const headNorm = {
    zimage: findAny(d, "layers.0.attention.q_norm.weight", "layers.0.attention.norm_q.weight"),
    flux1: findTensor(d, "double_blocks.0.img_attn.norm.key_norm.scale"),
    flux2: findTensor(d, "double_blocks.0.img_attn.norm.key_norm.scale"),
    qwenimage: findTensor(d, "transformer_blocks.0.attn.norm_q.weight"),
    sd3: undefined,
  }[family];
  const ditHidden = (family === "sd3" ? embedIn?.shape[3] : embedIn?.shape[1]) ?? 0;
  const headDim = headNorm?.shape[0];
  if (!why && !embedIn) why = "no image embedding (x_embedder / img_in) in the diffusion model";
  // sd.cpp's MMDiTConfig: as many heads as joint blocks
  const ditHeads = family === "sd3" ? sd3Depth(d) : headDim ? ditHidden / headDim : 0;
  if (!why && family === "sd3") why = sd3Unmeasured(d);
  const te = parts.textEncoder;
  // the LLM's (Hugging Face or llama.cpp names) or Flux 1's T5 (T5EncoderModel names or llama.cpp's: token_embd, enc.blk.N.ffn_gate)
  const textHidden = findAny(te, "token_embd.weight", "embed_tokens.weight", "shared.weight")?.shape[0];
  const textFfn = findAny(te, "blk.0.ffn_gate.weight", "layers.0.mlp.gate_proj.weight", "block.0.layer.1.DenseReluDense.wi_0.weight")?.shape[1];
  const v = parts.vae;
  const wan = findTensor(v, "decoder.head.2.weight");
  // sd.cpp's WanVAERunner: a conv2d kernel [3, 3, in, out] has ne[2] > 3, a CausalConv3d one is [3, 3, 3, in·out]
  const causal3d = wan !== undefined && (findTensor(v, "decoder.conv1.weight")?.shape[2] ?? 0) <= 3;
  // the decoder's last conv takes its base channels (the Wan VAE's head.2 → RGB: in·3 in the causal-3D layout)
  const vaeDecoderChannels = causal3d ? wan.shape[3] / 3 : (wan ?? findTensor(v, "decoder.conv_out.weight"))?.shape[2];
  const fit = DIT_COMPUTE_FIT[family];
  const name = { zimage: "Z-Image", flux1: "Flux 1", flux2: "Flux 2 [klein]", qwenimage: "Qwen-Image", sd3: "SD3" }[family];
  const aName = `${family === "sd3" ? "an" : "a"} ${name}`;
  if (!why && !textHidden)
    why = family === "flux1" || family === "sd3" ? "no T5 text encoder (load.t5xxl) in the files" : "no LLM text encoder (load.llm) in the files";
  if (!why && !vaeDecoderChannels) why = "no VAE decoder in the files";
  if (!why && family === "qwenimage" && !wan) why = "a Qwen-Image model without the Wan VAE was not measured";
  if (!why && family !== "qwenimage" && wan) why = `${aName} model with the Wan VAE was not measured`;
  const shape: DitShape = {
    family,
    ditHidden,
    ditHeads,
    textHidden: textHidden ?? 0,
    textFfn: textFfn ?? 0,
    vaeDecoderChannels: vaeDecoderChannels ?? 0,
    ...(causal3d && { vaeLayout: "causal3d" as const }),
  };
  if (!why && causal3d && !fit.vaeCausal3d) why = `the causal-3D Wan VAE was not measured for ${name}`;
  if (!why) {
    const m = fit.shape;
    if (!measuredWidths(fit, shape))
      why =
        `${aName} model of DiT ${shape.ditHidden} wide (${shape.ditHeads} heads), text encoder ${shape.textHidden} (FFN ${shape.textFfn}), VAE decoder ${shape.vaeDecoderChannels}: ` +
        `only DiT ${m.ditHidden} (${m.ditHeads} heads), text encoder ${m.textHidden} (FFN ${m.textFfn}), VAE decoder ${fit.vae.channels.join(" or ")} were measured`;
  }
  return { family, shape: why ?? shape };
}

/**
 * Compute buffers of one generation of a DiT family, bytes ({@link DIT_COMPUTE_FIT}):
 * text encoder T·n + K over its n tokens; DiT S·L² + per image token
 * + per text token + K over its L tokens (flash attention: no L²); VAE decode
 * per pixel + per latent token (of one tile with vaeTiling), or with
 * image.initImage the encode's per pixel + K when larger. Reference images
 * (image.refImages) add their tokens to the DiT's image tokens and their
 * encodes to the VAE's ({@link refImagePixels}). Token counts: {@link ditTokens}.
 * @throws GenaiError INVALID_ARGUMENT (sizes not multiples of 64 pixels in 64..4096, a prompt length out of 1..8192, a shape that was not measured, vaeTiling where it was not measured)
 */
export function ditComputeBytes(
  shape: DitShape,
  image: DiffusionImageSize,
  opts: { flashAttention?: boolean; vaeTiling?: boolean; taesd?: boolean } = {},
): DiffusionParts & { peak: number } {
  const [w, h] = checkImageSides(image);
  if (opts.taesd && (opts.vaeTiling || shape.family === "qwenimage"))
    throw new GenaiError("INVALID_ARGUMENT", `a TAESD was not measured ${opts.vaeTiling ? "with vaeTiling" : "for Qwen-Image"}`);
  const p = optInt("promptTokens", image.promptTokens, DEFAULT_PROMPT_TOKENS, 1, MAX_PROMPT_TOKENS);
  const f = DIT_COMPUTE_FIT[shape.family];
  if (!f || !measuredWidths(f, shape)) throw new GenaiError("INVALID_ARGUMENT", `no fitted coefficients for ${JSON.stringify(shape)}`);
  const t = ditTokens(shape.family, w, h, p);
  const refs = (image.refImages ?? []).map((r) => refImagePixels(shape.family, w, h, r));
  const imageTokens = t.image + refs.reduce((n, [rw, rh]) => n + (rw / 16) * (rh / 16), 0);
  const L = t.ditText + imageTokens;
  const d = f.dit;
  const linear = (a: number, b: number) => (d.dualStream ? Math.max(a, b) : a + b);
  const blocks = opts.flashAttention
    ? linear(d.flashPerImageToken * imageTokens, d.flashPerTextToken * t.ditText) + d.flashConstant
    : d.scores * L * L + linear(d.perImageToken * imageTokens, d.perTextToken * t.ditText) + d.constant;
  const crop = d.posEmbedCrop;
  const diffusion = crop ? Math.max(blocks, crop.perPatchRow * (h / 16) + crop.perImageToken * t.image + crop.constant) : blocks;
  const textEncoder = f.textEncoder.perToken * t.text + f.textEncoder.constant;
  if (opts.vaeTiling && f.vaeTilePixels === undefined) throw new GenaiError("INVALID_ARGUMENT", `vaeTiling was not measured for ${shape.family}`);
  const tile = f.vaeTilePixels ?? Math.max(w, h);
  const [vw, vh] = opts.vaeTiling ? [Math.min(w, tile), Math.min(h, tile)] : [w, h];
  const vf = shape.vaeLayout === "causal3d" ? f.vaeCausal3d : f.vae;
  if (!vf) throw new GenaiError("INVALID_ARGUMENT", `the causal-3D VAE was not measured for ${shape.family}`);
  const decode = vf.perPixelChannel * shape.vaeDecoderChannels * vw * vh + (vf.perLatentToken * vw * vh) / 64;
  const encodes: [number, number][] = [...(image.initImage ? [[w, h] as [number, number]] : []), ...refs];
  const vae = opts.taesd
    ? taesdComputeBytes(w, h, encodes)
    : Math.max(decode, largestEncodeBytes(encodes, vf.encodePerPixel, vf.encodeConstant, opts.vaeTiling ? f.vaeEncodeTilePixels : undefined));
  const parts = { textEncoder: Math.round(textEncoder), diffusion: Math.round(diffusion), vae: Math.round(vae) };
  return { ...parts, peak: Math.max(parts.textEncoder, parts.diffusion, parts.vae) };
}
