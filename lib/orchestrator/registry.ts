/**
 * JobRegistry: the status of every job, for callers that poll — the
 * in-process form of an async job API (submit returns an id, get(id) polls).
 *
 * - Records: id, kind, status (pending / running / done / error / cancelled),
 *   progress, result, typed error `{ code, message }`, and timestamps in ms
 *   from the registry's clock (`Date.now()` by default: ms since epoch).
 * - TTL: finished records (done, error, cancelled) are kept for `ttlMs`
 *   (default 5 minutes) after they ended, and removed by `sweep()`, which runs
 *   every `sweepIntervalMs` (default 60 s) on an unref()'d timer (it never
 *   keeps the process alive; `dispose()` stops it).
 * - Bounds: at most `maxRecords` records (default 1000) and `maxResultBytes`
 *   bytes of results (default 64 MiB). Past a bound, finished records are
 *   evicted, the one that ended first going first, until the registry is back
 *   within bounds. Pending and running records are never evicted, so with
 *   more active jobs than `maxRecords` the count bound is exceeded until they
 *   end. A finished record whose result alone exceeds `maxResultBytes` is
 *   evicted too (after all older ones).
 */
import { GenaiError, type GenaiErrorCode } from "../errors";
import { optFunction, optObject, optOneOf, optionKeys, options, requireString } from "../util/validate";
import type { JobStatus, QueuedJob } from "./queue";

export interface JobRecord {
  id: string;
  /** What the job is, e.g. "llm.complete", "image". */
  kind: string;
  status: JobStatus;
  /** Whatever the job reports (e.g. `{ step, steps }`); not counted toward maxResultBytes. */
  progress?: unknown;
  /** Set when done. */
  result?: unknown;
  /** Set on error or cancellation. */
  error?: { code: GenaiErrorCode | string; message: string };
  /** ms since epoch (the registry's clock). */
  createdAt: number;
  /** Last change, ms. */
  updatedAt: number;
  /** When it started running, ms (set on the first change to "running" unless given). */
  startedAt?: number;
  /** When it finished, ms (set on the change to a finished status unless given). */
  endedAt?: number;
}

/** The fields `update()` may change. */
export type JobRecordPatch = Partial<Pick<JobRecord, "status" | "progress" | "result" | "error" | "startedAt" | "endedAt">>;

export interface JobRecordFilter {
  status?: JobStatus | readonly JobStatus[];
  kind?: string;
}

export interface JobRegistryOptions {
  /** How long finished records are kept after they ended, ms (default 300 000; Infinity: until evicted by a bound). */
  ttlMs?: number;
  /** Sweep interval, ms (default 60 000; 0: no timer, call sweep() yourself; at most 2^31 − 1). */
  sweepIntervalMs?: number;
  /** Most records kept (default 1000; a positive integer or Infinity). */
  maxRecords?: number;
  /** Most bytes of results kept (default 64 MiB; Infinity allowed). */
  maxResultBytes?: number;
  /** Size of a result in bytes (default {@link resultSize}). If it throws or returns no finite non-negative number, the default is used. */
  sizeOf?: (result: unknown) => number;
  /** Clock in ms (default `Date.now`); for tests. */
  now?: () => number;
}

const STATUSES: readonly JobStatus[] = ["pending", "running", "done", "error", "cancelled"];
const FINISHED: ReadonlySet<JobStatus> = new Set<JobStatus>(["done", "error", "cancelled"]);
const PATCH_KEYS = ["status", "progress", "result", "error", "startedAt", "endedAt"] as const;
const MAX_DEPTH = 4;
const MAX_TIMER_MS = 2 ** 31 - 1; // Node's setInterval limit

/**
 * The default measure of a result, in bytes: Buffers, typed arrays, DataViews
 * and ArrayBuffers by byteLength; strings as UTF-8 bytes; numbers, bigints and
 * booleans 8; arrays and plain objects by summing their elements/fields, down
 * to 4 levels (so an image batch `[{ png: Buffer, width, height, seed }]`
 * counts its PNG bytes); anything else, or deeper, 0. Shared objects count once.
 */
export function resultSize(result: unknown): number {
  const seen = new Set<object>();
  const size = (v: unknown, depth: number): number => {
    if (v == null) return 0;
    if (typeof v === "string") return Buffer.byteLength(v, "utf8");
    if (typeof v === "number" || typeof v === "bigint" || typeof v === "boolean") return 8;
    if (typeof v !== "object") return 0;
    if (seen.has(v)) return 0;
    seen.add(v);
    if (ArrayBuffer.isView(v)) return v.byteLength;
    if (v instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && v instanceof SharedArrayBuffer)) return v.byteLength;
    if (depth >= MAX_DEPTH) return 0;
    let total = 0;
    for (const x of Array.isArray(v) ? v : Object.values(v)) total += size(x, depth + 1);
    return total;
  };
  return size(result, 0);
}

