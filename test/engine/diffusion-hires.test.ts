// The hires fix (ImageGenerateOptions.hires; stable-diffusion.cpp's
// sd_hires_params_t) on the real engine with the generated random-weight SD1
// checkpoint: a second sampling pass at the target size, its progress stage,
// the PNG metadata, batches, the latent, pixel and ESRGAN upscalers, and the
// option checks in TS and again in C++.
//
// Part of `npm run test:diffusion`. Without deps/stable-diffusion.cpp the
// suite is reported as skipped, with the reason in its name.
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { native } from "../../lib/binding/load";
import { capabilities } from "../../lib/index";
import { DiffusionModel, type GeneratedImage, type ImageProgress } from "../../lib/diffusion/index";
import { ENGINE_HOWTO, loadParams } from "../../lib/diffusion/native-engine";
import { generateRandomEsrganModel, generateRandomSd15Model } from "../../lib/tools";
import { tempDir, THREADS } from "../helpers";

const available = capabilities().diffusion;
const title = available
  ? "stable-diffusion.cpp hires fix (random-weight SD1 model)"
  : `stable-diffusion.cpp hires fix — SKIPPED: the addon has no diffusion engine (${ENGINE_HOWTO})`;

const base = { prompt: "a lighthouse at dusk", width: 64, height: 64, steps: 2, cfgScale: 7, sampler: "euler", seed: 1234, output: "both" as const };
const invalid = expect.objectContaining({ code: "INVALID_ARGUMENT" });
const same = (a: GeneratedImage, b: GeneratedImage) => Buffer.from(a.raw!.data).equals(Buffer.from(b.raw!.data));

/** The tEXt "parameters" chunk of a PNG. */
function pngParameters(png: Buffer): string | undefined {
  for (let at = 8; at < png.length; ) {
    const len = png.readUInt32BE(at);
    const type = png.toString("latin1", at + 4, at + 8);
    if (type === "tEXt") {
      const body = png.subarray(at + 8, at + 8 + len);
      const nul = body.indexOf(0);
      if (body.toString("latin1", 0, nul) === "parameters") return body.toString("latin1", nul + 1);
    }
    at += 12 + len;
  }
  return undefined;
}

