/** Image generation options → the engine's parameters: validation and every default (lib/diffusion/defaults.ts). */
import { randomInt } from "node:crypto";
import fs from "node:fs";
import { GenaiError } from "../errors";
import { optInt, optNumber, optOneOf, optString, options, requireString } from "../util/validate";
import { CACHE_KEYS, HIRES_KEYS, IMAGE_KEYS, IP_ADAPTER_KEYS, LORA_KEYS, PHOTO_MAKER_KEYS, PREVIEW_KEYS } from "./keys";
import {
  CACHE_MODES,
  HIRES_DEFAULTS,
  HIRES_UPSCALERS,
  IMAGE_DEFAULTS,
  MAX_FLOW_SHIFT,
  MAX_IP_ADAPTER_STRENGTH,
  MAX_PHOTO_MAKER_IMAGES,
  MAX_PROMPT_CHARS,
  MAX_REF_ASPECT,
  MAX_REF_IMAGES,
  MAX_SIDE,
  MIN_SIDE,
  PHOTO_MAKER_TRIGGER,
  SIDE_MULTIPLE,
} from "./defaults";

function promptText(name: string, text: string): string {
  if (text.length > MAX_PROMPT_CHARS)
    throw new GenaiError("INVALID_ARGUMENT", `${name} is ${text.length} characters; at most ${MAX_PROMPT_CHARS} (MAX_PROMPT_CHARS)`);
  return text;
}
import type { EngineGenerateParams, EngineModel } from "./engine";
import type { CacheOptions, HiresOptions, ImageGenerateOptions, IpAdapterOptions, LoraSpec, PhotoMakerOptions, PreviewOptions, RawImage } from "./types";

/**
 * Raw pixels { data, width, height, channels } with one of `channels` and data
 * of width × height × channels bytes (an init image, a mask, a chat image).
 * @throws GenaiError INVALID_ARGUMENT naming `name`
 */
export function checkRawImage(name: string, img: unknown, channels: readonly number[], size?: { width: number; height: number }): RawImage {
  const i = img as RawImage;
  if (typeof i !== "object" || i === null || !(i.data instanceof Uint8Array))
    throw new GenaiError("INVALID_ARGUMENT", `${name} must be { data: Uint8Array, width, height, channels }`);
  if (!channels.includes(i.channels)) throw new GenaiError("INVALID_ARGUMENT", `${name}.channels must be one of ${channels.join(", ")}`);
  if (size && (i.width !== size.width || i.height !== size.height))
    throw new GenaiError("INVALID_ARGUMENT", `${name} is ${i.width}×${i.height}; the job is ${size.width}×${size.height}`);
  if (i.data.length !== i.width * i.height * i.channels)
    throw new GenaiError("INVALID_ARGUMENT", `${name}.data has ${i.data.length} bytes, expected ${i.width * i.height * i.channels}`);
  return i;
}

function checkImage(name: string, img: unknown, width: number, height: number, channels: readonly number[]): RawImage {
  return checkRawImage(name, img, channels, { width, height });
}

/**
 * Validates options against the model's samplers/schedulers, its loaded parts (ControlNet, PhotoMaker, IP-Adapter,
 * TAESD) and the inputs its denoiser reads (EngineModel.reads: guidance, flowShift, refImages); fills defaults.
 * @throws GenaiError INVALID_ARGUMENT, MODEL_NOT_FOUND (a LoRA file)
 */
