/**
 * Memory a diffusion model needs before it loads (issue 14, "memory by
 * resolution"): its weights, from the files' tensor sizes, and the compute
 * buffers of one generation as a function of the image's size, fitted to
 * stable-diffusion.cpp's own allocations (the UNet families SD1 and SDXL,
 * ./memory-unet.ts, and the DiT families Z-Image, Flux 2 [klein] and
 * Qwen-Image, ./memory-dit.ts). The diffusion counterpart of
 * ../orchestrator/estimate.ts's estimateLlamaFromMetadata.
 */
import { GenaiError } from "../errors";
import { optBool, optInt, requireString } from "../util/validate";
import { checkImageSides, DEFAULT_PROMPT_TOKENS, DIT_COMPUTE_FIT, type DitShape, ditComputeBytes, ditShape, MAX_PROMPT_TOKENS } from "./memory-dit";
import { DIFFUSION_FILE_OPTIONS, MAX_SIDE, MIN_SIDE } from "./defaults";
import { controlNetFit, isUnetShape, type UnetShape, unetComputeBytes, unetShape } from "./memory-unet";
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

/**
 * The model family the estimate recognised: "sd1" (Stable Diffusion 1.x of a
 * measured shape), "sdxl" (SDXL base of a measured shape), "zimage" (Z-Image), "flux1" (Flux 1), "flux2" (Flux 2; [klein] measured),
 * "qwenimage" (Qwen-Image), "sd3" (SD3 / SD3.5; SD3.5 Large measured), else "unknown". The DiT families are named by
 * their tensors whatever their widths; `compute` is filled only for the
 * widths that were measured (see computeUnknownReason).
 */
export type DiffusionFamily = "sd1" | "sdxl" | "zimage" | "flux1" | "flux2" | "qwenimage" | "sd3" | "unknown";

export interface DiffusionMemoryEstimate {
  /** The family of the files (DiffusionFamily); "unknown" for any other, and for SD1 / SDXL of an unmeasured shape. */
  family: DiffusionFamily;
  /** Weights per part, bytes: the files' tensor data (what sd.cpp's "total params memory size" line reports). */
  weights: DiffusionParts & { total: number };
  /**
   * Compute buffers of one generation, bytes, per part; `peak` is the largest
   * (sd.cpp allocates them one after the other and frees each after use).
   * Undefined where nothing was fitted: see `computeUnknownReason`.
   */
  compute: (DiffusionParts & { peak: number }) | undefined;
  /** Why `compute` is undefined (an unmeasured family or shape, a TAESD with vaeTiling or for Qwen-Image, a ControlNet). */
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
  /**
   * img2img / inpainting / a pixel hires fix: the VAE also encodes an image of
   * width × height; `compute.vae` is then the larger of the encode and the
   * decode (sd.cpp frees one before the other).
   */
  initImage?: boolean;
  /**
   * A control image for the load's ControlNet (load.controlNet): the
   * ControlNet's buffer counts with the UNet's, and the control image's VAE
   * encode as img2img's. Without it a loaded ControlNet adds only its weights.
   */
  controlImage?: boolean;
  /**
   * Reference images (ImageGenerateOptions.refImages), their pixel sizes:
   * sd.cpp resizes each to the target's area (at most 1024², its own aspect
   * ratio) and VAE-encodes it, and the DiT attends over its tokens beside the
   * image's ({@link refImagePixels}). Measured for Flux 2 [klein] and for
   * Qwen-Image without llmVision.
   */
  refImages?: readonly { width: number; height: number }[];
  /**
   * The prompt's length in text-encoder tokens, for the DiT families (their
   * LLM text encoder and the DiT's joint attention grow with it): default
   * {@link DEFAULT_PROMPT_TOKENS}, a bound for typical prompts. SD1 ignores
   * it (CLIP reads 77-token chunks).
   */
  promptTokens?: number;
}