function bound(name: string, v: unknown, def: number, opts: { integer?: boolean; min: number; max?: number; infinity?: boolean }): number {
  if (v === undefined) return def;
  const ok =
    typeof v === "number" &&
    ((opts.infinity && v === Infinity) ||
      (Number.isFinite(v) && v >= opts.min && v <= (opts.max ?? Number.MAX_SAFE_INTEGER) && (!opts.integer || Number.isInteger(v))));
  if (!ok)
    throw new GenaiError(
      "INVALID_ARGUMENT",
      `${name} must be ${opts.integer ? "an integer" : "a number"} ≥ ${opts.min}${opts.max !== undefined ? ` and ≤ ${opts.max}` : ""}${opts.infinity ? " or Infinity" : ""} (got ${String(v)})`,
    );
  return v as number;
}

interface Stored extends JobRecord {
  bytes: number;
}

let nextId = 1;

export class JobRegistry {
  #records = new Map<string, Stored>();
  #ttlMs: number;
  #maxRecords: number;
  #maxBytes: number;
  #sizeOf?: (r: unknown) => number;
  #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #bytes = 0;

  /** @throws GenaiError INVALID_ARGUMENT for a bad option */
  constructor(opts: JobRegistryOptions = {}) {
    const o = options("options", opts, optionKeys<JobRegistryOptions>()("ttlMs", "sweepIntervalMs", "maxRecords", "maxResultBytes", "sizeOf", "now"));
    this.#ttlMs = bound("ttlMs", o.ttlMs, 300_000, { min: 0, infinity: true });
    this.#maxRecords = bound("maxRecords", o.maxRecords, 1000, { integer: true, min: 1, infinity: true });
    this.#maxBytes = bound("maxResultBytes", o.maxResultBytes, 64 * 2 ** 20, { min: 0, infinity: true });
    const interval = bound("sweepIntervalMs", o.sweepIntervalMs, 60_000, { min: 0, max: MAX_TIMER_MS });
    this.#sizeOf = optFunction<(r: unknown) => number>("sizeOf", o.sizeOf);
    this.#now = optFunction<() => number>("now", o.now) ?? Date.now;
    if (interval > 0) {
      this.#timer = setInterval(() => this.sweep(), interval);
      this.#timer.unref();
    }
  }

