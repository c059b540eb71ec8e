/**
 * Public option and result types of the image API (DiffusionModel, ImageJob,
 * Upscaler). Defaults named here are the fields of lib/diffusion/defaults.ts,
 * the one place they are set.
 */

/** Raw pixels, row-major, 8 bits per channel. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  /** 3 (RGB) or 4 (RGBA); 1 (grey) for masks. */
  channels: 1 | 3 | 4;
}

/** A LoRA applied to one generation (ImageGenerateOptions.loras). */
export interface LoraSpec {
  /** LoRA file (safetensors or GGUF, kohya / diffusers / LDM tensor names); a missing file is MODEL_NOT_FOUND. */
  path: string;
  /** Strength, -10..10 (default IMAGE_DEFAULTS.loraScale = 1; 0 = as without it). */
  scale?: number;
  /** @deprecated the former name of `scale` (give one of the two). */
  multiplier?: number;
}

/**
 * A diffusion model's files. Which parts a family needs:
 *  - SD1.x / SD2.x / SDXL: `model` (one checkpoint), or `diffusionModel` +
 *    `clipL` (+ `clipG` for SDXL) + `vae` (stable-diffusion.cpp 487de75c
 *    tells SDXL from split files only when a name carries an SDXL prefix,
 *    "conditioner.embedders.1" / "cond_stage_model.1" / "te.1": with plain
 *    names the load is INVALID_MODEL, "get sd version from file failed");
 *  - SD3: `diffusionModel` (or `model`) + `clipL` + `clipG` + `t5xxl` (+ `vae`);
 *  - Flux 1 (dev, schnell, Kontext): `diffusionModel` + `clipL` + `t5xxl` + `vae`;
 *  - Flux 2 klein, Z-Image, Qwen-Image (and -Edit): `diffusionModel` + `llm` + `vae`.
 * Every file given is checked before stable-diffusion.cpp opens it: a missing
 * one is MODEL_NOT_FOUND, a truncated GGUF/safetensors file INVALID_MODEL.
 */
export interface DiffusionLoadOptions {
  /** A single-file checkpoint (SD1.x, SD2.x, SDXL, …). */
  model?: string;
  /** Or the parts: diffusion model (UNet/DiT) + VAE + text encoders. */
  diffusionModel?: string;
  vae?: string;
  /** CLIP ViT-L text encoder (SD3, Flux 1, split SD1/SDXL checkpoints). */
  clipL?: string;
  /** OpenCLIP ViT-bigG text encoder (SDXL, SD3). */
  clipG?: string;
  /** T5-XXL text encoder (SD3, Flux 1). */
  t5xxl?: string;
  /**
   * The LLM text encoder of the newer families, a separate file: Qwen3 for
   * Flux 2 klein and Z-Image, Qwen2.5-VL for Qwen-Image (sd.cpp's --llm).
   */
  llm?: string;
  /** The vision tower of a vision-language `llm` (Qwen2.5-VL's for Qwen-Image-Edit's reference images; sd.cpp's --llm_vision). */
  llmVision?: string;
  /**
   * CLIP vision encoder (sd.cpp's --clip_vision): the image encoder of an
   * `ipAdapter` (OpenCLIP ViT-H/14, as IP-Adapter for SD1.5 was trained
   * with), and of Wan image-to-video, which this API does not drive.
   */
  clipVision?: string;
  /**
   * IP-Adapter weights (UNet models: SD1 / SDXL; sd.cpp's --ip-adapter),
   * needed for ImageGenerateOptions.ipAdapter; needs `clipVision`
   * (INVALID_ARGUMENT otherwise).
   */
  ipAdapter?: string;
  /** A ControlNet matching the base model (SD1.x / SDXL); needed for ImageGenerateOptions.controlImage. */
  controlNet?: string;
  /**
   * PhotoMaker (v1/v2) weights for SDXL identity customization (sd.cpp's
   * --photo-maker); ImageGenerateOptions.photoMaker gives the identity photos.
   */
  photoMaker?: string;
  /**
   * A TAESD (tiny autoencoder: madebyollin's taesd / taesdxl / taesd3 / taef1 / taef2 in diffusers'
   * AutoencoderTiny names) that decodes and encodes in place of the VAE: much faster and lighter, lower quality.
   * The model's own VAE is then not loaded. Its latent channels must match the family (4: SD1/SDXL, 16: SD3,
   * Flux 1, Z-Image, 32: Flux 2), else INVALID_MODEL. With `taesdPreviewOnly` it makes the "tae" previews only.
   */
  taesd?: string;
  /** The TAESD makes "tae" previews only; the model's VAE decodes (sd.cpp's tae_preview_only). Needs `taesd`. Default false. */
  taesdPreviewOnly?: boolean;
  /** Weight type to convert to at load, e.g. "f16", "q8_0" (default: as stored). */
  weightType?: string;
  threads?: number;
  flashAttention?: boolean;
  vaeTiling?: boolean;
  keepClipOnCpu?: boolean;
  keepVaeOnCpu?: boolean;
  offloadParamsToCpu?: boolean;
  /** "auto" (default, or GENAI_NATIVE_DEVICE), "cpu", a backend ("vulkan") or a device ("Vulkan0"); see LoadModelOptions.device. */
  device?: string;
}