export function resolveGenerateParams(
  o: ImageGenerateOptions,
  model: Pick<EngineModel, "samplers" | "schedulers" | "controlNet" | "photoMaker" | "ipAdapter" | "taesd" | "reads" | "defaultSampler" | "defaultSchedulers">,
): EngineGenerateParams {
  const opts = options("options", o, IMAGE_KEYS) as unknown as ImageGenerateOptions;
  const d = IMAGE_DEFAULTS;
  const side = (name: string, v: unknown) => {
    const n = optInt(name, v, name === "width" ? d.width : d.height, MIN_SIDE, MAX_SIDE);
    if (n % SIDE_MULTIPLE !== 0)
      throw new GenaiError("INVALID_ARGUMENT", `${name} must be a multiple of ${SIDE_MULTIPLE} (got ${n}; stable-diffusion.cpp would round it up)`);
    return n;
  };
  const width = side("width", opts.width);
  const height = side("height", opts.height);
  const sampler = optString("sampler", opts.sampler) ?? model.defaultSampler ?? d.sampler;
  if (!model.samplers.includes(sampler)) throw new GenaiError("INVALID_ARGUMENT", `unknown sampler "${sampler}"; the engine has: ${model.samplers.join(", ")}`);
  const scheduler = optString("scheduler", opts.scheduler) ?? model.defaultSchedulers?.[sampler] ?? d.scheduler;
  if (!model.schedulers.includes(scheduler))
    throw new GenaiError("INVALID_ARGUMENT", `unknown scheduler "${scheduler}"; the engine has: ${model.schedulers.join(", ")}`);
  const seedIn = optInt("seed", opts.seed, -1, -1, Number.MAX_SAFE_INTEGER);
  const count = optInt("count", opts.count, d.count, 1, 64);
  const initImage = opts.initImage === undefined ? undefined : checkImage("initImage", opts.initImage, width, height, [3, 4]);
  const mask = opts.mask === undefined ? undefined : checkImage("mask", opts.mask, width, height, [1, 3, 4]);
  if (mask && !initImage) throw new GenaiError("INVALID_ARGUMENT", "mask needs an initImage");
  const controlImage = opts.controlImage === undefined ? undefined : checkImage("controlImage", opts.controlImage, width, height, [3, 4]);
  if (controlImage && !model.controlNet) throw new GenaiError("INVALID_ARGUMENT", "controlImage needs a model loaded with a controlNet");
  const controlStrength = optNumber("controlStrength", opts.controlStrength, d.controlStrength, 0, 1);
  const flowShift = opts.flowShift === undefined ? undefined : optNumber("flowShift", opts.flowShift, 0, 0, MAX_FLOW_SHIFT);
  if (flowShift === 0) throw new GenaiError("INVALID_ARGUMENT", "flowShift must be greater than 0");
  // inputs the model's denoiser would leave unread: the same image, so a mistake to say (native/diffusion/part_check.h)
  const unread = (key: "guidance" | "flowShift" | "refImages", why: string) => {
    if (model.reads?.[key] === false) throw new GenaiError("INVALID_ARGUMENT", `${key}: ${why}`);
  };
  if (flowShift !== undefined) unread("flowShift", "this model is a UNet (SD1, SD2, SDXL), sampled without a flow schedule");
  const guidance = opts.guidance === undefined ? undefined : optNumber("guidance", opts.guidance, 0, 0, 100);
  if (guidance !== undefined)
    unread("guidance", "this model has no distilled-guidance embedder (guidance_in; Flux 1 [dev] and Flux 2 [dev] have one): use cfgScale");
  const refImages = resolveRefImages(opts.refImages);
  if (refImages.length > 0) unread("refImages", "this model does not read reference images (SD1, SD2, SDXL and SD3 do not): use initImage for img2img");
  const preview = opts.preview === undefined ? undefined : (options("preview", opts.preview, PREVIEW_KEYS) as PreviewOptions);
  const steps = optInt("steps", opts.steps, d.steps, 1, 1000);
  const hires = opts.hires === undefined ? undefined : resolveHires(opts.hires, width, height, steps);
  // sd.cpp samples the hires pass with the first pass's ControlNet hint, which is the job's size, not the target's
  if (hires && controlImage) throw new GenaiError("INVALID_ARGUMENT", "hires cannot be combined with controlImage");
  const prompt = promptText("prompt", requireString("prompt", opts.prompt));
  const photoMaker = opts.photoMaker === undefined ? undefined : resolvePhotoMaker(opts.photoMaker, prompt, model.photoMaker);
  return {
    prompt,
    negativePrompt: promptText("negativePrompt", optString("negativePrompt", opts.negativePrompt) ?? ""),
    width,
    height,
    steps,
    cfgScale: optNumber("cfgScale", opts.cfgScale, d.cfgScale, 0, 100),
    guidance,
    flowShift,
    sampler,
    scheduler,
    seed: seedIn === -1 ? randomInt(0, 2 ** 31) : seedIn,
    count,
    clipSkip: opts.clipSkip === undefined ? undefined : optInt("clipSkip", opts.clipSkip, 0, -1, 12),
    strength: initImage ? optNumber("strength", opts.strength, d.strength, 0, 1) : undefined,
    initImage,
    mask,
    loras: resolveLoras(opts.loras),
    controlImage,
    controlStrength: controlImage ? controlStrength : undefined,
    refImages,
    ...(photoMaker && { photoMaker }),
    ...(opts.ipAdapter !== undefined && { ipAdapter: resolveIpAdapter(opts.ipAdapter, model.ipAdapter === true) }),
    preview: preview ? resolvePreview(preview, model.taesd === true) : undefined,
    hires,
    cache: opts.cache === undefined ? undefined : resolveCache(opts.cache),
  };
}

