/**
 * The compute buffers of the UNet families (Stable Diffusion 1.x and SDXL)
 * as a function of the image's size, fitted to stable-diffusion.cpp's own
 * allocations: the UNet side of ./memory.ts (estimateDiffusionMemory), as
 * ./memory-dit.ts is its DiT side.
 */
import { GenaiError } from "../errors";
import type { DiffusionImageSize, DiffusionParts } from "./memory";
import { checkImageSides, findTensor as find, largestEncodeBytes, refImagePixels, taesdComputeBytes } from "./memory-dit";
import type { TensorInfo } from "./tensors";

const MiB = 2 ** 20;

/** The UNet families with a fitted compute model. */
export type UnetFamily = "sd1" | "sdxl";

/** The sizes the fitted compute model reads from an SD1 or SDXL checkpoint's tensors. */
export interface UnetShape {
  family: UnetFamily;
  /** UNet model channels (conv_in's outputs; 320 in SD1.5 and SDXL). */
  unetChannels: number;
  /** VAE decoder base channels (conv_out's inputs; 128 in SD1.5 and SDXL). */
  vaeDecoderChannels: number;
  /**
   * SDXL decoding with the checkpoint's own VAE (no load.vae): sd.cpp then
   * scales the VAE's Conv2D by 1/32 ("No valid VAE specified … using Conv2D
   * scale", src/stable-diffusion.cpp), which takes more buffer per pixel
   * ({@link UnetComputeFit.vaeConvScalePerPixelChannel}). Always false for SD1.
   */
  vaeConvScale: boolean;
}

/** One measured UNet shape's coefficients, bytes: S·L² + T·L + K (L latent tokens). */
export interface UnetFit {
  /** UNet model channels these were measured on. */
  channels: number;
  /** Without flash attention: bytes per latent token pair (the attention scores of the widest attention level, f32). */
  scores: number;
  /** Bytes per latent token and the constant, without flash attention (least squares on relative error). */
  perToken: number;
  constant: number;
  /** With flash attention (load.flashAttention): no L² term; bytes per latent token and the constant. */
  flashPerToken: number;
  flashConstant: number;
}

/** A UNet family's fitted coefficients (bytes). */
export interface UnetComputeFit {
  /** The text encoders' largest compute buffer (CLIP reads 77-token chunks: constant). */
  textEncoder: number;
  /** The UNet, per measured shape. */
  unet: readonly UnetFit[];
  /** VAE decoder: bytes per pixel per decoder channel. */
  vaePerPixelChannel: number;
  /** The same with sd.cpp's SDXL Conv2D scale (UnetShape.vaeConvScale). */
  vaeConvScalePerPixelChannel: number;
  /** VAE decoder: bytes per latent token on top. */
  vaePerToken: number;
  /** The VAE decoder channel counts measured. */
  vaeChannels: readonly number[];
  /** vaeTiling: sd.cpp's default tile, 32 latent tokens a side (src/model/vae/vae.hpp get_tile_sizes): at most this many pixels a side per decode. */
  vaeTilePixels: number;
  /** img2img's VAE encode (initImage, a pixel hires fix): bytes per pixel (sd.cpp's encoder is 128 channels wide whatever the decoder), without and with the Conv2D scale. */
  vaeEncodePerPixel: number;
  vaeEncodeConvScalePerPixel: number;
  /** vaeTiling: encode tiles are twice the decode's, 64 latent tokens a side (vae.hpp encode_tile_factor 2): 512 pixels. */
  vaeEncodeTilePixels: number;
  /**
   * With a control image (load.controlNet): the whole diffusion part, UNet
   * and ControlNet together (both runners keep their buffers through
   * sampling), S·L² + T·L + K, for the UNet width measured; the ControlNet
   * never uses flash attention, so with it only the UNet's scores go.
   */
  controlNet?: { channels: number; scores: number; perToken: number; constant: number; flashScores: number; flashPerToken: number; flashConstant: number };
}

/**
 * SD1's fitted coefficients (bytes). Measured with this addon on CPU (the
 * "RAM" buffers) at stable-diffusion.cpp commit 487de75c, on random-weight
 * SD1 checkpoints from lib/tools/sd (generateRandomSd15Model, f16), one
 * step, euler, CFG 7: the "tiny" preset (UNet 32 channels, VAE decoder 32)
 * at 64², 128², 192², 256², 320², 384², 512², 128×256 and 64×512 pixels
 * (flash attention: 64² to 320² and 512²), and the "sd15" preset (the real
 * SD1.5 shapes: UNet 320, VAE decoder 128) at 64², 128², 192², 256², 320²,
 * 384², 512² and 128×256 (flash attention: 64² to 256²); the sd15 UNet
 * coefficients were fitted before its 512² and 128×256 runs, which they
 * predict to −0.1 % and +3.4 %. The measured value is the size sd.cpp logs at
 * debug level for each runner's ggml_gallocr reserve, "<clip|unet|vae>
 * compute buffer size: N MB(RAM)"
 * (N in MiB, two decimals). L = (width / 8) × (height / 8) latent tokens,
 * P = width × height pixels. A GPU backend's allocator sizes the same graph,
 * but was not measured here.
 */
