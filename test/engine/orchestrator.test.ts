import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GenaiError, LlamaModel } from "../../lib/index";
import {
  ManagedDiffusion,
  ManagedLlama,
  Orchestrator,
  estimateLlamaFromMetadata,
  fitLlamaParams,
  measureLlamaMemory,
  type Holding,
  type ManagedResource,
  type OffloadEvent,
  type Residency,
} from "../../lib/orchestrator/index";
import { storiesPath, THREADS } from "../helpers";

/** A test double of an engine resource (e.g. a diffusion model): holds `weights` bytes on `device` (default CPU) when resident. */
class FakeResource implements ManagedResource {
  readonly engine: string;
  residency: Residency = "unloaded";
  inUse = false;
  lastUsedAt: number;
  readonly device: string;
  log: string[] = [];
  constructor(
    readonly id: string,
    readonly weights: number,
    readonly context = 0,
    options: { engine?: string; lastUsedAt?: number; resident?: boolean; device?: string } = {},
  ) {
    this.device = options.device ?? "CPU";
    this.engine = options.engine ?? "diffusion";
    this.lastUsedAt = options.lastUsedAt ?? 0;
    if (options.resident) this.residency = "resident";
  }
  holdings(): Holding[] {
    const h: Holding[] = [];
    if (this.residency !== "unloaded") h.push({ device: this.device, kind: "weights", bytes: this.weights });
    if (this.residency === "resident" && this.context) h.push({ device: this.device, kind: "kv", bytes: this.context });
    return h;
  }
  residentHoldings(): Holding[] {
    return [
      { device: this.device, kind: "weights", bytes: this.weights },
      ...(this.context ? [{ device: this.device, kind: "kv" as const, bytes: this.context }] : []),
    ];
  }
  async free(level: Exclude<Residency, "resident">): Promise<void> {
    this.log.push(`free:${level}`);
    this.residency = level === "unloaded" || this.residency === "unloaded" ? "unloaded" : "contextFreed";
  }
  async restore(): Promise<void> {
    this.log.push("restore");
    this.residency = "resident";
  }
  setInUse(v: boolean): void {
    this.inUse = v;
    this.lastUsedAt = Date.now();
  }
}

const total = (hs: Holding[]) => hs.reduce((s, h) => s + h.bytes, 0);
/**
 * The device an LLM's KV cache lives on: "CPU", or the GPU device that
 * GENAI_NATIVE_DEVICE selects (CI runs this file on lavapipe Vulkan too). Budgets
 * below are set on it alone; the other devices (the host part of a GPU load) stay unbudgeted.
 */
const kvDevice = (hs: Holding[]) => [...hs].filter((h) => h.kind === "kv").sort((a, b) => b.bytes - a.bytes)[0]?.device ?? "CPU";
/** What `hs` holds on the device its KV cache lives on. */
const onKvDevice = (hs: Holding[]) => hs.filter((h) => h.device === kvDevice(hs));
const P1 = "Once upon a time, there was a little dog named Max.";

let stories: string;
beforeAll(async () => {
  stories = await storiesPath();
});

describe("ManagedLlama free/restore keeps the conversation token-exact", () => {
  let baseline: { turn1: string; turn2: string };
  beforeAll(async () => {
    // the same conversation without any free/restore cycle
    const model = await LlamaModel.load(stories);
    const ctx = await model.createContext({ contextSize: 1024, threads: THREADS });
    const turn1 = (await ctx.complete(P1, { temperature: 0, maxTokens: 60 })).text;
    const turn2 = (await ctx.complete(P1 + turn1 + " Then", { temperature: 0, maxTokens: 60 })).text;
    await model.dispose();
    baseline = { turn1, turn2 };
  });

  for (const level of ["contextFreed", "unloaded"] as const) {
    it(`after freeing to ${level}`, async () => {
      const llm = await ManagedLlama.create({ modelPath: stories, context: { contextSize: 1024, threads: THREADS } });
      const orch = new Orchestrator({ budgets: { CPU: 1e12 } });
      orch.add(llm);
      try {
        const t1 = await orch.submit({ kind: "llm", resource: llm, run: () => llm.context.complete(P1, { temperature: 0, maxTokens: 60 }) }).promise;
        expect(t1.text).toBe(baseline.turn1);
        await llm.free(level);
        expect(llm.residency).toBe(level);
        expect(llm.savedStateBytes).toBeGreaterThan(0);
        const restores: number[] = [];
        orch.on("restore", (e) => restores.push(e.ms));
        const t2 = await orch.submit({ kind: "llm", resource: llm, run: () => llm.context.complete(P1 + t1.text + " Then", { temperature: 0, maxTokens: 60 }) })
          .promise;
        expect(restores).toHaveLength(1);
        expect(llm.residency).toBe("resident");
        expect(t2.text).toBe(baseline.turn2);
        // the restored KV cache held turn 1: only the new tokens were decoded
        const turn1Tokens = (await llm.context.model.tokenize(P1 + t1.text)).length;
        expect(t2.timings.reusedTokens).toBeGreaterThanOrEqual(turn1Tokens - 2);
      } finally {
        orch.dispose();
        await llm.dispose();
      }
    });
  }
});

