/**
 * JobQueue: one queue for all work, text and image.
 *
 * Order. Four priorities, highest first: immediate > interactive > preload >
 * background (levels 3, 2, 1, 0); FIFO within a priority.
 *
 * Ageing (no starvation). A pending job's effective level is
 *
 *     min(3, level(priority) + floor(waitedMs / ageingMs))
 *
 * (`ageingMs` default 10 000 ms), and pending jobs are considered by effective
 * level, highest first, then by enqueue order (older first). So a background
 * job ranks with interactive work after 2 × ageingMs and with immediate work
 * after 3 × ageingMs; from then on only jobs enqueued before it can go ahead
 * of it, and it is never starved however much newer work arrives.
 *
 * Per-engine concurrency. Every job names an `engine` ("llm", "diffusion", a
 * model id, …); at most `limits[engine]` (default 1; `Infinity` allowed) of an
 * engine's jobs run at once. A job whose engine has no free slot is skipped,
 * not waited on: jobs of other engines behind it start.
 *
 * Starting. Jobs never start inside `enqueue()`: the queue starts what it can
 * in a microtask after each enqueue and after each job ends.
 *
 * Cancellation (`job.cancel()`, the job's `signal`, or `cancelAll()`):
 * - a pending job is removed at once: status "cancelled", its promise rejects
 *   with GenaiError ABORTED, and `run` is never called;
 * - an already-aborted `signal` gives such a cancelled job straight from
 *   `enqueue()`;
 * - a running job's AbortSignal (the one passed to `run`) is aborted with a
 *   GenaiError ABORTED as its reason; the run decides how to stop, and the
 *   job's promise settles with whatever the run returns or throws (thrown
 *   values become GenaiErrors, see `toGenaiError`). Status: "cancelled" if the
 *   run then rejects (with any error), "done" if it resolves anyway (e.g. an
 *   LLM stream that ends with stopReason "aborted": its partial result
 *   stands). A run that rejects with ABORTED without being cancelled is
 *   "cancelled" too; any other rejection is "error".
 *
 * The queue's own promises never cause unhandled rejections: each job's
 * promise has a handler attached, so a caller that never awaits a cancelled
 * or failed job is not reported.
 */
import { GenaiError, toGenaiError } from "../errors";
import { onAbort } from "../util/abort";
import { optFunction, optObject, optOneOf, optSignal, optionKeys, options, requireString } from "../util/validate";

import { DEFAULT_PRIORITY, PRIORITIES, PRIORITY_RANK as LEVEL, type Priority } from "./priority";
export { PRIORITIES, type Priority } from "./priority";
const TOP = LEVEL.immediate;

export type JobStatus = "pending" | "running" | "done" | "error" | "cancelled";

export interface JobSpec<T> {
  /** Engine whose concurrency limit applies, e.g. "llm", "diffusion" or a model id. */
  engine: string;
  /** Default "interactive". */
  priority?: Priority;
  /** Aborting it cancels the job (see the module notes); already aborted: the job is cancelled at once. */
  signal?: AbortSignal;
  /** The work. Called once, asynchronously, when the job starts; `signal` is aborted when the job is cancelled. */
  run: (signal: AbortSignal) => Promise<T>;
  /** Called just before `run`, once the job has a slot. A throw fails the job (status "error") without calling `run`. */
  onStart?(): void;
}

export interface QueuedJob<T> {
  /** Unique in this process, e.g. "job-12". */
  readonly id: string;
  readonly engine: string;
  readonly priority: Priority;
  /** Settles with the run's result, or rejects with a GenaiError (ABORTED when cancelled). Never reported as unhandled. */
  readonly promise: Promise<T>;
  readonly status: JobStatus;
  /** When it was enqueued / started / ended, ms from the queue's clock (`Date.now()` by default: ms since epoch). */
  readonly enqueuedAt: number;
  readonly startedAt?: number;
  readonly endedAt?: number;
  /** The run's result, once "done". */
  readonly result?: T;
  /** The typed error, once "error" or "cancelled". */
  readonly error?: GenaiError;
  /**
   * 0-based place among pending jobs in the order the queue considers them
   * (effective level, then enqueue order); -1 once started or ended. A job
   * whose engine is busy may be overtaken by jobs of other engines.
   */
  position(): number;
  /** Cancels the job (see the module notes); no effect once it has ended. */
  cancel(reason?: string): void;
  /** Calls `listener` after every status change; returns a function that removes it. Listener errors are reported as process warnings and otherwise ignored. */
  onStatus(listener: (job: QueuedJob<T>) => void): () => void;
}

