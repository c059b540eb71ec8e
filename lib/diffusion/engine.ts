/**
 * The diffusion engine seen from TypeScript: a small interface that the
 * native stable-diffusion.cpp adapter implements, and that tests implement
 * with doubles. The job layer (job.ts, model.ts) depends only on this.
 */
import type { CacheOptions, DenoiserReads, DiffusionLoadOptions, HiresUpscaler, RawImage } from "./types";

export type { DiffusionLoadOptions, LoraSpec, RawImage } from "./types";

/**
 * What the engine reports while it generates, in order, on the JS thread.
 * A batch of `count` images runs: encoding (prompt), then each image's
 * sampling steps (step 1..steps), with a hires fix the "hires" stage and
 * each image's second pass (steps with hires: true), then decoding (VAE) of
 * each image (its tiles with vaeTiling; "image" once it is decoded).
 */
export type EngineEvent =
  | { type: "stage"; stage: "encoding" | "hires" | "decoding"; imageIndex: number }
  /** hires: a step of the hires fix's second pass (after every image's first pass). */
  /** stepUs: the step's own time as the engine measured it, µs (0 or absent: not timed). */
  | { type: "step"; imageIndex: number; step: number; steps: number; hires?: boolean; stepUs?: number }
  | { type: "preview"; imageIndex: number; step: number; image: RawImage }
  /** With a step cache: one sampling pass of image `imageIndex` skipped `skipped` steps. */
  | { type: "cacheSteps"; imageIndex: number; skipped: number }
  /** With VAE tiling: tile `tile` of `tiles` of image `imageIndex`'s decode is done. */
  | { type: "decodeTile"; imageIndex: number; tile: number; tiles: number }
  | { type: "image"; imageIndex: number };

/** Generation parameters after validation (all defaults filled in). */
export interface EngineGenerateParams {
  prompt: string;
  negativePrompt: string;
  /** Pixels, multiples of 64 (SIDE_MULTIPLE). */
  width: number;
  height: number;
  /** Sampling steps (≥ 1). */
  steps: number;
  /** Classifier-free guidance scale. */
  cfgScale: number;
  /** Distilled guidance (Flux-style models), when set. */
  guidance?: number;
  /** Flow-matching timestep shift (> 0), when set; absent: the model family's default. */
  flowShift?: number;
  sampler: string;
  scheduler: string;
  /** Seed of the first image; image i uses seed + i. */
  seed: number;
  /** Images in the batch. */
  count: number;
  clipSkip?: number;
  /** img2img: how much to change the init image, 0..1. */
  strength?: number;
  initImage?: RawImage;
  /** Inpainting mask (white = repaint), same size as the init image. */
  mask?: RawImage;
  /** LoRA files with their scales (filled in). */
  loras: { path: string; scale: number }[];
  /** ControlNet conditioning image (the job's size) and its strength (set together). */
  controlImage?: RawImage;
  controlStrength?: number;
  /** Reference images of the edit models (possibly none). */
  refImages: RawImage[];
  /** PhotoMaker: the identity photos, the style strength (percent of steps before the identity merges in) and v2's face-embeddings file. */
  photoMaker?: { idImages: RawImage[]; styleStrength: number; idEmbeddings?: string };
  /** IP-Adapter: the image prompt and its strength. */
  ipAdapter?: { image: RawImage; strength: number };
  /** Preview every `intervalSteps` steps, decoded with `mode` ("proj" fast projection, "tae" tiny VAE, "vae" full VAE). */
  preview?: { mode: "proj" | "tae" | "vae"; intervalSteps: number };
  /** Hires fix: the target size (pixels, multiples of 64, ≥ width × height), the second pass's steps and strength, the upscaler (and its ESRGAN file for "model"). */
  hires?: { width: number; height: number; steps: number; strength: number; upscaler: HiresUpscaler; upscalerModel?: string };
  /** Step caching: the mode and the fields given (the others are sd.cpp's defaults). */
  cache?: CacheOptions;
}

/** How the job layer tells the engine to stop (the native adapter maps it to sd_cancel_generation). */
export interface EngineCancelToken {
  /**
   * Set once the job is cancelled: "all" = stop as soon as possible (within
   * one sampling step); "newLatents" = finish the current image, skip the rest.
   */
  readonly mode: "all" | "newLatents" | undefined;
  /** Called when the job is cancelled (at once if it already is), and again if a "newLatents" cancel becomes "all". */
  onCancel(listener: (mode: "all" | "newLatents") => void): void;
}

export interface EngineModel {
  /** Sampler names the engine accepts, e.g. "euler_a". */
  readonly samplers: readonly string[];
  /** Scheduler names the engine accepts, e.g. "karras". */
  readonly schedulers: readonly string[];
  /** True when a ControlNet was loaded with the model (controlImage needs one). */
  readonly controlNet?: boolean;
  /**
   * The PhotoMaker version loaded with the model (ImageGenerateOptions.photoMaker
   * needs one; 2: a file whose name contains "v2", sd.cpp's rule); absent: none.
   */
  readonly photoMaker?: 1 | 2;
  /** True when IP-Adapter weights were loaded with the model (ImageGenerateOptions.ipAdapter needs them). */
  readonly ipAdapter?: boolean;
  /** True when a TAESD was loaded with the model, decoding or for previews only (a "tae" preview needs one). */
  readonly taesd?: boolean;
  /**
   * The generation inputs the model's denoiser reads (guidance, flowShift,
   * refImages); generate refuses the others with INVALID_ARGUMENT. Absent:
   * not known, none refused.
   */
  readonly reads?: Readonly<DenoiserReads>;
  /** The sampler this model's family is run with (sd.cpp's sd_get_default_sample_method); absent: IMAGE_DEFAULTS.sampler. */
  readonly defaultSampler?: string;
  /** The scheduler for each sampler on this model (sd.cpp's sd_get_default_scheduler); absent: IMAGE_DEFAULTS.scheduler. */
  readonly defaultSchedulers?: Readonly<Record<string, string>>;
  /** Bytes this model holds per device once loaded. */
  readonly memoryBytes: Record<string, number>;
  /**
   * Runs one generation. Resolves with the images finished — all of them, or
   * after a cancel those finished before it (possibly none).
   */
  generate(params: EngineGenerateParams, onEvent: (e: EngineEvent) => void, cancel: EngineCancelToken): Promise<RawImage[]>;
  /** Frees the model; never while generate runs. */
  dispose(): void;
}

export interface DiffusionEngine {
  /** False when the addon was built without stable-diffusion.cpp. */
  readonly available: boolean;
  /** Why it is unavailable, and how to get it. */
  readonly unavailableReason?: string;
  load(options: DiffusionLoadOptions, onProgress: (fraction: number) => void, signal?: AbortSignal): Promise<EngineModel>;
  /** The device a load with these options would place the model on ("CPU", "Vulkan0", …); absent: "CPU". */
  deviceFor?(options: DiffusionLoadOptions): Promise<string>;
}