describe("Orchestrator with real LLMs under an artificial budget", () => {
  let llmA: ManagedLlama;
  let llmB: ManagedLlama;
  beforeAll(async () => {
    llmA = await ManagedLlama.create({ id: "A", modelPath: stories, context: { contextSize: 2048, threads: THREADS } });
    llmB = await ManagedLlama.create({ id: "B", modelPath: stories, context: { contextSize: 2048, threads: THREADS } });
  });
  afterAll(async () => {
    await llmA?.dispose();
    await llmB?.dispose();
  });

  it("measures memory with llama.cpp (no allocation) and matches what loading allocates", async () => {
    const estimated = total(llmA.residentHoldings());
    const orch = new Orchestrator({ budgets: { CPU: 1e12 } });
    orch.add(llmA);
    await orch.submit({ kind: "llm", resource: llmA, run: async () => undefined }).promise;
    const actual = total(llmA.holdings());
    expect(actual).toBeGreaterThan(0);
    expect(Math.abs(estimated - actual) / actual).toBeLessThan(0.01);
    const measured = await measureLlamaMemory(stories, { contextSize: 2048 });
    // "auto" turns flash attention off where the device has no kernel for the
    // head size (CUDA: none for stories260K's 8): then its plan is (nearly) the "off" one
    const measuredOff = await measureLlamaMemory(stories, { contextSize: 2048, flashAttention: "off" });
    const measuredOn = await measureLlamaMemory(stories, { contextSize: 2048, flashAttention: "on" });
    const computeOf = (m: typeof measured) => m.reduce((s, d) => s + d.compute, 0);
    const faUsed = Math.abs(computeOf(measured) - computeOf(measuredOn)) < Math.abs(computeOf(measured) - computeOf(measuredOff));
    if (kvDevice(llmA.residentHoldings()) === "CPU") expect(faUsed).toBe(true); // the CPU backend runs every head size
    const byMetadata = await estimateLlamaFromMetadata(stories, 2048, { flashAttention: faUsed });
    // the formula's compute buffer is the one of the device running the layers
    // (with a GPU, llama.cpp adds a host-side buffer the formula does not count)
    const main = measured.find((d) => d.device === kvDevice(llmA.residentHoldings()))!;
    const measuredTotal = measured.reduce((s, d) => s + d.model + d.context, 0) + main.compute;
    expect(Math.abs(byMetadata.total - measuredTotal) / measuredTotal).toBeLessThan(0.15);
    // and without flash attention, on every device
    const offFormula = await estimateLlamaFromMetadata(stories, 2048, { flashAttention: false });
    const mainOff = measuredOff.find((d) => d.device === main.device)!;
    const offTotal = measuredOff.reduce((s, d) => s + d.model + d.context, 0) + mainOff.compute;
    expect(Math.abs(offFormula.total - offTotal) / offTotal).toBeLessThan(0.15);
    const kvActual = measured.reduce((s, d) => s + d.context, 0);
    expect(byMetadata.kv).toBe(kvActual); // the KV formula is exact
    const weightsActual = measured.reduce((s, d) => s + d.model, 0);
    expect(Math.abs(byMetadata.weights - weightsActual) / weightsActual).toBeLessThan(0.05);
    console.log(
      `estimate error: no-alloc measurement ${(((estimated - actual) / actual) * 100).toFixed(2)} %; metadata formula total ${(((byMetadata.total - measuredTotal) / measuredTotal) * 100).toFixed(1)} % (weights ${(((byMetadata.weights - weightsActual) / weightsActual) * 100).toFixed(2)} %, KV 0 %)`,
    );
    orch.dispose();
    await llmA.free("unloaded");
  });

  it("two LLMs competing for one budget: each use frees the other, conversations stay exact", async () => {
    const dev = kvDevice(llmA.residentHoldings());
    const one = total(onKvDevice(llmA.residentHoldings()));
    const orch = new Orchestrator({ budgets: { [dev]: Math.floor(one * 1.5) } });
    orch.add(llmA);
    orch.add(llmB);
    const offloads: OffloadEvent[] = [];
    orch.on("offload", (e: OffloadEvent) => offloads.push(e));
    try {
      const a1 = await orch.submit({ kind: "llm", resource: llmA, run: () => llmA.context.complete(P1, { temperature: 0, maxTokens: 40 }) }).promise;
      const b1 = await orch.submit({ kind: "llm", resource: llmB, run: () => llmB.context.complete("The sun was shining.", { temperature: 0, maxTokens: 40 }) })
        .promise;
      expect(offloads.map((e) => `${e.resource}:${e.level}`)).toEqual(["A:contextFreed"]); // the context alone made room
      expect(llmA.residency).toBe("contextFreed");
      const a2 = await orch.submit({ kind: "llm", resource: llmA, run: () => llmA.context.complete(P1 + a1.text + " Then", { temperature: 0, maxTokens: 40 }) })
        .promise;
      expect(offloads.map((e) => `${e.resource}:${e.level}`)).toEqual(["A:contextFreed", "B:contextFreed"]);
      expect(llmB.residency).toBe("contextFreed");
      // what A would have said without any of this
      const model = await LlamaModel.load(stories);
      const ctx = await model.createContext({ contextSize: 2048, threads: THREADS });
      await ctx.complete(P1, { temperature: 0, maxTokens: 40 });
      const expected = await ctx.complete(P1 + a1.text + " Then", { temperature: 0, maxTokens: 40 });
      await model.dispose();
      expect(a2.text).toBe(expected.text);
      expect(b1.tokenCount).toBe(40);
      for (const d of orch.ledger()) expect(d.used).toBeLessThanOrEqual(d.budget);
    } finally {
      orch.dispose();
      await llmA.free("unloaded");
      await llmB.free("unloaded");
    }
  });

  it("an image job frees the LLM's context first, then restores it with the conversation", async () => {
    const llm = llmA;
    const dev = kvDevice(llm.residentHoldings());
    const resident = total(onKvDevice(llm.residentHoldings()));
    const kv = total(onKvDevice(llm.residentHoldings()).filter((h) => h.kind !== "weights"));
    const image = new FakeResource("sd", Math.floor(kv / 2), 0, { device: dev });
    // the LLM fits alone; with the image model it only fits once its context is freed
    const orch = new Orchestrator({ budgets: { [dev]: resident + Math.floor(kv / 4) } });
    orch.add(llm);
    orch.add(image);
    const events: string[] = [];
    orch.on("offload", (e: OffloadEvent) => events.push(`offload ${e.resource} ${e.level}`));
    orch.on("restore", (e) => events.push(`restore ${e.resource}`));
    orch.on("reserve", (e) => events.push(`reserve ${e.job}`));
    orch.on("release", (e) => events.push(`release ${e.job}`));
    try {
      const t1 = await orch.submit({ kind: "llm", resource: llm, run: () => llm.context.complete(P1, { temperature: 0, maxTokens: 50 }) }).promise;
      events.length = 0;
      const job = orch.submit({ kind: "image", resource: image, run: async () => "png" });
      expect(await job.promise).toBe("png");
      await orch.queue.onIdle();
      expect(events[0]).toBe("offload A contextFreed");
      expect(events).toContain(`reserve ${job.id}`);
      expect(events.indexOf(`release ${job.id}`)).toBeGreaterThan(events.indexOf(`reserve ${job.id}`));
      // after the image job, the LLM came back (making room by freeing the idle image model)
      const after = events.slice(events.indexOf(`release ${job.id}`));
      expect(after.filter((e) => e.startsWith("offload") || e.startsWith("restore"))).toEqual(["offload sd unloaded", "restore A"]);
      expect(llm.residency).toBe("resident");
      expect(orch.registry.get(job.id)?.status).toBe("done");
      const t2 = await orch.submit({ kind: "llm", resource: llm, run: () => llm.context.complete(P1 + t1.text + " Then", { temperature: 0, maxTokens: 30 }) })
        .promise;
      expect(t2.timings.reusedTokens).toBeGreaterThan(10);
    } finally {
      orch.dispose();
      await llm.free("unloaded");
    }
  });

  it("when freeing the context is not enough, the weights go too", async () => {
    const llm = llmA;
    const dev = kvDevice(llm.residentHoldings());
    const resident = total(onKvDevice(llm.residentHoldings()));
    // bigger than what freeing the context alone makes room for (on a GPU a small
    // model's context, with its compute buffer, can be most of what it holds)
    const weights = total(onKvDevice(llm.residentHoldings()).filter((h) => h.kind === "weights"));
    const image = new FakeResource("sd-big", resident - Math.floor(weights / 2), 0, { device: dev });
    const orch = new Orchestrator({ budgets: { [dev]: resident + 1000 } });
    orch.add(llm);
    orch.add(image);
    const offloads: string[] = [];
    orch.on("offload", (e: OffloadEvent) => offloads.push(`${e.resource}:${e.level}`));
    try {
      await orch.submit({ kind: "llm", resource: llm, run: async () => llm.context.complete(P1, { temperature: 0, maxTokens: 5 }) }).promise;
      await orch.submit({ kind: "image", resource: image, run: async () => undefined }).promise;
      expect(offloads.slice(0, 2)).toEqual(["A:contextFreed", "A:unloaded"]);
      await orch.queue.onIdle();
      expect(llm.residency).toBe("resident"); // restored afterwards
    } finally {
      orch.dispose();
      await llm.free("unloaded");
    }
  });
});

