// Real image generation through stable-diffusion.cpp inside the addon, on a
// generated random-weight SD1 checkpoint (lib/tools/sd/, "tiny"
// preset: the SD1 architecture with a narrow UNet and VAE decoder), 64×64.
// Random weights make noise-like images, but every kernel of the pipeline
// (CLIP text encoder, UNet with cross-attention, sampler, VAE) runs for real.
//
// `npm run test:diffusion` runs this file alone. A build without
// deps/stable-diffusion.cpp has no engine: the whole suite is then reported
// as skipped, with the reason in its name — never as passed.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { native } from "../../lib/binding/load";
import { capabilities, versions } from "../../lib/index";
import { DiffusionModel, Upscaler, type GeneratedImage, type ImageProgress, type RawImage } from "../../lib/diffusion/index";
import { ENGINE_HOWTO, loadParams } from "../../lib/diffusion/native-engine";
import { LlamaModel } from "../../lib/llm/model";
import { ManagedDiffusion, ManagedLlama, Orchestrator, type OffloadEvent } from "../../lib/orchestrator/index";
import { PRESETS, generateRandomEsrganModel, generateRandomLlamaModel, generateRandomMmproj, generateRandomSd15Model } from "../../lib/tools";
import { storiesPath, tempDir, THREADS } from "../helpers";

const available = capabilities().diffusion;
const title = available
  ? "stable-diffusion.cpp engine (real generation, random-weight SD1 model)"
  : `stable-diffusion.cpp engine — SKIPPED: the addon has no diffusion engine (${ENGINE_HOWTO})`;
if (!available) console.warn(`[test:diffusion] skipped: ${ENGINE_HOWTO}`);

const SIZE = 64;
const STEPS = 2;
const base = { prompt: "a lighthouse at dusk", width: SIZE, height: SIZE, steps: STEPS, cfgScale: 7, sampler: "euler", output: "both" as const };

const raw = (img: GeneratedImage): RawImage => {
  expect(img.raw).toBeDefined();
  return img.raw!;
};
const same = (a: GeneratedImage, b: GeneratedImage) => Buffer.from(raw(a).data).equals(Buffer.from(raw(b).data));
/** Mean absolute difference of two images' pixels, 0..255. */
const meanDiff = (a: RawImage, b: RawImage) => {
  let s = 0;
  for (let i = 0; i < a.data.length; i++) s += Math.abs(a.data[i] - b.data[i]);
  return s / a.data.length;
};