/**
 * preview → its mode and interval. sd.cpp (generate_image's preview callback) decodes both "tae" and "vae"
 * previews with the TAESD when one is loaded, else with the VAE: so "tae" needs a TAESD and "vae" needs none.
 * @throws GenaiError INVALID_ARGUMENT
 */
function resolvePreview(preview: PreviewOptions, hasTaesd: boolean): NonNullable<EngineGenerateParams["preview"]> {
  const mode = optOneOf("preview.mode", preview.mode, ["proj", "tae", "vae"] as const, IMAGE_DEFAULTS.previewMode);
  if (mode === "tae" && !hasTaesd) throw new GenaiError("INVALID_ARGUMENT", 'preview.mode "tae" needs a model loaded with taesd (use "vae" for the full VAE)');
  if (mode === "vae" && hasTaesd)
    throw new GenaiError("INVALID_ARGUMENT", 'preview.mode "vae": with a taesd loaded, stable-diffusion.cpp makes every preview with the TAESD (use "tae")');
  return { mode, intervalSteps: optInt("preview.intervalSteps", preview.intervalSteps, IMAGE_DEFAULTS.previewIntervalSteps, 1, 1000) };
}

/** cache → the mode and the fields given, checked (sd-cli's ranges). @throws GenaiError INVALID_ARGUMENT */
function resolveCache(spec: unknown): CacheOptions {
  const c = options("cache", spec, CACHE_KEYS) as unknown as CacheOptions;
  if (c.mode === undefined) throw new GenaiError("INVALID_ARGUMENT", `cache.mode is required: one of ${CACHE_MODES.join(", ")}`);
  const mode = optOneOf("cache.mode", c.mode, CACHE_MODES, "ucache");
  const out: CacheOptions = { mode };
  if (c.threshold !== undefined) out.threshold = optNumber("cache.threshold", c.threshold, 0, 0, 100);
  if (c.start !== undefined) out.start = optNumber("cache.start", c.start, 0, 0, 1);
  if (c.end !== undefined) out.end = optNumber("cache.end", c.end, 1, 0, 1);
  if ((out.start ?? 0.15) >= (out.end ?? 0.95)) throw new GenaiError("INVALID_ARGUMENT", "cache: start must be less than end (defaults 0.15 and 0.95)");
  if (c.warmup !== undefined) out.warmup = optInt("cache.warmup", c.warmup, 0, 0, 1000);
  // a field the mode does not read (sd.cpp's cache runtimes) is an error, not ignored
  const conditionLevel = mode === "ucache" || mode === "easycache";
  const unused =
    (out.threshold !== undefined && (mode === "taylorseer" || mode === "spectrum") && "threshold") ||
    ((out.start !== undefined || out.end !== undefined) && !conditionLevel && (out.start !== undefined ? "start" : "end")) ||
    (out.warmup !== undefined && conditionLevel && "warmup");
  if (unused) throw new GenaiError("INVALID_ARGUMENT", `cache.${unused} is not used by cache mode ${mode}`);
  return out;
}