describe("Orchestrator eviction order and limits (test doubles)", () => {
  it("frees contexts before weights, lowest priority and least recently used first", async () => {
    const bg = new FakeResource("bg", 100, 100, { engine: "x", lastUsedAt: 50, resident: true });
    const oldI = new FakeResource("old", 100, 100, { engine: "x", lastUsedAt: 10, resident: true });
    const newI = new FakeResource("new", 100, 100, { engine: "x", lastUsedAt: 90, resident: true });
    const job = new FakeResource("job", 550, 0, { engine: "y" });
    const orch = new Orchestrator({ budgets: { CPU: 700 }, restoreAfterJob: false });
    orch.add(bg, { priority: "background" });
    orch.add(oldI);
    orch.add(newI);
    orch.add(job);
    const order: string[] = [];
    orch.on("offload", (e: OffloadEvent) => order.push(`${e.resource}:${e.level}`));
    await orch.submit({ kind: "t", resource: job, run: async () => undefined }).promise;
    // needs 550 of 700 with 600 used (short 450): the three contexts free 300 (short 150),
    // then weights, background first, then the least recently used: 2 × 100
    expect(order).toEqual(["bg:contextFreed", "old:contextFreed", "new:contextFreed", "bg:unloaded", "old:unloaded"]);
    expect(newI.residency).toBe("contextFreed");
    orch.dispose();
  });

  it("never frees a resource of higher priority than the job: OUT_OF_MEMORY instead (no waiting for it either)", async () => {
    const vip = new FakeResource("vip", 500, 0, { engine: "x", resident: true });
    const job = new FakeResource("job", 400, 0, { engine: "y" });
    const orch = new Orchestrator({ budgets: { CPU: 600 } });
    orch.add(vip, { priority: "immediate" });
    orch.add(job);
    const err = await orch.submit({ kind: "t", resource: job, priority: "background", run: async () => undefined }).promise.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GenaiError);
    expect((err as GenaiError).code).toBe("OUT_OF_MEMORY");
    expect(vip.residency).toBe("resident");
    const q = orch.submit({ kind: "t", resource: job, priority: "background", run: async () => undefined });
    await q.promise.catch(() => undefined);
    expect(orch.registry.get(q.id)?.status).toBe("error");
    expect(orch.registry.get(q.id)?.error?.code).toBe("OUT_OF_MEMORY");
    orch.dispose();
  });

  it("extra job memory counts in the ledger while the job runs", async () => {
    const orch = new Orchestrator({ budgets: { CPU: 1000 } });
    let seen = 0;
    await orch.submit({
      kind: "t",
      memory: [{ device: "CPU", kind: "compute", bytes: 300 }],
      run: async () => {
        seen = orch.ledger().find((d) => d.device === "CPU")!.used;
      },
    }).promise;
    expect(seen).toBe(300);
    expect(orch.ledger().find((d) => d.device === "CPU")!.used).toBe(0);
    await expect(
      orch.submit({ kind: "t", memory: [{ device: "CPU", kind: "compute", bytes: 2000 }], run: async () => undefined }).promise,
    ).rejects.toMatchObject({ code: "OUT_OF_MEMORY" });
    orch.dispose();
  });

  it("jobs run by priority; cancelling a queued job and a running one", async () => {
    const orch = new Orchestrator({ budgets: { CPU: 1e9 } });
    const order: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const first = orch.submit({
      kind: "t",
      engine: "e",
      run: async () => {
        order.push("first");
        await gate;
      },
    });
    await new Promise((r) => setTimeout(r, 5)); // first is running; the rest queue behind it
    const bg = orch.submit({
      kind: "t",
      engine: "e",
      priority: "background",
      run: async () => {
        order.push("bg");
      },
    });
    const inter = orch.submit({
      kind: "t",
      engine: "e",
      priority: "interactive",
      run: async () => {
        order.push("inter");
      },
    });
    const imm = orch.submit({
      kind: "t",
      engine: "e",
      priority: "immediate",
      run: async () => {
        order.push("imm");
      },
    });
    const dropped = orch.submit({
      kind: "t",
      engine: "e",
      priority: "immediate",
      run: async () => {
        order.push("dropped");
      },
    });
    await new Promise((r) => setTimeout(r, 10));
    expect(dropped.position()).toBe(1);
    dropped.cancel();
    release();
    await Promise.all([first.promise, bg.promise, inter.promise, imm.promise]);
    await expect(dropped.promise).rejects.toMatchObject({ code: "ABORTED" });
    expect(order).toEqual(["first", "imm", "inter", "bg"]);
    expect(orch.registry.get(dropped.id)?.status).toBe("cancelled");

    const running = orch.submit({
      kind: "t",
      engine: "e",
      run: (signal) => new Promise((_, reject) => signal.addEventListener("abort", () => reject(new GenaiError("ABORTED", "stopped")))),
    });
    await new Promise((r) => setTimeout(r, 10));
    running.cancel();
    await expect(running.promise).rejects.toMatchObject({ code: "ABORTED" });
    expect(orch.registry.get(running.id)?.status).toBe("cancelled");
    orch.dispose();
  });
});

