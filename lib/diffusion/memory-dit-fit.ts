/**
 * The DiT families' compute-buffer fits (DIT_COMPUTE_FIT): the coefficients
 * and the measurements they came from, one entry per family. The functions
 * that apply them are in ./memory-dit.ts.
 */

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
   * ((memory-dit.ts ditTokens)). Without flash attention S·L² + Tᵢ·image + Tₜ·text
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
 * joint attention ((memory-dit.ts ditTokens)). Least squares on relative error, the
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
   * chunk's tokens ((memory-dit.ts ditTokens)). At 128², 256², 512², 768², 1024² and
   * 128×512 with "a lighthouse" (one chunk) and at 256² with a 400-word
   * prompt (two chunks): DiT 60.96, 103.57, 341.50, 973.07, 2361.25, 103.57
   * and 173.82 MiB; flash attention (128², 512², 128×512, 1024², the long
   * prompt at 256²) 53.08, 230.50, 85.57, 780.25, 128.82. T5 68.25 MiB per
   * chunk (one or two chunks alike) and CLIP-L 1.42, one after the other:
   * the text-encoder part is their sum. The VAE is the Flux VAE as
   * Z-Image's: 26.02 to 1665.00 MiB from 128² to 1024² at 32 channels,
   * within 0.05 % of that fit; vaeTiling 104.06 MiB at 512² and 768² (256²
   * tiles). Reference images (Kontext's path) join the image's tokens as
   * Flux 2's do ((memory-dit.ts refImagePixels)): a 256² reference at a 256² target
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
   * ((memory-dit.ts ditTokens)). "a lighthouse" (one chunk) at 128², 256², 512²,
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
