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
 * in a microtask after each enqueue and after each job ends or yields.
 *
 * Yielding (preemption at the job's own safe points). A running job may give
 * its engine slot back through `control.yield()` (the second argument of
 * `run`), typically when {@link JobQueue.waitingAbove} shows a job of a higher
 * priority waiting for its engine: it becomes "pending" again, ranked by its
 * own priority with ageing counted from the yield, and ahead of every job of
 * its level enqueued after it (it keeps its enqueue order); `yield()` resolves
 * when it is started again ("running"; `startedAt` stays the first start).
 * `run` is not called again: the same call goes on.
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
 *   "cancelled" too; any other rejection is "error";
 * - a job that yielded and waits to go on is cancelled like a running one:
 *   it leaves the pending jobs, its signal is aborted, its `yield()` rejects
 *   with ABORTED, and it settles with what its run then returns or throws.
 *
 * The queue's own promises never cause unhandled rejections: each job's
 * promise has a handler attached, so a caller that never awaits a cancelled
 * or failed job is not reported.
 */
import { GenaiError, toGenaiError } from "../errors";
import { onAbort } from "../util/abort";
import { optFunction, optObject, optOneOf, optSignal, optionKeys, options, requireString } from "../util/validate";

import { DEFAULT_PRIORITY, PRIORITIES, PRIORITY_RANK as LEVEL, type Priority } from "./priority";
import { Job, type JobQueueOptions, type JobSpec, type QueuedJob, type RunControl } from "./queue-job";
export { PRIORITIES, type Priority } from "./priority";
const TOP = LEVEL.immediate;

export type { JobQueueOptions, JobSpec, JobStatus, QueuedJob, RunControl } from "./queue-job";

/** The queue's bookkeeping for one job. */
interface Entry {
  job: Job<unknown>;
  seq: number;
  run: (signal: AbortSignal, control: RunControl) => Promise<unknown>;
  onStart?: () => void;
  controller: AbortController;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  cancelRequested: boolean;
  detachSignal?: () => void;
  /** Whether it counts against its engine's limit now (running, not yielded). */
  holdsSlot: boolean;
  /** When it last started waiting (ms, the queue's clock): enqueue, or its latest yield; ageing counts from here. */
  waitFrom: number;
  /** Set while it has yielded and waits to go on. */
  resume?: { resolve: () => void; reject: (e: unknown) => void };
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
    const run = optFunction<(signal: AbortSignal, control: RunControl) => Promise<T>>("run", s.run);
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
      holdsSlot: false,
      waitFrom: job.enqueuedAt,
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

  /**
   * Pending jobs of `engine` whose own priority (not aged) ranks above
   * `priority`, in the order they are considered — none while the engine has
   * a free slot (they start by themselves). What a running job of a lower
   * priority checks before it yields.
   * @throws GenaiError INVALID_ARGUMENT for an unknown priority
   */
  waitingAbove(engine: string, priority: Priority): QueuedJob<unknown>[] {
    if ((this.#busy.get(engine) ?? 0) < this.#limitOf(engine)) return [];
    const rank = LEVEL[optOneOf("priority", priority, PRIORITIES, DEFAULT_PRIORITY)];
    return this.#ordered()
      .filter((e) => e.job.engine === engine && LEVEL[e.job.priority] > rank)
      .map((e) => e.job);
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
    return Math.min(TOP, LEVEL[e.job.priority] + Math.floor(Math.max(0, now - e.waitFrom) / this.#ageingMs));
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
    if (e.resume && !e.cancelRequested) {
      // yielded: out of the pending jobs; its run is told and settles the job
      const i = this.#pending.indexOf(e);
      if (i >= 0) this.#pending.splice(i, 1);
      e.cancelRequested = true;
      const err = new GenaiError("ABORTED", reason, cause === undefined ? undefined : { cause });
      e.controller.abort(err);
      const { reject } = e.resume;
      e.resume = undefined;
      reject(err);
    } else if (e.job.status === "pending" && !e.resume) {
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
      e.holdsSlot = true;
      if (e.resume) this.#resume(e);
      else this.#start(e);
    }
  }

  #start(e: Entry): void {
    const job = e.job;
    job.startedAt = this.#now();
    job.setStatus("running");
    let p: Promise<unknown>;
    try {
      e.onStart?.();
      p = Promise.resolve(e.run(e.controller.signal, { yield: () => this.#yield(e) }));
    } catch (err) {
      p = Promise.reject(err);
    }
    p.then(
      (v) => this.#settle(e, true, v),
      (err: unknown) => this.#settle(e, false, err),
    ).catch(() => undefined);
  }

  #freeSlot(e: Entry): void {
    this.#running.delete(e);
    if (!e.holdsSlot) return;
    e.holdsSlot = false;
    const busy = (this.#busy.get(e.job.engine) ?? 1) - 1;
    if (busy > 0) this.#busy.set(e.job.engine, busy);
    else this.#busy.delete(e.job.engine);
  }

  #yield(e: Entry): Promise<void> {
    if (e.cancelRequested) return Promise.reject(e.controller.signal.reason);
    if (!e.holdsSlot || e.resume) return Promise.reject(new GenaiError("INVALID_ARGUMENT", "yield() was called while the job was not running"));
    this.#freeSlot(e);
    e.waitFrom = this.#now();
    const p = new Promise<void>((resolve, reject) => (e.resume = { resolve, reject }));
    this.#pending.push(e);
    e.job.setStatus("pending");
    this.#schedulePump();
    return p;
  }

  #resume(e: Entry): void {
    const resume = e.resume;
    e.resume = undefined;
    e.job.setStatus("running");
    resume?.resolve();
  }

  /** Frees the slot before settling the job's promise, so a caller that awaits it sees the queue already updated. */
  #settle(e: Entry, ok: boolean, value: unknown): void {
    const job = e.job;
    this.#freeSlot(e);
    const i = this.#pending.indexOf(e); // a run that ended without awaiting its yield()
    if (i >= 0) this.#pending.splice(i, 1);
    e.resume = undefined;
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
