// stable-diffusion.cpp features beyond plain txt2img, on the real engine with
// the generated random-weight SD1 checkpoint (lib/tools/sd/) and a random
// LoRA for it (lib/tools/sd/lora.ts, kohya tensor names): LoRAs per
// generation, flowShift / guidance, the ControlNet and reference-image inputs,
// the model-part load options, each checked in TS and again in C++.
//
// Part of `npm run test:diffusion`. A build without deps/stable-diffusion.cpp
// has no engine: the suite is then reported as skipped, with the reason in
// its name — never as passed.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { native } from "../../lib/binding/load";
import type { DiffusionLoadParams } from "../../lib/binding/types";
import { capabilities } from "../../lib/index";
import { DiffusionModel, type GeneratedImage, type ImageProgress, type RawImage } from "../../lib/diffusion/index";
import { ENGINE_HOWTO, loadParams } from "../../lib/diffusion/native-engine";
import { generateRandomSd15Model, generateRandomSdLora, SD_PRESETS, sd1TensorPlan } from "../../lib/tools";
import { writePart } from "../../lib/tools/sd/parts-writer";
import { tempDir, THREADS } from "../helpers";
import { expectNativeReads, unreadInput } from "./diffusion-family";

const available = capabilities().diffusion;
const title = available
  ? "stable-diffusion.cpp features (LoRA, flowShift, guidance, ControlNet and reference inputs, model parts)"
  : `stable-diffusion.cpp features — SKIPPED: the addon has no diffusion engine (${ENGINE_HOWTO})`;
if (!available) console.warn(`[test:diffusion] skipped: ${ENGINE_HOWTO}`);

const SIZE = 64;
const base = { prompt: "a lighthouse at dusk", width: SIZE, height: SIZE, steps: 2, cfgScale: 7, sampler: "euler", seed: 1234, output: "raw" as const };
const bytes = (img: GeneratedImage) => Buffer.from(img.raw!.data);
const meanDiff = (a: GeneratedImage, b: GeneratedImage) => {
  const x = bytes(a);
  const y = bytes(b);
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.abs(x[i] - y[i]);
  return s / x.length;
};
const rgb = (w: number, h: number, channels: 3 | 4 = 3): RawImage => ({
  data: new Uint8Array(w * h * channels).map((_, i) => (i * 29) % 256),
  width: w,
  height: h,
  channels,
});
const invalid = expect.objectContaining({ code: "INVALID_ARGUMENT" });

