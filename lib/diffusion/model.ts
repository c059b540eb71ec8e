/**
 * DiffusionModel and image jobs.
 *
 *   const sd = await DiffusionModel.load({ model: "sd15.gguf", onProgress });
 *   const job = sd.generate({ prompt: "a lighthouse", steps: 20, count: 3, seed: 42 });
 *   job.on("progress", (p) => bar.update(p.percent));   // stage, step/steps, imageIndex, percent, etaMs
 *   const images = await job.done;                       // [{ png, width, height, seed: 42 | 43 | 44 }]
 *
 * One generation runs at a time per process (stable-diffusion.cpp's progress
 * and preview callbacks are process-wide); other jobs wait in order.
 */
import { randomInt } from "node:crypto";
import { EventEmitter } from "node:events";
import { GenaiError, toGenaiError } from "../errors";
import { optBool, optFunction, optInt, optNumber, optObject, optOneOf, optSignal, optString, requireString } from "../validate";
import type { DiffusionEngine, DiffusionLoadOptions, EngineCancelToken, EngineGenerateParams, EngineModel, LoraSpec, RawImage } from "./engine";
import { resolveDevice } from "../system/backends";
import { nativeDiffusionEngine } from "./native-engine";
import { encodePng } from "./png";
import { ProgressTracker, type ImageProgress } from "./progress";

/** Limits on the image side in pixels; sd.cpp works on 8× downsampled latents. */
export const MIN_SIDE = 64;
export const MAX_SIDE = 4096;

export interface ImageGenerateOptions {
  prompt: string;
  negativePrompt?: string;
  /** Pixels, a multiple of 8 in [64, 4096] (default 512). */
  width?: number;
  height?: number;
  /** Sampling steps, 1..1000 (default 20). */
  steps?: number;
  /** CFG scale, 0..100 (default 7). */
  cfgScale?: number;
  guidance?: number;
  /** One of model.samplers (default "euler_a"). */
  sampler?: string;
  /** One of model.schedulers (default "discrete"). */
  scheduler?: string;
  /** Seed of the first image; -1 = random (default). Image i uses seed + i; the used seed is returned per image. */
  seed?: number;
  /** Images in the batch, 1..64 (default 1). */
  count?: number;
  clipSkip?: number;
  /** img2img: 0..1 (default 0.75 with an initImage). */
  strength?: number;
  initImage?: RawImage;
  mask?: RawImage;
  loras?: LoraSpec[];
  /** Preview images as "preview" events every intervalSteps steps. */
  preview?: { mode?: "proj" | "tae" | "vae"; intervalSteps?: number };
  /** "png" (default), "raw" pixels, or "both". */
  output?: "png" | "raw" | "both";
  /** After a cancel, resolve `done` with the images finished before it (default: reject with ABORTED). */
  keepFinishedOnCancel?: boolean;
  signal?: AbortSignal;
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
}

export type ImageJobStatus = "pending" | "running" | "done" | "error" | "cancelled";

let jobCounter = 0;
/** Process-wide: one sd.cpp operation at a time (its callbacks are global). */
let generationChain: Promise<unknown> = Promise.resolve();

/**
 * Runs `fn` after every sd.cpp operation queued before it in this process
 * (generations, upscales), and holds the next ones until it settles.
 * @internal
 */
export function runExclusive<T>(fn: () => Promise<T>): Promise<T> {
  const run = generationChain.then(() => undefined, () => undefined).then(fn);
  generationChain = run.catch(() => undefined);
  return run;
}

function checkImage(name: string, img: unknown, width: number, height: number, channels: readonly number[]): RawImage {
  const i = img as RawImage;
  if (typeof i !== "object" || i === null || !(i.data instanceof Uint8Array)) throw new GenaiError("INVALID_ARGUMENT", `${name} must be { data: Uint8Array, width, height, channels }`);
  if (!channels.includes(i.channels)) throw new GenaiError("INVALID_ARGUMENT", `${name}.channels must be one of ${channels.join(", ")}`);
  if (i.width !== width || i.height !== height) throw new GenaiError("INVALID_ARGUMENT", `${name} is ${i.width}×${i.height}; the job is ${width}×${height}`);
  if (i.data.length !== i.width * i.height * i.channels) throw new GenaiError("INVALID_ARGUMENT", `${name}.data has ${i.data.length} bytes, expected ${i.width * i.height * i.channels}`);
  return i;
}

