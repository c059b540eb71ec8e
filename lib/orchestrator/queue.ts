/**
 * JobQueue: one queue for all work, text and image.
 *
 * - Four priorities, highest first: immediate > interactive > preload > background;
 *   FIFO within a priority.
 * - Ageing: a pending job's effective level rises by one for every `ageingMs`
 *   it has waited (default 10 s), up to "immediate"; equal levels run in
 *   enqueue order. So a background job waits at most 3 × ageingMs before it
 *   ranks with immediate work, and is never starved.
 * - Per-engine concurrency: each job names an engine ("llm", "diffusion", …);
 *   at most `limits[engine]` (default 1) of its jobs run at once. A job whose
 *   engine is busy does not hold back jobs of other engines.
 * - Cancellation: a pending job is removed and its promise rejects with
 *   GenaiError ABORTED (status "cancelled"); a running job's AbortSignal is
 *   aborted and its run decides how to stop — if the run then rejects, the
 *   status is "cancelled", if it resolves anyway, "done".
 */
import { GenaiError, toGenaiError } from "../errors";

export type Priority = "immediate" | "interactive" | "preload" | "background";
/** Highest first. */
export const PRIORITIES: readonly Priority[] = ["immediate", "interactive", "preload", "background"];
const LEVEL: Record<Priority, number> = { immediate: 3, interactive: 2, preload: 1, background: 0 };

export type JobStatus = "pending" | "running" | "done" | "error" | "cancelled";

export interface QueuedJob<T> {
  readonly id: string;
  readonly engine: string;
  readonly priority: Priority;
  /** Settles with the run's result; rejects with a GenaiError (ABORTED when cancelled). */
  readonly promise: Promise<T>;
  readonly status: JobStatus;
  /** ms since epoch. */
  readonly enqueuedAt: number;
  readonly startedAt?: number;
  readonly endedAt?: number;
  /** The run's result once done. */
  readonly result?: T;
  /** The typed error once failed or cancelled. */
  readonly error?: GenaiError;
  /** 0-based place among pending jobs in the order they would start; -1 once started or ended. */
  position(): number;
  cancel(reason?: string): void;
  /** Called on every status change. */
  onStatus(listener: (job: QueuedJob<T>) => void): void;
}

export interface JobSpec<T> {
  engine: string;
  priority?: Priority;
  signal?: AbortSignal;
  run: (signal: AbortSignal) => Promise<T>;
}

export interface JobQueueOptions {
  /** Waiting time in ms per level gained (default 10 000). */
  ageingMs?: number;
  /** Most concurrent jobs per engine (default 1; Infinity allowed). */
  limits?: Record<string, number>;
  /** Clock in ms (tests). */
  now?: () => number;
}

let nextId = 1;

class Job<T> implements QueuedJob<T> {
  readonly id = `job-${nextId++}`;
  status: JobStatus = "pending";
  startedAt?: number;
  endedAt?: number;
  result?: T;
  error?: GenaiError;
  readonly promise: Promise<T>;
  readonly controller = new AbortController();
  resolve!: (v: T) => void;
  reject!: (e: unknown) => void;
  cancelRequested = false;
  listeners: ((job: QueuedJob<T>) => void)[] = [];

  constructor(
    readonly queue: JobQueue,
    readonly seq: number,
    readonly engine: string,
    readonly priority: Priority,
    readonly enqueuedAt: number,
    readonly run: (signal: AbortSignal) => Promise<T>,
  ) {
    this.promise = new Promise<T>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.promise.catch(() => undefined); // callers that never await a cancelled job: no unhandled rejection
  }

  position(): number {
    return this.queue.positionOf(this as unknown as Job<unknown>);
  }

  cancel(reason = "the job was cancelled"): void {
    this.queue.cancelJob(this as unknown as Job<unknown>, reason);
  }

  onStatus(listener: (job: QueuedJob<T>) => void): void {
    this.listeners.push(listener);
  }

  setStatus(s: JobStatus): void {
    this.status = s;
    for (const l of this.listeners) l(this);
  }
}

export class JobQueue {
  #pending: Job<unknown>[] = [];
  #running = new Set<Job<unknown>>();
  #runningPerEngine = new Map<string, number>();
  #seq = 0;
  #ageingMs: number;
  #limits: Record<string, number>;
  #now: () => number;
  #pumpScheduled = false;
  #idleWaiters: (() => void)[] = [];

