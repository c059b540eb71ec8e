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
 * After the job, each resource freed for it is restored by a follow-up job at
 * that resource's own priority (so queued work of the same priority, such as
 * the next image of a batch, runs first).
 */
import { EventEmitter } from "node:events";
import { GenaiError } from "../errors";
import { optionKeys, options as validOptions } from "../util/validate";
import { systemInfo } from "../system/index";
import { defaultBudgets } from "./budget";
import { DEFAULT_PRIORITY, PRIORITY_RANK as RANK, type Priority } from "./priority";
import { JobQueue, type QueuedJob } from "./queue";
import { JobRegistry } from "./registry";
import { bytesByDevice, type Holding, type ManagedResource, type Residency } from "./resource";

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
  run: (signal: AbortSignal) => Promise<T>;
}

export interface OffloadEvent {
  resource: string;
  level: Exclude<Residency, "resident">;
  /** Bytes freed per device. */
  bytes: Record<string, number>;
  ms: number;
  /** The job the memory was freed for. */
  forJob?: string;
}

export interface RestoreEvent {
  resource: string;
  /** Bytes taken per device (the engine's own allocation sizes). */
  bytes: Record<string, number>;
  /** How much each device's reported free memory dropped meanwhile (ggml's free/total; mmap'd weights show little on CPU). */
  deviceFreeDrop: Record<string, number>;
  ms: number;
}

export interface ReserveEvent {
  job: string;
  /** Bytes per device the job holds while it runs (its resource and extra memory). */
  bytes: Record<string, number>;
  /** reserve: time spent making room and restoring (ms); release: the job's run time (ms). */
  ms: number;
}

export interface LedgerDevice {
  device: string;
  /** Budget in bytes. */
  budget: number;
  /** Bytes held by resources and running jobs' extra memory. */
  used: number;
  holders: { id: string; kind: string; bytes: number }[];
}

function toRecord(m: Map<string, number>): Record<string, number> {
  return Object.fromEntries(m);
}

/** Free bytes per ggml device (what the device reports, not the ledger). */
function deviceFree(): Map<string, number> {
  return new Map(systemInfo().devices.map((d) => [d.name, d.freeBytes]));
}

function diff(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const d of new Set([...before.keys(), ...after.keys()])) {
    const v = (before.get(d) ?? 0) - (after.get(d) ?? 0);
    if (v !== 0) out.set(d, v);
  }
  return out;
}