/** Validates options against the model's samplers/schedulers; fills defaults. @throws GenaiError INVALID_ARGUMENT */
export function resolveGenerateParams(o: ImageGenerateOptions, model: Pick<EngineModel, "samplers" | "schedulers">): EngineGenerateParams {
  const opts = optObject("options", o) as unknown as ImageGenerateOptions;
  const side = (name: string, v: unknown) => {
    const n = optInt(name, v, 512, MIN_SIDE, MAX_SIDE);
    if (n % 8 !== 0) throw new GenaiError("INVALID_ARGUMENT", `${name} must be a multiple of 8 (got ${n})`);
    return n;
  };
  const width = side("width", opts.width);
  const height = side("height", opts.height);
  const sampler = optString("sampler", opts.sampler) ?? "euler_a";
  if (!model.samplers.includes(sampler)) throw new GenaiError("INVALID_ARGUMENT", `unknown sampler "${sampler}"; the engine has: ${model.samplers.join(", ")}`);
  const scheduler = optString("scheduler", opts.scheduler) ?? "discrete";
  if (!model.schedulers.includes(scheduler)) throw new GenaiError("INVALID_ARGUMENT", `unknown scheduler "${scheduler}"; the engine has: ${model.schedulers.join(", ")}`);
  const seedIn = optInt("seed", opts.seed, -1, -1, Number.MAX_SAFE_INTEGER);
  const count = optInt("count", opts.count, 1, 1, 64);
  const initImage = opts.initImage === undefined ? undefined : checkImage("initImage", opts.initImage, width, height, [3, 4]);
  const mask = opts.mask === undefined ? undefined : checkImage("mask", opts.mask, width, height, [1, 3, 4]);
  if (mask && !initImage) throw new GenaiError("INVALID_ARGUMENT", "mask needs an initImage");
  const loras = opts.loras ?? [];
  if (!Array.isArray(loras)) throw new GenaiError("INVALID_ARGUMENT", "loras must be an array");
  for (const [i, l] of loras.entries()) {
    requireString(`loras[${i}].path`, l?.path);
    optNumber(`loras[${i}].multiplier`, l.multiplier, 1, -10, 10);
  }
  const preview = opts.preview === undefined ? undefined : optObject("preview", opts.preview);
  return {
    prompt: requireString("prompt", opts.prompt),
    negativePrompt: optString("negativePrompt", opts.negativePrompt) ?? "",
    width,
    height,
    steps: optInt("steps", opts.steps, 20, 1, 1000),
    cfgScale: optNumber("cfgScale", opts.cfgScale, 7, 0, 100),
    guidance: opts.guidance === undefined ? undefined : optNumber("guidance", opts.guidance, 3.5, 0, 100),
    sampler,
    scheduler,
    seed: seedIn === -1 ? randomInt(0, 2 ** 31) : seedIn,
    count,
    clipSkip: opts.clipSkip === undefined ? undefined : optInt("clipSkip", opts.clipSkip, -1, -1, 12),
    strength: initImage ? optNumber("strength", opts.strength, 0.75, 0, 1) : undefined,
    initImage,
    mask,
    loras: loras.map((l) => ({ path: l.path, multiplier: l.multiplier ?? 1 })),
    preview: preview
      ? { mode: optOneOf("preview.mode", preview.mode, ["proj", "tae", "vae"] as const, "proj"), intervalSteps: optInt("preview.intervalSteps", preview.intervalSteps, 1, 1, 1000) }
      : undefined,
  };
}