/**
 * The size a generation's compute buffers are sized by: the hires fix's
 * target (scale, default 2, or width × height) when there is one, else
 * width × height; `encodes`: a VAE encoder pass runs (the pixel hires
 * upscalers encode the upscaled image again). Unchecked (resolveGenerateParams checks).
 */
export function computeSize(width: number, height: number, hires: HiresOptions | undefined): { width: number; height: number; encodes: boolean } {
  if (!hires) return { width, height, encodes: false };
  const scale = hires.scale ?? HIRES_DEFAULTS.scale;
  const pixel = hires.upscaler === "lanczos" || hires.upscaler === "nearest" || hires.upscaler === "model";
  return { width: hires.width ?? Math.round(width * scale), height: hires.height ?? Math.round(height * scale), encodes: pixel };
}

/** hires → the target size, steps, strength and upscaler, all filled in. @throws GenaiError INVALID_ARGUMENT, MODEL_NOT_FOUND (upscalerModel) */
function resolveHires(spec: unknown, width: number, height: number, steps: number): NonNullable<EngineGenerateParams["hires"]> {
  const h = options("hires", spec, HIRES_KEYS) as unknown as HiresOptions;
  const D = HIRES_DEFAULTS;
  let tw: number;
  let th: number;
  if (h.width !== undefined || h.height !== undefined) {
    if (h.scale !== undefined) throw new GenaiError("INVALID_ARGUMENT", "hires: give scale or width and height, not both");
    if (h.width === undefined || h.height === undefined) throw new GenaiError("INVALID_ARGUMENT", "hires: give both width and height");
    tw = optInt("hires.width", h.width, 0, width, MAX_SIDE);
    th = optInt("hires.height", h.height, 0, height, MAX_SIDE);
  } else {
    const scale = optNumber("hires.scale", h.scale, D.scale, 1, D.maxScale);
    tw = Math.round(width * scale);
    th = Math.round(height * scale);
    if (tw > MAX_SIDE || th > MAX_SIDE)
      throw new GenaiError("INVALID_ARGUMENT", `hires.scale ${scale} gives ${tw}×${th}; sides may be at most ${MAX_SIDE} (MAX_SIDE)`);
  }
  if (tw % SIDE_MULTIPLE !== 0 || th % SIDE_MULTIPLE !== 0)
    throw new GenaiError("INVALID_ARGUMENT", `hires target ${tw}×${th}: sides must be multiples of ${SIDE_MULTIPLE} (stable-diffusion.cpp would round them)`);
  const strength = optNumber("hires.strength", h.strength, D.strength, 0, 1);
  if (strength === 0) throw new GenaiError("INVALID_ARGUMENT", "hires.strength must be greater than 0");
  const upscaler = optOneOf("hires.upscaler", h.upscaler, HIRES_UPSCALERS, D.upscaler);
  const model = optString("hires.upscalerModel", h.upscalerModel);
  if (upscaler === "model" && !model) throw new GenaiError("INVALID_ARGUMENT", 'hires.upscaler "model" needs hires.upscalerModel (an ESRGAN file)');
  if (upscaler !== "model" && model !== undefined) throw new GenaiError("INVALID_ARGUMENT", 'hires.upscalerModel is used only with hires.upscaler "model"');
  if (model !== undefined && !fs.existsSync(model)) throw new GenaiError("MODEL_NOT_FOUND", `hires upscaler model not found: ${model}`);
  return {
    width: tw,
    height: th,
    steps: optInt("hires.steps", h.steps, steps, 1, 1000),
    strength,
    upscaler,
    ...(model !== undefined ? { upscalerModel: model } : {}),
  };
}

