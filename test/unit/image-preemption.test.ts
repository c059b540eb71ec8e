// Preemption (issue 14): a background image batch run through the
// orchestrator (runImageBatch) gives way between two images to a job of a
// higher priority — one waiting for its engine slot, or for the memory the
// diffusion model holds — and then goes on with its remaining seeds, as one
// job with one registry record. The engine is the test double of the
// DiffusionEngine interface.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DiffusionModel, type EngineEvent, type EngineGenerateParams, type ImageProgress, type RawImage } from "../../lib/diffusion/index";
import {
  ManagedDiffusion,
  Orchestrator,
  runImageBatch,
  type Holding,
  type ManagedResource,
  type OffloadEvent,
  type Residency,
  type WaitEvent,
  type YieldEvent,
} from "../../lib/orchestrator/index";
import type { JobRecord } from "../../lib/orchestrator/registry";
import { FakeModel, fakeEngine } from "../fakes/diffusion-engine";
import { tempDir } from "../helpers";

/** The fake engine, logging what it does by seed: "generate 42×4", "sample 43" (first step of that image), "image 43" (decoded). */
class LoggedModel extends FakeModel {
  constructor(
    readonly log: string[],
    stepMs: number,
  ) {
    super(stepMs);
  }
  override generate(p: EngineGenerateParams, onEvent: (e: EngineEvent) => void, cancel: { mode: "all" | "newLatents" | undefined }): Promise<RawImage[]> {
    this.log.push(`generate ${p.seed}×${p.count}`);
    return super.generate(
      p,
      (e) => {
        if (e.type === "step" && e.step === 1) this.log.push(`sample ${p.seed + e.imageIndex}`);
        if (e.type === "image") this.log.push(`image ${p.seed + e.imageIndex}`);
        onEvent(e);
      },
      cancel,
    );
  }
}

/** An LLM-like resource double: `bytes` of weights on the CPU when resident. */
class FakeLlm implements ManagedResource {
  readonly engine = "llm";
  residency: Residency = "unloaded";
  inUse = false;
  lastUsedAt = 0;
  constructor(
    readonly id: string,
    readonly bytes: number,
  ) {}
  holdings(): Holding[] {
    return this.residency === "unloaded" ? [] : this.residentHoldings();
  }
  residentHoldings(): Holding[] {
    return [{ device: "CPU", kind: "weights", bytes: this.bytes }];
  }
  async free(level: Exclude<Residency, "resident">): Promise<void> {
    this.residency = level;
  }
  async restore(): Promise<void> {
    this.residency = "resident";
  }
  setInUse(v: boolean): void {
    this.inUse = v;
    this.lastUsedAt = Date.now();
  }
}

const BATCH = { prompt: "a lighthouse", width: 64, height: 64, steps: 5, count: 4, seed: 42, output: "both" as const };