/** Preview images during sampling (ImageGenerateOptions.preview). */
export interface PreviewOptions {
  /**
   * "proj" (fast latent projection, default), "tae" (the TAESD loaded with the model), "vae" (the full VAE).
   * sd.cpp makes every preview with the TAESD when one is loaded: "tae" without one and "vae" with one are
   * INVALID_ARGUMENT.
   */
  mode?: "proj" | "tae" | "vae";
  /** A preview every this many sampling steps (default 1). */
  intervalSteps?: number;
}

/**
 * The hires fix's latent or pixel upscaler (stable-diffusion.cpp's
 * sd_hires_upscaler_t, AUTOMATIC1111's names): "latent" (bilinear on the
 * latent, the default), "latent-nearest", "latent-nearest-exact",
 * "latent-antialiased", "latent-bicubic", "latent-bicubic-antialiased";
 * "lanczos" and "nearest" (the decoded image, encoded again); "model" (an
 * ESRGAN model, HiresOptions.upscalerModel).
 */
export type HiresUpscaler =
  | "latent"
  | "latent-nearest"
  | "latent-nearest-exact"
  | "latent-antialiased"
  | "latent-bicubic"
  | "latent-bicubic-antialiased"
  | "lanczos"
  | "nearest"
  | "model";

/**
 * Hires fix (AUTOMATIC1111's "Hires. fix"; stable-diffusion.cpp's
 * sd_hires_params_t): each image is sampled at width × height, its latent
 * upscaled to the target size and sampled again for `steps` steps at
 * denoising `strength`, then decoded at the target size, which is the size of
 * the images returned. Give `scale` or `width` and `height`.
 */
export interface HiresOptions {
  /** Target = width × scale by height × scale, 1..4 (default HIRES_DEFAULTS.scale = 2); the result must be a multiple of 64. */
  scale?: number;
  /** Target pixels, multiples of 64, at least the job's size, at most MAX_SIDE (give both, instead of scale). */
  width?: number;
  height?: number;
  /** Sampling steps of the second pass, 1..1000 (default: the job's steps). */
  steps?: number;
  /** Denoising strength of the second pass, > 0 up to 1 (default HIRES_DEFAULTS.strength = 0.7). */
  strength?: number;
  /** Default "latent". */
  upscaler?: HiresUpscaler;
  /** ESRGAN weights for upscaler "model" (GGUF, safetensors or .pth). */
  upscalerModel?: string;
}

