/**
 * Turns engine events into job progress over the whole batch.
 *
 * Work units: encoding = 1 step, each image's sampling = `steps` steps (plus
 * `hiresSteps` for the hires fix's second pass), each image's decoding =
 * `decodeSteps` steps (default 2, replaced by the measured
 * decode time once one image has decoded). percent = done units / all units,
 * where sampling counts as far as it got (a batch cut short after image i,
 * e.g. by a "newLatents" cancel, counts i + 1 images sampled); with VAE
 * tiling, a decode counts the share of its tiles done.
 * etaMs = remaining units × the median of the last 8 measured sampling steps:
 * one slow step (a page fault, another job's burst) does not swing it, and it
 * follows a lasting change of speed within a few steps (a mean of all steps
 * did neither: one 10× step read as seconds of ETA long after it).
 */
import type { EngineEvent } from "./engine";
import type { ImageProgress, ImageStage } from "./types";

export type { ImageProgress, ImageStage } from "./types";

export class ProgressTracker {
  #steps: number;
  #hiresSteps: number;
  #count: number;
  #decodeUnits: number;
  #now: () => number;
  #doneUnits = 0;
  #stepMs: number[] = [];
  #lastStepAt: number | undefined;
  #decodeStartedAt: number | undefined;
  current: ImageProgress;

  constructor(steps: number, count: number, options: { decodeSteps?: number; hiresSteps?: number; now?: () => number } = {}) {
    this.#steps = steps;
    this.#hiresSteps = options.hiresSteps ?? 0;
    this.#count = count;
    this.#decodeUnits = options.decodeSteps ?? 2;
    this.#now = options.now ?? (() => performance.now());
    this.current = { stage: "loading", step: 0, steps, imageIndex: 0, imageCount: count, percent: 0 };
  }

  get #totalUnits(): number {
    return 1 + this.#count * (this.#steps + this.#hiresSteps + this.#decodeUnits);
  }

  #typicalStepMs(): number | undefined {
    if (this.#stepMs.length === 0) return undefined;
    const recent = this.#stepMs.slice(-8).sort((a, b) => a - b);
    const m = recent.length >> 1;
    return recent.length % 2 ? recent[m] : (recent[m - 1] + recent[m]) / 2;
  }

  #withStep(p: ImageProgress, stepMs: number | undefined): ImageProgress {
    if (stepMs !== undefined) this.current = p = { ...p, stepMs };
    return p;
  }

  /** A step's time: the engine's own (stepUs) when it has one, else the time between the events. */
  #timeStep(e: { step: number; stepUs?: number }, now: number): number | undefined {
    let ms: number | undefined;
    if (e.stepUs !== undefined && e.stepUs > 0) ms = e.stepUs / 1000;
    else if (this.#lastStepAt !== undefined && e.step > 1) ms = now - this.#lastStepAt;
    // the first step also holds the graph's setup: not a typical step
    if (ms !== undefined && e.step > 1) this.#stepMs.push(ms);
    this.#lastStepAt = now;
    return e.stepUs !== undefined && e.stepUs > 0 ? ms : undefined;
  }

  #emit(stage: ImageStage, imageIndex: number, step: number, steps = this.#steps, tiles?: { tile: number; tiles: number }): ImageProgress {
    const mean = this.#typicalStepMs();
    const left = this.#totalUnits - this.#doneUnits;
    this.current = {
      stage,
      step,
      steps,
      imageIndex,
      imageCount: this.#count,
      // never backwards: a decode measured faster than its estimate shrinks the work still to do
      percent: Math.max(this.current.percent, Math.min(100, (this.#doneUnits / this.#totalUnits) * 100)),
      etaMs: mean === undefined ? undefined : Math.max(0, left * mean),
      ...tiles,
    };
    return this.current;
  }

  /** The progress after this event, or undefined for events that do not move it (previews). */
  update(e: EngineEvent): ImageProgress | undefined {
    const now = this.#now();
    switch (e.type) {
      case "stage":
        if (e.stage === "encoding") {
          this.#lastStepAt = now;
          return this.#emit("encoding", e.imageIndex, 0);
        }
        if (e.stage === "hires") {
          this.#sampledSteps = this.#count * this.#steps; // every first pass is done
          this.#doneUnits = 1 + this.#sampledSteps;
          this.#lastStepAt = now;
          return this.#emit("hires", e.imageIndex, 0, this.#hiresSteps);
        }
        this.#decodeStartedAt = now;
        return this.#emit("decoding", e.imageIndex, 0);
      case "step": {
        if (e.hires) {
          const stepMs = this.#timeStep(e, now);
          this.#hiresSampled = Math.max(this.#hiresSampled, e.imageIndex * this.#hiresSteps + Math.min(e.step, this.#hiresSteps));
          this.#doneUnits = 1 + this.#sampledSteps + this.#hiresSampled + this.#decodedImages * this.#decodeUnits;
          return this.#withStep(this.#emit("hires", e.imageIndex, e.step, e.steps), stepMs);
        }
        if (e.step === 1 && this.#doneUnits === 0) this.#doneUnits = 1; // encoding done
        const stepMs = this.#timeStep(e, now);
        this.#sampledSteps = Math.max(this.#sampledSteps, e.imageIndex * this.#steps + e.step);
        this.#doneUnits = 1 + this.#sampledSteps + this.#hiresSampled + this.#decodedImages * this.#decodeUnits;
        return this.#withStep(this.#emit("diffusion", e.imageIndex, e.step), stepMs);
      }
      case "decodeTile": {
        // the decode's share so far, before its time is known: tiles done / tiles of this image's decode units
        const part = Math.min(1, e.tile / Math.max(1, e.tiles));
        this.#doneUnits = Math.max(this.#doneUnits, 1 + this.#sampledSteps + this.#hiresSampled + (this.#decodedImages + part) * this.#decodeUnits);
        return this.#emit("decoding", e.imageIndex, 0, this.#steps, { tile: e.tile, tiles: e.tiles });
      }
      case "image": {
        const mean = this.#typicalStepMs();
        if (this.#decodeStartedAt !== undefined && mean) this.#decodeUnits = Math.max(0.1, (now - this.#decodeStartedAt) / mean);
        this.#decodedImages++;
        this.#sampledSteps = Math.max(this.#sampledSteps, (e.imageIndex + 1) * this.#steps);
        if (this.#hiresSteps) this.#hiresSampled = Math.max(this.#hiresSampled, (e.imageIndex + 1) * this.#hiresSteps);
        this.#doneUnits = 1 + this.#sampledSteps + this.#hiresSampled + this.#decodedImages * this.#decodeUnits;
        this.#decodeStartedAt = now;
        return this.#emit("decoding", e.imageIndex, 0);
      }
      default:
        return undefined;
    }
  }

  #decodedImages = 0;
  #sampledSteps = 0;
  #hiresSampled = 0;
}
