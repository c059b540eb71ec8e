// The image-job layer against a test double of the DiffusionEngine interface
// (the real engine's tests: diffusion-engine.test.ts).
import zlib from "node:zlib";
import { describe, expect, it } from "vitest";
import { DiffusionModel, encodePng, type ImageProgress, type RawImage } from "../../lib/diffusion/index";
import { ProgressTracker } from "../../lib/diffusion/progress";
import { FakeModel, fakeEngine } from "../fakes/diffusion-engine";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Decodes our own PNG output (filter 0 rows) back to pixels. */
/** The PNG's tEXt (Latin-1) and uncompressed iTXt (UTF-8) chunks, keyword → text (PNG spec 11.3.4). */
function pngText(png: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  for (let off = 8; off < png.length; ) {
    const len = png.readUInt32BE(off);
    const type = png.toString("latin1", off + 4, off + 8);
    const data = png.subarray(off + 8, off + 8 + len);
    const nul = data.indexOf(0);
    if (type === "tEXt") out[data.toString("latin1", 0, nul)] = data.toString("latin1", nul + 1);
    if (type === "iTXt") {
      expect(data[nul + 1]).toBe(0); // not compressed
      const lang = data.indexOf(0, nul + 3);
      const translated = data.indexOf(0, lang + 1);
      out[data.toString("latin1", 0, nul)] = data.toString("utf8", translated + 1);
    }
    off += 12 + len;
  }
  return out;
}

function decodePng(png: Buffer): { width: number; height: number; channels: number; data: Buffer } {
  expect(png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))).toBe(true);
  let off = 8;
  let width = 0,
    height = 0,
    channels = 0;
  const idat: Buffer[] = [];
  while (off < png.length) {
    const len = png.readUInt32BE(off);
    const type = png.toString("latin1", off + 4, off + 8);
    const data = png.subarray(off + 8, off + 8 + len);
    expect(png.readUInt32BE(off + 8 + len)).toBe(zlib.crc32(png.subarray(off + 4, off + 8 + len)) >>> 0);
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      channels = data[9] === 6 ? 4 : data[9] === 2 ? 3 : 1;
    }
    if (type === "IDAT") idat.push(data);
    off += 12 + len;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const out = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    expect(raw[y * (stride + 1)]).toBe(0);
    raw.copy(out, y * stride, y * (stride + 1) + 1, (y + 1) * (stride + 1));
  }
  return { width, height, channels, data: out };
}