export interface JobQueueOptions {
  /** Waiting time in ms for a pending job to gain one priority level (default 10 000; `Infinity` turns ageing off). */
  ageingMs?: number;
  /** Most concurrent jobs per engine: a positive integer or `Infinity` (engines not listed: 1). */
  limits?: Record<string, number>;
  /** Clock in ms (default `Date.now`); for tests. */
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
  readonly #listeners = new Set<(job: QueuedJob<T>) => void>();
  readonly #position: () => number;
  readonly #cancel: (reason: string) => void;

  constructor(
    readonly engine: string,
    readonly priority: Priority,
    readonly enqueuedAt: number,
    readonly promise: Promise<T>,
    ops: { position: () => number; cancel: (reason: string) => void },
  ) {
    this.#position = ops.position;
    this.#cancel = ops.cancel;
  }

  position(): number {
    return this.#position();
  }

  cancel(reason = "the job was cancelled"): void {
    this.#cancel(String(reason));
  }

  onStatus(listener: (job: QueuedJob<T>) => void): () => void {
    if (typeof listener !== "function") throw new GenaiError("INVALID_ARGUMENT", "listener must be a function");
    this.#listeners.add(listener);
    return () => void this.#listeners.delete(listener);
  }

  /** @internal */
  setStatus(status: JobStatus): void {
    this.status = status;
    for (const l of [...this.#listeners]) {
      try {
        l(this);
      } catch (e) {
        process.emitWarning(`a job status listener threw: ${e instanceof Error ? e.message : String(e)}`, { code: "GENAI_LISTENER_ERROR" });
      }
    }
  }
}

/** The queue's bookkeeping for one job. */
interface Entry {
  job: Job<unknown>;
  seq: number;
  run: (signal: AbortSignal) => Promise<unknown>;
  onStart?: () => void;
  controller: AbortController;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  cancelRequested: boolean;
  detachSignal?: () => void;
}

function limitValue(engine: string, v: unknown): number {
  if (v === Infinity || (typeof v === "number" && Number.isInteger(v) && v >= 1)) return v;
  throw new GenaiError("INVALID_ARGUMENT", `limits.${engine} must be a positive integer or Infinity (got ${String(v)})`);
}

export class JobQueue {
  #pending: Entry[] = [];
  #running = new Set<Entry>();
  #busy = new Map<string, number>();
  #limits = new Map<string, number>();
  #seq = 0;
  #ageingMs: number;
  #now: () => number;
  #pumpScheduled = false;
  #idleWaiters: (() => void)[] = [];

  /** @throws GenaiError INVALID_ARGUMENT for a bad option */
  constructor(opts: JobQueueOptions = {}) {
    const o = options("options", opts, optionKeys<JobQueueOptions>()("ageingMs", "limits", "now"));
    const ageing = o.ageingMs ?? 10_000;
    if (!(typeof ageing === "number" && ageing > 0))
      throw new GenaiError("INVALID_ARGUMENT", `ageingMs must be a positive number of ms or Infinity (got ${String(ageing)})`);
    this.#ageingMs = ageing;
    for (const [engine, v] of Object.entries(optObject("limits", o.limits))) this.#limits.set(engine, limitValue(engine, v));
    this.#now = optFunction<() => number>("now", o.now) ?? Date.now;
  }

  /**
   * Adds a job. It starts asynchronously (never inside this call) when it is
   * the first pending job, in priority-with-ageing order, whose engine has a
   * free slot.
   * @throws GenaiError INVALID_ARGUMENT for a bad spec (missing run, empty engine, unknown priority, …)
   */
  enqueue<T>(spec: JobSpec<T>): QueuedJob<T> {
    const s = options("spec", spec, optionKeys<JobSpec<T>>()("engine", "priority", "signal", "run", "onStart"));
    const engine = requireString("engine", s.engine);
    if (!engine) throw new GenaiError("INVALID_ARGUMENT", "engine must be a non-empty string");
    const priority = optOneOf("priority", s.priority, PRIORITIES, DEFAULT_PRIORITY);
    const signal = optSignal("signal", s.signal);
    const run = optFunction<(signal: AbortSignal) => Promise<T>>("run", s.run);
    if (!run) throw new GenaiError("INVALID_ARGUMENT", "run must be a function");
    const onStart = optFunction<() => void>("onStart", s.onStart);

    let resolve!: (v: unknown) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<T>((res, rej) => {
      resolve = res as (v: unknown) => void;
      reject = rej;
    });
    promise.catch(() => undefined); // a caller that never awaits a cancelled job gets no unhandled rejection
    let entry!: Entry;
    const job = new Job<T>(engine, priority, this.#now(), promise, {
      position: () => this.#positionOf(entry),
      cancel: (reason) => this.#cancel(entry, reason),
    });
    entry = {
      job: job as Job<unknown>,
      seq: this.#seq++,
      run,
      onStart: onStart?.bind(spec),
      controller: new AbortController(),
      resolve,
      reject,
      cancelRequested: false,
    };