  constructor(options: JobQueueOptions = {}) {
    this.#ageingMs = options.ageingMs ?? 10_000;
    if (!(this.#ageingMs > 0)) throw new GenaiError("INVALID_ARGUMENT", "ageingMs must be a positive number of ms");
    this.#limits = { ...(options.limits ?? {}) };
    this.#now = options.now ?? Date.now;
  }

  /** Adds a job; it starts asynchronously, never inside this call. */
  enqueue<T>(spec: JobSpec<T>): QueuedJob<T> {
    if (typeof spec?.run !== "function") throw new GenaiError("INVALID_ARGUMENT", "run must be a function");
    if (typeof spec.engine !== "string" || !spec.engine) throw new GenaiError("INVALID_ARGUMENT", "engine must be a non-empty string");
    const priority = spec.priority ?? "interactive";
    if (!(priority in LEVEL)) throw new GenaiError("INVALID_ARGUMENT", `priority must be one of ${PRIORITIES.join(", ")}`);
    const job = new Job<T>(this, this.#seq++, spec.engine, priority, this.#now(), spec.run);
    if (spec.signal?.aborted) {
      this.#finishCancelled(job as unknown as Job<unknown>, "the job was aborted before it was queued");
      return job;
    }
    spec.signal?.addEventListener("abort", () => job.cancel("the job was aborted"), { once: true });
    this.#pending.push(job as unknown as Job<unknown>);
    this.#schedulePump();
    return job;
  }

  pending(): number {
    return this.#pending.length;
  }

  running(): number {
    return this.#running.size;
  }

  /** Resolves when nothing is pending or running. */
  onIdle(): Promise<void> {
    if (this.#pending.length === 0 && this.#running.size === 0) return Promise.resolve();
    return new Promise((r) => this.#idleWaiters.push(r));
  }

  cancelAll(reason = "the queue was cancelled"): void {
    for (const j of [...this.#pending, ...this.#running]) this.cancelJob(j, reason);
  }

  #level(j: Job<unknown>, now: number): number {
    return Math.min(LEVEL.immediate, LEVEL[j.priority] + Math.floor((now - j.enqueuedAt) / this.#ageingMs));
  }

  #ordered(): Job<unknown>[] {
    const now = this.#now();
    return [...this.#pending].sort((a, b) => this.#level(b, now) - this.#level(a, now) || a.seq - b.seq);
  }

  /** @internal */
  positionOf(job: Job<unknown>): number {
    if (job.status !== "pending") return -1;
    return this.#ordered().indexOf(job);
  }

  /** @internal */
  cancelJob(j: Job<unknown>, reason: string): void {
    if (j.status === "pending") {
      this.#pending = this.#pending.filter((p) => p !== j);
      this.#finishCancelled(j, reason);
      this.#checkIdle();
    } else if (j.status === "running" && !j.cancelRequested) {
      j.cancelRequested = true;
      j.controller.abort(new GenaiError("ABORTED", reason));
    }
  }

  #finishCancelled(j: Job<unknown>, reason: string): void {
    j.error = new GenaiError("ABORTED", reason);
    j.endedAt = this.#now();
    j.setStatus("cancelled");
    j.reject(j.error);
  }

  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    queueMicrotask(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    for (const j of this.#ordered()) {
      const limit = this.#limits[j.engine] ?? 1;
      const busy = this.#runningPerEngine.get(j.engine) ?? 0;
      if (busy >= limit) continue;
      this.#pending = this.#pending.filter((p) => p !== j);
      this.#running.add(j);
      this.#runningPerEngine.set(j.engine, busy + 1);
      this.#start(j);
    }
  }

  #start(j: Job<unknown>): void {
    j.startedAt = this.#now();
    j.setStatus("running");
    let p: Promise<unknown>;
    try {
      p = Promise.resolve(j.run(j.controller.signal));
    } catch (e) {
      p = Promise.reject(e);
    }
    p.then(
      (v) => {
        j.result = v;
        j.endedAt = this.#now();
        j.setStatus("done");
        j.resolve(v);
      },
      (e: unknown) => {
        j.error = toGenaiError(e);
        j.endedAt = this.#now();
        j.setStatus(j.cancelRequested || j.error.code === "ABORTED" ? "cancelled" : "error");
        j.reject(j.error);
      },
    ).finally(() => {
      this.#running.delete(j);
      this.#runningPerEngine.set(j.engine, (this.#runningPerEngine.get(j.engine) ?? 1) - 1);
      this.#schedulePump();
      this.#checkIdle();
    });
  }

  #checkIdle(): void {
    if (this.#pending.length === 0 && this.#running.size === 0) for (const w of this.#idleWaiters.splice(0)) w();
  }
}