/** Which part a tensor belongs to, by sd.cpp's checkpoint prefixes (a split file's tensors: by the option that named the file). */
function partOf(name: string, file: (typeof DIFFUSION_FILE_OPTIONS)[number]): keyof DiffusionParts {
  if (file === "vae" || file === "taesd" || name.startsWith("first_stage_model.")) return "vae";
  if (TEXT_FILES.includes(file) || name.startsWith("cond_stage_model.") || name.startsWith("conditioner.") || name.startsWith("text_encoders."))
    return "textEncoder";
  return "diffusion";
}

const TEXT_FILES: readonly string[] = ["clipL", "clipG", "t5xxl", "llm", "llmVision", "clipVision", "photoMaker"];
/** Files whose weights count but whose tensors do not tell the model's family or shape (adapters, encoders beside it). */
const BESIDE_FILES: readonly string[] = ["taesd", "controlNet", "ipAdapter", "photoMaker", "llmVision", "clipVision"];

/** What the files' headers say: weights per part, and the family's shape or why there is no fitted compute model. */
export interface DiffusionFilesInfo {
  /**
   * "sd1" / "sdxl" when the tensors are an SD1 / SDXL base model's (of a measured shape); "zimage",
   * "flux1", "flux2", "qwenimage" or "sd3" when the denoiser is one of those DiTs (of any
   * widths); whatever else the load adds (TAESD, a ControlNet).
   */
  family: DiffusionFamily;
  weights: DiffusionParts & { total: number };
  /** The UNet or DiT shape, or the reason the compute buffers cannot be estimated for these files. */
  shape: UnetShape | DitShape | string;
  /** A TAESD decodes and encodes in place of the VAE (load.taesd without taesdPreviewOnly). */
  taesd: boolean;
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
  // sd.cpp (stable-diffusion.cpp, new_sd_ctx): a decoding TAESD replaces the VAE, whose tensors it then ignores
  // ("first_stage_model."); a previews-only TAESD (tae_preview_only) is loaded decoder only
  const taesdDecodes = load.taesd !== undefined && load.taesdPreviewOnly !== true;
  for (const key of DIFFUSION_FILE_OPTIONS) {
    const file = load[key];
    if (file === undefined) continue;
    requireString(key, file);
    for (const t of await readTensorInfos(file)) {
      const part = partOf(t.name, key);
      const loaded = key === "taesd" ? taesdDecodes || t.name.startsWith("decoder.") : !(taesdDecodes && part === "vae");
      if (loaded) {
        weights[part] += t.bytes;
        weights.total += t.bytes;
      }
      if (!BESIDE_FILES.includes(key)) {
        all.push(t);
        parts[part].push(t);
      }
    }
  }
  const dit = ditShape(parts);
  const shape: UnetShape | DitShape | string = dit ? dit.shape : unetShape(all, { vaeFile: load.vae !== undefined });
  const family: DiffusionFamily = typeof shape === "string" ? (dit ? dit.family : "unknown") : shape.family;
  return { family, weights, shape, taesd: taesdDecodes };
}

/**
 * The estimate for files already read ({@link readDiffusionFiles}).
 * @throws GenaiError INVALID_ARGUMENT (sizes not positive multiples of 64, count out of 1..64, promptTokens out of 1..4096, controlImage without load.controlNet)
 */