describe("image batches give way between images (orchestrator, engine test double)", () => {
  let tmp: ReturnType<typeof tempDir>;
  let log: string[];
  let model: LoggedModel;
  let diffusion: ManagedDiffusion;
  let orch: Orchestrator;

  /** A diffusion model of 1000 bytes of weights (a sparse file) behind the fake engine. */
  async function setup(budget: number) {
    const file = path.join(tmp.dir, "sd.gguf");
    fs.writeFileSync(file, "");
    fs.truncateSync(file, 1000);
    log = [];
    model = new LoggedModel(log, 3);
    diffusion = await ManagedDiffusion.create({ load: { model: file }, engine: fakeEngine(model) });
    orch = new Orchestrator({ budgets: { CPU: budget } });
    orch.add(diffusion, { priority: "background" });
  }

  /** Submits the batch; `during(p)` is called on each of its progress reports (which also go to its record). */
  function submitBatch(during: (p: ImageProgress) => void = () => undefined, options: Partial<typeof BATCH> & { keepFinishedOnCancel?: boolean } = {}) {
    const progress: ImageProgress[] = [];
    const job = orch.submit({
      kind: "image",
      resource: diffusion,
      priority: "background",
      run: (signal, control) =>
        runImageBatch(diffusion, { ...BATCH, ...options }, signal, control, {
          onProgress: (p) => {
            progress.push(p);
            orch.registry.update(job.id, { progress: p });
            during(p);
          },
        }),
    });
    return { job, progress };
  }

  beforeEach(() => {
    tmp = tempDir();
  });
  afterEach(async () => {
    orch?.dispose();
    await diffusion?.free();
    tmp.cleanup();
  });

  it("an interactive job submitted during image 1 of 4 runs after it and before image 2; the batch then goes on with seeds 43..45", async () => {
    await setup(1e9);
    let seen: JobRecord | undefined;
    const yields: YieldEvent[] = [];
    orch.on("yield", (e: YieldEvent) => yields.push(e));
    let chat: ReturnType<typeof orch.submit<string>> | undefined;
    const { job, progress } = submitBatch((p) => {
      if (!chat && p.stage === "diffusion" && p.imageIndex === 0 && p.step === 2) {
        chat = orch.submit({
          kind: "chat",
          engine: "diffusion", // shares the batch's engine slot
          priority: "interactive",
          run: async () => {
            log.push("interactive job");
            seen = orch.registry.get(job.id);
            return "reply";
          },
        });
      }
    });
    const images = await job.promise;
    expect(await chat!.promise).toBe("reply");
    // order: image 42 finished (decoded), the interactive job, then image 43 starts
    expect(log).toEqual([
      "generate 42×4",
      "sample 42",
      "image 42",
      "interactive job",
      "generate 43×3",
      "sample 43",
      "sample 44",
      "sample 45",
      "image 43",
      "image 44",
      "image 45",
    ]);
    expect(images.map((i) => i.seed)).toEqual([42, 43, 44, 45]);
    expect(images.map((i) => i.raw!.data[0])).toEqual([42, 43, 44, 45]); // each made with its own seed
    expect(images.every((i) => i.png!.subarray(1, 4).toString("latin1") === "PNG")).toBe(true);
    // while it waited, its one record said so
    expect(seen).toMatchObject({ id: job.id, kind: "image", status: "pending", progress: { stage: "preempted", imageIndex: 1, imageCount: 4, step: 0 } });
    const waitedAt = (seen!.progress as ImageProgress).percent;
    expect(waitedAt).toBeGreaterThan(15);
    expect(waitedAt).toBeLessThan(35);
    expect(yields).toEqual([{ job: job.id, to: "interactive" }]);
    // progress over the whole batch: never back, image indexes of the batch, done at 100
    for (let i = 1; i < progress.length; i++) expect(progress[i].percent).toBeGreaterThanOrEqual(progress[i - 1].percent);
    expect(progress.every((p) => p.imageCount === 4)).toBe(true);
    const sampled = [...new Set(progress.filter((p) => p.stage === "diffusion").map((p) => p.imageIndex))];
    expect(sampled).toEqual([0, 1, 2, 3]);
    expect(progress.at(-1)).toMatchObject({ percent: 100, etaMs: 0 });
    const afterWait = progress.slice(progress.findIndex((p) => p.stage === "preempted") + 1).find((p) => p.stage === "diffusion");
    expect(afterWait).toMatchObject({ imageIndex: 1, step: 1 });
    expect(afterWait!.etaMs).toBeGreaterThan(0); // carried over the new generation's first step
    expect(orch.registry.get(job.id)).toMatchObject({ status: "done" });
  });

  it("an LLM job that needs the memory the image model holds waits for image 1 (not OUT_OF_MEMORY), then the batch takes its memory back", async () => {
    // room for the image model (1000 B) or the LLM (800 B), not both
    await setup(1500);
    const llm = new FakeLlm("llm", 800);
    orch.add(llm, { priority: "interactive" });
    const waits: WaitEvent[] = [];
    const offloads: string[] = [];
    orch.on("wait", (e: WaitEvent) => waits.push(e));
    orch.on("offload", (e: OffloadEvent) => offloads.push(`${e.resource} ${e.level} for ${e.forJob}`));
    let chat: ReturnType<typeof orch.submit<string>> | undefined;
    const { job } = submitBatch((p) => {
      if (!chat && p.stage === "diffusion" && p.imageIndex === 0 && p.step === 2) {
        chat = orch.submit({
          kind: "llm.chat",
          resource: llm,
          priority: "interactive",
          run: async () => {
            log.push("llm job");
            expect(diffusion.residency).toBe("unloaded"); // freed for it
            return "reply";
          },
        });
      }
    });
    const images = await job.promise;
    expect(await chat!.promise).toBe("reply");
    expect(log.slice(0, 5)).toEqual(["generate 42×4", "sample 42", "image 42", "llm job", "generate 43×3"]);
    expect(images.map((i) => i.seed)).toEqual([42, 43, 44, 45]);
    expect(waits[0]).toMatchObject({ job: chat!.id, resources: [diffusion.id] });
    // the batch resumed with the eviction rights of the job it gave way to: it freed the (idle, interactive) LLM
    expect(offloads).toContain(`${diffusion.id} unloaded for ${chat!.id}`);
    expect(offloads).toContain(`llm unloaded for ${job.id}`);
    expect(orch.registry.get(job.id)).toMatchObject({ status: "done" });
    await orch.queue.onIdle();
  });

  it("cancel while it waits: the rest is not generated; ABORTED with no images, as a cancelled batch was before", async () => {
    await setup(1e9);
    let chat: ReturnType<typeof orch.submit<void>> | undefined;
    const { job } = submitBatch((p) => {
      if (!chat && p.stage === "diffusion" && p.imageIndex === 0 && p.step === 2) {
        chat = orch.submit({ kind: "chat", engine: "diffusion", priority: "interactive", run: async () => job.cancel("cancelled by DELETE") });
      }
    });
    await expect(job.promise).rejects.toMatchObject({ code: "ABORTED" });
    await chat!.promise;
    await orch.queue.onIdle();
    expect(log).toEqual(["generate 42×4", "sample 42", "image 42"]);
    const rec = orch.registry.get(job.id)!;
    expect(rec).toMatchObject({ status: "cancelled", error: { code: "ABORTED" } });
    expect(rec.result).toBeUndefined();
  });

  it("cancel while it waits, with keepFinishedOnCancel: the images finished before it (as DiffusionModel.generate does)", async () => {
    await setup(1e9);
    let chat: ReturnType<typeof orch.submit<void>> | undefined;
    const { job } = submitBatch(
      (p) => {
        if (!chat && p.stage === "diffusion" && p.imageIndex === 1 && p.step === 1) {
          chat = orch.submit({ kind: "chat", engine: "diffusion", priority: "immediate", run: async () => job.cancel() });
        }
      },
      { keepFinishedOnCancel: true },
    );
    const images = await job.promise;
    expect(images.map((i) => i.seed)).toEqual([42, 43]);
    expect(log.filter((l) => l.startsWith("generate"))).toEqual(["generate 42×4"]);
  });

  it("with no competing job the batch runs as before: one generation of 4, the same progress as DiffusionModel.generate", async () => {
    await setup(1e9);
    const { job, progress } = submitBatch();
    const images = await job.promise;
    expect(images.map((i) => i.seed)).toEqual([42, 43, 44, 45]);
    expect(model.calls.map((c) => [c.seed, c.count])).toEqual([[42, 4]]);
    const direct: ImageProgress[] = [];
    const sd = await DiffusionModel.load({ model: "m" }, fakeEngine(new FakeModel(3)));
    const gen = sd.generate(BATCH);
    gen.on("progress", (p: ImageProgress) => direct.push(p));
    await gen.done;
    const shape = (ps: ImageProgress[]) => ps.map((p) => `${p.stage} ${p.imageIndex}/${p.imageCount} ${p.step}/${p.steps}`);
    expect(shape(progress)).toEqual(shape(direct));
    // percent is the same up to the decoding, which counts its measured time
    const sampling = (ps: ImageProgress[]) => ps.filter((p) => p.stage !== "decoding").map((p) => p.percent);
    expect(sampling(progress)).toEqual(sampling(direct));
    expect(progress.some((p) => p.stage === "preempted")).toBe(false);
  });

  it("a background job waiting does not make a background batch yield (only higher priorities do)", async () => {
    await setup(1e9);
    let other: ReturnType<typeof orch.submit<void>> | undefined;
    const { job } = submitBatch((p) => {
      if (!other && p.stage === "diffusion" && p.imageIndex === 0 && p.step === 2) {
        other = orch.submit({ kind: "t", engine: "diffusion", priority: "background", run: async () => void log.push("other background") });
      }
    });
    await job.promise;
    await other!.promise;
    expect(log.filter((l) => l.startsWith("generate") || l.startsWith("other"))).toEqual(["generate 42×4", "other background"]);
  });
});

describe("ImageJob cancel", () => {
  it("cancel('all') after cancel('newLatents') still stops within one sampling step", async () => {
    const m = new FakeModel(3);
    const sd = await DiffusionModel.load({ model: "m" }, fakeEngine(m));
    const job = sd.generate({ prompt: "x", width: 64, height: 64, steps: 40, count: 2, keepFinishedOnCancel: true });
    let stepsAtCancel = 0;
    job.on("progress", (p: ImageProgress) => {
      if (p.stage === "diffusion" && p.step === 2 && !stepsAtCancel) {
        job.cancel("newLatents");
        stepsAtCancel = m.stepsRun;
        job.cancel("all");
      }
    });
    expect(await job.done).toEqual([]);
    expect(m.stepsRun - stepsAtCancel).toBeLessThanOrEqual(1);
  });
});