/** An image generation: progress/preview events, `done`, `cancel()`. */
export class ImageJob extends EventEmitter {
  readonly id = `image-${++jobCounter}`;
  status: ImageJobStatus = "pending";
  progress: ImageProgress;
  /** The images, in seed order; rejects with a GenaiError (ABORTED when cancelled, unless keepFinishedOnCancel). */
  readonly done: Promise<GeneratedImage[]>;
  #cancelMode: "all" | "newLatents" | undefined;
  #cancelListeners: ((mode: "all" | "newLatents") => void)[] = [];
  /** @internal what the engine watches */
  readonly cancelToken: EngineCancelToken = {
    mode: undefined,
    onCancel: (listener) => {
      if (this.#cancelMode) listener(this.#cancelMode);
      else this.#cancelListeners.push(listener);
    },
  };

  /** @internal */
  constructor(run: (job: ImageJob) => Promise<GeneratedImage[]>, steps: number, count: number) {
    super();
    this.progress = { stage: "loading", step: 0, steps, imageIndex: 0, imageCount: count, percent: 0 };
    this.done = run(this);
    this.done.catch(() => undefined);
  }

  /**
   * Stops the job within one sampling step. With `mode: "newLatents"` the
   * current image is finished first. A job still waiting its turn never starts.
   */
  cancel(mode: "all" | "newLatents" = "all"): void {
    if (this.status === "done" || this.status === "error" || this.status === "cancelled") return;
    if (this.#cancelMode) return;
    this.#cancelMode = mode;
    (this.cancelToken as { mode: typeof mode }).mode = mode;
    for (const l of this.#cancelListeners.splice(0)) l(mode);
  }

  /** @internal */
  get cancelRequested(): boolean {
    return this.#cancelMode !== undefined;
  }
}

export class DiffusionModel implements AsyncDisposable {
  #engineModel: EngineModel | undefined;
  #running: Promise<unknown> | undefined;

  private constructor(m: EngineModel) {
    this.#engineModel = m;
  }

  /**
   * Loads a diffusion model on a native thread.
   * @param engine the engine (default: the addon's stable-diffusion.cpp).
   * @throws GenaiError ENGINE_UNAVAILABLE (built without stable-diffusion.cpp), MODEL_NOT_FOUND, INVALID_MODEL, ABORTED, INVALID_ARGUMENT
   */
  static async load(options: DiffusionLoadOptions & { onProgress?: (fraction: number) => void; signal?: AbortSignal }, engine: DiffusionEngine = nativeDiffusionEngine()): Promise<DiffusionModel> {
    const o = optObject("options", options) as DiffusionLoadOptions & { onProgress?: (f: number) => void; signal?: AbortSignal };
    if (!engine.available) throw new GenaiError("ENGINE_UNAVAILABLE", engine.unavailableReason ?? "the diffusion engine is not available");
    if (!o.model && !o.diffusionModel) throw new GenaiError("INVALID_ARGUMENT", "give model (a single checkpoint) or diffusionModel (+ vae, text encoders)");
    for (const k of ["model", "diffusionModel", "vae", "clipL", "clipG", "t5xxl", "taesd", "weightType"] as const) optString(k, o[k]);
    if (o.threads !== undefined) optInt("threads", o.threads, 1, 1, 1024);
    if (o.device !== undefined) resolveDevice(o.device);
    for (const k of ["flashAttention", "vaeTiling", "keepClipOnCpu", "keepVaeOnCpu", "offloadParamsToCpu"] as const) optBool(k, o[k], false);
    const onProgress = optFunction<(f: number) => void>("onProgress", o.onProgress) ?? (() => undefined);
    const signal = optSignal("signal", o.signal);
    if (signal?.aborted) throw new GenaiError("ABORTED", "load aborted before it started");
    try {
      return new DiffusionModel(await engine.load(o, onProgress, signal));
    } catch (e) {
      throw toGenaiError(e);
    }
  }

  #model(): EngineModel {
    if (!this.#engineModel) throw new GenaiError("DISPOSED", "the diffusion model has been disposed");
    return this.#engineModel;
  }

  get samplers(): readonly string[] {
    return this.#model().samplers;
  }

  get schedulers(): readonly string[] {
    return this.#model().schedulers;
  }

  /** Bytes the model holds per device. */
  get memoryBytes(): Record<string, number> {
    return { ...this.#model().memoryBytes };
  }

  /**
   * Starts an image job (it waits for any generation already running in this process).
   * Bad options throw GenaiError INVALID_ARGUMENT here, synchronously.
   */
  generate(options: ImageGenerateOptions): ImageJob {
    const model = this.#model();
    const params = resolveGenerateParams(options, model);
    const output = optOneOf("output", options.output, ["png", "raw", "both"] as const, "png");
    const keep = optBool("keepFinishedOnCancel", options.keepFinishedOnCancel, false);
    const signal = optSignal("signal", options.signal);
    const job = new ImageJob(
      async (j) => {
        const onAbort = () => j.cancel("all");
        signal?.addEventListener("abort", onAbort, { once: true });
        if (signal?.aborted) j.cancel("all");
        const run = runExclusive(() => this.#run(j, model, params, output, keep));
        this.#running = run.catch(() => undefined);
        try {
          return await run;
        } finally {
          signal?.removeEventListener("abort", onAbort);
        }
      },
      params.steps,
      params.count,
    );
    return job;
  }

  async #run(job: ImageJob, model: EngineModel, params: EngineGenerateParams, output: "png" | "raw" | "both", keep: boolean): Promise<GeneratedImage[]> {
    if (job.cancelRequested) {
      job.status = "cancelled";
      throw new GenaiError("ABORTED", "the image job was cancelled before it started");
    }
    job.status = "running";
    const tracker = new ProgressTracker(params.steps, params.count);
    job.progress = tracker.current;
    job.emit("progress", job.progress);
    let raws: RawImage[];
    try {
      raws = await model.generate(
        params,
        (e) => {
          if (e.type === "preview") {
            job.emit("preview", { imageIndex: e.imageIndex, step: e.step, image: e.image });
            return;
          }
          const p = tracker.update(e);
          if (p) {
            job.progress = p;
            job.emit("progress", p);
          }
        },
        job.cancelToken,
      ).catch((e) => {
        throw toGenaiError(e);
      });
    } catch (e) {
      job.status = job.cancelRequested ? "cancelled" : "error";
      throw job.cancelRequested ? new GenaiError("ABORTED", "the image job was cancelled", { cause: e }) : e;
    }
    const images = await Promise.all(
      raws.map(async (raw, i) => ({
        png: output === "raw" ? undefined : await encodePng(raw),
        raw: output === "png" ? undefined : raw,
        width: raw.width,
        height: raw.height,
        seed: params.seed + i,
      })),
    );
    if (job.cancelRequested) {
      job.status = "cancelled";
      if (!keep) throw new GenaiError("ABORTED", `the image job was cancelled (${images.length} of ${params.count} images were finished)`);
      return images;
    }
    job.status = "done";
    job.progress = { ...job.progress, stage: "decoding", percent: 100, etaMs: 0 };
    job.emit("progress", job.progress);
    return images;
  }

  /** Waits for this model's running generation, then frees it. Idempotent. */
  async dispose(): Promise<void> {
    const m = this.#engineModel;
    if (!m) return;
    this.#engineModel = undefined;
    await this.#running;
    m.dispose();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose();
  }
}
