/**
 * The image API's defaults and limits: the one place each is set. The native
 * addon receives every field filled in (lib/binding/types.ts) and only
 * range-checks it; fields left out fall back to stable-diffusion.cpp's own
 * sd_img_gen_params_init() / sd_ctx_params_init().
 */
import type { HiresUpscaler } from "./types";

/** Limits on the image side in pixels; sd.cpp works on 8× downsampled latents. */
export const MIN_SIDE = 64;
export const MAX_SIDE = 4096;

/**
 * Image sides are multiples of 64 pixels: stable-diffusion.cpp rounds other
 * sizes up without saying so (72×200 came back 128×256 from an SD1 model).
 */
export const SIDE_MULTIPLE = 64;

/**
 * Longest prompt (and negative prompt) in characters. stable-diffusion.cpp's
 * prompt-attention parser recurses per character: a prompt of about 27,000
 * characters overflowed an 8 MiB thread stack and took the process down
 * (its own sd-cli dies the same way). CLIP reads 77 tokens per chunk; real
 * prompts are far shorter than this limit. Also enforced in C++.
 */
export const MAX_PROMPT_CHARS = 4096;

/** At most this many reference images per generation (ImageGenerateOptions.refImages). */
export const MAX_REF_IMAGES = 16;

/**
 * Largest aspect ratio (long side / short side) of a reference image.
 * stable-diffusion.cpp scales each to about the job's pixel count with sides
 * rounded to multiples of 16 (32 for Qwen-Image); a thinner image would round
 * a side to 0 pixels.
 */
export const MAX_REF_ASPECT = 8;

/** At most this many PhotoMaker identity images per generation (PhotoMakerOptions.idImages). */
export const MAX_PHOTO_MAKER_IMAGES = 16;

/**
 * The word the prompt names the PhotoMaker identity with, right after its
 * class word ("a man img"): sd.cpp's photomaker_extension.cpp trigger_word,
 * one CLIP token. Without it sd.cpp silently generates without PhotoMaker.
 */
export const PHOTO_MAKER_TRIGGER = "img";

/** Largest IpAdapterOptions.strength (sd.cpp takes any; 1 is its default, ComfyUI's IP-Adapter weights go to 5). */
export const MAX_IP_ADAPTER_STRENGTH = 5;

/** Largest flowShift (sd.cpp's own defaults are 1..12). */
export const MAX_FLOW_SHIFT = 100;

/** Largest upscaled side in pixels (also enforced in C++). */
export const MAX_UPSCALED_SIDE = 16384;

/**
 * Generation defaults: 512×512 (SD1.x's training size), 20 steps, CFG 7,
 * euler_a with the discrete scheduler (sd-cli's defaults; a loaded model
 * replaces these two with its family's: DiffusionModel.defaultSampler and
 * defaultScheduler), img2img strength
 * 0.75 (sd-cli's), one image, LoRA scale 1, ControlNet strength 0.9
 * (sd-cli's and sd_img_gen_params_init()'s).
 */
export const IMAGE_DEFAULTS: Readonly<{
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  sampler: string;
  scheduler: string;
  count: number;
  strength: number;
  loraScale: number;
  controlStrength: number;
  photoMakerStyleStrength: number;
  ipAdapterStrength: number;
  previewMode: "proj" | "tae" | "vae";
  previewIntervalSteps: number;
}> = Object.freeze({
  width: 512,
  height: 512,
  steps: 20,
  cfgScale: 7,
  sampler: "euler_a",
  scheduler: "discrete",
  count: 1,
  strength: 0.75,
  loraScale: 1,
  controlStrength: 0.9,
  photoMakerStyleStrength: 20,
  ipAdapterStrength: 1,
  previewMode: "proj",
  previewIntervalSteps: 1,
});

/** Diffusion model load defaults. */
export const DIFFUSION_LOAD_DEFAULTS: Readonly<Record<"flashAttention" | "vaeTiling" | "keepClipOnCpu" | "keepVaeOnCpu" | "offloadParamsToCpu", boolean>> =
  Object.freeze({
    flashAttention: false,
    vaeTiling: false,
    keepClipOnCpu: false,
    keepVaeOnCpu: false,
    offloadParamsToCpu: false,
  });

/**
 * Hires fix defaults: scale 2, denoising strength 0.7, the "latent"
 * upscaler (sd_hires_params_init()'s and AUTOMATIC1111's); scale at most 4.
 */
export const HIRES_DEFAULTS: Readonly<{ scale: number; maxScale: number; strength: number; upscaler: HiresUpscaler }> = Object.freeze({
  scale: 2,
  maxScale: 4,
  strength: 0.7,
  upscaler: "latent",
});

/** The hires upscalers (HiresUpscaler), in sd_hires_upscaler_t's order from SD_HIRES_UPSCALER_LATENT. */
export const HIRES_UPSCALERS: readonly HiresUpscaler[] = Object.freeze([
  "latent",
  "latent-nearest",
  "latent-nearest-exact",
  "latent-antialiased",
  "latent-bicubic",
  "latent-bicubic-antialiased",
  "lanczos",
  "nearest",
  "model",
] as const);

/** The step cache modes (CacheOptions.mode), as sd-cli names them. */
export const CACHE_MODES = Object.freeze(["ucache", "easycache", "dbcache", "taylorseer", "cache-dit", "spectrum"] as const);

/** The load options that name files, in DiffusionLoadOptions. */
export const DIFFUSION_FILE_OPTIONS = Object.freeze([
  "model",
  "diffusionModel",
  "vae",
  "clipL",
  "clipG",
  "t5xxl",
  "llm",
  "llmVision",
  "clipVision",
  "controlNet",
  "ipAdapter",
  "photoMaker",
  "taesd",
] as const);

/** Upscaler defaults: images with a side over 128 pixels are upscaled in 128-pixel tiles. */
export const UPSCALER_DEFAULTS: Readonly<{ tileSize: number }> = Object.freeze({ tileSize: 128 });