describe.skipIf(!available)(title, () => {
  let tmp: ReturnType<typeof tempDir>;
  let modelFile: string;
  let loraFile: string;
  let sd: DiffusionModel;
  let plain: GeneratedImage;
  const gen = (o: object = {}) => sd.generate({ ...base, ...o }).done.then((r) => r[0]);

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-features-");
    modelFile = path.join(tmp.dir, "random-sd1-tiny.gguf");
    loraFile = path.join(tmp.dir, "random-sd1-lora.safetensors");
    await generateRandomSd15Model(modelFile, { preset: "tiny", type: "f16", seed: 7 });
    await generateRandomSdLora(loraFile, { preset: "tiny", rank: 4, seed: 3 });
    sd = await DiffusionModel.load({ model: modelFile, threads: THREADS });
    plain = await gen();
  });
  afterAll(async () => {
    await sd?.dispose();
    tmp?.cleanup();
  });

  it("a LoRA changes the image, reproducibly; scale 0 gives the same bytes as none; the model is unchanged afterwards", async () => {
    const withLora = await gen({ loras: [{ path: loraFile }] });
    expect(meanDiff(withLora, plain)).toBeGreaterThan(1);
    expect(bytes(await gen({ loras: [{ path: loraFile, scale: 1 }] })).equals(bytes(withLora))).toBe(true);
    // the former name of scale
    expect(bytes(await gen({ loras: [{ path: loraFile, multiplier: 1 }] })).equals(bytes(withLora))).toBe(true);
    const stronger = await gen({ loras: [{ path: loraFile, scale: 3 }] });
    expect(meanDiff(stronger, plain)).toBeGreaterThan(meanDiff(withLora, plain));
    expect(bytes(await gen({ loras: [{ path: loraFile, scale: 0 }] })).equals(bytes(plain))).toBe(true);
    // the LoRA applied to one generation only
    expect(bytes(await gen()).equals(bytes(plain))).toBe(true);
  });

  it("a missing or truncated LoRA file is a typed error (TS and C++), and bad LoRA specs are INVALID_ARGUMENT", async () => {
    const missing = path.join(tmp.dir, "missing-lora.safetensors");
    expect(() => sd.generate({ ...base, loras: [{ path: missing }] })).toThrow(expect.objectContaining({ code: "MODEL_NOT_FOUND" }));
    const cut = path.join(tmp.dir, "cut-lora.safetensors");
    fs.writeFileSync(cut, fs.readFileSync(loraFile).subarray(0, 2000));
    await expect(gen({ loras: [{ path: cut }] })).rejects.toMatchObject({ code: "INVALID_MODEL" });
    expect(() => sd.generate({ ...base, loras: [{ path: loraFile, scale: 11 }] })).toThrow(invalid);
    expect(() => sd.generate({ ...base, loras: [{ path: loraFile, scale: Number.NaN }] })).toThrow(invalid);
    expect(() => sd.generate({ ...base, loras: [{ path: loraFile, scale: 1, multiplier: 1 }] })).toThrow(invalid);
    expect(() => sd.generate({ ...base, loras: [{ path: loraFile, weight: 1 } as never] })).toThrow(invalid);
    expect(bytes(await gen()).equals(bytes(plain))).toBe(true);
  });

  it("flowShift, guidance and refImages: an SD1 UNet reads none of them, so each is INVALID_ARGUMENT naming it; bad values too", async () => {
    expect(() => sd.generate({ ...base, flowShift: 3 })).toThrow(unreadInput("flowShift"));
    expect(() => sd.generate({ ...base, guidance: 2.5 })).toThrow(unreadInput("guidance"));
    expect(() => sd.generate({ ...base, refImages: [rgb(64, 128), rgb(96, 64, 4)] })).toThrow(unreadInput("refImages"));
    for (const flowShift of [0, -1, Number.NaN, Number.POSITIVE_INFINITY, 101]) expect(() => sd.generate({ ...base, flowShift })).toThrow(invalid);
    for (const guidance of [-1, Number.NaN, 101]) expect(() => sd.generate({ ...base, guidance })).toThrow(invalid);
    // no refImages (an empty list) is the plain image
    expect(bytes(await gen({ refImages: [] })).equals(bytes(plain))).toBe(true);
  });

  it("an instruct-pix2pix UNet (8 input channels: the latent and the reference's) reads refImages, which change its image; flowShift and guidance stay refused", async () => {
    // the tiny SD1 checkpoint with input_blocks.0.0 taking 8 channels: sd.cpp's VERSION_SD1_PIX2PIX (get_sd_version's is_ip2p)
    const file = path.join(tmp.dir, "random-sd1-pix2pix.gguf");
    const plan = sd1TensorPlan(SD_PRESETS.tiny, "f16").map((t) => (t.name.endsWith("input_blocks.0.0.weight") ? { ...t, shape: [3, 3, 8, t.shape[3]] } : t));
    await writePart(file, "random-sd1-pix2pix", plan, 7, undefined, "Stable Diffusion 1.5 instruct-pix2pix");
    const p2p = await DiffusionModel.load({ model: file, threads: THREADS });
    try {
      expect(p2p.reads).toEqual({ guidance: false, flowShift: false, refImages: true });
      const edit = (ref: RawImage) => p2p.generate({ ...base, refImages: [ref] }).done.then((r) => r[0]);
      const a = await edit(rgb(64, 64));
      const again = await edit(rgb(64, 64));
      const b = await edit({ ...rgb(64, 64), data: new Uint8Array(64 * 64 * 3).fill(200) });
      expect(bytes(a).equals(bytes(again))).toBe(true);
      // the random first conv mixes the reference's latent in with small weights: a small but real difference
      expect(meanDiff(a, b)).toBeGreaterThan(0.1);
      expect(() => p2p.generate({ ...base, guidance: 3 })).toThrow(invalid);
      await expectNativeReads({ model: file }, { guidance: false, flowShift: false, refImages: true });
    } finally {
      await p2p.dispose();
    }
  });

  it("controlImage without a ControlNet is INVALID_ARGUMENT; so are bad control and reference images", () => {
    expect(() => sd.generate({ ...base, controlImage: rgb(SIZE, SIZE) })).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/controlNet/) }),
    );
    expect(() => sd.generate({ ...base, controlStrength: 1.5 })).toThrow(invalid);
    expect(() => sd.generate({ ...base, refImages: [rgb(64, 64 * 9)] })).toThrow(invalid);
    expect(() => sd.generate({ ...base, refImages: [rgb(32, 32)] })).toThrow(invalid);
    expect(() => sd.generate({ ...base, refImages: [{ ...rgb(64, 64), channels: 1 } as RawImage] })).toThrow(invalid);
    expect(() => sd.generate({ ...base, refImages: Array.from({ length: 17 }, () => rgb(64, 64)) })).toThrow(invalid);
  });

  it("model parts at load: a missing part is MODEL_NOT_FOUND naming the option, a truncated one INVALID_MODEL", async () => {
    const missing = path.join(tmp.dir, "missing.gguf");
    for (const k of ["llm", "llmVision", "clipVision", "controlNet", "photoMaker"] as const) {
      const err = await DiffusionModel.load({ model: modelFile, threads: THREADS, [k]: missing }).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: "MODEL_NOT_FOUND", message: expect.stringContaining(k) });
    }
    const cut = path.join(tmp.dir, "cut.safetensors");
    fs.writeFileSync(cut, fs.readFileSync(loraFile).subarray(0, 2000));
    await expect(DiffusionModel.load({ model: modelFile, threads: THREADS, controlNet: cut })).rejects.toMatchObject({ code: "INVALID_MODEL" });
    await expect(DiffusionModel.load({ model: modelFile, controlnet: cut } as never)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("step cache: ucache skips steps on a UNet and says how many; a DiT-only mode is INVALID_ARGUMENT, and the model works on", async () => {
    const steps = { ...base, steps: 12, sampler: "euler" };
    const [none] = await sd.generate(steps).done;
    expect(none.cachedSteps).toBeUndefined();
    const [cached] = await sd.generate({ ...steps, cache: { mode: "ucache", threshold: 100, start: 0, end: 1 } }).done;
    expect(cached.cachedSteps).toBeGreaterThan(0);
    expect(cached.cachedSteps).toBeLessThan(12);
    expect(meanDiff(none, cached)).toBeGreaterThan(0);
    // spectrum runs on UNets too
    const [spectrum] = await sd.generate({ ...steps, cache: { mode: "spectrum", warmup: 2 } }).done;
    expect(spectrum.cachedSteps).toBeGreaterThanOrEqual(0);
    for (const mode of ["easycache", "dbcache", "taylorseer", "cache-dit"] as const)
      await expect(sd.generate({ ...steps, cache: { mode } }).done).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
        message: expect.stringMatching(new RegExp(`cache.mode ${mode} cannot be used with this model`)),
      });
    const [again] = await sd.generate(steps).done;
    expect(bytes(again).equals(bytes(none))).toBe(true);
    expect(() => sd.generate({ ...steps, cache: { mode: "ucache", warmup: 2 } })).toThrow(invalid);
    expect(() => sd.generate({ ...steps, cache: { mode: "spectrum", threshold: 1 } })).toThrow(invalid);
    expect(() => sd.generate({ ...steps, cache: { mode: "ucache", start: 0.9, end: 0.5 } })).toThrow(invalid);
    expect(() => sd.generate({ ...steps, cache: { threshold: 1 } as never })).toThrow(invalid);
  });

  it("vaeTiling: the decode reports its tiles, each image is announced once decoded, and the percent never falls", async () => {
    const tiled = await DiffusionModel.load({ model: modelFile, threads: THREADS, vaeTiling: true });
    try {
      const progress: ImageProgress[] = [];
      const job = tiled.generate({ ...base, width: 320, height: 320, steps: 1, count: 2 });
      job.on("progress", (p: ImageProgress) => progress.push({ ...p }));
      const imgs = await job.done;
      expect(imgs.map((i) => [i.width, i.height])).toEqual([
        [320, 320],
        [320, 320],
      ]);
      const tiles = progress.filter((p) => p.tiles !== undefined);
      // sd.cpp's default decode tile is 32 latent pixels (256 px) with overlap: a 320² image (40 latent) takes several
      for (const i of [0, 1]) {
        const mine = tiles.filter((p) => p.imageIndex === i);
        expect(mine.length).toBeGreaterThan(1);
        expect(mine.map((p) => p.tile)).toEqual(mine.map((_, k) => k + 1));
        expect(new Set(mine.map((p) => p.tiles)).size).toBe(1);
        expect(mine.every((p) => p.stage === "decoding")).toBe(true);
      }
      for (let i = 1; i < progress.length; i++) expect(progress[i].percent).toBeGreaterThanOrEqual(progress[i - 1].percent);
      // image 0's tiles moved the bar before image 1 was decoded
      const firstTile = tiles[0].percent;
      const lastOf0 = tiles.filter((p) => p.imageIndex === 0).at(-1)!.percent;
      expect(lastOf0).toBeGreaterThan(firstTile);
      expect(progress.at(-1)!.percent).toBe(100);
    } finally {
      await tiled.dispose();
    }
  });

  it("C++ checks the same, TS bypassed", async () => {
    const addon = native();
    const load: DiffusionLoadParams = loadParams({ model: modelFile, threads: THREADS, flashAttention: false }, "cpu");
    const tok = () => new addon.CancelToken();
    expect(() => addon.loadDiffusionModel!({ ...load, controlnet: "x" } as never, undefined, tok())).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: "unknown diffusion load field controlnet" }),
    );
    await expect(addon.loadDiffusionModel!({ ...load, llm: path.join(tmp.dir, "missing.gguf") }, undefined, tok())).rejects.toMatchObject({
      code: "MODEL_NOT_FOUND",
    });
    const h = await addon.loadDiffusionModel!(load, undefined, tok());
    try {
      expect(h.info().controlNet).toBe(false);
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
      };
      const g = (o: object) => h.generate({ ...p, loras: [], refImages: [], ...o } as never, () => undefined, tok());
      expect(() => g({ loras: [{ path: loraFile, multiplier: 1 }] })).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT", message: "unknown lora field multiplier" }),
      );
      expect(() => g({ loras: [{ path: loraFile, scale: 20 }] })).toThrow(invalid);
      expect(() => g({ flowShift: 0 })).toThrow(invalid);
      expect(() => g({ flowShift: Number.NaN })).toThrow(invalid);
      expect(() => g({ guidance: -1 })).toThrow(invalid);
      expect(() => g({ controlImage: rgb(SIZE, SIZE) })).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/controlNet/) }),
      );
      expect(() => g({ controlStrength: 2 })).toThrow(invalid);
      expect(() => g({ refImages: [rgb(64, 600)] })).toThrow(invalid);
      expect(() => g({ refImages: [rgb(16, 16)] })).toThrow(invalid);
      expect(() => g({ refImages: [{ ...rgb(64, 64), data: new Uint8Array(5) }] })).toThrow(invalid);
      expect(() => g({ refImages: "x" })).toThrow(invalid);
      expect(() => g({ cache: { mode: "ucache", every: 2 } })).toThrow(expect.objectContaining({ message: "unknown cache field every" }));
      expect(() => g({ cache: { mode: "fastcache" } })).toThrow(invalid);
      expect(() => g({ cache: { mode: "ucache", start: 0.5, end: 0.5 } })).toThrow(invalid);
      expect(() => g({ cache: { mode: "ucache", threshold: -1 } })).toThrow(invalid);
      expect(() => g({ cache: { mode: "spectrum", threshold: 1 } })).toThrow(invalid);
      expect(() => g({ cache: { mode: "dbcache", start: 0.2 } })).toThrow(invalid);
      expect(() => g({ cache: { mode: "ucache", warmup: 1 } })).toThrow(invalid);
      expect(h.info().photoMaker).toBe(0);
      expect(() => g({ prompt: "a man img", photoMaker: { idImages: [rgb(64, 64)], styleStrength: 20 } })).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT", message: "photoMaker needs a model loaded with photoMaker weights" }),
      );
      expect(() => g({ photoMaker: [] })).toThrow(invalid);
      await expect(g({ loras: [{ path: path.join(tmp.dir, "missing-lora.safetensors"), scale: 1 }] })).rejects.toMatchObject({ code: "MODEL_NOT_FOUND" });
      expect(await g({ loras: [{ path: loraFile, scale: 0.5 }] })).toHaveLength(1);
    } finally {
      h.dispose();
    }
    // an SD1 UNet reads none of guidance, flowShift, refImages: each refused by C++ too
    await expectNativeReads({ model: modelFile }, { guidance: false, flowShift: false, refImages: false });
  });
});