/** loras → [{ path, scale }], each file present. @throws GenaiError INVALID_ARGUMENT, MODEL_NOT_FOUND */
function resolveLoras(loras: unknown): { path: string; scale: number }[] {
  if (loras === undefined) return [];
  if (!Array.isArray(loras)) throw new GenaiError("INVALID_ARGUMENT", "loras must be an array of { path, scale }");
  return loras.map((spec, i) => {
    const l = options(`loras[${i}]`, spec, LORA_KEYS) as unknown as LoraSpec;
    const path = requireString(`loras[${i}].path`, l.path);
    if (l.scale !== undefined && l.multiplier !== undefined)
      throw new GenaiError("INVALID_ARGUMENT", `loras[${i}]: give scale or multiplier (its former name), not both`);
    const scale =
      l.multiplier !== undefined
        ? optNumber(`loras[${i}].multiplier`, l.multiplier, 1, -10, 10)
        : optNumber(`loras[${i}].scale`, l.scale, IMAGE_DEFAULTS.loraScale, -10, 10);
    // sd.cpp skips a LoRA it cannot open and generates without it
    if (!fs.existsSync(path)) throw new GenaiError("MODEL_NOT_FOUND", `LoRA file not found: ${path}`);
    return { path, scale };
  });
}

/**
 * Whether `prompt` names a PhotoMaker identity as sd.cpp finds it
 * (photomaker_extension.cpp tokenize_photomaker_trigger): the trigger word
 * as a CLIP token of its own (no letter, ASCII or not, right before or
 * after it) with another token before it (the class word whose embedding
 * the identity replaces). The same rule as native/diffusion/gen_request.cpp.
 */
export function hasPhotoMakerTrigger(prompt: string): boolean {
  const letter = (c: string | undefined) => c !== undefined && (/[a-z]/i.test(c) || c.charCodeAt(0) > 0x7f);
  const t = PHOTO_MAKER_TRIGGER;
  const lower = prompt.toLowerCase();
  for (let at = lower.indexOf(t); at >= 0; at = lower.indexOf(t, at + 1)) {
    if (letter(prompt[at - 1]) || letter(prompt[at + t.length])) continue;
    if (prompt.slice(0, at).trim() !== "") return true;
  }
  return false;
}

/** photoMaker → checked identity images, style strength and v2 embeddings file. @throws GenaiError INVALID_ARGUMENT, MODEL_NOT_FOUND (idEmbeddings) */
function resolvePhotoMaker(spec: unknown, prompt: string, version: 1 | 2 | undefined): NonNullable<EngineGenerateParams["photoMaker"]> {
  const pm = options("photoMaker", spec, PHOTO_MAKER_KEYS) as unknown as PhotoMakerOptions;
  // sd.cpp generates without PhotoMaker, saying so only in its log, in each of these cases
  if (version === undefined) throw new GenaiError("INVALID_ARGUMENT", "photoMaker needs a model loaded with photoMaker weights");
  if (!Array.isArray(pm.idImages) || pm.idImages.length === 0)
    throw new GenaiError("INVALID_ARGUMENT", `photoMaker.idImages must be an array of 1..${MAX_PHOTO_MAKER_IMAGES} images`);
  if (pm.idImages.length > MAX_PHOTO_MAKER_IMAGES)
    throw new GenaiError(
      "INVALID_ARGUMENT",
      `photoMaker.idImages has ${pm.idImages.length} images; at most ${MAX_PHOTO_MAKER_IMAGES} (MAX_PHOTO_MAKER_IMAGES)`,
    );
  const idImages = pm.idImages.map((img, i) => checkSides(`photoMaker.idImages[${i}]`, checkRawImage(`photoMaker.idImages[${i}]`, img, [3, 4])));
  if (!hasPhotoMakerTrigger(prompt))
    throw new GenaiError(
      "INVALID_ARGUMENT",
      `photoMaker: the prompt must name the identity with the trigger word "${PHOTO_MAKER_TRIGGER}" after its class word, e.g. "a photo of a man ${PHOTO_MAKER_TRIGGER}" (PHOTO_MAKER_TRIGGER)`,
    );
  const idEmbeddings = optString("photoMaker.idEmbeddings", pm.idEmbeddings);
  if (version === 1 && idEmbeddings !== undefined)
    throw new GenaiError("INVALID_ARGUMENT", 'photoMaker.idEmbeddings is used only by PhotoMaker v2 (a photoMaker file whose name contains "v2")');
  if (version === 2 && idEmbeddings === undefined)
    throw new GenaiError("INVALID_ARGUMENT", "PhotoMaker v2 needs photoMaker.idEmbeddings (the id images' face embeddings, sd.cpp's face_detect.py)");
  if (idEmbeddings !== undefined && !fs.existsSync(idEmbeddings)) throw new GenaiError("MODEL_NOT_FOUND", `photoMaker.idEmbeddings not found: ${idEmbeddings}`);
  return {
    idImages,
    styleStrength: optNumber("photoMaker.styleStrength", pm.styleStrength, IMAGE_DEFAULTS.photoMakerStyleStrength, 0, 100),
    ...(idEmbeddings !== undefined && { idEmbeddings }),
  };
}

