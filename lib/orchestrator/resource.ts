/**
 * What the orchestrator manages: anything that holds device memory and can
 * give it back and take it again (an LLM's weights and context, a diffusion
 * model). Engines implement this small interface; tests use doubles of it.
 */

/** What a piece of memory is for. */
export type HoldingKind = "weights" | "kv" | "compute";

/** Bytes held on one device for one purpose. */
export interface Holding {
  /** ggml device name, e.g. "CPU", "CUDA0". */
  device: string;
  kind: HoldingKind;
  bytes: number;
}

/**
 * How much of a resource is in memory:
 * - "resident": everything (weights, context);
 * - "contextFreed": weights only; the context (KV cache, compute buffers) was
 *   freed after its state was copied to host memory;
 * - "unloaded": nothing on any device (the host copy of the state remains).
 */
export type Residency = "resident" | "contextFreed" | "unloaded";

export interface ManagedResource {
  /** Unique among the orchestrator's resources. */
  readonly id: string;
  /** Engine name for queue concurrency limits, e.g. "llm", "diffusion". */
  readonly engine: string;
  readonly residency: Residency;
  /** True while a job uses it: never freed then. */
  readonly inUse: boolean;
  /** When it was last used (ms since epoch), for least-recently-used order. */
  readonly lastUsedAt: number;
  /** What it holds now. */
  holdings(): Holding[];
  /** What it holds when resident (measured once loaded, estimated before). */
  residentHoldings(): Holding[];
  /**
   * Frees memory down to `level` ("contextFreed" keeps the weights;
   * "unloaded" frees everything). State needed to continue is kept on the host.
   */
  free(level: Exclude<Residency, "resident">): Promise<void>;
  /** Loads whatever was freed, restoring saved state; afterwards residency is "resident". */
  restore(): Promise<void>;
  /** Marks the start/end of a job that uses this resource (jobs may overlap where the engine allows several: count them). */
  setInUse(inUse: boolean): void;
}

/** Sum of bytes per device. */
export function bytesByDevice(holdings: readonly Holding[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const h of holdings) m.set(h.device, (m.get(h.device) ?? 0) + h.bytes);
  return m;
}