/**
 * Step caching (stable-diffusion.cpp's sd_cache_params_t, docs/caching.md):
 * sampling steps whose input barely changed reuse the model's last output
 * instead of running it. "ucache" and "spectrum" are for UNet models
 * (SD1/SD2/SDXL); "easycache", "dbcache", "taylorseer", "cache-dit" and
 * "spectrum" for DiT models (SD3, Flux, Z-Image, Qwen-Image). A mode the
 * model cannot use is INVALID_ARGUMENT (sd.cpp would generate without it).
 */
export interface CacheOptions {
  mode: "ucache" | "easycache" | "dbcache" | "taylorseer" | "cache-dit" | "spectrum";
  /** ≥ 0, up to 100. ucache/easycache: the reuse threshold (sd.cpp's defaults 1.0 / 0.2); dbcache/cache-dit: the residual difference threshold (0.08). Higher skips more. */
  threshold?: number;
  /** ucache/easycache: caching only between these fractions of the steps, 0 ≤ start < end ≤ 1 (default 0.15 and 0.95). */
  start?: number;
  end?: number;
  /** dbcache/taylorseer/cache-dit/spectrum: steps always computed first, 0..1000 (sd.cpp's defaults 8; spectrum 4). */
  warmup?: number;
}

export interface ImageGenerateOptions {
  prompt: string;
  negativePrompt?: string;
  /** Pixels, a multiple of 64 (SIDE_MULTIPLE) in [MIN_SIDE, MAX_SIDE] = [64, 4096] (default IMAGE_DEFAULTS.width / height). */
  width?: number;
  height?: number;
  /** Sampling steps, 1..1000 (default IMAGE_DEFAULTS.steps). */
  steps?: number;
  /** CFG scale, 0..100 (default IMAGE_DEFAULTS.cfgScale). */
  cfgScale?: number;
  /**
   * Distilled guidance, 0..100, of the guidance-distilled models (Flux 1 dev,
   * Flux Kontext, Flux 2 dev: sd.cpp's --guidance). Default: sd.cpp's (3.5).
   * INVALID_ARGUMENT on a model without a guidance embedder (model.reads.guidance).
   */
  guidance?: number;
  /**
   * The flow-matching models' timestep shift, > 0 up to 100 (SD3, Flux,
   * Z-Image, Qwen-Image; sd.cpp's --flow-shift). Default: the model family's own.
   * INVALID_ARGUMENT on an SD1/SD2/SDXL UNet (model.reads.flowShift).
   */
  flowShift?: number;
  /**
   * One of model.samplers. Default: the model family's (model.defaultSampler:
   * euler_a for SD1/SDXL, euler for the DiT families — Flux, Z-Image,
   * Qwen-Image, …; sd.cpp's sd_get_default_sample_method).
   */
  sampler?: string;
  /**
   * One of model.schedulers. Default: the model's for the sampler
   * (model.defaultScheduler(sampler): discrete for most, "flux2" for Flux 2,
   * "lcm" with the lcm sampler, …; sd.cpp's sd_get_default_scheduler).
   */
  scheduler?: string;
  /** Seed of the first image; -1 = random (default). Image i uses seed + i; the used seed is returned per image. */
  seed?: number;
  /** Images in the batch, 1..64 (default IMAGE_DEFAULTS.count). */
  count?: number;
  clipSkip?: number;
  /** img2img: 0..1 (default IMAGE_DEFAULTS.strength with an initImage). */
  strength?: number;
  initImage?: RawImage;
  mask?: RawImage;
  /** LoRAs applied to this generation only (the model is as loaded again afterwards). */
  loras?: LoraSpec[];
  /**
   * ControlNet conditioning image (an edge map, depth map, pose …), the job's
   * width × height, 3 or 4 channels (alpha is dropped). Needs a model loaded
   * with `controlNet` (INVALID_ARGUMENT otherwise).
   */
  controlImage?: RawImage;
  /** How strongly the ControlNet steers, 0..1 (default IMAGE_DEFAULTS.controlStrength = 0.9; used with a controlImage). */
  controlStrength?: number;
  /**
   * Reference images for the edit models (Flux Kontext, Qwen-Image-Edit,
   * Flux 2): up to MAX_REF_IMAGES, any size with sides in [MIN_SIDE, MAX_SIDE]
   * and an aspect ratio up to MAX_REF_ASPECT, 3 or 4 channels; sd.cpp scales
   * them for its VAE. INVALID_ARGUMENT on a model that does not read them
   * (SD1, SD2, SDXL, SD3: model.reads.refImages).
   */
  refImages?: RawImage[];
  /**
   * PhotoMaker identity customization (SDXL with a model loaded with
   * `photoMaker`; INVALID_ARGUMENT otherwise): the prompt names the class
   * followed by the trigger word, e.g. "a photo of a man img" (PHOTO_MAKER_TRIGGER).
   */
  photoMaker?: PhotoMakerOptions;
  /** IP-Adapter image prompt (a model loaded with `ipAdapter`; INVALID_ARGUMENT otherwise). */
  ipAdapter?: IpAdapterOptions;
  /** Preview images as "preview" events every intervalSteps steps. */
  preview?: PreviewOptions;
  /** A second sampling pass at a larger size (hires fix); not with controlImage. */
  hires?: HiresOptions;
  /** Step caching; each image then reports `cachedSteps`. */
  cache?: CacheOptions;
  /** "png" (default), "raw" pixels, or "both". */
  output?: "png" | "raw" | "both";
  /**
   * Write the generation's parameters into each PNG (default true): a tEXt
   * "parameters" chunk in AUTOMATIC1111's format (prompt, "Negative prompt:",
   * Steps, Sampler, Schedule type, CFG scale, Seed, Size, Model), which
   * stable-diffusion.cpp's CLI and most image tools read. false: none.
   */
  pngMetadata?: boolean;
  /** After a cancel, resolve `done` with the images finished before it (default: reject with ABORTED). */
  keepFinishedOnCancel?: boolean;
  signal?: AbortSignal;
}

