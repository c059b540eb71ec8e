/** The accepted keys of each image options object (unknown keys are INVALID_ARGUMENT); the compiler checks each list is complete. */
import { optionKeys } from "../util/validate";
import type {
  CacheOptions,
  DiffusionLoadOptions,
  HiresOptions,
  ImageGenerateOptions,
  IpAdapterOptions,
  LoraSpec,
  PhotoMakerOptions,
  PreviewOptions,
  UpscaleOptions,
  UpscalerLoadOptions,
} from "./types";

export const DIFFUSION_LOAD_KEYS = optionKeys<DiffusionLoadOptions & { onProgress?: unknown; signal?: unknown }>()(
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
  "taesdPreviewOnly",
  "weightType",
  "threads",
  "flashAttention",
  "vaeTiling",
  "keepClipOnCpu",
  "keepVaeOnCpu",
  "offloadParamsToCpu",
  "device",
  "onProgress",
  "signal",
);
export const IMAGE_KEYS = optionKeys<ImageGenerateOptions>()(
  "prompt",
  "negativePrompt",
  "width",
  "height",
  "steps",
  "cfgScale",
  "guidance",
  "flowShift",
  "sampler",
  "scheduler",
  "seed",
  "count",
  "clipSkip",
  "strength",
  "initImage",
  "mask",
  "loras",
  "controlImage",
  "controlStrength",
  "refImages",
  "photoMaker",
  "ipAdapter",
  "preview",
  "hires",
  "cache",
  "output",
  "pngMetadata",
  "keepFinishedOnCancel",
  "signal",
);
export const PREVIEW_KEYS = optionKeys<PreviewOptions>()("mode", "intervalSteps");
export const CACHE_KEYS = optionKeys<CacheOptions>()("mode", "threshold", "start", "end", "warmup");
export const HIRES_KEYS = optionKeys<HiresOptions>()("scale", "width", "height", "steps", "strength", "upscaler", "upscalerModel");
export const IP_ADAPTER_KEYS = optionKeys<IpAdapterOptions>()("image", "strength");
export const PHOTO_MAKER_KEYS = optionKeys<PhotoMakerOptions>()("idImages", "styleStrength", "idEmbeddings");
export const LORA_KEYS = optionKeys<LoraSpec>()("path", "scale", "multiplier");
export const UPSCALER_LOAD_KEYS = optionKeys<UpscalerLoadOptions>()("model", "threads", "tileSize", "device", "signal");
export const UPSCALE_KEYS = optionKeys<UpscaleOptions>()("output", "signal");
