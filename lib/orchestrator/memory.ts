/**
 * The orchestrator's memory side (the rules are in orchestrator.ts's module
 * notes): the ledger per device, making room for a job by freeing idle
 * resources, restoring a job's resource, and jobs waiting for resources in use.
 */
import { GenaiError } from "../errors";
import { onAbort } from "../util/abort";
import { covers, deviceFree, diff, type LedgerDevice, type OffloadEvent, type ReserveEvent, type RestoreEvent, toRecord, type WaitEvent } from "./events";
import { PRIORITY_RANK as RANK, type Priority } from "./priority";
import { bytesByDevice, type Holding, type ManagedResource } from "./resource";

/** A job waiting for resources in use to be released. */
interface MemoryWaiter {
  priority: Priority;
  blockers: ManagedResource[];
  /** Tries again; takes its place in the memory lock at once (before the job that released). */
  wake(): void;
}

/** What a job asks for: its resource made resident, extra memory, eviction rights. */
export interface HoldRequest {
  job: string;
  resource?: ManagedResource;
  extra: Holding[];
  /** The job's own priority (what waiting jobs are ranked by). */
  priority: Priority;
  /** Resources of this priority and below may be freed for it. */
  evict: Priority;
  /** Wait while resources in use block it (else: OUT_OF_MEMORY at once, as restore follow-ups do). */
  mayWait: boolean;
  signal: AbortSignal;
}

/** @internal the Orchestrator's */
export class MemoryPlanner {
  readonly resources = new Map<string, { resource: ManagedResource; priority: Priority }>();
  readonly #extra = new Map<string, Holding[]>(); // running jobs' extra memory
  readonly #waiters = new Set<MemoryWaiter>();
  #lock: Promise<void> = Promise.resolve();

  constructor(
    readonly budgets: Map<string, number>,
    private readonly emit: (event: string, payload: unknown) => void,
  ) {}

