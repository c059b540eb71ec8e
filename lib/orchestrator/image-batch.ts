/**
 * runImageBatch: an image batch as one orchestrator job that gives way to
 * jobs of a higher priority between two images (issue 14, preemption).
 *
 *   orchestrator.submit({ kind: "image", resource: diffusion, priority: "background",
 *     run: (signal, control) => runImageBatch(diffusion, { prompt, count: 4, seed: 42 }, signal, control, { onProgress }) });
 *
 * With nobody waiting, the batch is one generation (one engine call, as
 * DiffusionModel.generate runs it). When `control.shouldYield()` turns true
 * while image i is sampled (and images remain after it), the generation is
 * stopped after image i (sd.cpp's "newLatents" cancel: image i is finished
 * and decoded), the job yields (JobControl.yield: the waiting jobs go
 * first, and may free the model), and the rest of the batch goes on as a new
 * generation of the remaining images, seeds going on where they stopped
 * (image i always uses seed + i). Progress covers the whole batch throughout:
 * imageIndex and imageCount of the batch, percent over the batch (never
 * going back), etaMs of the remaining work, and stage "preempted" while it
 * waits.
 */
import { randomInt } from "node:crypto";
import { GenaiError } from "../errors";
import { IMAGE_DEFAULTS } from "../diffusion/defaults";
import { promptTokenBound } from "../diffusion/memory-dit";
import { computeSize } from "../diffusion/params";
import type { GeneratedImage, ImageGenerateOptions, ImageProgress, RawImage } from "../diffusion/types";
import { onAbort } from "../util/abort";
import { optInt } from "../util/validate";
import type { ManagedDiffusion } from "./managed-diffusion";
import type { JobControl, Orchestrator } from "./orchestrator";
import type { Priority } from "./priority";
import type { QueuedJob } from "./queue";

export interface ImageBatchHooks {
  /** Each progress change, over the whole batch (see the module notes). */
  onProgress?(p: ImageProgress): void;
  /** Preview images (when options.preview), with the batch's image index. */
  onPreview?(e: { imageIndex: number; step: number; image: RawImage }): void;
}

/**
 * Runs the batch `options` describes on `diffusion` (which the orchestrator
 * keeps resident while the job holds it), yielding between images as the
 * module notes say. `options.signal` is ignored: `signal` (the job's) cancels
 * it — within one sampling step, or at once while it waits — and then, as
 * DiffusionModel.generate does, it rejects with ABORTED unless
 * `options.keepFinishedOnCancel`, which resolves with the images finished.
 * @returns the images in seed order (seed, seed + 1, …; the seed is drawn once for seed −1)
 * @throws GenaiError INVALID_ARGUMENT (bad options), ABORTED, OUT_OF_MEMORY (the model no longer fits after a yield), engine errors
 */