export function estimateFromFiles(
  files: DiffusionFilesInfo,
  load: Pick<DiffusionLoadOptions, "flashAttention" | "vaeTiling" | "controlNet" | "llmVision">,
  image: DiffusionImageSize,
): DiffusionMemoryEstimate {
  optInt("count", image.count, 1, 1, 64);
  optInt("promptTokens", image.promptTokens, DEFAULT_PROMPT_TOKENS, 1, MAX_PROMPT_TOKENS);
  const controlNet = optBool("controlImage", image.controlImage, false);
  if (controlNet && load.controlNet === undefined) throw new GenaiError("INVALID_ARGUMENT", "controlImage needs a model loaded with controlNet");
  const opts = { flashAttention: optBool("flashAttention", load.flashAttention, false), vaeTiling: optBool("vaeTiling", load.vaeTiling, false), controlNet };
  const { shape, weights } = files;
  let reason = typeof shape === "string" ? shape : undefined;
  const unet = typeof shape !== "string" && isUnetShape(shape) ? shape : undefined;
  const dit = typeof shape !== "string" && !unet ? (shape as DitShape) : undefined;
  if (!reason && controlNet && !(unet && controlNetFit(unet))) reason = "a ControlNet's compute buffer was measured beside a 320-channel SD1 UNet only";
  const refs = image.refImages ?? [];
  if (!Array.isArray(refs)) throw new GenaiError("INVALID_ARGUMENT", "refImages must be an array of { width, height }");
  for (const [i, r] of refs.entries()) {
    optInt(`refImages[${i}].width`, r?.width, 0, MIN_SIDE, MAX_SIDE);
    optInt(`refImages[${i}].height`, r?.height, 0, MIN_SIDE, MAX_SIDE);
  }
  if (!reason && refs.length > 0 && dit && !(dit.family === "flux1" || dit.family === "flux2" || (dit.family === "qwenimage" && load.llmVision === undefined)))
    reason = "reference images were measured for Flux 1, Flux 2 [klein] and for Qwen-Image without llmVision only (SD1 and SDXL: their VAE encodes)";
  if (!reason && dit && opts.vaeTiling && !files.taesd && DIT_COMPUTE_FIT[dit.family].vaeTilePixels === undefined)
    reason = `vaeTiling was not measured for ${dit.family}`;
  if (!reason && files.taesd && (opts.vaeTiling || dit?.family === "qwenimage"))
    reason = opts.vaeTiling ? "vaeTiling with a TAESD was not measured" : "Qwen-Image's TAESD (the video tiny autoencoder) was not measured";
  checkImageSides(image); // for every family, with or without a compute estimate
  const fitOpts = { ...opts, taesd: files.taesd };
  const compute = reason ? undefined : unet ? unetComputeBytes(unet, image, fitOpts) : ditComputeBytes(dit as DitShape, image, fitOpts);
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
 * {@link SD1_COMPUTE_FIT} and {@link SDXL_COMPUTE_FIT} (SD1 and SDXL base
 * models of the measured shapes) and {@link DIT_COMPUTE_FIT} (Z-Image-Turbo,
 * Flux 1 [dev], Flux 2 [klein] 4B, Qwen-Image with its own or the 2D Wan VAE, SD3.5 Large, at their
 * real widths); a decoding TAESD's buffers from {@link TAESD_COMPUTE_FIT}.
 * Any other family (SD2, SD3 Medium and SD3.5 Medium, Flux 2 [dev], …) or shape, a TAESD with vaeTiling or for Qwen-Image, and a ControlNet beside any other get
 * `compute: undefined` with the reason in `computeUnknownReason`: nothing is
 * guessed for them. weightType (a conversion at load) is not applied:
 * weights are the files' bytes. A TAESD that decodes replaces the VAE's
 * weights with its own; one for previews only (taesdPreviewOnly) adds its
 * decoder's. Previews ("tae" / "vae" modes decode the latents during
 * sampling) add a decode's compute buffer that is not counted.
 * @param load the load options (model files; flashAttention and vaeTiling change the compute part)
 * @param image width × height in pixels (multiples of 64), count, the prompt's length in tokens (DiT families)
 * @throws GenaiError INVALID_ARGUMENT (no model file, bad sizes), MODEL_NOT_FOUND, INVALID_MODEL (unreadable headers, .ckpt)
 */
export async function estimateDiffusionMemory(load: DiffusionLoadOptions, image: DiffusionImageSize): Promise<DiffusionMemoryEstimate> {
  return estimateFromFiles(await readDiffusionFiles(load), load, image);
}

export {
  DEFAULT_PROMPT_TOKENS,
  DIT_COMPUTE_FIT,
  ditComputeBytes,
  ditShape,
  ditTokens,
  promptTokenBound,
  refImagePixels,
  TAESD_COMPUTE_FIT,
} from "./memory-dit";
export { SD1_COMPUTE_FIT, SDXL_COMPUTE_FIT, unetComputeBytes, unetShape } from "./memory-unet";
export type { UnetComputeFit, UnetFamily, UnetFit, UnetShape } from "./memory-unet";
export type { DitFamily, DitFit, DitShape } from "./memory-dit";