  /**
   * A new pending record (`id` default: a fresh "rec-N").
   * @throws GenaiError INVALID_ARGUMENT if `id` is taken or `kind` is not a string
   */
  create(kind: string, id?: string): JobRecord {
    requireString("kind", kind);
    const recId = id === undefined ? `rec-${nextId++}` : requireString("id", id);
    if (this.#records.has(recId)) throw new GenaiError("INVALID_ARGUMENT", `a job with id ${recId} exists`);
    const now = this.#now();
    const rec: Stored = { id: recId, kind, status: "pending", createdAt: now, updatedAt: now, bytes: 0 };
    this.#records.set(recId, rec);
    this.#enforceBounds();
    return view(rec);
  }

  /**
   * Changes a record's status, progress, result, error or timestamps (other
   * keys are ignored); sets updatedAt, and startedAt/endedAt on the change to
   * running/finished unless given. A new result's size counts toward
   * maxResultBytes, which may evict older finished records (or this one, see
   * the module notes).
   * @returns the record after the change
   * @throws GenaiError INVALID_ARGUMENT for an unknown id or status
   */
  update(id: string, patch: JobRecordPatch): JobRecord {
    const rec = this.#records.get(id);
    if (!rec) throw new GenaiError("INVALID_ARGUMENT", `no job with id ${String(id)}`);
    const p = optObject("patch", patch) as JobRecordPatch;
    if (p.status !== undefined) optOneOf("status", p.status, STATUSES, "pending");
    if (p.error !== undefined) {
      const e = optObject("error", p.error);
      requireString("error.code", e.code);
      requireString("error.message", e.message);
    }
    for (const k of ["startedAt", "endedAt"] as const) if (p[k] !== undefined) bound(k, p[k], 0, { min: -Number.MAX_VALUE, max: Number.MAX_VALUE });
    const now = this.#now();
    for (const k of PATCH_KEYS) if (k in p) (rec as unknown as Record<string, unknown>)[k] = p[k];
    if (p.error !== undefined) rec.error = { code: p.error.code, message: p.error.message };
    rec.updatedAt = now;
    if (rec.status === "running" && rec.startedAt === undefined) rec.startedAt = now;
    if (FINISHED.has(rec.status) && rec.endedAt === undefined) rec.endedAt = now;
    if (!FINISHED.has(rec.status) && !("endedAt" in p)) rec.endedAt = undefined; // back to active (rare): not swept
    if ("result" in p) {
      this.#bytes -= rec.bytes;
      rec.bytes = this.#measure(p.result);
      this.#bytes += rec.bytes;
    }
    this.#enforceBounds();
    return view(rec);
  }

  /** A copy of the record, or undefined if unknown, expired or evicted. */
  get(id: string): JobRecord | undefined {
    const rec = this.#records.get(id);
    return rec && view(rec);
  }

  /** Copies of the records matching `filter`, oldest created first. */
  list(filter: JobRecordFilter = {}): JobRecord[] {
    const f = optObject("filter", filter) as JobRecordFilter;
    const statuses = f.status === undefined ? undefined : new Set<JobStatus>(typeof f.status === "string" ? [f.status] : f.status);
    const out: JobRecord[] = [];
    for (const r of this.#records.values()) {
      if ((statuses && !statuses.has(r.status)) || (f.kind !== undefined && r.kind !== f.kind)) continue;
      out.push(view(r));
    }
    return out;
  }

  /** Removes a record (any status); returns whether it existed. A tracked job's later changes are then ignored. */
  remove(id: string): boolean {
    const rec = this.#records.get(id);
    if (!rec) return false;
    this.#bytes -= rec.bytes;
    return this.#records.delete(id);
  }

  /**
   * Mirrors a queued job into a record with the job's id: status,
   * startedAt/endedAt, the result when done, `{ code, message }` of the
   * GenaiError on error or cancellation. Progress is the caller's to update.
   * @returns the record as it is now
   * @throws GenaiError INVALID_ARGUMENT if a record with the job's id exists
   */
  track(job: QueuedJob<unknown>, kind: string): JobRecord {
    const rec = this.create(kind, job.id);
    let off: (() => void) | undefined;
    const sync = () => {
      if (!this.#records.has(job.id)) {
        off?.();
        return;
      }
      const patch: JobRecordPatch = { status: job.status };
      if (job.startedAt !== undefined) patch.startedAt = job.startedAt;
      if (job.endedAt !== undefined) patch.endedAt = job.endedAt;
      if (job.status === "done") patch.result = job.result;
      if (job.error) patch.error = { code: job.error.code, message: job.error.message };
      this.update(job.id, patch);
      if (FINISHED.has(job.status)) off?.();
    };
    if (job.status === "pending") off = job.onStatus(sync);
    else sync();
    return this.get(rec.id) ?? rec;
  }

  /** Removes finished records that ended at least ttlMs ago; returns how many. */
  sweep(): number {
    const cutoff = this.#now() - this.#ttlMs;
    let n = 0;
    for (const rec of [...this.#records.values()]) {
      if (FINISHED.has(rec.status) && (rec.endedAt ?? rec.updatedAt) <= cutoff && this.remove(rec.id)) n++;
    }
    return n;
  }

  /** Bytes of results kept, by the registry's measure. */
  get resultBytes(): number {
    return this.#bytes;
  }

  /** Records kept. */
  get size(): number {
    return this.#records.size;
  }

  /** Stops the sweep timer (records stay; sweep() still works). */
  dispose(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #measure(result: unknown): number {
    if (this.#sizeOf) {
      try {
        const n = this.#sizeOf(result);
        if (typeof n === "number" && Number.isFinite(n) && n >= 0) return n;
      } catch {
        // fall back to the default measure
      }
    }
    return resultSize(result);
  }

  #within(): boolean {
    return this.#records.size <= this.#maxRecords && this.#bytes <= this.#maxBytes;
  }

  #enforceBounds(): void {
    if (this.#within()) return;
    const finished = [...this.#records.values()].filter((r) => FINISHED.has(r.status));
    finished.sort((a, b) => (a.endedAt ?? a.updatedAt) - (b.endedAt ?? b.updatedAt)); // stable: insertion order among equals
    for (const r of finished) {
      if (this.#within()) break;
      this.remove(r.id);
    }
  }
}

function view(rec: Stored): JobRecord {
  const { bytes: _bytes, ...rest } = rec;
  const out: JobRecord = { ...rest };
  if (rest.error) out.error = { ...rest.error };
  for (const k of ["progress", "result", "error", "startedAt", "endedAt"] as const) if (out[k] === undefined) delete out[k];
  return out;
}