export class Orchestrator extends EventEmitter {
  readonly queue: JobQueue;
  readonly registry: JobRegistry;
  #budgets: Map<string, number>;
  #resources = new Map<string, { resource: ManagedResource; priority: Priority }>();
  #extra = new Map<string, Holding[]>(); // running jobs' extra memory
  #memoryLock: Promise<void> = Promise.resolve();
  #restoreAfterJob: boolean;

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
      this.#budgets = new Map(Object.entries(options.budgets));
    } else {
      this.#budgets = new Map(Object.entries(defaultBudgets()));
    }
  }

  /** Registers a resource; `priority` decides its place in the eviction order (default DEFAULT_PRIORITY, "interactive"). */
  add(resource: ManagedResource, opts: { priority?: Priority } = {}): void {
    const options = validOptions("options", opts, ["priority"]) as { priority?: Priority };
    if (this.#resources.has(resource.id)) throw new GenaiError("INVALID_ARGUMENT", `a resource with id ${resource.id} is already registered`);
    this.#resources.set(resource.id, { resource, priority: options.priority ?? DEFAULT_PRIORITY });
  }

  remove(resource: ManagedResource): void {
    this.#resources.delete(resource.id);
  }

  /** Per device: budget, bytes in use, and who holds them. */
  ledger(): LedgerDevice[] {
    const devices = new Map<string, LedgerDevice>();
    const get = (d: string) => {
      let e = devices.get(d);
      if (!e) {
        e = { device: d, budget: this.#budgets.get(d) ?? Infinity, used: 0, holders: [] };
        devices.set(d, e);
      }
      return e;
    };
    for (const d of this.#budgets.keys()) get(d);
    for (const { resource } of this.#resources.values()) {
      for (const h of resource.holdings()) {
        const e = get(h.device);
        e.used += h.bytes;
        e.holders.push({ id: resource.id, kind: h.kind, bytes: h.bytes });
      }
    }
    for (const [job, hs] of this.#extra) {
      for (const h of hs) {
        const e = get(h.device);
        e.used += h.bytes;
        e.holders.push({ id: job, kind: h.kind, bytes: h.bytes });
      }
    }
    return [...devices.values()];
  }

  /**
   * Queues a job. It starts when its priority's turn comes and its engine has
   * a free slot; then its resource is made resident (freeing others if needed)
   * and `run` is called.
   * @returns the queued job: id (also the registry id), promise, position(), cancel().
   */
  submit<T>(spec: SubmitOptions<T>): QueuedJob<T> {
    return this.#submit(spec, this.#restoreAfterJob);
  }

  #submit<T>(specIn: SubmitOptions<T>, restoreAfter: boolean): QueuedJob<T> {
    const spec = validOptions(
      "spec",
      specIn,
      optionKeys<SubmitOptions<T>>()("kind", "resource", "engine", "priority", "memory", "signal", "run"),
    ) as unknown as SubmitOptions<T>;
    const priority = spec.priority ?? DEFAULT_PRIORITY;
    const engine = spec.engine ?? spec.resource?.engine ?? "default";
    let job!: QueuedJob<T>;
    job = this.queue.enqueue<T>({
      engine,
      priority,
      signal: spec.signal,
      run: async (signal) => {
        const freed = await this.#prepare(job.id, spec.resource, spec.memory ?? [], priority);
        const t0 = performance.now();
        try {
          if (signal.aborted) throw new GenaiError("ABORTED", "the job was cancelled");
          return await spec.run(signal);
        } finally {
          spec.resource?.setInUse(false);
          const extra = this.#extra.get(job.id);
          this.#extra.delete(job.id);
          this.emit("release", {
            job: job.id,
            bytes: toRecord(bytesByDevice([...(spec.resource?.holdings() ?? []), ...(extra ?? [])])),
            ms: performance.now() - t0,
          } satisfies ReserveEvent);
          if (restoreAfter) this.#scheduleRestores(freed);
        }
      },
    });
    this.registry.track(job, spec.kind);
    return job;
  }

  /** Serializes memory planning: one job at a time frees/restores. */
  async #withMemoryLock<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.#memoryLock;
    let unlock!: () => void;
    this.#memoryLock = new Promise<void>((r) => (unlock = r));
    await prev;
    try {
      return await fn();
    } finally {
      unlock();
    }
  }

  /** Makes `resource` resident and reserves `extra`, freeing others as needed. Returns what was freed. */
  #prepare(jobId: string, resource: ManagedResource | undefined, extra: Holding[], priority: Priority): Promise<ManagedResource[]> {
    return this.#withMemoryLock(async () => {
      const t0 = performance.now();
      const need: Holding[] = [...extra];
      if (resource && resource.residency !== "resident") {
        const now = bytesByDevice(resource.holdings());
        for (const [d, b] of bytesByDevice(resource.residentHoldings())) need.push({ device: d, kind: "weights", bytes: Math.max(0, b - (now.get(d) ?? 0)) });
      }
      const freed = await this.#makeRoom(need, priority, resource, jobId);
      if (resource && resource.residency !== "resident") await this.#restore(resource);
      resource?.setInUse(true);
      if (extra.length) this.#extra.set(jobId, extra);
      this.emit("reserve", {
        job: jobId,
        bytes: toRecord(bytesByDevice([...(resource?.holdings() ?? []), ...extra])),
        ms: performance.now() - t0,
      } satisfies ReserveEvent);
      return freed;
    });
  }

  #shortfall(need: Holding[]): Map<string, number> {
    const used = new Map(this.ledger().map((d) => [d.device, d.used]));
    const short = new Map<string, number>();
    for (const [d, b] of bytesByDevice(need)) {
      const s = (used.get(d) ?? 0) + b - (this.#budgets.get(d) ?? Infinity);
      if (s > 0) short.set(d, s);
    }
    return short;
  }

  async #makeRoom(need: Holding[], priority: Priority, requester: ManagedResource | undefined, jobId: string): Promise<ManagedResource[]> {
    const freed: ManagedResource[] = [];
    let short = this.#shortfall(need);
    if (short.size === 0) return freed;
    const candidates = [...this.#resources.values()]
      .filter(({ resource: r, priority: p }) => r !== requester && !r.inUse && RANK[p] <= RANK[priority])
      .sort((a, b) => RANK[a.priority] - RANK[b.priority] || a.resource.lastUsedAt - b.resource.lastUsedAt)
      .map((c) => c.resource);
    for (const level of ["contextFreed", "unloaded"] as const) {
      for (const r of candidates) {
        if (short.size === 0) break;
        if (r.inUse || r.residency === "unloaded" || (level === "contextFreed" && r.residency !== "resident")) continue;
        // only where it helps: a context level frees KV/compute, the weights level anything left
        if (!r.holdings().some((h) => short.has(h.device) && h.bytes > 0 && (level === "unloaded" || h.kind !== "weights"))) continue;
        const before = bytesByDevice(r.holdings());
        const t0 = performance.now();
        await r.free(level);
        const bytes = diff(before, bytesByDevice(r.holdings()));
        this.emit("offload", { resource: r.id, level, bytes: toRecord(bytes), ms: performance.now() - t0, forJob: jobId } satisfies OffloadEvent);
        if (!freed.includes(r)) freed.push(r);
        short = this.#shortfall(need);
      }
    }
    if (short.size > 0) {
      const what = [...short].map(([d, b]) => `${d}: ${(b / 2 ** 20).toFixed(1)} MiB`).join(", ");
      throw new GenaiError("OUT_OF_MEMORY", `the job does not fit the memory budget even after freeing idle resources (short by ${what})`);
    }
    return freed;
  }

  async #restore(resource: ManagedResource): Promise<void> {
    const before = bytesByDevice(resource.holdings());
    const freeBefore = deviceFree();
    const t0 = performance.now();
    await resource.restore();
    const ms = performance.now() - t0;
    const bytes = diff(bytesByDevice(resource.holdings()), before);
    this.emit("restore", {
      resource: resource.id,
      bytes: toRecord(bytes),
      deviceFreeDrop: toRecord(diff(freeBefore, deviceFree())),
      ms,
    } satisfies RestoreEvent);
  }

  #scheduleRestores(freed: ManagedResource[]): void {
    for (const r of freed.reverse()) {
      const entry = this.#resources.get(r.id);
      if (!entry || r.residency === "resident") continue;
      // a restore does not in turn restore what it frees (no ping-pong between two resources)
      const job = this.#submit({ kind: "restore", resource: r, priority: entry.priority, run: async () => undefined }, false);
      job.promise.catch(() => undefined); // a restore that does not fit waits for the resource's next use
    }
  }

  /** Cancels queued and running jobs and stops the registry's sweeps. Resources stay as they are. */
  dispose(): void {
    this.queue.cancelAll();
    this.registry.dispose();
  }
}