describe("auto-fit", () => {
  it("picks the largest context that fits a budget, and refuses when nothing fits", async () => {
    const full = await measureLlamaMemory(stories, { contextSize: 2048 });
    const dev = full.find((d) => d.context > 0)!.device; // CPU, or the GPU device under test
    const bytesOn = (mem: typeof full) => mem.filter((d) => d.device === dev).reduce((s, d) => s + d.model + d.context + d.compute, 0);
    const unlimited = await fitLlamaParams(stories, { budgets: { [dev]: 1e12 } });
    expect(unlimited.contextSize).toBe(2048); // the training context
    expect(unlimited.gpuLayers).toBe(-1);
    const budget = Math.floor(bytesOn(full) * 0.7);
    const fit = await fitLlamaParams(stories, { budgets: { [dev]: budget } });
    // on a GPU, fewer layers come first; on the CPU only the context can shrink
    if (dev === "CPU") expect(fit.contextSize).toBeLessThan(2048);
    else expect(fit.gpuLayers !== -1 || fit.contextSize < 2048).toBe(true);
    expect(fit.contextSize).toBeGreaterThanOrEqual(512);
    expect(bytesOn(fit.memory)).toBeLessThanOrEqual(budget);
    if (fit.contextSize < 2048) {
      // one step (256 tokens) larger would not have fitted
      const bigger = await measureLlamaMemory(stories, { gpuLayers: fit.gpuLayers, contextSize: fit.contextSize + 256 });
      expect(bytesOn(bigger)).toBeGreaterThan(budget);
    }
    // and the fitted parameters really load
    const model = await LlamaModel.load(stories, { gpuLayers: fit.gpuLayers });
    const ctx = await model.createContext({ contextSize: fit.contextSize, threads: THREADS });
    expect(ctx.info.contextSize).toBe(fit.contextSize);
    await model.dispose();
    await expect(fitLlamaParams(stories, { budgets: { [dev]: 1_000_000, CPU: 1_000_000 } })).rejects.toMatchObject({ code: "OUT_OF_MEMORY" });
  });
});

