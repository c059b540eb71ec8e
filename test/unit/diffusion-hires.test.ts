// The hires fix's option checks and defaults (lib/diffusion/params.ts), its
// progress (ProgressTracker), PNG metadata and the size the orchestrator
// budgets (computeSize). No engine needed (the engine-backed checks:
// test/engine/diffusion-hires.test.ts).
import fs from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { type ImageProgress, type RawImage, resolveGenerateParams } from "../../lib/diffusion/index";
import { HIRES_DEFAULTS, HIRES_UPSCALERS } from "../../lib/diffusion/defaults";
import { computeSize } from "../../lib/diffusion/params";
import { parametersText } from "../../lib/diffusion/png";
import { ProgressTracker } from "../../lib/diffusion/progress";
import { tempDir } from "../helpers";

const model = { samplers: ["euler", "euler_a"], schedulers: ["discrete"], controlNet: true };
const base = { prompt: "x", width: 64, height: 64, steps: 5 };
const img = (w: number, h: number): RawImage => ({ data: new Uint8Array(w * h * 3), width: w, height: h, channels: 3 });
const invalid = expect.objectContaining({ code: "INVALID_ARGUMENT" });
const hires = (h: unknown, o: object = {}) => resolveGenerateParams({ ...base, ...o, hires: h } as never, model).hires;

describe("hires fix options", () => {
  it("defaults: scale 2, the job's steps, strength 0.7, the latent upscaler (sd_hires_params_init's); no hires unless asked", () => {
    expect(resolveGenerateParams(base, model).hires).toBeUndefined();
    expect(hires({})).toEqual({ width: 128, height: 128, steps: 5, strength: HIRES_DEFAULTS.strength, upscaler: "latent" });
    expect(hires({ scale: 1.5 }, { width: 128, height: 256 })).toMatchObject({ width: 192, height: 384 });
    expect(hires({ width: 192, height: 64, steps: 9, strength: 0.4, upscaler: "latent-bicubic" })).toEqual({
      width: 192,
      height: 64,
      steps: 9,
      strength: 0.4,
      upscaler: "latent-bicubic",
    });
    expect(HIRES_UPSCALERS).toHaveLength(9);
  });

  it("the target: multiples of 64, at least the job's size, at most 4096; scale or width and height", () => {
    expect(() => hires({ scale: 1.5 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/96×96/) }));
    expect(() => hires({ scale: 0.5 })).toThrow(invalid);
    expect(() => hires({ scale: 4.5 })).toThrow(invalid);
    expect(() => hires({ scale: 4 }, { width: 2048, height: 64 })).toThrow(expect.objectContaining({ message: expect.stringMatching(/4096/) }));
    expect(() => hires({ width: 128 })).toThrow(invalid);
    expect(() => hires({ height: 128 })).toThrow(invalid);
    expect(() => hires({ width: 128, height: 128, scale: 2 })).toThrow(invalid);
    expect(() => hires({ width: 64, height: 32 })).toThrow(invalid);
    expect(() => hires({ width: 160, height: 128 })).toThrow(invalid);
    expect(() => hires({ width: 8192, height: 128 })).toThrow(invalid);
  });

  it("steps, strength and upscaler are checked; unknown fields are named; not with a controlImage", () => {
    expect(() => hires({ steps: 0 })).toThrow(invalid);
    expect(() => hires({ steps: 2.5 })).toThrow(invalid);
    expect(() => hires({ strength: 0 })).toThrow(invalid);
    expect(() => hires({ strength: 1.1 })).toThrow(invalid);
    expect(() => hires({ strength: Number.NaN })).toThrow(invalid);
    expect(() => hires({ upscaler: "Latent" })).toThrow(invalid);
    expect(() => hires({ denoise: 0.5 })).toThrow(expect.objectContaining({ message: expect.stringMatching(/denoise/) }));
    expect(() => hires("2x")).toThrow(invalid);
    expect(() => hires({}, { controlImage: img(64, 64) })).toThrow(expect.objectContaining({ message: expect.stringMatching(/controlImage/) }));
  });

  it('upscaler "model" needs an existing upscalerModel file, and upscalerModel needs "model"', () => {
    const tmp = tempDir("genai-native-hires-");
    try {
      const esrgan = path.join(tmp.dir, "esrgan.gguf");
      fs.writeFileSync(esrgan, "x");
      expect(hires({ upscaler: "model", upscalerModel: esrgan })).toMatchObject({ upscaler: "model", upscalerModel: esrgan });
      expect(() => hires({ upscaler: "model" })).toThrow(invalid);
      expect(() => hires({ upscalerModel: esrgan })).toThrow(invalid);
      expect(() => hires({ upscaler: "model", upscalerModel: path.join(tmp.dir, "missing.gguf") })).toThrow(
        expect.objectContaining({ code: "MODEL_NOT_FOUND" }),
      );
    } finally {
      tmp.cleanup();
    }
  });

  it("computeSize: the compute buffers are sized by the target; the pixel upscalers encode again", () => {
    expect(computeSize(64, 64, undefined)).toEqual({ width: 64, height: 64, encodes: false });
    expect(computeSize(64, 128, {})).toEqual({ width: 128, height: 256, encodes: false });
    expect(computeSize(64, 64, { width: 192, height: 128, upscaler: "lanczos" })).toEqual({ width: 192, height: 128, encodes: true });
    expect(computeSize(64, 64, { upscaler: "model", scale: 3 })).toMatchObject({ width: 192, encodes: true });
  });
});