    if (signal?.aborted) {
      this.#finishCancelled(entry, "the job's signal was aborted before it was queued", signal.reason);
      return job;
    }
    if (signal) entry.detachSignal = onAbort(signal, () => this.#cancel(entry, "the job's signal was aborted", signal.reason));
    this.#pending.push(entry);
    this.#schedulePump();
    return job;
  }

  /** Jobs waiting to start. */
  pending(): number {
    return this.#pending.length;
  }

  /** Jobs started and not yet ended. */
  running(): number {
    return this.#running.size;
  }

  /** Resolves when nothing is pending or running (at once if so now). Never rejects. */
  onIdle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((r) => this.#idleWaiters.push(r));
  }

  /** Cancels every pending job, then every running one (see the module notes). */
  cancelAll(reason = "the queue was cancelled"): void {
    for (const e of [...this.#pending]) this.#cancel(e, reason);
    for (const e of [...this.#running]) this.#cancel(e, reason);
  }

  #level(e: Entry, now: number): number {
    return Math.min(TOP, LEVEL[e.job.priority] + Math.floor(Math.max(0, now - e.job.enqueuedAt) / this.#ageingMs));
  }

  /** Pending entries in the order they are considered. */
  #ordered(): Entry[] {
    const now = this.#now();
    const levels = new Map(this.#pending.map((e) => [e, this.#level(e, now)]));
    return [...this.#pending].sort((a, b) => levels.get(b)! - levels.get(a)! || a.seq - b.seq);
  }

  #positionOf(e: Entry): number {
    return e.job.status === "pending" ? this.#ordered().indexOf(e) : -1;
  }

  #cancel(e: Entry, reason: string, cause?: unknown): void {
    if (e.job.status === "pending") {
      this.#pending.splice(this.#pending.indexOf(e), 1);
      this.#finishCancelled(e, reason, cause);
      this.#checkIdle();
    } else if (e.job.status === "running" && !e.cancelRequested) {
      e.cancelRequested = true;
      e.controller.abort(new GenaiError("ABORTED", reason, cause === undefined ? undefined : { cause }));
    }
  }

  #finishCancelled(e: Entry, reason: string, cause?: unknown): void {
    e.detachSignal?.();
    const job = e.job;
    job.error = new GenaiError("ABORTED", reason, cause === undefined ? undefined : { cause });
    job.endedAt = this.#now();
    job.setStatus("cancelled");
    e.reject(job.error);
  }

  #schedulePump(): void {
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    queueMicrotask(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #limitOf(engine: string): number {
    return this.#limits.get(engine) ?? 1;
  }

  #pump(): void {
    for (const e of this.#ordered()) {
      if (e.job.status !== "pending") continue; // cancelled by a run or listener earlier in this pass
      const engine = e.job.engine;
      const busy = this.#busy.get(engine) ?? 0;
      if (busy >= this.#limitOf(engine)) continue; // skip: other engines' jobs behind it may start
      this.#pending.splice(this.#pending.indexOf(e), 1);
      this.#running.add(e);
      this.#busy.set(engine, busy + 1);
      this.#start(e);
    }
  }

  #start(e: Entry): void {
    const job = e.job;
    job.startedAt = this.#now();
    job.setStatus("running");
    let p: Promise<unknown>;
    try {
      e.onStart?.();
      p = Promise.resolve(e.run(e.controller.signal));
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (v) => this.#settle(e, true, v),
      (err: unknown) => this.#settle(e, false, err),
    ).catch(() => undefined);
  }

  /** Frees the slot before settling the job's promise, so a caller that awaits it sees the queue already updated. */
  #settle(e: Entry, ok: boolean, value: unknown): void {
    const job = e.job;
    this.#running.delete(e);
    const busy = (this.#busy.get(job.engine) ?? 1) - 1;
    if (busy > 0) this.#busy.set(job.engine, busy);
    else this.#busy.delete(job.engine);
    e.detachSignal?.();
    job.endedAt = this.#now();
    if (ok) {
      job.result = value;
      job.setStatus("done");
      e.resolve(value);
    } else {
      const err = toGenaiError(value);
      job.error = err;
      job.setStatus(e.cancelRequested || err.code === "ABORTED" ? "cancelled" : "error");
      e.reject(err);
    }
    if (this.#pending.length > 0) this.#schedulePump();
    this.#checkIdle();
  }

  #isIdle(): boolean {
    return this.#pending.length === 0 && this.#running.size === 0;
  }

  #checkIdle(): void {
    if (this.#isIdle()) for (const w of this.#idleWaiters.splice(0)) w();
  }
}