export const SD1_COMPUTE_FIT = {
  /** CLIP-L over 77 tokens: 1.42 MiB at every size, in both shapes. */
  textEncoder: 1.42 * MiB,
  /** The UNet (largest error of the fit: tiny 0.3 %, sd15 8.1 % at 128², flash attention 0.3 %); scores: the first level's 8 heads × 4 bytes. */
  unet: [
    { channels: 32, scores: 32, perToken: 1059.4, constant: 807_149, flashPerToken: 3227, flashConstant: 233_864 },
    { channels: 320, scores: 32, perToken: 9941, constant: 8_959_774, flashPerToken: 31_457, flashConstant: 230_687 },
  ],
  /** 1664 B/px at 32 channels, 6656 at 128: exact at every size, plus 16 per latent token. */
  vaePerPixelChannel: 52,
  vaeConvScalePerPixelChannel: 52,
  vaePerToken: 16,
  vaeChannels: [32, 128],
  /** Measured: 512² decodes in 104.02 MiB at 32 channels, as 256² does. */
  vaeTilePixels: 256,
  /** Measured with sd-cli (img2img, -i): 13.26, 53.03, 212.13, 477.28 and 848.50 MiB at 64², 128², 256², 384² and 512², 106.06 at 128×256: 3394 B/px within 0.02 %; tiled, 848.50 MiB at 512², 768² and 1024×512. */
  vaeEncodePerPixel: 3394,
  vaeEncodeConvScalePerPixel: 3394,
  vaeEncodeTilePixels: 512,
  /**
   * Measured with sd-cli, a control image and generateRandomSd15ControlNet
   * (SD1.5's 320 channels, as sd.cpp builds every SD1 ControlNet) beside a
   * 320-channel SD1 UNet (q8_0), CFG 7: UNet + ControlNet 11.47, 23.49,
   * 39.19, 44.10, 100.22, 208.47, 395.92 and 1145.82 MiB at 64², 128²,
   * 128×256, 192², 256², 320², 384² and 512² (the ControlNet alone 2.11 to
   * 560.29; the UNet takes 6.6 KB a latent token more than without it);
   * with flash attention 4.46, 16.17, 77.21, 263.16 and 691.48 at 64², 128²,
   * 256², 384² and 512². Scores: 8 heads × 4 bytes, once per runner (twice
   * without flash attention). T and K: minimax on relative error (largest
   * 7.5 %), with flash attention least squares (largest 6.2 %, 128²). The
   * control image is VAE-encoded too (vaeEncodePerPixel).
   */
  controlNet: { channels: 320, scores: 64, perToken: 30_800, constant: 10_700_000, flashScores: 32, flashPerToken: 47_867, flashConstant: 1_549_752 },
} as const satisfies UnetComputeFit;

/**
 * SDXL's fitted coefficients (bytes), measured as {@link SD1_COMPUTE_FIT}'s
 * with sd-cli from the same sources (the same log lines), one step, CFG 7, on
 * a random-weight SDXL base checkpoint at SDXL's real widths and depths
 * (generateRandomSdxlModel with unetChannels 320, timeEmbedDim 1280,
 * vaeDecoderChannels 128: 2.57 G parameters, linear weights q4_0, conv
 * kernels f16). UNet without flash attention at 64², 128², 192², 256², 320²,
 * 384², 448², 512², 640², 768², 896², 1024², 128×256, 1024×512 and 768×1344
 * (53.24 MiB at 128², 132.05 at 512², 830.86 at 1024²); with flash attention
 * at 64² to 1024² (8.29, 123.46, 491.99 MiB). The L² term is fixed from the
 * graph: the second level's 10 heads × 4 bytes over L/4 tokens, 2.5 bytes
 * per token pair; T and K by least squares on relative error. Largest errors:
 * −9.2 % at 384², +2.6 % at 1024², flash attention −4.9 % at 128². Text
 * encoders: CLIP-L 1.42 MiB and OpenCLIP bigG 3.03 MiB at every size. VAE:
 * as SD1's (104.00 MiB at 128², 128 channels) with a VAE file beside the
 * checkpoint; 120.00 / 480.02 / 1080.04 / 1920.06 MiB at 128² / 256² / 384²
 * / 512² with the checkpoint's own VAE and sd.cpp's Conv2D scale (30.00 MiB
 * at 32 channels, 128²; tiled, 120.02 MiB at 512² and 32 channels). VAE
 * encode (img2img): SD1's 3394 B/px with a VAE file; 15.26, 61.03, 244.13
 * and 122.06 MiB at 64², 128², 256² and 128×256 with the Conv2D scale
 * (3906 B/px).
 */
