/**
 * Memory a diffusion model needs before it loads (issue 14, "memory by
 * resolution"): its weights, from the files' tensor sizes, and the compute
 * buffers of one generation as a function of the image's size, fitted to
 * stable-diffusion.cpp's own allocations (SD1, and the DiT families Z-Image,
 * Flux 2 [klein] and Qwen-Image). The diffusion counterpart of
 * ../orchestrator/estimate.ts's estimateLlamaFromMetadata.
 */
import { GenaiError } from "../errors";
import { optBool, optInt, requireString } from "../util/validate";
import {
  checkImageSides,
  DEFAULT_PROMPT_TOKENS,
  DIT_COMPUTE_FIT,
  type DitShape,
  ditComputeBytes,
  ditShape,
  findTensor as find,
  MAX_PROMPT_TOKENS,
} from "./memory-dit";
import { DIFFUSION_FILE_OPTIONS } from "./defaults";
import { readTensorInfos, type TensorInfo } from "./tensors";
import type { DiffusionLoadOptions } from "./types";

/** The parts of a model that sd.cpp places (and, with keepClipOnCpu / keepVaeOnCpu, keeps) apart. */
export interface DiffusionParts {
  /** Text encoders (CLIP, T5, LLM), bytes. */
  textEncoder: number;
  /** The denoiser (UNet or DiT), bytes. */
  diffusion: number;
  /** The VAE (encoder and decoder), bytes. */
  vae: number;
}

/** The sizes the fitted compute model reads from an SD1 checkpoint's tensors. */
export interface Sd1Shape {
  /** UNet model channels (conv_in's outputs; 320 in SD1.5). */
  unetChannels: number;
  /** VAE decoder base channels (conv_out's inputs; 128 in SD1.5). */
  vaeDecoderChannels: number;
}

/**
 * The model family the estimate recognised: "sd1" (Stable Diffusion 1.x of a
 * measured shape), "zimage" (Z-Image), "flux2" (Flux 2; [klein] measured),
 * "qwenimage" (Qwen-Image), else "unknown". The DiT families are named by
 * their tensors whatever their widths; `compute` is filled only for the
 * widths that were measured (see computeUnknownReason).
 */
export type DiffusionFamily = "sd1" | "zimage" | "flux2" | "qwenimage" | "unknown";

export interface DiffusionMemoryEstimate {
  /** The family of the files (DiffusionFamily); "unknown" for any other, and for SD1 of an unmeasured shape. */
  family: DiffusionFamily;
  /** Weights per part, bytes: the files' tensor data (what sd.cpp's "total params memory size" line reports). */
  weights: DiffusionParts & { total: number };
  /**
   * Compute buffers of one generation, bytes, per part; `peak` is the largest
   * (sd.cpp allocates them one after the other and frees each after use).
   * Undefined where nothing was fitted: see `computeUnknownReason`.
   */
  compute: (DiffusionParts & { peak: number }) | undefined;
  /** Why `compute` is undefined (an unmeasured family, TAESD decoding, an img2img encode). */
  computeUnknownReason?: string;
  /** weights.total + compute.peak, bytes; undefined with compute. */
  total: number | undefined;
}

/** The image a generation makes: pixels, multiples of 64 as generate() requires. */
export interface DiffusionImageSize {
  width: number;
  height: number;
  /** Images in the batch (default 1). sd.cpp samples and decodes them one at a time: the compute buffers do not grow with it. */
  count?: number;
  /** img2img / inpainting: the VAE encoder's buffer is not fitted, so compute is then undefined. */
  initImage?: boolean;
  /**
   * The prompt's length in text-encoder tokens, for the DiT families (their
   * LLM text encoder and the DiT's joint attention grow with it): default
   * {@link DEFAULT_PROMPT_TOKENS}, a bound for typical prompts. SD1 ignores
   * it (CLIP reads 77-token chunks).
   */
  promptTokens?: number;
}

const MiB = 2 ** 20;

