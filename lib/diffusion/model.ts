/**
 * DiffusionModel: a loaded diffusion model that starts image jobs.
 *
 *   const sd = await DiffusionModel.load({ model: "sd15.gguf", onProgress });
 *   const job = sd.generate({ prompt: "a lighthouse", steps: 20, count: 3, seed: 42 });
 *   job.on("progress", (p) => bar.update(p.percent));   // stage, step/steps, imageIndex, percent, etaMs
 *   const images = await job.done;                       // [{ png, width, height, seed: 42 | 43 | 44 }]
 *
 * One generation runs at a time per process (stable-diffusion.cpp's progress
 * and preview callbacks are process-wide); other jobs wait in order.
 */
import { GenaiError, toGenaiError } from "../errors";
import { resolveDevice } from "../system/backends";
import { onAbort } from "../util/abort";
import { optBool, optFunction, optInt, optOneOf, optSignal, optString, options as validOptions } from "../util/validate";
import { DIFFUSION_LOAD_KEYS } from "./keys";
import { DIFFUSION_FILE_OPTIONS, IMAGE_DEFAULTS } from "./defaults";
import type { DiffusionEngine, EngineGenerateParams, EngineModel } from "./engine";
import { ImageJob } from "./job";
import { nativeDiffusionEngine } from "./native-engine";
import { resolveGenerateParams } from "./params";
import { checkDiffusionParts } from "./parts";
import { encodePng, parametersText } from "./png";
import { ProgressTracker } from "./progress";
import { runExclusive } from "./turn";
import type { DenoiserReads, DiffusionLoadOptions, GeneratedImage, ImageGenerateOptions, RawImage } from "./types";

export class DiffusionModel implements AsyncDisposable {
  #engineModel: EngineModel | undefined;
  #running: Promise<unknown> | undefined;
  /** The model file's name (without .gguf / .safetensors …), for the PNG "parameters" text. */
  readonly #name: string;

  private constructor(m: EngineModel, name: string) {
    this.#engineModel = m;
    this.#name = name;
  }

