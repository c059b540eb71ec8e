/**
 * ManagedLlama: an LLM (model + one context) that the orchestrator can free
 * and restore with its conversation intact. Freeing the context copies the
 * KV state to host memory (llama_state_seq_get_data) and frees the KV cache
 * and compute buffers; unloading also frees the weights. Restoring reloads
 * the weights (mmap keeps this fast), recreates the context and sets the
 * saved state, so the next turn decodes only its new tokens.
 */
import { GenaiError } from "../errors";
import type { LlamaContext } from "../llm/context";
import { LOAD_DEFAULTS } from "../llm/defaults";
import { LlamaModel } from "../llm/model";
import type { ContextOptions, DeviceMemory, LoadModelOptions, SavedContextState } from "../llm/types";
import { readGgufSummary } from "../models/metadata";
import { measureLlamaMemory } from "./estimate";
import type { Holding, ManagedResource, Residency } from "./resource";

export interface ManagedLlamaOptions {
  /** Unique id (default: the model file's path). */
  id?: string;
  modelPath: string;
  load?: Omit<LoadModelOptions, "signal" | "onProgress">;
  context?: ContextOptions;
}

/**
 * Where the last free() and restore() spent their time (ms; 0 for a step
 * that did not run). Save and restore of the KV state are listed apart from
 * freeing and recreating the context, so `npm run bench:orchestrator` can
 * show each.
 */
export interface ManagedLlamaTimings {
  /** saveState(): llama_state_seq_get_data into host memory, plus the checksum. */
  saveStateMs: number;
  /** Disposing the context (KV cache and compute buffers freed). */
  freeContextMs: number;
  /** Unloading the weights (level "unloaded" only). */
  unloadMs: number;
  /** Loading the weights again (after "unloaded"). */
  loadMs: number;
  /** createContext(): KV cache and compute buffers allocated, graph reserved. */
  createContextMs: number;
  /** restoreState(): checksum, then llama_state_seq_set_data from the host copy. */
  restoreStateMs: number;
}

/**
 * A projector's weights (load.mmproj) counted with the model's on the device
 * holding its KV cache (where libmtmd puts it: the model's main device), from
 * its GGUF's tensor data; its encoder's compute buffers are not counted.
 */
function withProjector(mem: DeviceMemory[], projectorBytes: number): DeviceMemory[] {
  if (projectorBytes <= 0) return mem;
  const main = [...mem].sort((a, b) => b.context - a.context)[0];
  return mem.map((m) => (m === main ? { ...m, model: m.model + projectorBytes } : m));
}

function toHoldings(mem: readonly DeviceMemory[], withContext: boolean): Holding[] {
  const out: Holding[] = [];
  for (const m of mem) {
    if (m.model > 0) out.push({ device: m.device, kind: "weights", bytes: m.model });
    if (withContext && m.context > 0) out.push({ device: m.device, kind: "kv", bytes: m.context });
    if (withContext && m.compute > 0) out.push({ device: m.device, kind: "compute", bytes: m.compute });
  }
  return out;
}

export class ManagedLlama implements ManagedResource {
  readonly id: string;
  readonly engine = "llm";
  readonly modelPath: string;
  #loadOptions: ManagedLlamaOptions["load"];
  #contextOptions: ContextOptions;
  /** The projector's weights (load.mmproj), bytes; 0 without one. */
  readonly #projectorBytes: number;
  #model: LlamaModel | undefined;
  #context: LlamaContext | undefined;
  #saved: SavedContextState | undefined;
  #memory: DeviceMemory[];
  /** Jobs using it now (a context with several sequences runs several at once). */
  #users = 0;
  #lastUsedAt = 0;
  #timings: ManagedLlamaTimings = { saveStateMs: 0, freeContextMs: 0, unloadMs: 0, loadMs: 0, createContextMs: 0, restoreStateMs: 0 };
  /** llama.cpp's no-allocation measurement taken before the first load. */
  readonly estimated: DeviceMemory[];

  private constructor(o: ManagedLlamaOptions, estimated: DeviceMemory[], projectorBytes: number) {
    this.id = o.id ?? o.modelPath;
    this.modelPath = o.modelPath;
    this.#loadOptions = o.load;
    this.#contextOptions = o.context ?? {};
    this.estimated = estimated;
    this.#memory = estimated;
    this.#projectorBytes = projectorBytes;
  }