/** ipAdapter → the checked image prompt and strength. @throws GenaiError INVALID_ARGUMENT */
function resolveIpAdapter(spec: unknown, loaded: boolean): NonNullable<EngineGenerateParams["ipAdapter"]> {
  const ip = options("ipAdapter", spec, IP_ADAPTER_KEYS) as unknown as IpAdapterOptions;
  // sd.cpp ignores the image, without a word, on a model without an IP-Adapter
  if (!loaded) throw new GenaiError("INVALID_ARGUMENT", "ipAdapter needs a model loaded with ipAdapter (and clipVision)");
  return {
    image: checkSides("ipAdapter.image", checkRawImage("ipAdapter.image", ip.image, [3, 4])),
    strength: optNumber("ipAdapter.strength", ip.strength, IMAGE_DEFAULTS.ipAdapterStrength, 0, MAX_IP_ADAPTER_STRENGTH),
  };
}

/** An image whose sides are whole pixels in [MIN_SIDE, MAX_SIDE]. @throws GenaiError INVALID_ARGUMENT naming `name` */
function checkSides(name: string, img: RawImage): RawImage {
  for (const side of [img.width, img.height])
    if (!Number.isInteger(side) || side < MIN_SIDE || side > MAX_SIDE)
      throw new GenaiError("INVALID_ARGUMENT", `${name} is ${img.width}×${img.height}; sides must be in [${MIN_SIDE}, ${MAX_SIDE}]`);
  return img;
}

/** refImages → checked images (sides, aspect ratio, channels, count). @throws GenaiError INVALID_ARGUMENT */
function resolveRefImages(refs: unknown): RawImage[] {
  if (refs === undefined) return [];
  if (!Array.isArray(refs)) throw new GenaiError("INVALID_ARGUMENT", "refImages must be an array of images");
  if (refs.length > MAX_REF_IMAGES) throw new GenaiError("INVALID_ARGUMENT", `refImages has ${refs.length} images; at most ${MAX_REF_IMAGES} (MAX_REF_IMAGES)`);
  return refs.map((r, i) => {
    const name = `refImages[${i}]`;
    const img = checkSides(name, checkRawImage(name, r, [3, 4]));
    if (Math.max(img.width, img.height) > MAX_REF_ASPECT * Math.min(img.width, img.height))
      throw new GenaiError("INVALID_ARGUMENT", `${name} is ${img.width}×${img.height}; the aspect ratio may be at most ${MAX_REF_ASPECT}:1 (MAX_REF_ASPECT)`);
    return img;
  });
}
