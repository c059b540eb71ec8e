/**
 * JobRegistry: the status of every job, for callers that poll — the
 * in-process form of an async job API (submit returns an id, get(id) polls).
 * Finished records (done, error, cancelled) are kept for `ttlMs` (default 5
 * minutes) and swept every `sweepIntervalMs` (default 60 s); the registry is
 * bounded by `maxRecords` (default 1000) and `maxResultBytes` (default
 * 64 MiB of results): past a bound, the oldest finished records go first.
 * Pending and running records are never evicted.
 */
import { GenaiError } from "../errors";
import type { JobStatus, QueuedJob } from "./queue";

export interface JobRecord {
  id: string;
  kind: string;
  status: JobStatus;
  progress?: unknown;
  result?: unknown;
  error?: { code: string; message: string };
  /** ms since epoch */
  createdAt: number;
  updatedAt: number;
  startedAt?: number;
  endedAt?: number;
}

export interface JobRegistryOptions {
  /** How long finished records are kept, ms (default 300 000). */
  ttlMs?: number;
  /** Sweep interval, ms (default 60 000; 0 = no timer, call sweep() yourself). */
  sweepIntervalMs?: number;
  /** Most records kept (default 1000). */
  maxRecords?: number;
  /** Most result bytes kept (default 64 MiB). */
  maxResultBytes?: number;
  /** Size of a result in bytes (default: Buffers/typed arrays by byteLength, strings as UTF-8, objects by their direct fields). */
  sizeOf?: (result: unknown) => number;
  /** Clock in ms (tests). */
  now?: () => number;
}

const FINISHED: ReadonlySet<JobStatus> = new Set<JobStatus>(["done", "error", "cancelled"]);

function defaultSizeOf(v: unknown, depth = 0): number {
  if (v == null) return 0;
  if (typeof v === "string") return Buffer.byteLength(v);
  if (ArrayBuffer.isView(v)) return v.byteLength;
  if (v instanceof ArrayBuffer) return v.byteLength;
  if (depth === 0 && Array.isArray(v)) return v.reduce((s: number, x) => s + defaultSizeOf(x, 1), 0);
  if (depth === 0 && typeof v === "object") return Object.values(v as object).reduce((s: number, x) => s + defaultSizeOf(x, 1), 0);
  return 8;
}

export class JobRegistry {
  #records = new Map<string, JobRecord & { bytes: number }>();
  #ttlMs: number;
  #maxRecords: number;
  #maxBytes: number;
  #sizeOf: (r: unknown) => number;
  #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #bytes = 0;
  #nextId = 1;

  constructor(options: JobRegistryOptions = {}) {
    this.#ttlMs = options.ttlMs ?? 300_000;
    this.#maxRecords = options.maxRecords ?? 1000;
    this.#maxBytes = options.maxResultBytes ?? 64 * 2 ** 20;
    this.#sizeOf = options.sizeOf ?? ((r) => defaultSizeOf(r));
    this.#now = options.now ?? Date.now;
    for (const [k, v] of Object.entries({ ttlMs: this.#ttlMs, maxRecords: this.#maxRecords, maxResultBytes: this.#maxBytes })) {
      if (!(v >= 0)) throw new GenaiError("INVALID_ARGUMENT", `${k} must be a non-negative number`);
    }
    const interval = options.sweepIntervalMs ?? 60_000;
    if (interval > 0) {
      this.#timer = setInterval(() => this.sweep(), interval);
      this.#timer.unref();
    }
  }

  /** A new pending record. */
  create(kind: string, id = `rec-${this.#nextId++}`): JobRecord {
    if (this.#records.has(id)) throw new GenaiError("INVALID_ARGUMENT", `a job with id ${id} exists`);
    const now = this.#now();
    const rec = { id, kind, status: "pending" as JobStatus, createdAt: now, updatedAt: now, bytes: 0 };
    this.#records.set(id, rec);
    this.#enforceBounds();
    return this.#view(rec);
  }

  /** Changes a record; a result's size counts toward maxResultBytes. @throws GenaiError INVALID_ARGUMENT for an unknown id */
  update(id: string, patch: Partial<Omit<JobRecord, "id" | "createdAt">>): JobRecord {
    const rec = this.#records.get(id);
    if (!rec) throw new GenaiError("INVALID_ARGUMENT", `no job with id ${id}`);
    Object.assign(rec, patch, { updatedAt: this.#now() });
    if ("result" in patch) {
      this.#bytes -= rec.bytes;
      rec.bytes = this.#sizeOf(patch.result);
      this.#bytes += rec.bytes;
    }
    if (FINISHED.has(rec.status) && rec.endedAt === undefined) rec.endedAt = rec.updatedAt;
    this.#enforceBounds();
    return this.#view(rec);
  }

  get(id: string): JobRecord | undefined {
    const rec = this.#records.get(id);
    return rec && this.#view(rec);
  }

  list(filter: { status?: JobStatus; kind?: string } = {}): JobRecord[] {
    return [...this.#records.values()].filter((r) => (!filter.status || r.status === filter.status) && (!filter.kind || r.kind === filter.kind)).map((r) => this.#view(r));
  }

  remove(id: string): boolean {
    const rec = this.#records.get(id);
    if (!rec) return false;
    this.#bytes -= rec.bytes;
    return this.#records.delete(id);
  }

  /** Mirrors a queued job into a record with the same id. */
  track(job: QueuedJob<unknown>, kind: string): JobRecord {
    const rec = this.create(kind, job.id);
    const sync = () => {
      if (!this.#records.has(job.id)) return;
      const patch: Partial<JobRecord> = { status: job.status, startedAt: job.startedAt, endedAt: job.endedAt };
      if (job.status === "done") patch.result = job.result;
      if (job.error) patch.error = { code: job.error.code, message: job.error.message };
      this.update(job.id, patch);
    };
    job.onStatus(sync);
    if (job.status !== "pending") sync();
    return this.get(rec.id) as JobRecord;
  }

  /** Removes finished records older than the TTL; returns how many. */
  sweep(): number {
    const cutoff = this.#now() - this.#ttlMs;
    let n = 0;
    for (const rec of [...this.#records.values()]) {
      if (FINISHED.has(rec.status) && (rec.endedAt ?? rec.updatedAt) <= cutoff && this.remove(rec.id)) n++;
    }
    return n;
  }

  /** Total bytes of kept results. */
  get resultBytes(): number {
    return this.#bytes;
  }

  get size(): number {
    return this.#records.size;
  }

  /** Stops the sweep timer. */
  dispose(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #enforceBounds(): void {
    if (this.#records.size <= this.#maxRecords && this.#bytes <= this.#maxBytes) return;
    const finished = [...this.#records.values()].filter((r) => FINISHED.has(r.status)).sort((a, b) => (a.endedAt ?? a.updatedAt) - (b.endedAt ?? b.updatedAt));
    for (const r of finished) {
      if (this.#records.size <= this.#maxRecords && this.#bytes <= this.#maxBytes) break;
      this.remove(r.id);
    }
  }

  #view(rec: JobRecord & { bytes: number }): JobRecord {
    const { bytes: _bytes, ...view } = rec;
    return view;
  }
}
