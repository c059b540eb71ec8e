/** The orchestrator's events and ledger view (orchestrator.ts), and the byte arithmetic they share. */
import { systemInfo } from "../system/index";
import { bytesByDevice, type ManagedResource } from "./resource";
import type { Residency } from "./resource";

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

/** Emitted as "wait" when a job waits for memory that resources in use by running jobs hold (see Orchestrator). */
export interface WaitEvent {
  job: string;
  /** Ids of the resources in use that it waits for. */
  resources: string[];
  /** Bytes per device it is short by now. */
  short: Record<string, number>;
}

/** Emitted as "yield" when a running job gives way to jobs of a higher priority (JobControl.yield). */
export interface YieldEvent {
  job: string;
  /** The highest priority it gave way to. */
  to: string;
}

export interface LedgerDevice {
  device: string;
  /** Budget in bytes. */
  budget: number;
  /** Bytes held by resources and running jobs' extra memory. */
  used: number;
  holders: { id: string; kind: string; bytes: number }[];
}

export function toRecord(m: Map<string, number>): Record<string, number> {
  return Object.fromEntries(m);
}

/** Free bytes per ggml device (what the device reports, not the ledger). */
export function deviceFree(): Map<string, number> {
  return new Map(systemInfo().devices.map((d) => [d.name, d.freeBytes]));
}

/** before − after per device, zero differences left out. */
export function diff(before: Map<string, number>, after: Map<string, number>): Map<string, number> {
  const out = new Map<string, number>();
  for (const d of new Set([...before.keys(), ...after.keys()])) {
    const v = (before.get(d) ?? 0) - (after.get(d) ?? 0);
    if (v !== 0) out.set(d, v);
  }
  return out;
}

/** Whether unloading all of `resources` would free at least `short` bytes on every short device. */
export function covers(resources: readonly ManagedResource[], short: Map<string, number>): boolean {
  const held = bytesByDevice(resources.flatMap((r) => r.holdings()));
  for (const [d, b] of short) if ((held.get(d) ?? 0) < b) return false;
  return true;
}