/** One measured UNet shape's coefficients, bytes: S·L² + T·L + K (L latent tokens). */
export interface UnetFit {
  /** UNet model channels these were measured on. */
  channels: number;
  /** Without flash attention: the first level's attention scores, 8 heads × 4 bytes (f32) per token pair (fixed, from the graph). */
  scores: number;
  /** Bytes per latent token and the constant, without flash attention (least squares on relative error). */
  perToken: number;
  constant: number;
  /** With flash attention (load.flashAttention): no L² term; bytes per latent token and the constant. */
  flashPerToken: number;
  flashConstant: number;
}

/**
 * The fitted coefficients (bytes). Measured with this addon on CPU (the
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
  /** The UNet, per measured shape (largest error of the fit: tiny 0.3 %, sd15 8.1 % at 128², flash attention 0.3 %). */
  unet: [
    { channels: 32, scores: 32, perToken: 1059.4, constant: 807_149, flashPerToken: 3227, flashConstant: 233_864 },
    { channels: 320, scores: 32, perToken: 9941, constant: 8_959_774, flashPerToken: 31_457, flashConstant: 230_687 },
  ] as readonly UnetFit[],
  /** VAE decoder: bytes per pixel per decoder channel (1664 B/px at 32 channels, 6656 at 128: exact at every size), plus 16 per latent token. */
  vaePerPixelChannel: 52,
  vaePerToken: 16,
  /** The VAE decoder channel counts measured (tiny, sd15). */
  vaeChannels: [32, 128] as readonly number[],
  /** vaeTiling: sd.cpp's default tile, 32 latent tokens a side (src/model/vae/vae.hpp get_tile_sizes): at most 256 × 256 pixels per decode (measured: 512² decodes in 104.02 MiB at 32 channels, as 256² does). */
  vaeTilePixels: 256,
} as const;

/**
 * The SD1 shape of these tensors, or why they are not SD1: a 4-channel LDM
 * UNet (input_blocks.0.0) whose cross-attention reads 768-wide context
 * (attn2.to_k, CLIP-L; SD2's is 1024) and no label_emb (SDXL), with a VAE decoder.
 */
export function sd1Shape(tensors: readonly TensorInfo[]): Sd1Shape | string {
  const convIn = find(tensors, "input_blocks.0.0.weight");
  const toK = find(tensors, "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight");
  const convOut = find(tensors, "decoder.conv_out.weight");
  if (!convIn || !toK)
    return "not an LDM UNet (no input_blocks.0.0 / input_blocks.1.1 attn2 tensors) nor a Z-Image, Flux 2 or Qwen-Image DiT: the compute buffers were fitted on SD1 and those DiTs only";
  if (find(tensors, "label_emb.0.0.weight")) return "an SDXL UNet (label_emb): the compute buffers were fitted on SD1 only";
  if (toK.shape[0] !== 768) return `cross-attention context of ${toK.shape[0]} (SD1's is 768): the compute buffers were fitted on SD1 only`;
  if (convIn.shape[2] !== 4) return `a ${convIn.shape[2]}-channel UNet input (inpainting / pix2pix): only the 4-channel SD1 UNet was measured`;
  if (!convOut) return "no VAE decoder (decoder.conv_out) in the files";
  const shape = { unetChannels: convIn.shape[3], vaeDecoderChannels: convOut.shape[2] };
  if (!SD1_COMPUTE_FIT.unet.some((u) => u.channels === shape.unetChannels) || !SD1_COMPUTE_FIT.vaeChannels.includes(shape.vaeDecoderChannels))
    return `an SD1 UNet of ${shape.unetChannels} channels with a ${shape.vaeDecoderChannels}-channel VAE decoder: only UNets of 32 or 320 channels (320: SD1.5) and VAE decoders of 32 or 128 were measured`;
  return shape;
}

/**
 * Compute buffers of one SD1 generation, bytes ({@link SD1_COMPUTE_FIT}):
 * text encoder 1.42 MiB; UNet S·L² + T·L + K (flash attention: T'·L + K');
 * VAE decode 52 × decoder channels × P + 16 × L (P, L of one tile with vaeTiling).
 * @throws GenaiError INVALID_ARGUMENT (sizes not multiples of 64 pixels in 64..4096, a shape that was not measured)
 */
