/**
 * The orchestrator: one priority queue for all work, a memory ledger per
 * device, and free/restore of idle resources when a job needs their memory.
 *
 * Eviction order when a job's resource does not fit its device budget (only
 * resources that are idle, hold memory on a short device, and whose priority
 * is not above the job's are candidates):
 *   1. free contexts (KV state copied to host memory) — lowest priority
 *      first, least recently used first among equals;
 *   2. then unload weights, in the same order.
 * If the job still does not fit, it fails with OUT_OF_MEMORY and nothing it
 * freed is lost (freed resources restore on their next use).
 *
 * Waiting for memory. A job that does not fit now, but would once running
 * jobs stop using resources it may free (in use, priority not above its
 * own), waits for them instead of failing: it takes no memory meanwhile,
 * tries again each time a job releases its resource, and emits "wait"
 * (WaitEvent) each time it starts waiting. OUT_OF_MEMORY is left for what
 * would not fit even then. Restore follow-ups never wait.
 *
 * Preemption. A running job whose work comes in units (the images of a
 * batch) asks `control.shouldYield()` between units: true while a job of a
 * higher priority (its own, not aged; restore follow-ups do not count) waits
 * for its engine slot or for memory its resource holds. `control.yield()`
 * then releases the resource, gives the slot back, lets those jobs go first,
 * and makes the resource resident again when the job's turn comes back (see
 * JobControl). The job stays one queue job and one registry record; what was
 * freed for it is restored after it ends, not at each yield.
 *
 * After the job, each resource freed for it is restored by a follow-up job at
 * that resource's own priority (so queued work of the same priority, such as
 * the next image of a batch, runs first).
 */
import { EventEmitter } from "node:events";
import { GenaiError } from "../errors";
import { optionKeys, options as validOptions } from "../util/validate";
import { defaultBudgets } from "./budget";
import type { LedgerDevice, YieldEvent } from "./events";
import { MemoryPlanner } from "./memory";
import { DEFAULT_PRIORITY, PRIORITY_RANK as RANK, type Priority } from "./priority";
import { JobQueue, type QueuedJob } from "./queue";
import { JobRegistry } from "./registry";
import type { Holding, ManagedResource } from "./resource";

export type { LedgerDevice, OffloadEvent, ReserveEvent, RestoreEvent, WaitEvent, YieldEvent } from "./events";

export interface OrchestratorOptions {
  /**
   * Memory budget per device in bytes. Default: each ggml device's free memory
   * at construction minus a safety padding of min(8 % of its total, 1.6 GB)
   * (node-llama-cpp's padding).
   */
  budgets?: Record<string, number>;
  /** Restore freed resources after the job that needed their memory (default true). */
  restoreAfterJob?: boolean;
  /** Queue options: waiting time (ms) per priority level gained, concurrent jobs per engine. */
  queue?: { ageingMs?: number; limits?: Record<string, number> };
  /** Registry options: how long finished jobs are kept (ms), sweep interval (ms), bounds. */
  registry?: ConstructorParameters<typeof JobRegistry>[0];
}

export interface SubmitOptions<T> {
  /** Job kind for the registry, e.g. "llm.complete", "image". */
  kind: string;
  /** The resource the job uses; it is made resident first and is not freed while the job runs. */
  resource?: ManagedResource;
  /** Engine for the queue's concurrency limit (default the resource's engine, else "default"). */
  engine?: string;
  priority?: Priority;
  /** Extra memory the job needs while it runs (bytes per device), beyond its resource's. */
  memory?: Holding[];
  signal?: AbortSignal;
  /**
   * The work. `signal` aborts when the job is cancelled; `control` lets work
   * made of units (the images of a batch) give way between two units to a
   * job of a higher priority (see JobControl).
   */
  run: (signal: AbortSignal, control: JobControl) => Promise<T>;
}

/** What a running job can do between units of its work (SubmitOptions.run's second argument). */
export interface JobControl {
  /**
   * Whether a job of a higher priority than this one's (own priorities, not
   * aged; restore follow-ups do not count) waits for it: pending for its
   * engine while the engine has no free slot, or waiting for memory that its
   * resource holds. Cheap: call it as often as needed (e.g. every step).
   */
  shouldYield(): boolean;
  /**
   * When shouldYield() holds: releases the job's resource and extra memory
   * (the waiting jobs may free them), gives its engine slot back, waits for
   * its turn again (queue status "pending" meanwhile; "running" while it then
   * waits for memory), makes its resource resident again — with the eviction
   * rights of the highest priority it gave way to, so that it can take back
   * memory those jobs took — and resolves true. Otherwise resolves false at once.
   * @throws GenaiError ABORTED when the job is cancelled meanwhile, OUT_OF_MEMORY when its resource no longer fits
   */
  yield(): Promise<boolean>;
}

export class Orchestrator extends EventEmitter {
  readonly queue: JobQueue;
  readonly registry: JobRegistry;
  readonly #memory: MemoryPlanner;
  #restoreAfterJob: boolean;
  #restoreJobs = new Set<string>();