describe("hires fix and decode progress; metadata", () => {
  it("ProgressTracker: diffusion steps, then the hires stage with its own steps, then decoding; percent rises to 100", () => {
    const tr = new ProgressTracker(4, 2, { hiresSteps: 3, now: () => 0 });
    const seen: ImageProgress[] = [];
    const push = (p: ImageProgress | undefined) => p && seen.push(p);
    push(tr.update({ type: "stage", stage: "encoding", imageIndex: 0 }));
    for (const i of [0, 1]) for (let s = 1; s <= 4; s++) push(tr.update({ type: "step", imageIndex: i, step: s, steps: 4 }));
    push(tr.update({ type: "stage", stage: "hires", imageIndex: 0 }));
    for (const i of [0, 1]) for (let s = 1; s <= 3; s++) push(tr.update({ type: "step", imageIndex: i, step: s, steps: 3, hires: true }));
    push(tr.update({ type: "stage", stage: "decoding", imageIndex: 0 }));
    push(tr.update({ type: "image", imageIndex: 0 }));
    push(tr.update({ type: "image", imageIndex: 1 }));
    for (let i = 1; i < seen.length; i++) expect(seen[i].percent).toBeGreaterThanOrEqual(seen[i - 1].percent);
    const h = seen.filter((p) => p.stage === "hires");
    expect(h.map((p) => [p.imageIndex, p.step, p.steps])).toEqual([
      [0, 0, 3],
      [0, 1, 3],
      [0, 2, 3],
      [0, 3, 3],
      [1, 1, 3],
      [1, 2, 3],
      [1, 3, 3],
    ]);
    // 1 + 2 × (4 + 3 + 2) units: after the first passes 9 of 19 are done
    expect(h[0].percent).toBeCloseTo((9 / 19) * 100, 6);
    expect(seen.at(-1)!.percent).toBe(100);
  });

  it("ProgressTracker: VAE tiles move the decoding stage's percent (tile, tiles reported); percent never goes back", () => {
    let t = 0;
    const tr = new ProgressTracker(2, 2, { now: () => t });
    const seen: ImageProgress[] = [];
    const push = (p: ImageProgress | undefined) => p && seen.push(p);
    push(tr.update({ type: "stage", stage: "encoding", imageIndex: 0 }));
    for (const i of [0, 1])
      for (let s = 1; s <= 2; s++) {
        t += 100;
        push(tr.update({ type: "step", imageIndex: i, step: s, steps: 2 }));
      }
    push(tr.update({ type: "stage", stage: "decoding", imageIndex: 0 }));
    const before = seen.at(-1)!.percent;
    for (let k = 1; k <= 4; k++) push(tr.update({ type: "decodeTile", imageIndex: 0, tile: k, tiles: 4 }));
    const tiles = seen.filter((p) => p.tiles !== undefined);
    expect(tiles.map((p) => [p.stage, p.imageIndex, p.tile, p.tiles])).toEqual([1, 2, 3, 4].map((k) => ["decoding", 0, k, 4]));
    expect(tiles[0].percent).toBeGreaterThan(before);
    // the first decode took 10 ms, far less than its 2-step estimate: the rest shrinks, the percent does not fall
    t += 10;
    push(tr.update({ type: "image", imageIndex: 0 }));
    for (let i = 1; i < seen.length; i++) expect(seen[i].percent).toBeGreaterThanOrEqual(seen[i - 1].percent);
    push(tr.update({ type: "image", imageIndex: 1 }));
    expect(seen.at(-1)!.percent).toBe(100);
  });

  it('parametersText: "Size" is the first pass; Hires resize, Hires steps, Hires upscaler (AUTOMATIC1111\'s names) and the denoising strength', () => {
    const p = { prompt: "a", steps: 5, sampler: "euler", scheduler: "discrete", cfgScale: 7, seed: 3, width: 64, height: 64 };
    const t = parametersText({ ...p, hires: { width: 128, height: 192, steps: 4, strength: 0.55, upscaler: "latent-nearest-exact" } });
    expect(t).toMatch(/Size: 64x64/);
    expect(t).toMatch(/Denoising strength: 0.55, Hires resize: 128x192, Hires steps: 4, Hires upscaler: Latent \(nearest-exact\)/);
    expect(parametersText(p)).not.toMatch(/Hires|Denoising/);
  });
});