describe.skipIf(!available)(title, () => {
  let tmp: ReturnType<typeof tempDir>;
  let modelFile: string;
  let esrganFile: string;
  let sd: DiffusionModel;

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-hires-");
    modelFile = path.join(tmp.dir, "random-sd1-tiny.gguf");
    esrganFile = path.join(tmp.dir, "random-esrgan-x2.gguf");
    await generateRandomSd15Model(modelFile, { preset: "tiny", type: "f16", seed: 7 });
    await generateRandomEsrganModel(esrganFile, { scale: 2, seed: 5 });
    sd = await DiffusionModel.load({ model: modelFile, threads: THREADS });
  });
  afterAll(async () => {
    await sd?.dispose();
    tmp?.cleanup();
  });

  it("scale 2: the image is the target size; progress goes diffusion → hires → decoding, rising to 100 %; the PNG says so", async () => {
    const progress: ImageProgress[] = [];
    const job = sd.generate({ ...base, hires: { scale: 2, steps: 3 } });
    job.on("progress", (p: ImageProgress) => progress.push({ ...p }));
    const [img] = await job.done;
    expect([img.width, img.height, img.raw!.width, img.raw!.height]).toEqual([128, 128, 128, 128]);
    const stages = progress.map((p) => p.stage).filter((s, i, a) => s !== a[i - 1]);
    expect(stages).toEqual(["loading", "encoding", "diffusion", "hires", "decoding"]);
    const hiresSteps = progress.filter((p) => p.stage === "hires" && p.step > 0);
    expect(hiresSteps.map((p) => p.step)).toEqual([1, 2, 3]);
    for (const p of hiresSteps) expect(p.steps).toBe(3);
    for (let i = 1; i < progress.length; i++) expect(progress[i].percent).toBeGreaterThanOrEqual(progress[i - 1].percent);
    expect(progress.at(-1)!.percent).toBe(100);
    const text = pngParameters(img.png!);
    expect(text).toMatch(/Size: 64x64/);
    expect(text).toMatch(/Hires resize: 128x128, Hires steps: 3, Hires upscaler: Latent/);
    expect(text).toMatch(/Denoising strength: 0.7/);
    // a second pass, not a resize of the 64×64 image: strength changes the result
    const [weaker] = await sd.generate({ ...base, hires: { scale: 2, steps: 3, strength: 0.3 } }).done;
    expect(same(img, weaker)).toBe(false);
  });

  it("a batch with hires gives each image at the target size, each equal to its single run (seed s + i)", async () => {
    const hires = { width: 128, height: 64, steps: 2, upscaler: "lanczos" as const };
    const batch = await sd.generate({ ...base, count: 2, hires }).done;
    expect(batch.map((i) => [i.width, i.height, i.seed])).toEqual([
      [128, 64, 1234],
      [128, 64, 1235],
    ]);
    const [second] = await sd.generate({ ...base, seed: 1235, hires }).done;
    expect(same(batch[1], second)).toBe(true);
    expect(same(batch[0], batch[1])).toBe(false);
  });

  it('upscaler "model": an ESRGAN file upscales the first pass before the second', async () => {
    const progress: ImageProgress[] = [];
    const job = sd.generate({ ...base, hires: { scale: 2, steps: 2, upscaler: "model", upscalerModel: esrganFile } });
    job.on("progress", (p: ImageProgress) => progress.push({ ...p }));
    const [img] = await job.done;
    expect([img.width, img.height]).toEqual([128, 128]);
    expect(progress.filter((p) => p.stage === "hires" && p.step > 0).map((p) => p.step)).toEqual([1, 2]);
    expect(pngParameters(img.png!)).toMatch(/Hires upscaler: ESRGAN/);
  });

  it("a cancel during the hires pass stops it mid-graph (on the CPU backend): ABORTED far sooner than the pass takes, the model unharmed", async () => {
    // 128² → 256² through the ESRGAN file: the pass decodes, upscales, encodes and samples for seconds here
    const params = { ...base, width: 128, height: 128, seed: 21, hires: { scale: 2, steps: 2, upscaler: "model" as const, upscalerModel: esrganFile } };
    const hiresMs = async (cancelAfterMs?: number) => {
      const job = sd.generate(params);
      let started = 0;
      job.on("progress", (p: ImageProgress) => {
        if (p.stage !== "hires" || started) return;
        started = performance.now();
        if (cancelAfterMs !== undefined) setTimeout(() => job.cancel(), cancelAfterMs);
      });
      let decoding = 0;
      job.on("progress", (p: ImageProgress) => {
        if (p.stage === "decoding" && !decoding) decoding = performance.now();
      });
      const result = await job.done.then(
        (images) => ({ outcome: "done", images }),
        (e: { code?: string }) => ({ outcome: String(e.code), images: [] as GeneratedImage[] }),
      );
      return { ms: (decoding || performance.now()) - started - (cancelAfterMs ?? 0), ...result };
    };
    const whole = await hiresMs();
    expect(whole.outcome).toBe("done");
    const cut = await hiresMs(50);
    console.log(`[diffusion] hires pass 128² → 256² (ESRGAN): ${whole.ms.toFixed(0)} ms whole; cancelled 50 ms in, done ${cut.ms.toFixed(0)} ms after`);
    expect(cut.outcome).toBe("ABORTED");
    // the graph hook is on for a model wholly on the CPU backend (memoryBytes' one key: the device it computes on)
    if (Object.keys(sd.memoryBytes).join() === "CPU") expect(cut.ms).toBeLessThan(whole.ms / 3);
    const [again] = await sd.generate(params).done;
    expect(same(again, whole.images[0])).toBe(true);
  });

  it("bad hires options are INVALID_ARGUMENT (a missing ESRGAN file MODEL_NOT_FOUND), before anything runs", async () => {
    // generate() validates before it starts (a synchronous throw, here as a rejection)
    const bad = async (hires: object, o: object = {}) => sd.generate({ ...base, ...o, hires } as never).done;
    await expect(bad({ scale: 1.5 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/96×96/) });
    await expect(bad({ scale: 5 })).rejects.toEqual(invalid);
    await expect(bad({ width: 128 })).rejects.toEqual(invalid);
    await expect(bad({ width: 128, height: 128, scale: 2 })).rejects.toEqual(invalid);
    await expect(bad({ width: 32, height: 64 })).rejects.toEqual(invalid);
    await expect(bad({ strength: 0 })).rejects.toEqual(invalid);
    await expect(bad({ upscaler: "bilinear" })).rejects.toEqual(invalid);
    await expect(bad({ upscaler: "model" })).rejects.toEqual(invalid);
    await expect(bad({ upscalerModel: esrganFile })).rejects.toEqual(invalid);
    await expect(bad({ denoise: 0.5 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/denoise/) });
    await expect(bad({ upscaler: "model", upscalerModel: path.join(tmp.dir, "missing.pth") })).rejects.toMatchObject({ code: "MODEL_NOT_FOUND" });
    await expect(bad({ scale: 2 }, { width: 2560 })).rejects.toEqual(invalid);
  });

  it("C++ checks the same, TS bypassed", async () => {
    const addon = native();
    const tok = () => new addon.CancelToken();
    const h = await addon.loadDiffusionModel!(loadParams({ model: modelFile, threads: THREADS, flashAttention: false }, "cpu"), undefined, tok());
    try {
      const p = { prompt: "x", negativePrompt: "", width: 64, height: 64, steps: 1, cfgScale: 7, sampler: "euler", scheduler: "discrete", seed: 1, count: 1 };
      const hires = { width: 128, height: 128, steps: 1, strength: 0.5, upscaler: "latent" };
      const g = (o: object) => h.generate({ ...p, loras: [], refImages: [], ...o } as never, () => undefined, tok());
      expect(() => g({ hires: { ...hires, scale: 2 } })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT", message: "unknown hires field scale" }));
      expect(() => g({ hires: { ...hires, width: 96 } })).toThrow(invalid);
      expect(() => g({ hires: { ...hires, width: 32 } })).toThrow(invalid);
      expect(() => g({ hires: { ...hires, height: 8192 } })).toThrow(invalid);
      expect(() => g({ hires: { ...hires, steps: 0 } })).toThrow(invalid);
      expect(() => g({ hires: { ...hires, strength: 0 } })).toThrow(invalid);
      expect(() => g({ hires: { ...hires, strength: Number.NaN } })).toThrow(invalid);
      expect(() => g({ hires: { ...hires, upscaler: "Latent" } })).toThrow(invalid);
      expect(() => g({ hires: { ...hires, upscaler: "model" } })).toThrow(invalid);
      expect(() => g({ hires: { ...hires, upscalerModel: esrganFile } })).toThrow(invalid);
      expect(() => g({ hires: "2x" })).toThrow(invalid);
      await expect(g({ hires: { ...hires, upscaler: "model", upscalerModel: path.join(tmp.dir, "missing.gguf") } })).rejects.toMatchObject({
        code: "MODEL_NOT_FOUND",
      });
      const [img] = await g({ hires });
      expect([img.width, img.height]).toEqual([128, 128]);
    } finally {
      h.dispose();
    }
  });
});