export function sd1ComputeBytes(
  shape: Sd1Shape,
  image: DiffusionImageSize,
  opts: { flashAttention?: boolean; vaeTiling?: boolean } = {},
): DiffusionParts & { peak: number } {
  const [w, h] = checkImageSides(image);
  const f = SD1_COMPUTE_FIT;
  const u = f.unet.find((x) => x.channels === shape.unetChannels);
  if (!u || !f.vaeChannels.includes(shape.vaeDecoderChannels)) throw new GenaiError("INVALID_ARGUMENT", `no fitted coefficients for ${JSON.stringify(shape)}`);
  const L = (w / 8) * (h / 8);
  const diffusion = opts.flashAttention ? u.flashPerToken * L + u.flashConstant : u.scores * L * L + u.perToken * L + u.constant;
  const [vw, vh] = opts.vaeTiling ? [Math.min(w, f.vaeTilePixels), Math.min(h, f.vaeTilePixels)] : [w, h];
  const vae = f.vaePerPixelChannel * shape.vaeDecoderChannels * vw * vh + (f.vaePerToken * vw * vh) / 64;
  const parts = { textEncoder: Math.round(f.textEncoder), diffusion: Math.round(diffusion), vae: Math.round(vae) };
  return { ...parts, peak: Math.max(parts.textEncoder, parts.diffusion, parts.vae) };
}

/** Which part a tensor belongs to, by sd.cpp's checkpoint prefixes (a split file's tensors: by the option that named the file). */
function partOf(name: string, file: (typeof DIFFUSION_FILE_OPTIONS)[number]): keyof DiffusionParts {
  if (file === "vae" || file === "taesd" || name.startsWith("first_stage_model.")) return "vae";
  if (TEXT_FILES.includes(file) || name.startsWith("cond_stage_model.") || name.startsWith("text_encoders.")) return "textEncoder";
  return "diffusion";
}

const TEXT_FILES: readonly string[] = ["clipL", "clipG", "t5xxl", "llm", "llmVision", "clipVision", "photoMaker"];
/** Files whose weights count but whose tensors do not tell the model's family or shape (adapters, encoders beside it). */
const BESIDE_FILES: readonly string[] = ["taesd", "controlNet", "ipAdapter", "photoMaker", "llmVision", "clipVision"];

/** What the files' headers say: weights per part, and the family's shape or why there is no fitted compute model. */
export interface DiffusionFilesInfo {
  /**
   * "sd1" when the tensors are an SD1 model's (of a measured shape); "zimage",
   * "flux2" or "qwenimage" when the denoiser is one of those DiTs (of any
   * widths); whatever else the load adds (TAESD, a ControlNet).
   */
  family: DiffusionFamily;
  weights: DiffusionParts & { total: number };
  /** The SD1 or DiT shape, or the reason the compute buffers cannot be estimated for these files. */
  shape: Sd1Shape | DitShape | string;
}

/**
 * Reads the headers of the load's model files (GGUF or safetensors).
 * @throws GenaiError INVALID_ARGUMENT (no model file), MODEL_NOT_FOUND, INVALID_MODEL (unreadable headers, .ckpt)
 */