  /** Per device: budget, bytes in use, and who holds them. */
  ledger(): LedgerDevice[] {
    const devices = new Map<string, LedgerDevice>();
    const get = (d: string) => {
      let e = devices.get(d);
      if (!e) {
        e = { device: d, budget: this.budgets.get(d) ?? Infinity, used: 0, holders: [] };
        devices.set(d, e);
      }
      return e;
    };
    for (const d of this.budgets.keys()) get(d);
    const add = (id: string, hs: readonly Holding[]) => {
      for (const h of hs) {
        const e = get(h.device);
        e.used += h.bytes;
        e.holders.push({ id, kind: h.kind, bytes: h.bytes });
      }
    };
    for (const { resource } of this.resources.values()) add(resource.id, resource.holdings());
    for (const [job, hs] of this.#extra) add(job, hs);
    return [...devices.values()];
  }

  /**
   * Makes the resource resident and reserves the extra memory, freeing others
   * as needed; waits (req.mayWait) while resources in use block it.
   * @returns what was freed for it
   * @throws GenaiError OUT_OF_MEMORY, ABORTED (req.signal aborted while it waits)
   */
  hold(req: HoldRequest): Promise<ManagedResource[]> {
    return new Promise((resolve, reject) => {
      const aborted = () => new GenaiError("ABORTED", "the job was cancelled while it waited for memory");
      const waiter: MemoryWaiter = { priority: req.priority, blockers: [], wake: () => attempt() };
      const detach = onAbort(req.signal, () => {
        if (this.#waiters.delete(waiter)) reject(aborted());
      });
      const attempt = () => {
        this.#prepare(req, req.mayWait ? waiter : undefined).then(
          (freed) => {
            if (freed) {
              detach();
              resolve(freed);
            } else if (req.signal.aborted && this.#waiters.delete(waiter)) {
              reject(aborted()); // aborted while it was trying
            }
          },
          (e: unknown) => {
            detach();
            reject(e);
          },
        );
      };
      attempt();
    });
  }

  /** The end of a hold: the resource is no longer in use, the extra memory is given back ("release" event), waiting jobs try again. */
  release(job: string, resource: ManagedResource | undefined, ms: number): void {
    resource?.setInUse(false);
    const extra = this.#extra.get(job) ?? [];
    this.#extra.delete(job);
    this.emit("release", { job, bytes: toRecord(bytesByDevice([...(resource?.holdings() ?? []), ...extra])), ms } satisfies ReserveEvent);
    // every waiter tries again, highest priority first (still blocked: it waits again)
    const waiters = [...this.#waiters].sort((a, b) => RANK[b.priority] - RANK[a.priority]);
    this.#waiters.clear();
    for (const w of waiters) w.wake();
  }

  /** Priorities of the jobs waiting for memory that `resource` holds. */
  waitingFor(resource: ManagedResource): Priority[] {
    return [...this.#waiters].filter((w) => w.blockers.includes(resource)).map((w) => w.priority);
  }

  /** Serializes memory planning: one job at a time frees/restores. */
  async #withLock<T>(fn: () => Promise<T>): Promise<T> {
    const prev = this.#lock;
    let unlock!: () => void;
    this.#lock = new Promise<void>((r) => (unlock = r));
    await prev;
    try {
      return await fn();
    } finally {
      unlock();
    }
  }

  /** One try: what was freed, or undefined when blocked (then `waiter` is registered). */
  #prepare(req: HoldRequest, waiter: MemoryWaiter | undefined): Promise<ManagedResource[] | undefined> {
    const { job, resource, extra } = req;
    return this.#withLock(async () => {
      const t0 = performance.now();
      const need: Holding[] = [...extra];
      if (resource && resource.residency !== "resident") {
        const now = bytesByDevice(resource.holdings());
        for (const [d, b] of bytesByDevice(resource.residentHoldings())) need.push({ device: d, kind: "weights", bytes: Math.max(0, b - (now.get(d) ?? 0)) });
      }
      const blocked = waiter && this.#blockedBy(need, req.evict, resource);
      if (waiter && blocked) {
        // registered before any await: a release from now on wakes it
        waiter.blockers = blocked.resources;
        this.#waiters.add(waiter);
        this.emit("wait", { job, resources: blocked.resources.map((r) => r.id), short: toRecord(blocked.short) } satisfies WaitEvent);
        return undefined;
      }
      const freed = await this.#makeRoom(need, req.evict, resource, job);
      if (resource && resource.residency !== "resident") await this.#restore(resource);
      resource?.setInUse(true);
      if (extra.length) this.#extra.set(job, extra);
      this.emit("reserve", {
        job,
        bytes: toRecord(bytesByDevice([...(resource?.holdings() ?? []), ...extra])),
        ms: performance.now() - t0,
      } satisfies ReserveEvent);
      return freed;
    });
  }

  #evictable(evict: Priority, requester: ManagedResource | undefined): { resource: ManagedResource; priority: Priority }[] {
    return [...this.resources.values()].filter(({ resource: r, priority: p }) => r !== requester && RANK[p] <= RANK[evict]);
  }

  /** The resources in use that `need` waits for: when idle ones cannot make room but all of them, in use or not, could. */
  #blockedBy(need: Holding[], evict: Priority, requester: ManagedResource | undefined) {
    const short = this.#shortfall(need);
    if (short.size === 0) return undefined;
    const evictable = this.#evictable(evict, requester).map((c) => c.resource);
    if (
      covers(
        evictable.filter((r) => !r.inUse),
        short,
      ) ||
      !covers(evictable, short)
    )
      return undefined;
    const resources = evictable.filter((r) => r.inUse && r.holdings().some((h) => short.has(h.device) && h.bytes > 0));
    return resources.length > 0 ? { resources, short } : undefined;
  }

  #shortfall(need: Holding[]): Map<string, number> {
    const used = new Map(this.ledger().map((d) => [d.device, d.used]));
    const short = new Map<string, number>();
    for (const [d, b] of bytesByDevice(need)) {
      const s = (used.get(d) ?? 0) + b - (this.budgets.get(d) ?? Infinity);
      if (s > 0) short.set(d, s);
    }
    return short;
  }

  async #makeRoom(need: Holding[], evict: Priority, requester: ManagedResource | undefined, jobId: string): Promise<ManagedResource[]> {
    const freed: ManagedResource[] = [];
    let short = this.#shortfall(need);
    if (short.size === 0) return freed;
    const candidates = this.#evictable(evict, requester)
      .filter(({ resource: r }) => !r.inUse)
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
}