describe.skipIf(!available)(title, () => {
  let tmp: ReturnType<typeof tempDir>;
  let modelFile: string;
  let sd: DiffusionModel;
  const loadProgress: number[] = [];

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-");
    modelFile = path.join(tmp.dir, "random-sd1-tiny.gguf");
    await generateRandomSd15Model(modelFile, { preset: "tiny", type: "f16", seed: 7 });
    sd = await DiffusionModel.load({ model: modelFile, threads: THREADS, onProgress: (f) => loadProgress.push(f) });
  });
  afterAll(async () => {
    await sd?.dispose();
    tmp?.cleanup();
  });

  it("loads with progress rising to 1 and reports the engine's samplers and schedulers", () => {
    expect(loadProgress.length).toBeGreaterThan(0);
    for (let i = 1; i < loadProgress.length; i++) expect(loadProgress[i]).toBeGreaterThanOrEqual(loadProgress[i - 1]);
    expect(loadProgress.at(-1)).toBeCloseTo(1, 5);
    expect(sd.samplers).toEqual(expect.arrayContaining(["euler", "euler_a"]));
    expect(sd.schedulers).toEqual(expect.arrayContaining(["discrete", "karras"]));
  });

  let first: GeneratedImage;
  it("one image: a 64×64 PNG with varied pixels, the seed used, reproducible for that seed", async () => {
    const progress: ImageProgress[] = [];
    const job = sd.generate({ ...base, seed: 1234 });
    job.on("progress", (p: ImageProgress) => progress.push(p));
    const [img] = await job.done;
    first = img;
    expect(img).toMatchObject({ width: SIZE, height: SIZE, seed: 1234 });
    expect(img.png!.subarray(1, 4).toString("latin1")).toBe("PNG");
    expect(img.png!.readUInt32BE(16)).toBe(SIZE); // IHDR width
    const r = raw(img);
    expect(r.data.length).toBe(SIZE * SIZE * r.channels);
    expect(new Set(r.data).size).toBeGreaterThan(16); // not a flat image
    // progress: loading (waiting for its turn), encoding, steps 1..STEPS, decoding; percent never falls and ends at 100
    const stages = progress.map((p) => p.stage).filter((s, i, a) => s !== a[i - 1]);
    expect(stages).toEqual(["loading", "encoding", "diffusion", "decoding"]);
    expect(progress.filter((p) => p.stage === "diffusion").map((p) => p.step)).toEqual([1, 2]);
    for (let i = 1; i < progress.length; i++) expect(progress[i].percent).toBeGreaterThanOrEqual(progress[i - 1].percent);
    expect(progress.at(-1)!.percent).toBe(100);

    const [again] = await sd.generate({ ...base, seed: 1234 }).done;
    expect(same(img, again)).toBe(true);
    const [other] = await sd.generate({ ...base, seed: 1235 }).done;
    expect(same(img, other)).toBe(false);
  });

  it("a batch of 3 uses seeds s, s+1, s+2: image i equals a single generation with seed s+i", async () => {
    const progress: ImageProgress[] = [];
    const job = sd.generate({ ...base, seed: 1233, count: 3 });
    job.on("progress", (p: ImageProgress) => progress.push(p));
    const images = await job.done;
    expect(images.map((i) => i.seed)).toEqual([1233, 1234, 1235]);
    expect(same(images[1], first)).toBe(true);
    expect(same(images[0], images[1])).toBe(false);
    // every image's steps, in order, with imageCount 3
    const steps = progress.filter((p) => p.stage === "diffusion").map((p) => `${p.imageIndex}:${p.step}`);
    expect(steps).toEqual(["0:1", "0:2", "1:1", "1:2", "2:1", "2:2"]);
    expect(progress.every((p) => p.imageCount === 3)).toBe(true);
    expect(progress.at(-1)!.percent).toBe(100);
  });

  it("cancel mid-run stops within one sampling step and rejects ABORTED", async () => {
    const steps = 30;
    const seen: number[] = [];
    const ac = new AbortController();
    const job = sd.generate({ ...base, steps, seed: 5, signal: ac.signal });
    job.on("progress", (p: ImageProgress) => {
      if (p.stage !== "diffusion") return;
      seen.push(p.step);
      if (p.step === 2) ac.abort();
    });
    await expect(job.done).rejects.toMatchObject({ code: "ABORTED" });
    expect(job.status).toBe("cancelled");
    expect(Math.max(...seen)).toBeLessThanOrEqual(3);
    // the model is still usable after a cancel
    const [img] = await sd.generate({ ...base, seed: 1234 }).done;
    expect(same(img, first)).toBe(true);
  });

  // the graph hook is on for a model wholly on the CPU backend (memoryBytes' one key: the device it computes on)
  const onCpu = () => Object.keys(sd.memoryBytes).join() === "CPU";

  it("cancel during the VAE decode stops it mid-graph (on the CPU backend): far sooner than the decode takes, ABORTED, the model unharmed", async () => {
    // 512²: this 32-channel decoder's decode takes seconds here, a sampling step of the tiny UNet a fraction of one
    const big = { ...base, width: 512, height: 512, steps: 1, seed: 3 };
    // cancelAfterMs after the decode of image `decodeIndex` starts (the decoding progress without a tile: the decode
    // stage, then one per decoded image)
    const decodeMs = async (cancelAfterMs?: number, count = 1, decodeIndex = 0) => {
      const job = sd.generate({ ...big, count, keepFinishedOnCancel: true });
      let started = 0;
      let decodes = 0;
      job.on("progress", (p: ImageProgress) => {
        if (p.stage !== "decoding" || p.tile !== undefined || decodes++ !== decodeIndex) return;
        started = performance.now();
        if (cancelAfterMs !== undefined) setTimeout(() => job.cancel(), cancelAfterMs);
      });
      const images = await job.done;
      return { ms: performance.now() - started - (cancelAfterMs ?? 0), images, status: job.status };
    };
    const whole = await decodeMs();
    expect(whole.status).toBe("done");
    const cut = await decodeMs(50);
    console.log(`[diffusion] VAE decode at 512²: ${whole.ms.toFixed(0)} ms whole; cancelled 50 ms in, done ${cut.ms.toFixed(0)} ms after the cancel`);
    expect(cut.status).toBe("cancelled");
    expect(cut.images).toEqual([]);
    if (onCpu()) expect(cut.ms).toBeLessThan(whole.ms / 3);
    // the second image's decode: its graph is skipped, not failed, so the first image survives and the unfinished
    // second is dropped (sd.cpp returns no image at all from a failed decode)
    const second = await decodeMs(50, 2, 1);
    console.log(`[diffusion] second image's decode cancelled 50 ms in: done ${second.ms.toFixed(0)} ms after the cancel`);
    expect(second.status).toBe("cancelled");
    if (onCpu()) {
      expect(second.ms).toBeLessThan(whole.ms / 3);
      expect(second.images.length).toBe(1);
    }
    expect(Buffer.from(raw(second.images[0]).data).equals(Buffer.from(raw(whole.images[0]).data))).toBe(true);
    const [img] = await sd.generate({ ...base, seed: 1234 }).done;
    expect(same(img, first)).toBe(true);
  });

  it("cancel during a long prompt's text encoding stops it mid-graph (on the CPU backend), ABORTED, the model unharmed", async () => {
    // the longest prompts (MAX_PROMPT_CHARS) and negative prompt: about 10 of CLIP's 77-token chunks each
    const words = ["lighthouse", "harbor", "storm", "gull", "cliff", "wave", "lantern", "dusk"];
    const long = (k: number) =>
      Array.from({ length: 600 }, (_, i) => words[(i * k) % words.length])
        .join(" ")
        .slice(0, 4096);
    const params = { ...base, prompt: long(3), negativePrompt: long(5), seed: 8 };
    const encodeMs = async (cancelAfterMs?: number) => {
      const job = sd.generate(params);
      let started = 0;
      let encoded = 0;
      job.on("progress", (p: ImageProgress) => {
        if (p.stage === "encoding" && !started) {
          started = performance.now();
          if (cancelAfterMs !== undefined) setTimeout(() => job.cancel(), cancelAfterMs);
        }
        if (p.stage === "diffusion" && !encoded) encoded = performance.now();
      });
      const result = await job.done.then(
        (images) => ({ outcome: "done", images }),
        (e: { code?: string }) => ({ outcome: String(e.code), images: [] }),
      );
      return { ms: (encoded || performance.now()) - started - (cancelAfterMs ?? 0), ...result };
    };
    const whole = await encodeMs();
    expect(whole.outcome).toBe("done");
    const cut = await encodeMs(100);
    console.log(
      `[diffusion] text encoding of a 4096-character prompt: ${whole.ms.toFixed(0)} ms whole; cancelled 100 ms in, done ${cut.ms.toFixed(0)} ms after`,
    );
    expect(cut.outcome).toBe("ABORTED");
    if (onCpu()) expect(cut.ms).toBeLessThan(whole.ms / 3);
    // the skipped encoder nodes leave nothing behind: the same prompt, then the first image, come out as before
    const [again] = await sd.generate(params).done;
    expect(same(again, whole.images[0])).toBe(true);
    const [img] = await sd.generate({ ...base, seed: 1234 }).done;
    expect(same(img, first)).toBe(true);
  });

  it("emits previews (latent projection) every intervalSteps", async () => {
    const previews: { step: number; image: RawImage }[] = [];
    const job = sd.generate({ ...base, steps: 4, seed: 9, preview: { mode: "proj", intervalSteps: 2 } });
    job.on("preview", (p: { step: number; image: RawImage }) => previews.push(p));
    await job.done;
    expect(previews.map((p) => p.step)).toEqual([2, 4]);
    for (const p of previews) {
      expect(p.image.width).toBeGreaterThan(0);
      expect(p.image.data.length).toBe(p.image.width * p.image.height * p.image.channels);
    }
  });

  it("img2img: the init image and strength shape the result; same inputs give the same image", async () => {
    const gradient = (k: number): RawImage => {
      const data = new Uint8Array(SIZE * SIZE * 3);
      for (let y = 0; y < SIZE; y++) for (let x = 0; x < SIZE; x++) data.set([(x * k) & 255, (y * k) & 255, 128], (y * SIZE + x) * 3);
      return { data, width: SIZE, height: SIZE, channels: 3 };
    };
    const gen = (initImage: RawImage, strength: number) => sd.generate({ ...base, steps: 4, seed: 1234, initImage, strength }).done.then((r) => r[0]);
    const a = await gen(gradient(4), 0.5);
    expect(same(a, await gen(gradient(4), 0.5))).toBe(true);
    expect(same(a, first)).toBe(false); // not the txt2img image
    expect(same(a, await gen(gradient(1), 0.5))).toBe(false); // another init image, another result
    expect(same(a, await gen(gradient(4), 1))).toBe(false); // another strength, another result
  });

  it("inpainting: black mask areas keep the init image (the seed cannot change them), white areas are repainted", async () => {
    const data = new Uint8Array(SIZE * SIZE * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 37) % 251;
    const initImage: RawImage = { data, width: SIZE, height: SIZE, channels: 3 };
    const mask = (value: number): RawImage => ({ data: new Uint8Array(SIZE * SIZE).fill(value), width: SIZE, height: SIZE, channels: 1 });
    const gen = (m: RawImage, seed: number) => sd.generate({ ...base, seed, initImage, mask: m, strength: 0.8 }).done.then((r) => r[0]);
    const keepA = await gen(mask(0), 1);
    const keepB = await gen(mask(0), 2);
    const paintA = await gen(mask(255), 1);
    const paintB = await gen(mask(255), 2);
    expect(same(paintA, paintB)).toBe(false);
    // kept everywhere: two seeds give (all but) the same pixels; repainted: they differ a lot more
    expect(meanDiff(raw(keepA), raw(keepB))).toBeLessThan(meanDiff(raw(paintA), raw(paintB)) / 4);
  });

  it("bad requests are typed errors and the model keeps working", async () => {
    expect(() => sd.generate({ ...base, width: 60 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => sd.generate({ ...base, sampler: "nope" })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => sd.generate({ ...base, steps: 0 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    const [img] = await sd.generate({ ...base, seed: 1234 }).done;
    expect(same(img, first)).toBe(true);
  });

  it("inputs that sd.cpp would crash on, skip or silently change are refused, in TS and in C++", async () => {
    // TS
    expect(() => sd.generate({ ...base, width: 72 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => sd.generate({ ...base, prompt: "(a".repeat(15_000) })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => sd.generate({ ...base, loras: [{ path: path.join(tmp.dir, "missing-lora.safetensors") }] })).toThrow(
      expect.objectContaining({ code: "MODEL_NOT_FOUND" }),
    );
    // C++, TS bypassed: the same refusals from the addon
    const addon = native();
    const h = await addon.loadDiffusionModel!(
      loadParams({ model: modelFile, threads: THREADS, flashAttention: false }, "cpu"),
      undefined,
      new addon.CancelToken(),
    );
    try {
      const p = {
        prompt: "x",
        negativePrompt: "",
        width: SIZE,
        height: SIZE,
        steps: 1,
        cfgScale: 7,
        sampler: "euler",
        scheduler: "discrete",
        seed: 1,
        count: 1,
        loras: [],
        refImages: [],
      };
      const gen = (o: object) => h.generate({ ...p, ...o } as never, () => undefined, new addon.CancelToken());
      expect(() => gen({ width: 72 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
      // a prompt of about 27,000 characters overflowed the stack in sd.cpp's prompt parser
      expect(() => gen({ prompt: "(a".repeat(15_000) })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
      expect(() => gen({ guidanceScale: 2 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT", message: "unknown generate field guidanceScale" }));
      await expect(gen({ loras: [{ path: path.join(tmp.dir, "missing-lora.safetensors"), scale: 1 }] })).rejects.toMatchObject({
        code: "MODEL_NOT_FOUND",
      });
      // an allocation that cannot succeed (SD1 attention at 4096² wants about 2 TB) is OUT_OF_MEMORY, and the model keeps working
      await expect(gen({ width: 4096, height: 4096 })).rejects.toMatchObject({ code: "OUT_OF_MEMORY" });
      expect(await gen({})).toHaveLength(1);
    } finally {
      h.dispose();
    }
  });

  it("a file that is not a diffusion model is INVALID_MODEL; a missing one MODEL_NOT_FOUND", async () => {
    await expect(DiffusionModel.load({ model: await storiesPath() })).rejects.toMatchObject({ code: "INVALID_MODEL" });
    const text = path.join(tmp.dir, "notes.gguf");
    fs.writeFileSync(text, "not a model at all\n".repeat(100));
    await expect(DiffusionModel.load({ model: text })).rejects.toMatchObject({ code: "INVALID_MODEL" });
    await expect(DiffusionModel.load({ model: path.join(tmp.dir, "missing.gguf") })).rejects.toMatchObject({ code: "MODEL_NOT_FOUND" });
    // a checkpoint cut short
    const cut = path.join(tmp.dir, "cut.gguf");
    fs.writeFileSync(cut, fs.readFileSync(modelFile).subarray(0, Math.floor(fs.statSync(modelFile).size / 2)));
    await expect(DiffusionModel.load({ model: cut })).rejects.toMatchObject({ code: "INVALID_MODEL" });
  });

  it("a second model loads, generates the same image for the same seed, and disposes", async () => {
    const sd2 = await DiffusionModel.load({ model: modelFile, threads: THREADS });
    try {
      const [img] = await sd2.generate({ ...base, seed: 1234 }).done;
      expect(same(img, first)).toBe(true);
    } finally {
      await sd2.dispose();
    }
    expect(() => sd2.generate({ ...base })).toThrow(expect.objectContaining({ code: "DISPOSED" }));
  });

  it("load options: VAE tiling, text encoder and VAE kept on the CPU, weights offloaded to RAM", async () => {
    const sd2 = await DiffusionModel.load({
      model: modelFile,
      threads: THREADS,
      vaeTiling: true,
      keepClipOnCpu: true,
      keepVaeOnCpu: true,
      offloadParamsToCpu: true,
    });
    try {
      const [img] = await sd2.generate({ ...base, seed: 1234 }).done;
      expect(img).toMatchObject({ width: SIZE, height: SIZE });
      // on a CPU-only machine these placements change nothing: the same image
      expect(same(img, first)).toBe(true);
    } finally {
      await sd2.dispose();
    }
  });

  it("cancel with keepFinishedOnCancel (newLatents) keeps the images finished before it", async () => {
    const job = sd.generate({ ...base, seed: 1233, count: 3, keepFinishedOnCancel: true });
    job.on("progress", (p: ImageProgress) => {
      if (p.stage === "diffusion" && p.imageIndex === 1 && p.step === 1) job.cancel("newLatents");
    });
    const images = await job.done;
    expect(job.status).toBe("cancelled");
    // "newLatents" finishes the image being sampled (index 1) and skips the third
    expect(images.map((i) => i.seed)).toEqual([1233, 1234]);
    expect(same(images[1], first)).toBe(true);
  });

  it("orchestrator: an image job frees the LLM's context, runs on the real engine, and the conversation continues token-exact", async () => {
    const stories = await storiesPath();
    const P1 = "Once upon a time, there was a little dog named Max.";
    // the conversation without any free/restore cycle
    const ref = await LlamaModel.load(stories);
    const refCtx = await ref.createContext({ contextSize: 2048, threads: THREADS });
    const turn1 = (await refCtx.complete(P1, { temperature: 0, maxTokens: 40 })).text;
    const turn2 = (await refCtx.complete(P1 + turn1 + " Then", { temperature: 0, maxTokens: 40 })).text;
    await ref.dispose();

    const llm = await ManagedLlama.create({ id: "llm", modelPath: stories, context: { contextSize: 2048, threads: THREADS } });
    const image = await ManagedDiffusion.create({ id: "sd", load: { model: modelFile, threads: THREADS } });
    expect(image.residentHoldings()[0].device).toBe(llm.residentHoldings().find((h) => h.kind === "kv")!.device);
    const sum = (hs: { bytes: number }[]) => hs.reduce((a, h) => a + h.bytes, 0);
    const kv = sum(llm.residentHoldings().filter((h) => h.kind !== "weights"));
    const llmWeights = sum(llm.residentHoldings().filter((h) => h.kind === "weights"));
    // room for the LLM's weights and the image model, not for the LLM's context as well
    const orch = new Orchestrator({ budgets: { CPU: llmWeights + sum(image.residentHoldings()) + Math.floor(kv / 2) } });
    orch.add(llm);
    orch.add(image);
    const offloads: string[] = [];
    orch.on("offload", (e: OffloadEvent) => offloads.push(`${e.resource}:${e.level}`));
    try {
      const t1 = await orch.submit({ kind: "llm", resource: llm, run: () => llm.context.complete(P1, { temperature: 0, maxTokens: 40 }) }).promise;
      expect(t1.text).toBe(turn1);
      const images = await orch.submit({ kind: "image", resource: image, run: () => image.model.generate({ ...base, seed: 1234 }).done }).promise;
      expect(same(images[0], first)).toBe(true);
      expect(offloads[0]).toBe("llm:contextFreed");
      await orch.queue.onIdle();
      const t2 = await orch.submit({ kind: "llm", resource: llm, run: () => llm.context.complete(P1 + t1.text + " Then", { temperature: 0, maxTokens: 40 }) })
        .promise;
      expect(t2.text).toBe(turn2);
      expect(t2.timings.reusedTokens).toBeGreaterThan(10); // the KV state came back: turn 1 was not decoded again
    } finally {
      orch.dispose();
      await llm.dispose();
      await image.dispose();
    }
  });

  describe("ESRGAN upscaler (random-weight RRDBNet)", () => {
    let x2: Upscaler;
    let x4: Upscaler;
    beforeAll(async () => {
      await generateRandomEsrganModel(path.join(tmp.dir, "esrgan-x2.gguf"), { scale: 2, blocks: 1, seed: 3 });
      await generateRandomEsrganModel(path.join(tmp.dir, "esrgan-x4.gguf"), { scale: 4, blocks: 1, seed: 4 });
      x2 = await Upscaler.load({ model: path.join(tmp.dir, "esrgan-x2.gguf"), threads: THREADS });
      x4 = await Upscaler.load({ model: path.join(tmp.dir, "esrgan-x4.gguf"), threads: THREADS });
    });
    afterAll(async () => {
      await x2?.dispose();
      await x4?.dispose();
    });

    it("reads the factor from the weights and upscales by it, or by its powers in several passes", async () => {
      expect(x2.scale).toBe(2);
      expect(x4.scale).toBe(4);
      const src = raw(first);
      const big = await x4.upscale(src, 4, { output: "both" });
      expect(big).toMatchObject({ width: 4 * SIZE, height: 4 * SIZE });
      expect(big.raw!.data.length).toBe(16 * SIZE * SIZE * 3);
      expect(big.png!.readUInt32BE(16)).toBe(4 * SIZE);
      const twice = await x2.upscale(src, 4, { output: "raw" });
      expect(twice).toMatchObject({ width: 4 * SIZE, height: 4 * SIZE });
      const once = await x2.upscale(src, undefined, { output: "raw" });
      expect(once).toMatchObject({ width: 2 * SIZE, height: 2 * SIZE });
      // two passes are the model applied to its own output
      const again = await x2.upscale(once.raw!, 2, { output: "raw" });
      expect(Buffer.from(again.raw!.data).equals(Buffer.from(twice.raw!.data))).toBe(true);
      // RGBA input: alpha is dropped
      const rgba = new Uint8Array(SIZE * SIZE * 4);
      for (let i = 0; i < SIZE * SIZE; i++) rgba.set([...src.data.subarray(i * 3, i * 3 + 3), 255], i * 4);
      const fromRgba = await x2.upscale({ data: rgba, width: SIZE, height: SIZE, channels: 4 }, 2, { output: "raw" });
      expect(Buffer.from(fromRgba.raw!.data).equals(Buffer.from(once.raw!.data))).toBe(true);
    });

    it("a cancel ends a running pass mid-graph (on the CPU backend): ABORTED far sooner than the pass takes, the upscaler unharmed", async () => {
      // a 128² input: one pass takes seconds here
      const side = 128;
      const src: RawImage = { data: new Uint8Array(side * side * 3).map((_, i) => (i * 37) % 251), width: side, height: side, channels: 3 };
      let t = performance.now();
      const whole = await x2.upscale(src, 2, { output: "raw" });
      const wholeMs = performance.now() - t;
      const ac = new AbortController();
      t = performance.now();
      setTimeout(() => ac.abort(), 100);
      await expect(x2.upscale(src, 2, { output: "raw", signal: ac.signal })).rejects.toMatchObject({ code: "ABORTED" });
      const cutMs = performance.now() - t - 100;
      console.log(`[diffusion] ESRGAN x2 pass on ${side}²: ${wholeMs.toFixed(0)} ms whole; cancelled 100 ms in, done ${cutMs.toFixed(0)} ms after`);
      // the same default device as the model above
      if (onCpu()) expect(cutMs).toBeLessThan(wholeMs / 3);
      const again = await x2.upscale(src, 2, { output: "raw" });
      expect(Buffer.from(again.raw!.data).equals(Buffer.from(whole.raw!.data))).toBe(true);
    });

    it("bad factors and images are INVALID_ARGUMENT; a non-ESRGAN file is INVALID_MODEL; disposed is DISPOSED", async () => {
      const src = raw(first);
      await expect(x4.upscale(src, 2)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      await expect(x2.upscale(src, 3)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      await expect(x2.upscale({ ...src, width: SIZE + 1 }, 2)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      await expect(x4.upscale({ data: new Uint8Array(5000 * 10 * 3), width: 5000, height: 10, channels: 3 }, 4)).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
      });
      await expect(Upscaler.load({ model: await storiesPath() })).rejects.toMatchObject({ code: "INVALID_MODEL" });
      await expect(Upscaler.load({ model: path.join(tmp.dir, "missing.gguf") })).rejects.toMatchObject({ code: "MODEL_NOT_FOUND" });
      const u = await Upscaler.load({ model: path.join(tmp.dir, "esrgan-x2.gguf"), threads: THREADS });
      await u.dispose();
      await expect(u.upscale(src, 2)).rejects.toMatchObject({ code: "DISPOSED" });
    });
  });

  it("the bridge: a generated image goes straight into a vision chat (as its PNG and as raw pixels), the same reply either way", async () => {
    const text = path.join(tmp.dir, "vl-text.gguf");
    const mmproj = path.join(tmp.dir, "vl-mmproj.gguf");
    await generateRandomLlamaModel(text, PRESETS.tiny, { chatTemplate: true, seed: 3 });
    await generateRandomMmproj(mmproj, { textEmbd: PRESETS.tiny.embd, seed: 5 });
    const [img] = await sd.generate({ ...base, seed: 11 }).done; // output "both": png and raw
    const vl = await LlamaModel.load(text, { mmproj, device: "cpu" });
    try {
      const ctx = await vl.createContext({ contextSize: 512, threads: THREADS });
      const ask = (image: unknown) => [
        {
          role: "user" as const,
          content: [
            { type: "image" as const, image: image as GeneratedImage },
            { type: "text" as const, text: "Is there a lighthouse?" },
          ],
        },
      ];
      const fromPng = await ctx.chat(ask(img), { temperature: 0, maxTokens: 8 }).result;
      expect(fromPng.timings.mediaTokens).toBeGreaterThan(0);
      await ctx.clearHistory();
      const fromRaw = await ctx.chat(ask({ ...img, png: undefined }), { temperature: 0, maxTokens: 8 }).result;
      expect(fromRaw.text).toBe(fromPng.text);
    } finally {
      await vl.dispose();
    }
  });
});

describe("diffusion engine availability", () => {
  // a clone without deps/stable-diffusion.cpp (CI) builds without the engine
  it.skipIf(capabilities().diffusion)("without the engine, capabilities say so and load rejects ENGINE_UNAVAILABLE", async () => {
    expect(capabilities().diffusion).toBe(false);
    const err = await DiffusionModel.load({ model: "sd.gguf" }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "ENGINE_UNAVAILABLE" });
    expect((err as Error).message).toMatch(/git submodule update --init deps\/stable-diffusion\.cpp/);
    const up = await Upscaler.load({ model: "esrgan.gguf" }).catch((e: unknown) => e);
    expect(up).toMatchObject({ code: "ENGINE_UNAVAILABLE" });
  });

  it("versions() names the stable-diffusion.cpp commit exactly when the engine is built", () => {
    const v = versions();
    if (capabilities().diffusion) expect(v.stableDiffusionCommit).toMatch(/^([0-9a-f]{40}|unknown)$/);
    else expect(v.stableDiffusionCommit).toBeNull();
  });
});
