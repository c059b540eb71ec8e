/** ImageJob: one image generation's status, progress and preview events, result and cancellation. */
import { EventEmitter } from "node:events";
import type { EngineCancelToken } from "./engine";
import type { GeneratedImage, ImageJobStatus, ImageProgress } from "./types";

let jobCounter = 0;

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
      if (this.#cancelMode !== "all") this.#cancelListeners.push(listener); // a "newLatents" may become "all"
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
   * Stops the job within one sampling step (on the CPU backend within about
   * 50 ms, in any stage: README "Images"). With `mode: "newLatents"` the
   * current image is finished first; a later cancel("all") still stops it
   * within one step. A job still waiting its turn never starts.
   */
  cancel(mode: "all" | "newLatents" = "all"): void {
    if (this.status === "done" || this.status === "error" || this.status === "cancelled") return;
    if (this.#cancelMode === "all" || this.#cancelMode === mode) return;
    this.#cancelMode = mode;
    (this.cancelToken as { mode: typeof mode }).mode = mode;
    for (const l of [...this.#cancelListeners]) l(mode);
  }

  /** @internal */
  get cancelRequested(): boolean {
    return this.#cancelMode !== undefined;
  }
}
