/**
 * ManagedDiffusion: a diffusion model the orchestrator can unload and reload.
 * sd.cpp keeps no per-request state worth saving, so both free levels unload
 * the model; restore loads it again (mmap keeps this fast). Its size in the
 * ledger is its files' bytes (weights).
 */
import fs from "node:fs";
import { GenaiError } from "../errors";
import type { DiffusionEngine, DiffusionLoadOptions } from "../diffusion/engine";
import { DiffusionModel } from "../diffusion/model";
import { nativeDiffusionEngine } from "../diffusion/native-engine";
import type { Holding, ManagedResource, Residency } from "./resource";

export interface ManagedDiffusionOptions {
  /** Unique id (default: the model path). */
  id?: string;
  load: DiffusionLoadOptions;
  /** The engine (default the addon's stable-diffusion.cpp). */
  engine?: DiffusionEngine;
  /**
   * Device the ledger counts the weights on. Default: the device the engine
   * places the model on — resolved up front by ManagedDiffusion.create(), by
   * the constructor only once the model has loaded ("CPU" before that).
   */
  device?: string;
}

export class ManagedDiffusion implements ManagedResource {
  readonly id: string;
  readonly engine = "diffusion";
  #options: ManagedDiffusionOptions;
  #model: DiffusionModel | undefined;
  #inUse = false;
  #lastUsedAt = 0;
  #bytes: number;
  #device: string | undefined;

  constructor(options: ManagedDiffusionOptions) {
    const o = options.load;
    const files = [o.model, o.diffusionModel, o.vae, o.clipL, o.clipG, o.t5xxl, o.taesd].filter((p): p is string => !!p);
    if (files.length === 0) throw new GenaiError("INVALID_ARGUMENT", "load.model or load.diffusionModel is required");
    this.id = options.id ?? files[0];
    this.#options = options;
    this.#device = options.device;
    this.#bytes = files.reduce((s, p) => s + (fs.existsSync(p) ? fs.statSync(p).size : 0), 0);
  }

  /**
   * Like the constructor, with the device resolved before anything loads
   * (engine.deviceFor: GENAI_NATIVE_DEVICE / load.device and the registered backends).
   * @throws GenaiError INVALID_ARGUMENT (bad options or device), ENGINE_UNAVAILABLE
   */
  static async create(options: ManagedDiffusionOptions): Promise<ManagedDiffusion> {
    const m = new ManagedDiffusion(options);
    const engine = options.engine ?? nativeDiffusionEngine();
    m.#device ??= engine.deviceFor ? await engine.deviceFor(options.load) : "CPU";
    return m;
  }

  get residency(): Residency {
    return this.#model ? "resident" : "unloaded";
  }
  get inUse(): boolean {
    return this.#inUse;
  }
  get lastUsedAt(): number {
    return this.#lastUsedAt;
  }
  setInUse(inUse: boolean): void {
    this.#inUse = inUse;
    this.#lastUsedAt = Date.now();
  }

  /** The loaded model. @throws GenaiError DISPOSED when not resident (run work through the orchestrator). */
  get model(): DiffusionModel {
    if (!this.#model) throw new GenaiError("DISPOSED", `${this.id} is not loaded; run work through the orchestrator`);
    return this.#model;
  }

  residentHoldings(): Holding[] {
    return [{ device: this.#device ?? "CPU", kind: "weights", bytes: this.#bytes }];
  }

  holdings(): Holding[] {
    return this.#model ? this.residentHoldings() : [];
  }

  async free(): Promise<void> {
    if (this.#inUse) throw new GenaiError("BUSY", `${this.id} is in use`);
    const m = this.#model;
    this.#model = undefined;
    await m?.dispose();
  }

  async restore(): Promise<void> {
    if (this.#model) return;
    this.#model = await DiffusionModel.load(this.#options.load, this.#options.engine ?? nativeDiffusionEngine());
    if (this.#device === undefined) {
      // where the engine put it: the device holding most of its bytes
      const held = Object.entries(this.#model.memoryBytes).sort((a, b) => b[1] - a[1]);
      this.#device = held[0]?.[0] ?? "CPU";
    }
  }

  async dispose(): Promise<void> {
    await this.free();
  }
}