export async function readDiffusionFiles(load: DiffusionLoadOptions): Promise<DiffusionFilesInfo> {
  if (!load || (!load.model && !load.diffusionModel)) throw new GenaiError("INVALID_ARGUMENT", "load.model or load.diffusionModel is required");
  const weights = { textEncoder: 0, diffusion: 0, vae: 0, total: 0 };
  const all: TensorInfo[] = [];
  const parts: Record<keyof DiffusionParts, TensorInfo[]> = { textEncoder: [], diffusion: [], vae: [] };
  for (const key of DIFFUSION_FILE_OPTIONS) {
    const file = load[key];
    if (file === undefined) continue;
    requireString(key, file);
    for (const t of await readTensorInfos(file)) {
      const part = partOf(t.name, key);
      weights[part] += t.bytes;
      weights.total += t.bytes;
      if (!BESIDE_FILES.includes(key)) {
        all.push(t);
        parts[part].push(t);
      }
    }
  }
  const dit = ditShape(parts);
  let shape: Sd1Shape | DitShape | string = dit ? dit.shape : sd1Shape(all);
  const family: DiffusionFamily = dit ? dit.family : typeof shape === "string" ? "unknown" : "sd1";
  if (typeof shape !== "string" && load.taesd) shape = "TAESD decoding (load.taesd) was not measured";
  if (typeof shape !== "string" && load.controlNet) shape = "a ControlNet's compute buffer was not measured";
  return { family, weights, shape };
}

/**
 * The estimate for files already read ({@link readDiffusionFiles}).
 * @throws GenaiError INVALID_ARGUMENT (sizes not positive multiples of 64, count out of 1..64, promptTokens out of 1..4096)
 */
export function estimateFromFiles(
  files: DiffusionFilesInfo,
  load: Pick<DiffusionLoadOptions, "flashAttention" | "vaeTiling">,
  image: DiffusionImageSize,
): DiffusionMemoryEstimate {
  optInt("count", image.count, 1, 1, 64);
  optInt("promptTokens", image.promptTokens, DEFAULT_PROMPT_TOKENS, 1, MAX_PROMPT_TOKENS);
  const opts = { flashAttention: optBool("flashAttention", load.flashAttention, false), vaeTiling: optBool("vaeTiling", load.vaeTiling, false) };
  const { shape, weights } = files;
  let reason = typeof shape === "string" ? shape : undefined;
  if (!reason && image.initImage) reason = "img2img's VAE encode was not measured";
  const dit = typeof shape !== "string" && "family" in shape ? shape : undefined;
  if (!reason && dit && opts.vaeTiling && DIT_COMPUTE_FIT[dit.family].vaeTilePixels === undefined) reason = `vaeTiling was not measured for ${dit.family}`;
  checkImageSides(image); // for every family, with or without a compute estimate
  const compute = reason ? undefined : dit ? ditComputeBytes(dit, image, opts) : sd1ComputeBytes(shape as Sd1Shape, image, opts);
  return {
    family: files.family,
    weights: { ...weights },
    compute,
    ...(reason ? { computeUnknownReason: reason } : {}),
    total: compute ? weights.total + compute.peak : undefined,
  };
}

/**
 * Bytes a generation of `image` needs, before loading: weights from the
 * files' headers (GGUF or safetensors tensor sizes), compute buffers from
 * {@link SD1_COMPUTE_FIT} (SD1 models of the measured shapes) and
 * {@link DIT_COMPUTE_FIT} (Z-Image-Turbo, Flux 2 [klein] 4B, Qwen-Image with
 * the 2D Wan VAE, at their real widths). Any other family (SD2, SDXL, SD3,
 * Flux 1, …) or shape, TAESD decoding, a ControlNet and img2img get
 * `compute: undefined` with the reason in `computeUnknownReason`: nothing is
 * guessed for them. weightType (a conversion at load) is not applied:
 * weights are the files' bytes.
 * @param load the load options (model files; flashAttention and vaeTiling change the compute part)
 * @param image width × height in pixels (multiples of 64), count, the prompt's length in tokens (DiT families)
 * @throws GenaiError INVALID_ARGUMENT (no model file, bad sizes), MODEL_NOT_FOUND, INVALID_MODEL (unreadable headers, .ckpt)
 */
export async function estimateDiffusionMemory(load: DiffusionLoadOptions, image: DiffusionImageSize): Promise<DiffusionMemoryEstimate> {
  return estimateFromFiles(await readDiffusionFiles(load), load, image);
}

export { DEFAULT_PROMPT_TOKENS, DIT_COMPUTE_FIT, ditComputeBytes, ditShape, ditTokens, promptTokenBound } from "./memory-dit";
export type { DitFamily, DitFit, DitShape } from "./memory-dit";
