/**
 * ManagedDiffusion: a diffusion model the orchestrator can unload and reload.
 * sd.cpp keeps no per-request state worth saving, so both free levels unload
 * the model; restore loads it again (mmap keeps this fast).
 *
 * Memory: its weights, from the files' tensor sizes (readDiffusionFiles) once
 * the headers are read — by create(), else at the first restore(); until then
 * the files' bytes. An image job's compute buffers are the job's own memory
 * ({@link ManagedDiffusion.imageMemory}, which submitImageBatch reserves), from
 * estimateDiffusionMemory's fits (SD1, SDXL, Z-Image, Flux 2 [klein], Qwen-Image;
 * the DiT families at the size's promptTokens: submitImageBatch and the
 * server pass promptTokenBound(prompt, negativePrompt), else DEFAULT_PROMPT_TOKENS).
 */
import fs from "node:fs";
import { GenaiError } from "../errors";
import type { DiffusionEngine, DiffusionLoadOptions } from "../diffusion/engine";
import { type DiffusionFilesInfo, type DiffusionImageSize, type DiffusionMemoryEstimate, estimateFromFiles, readDiffusionFiles } from "../diffusion/memory";
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
  #files: DiffusionFilesInfo | undefined;

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
    await m.#readFiles();
    return m;
  }

  /** The headers, once; a file the estimate cannot read leaves the file-size count (the load reports the file's error). */
  async #readFiles(): Promise<void> {
    if (this.#files) return;
    try {
      this.#files = await readDiffusionFiles(this.#options.load);
    } catch {
      // .ckpt and other formats without a tensor header: weights stay the files' bytes, compute unknown
    }
  }

  /**
   * estimateDiffusionMemory's answer for one generation of `image` with this
   * model's load options; undefined until the headers are read (create(), or
   * the first restore()) or when they could not be.
   * @throws GenaiError INVALID_ARGUMENT (sizes not multiples of 64 pixels)
   */
  estimate(image: DiffusionImageSize): DiffusionMemoryEstimate | undefined {
    return this.#files && estimateFromFiles(this.#files, this.#options.load, image);
  }

  /**
   * The memory an image job of `image` needs beyond the resident weights,
   * as holdings of kind "compute" (bytes per device): sd.cpp's compute
   * buffers for the text encoder, the UNet and the VAE decode run one after
   * the other, so each device holds the largest of its parts (keepClipOnCpu /
   * keepVaeOnCpu put those parts, weights and compute, on the CPU). With
   * offloadParamsToCpu the weights stay on the CPU and each part's weights
   * are copied to the device while it runs: the device then holds the largest
   * part's weights + compute (from sd.cpp's code; not measured here).
   * Empty — nothing reserved beyond the weights — when estimate() has no
   * compute part (not read yet, or an unmeasured family: see its computeUnknownReason).
   * @throws GenaiError INVALID_ARGUMENT (sizes not multiples of 64 pixels)
   */
  imageMemory(image: DiffusionImageSize): Holding[] {
    const e = this.estimate(image);
    if (!e?.compute) return [];
    const peak = new Map<string, number>();
    const offload = this.#options.load.offloadParamsToCpu === true;
    for (const part of ["textEncoder", "diffusion", "vae"] as const) {
      const d = this.#partDevice(part);
      const bytes = e.compute[part] + (offload && d !== "CPU" ? e.weights[part] : 0);
      peak.set(d, Math.max(peak.get(d) ?? 0, bytes));
    }
    return [...peak].map(([device, bytes]) => ({ device, kind: "compute" as const, bytes }));
  }

  /** Where sd.cpp runs a part: the model's device, or the CPU for keepClipOnCpu / keepVaeOnCpu. */
  #partDevice(part: "textEncoder" | "diffusion" | "vae"): string {
    const o = this.#options.load;
    if ((part === "textEncoder" && o.keepClipOnCpu) || (part === "vae" && o.keepVaeOnCpu)) return "CPU";
    return this.#device ?? "CPU";
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
    if (!this.#files) return [{ device: this.#device ?? "CPU", kind: "weights", bytes: this.#bytes }];
    const w = new Map<string, number>();
    const offload = this.#options.load.offloadParamsToCpu === true;
    for (const part of ["textEncoder", "diffusion", "vae"] as const) {
      const d = offload ? "CPU" : this.#partDevice(part);
      w.set(d, (w.get(d) ?? 0) + this.#files.weights[part]);
    }
    return [...w].filter(([, bytes]) => bytes > 0).map(([device, bytes]) => ({ device, kind: "weights" as const, bytes }));
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
    await this.#readFiles();
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