  /**
   * Describes the LLM without loading it; the orchestrator loads it when a job
   * needs it. Measures its memory with llama.cpp's no-allocation load.
   * @throws GenaiError MODEL_NOT_FOUND, INVALID_MODEL
   */
  static async create(options: ManagedLlamaOptions): Promise<ManagedLlama> {
    if (typeof options?.modelPath !== "string") throw new GenaiError("INVALID_ARGUMENT", "modelPath must be a string");
    const c = options.context ?? {};
    const estimated = await measureLlamaMemory(options.modelPath, {
      gpuLayers: typeof options.load?.gpuLayers === "number" ? options.load.gpuLayers : LOAD_DEFAULTS.gpuLayers,
      contextSize: c.contextSize,
      batchSize: c.batchSize,
      embeddings: c.embeddings,
      flashAttention: c.flashAttention,
      device: options.load?.device,
      rpcServers: options.load?.rpcServers,
      rpcTimeouts: options.load?.rpcTimeouts,
      tensorSplit: options.load?.tensorSplit,
    });
    const projector = typeof options.load?.mmproj === "string" ? (await readGgufSummary(options.load.mmproj)).tensorDataBytes : 0;
    return new ManagedLlama(options, withProjector(estimated, projector), projector);
  }

  get residency(): Residency {
    return this.#context ? "resident" : this.#model ? "contextFreed" : "unloaded";
  }
  get inUse(): boolean {
    return this.#users > 0;
  }
  get lastUsedAt(): number {
    return this.#lastUsedAt;
  }
  /** Counts the jobs using it: in use until every one that started has ended. */
  setInUse(inUse: boolean): void {
    this.#users = Math.max(0, this.#users + (inUse ? 1 : -1));
    this.#lastUsedAt = Date.now();
  }

  /** The live context. @throws GenaiError DISPOSED when it is not resident (run work through the orchestrator). */
  get context(): LlamaContext {
    if (!this.#context) throw new GenaiError("DISPOSED", `${this.id} is not resident (${this.residency}); run work through the orchestrator`);
    return this.#context;
  }

  /** Bytes of the host copy of the conversation while the context is freed (0 when resident). */
  get savedStateBytes(): number {
    return this.#saved?.state.byteLength ?? 0;
  }

  holdings(): Holding[] {
    if (this.residency === "unloaded") return [];
    return toHoldings(this.#memory, this.residency === "resident");
  }

  residentHoldings(): Holding[] {
    return toHoldings(this.#memory, true);
  }

  /** Where the last free() and restore() spent their time (a copy). */
  get timings(): ManagedLlamaTimings {
    return { ...this.#timings };
  }

  async free(level: Exclude<Residency, "resident">): Promise<void> {
    if (this.#users > 0) throw new GenaiError("BUSY", `${this.id} is in use`);
    const t = this.#timings;
    t.saveStateMs = t.freeContextMs = t.unloadMs = 0;
    if (this.#context) {
      let t0 = performance.now();
      this.#saved = await this.#context.saveState();
      t.saveStateMs = performance.now() - t0;
      t0 = performance.now();
      await this.#context.dispose();
      this.#context = undefined;
      t.freeContextMs = performance.now() - t0;
    }
    if (level === "unloaded" && this.#model) {
      const t0 = performance.now();
      await this.#model.dispose();
      this.#model = undefined;
      t.unloadMs = performance.now() - t0;
    }
  }

  async restore(): Promise<void> {
    const t = this.#timings;
    t.loadMs = t.createContextMs = t.restoreStateMs = 0;
    if (!this.#model) {
      const t0 = performance.now();
      this.#model = await LlamaModel.load(this.modelPath, this.#loadOptions ?? {});
      t.loadMs = performance.now() - t0;
    }
    if (!this.#context) {
      let t0 = performance.now();
      const ctx = await this.#model.createContext(this.#contextOptions);
      t.createContextMs = performance.now() - t0;
      t0 = performance.now();
      if (this.#saved) await ctx.restoreState(this.#saved);
      t.restoreStateMs = performance.now() - t0;
      this.#saved = undefined;
      this.#context = ctx;
      this.#memory = withProjector(ctx.memory(), this.#projectorBytes);
    }
  }

  /** Frees everything, including the saved conversation. */
  async dispose(): Promise<void> {
    this.#saved = undefined;
    await this.#context?.dispose();
    this.#context = undefined;
    await this.#model?.dispose();
    this.#model = undefined;
  }
}