/** ImageGenerateOptions.ipAdapter: stable-diffusion.cpp's ip_adapter_image / ip_adapter_strength. */
export interface IpAdapterOptions {
  /**
   * The image prompt: any size with sides in [MIN_SIDE, MAX_SIDE], 3 or 4
   * channels (alpha is dropped); sd.cpp scales it to 224 × 224 for the CLIP
   * vision encoder and adds its tokens to every cross-attention.
   */
  image: RawImage;
  /** How much the image tokens count, 0..MAX_IP_ADAPTER_STRENGTH (default IMAGE_DEFAULTS.ipAdapterStrength = 1, sd.cpp's); 0 is the image without it. */
  strength?: number;
}

/** ImageGenerateOptions.photoMaker: stable-diffusion.cpp's sd_pm_params_t. */
export interface PhotoMakerOptions {
  /**
   * Photos of the person, 1..MAX_PHOTO_MAKER_IMAGES, any size with sides in
   * [MIN_SIDE, MAX_SIDE], 3 or 4 channels (alpha is dropped); sd.cpp scales
   * each to 224 × 224 for its CLIP vision encoder.
   */
  idImages: RawImage[];
  /**
   * Percent of the steps, 0..100, sampled from the prompt without the identity
   * before it is merged in (sd.cpp: merge from step styleStrength / 100 × steps);
   * higher keeps more of the prompt's style. Default IMAGE_DEFAULTS.photoMakerStyleStrength (20, sd.cpp's).
   */
  styleStrength?: number;
  /**
   * PhotoMaker v2 only (a model file whose name contains "v2", sd.cpp's rule):
   * the file of the photos' face embeddings (sd.cpp's face_detect.py output,
   * one per id image), required there; not used by v1.
   */
  idEmbeddings?: string;
}