export async function runImageBatch(
  diffusion: ManagedDiffusion,
  options: ImageGenerateOptions,
  signal: AbortSignal,
  control: JobControl,
  hooks: ImageBatchHooks = {},
): Promise<GeneratedImage[]> {
  const count = optInt("count", options.count, IMAGE_DEFAULTS.count, 1, 64);
  const seedIn = optInt("seed", options.seed, -1, -1, Number.MAX_SAFE_INTEGER);
  const seed = seedIn === -1 ? randomInt(0, 2 ** 31) : seedIn;
  const images: GeneratedImage[] = [];
  let last: ImageProgress | undefined;
  let msPerPercent: number | undefined; // from the last ETA: carries the estimate over a new generation's first steps
  const report = (p: ImageProgress) => {
    last = p;
    hooks.onProgress?.(p);
  };

  while (images.length < count && !signal.aborted) {
    const offset = images.length;
    const n = count - offset;
    const gen = diffusion.model.generate({ ...options, seed: seed + offset, count: n, keepFinishedOnCancel: true, signal: undefined });
    let cut = false;
    gen.on("progress", (p: ImageProgress) => {
      const percent = Math.max(last?.percent ?? 0, (offset * 100 + p.percent * n) / count);
      if (p.etaMs !== undefined && percent < 100) msPerPercent = p.etaMs / (100 - percent);
      const etaMs = p.etaMs ?? (msPerPercent === undefined ? undefined : msPerPercent * (100 - percent));
      report({ ...p, imageIndex: offset + p.imageIndex, imageCount: count, percent, etaMs });
      // give way after this image, when one waits and images remain after it
      if (!cut && (p.stage === "encoding" || p.stage === "diffusion") && p.imageIndex < n - 1 && control.shouldYield()) {
        cut = true;
        gen.cancel("newLatents");
      }
    });
    gen.on("preview", (e: { imageIndex: number; step: number; image: RawImage }) => hooks.onPreview?.({ ...e, imageIndex: offset + e.imageIndex }));
    const detach = onAbort(signal, () => gen.cancel("all"));
    let got: GeneratedImage[];
    try {
      got = await gen.done;
    } finally {
      detach();
    }
    images.push(...got);
    if (signal.aborted || images.length >= count) break;
    if (!cut || got.length === 0) throw new GenaiError("BACKEND_ERROR", `the engine stopped after ${got.length} of ${n} images without being asked to`);
    if (!control.shouldYield()) continue; // the job it stopped for is gone: go on at once
    if (last) report({ ...last, stage: "preempted", step: 0, imageIndex: images.length });
    try {
      await control.yield();
    } catch (e) {
      if (!signal.aborted) throw e;
    }
  }
  if (signal.aborted && !options.keepFinishedOnCancel)
    throw new GenaiError("ABORTED", `the image job was cancelled (${images.length} of ${count} images were finished)`, { cause: signal.reason });
  return images;
}

/** Options of {@link submitImageBatch}: the job's, as SubmitOptions's of the same names, and the batch's hooks. */
export interface SubmitImageBatchOptions extends ImageBatchHooks {
  /** Registry kind (default "image"). */
  kind?: string;
  priority?: Priority;
  signal?: AbortSignal;
}

/**
 * Submits an image batch as one orchestrator job ({@link runImageBatch})
 * that reserves its compute buffers besides the model's weights:
 * `memory: diffusion.imageMemory(size)` (ManagedDiffusion.imageMemory, from
 * estimateDiffusionMemory), so that on a tight device the orchestrator frees
 * what the generation itself needs, not only room for the weights.
 * Width and height: the options', else the init image's, else IMAGE_DEFAULTS (512 × 512);
 * with a hires fix, its target size (computeSize).
 * @throws GenaiError INVALID_ARGUMENT (sizes not multiples of 64 pixels), synchronously; the job's errors through its promise
 */
export function submitImageBatch(
  orchestrator: Orchestrator,
  diffusion: ManagedDiffusion,
  options: ImageGenerateOptions,
  opts: SubmitImageBatchOptions = {},
): QueuedJob<GeneratedImage[]> {
  const size = computeSize(
    options.width ?? options.initImage?.width ?? IMAGE_DEFAULTS.width,
    options.height ?? options.initImage?.height ?? IMAGE_DEFAULTS.height,
    options.hires,
  );
  const memory = diffusion.imageMemory({
    width: size.width,
    height: size.height,
    count: options.count,
    initImage: options.initImage !== undefined || size.encodes,
    controlImage: options.controlImage !== undefined,
    refImages: options.refImages?.map((r) => ({ width: r?.width, height: r?.height })),
    promptTokens: promptTokenBound(options.prompt, options.negativePrompt),
  });
  return orchestrator.submit({
    kind: opts.kind ?? "image",
    resource: diffusion,
    priority: opts.priority,
    signal: opts.signal,
    memory,
    run: (signal, control) => runImageBatch(diffusion, options, signal, control, opts),
  });
}