  constructor(opts: OrchestratorOptions = {}) {
    super();
    const options = validOptions("options", opts, optionKeys<OrchestratorOptions>()("budgets", "restoreAfterJob", "queue", "registry")) as OrchestratorOptions;
    if (options.queue !== undefined) validOptions("queue", options.queue, ["ageingMs", "limits"]);
    this.queue = new JobQueue({ ageingMs: options.queue?.ageingMs, limits: options.queue?.limits });
    this.registry = new JobRegistry(options.registry);
    this.#restoreAfterJob = options.restoreAfterJob ?? true;
    if (options.budgets) {
      for (const [d, b] of Object.entries(options.budgets)) {
        if (!Number.isFinite(b) || b < 0) throw new GenaiError("INVALID_ARGUMENT", `budget for ${d} must be a non-negative number of bytes`);
      }
    }
    const budgets = new Map(Object.entries(options.budgets ?? defaultBudgets()));
    this.#memory = new MemoryPlanner(budgets, (event, payload) => this.emit(event, payload));
  }

  /** Registers a resource; `priority` decides its place in the eviction order (default DEFAULT_PRIORITY, "interactive"). */
  add(resource: ManagedResource, opts: { priority?: Priority } = {}): void {
    const options = validOptions("options", opts, ["priority"]) as { priority?: Priority };
    if (this.#memory.resources.has(resource.id)) throw new GenaiError("INVALID_ARGUMENT", `a resource with id ${resource.id} is already registered`);
    this.#memory.resources.set(resource.id, { resource, priority: options.priority ?? DEFAULT_PRIORITY });
  }

  remove(resource: ManagedResource): void {
    this.#memory.resources.delete(resource.id);
  }

  /** Per device: budget, bytes in use, and who holds them. */
  ledger(): LedgerDevice[] {
    return this.#memory.ledger();
  }

  /**
   * Queues a job. It starts when its priority's turn comes and its engine has
   * a free slot; then its resource is made resident (freeing others if needed,
   * waiting for resources in use if that is what it takes) and `run` is called.
   * @returns the queued job: id (also the registry id), promise, position(), cancel().
   */
  submit<T>(spec: SubmitOptions<T>): QueuedJob<T> {
    return this.#submit(spec, false);
  }

  #submit<T>(specIn: SubmitOptions<T>, restoreJob: boolean): QueuedJob<T> {
    const spec = validOptions(
      "spec",
      specIn,
      optionKeys<SubmitOptions<T>>()("kind", "resource", "engine", "priority", "memory", "signal", "run"),
    ) as unknown as SubmitOptions<T>;
    const priority = spec.priority ?? DEFAULT_PRIORITY;
    const engine = spec.engine ?? spec.resource?.engine ?? "default";
    const resource = spec.resource;
    const restoreAfter = !restoreJob && this.#restoreAfterJob;
    let job!: QueuedJob<T>;
    job = this.queue.enqueue<T>({
      engine,
      priority,
      signal: spec.signal,
      run: async (signal, queue) => {
        const freed: ManagedResource[] = [];
        let evict = priority; // eviction rights, raised by a yield to the priority given way to
        let held = false;
        let t0 = 0;
        const hold = async () => {
          const req = { job: job.id, resource, extra: spec.memory ?? [], priority, evict, mayWait: !restoreJob, signal };
          for (const r of await this.#memory.hold(req)) if (!freed.includes(r)) freed.push(r);
          held = true;
          t0 = performance.now();
        };
        const release = () => {
          held = false;
          this.#memory.release(job.id, resource, performance.now() - t0);
        };
        const control: JobControl = {
          shouldYield: () => held && this.#preemptor(engine, priority, resource) !== undefined,
          yield: async () => {
            const to = held ? this.#preemptor(engine, priority, resource) : undefined;
            if (to === undefined) return false;
            if (RANK[to] > RANK[evict]) evict = to;
            release();
            this.emit("yield", { job: job.id, to } satisfies YieldEvent);
            await queue.yield();
            await hold();
            return true;
          },
        };
        await hold();
        try {
          if (signal.aborted) throw new GenaiError("ABORTED", "the job was cancelled");
          return await spec.run(signal, control);
        } finally {
          if (held) release();
          if (restoreAfter) this.#scheduleRestores(freed);
        }
      },
    });
    if (restoreJob) {
      this.#restoreJobs.add(job.id);
      const drop = () => void this.#restoreJobs.delete(job.id);
      job.promise.then(drop, drop);
    }
    this.registry.track(job, spec.kind);
    return job;
  }

  /** The highest priority above `priority` waiting for `engine`'s slot or for memory `resource` holds, if any. */
  #preemptor(engine: string, priority: Priority, resource: ManagedResource | undefined): Priority | undefined {
    let top: Priority | undefined;
    const consider = (p: Priority) => {
      if (RANK[p] > RANK[priority] && (top === undefined || RANK[p] > RANK[top])) top = p;
    };
    for (const j of this.queue.waitingAbove(engine, priority)) if (!this.#restoreJobs.has(j.id)) consider(j.priority);
    if (resource) for (const p of this.#memory.waitingFor(resource)) consider(p);
    return top;
  }

  #scheduleRestores(freed: ManagedResource[]): void {
    for (const r of [...freed].reverse()) {
      const entry = this.#memory.resources.get(r.id);
      if (!entry || r.residency === "resident") continue;
      // a restore does not in turn restore what it frees (no ping-pong between two resources)
      const job = this.#submit({ kind: "restore", resource: r, priority: entry.priority, run: async () => undefined }, true);
      job.promise.catch(() => undefined); // a restore that does not fit waits for the resource's next use
    }
  }

  /** Cancels queued and running jobs and stops the registry's sweeps. Resources stay as they are. */
  dispose(): void {
    this.queue.cancelAll();
    this.registry.dispose();
  }
}