export interface GeneratedImage {
  /** PNG file bytes (unless output is "raw"). */
  png?: Buffer;
  /** Raw pixels (when output is "raw" or "both"). */
  raw?: RawImage;
  width: number;
  height: number;
  /** The seed this image was made with. */
  seed: number;
  /** With `cache`: sampling steps (both passes with a hires fix) that reused a cached output instead of running the model. */
  cachedSteps?: number;
}

export type ImageJobStatus = "pending" | "running" | "done" | "error" | "cancelled";

/**
 * Where an image job is. "preempted" is only reported by a batch run through
 * the orchestrator (runImageBatch, the server's image jobs): between two
 * images it gave way to a job of a higher priority and waits to go on with
 * the next one (`imageIndex`); `percent` stays where it was and `etaMs` counts
 * only the batch's own remaining work, not the wait. "hires": the hires fix's
 * second sampling pass (every image's first pass is done; `step`/`steps` are
 * the second pass's).
 */
export type ImageStage = "loading" | "encoding" | "diffusion" | "hires" | "decoding" | "preempted";

export interface ImageProgress {
  stage: ImageStage;
  /** Sampling step of the current image, 1-based (0 outside the diffusion stage). */
  step: number;
  steps: number;
  /** 0-based index of the image being worked on (when "preempted": the next one). */
  imageIndex: number;
  imageCount: number;
  /** Over the whole batch, 0..100. */
  percent: number;
  /** Estimated ms left (undefined until a step has been timed). */
  etaMs?: number;
  /**
   * With a sampling step ("diffusion", "hires"): that step's time in ms as
   * stable-diffusion.cpp measured it (from its previous step's report, the
   * figure sd-cli prints as s/it), without the event's way to JavaScript.
   */
  stepMs?: number;
  /** "decoding" with vaeTiling: tiles of the current image decoded so far, of `tiles` (sd.cpp reports no progress inside an untiled decode). */
  tile?: number;
  tiles?: number;
}

export interface UpscalerLoadOptions {
  /** ESRGAN weights (GGUF, safetensors or .pth), e.g. RealESRGAN_x4plus. */
  model: string;
  /** CPU threads (default: physical cores). */
  threads?: number;
  /** Images larger than this many pixels per side are upscaled in tiles of this size, bounding memory (default UPSCALER_DEFAULTS.tileSize; 0 = never tile). */
  tileSize?: number;
  /** "auto" (default, or GENAI_NATIVE_DEVICE), "cpu", a backend or a device name; see LoadModelOptions.device. */
  device?: string;
  signal?: AbortSignal;
}

export interface UpscaleOptions {
  /** "png" (default), "raw" pixels, or "both". */
  output?: "png" | "raw" | "both";
  /** Aborting it stops the running pass within about 50 ms on the CPU backend (elsewhere before the next pass) and rejects with ABORTED. */
  signal?: AbortSignal;
}

export interface UpscaledImage {
  png?: Buffer;
  raw?: RawImage;
  /** Pixels: the input's × factor. */
  width: number;
  height: number;
}

/**
 * The generation inputs a diffusion model's denoiser reads, told from its
 * tensors at load as stable-diffusion.cpp (487de75c) uses them. An input it
 * does not read leaves the image unchanged (tried with sd-cli on SD1, SD3 and
 * Flux 1 [schnell]), so generate refuses it. All true when the tensors could
 * not be read.
 */
export interface DenoiserReads {
  /** A distilled-guidance embedder (`guidance_in`: Flux 1 [dev], Kontext, Flux 2 [dev]) takes ImageGenerateOptions.guidance. */
  guidance: boolean;
  /** Not a UNet: the UNet families (SD1, SD2, SDXL) are sampled without a flow schedule, so flowShift has none to shift. */
  flowShift: boolean;
  /** Reference images: read by the Flux-style, Qwen-Image and Z-Image DiTs and the instruct-pix2pix UNets; not by SD1/SD2/SDXL or SD3. */
  refImages: boolean;
}