describe("ManagedDiffusion with the orchestrator (engine test double)", () => {
  it("counts its weights on the device the engine placed them on: constructor after the first load, create() before", async () => {
    const fs = await import("node:fs");
    const os = await import("node:os");
    const path = await import("node:path");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "genai-sd-"));
    const file = path.join(dir, "sd.bin");
    fs.writeFileSync(file, Buffer.alloc(1234));
    const engine = {
      available: true,
      async load() {
        return {
          samplers: ["euler"],
          schedulers: ["discrete"],
          memoryBytes: { CPU: 100, Fake0: 1134 },
          async generate() {
            return [];
          },
          dispose() {},
        };
      },
    };
    try {
      const byNew = new ManagedDiffusion({ load: { model: file }, engine });
      expect(byNew.residentHoldings()).toEqual([{ device: "CPU", kind: "weights", bytes: 1234 }]); // not known yet
      await byNew.restore();
      expect(byNew.holdings()).toEqual([{ device: "Fake0", kind: "weights", bytes: 1234 }]);
      await byNew.free();
      expect(byNew.residentHoldings()[0].device).toBe("Fake0"); // remembered for the next reload
      const byCreate = await ManagedDiffusion.create({ load: { model: file }, engine: { ...engine, deviceFor: async () => "Fake0" } });
      expect(byCreate.residentHoldings()[0].device).toBe("Fake0");
      const pinned = await ManagedDiffusion.create({ load: { model: file }, engine: { ...engine, deviceFor: async () => "Fake0" }, device: "Fake1" });
      expect(pinned.residentHoldings()[0].device).toBe("Fake1");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an image job loads the diffusion model after freeing the LLM's context, and the LLM comes back", async () => {
    const fs = await import("node:fs");
    const os = await import("node:os");
    const path = await import("node:path");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "genai-sd-"));
    const llm = await ManagedLlama.create({ id: "llm", modelPath: stories, context: { contextSize: 2048, threads: THREADS } });
    const dev = kvDevice(llm.residentHoldings());
    const kv = total(onKvDevice(llm.residentHoldings()).filter((h) => h.kind !== "weights"));
    const weightsFile = path.join(dir, "sd.bin");
    fs.writeFileSync(weightsFile, Buffer.alloc(Math.floor(kv / 2))); // the double's "model" size
    let loads = 0;
    const engine = {
      available: true,
      async load() {
        loads++;
        return {
          samplers: ["euler_a"],
          schedulers: ["discrete"],
          memoryBytes: { [dev]: fs.statSync(weightsFile).size },
          async generate(p: { width: number; height: number; seed: number; count: number }) {
            return Array.from({ length: p.count }, (_, i) => ({
              data: new Uint8Array(p.width * p.height * 3).fill(p.seed + i),
              width: p.width,
              height: p.height,
              channels: 3 as const,
            }));
          },
          dispose() {},
        };
      },
    };
    // create() asks the engine where the model will live, before anything loads
    const sd = await ManagedDiffusion.create({ id: "sd", load: { model: weightsFile }, engine: { ...engine, deviceFor: async () => dev } });
    expect(sd.residentHoldings()).toEqual([{ device: dev, kind: "weights", bytes: Math.floor(kv / 2) }]);
    const orch = new Orchestrator({ budgets: { [dev]: total(onKvDevice(llm.residentHoldings())) + Math.floor(kv / 4) } });
    orch.add(llm);
    orch.add(sd);
    const offloads: string[] = [];
    orch.on("offload", (e: OffloadEvent) => offloads.push(`${e.resource}:${e.level}`));
    try {
      const t1 = await orch.submit({ kind: "llm", resource: llm, run: () => llm.context.complete(P1, { temperature: 0, maxTokens: 30 }) }).promise;
      const images = await orch.submit({
        kind: "image",
        resource: sd,
        run: () => sd.model.generate({ prompt: "a dog", width: 64, height: 64, steps: 2, count: 2, seed: 5 }).done,
      }).promise;
      expect(images.map((i) => i.seed)).toEqual([5, 6]);
      expect(loads).toBe(1);
      expect(offloads[0]).toBe("llm:contextFreed");
      await orch.queue.onIdle();
      expect(offloads).toContain("sd:unloaded");
      expect(llm.residency).toBe("resident");
      expect(sd.residency).toBe("unloaded");
      const t2 = await orch.submit({ kind: "llm", resource: llm, run: () => llm.context.complete(P1 + t1.text + " Then", { temperature: 0, maxTokens: 10 }) })
        .promise;
      expect(t2.timings.reusedTokens).toBeGreaterThan(10);
    } finally {
      orch.dispose();
      await llm.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