export const SDXL_COMPUTE_FIT = {
  textEncoder: 3.03 * MiB,
  unet: [{ channels: 320, scores: 2.5, perToken: 10_253, constant: 54_401_911, flashPerToken: 31_817, flashConstant: 121_162 }],
  vaePerPixelChannel: 52,
  vaeConvScalePerPixelChannel: 60,
  vaePerToken: 16,
  vaeChannels: [32, 128],
  vaeTilePixels: 256,
  vaeEncodePerPixel: 3394,
  vaeEncodeConvScalePerPixel: 3906,
  vaeEncodeTilePixels: 512,
} as const satisfies UnetComputeFit;

/** The fitted UNet + ControlNet coefficients for this shape, if measured. */
export function controlNetFit(shape: UnetShape): UnetComputeFit["controlNet"] {
  const c = FITS[shape.family]?.controlNet;
  return c && c.channels === shape.unetChannels ? c : undefined;
}

/** Whether a fitted shape is a UNet's (else a DiT's, ./memory-dit.ts DitShape). */
export const isUnetShape = (shape: { family: string }): shape is UnetShape => Object.hasOwn(FITS, shape.family);

const FITS: Record<UnetFamily, UnetComputeFit> = { sd1: SD1_COMPUTE_FIT, sdxl: SDXL_COMPUTE_FIT };
const has = (tensors: readonly TensorInfo[], part: string) => tensors.some((t) => t.name.includes(part));

/**
 * The SD1 or SDXL shape of these tensors (LDM names, any prefix), or why they
 * have no fitted compute model. SD1: a 4-channel UNet whose cross-attention
 * reads 768-wide context (CLIP-L; SD2's is 1024) and no label_emb. SDXL
 * (label_emb, sd.cpp's get_sd_version): SDXL base's blocks (middle_block.1
 * and output_blocks.3.1's second transformer block, which SSD-1B and Vega
 * drop), a 4-channel input and 2048-wide context. Both need a VAE decoder.
 * @param opts.vaeFile whether the VAE comes from a file of its own (load.vae): see UnetShape.vaeConvScale
 */
export function unetShape(tensors: readonly TensorInfo[], opts: { vaeFile?: boolean } = {}): UnetShape | string {
  const convIn = find(tensors, "input_blocks.0.0.weight");
  const sdxl = find(tensors, "label_emb.0.0.weight") !== undefined;
  // SD1's first attention is at level 0 (input_blocks.1.1), SDXL's at level 1 (input_blocks.4.1)
  const toK = find(tensors, `input_blocks.${sdxl ? 4 : 1}.1.transformer_blocks.0.attn2.to_k.weight`);
  const convOut = find(tensors, "decoder.conv_out.weight");
  if (sdxl && (!has(tensors, "middle_block.1.") || !has(tensors, "output_blocks.3.1.transformer_blocks.1.")))
    return "an SDXL UNet without SDXL base's blocks (SSD-1B, Vega): only SDXL base's layout was measured";
  if (!convIn || !toK)
    return "not an LDM UNet (no input_blocks.0.0 / attn2 tensors) nor a Z-Image, Flux 1, Flux 2, Qwen-Image or SD3 DiT: the compute buffers were fitted on SD1, SDXL and those DiTs only";
  const name = sdxl ? "SDXL" : "SD1";
  const context = sdxl ? 2048 : 768;
  if (toK.shape[0] !== context)
    return `cross-attention context of ${toK.shape[0]} (${name}'s is ${context}): the compute buffers were fitted on SD1 and SDXL only`;
  if (convIn.shape[2] !== 4) return `a ${convIn.shape[2]}-channel UNet input (inpainting / pix2pix): only the 4-channel ${name} UNet was measured`;
  if (!convOut) return "no VAE decoder (decoder.conv_out) in the files";
  const family: UnetFamily = sdxl ? "sdxl" : "sd1";
  const shape = { family, unetChannels: convIn.shape[3], vaeDecoderChannels: convOut.shape[2], vaeConvScale: sdxl && !opts.vaeFile };
  const fit = FITS[family];
  if (!fit.unet.some((u) => u.channels === shape.unetChannels) || !fit.vaeChannels.includes(shape.vaeDecoderChannels)) {
    const measured = fit.unet.map((u) => u.channels).join(" or ");
    return `an ${name} UNet of ${shape.unetChannels} channels with a ${shape.vaeDecoderChannels}-channel VAE decoder: only UNets of ${measured} channels and VAE decoders of ${fit.vaeChannels.join(" or ")} were measured`;
  }
  return shape;
}