  /**
   * Loads a diffusion model on a native thread.
   * @param engine the engine (default: the addon's stable-diffusion.cpp).
   * @throws GenaiError ENGINE_UNAVAILABLE (built without stable-diffusion.cpp), MODEL_NOT_FOUND, INVALID_MODEL (also parts that do not fit
   *   together: checkDiffusionParts), ABORTED, INVALID_ARGUMENT
   */
  static async load(
    options: DiffusionLoadOptions & { onProgress?: (fraction: number) => void; signal?: AbortSignal },
    engine: DiffusionEngine = nativeDiffusionEngine(),
  ): Promise<DiffusionModel> {
    const o = validOptions("options", options, DIFFUSION_LOAD_KEYS) as DiffusionLoadOptions & { onProgress?: (f: number) => void; signal?: AbortSignal };
    if (!engine.available) throw new GenaiError("ENGINE_UNAVAILABLE", engine.unavailableReason ?? "the diffusion engine is not available");
    if (!o.model && !o.diffusionModel) throw new GenaiError("INVALID_ARGUMENT", "give model (a single checkpoint) or diffusionModel (+ vae, text encoders)");
    for (const k of [...DIFFUSION_FILE_OPTIONS, "weightType"] as const) optString(k, o[k]);
    // sd.cpp fails the load with one "CLIP vision tensor … not in model metadata" line per tensor
    if (o.ipAdapter && !o.clipVision)
      throw new GenaiError("INVALID_ARGUMENT", "ipAdapter needs clipVision (the CLIP ViT-H/14 image encoder it was trained with)");
    if (o.threads !== undefined) optInt("threads", o.threads, 1, 1, 1024);
    if (o.device !== undefined) resolveDevice(o.device);
    for (const k of ["flashAttention", "vaeTiling", "keepClipOnCpu", "keepVaeOnCpu", "offloadParamsToCpu", "taesdPreviewOnly"] as const)
      optBool(k, o[k], false);
    if (o.taesdPreviewOnly && !o.taesd) throw new GenaiError("INVALID_ARGUMENT", "taesdPreviewOnly needs taesd (the TAESD that makes the previews)");
    const onProgress = optFunction<(f: number) => void>("onProgress", o.onProgress) ?? (() => undefined);
    const signal = optSignal("signal", o.signal);
    if (signal?.aborted) throw new GenaiError("ABORTED", "load aborted before it started");
    await checkDiffusionParts(o);
    try {
      const file = (o.model ?? o.diffusionModel ?? "").split(/[\\/]/).pop() ?? "";
      return new DiffusionModel(await runExclusive(() => engine.load(o, onProgress, signal)), file.replace(/\.(gguf|safetensors|ckpt|pth|bin)$/i, ""));
    } catch (e) {
      throw toGenaiError(e); // an engine double's plain errors
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

  /** The sampler a generation uses when none is given: the model family's (sd.cpp's sd_get_default_sample_method). */
  get defaultSampler(): string {
    return this.#model().defaultSampler ?? IMAGE_DEFAULTS.sampler;
  }

  /**
   * The scheduler a generation with `sampler` (default: defaultSampler) uses
   * when none is given (sd.cpp's sd_get_default_scheduler).
   * @throws GenaiError INVALID_ARGUMENT for a sampler not in samplers
   */
  defaultScheduler(sampler: string = this.defaultSampler): string {
    const m = this.#model();
    if (!m.samplers.includes(sampler)) throw new GenaiError("INVALID_ARGUMENT", `unknown sampler "${sampler}"; the engine has: ${m.samplers.join(", ")}`);
    return m.defaultSchedulers?.[sampler] ?? IMAGE_DEFAULTS.scheduler;
  }

  /**
   * The generation inputs this model's denoiser reads, told from its tensors
   * at load (e.g. to show a guidance control only where it acts): `guidance`
   * (a distilled-guidance embedder: Flux 1 [dev], Flux 2 [dev]), `flowShift`
   * (not an SD1/SD2/SDXL UNet), `refImages` (the Flux, Flux 2, Qwen-Image and
   * Z-Image DiTs, instruct-pix2pix UNets). generate throws INVALID_ARGUMENT
   * for an input that is false here: stable-diffusion.cpp would leave it
   * unread and make the same image.
   */
  get reads(): Readonly<DenoiserReads> {
    return { guidance: true, flowShift: true, refImages: true, ...this.#model().reads };
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
    const metadata = optBool("pngMetadata", options.pngMetadata, true);
    const signal = optSignal("signal", options.signal);
    const job = new ImageJob(
      async (j) => {
        const detach = onAbort(signal, () => j.cancel("all"));
        const run = runExclusive(() => this.#run(j, model, params, output, keep, metadata));
        this.#running = run.catch(() => undefined);
        try {
          return await run;
        } finally {
          detach();
        }
      },
      params.steps,
      params.count,
    );
    return job;
  }

  async #run(
    job: ImageJob,
    model: EngineModel,
    params: EngineGenerateParams,
    output: "png" | "raw" | "both",
    keep: boolean,
    metadata: boolean,
  ): Promise<GeneratedImage[]> {
    if (job.cancelRequested) {
      job.status = "cancelled";
      throw new GenaiError("ABORTED", "the image job was cancelled before it started");
    }
    job.status = "running";
    const tracker = new ProgressTracker(params.steps, params.count, { hiresSteps: params.hires?.steps });
    job.progress = tracker.current;
    job.emit("progress", job.progress);
    let raws: RawImage[];
    const cached: number[] = [];
    try {
      raws = await model
        .generate(
          params,
          (e) => {
            if (e.type === "cacheSteps") {
              cached[e.imageIndex] = (cached[e.imageIndex] ?? 0) + e.skipped;
              return;
            }
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
        )
        .catch((e) => {
          throw toGenaiError(e);
        });
    } catch (e) {
      job.status = job.cancelRequested ? "cancelled" : "error";
      throw job.cancelRequested ? new GenaiError("ABORTED", "the image job was cancelled", { cause: e }) : e;
    }
    const images = await Promise.all(
      raws.map(async (raw, i) => ({
        png:
          output === "raw"
            ? undefined
            : await encodePng(
                raw,
                metadata
                  ? {
                      parameters: parametersText({
                        ...params,
                        strength: params.initImage ? params.strength : undefined,
                        seed: params.seed + i,
                        width: params.hires ? params.width : raw.width,
                        height: params.hires ? params.height : raw.height,
                        model: this.#name,
                      }),
                    }
                  : {},
              ),
        raw: output === "png" ? undefined : raw,
        width: raw.width,
        height: raw.height,
        seed: params.seed + i,
        ...(params.cache ? { cachedSteps: cached[i] ?? 0 } : {}),
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
