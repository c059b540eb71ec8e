/** The queue's public types (JobQueue, queue.ts: the rules are in its module notes) and its job object. */
import { GenaiError } from "../errors";
import type { Priority } from "./priority";

export type JobStatus = "pending" | "running" | "done" | "error" | "cancelled";

export interface QueuedJob<T> {
  /** Unique in this process, e.g. "job-12". */
  readonly id: string;
  readonly engine: string;
  readonly priority: Priority;
  /** Settles with the run's result, or rejects with a GenaiError (ABORTED when cancelled). Never reported as unhandled. */
  readonly promise: Promise<T>;
  readonly status: JobStatus;
  /** When it was enqueued / first started / ended, ms from the queue's clock (`Date.now()` by default: ms since epoch). */
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

/** What a running job's `run` can do besides its work (its second argument). */
export interface RunControl {
  /**
   * Gives the job's engine slot back and waits for its turn again (see
   * "Yielding" in the module notes): status "pending" meanwhile, "running"
   * again when this resolves.
   * @throws GenaiError ABORTED (rejects) when the job is cancelled before or while it waits
   */
  yield(): Promise<void>;
}

export interface JobSpec<T> {
  /** Engine whose concurrency limit applies, e.g. "llm", "diffusion" or a model id. */
  engine: string;
  /** Default "interactive". */
  priority?: Priority;
  /** Aborting it cancels the job (see the module notes); already aborted: the job is cancelled at once. */
  signal?: AbortSignal;
  /**
   * The work. Called once, asynchronously, when the job starts; `signal` is
   * aborted when the job is cancelled; `control.yield()` gives the slot back
   * between units of work (see the module notes).
   */
  run: (signal: AbortSignal, control: RunControl) => Promise<T>;
  /** Called just before `run`, once the job has a slot. A throw fails the job (status "error") without calling `run`. */
  onStart?(): void;
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

/** @internal the queue's implementation of QueuedJob */
export class Job<T> implements QueuedJob<T> {
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