/**
 * Compute buffers of one SD1 or SDXL generation, bytes
 * ({@link SD1_COMPUTE_FIT}, {@link SDXL_COMPUTE_FIT}): the text encoders'
 * constant; UNet S·L² + T·L + K (flash attention: T'·L + K'); VAE decode
 * c × decoder channels × P + 16 × L (c = 52, or 60 with SDXL's Conv2D
 * scale; P, L of one tile with vaeTiling), or with image.initImage the VAE
 * encode's e × P when larger (e = 3394, or 3906 with the Conv2D scale; P of
 * one 512² tile with vaeTiling). With opts.controlNet (a control image
 * for a loaded ControlNet) the diffusion part is UNet + ControlNet
 * ({@link UnetComputeFit.controlNet}) and the control image's VAE encode
 * counts as img2img's. sd.cpp runs the conditional and unconditional passes
 * one after the other, so CFG adds nothing.
 * @throws GenaiError INVALID_ARGUMENT (sizes not multiples of 64 pixels in 64..4096, a shape that was not measured)
 */
export function unetComputeBytes(
  shape: UnetShape,
  image: DiffusionImageSize,
  opts: { flashAttention?: boolean; vaeTiling?: boolean; controlNet?: boolean; taesd?: boolean } = {},
): DiffusionParts & { peak: number } {
  const [w, h] = checkImageSides(image);
  if (opts.taesd && opts.vaeTiling) throw new GenaiError("INVALID_ARGUMENT", "a TAESD was not measured with vaeTiling");
  const f = FITS[shape.family];
  const u = f?.unet.find((x) => x.channels === shape.unetChannels);
  if (!u || !f.vaeChannels.includes(shape.vaeDecoderChannels)) throw new GenaiError("INVALID_ARGUMENT", `no fitted coefficients for ${JSON.stringify(shape)}`);
  const cn = opts.controlNet ? controlNetFit(shape) : undefined;
  if (opts.controlNet && !cn) throw new GenaiError("INVALID_ARGUMENT", `no fitted ControlNet coefficients for ${JSON.stringify(shape)}`);
  const L = (w / 8) * (h / 8);
  const diffusion = cn
    ? opts.flashAttention
      ? cn.flashScores * L * L + cn.flashPerToken * L + cn.flashConstant
      : cn.scores * L * L + cn.perToken * L + cn.constant
    : opts.flashAttention
      ? u.flashPerToken * L + u.flashConstant
      : u.scores * L * L + u.perToken * L + u.constant;
  const [vw, vh] = opts.vaeTiling ? [Math.min(w, f.vaeTilePixels), Math.min(h, f.vaeTilePixels)] : [w, h];
  const perPixel = shape.vaeConvScale ? f.vaeConvScalePerPixelChannel : f.vaePerPixelChannel;
  const decode = perPixel * shape.vaeDecoderChannels * vw * vh + (f.vaePerToken * vw * vh) / 64;
  const encodes: [number, number][] = [
    ...(image.initImage || cn ? [[w, h] as [number, number]] : []),
    // sd.cpp VAE-encodes reference images for every family (resized as for the DiTs); a UNet does not attend to them
    ...(image.refImages ?? []).map((r) => refImagePixels(shape.family, w, h, r)),
  ];
  const perPixelEncode = shape.vaeConvScale ? f.vaeEncodeConvScalePerPixel : f.vaeEncodePerPixel;
  const vae = opts.taesd
    ? taesdComputeBytes(w, h, encodes)
    : Math.max(decode, largestEncodeBytes(encodes, perPixelEncode, 0, opts.vaeTiling ? f.vaeEncodeTilePixels : undefined));
  const parts = { textEncoder: Math.round(f.textEncoder), diffusion: Math.round(diffusion), vae: Math.round(vae) };
  return { ...parts, peak: Math.max(parts.textEncoder, parts.diffusion, parts.vae) };
}