describe("image jobs (test double engine)", () => {
  it("one image: PNG of the right size and pixels, with the seed used", async () => {
    const sd = await DiffusionModel.load({ model: "m" }, fakeEngine());
    const [img] = await sd.generate({ prompt: "a cat", width: 64, height: 128, steps: 2, seed: 1000 }).done;
    expect(img.seed).toBe(1000);
    const d = decodePng(img.png!);
    expect([d.width, d.height, d.channels]).toEqual([64, 128, 3]);
    expect(d.data.every((v) => v === 1000 % 251)).toBe(true);
  });

  it("PNG metadata: the parameters in AUTOMATIC1111's format (each image its seed), UTF-8 as iTXt, none with pngMetadata: false", async () => {
    const sd = await DiffusionModel.load({ model: "/models/dream-v1.safetensors" }, fakeEngine());
    const opts = { prompt: "a cat", negativePrompt: "blurry", width: 64, height: 64, steps: 3, seed: 7, cfgScale: 5.5, count: 2 };
    const imgs = await sd.generate(opts).done;
    const params = imgs.map((i) => pngText(i.png!).parameters);
    const line = (seed: number) =>
      `a cat\nNegative prompt: blurry\nSteps: 3, Sampler: ${sd.samplers[0]}, Schedule type: ${sd.schedulers[0]}, CFG scale: 5.5, Seed: ${seed}, Size: 64x64, Model: dream-v1, Version: genai-native`;
    expect(params).toEqual([line(7), line(8)]);
    expect(decodePng(imgs[0].png!).width).toBe(64); // still a valid PNG
    const [cafe] = await sd.generate({ ...opts, count: 1, prompt: "un café ☕", negativePrompt: undefined }).done;
    expect(pngText(cafe.png!).parameters).toMatch(/^un café ☕\nSteps: 3, /);
    const [plain] = await sd.generate({ ...opts, count: 1, pngMetadata: false }).done;
    expect(pngText(plain.png!)).toEqual({});
    expect(() => sd.generate({ ...opts, pngMetadata: "yes" } as never)).toThrow(/pngMetadata/);
  });

  it("a batch of 3 uses seeds s, s+1, s+2; seed -1 picks one and reports it", async () => {
    const eng = fakeEngine();
    const sd = await DiffusionModel.load({ model: "m" }, eng);
    const imgs = await sd.generate({ prompt: "x", width: 64, height: 64, steps: 2, count: 3, seed: 7, output: "both" }).done;
    expect(imgs.map((i) => i.seed)).toEqual([7, 8, 9]);
    expect(imgs.map((i) => i.raw!.data[0])).toEqual([7, 8, 9]);
    const rnd = await sd.generate({ prompt: "x", width: 64, height: 64, steps: 1, count: 2 }).done;
    expect(rnd[0].seed).toBeGreaterThanOrEqual(0);
    expect(rnd[1].seed).toBe(rnd[0].seed + 1);
    expect(eng.model.calls[1].seed).toBe(rnd[0].seed);
  });

  it("progress goes encoding → diffusion steps per image → decoding, percent rising to 100, with an ETA", async () => {
    const sd = await DiffusionModel.load({ model: "m" }, fakeEngine(new FakeModel(5)));
    const job = sd.generate({ prompt: "x", width: 64, height: 64, steps: 4, count: 2 });
    const seen: ImageProgress[] = [];
    job.on("progress", (p: ImageProgress) => seen.push(p));
    await job.done;
    const stages = seen.map((p) => p.stage).filter((s, i, a) => s !== a[i - 1]);
    expect(stages).toEqual(["loading", "encoding", "diffusion", "decoding"]);
    const steps = seen.filter((p) => p.stage === "diffusion").map((p) => `${p.imageIndex}:${p.step}/${p.steps}`);
    expect(steps).toEqual(["0:1/4", "0:2/4", "0:3/4", "0:4/4", "1:1/4", "1:2/4", "1:3/4", "1:4/4"]);
    for (let i = 1; i < seen.length; i++) expect(seen[i].percent).toBeGreaterThanOrEqual(seen[i - 1].percent);
    expect(seen[seen.length - 1].percent).toBe(100);
    const mid = seen.find((p) => p.stage === "diffusion" && p.imageIndex === 1 && p.step === 1)!;
    expect(mid.percent).toBeGreaterThan(40);
    expect(mid.percent).toBeLessThan(70);
    expect(mid.etaMs).toBeGreaterThan(0);
    expect(mid.etaMs!).toBeLessThan(200); // ~5 steps + 2 decodes left at ~5 ms each
    expect(seen.every((p) => p.imageCount === 2)).toBe(true);
    expect(job.status).toBe("done");
  });

  it("cancel mid-run stops within one step and rejects ABORTED", async () => {
    const eng = fakeEngine(new FakeModel(5));
    const sd = await DiffusionModel.load({ model: "m" }, eng);
    const job = sd.generate({ prompt: "x", width: 64, height: 64, steps: 50, count: 2 });
    let stepsAtCancel = 0;
    job.on("progress", (p: ImageProgress) => {
      if (p.stage === "diffusion" && p.step === 3 && !stepsAtCancel) {
        stepsAtCancel = eng.model.stepsRun;
        job.cancel();
      }
    });
    await expect(job.done).rejects.toMatchObject({ code: "ABORTED" });
    expect(job.status).toBe("cancelled");
    expect(eng.model.stepsRun - stepsAtCancel).toBeLessThanOrEqual(1);
  });

  it("cancel with keepFinishedOnCancel keeps the images finished before it", async () => {
    const sd = await DiffusionModel.load({ model: "m" }, fakeEngine());
    const job = sd.generate({ prompt: "x", width: 64, height: 64, steps: 3, count: 3, seed: 20, keepFinishedOnCancel: true });
    job.on("progress", (p: ImageProgress) => {
      if (p.stage === "diffusion" && p.imageIndex === 1 && p.step === 1) job.cancel("newLatents");
    });
    const imgs = await job.done;
    expect(imgs.map((i) => i.seed)).toEqual([20, 21]);
    expect(job.status).toBe("cancelled");
    const ac = new AbortController();
    ac.abort();
    const pre = sd.generate({ prompt: "x", width: 64, height: 64, steps: 3, signal: ac.signal });
    await expect(pre.done).rejects.toMatchObject({ code: "ABORTED" });
  });

  it("emits previews every intervalSteps", async () => {
    const sd = await DiffusionModel.load({ model: "m" }, fakeEngine());
    const job = sd.generate({ prompt: "x", width: 64, height: 64, steps: 6, preview: { mode: "proj", intervalSteps: 2 } });
    const previews: number[] = [];
    job.on("preview", (p: { step: number; image: RawImage }) => {
      expect(p.image.width).toBe(64);
      previews.push(p.step);
    });
    await job.done;
    expect(previews).toEqual([2, 4, 6]);
  });

  it("img2img: the init image is checked and passed with a default strength", async () => {
    const eng = fakeEngine();
    const sd = await DiffusionModel.load({ model: "m" }, eng);
    const init: RawImage = { data: new Uint8Array(64 * 64 * 3), width: 64, height: 64, channels: 3 };
    await sd.generate({ prompt: "x", width: 64, height: 64, steps: 1, initImage: init }).done;
    expect(eng.model.calls[0].strength).toBe(0.75);
    expect(eng.model.calls[0].initImage).toBe(init);
    expect(() => sd.generate({ prompt: "x", width: 64, height: 64, initImage: { ...init, width: 32 } })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
    expect(() => sd.generate({ prompt: "x", width: 64, height: 64, initImage: { ...init, data: new Uint8Array(5) } })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
    expect(() => sd.generate({ prompt: "x", width: 64, height: 64, mask: init })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("bad options are INVALID_ARGUMENT, synchronously, and nothing runs", async () => {
    const eng = fakeEngine();
    const sd = await DiffusionModel.load({ model: "m" }, eng);
    const bad: object[] = [
      { prompt: "x", width: 100 },
      { prompt: "x", width: 32 },
      { prompt: "x", width: 72 }, // a multiple of 8 but not 64: sd.cpp would round it up to 128
      { prompt: "x", height: 8192 },
      { prompt: "x", steps: 0 },
      { prompt: "x", cfgScale: NaN },
      { prompt: "x", sampler: "nope" },
      { prompt: "x", scheduler: "nope" },
      { prompt: "x", count: 0 },
      { prompt: "x", seed: -2 },
      { prompt: "x", strength: 2, initImage: { data: new Uint8Array(512 * 512 * 3), width: 512, height: 512, channels: 3 } },
      { prompt: 5 },
      // prompts past MAX_PROMPT_CHARS (sd.cpp's parser recursion would overflow the stack)
      { prompt: "a".repeat(4097) },
      { prompt: "x", negativePrompt: "b".repeat(30_000) },
      // unknown keys, anywhere, by name
      { prompt: "x", guidanceScale: 3 },
      { prompt: "x", preview: { every: 2 } },
      { prompt: "x", loras: [{ path: "l.safetensors", strength: 1 }] },
    ];
    for (const o of bad) expect(() => sd.generate(o as never), JSON.stringify(o)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(eng.model.calls).toHaveLength(0);
    await expect(DiffusionModel.load({} as never, eng)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(DiffusionModel.load({ model: "m", vaeOnCpu: true } as never, eng)).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/vaeOnCpu/),
    });
    expect(() => sd.generate(null as never)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    // a LoRA that does not exist is MODEL_NOT_FOUND (sd.cpp would skip it and generate without)
    expect(() => sd.generate({ prompt: "x", loras: [{ path: "/nonexistent/lora.safetensors" }] })).toThrow(
      expect.objectContaining({ code: "MODEL_NOT_FOUND" }),
    );
    expect(eng.model.calls).toHaveLength(0);
  });

  it("one generation at a time per process, in order, progress never crossed", async () => {
    const m1 = new FakeModel(3);
    const m2 = new FakeModel(3);
    const a = await DiffusionModel.load({ model: "a" }, fakeEngine(m1));
    const b = await DiffusionModel.load({ model: "b" }, fakeEngine(m2));
    const order: string[] = [];
    const j1 = a.generate({ prompt: "x", width: 64, height: 64, steps: 3, count: 2 });
    const j2 = b.generate({ prompt: "x", width: 64, height: 64, steps: 5, count: 1 });
    const j3 = a.generate({ prompt: "x", width: 64, height: 64, steps: 2, count: 1 });
    j1.on("progress", (p: ImageProgress) => {
      expect(p.steps).toBe(3);
      expect(p.imageCount).toBe(2);
    });
    j2.on("progress", (p: ImageProgress) => {
      expect(p.steps).toBe(5);
      expect(p.imageCount).toBe(1);
    });
    for (const [name, j] of [
      ["j1", j1],
      ["j2", j2],
      ["j3", j3],
    ] as const)
      void j.done.then(() => order.push(name));
    expect(j2.status).toBe("pending");
    await Promise.all([j1.done, j2.done, j3.done]);
    expect(order).toEqual(["j1", "j2", "j3"]);
    expect(FakeModel.maxActive).toBe(1); // never two generations at once, across models
  });

  it("dispose waits for the running generation; use after dispose is DISPOSED", async () => {
    const m = new FakeModel(5);
    const sd = await DiffusionModel.load({ model: "m" }, fakeEngine(m));
    const job = sd.generate({ prompt: "x", width: 64, height: 64, steps: 5 });
    await sleep(1);
    await sd.dispose();
    expect(job.status).toBe("done");
    expect(m.disposed).toBe(true);
    expect(() => sd.generate({ prompt: "x" })).toThrow(expect.objectContaining({ code: "DISPOSED" }));
  });

  it("encodePng writes RGBA and grey too", async () => {
    for (const channels of [1, 4] as const) {
      const data = Uint8Array.from({ length: 8 * 2 * channels }, (_, i) => i % 256);
      const d = decodePng(await encodePng({ data, width: 8, height: 2, channels }));
      expect(d.channels).toBe(channels);
      expect(Buffer.from(data).equals(d.data)).toBe(true);
    }
  });
});

describe("ProgressTracker's ETA", () => {
  it("is the remaining work × the median of the last 8 sampling steps: one slow step does not swing it, a lasting change shows within a few", () => {
    let t = 0;
    const tr = new ProgressTracker(20, 1, { now: () => t });
    tr.update({ type: "stage", stage: "encoding", imageIndex: 0 });
    let p: ImageProgress | undefined;
    for (let step = 1; step <= 10; step++) {
      t += step === 5 ? 500 : 10; // one step 50× slower
      p = tr.update({ type: "step", imageIndex: 0, step, steps: 20 });
    }
    // 1 (encoding) + 20 steps + 2 decode units, 11 done: 12 units × 10 ms
    expect(p?.etaMs).toBe(120);
    for (let step = 11; step <= 16; step++) {
      t += 40; // now every step is 4× slower
      p = tr.update({ type: "step", imageIndex: 0, step, steps: 20 });
    }
    expect(p?.etaMs).toBe(6 * 40);
  });

  it("times steps by the engine's own stepUs when the events carry them (not by when they reach JavaScript), and reports each as stepMs", () => {
    let t = 0;
    const tr = new ProgressTracker(10, 1, { now: () => t });
    tr.update({ type: "stage", stage: "encoding", imageIndex: 0 });
    let p: ImageProgress | undefined;
    for (let step = 1; step <= 5; step++) {
      t += step === 3 ? 900 : 1; // the events arrive late or bunched: the event loop was busy
      p = tr.update({ type: "step", imageIndex: 0, step, steps: 10, stepUs: 20_000 });
      expect(p?.stepMs).toBe(20);
    }
    // 1 + 10 + 2 units, 6 done: 7 × the engine's 20 ms
    expect(p?.etaMs).toBe(140);
    expect(tr.update({ type: "stage", stage: "decoding", imageIndex: 0 })?.stepMs).toBeUndefined();
    // without stepUs (an engine double, an untimed step): no stepMs, the time between events
    const plain = new ProgressTracker(10, 1, { now: () => t });
    plain.update({ type: "stage", stage: "encoding", imageIndex: 0 });
    t += 5;
    expect(plain.update({ type: "step", imageIndex: 0, step: 1, steps: 10, stepUs: 0 })?.stepMs).toBeUndefined();
  });
});
