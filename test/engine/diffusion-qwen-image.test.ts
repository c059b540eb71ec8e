// Qwen-Image on the real engine: a random-weight model in three parts
// (lib/tools/sd/qwen-image.ts: DiT, Qwen2.5-VL text encoder, Wan VAE),
// loaded as DiffusionModel.load({ diffusionModel, llm, vae }) and sampled
// with cfgScale 1 (one DiT pass a step), euler and sd.cpp's flow schedule,
// 64×64, 2 steps. Random weights make noise-like images, but every kernel of
// the pipeline (Qwen2 tokenizer and chat template, Qwen2.5-VL, the
// dual-stream DiT, Wan VAE) runs for real. sd.cpp fixes most Qwen-Image sizes
// (DiT hidden 3072, text encoder hidden 3584), so the parts are written as
// q4_0: ~620 MB in all, a few seconds to write.
//
// Part of `npm run test:diffusion`. Without deps/stable-diffusion.cpp the
// suite is reported as skipped, with the reason in its name.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { capabilities } from "../../lib/index";
import { DiffusionModel, type GeneratedImage, type ImageProgress, type RawImage } from "../../lib/diffusion/index";
import { native } from "../../lib/binding/load";
import { ENGINE_HOWTO, loadParams } from "../../lib/diffusion/native-engine";
import { generateRandomQwenImageModel, type GenerateQwenImageResult } from "../../lib/tools";
import { tempDir, THREADS } from "../helpers";

const available = capabilities().diffusion;
const title = available
  ? "stable-diffusion.cpp Qwen-Image (random-weight DiT + Qwen2.5-VL + Wan VAE)"
  : `stable-diffusion.cpp Qwen-Image — SKIPPED: the addon has no diffusion engine (${ENGINE_HOWTO})`;

const SIZE = 64;
const base = {
  prompt: "a lighthouse at dusk",
  width: SIZE,
  height: SIZE,
  steps: 2,
  cfgScale: 1,
  sampler: "euler",
  scheduler: "discrete",
  output: "both" as const,
};

const raw = (img: GeneratedImage): RawImage => {
  expect(img.raw).toBeDefined();
  return img.raw!;
};
const same = (a: GeneratedImage, b: GeneratedImage) => Buffer.from(raw(a).data).equals(Buffer.from(raw(b).data));

describe.skipIf(!available)(title, () => {
  let tmp: ReturnType<typeof tempDir>;
  let parts: GenerateQwenImageResult;
  let sd: DiffusionModel;
  const files = () => ({ diffusionModel: parts.diffusionModel.path, llm: parts.llm.path, vae: parts.vae.path });

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-qwen-image-");
    parts = await generateRandomQwenImageModel(path.join(tmp.dir, "q"), { seed: 11 });
    sd = await DiffusionModel.load({ ...files(), threads: THREADS });
  }, 120_000);
  afterAll(async () => {
    await sd?.dispose();
    tmp?.cleanup();
  });

  it("the generator writes three GGUF files, byte-identical for a seed and different for another", async () => {
    for (const p of [parts.diffusionModel, parts.llm, parts.vae]) {
      expect(fs.statSync(p.path).size).toBe(p.bytes);
      expect(fs.readFileSync(p.path).subarray(0, 4).toString("latin1")).toBe("GGUF");
      expect(p.parameters).toBeGreaterThan(0);
    }
    expect(parts).toMatchObject({ seed: 11, type: "q4_0" });
    // the full-size parts take seconds to write: determinism is checked on narrow ones (same writer, same plans)
    const sizes = { ditHeads: 1, teHidden: 256, teVocab: 4096, vaeChannels: 8 };
    const first = await generateRandomQwenImageModel(path.join(tmp.dir, "first"), { seed: 11, sizes });
    const again = await generateRandomQwenImageModel(path.join(tmp.dir, "again"), { seed: 11, sizes });
    const other = await generateRandomQwenImageModel(path.join(tmp.dir, "other"), { seed: 12, sizes });
    for (const k of ["diffusionModel", "llm", "vae"] as const) {
      expect(fs.readFileSync(again[k].path).equals(fs.readFileSync(first[k].path))).toBe(true);
      expect(fs.readFileSync(other[k].path).equals(fs.readFileSync(first[k].path))).toBe(false);
    }
    await expect(generateRandomQwenImageModel(path.join(tmp.dir, "bad"), { seed: -1 })).rejects.toThrow(RangeError);
    await expect(generateRandomQwenImageModel(path.join(tmp.dir, "bad"), { type: "q5_k" as "q4_0" })).rejects.toThrow(RangeError);
  });

  it("one image: a 64×64 PNG with varied pixels, reproducible for its seed; another seed differs", async () => {
    const progress: ImageProgress[] = [];
    const job = sd.generate({ ...base, seed: 1234 });
    job.on("progress", (p: ImageProgress) => progress.push(p));
    const [img] = await job.done;
    expect(img).toMatchObject({ width: SIZE, height: SIZE, seed: 1234 });
    expect(img.png!.subarray(1, 4).toString("latin1")).toBe("PNG");
    expect([img.png!.readUInt32BE(16), img.png!.readUInt32BE(20)]).toEqual([SIZE, SIZE]); // IHDR
    const r = raw(img);
    expect(r.data.length).toBe(SIZE * SIZE * r.channels);
    expect(new Set(r.data).size).toBeGreaterThan(16); // not a flat image
    const stages = progress.map((p) => p.stage).filter((s, i, a) => s !== a[i - 1]);
    expect(stages).toEqual(["loading", "encoding", "diffusion", "decoding"]);
    expect(progress.filter((p) => p.stage === "diffusion").map((p) => p.step)).toEqual([1, 2]);

    const [again] = await sd.generate({ ...base, seed: 1234 }).done;
    expect(same(img, again)).toBe(true);
    const [other] = await sd.generate({ ...base, seed: 1235 }).done;
    expect(same(img, other)).toBe(false);
    // the prompt reaches the DiT through Qwen2.5-VL (a small change with random weights, but a change)
    const [prompted] = await sd.generate({ ...base, seed: 1234, prompt: "a dog on the moon" }).done;
    expect(same(img, prompted)).toBe(false);
  }, 120_000);

  it("img2img runs through the VAE encoder and depends on the init image", async () => {
    const init = (k: number): RawImage => ({ data: new Uint8Array(SIZE * SIZE * 3).map((_, i) => (i * k) % 251), width: SIZE, height: SIZE, channels: 3 });
    // 4 steps at strength 0.5 start from the schedule's second sigma (with 2 steps sd.cpp would start from σ = 1, pure noise)
    const [a] = await sd.generate({ ...base, steps: 4, seed: 5, initImage: init(1), strength: 0.5 }).done;
    const [b] = await sd.generate({ ...base, steps: 4, seed: 5, initImage: init(7), strength: 0.5 }).done;
    expect([a.width, a.height]).toEqual([SIZE, SIZE]);
    expect(same(a, b)).toBe(false);
  }, 120_000);

  it("a missing llm file is MODEL_NOT_FOUND; leaving the llm out is INVALID_MODEL", async () => {
    await expect(DiffusionModel.load({ ...files(), llm: path.join(tmp.dir, "missing-qwen2.5-vl.gguf") })).rejects.toMatchObject({ code: "MODEL_NOT_FOUND" });
    await expect(DiffusionModel.load({ ...files(), llm: undefined, threads: THREADS })).rejects.toMatchObject({ code: "INVALID_MODEL" });
  }, 60_000);

  it("the model's own sampler and scheduler (the defaults) are euler and discrete, as sd-cli picks them for Qwen-Image", () => {
    expect(sd.defaultSampler).toBe("euler");
    expect(sd.defaultScheduler()).toBe("discrete");
  });

  // sd.cpp loads this without complaint and then fails a GGML_ASSERT (a process abort) in the DiT's txt_norm at
  // the first generation: the load refuses it (lib/diffusion/parts.ts, and again native/diffusion/part_check.cpp).
  it("a text encoder narrower than the DiT's 3584 is INVALID_MODEL at load; the loaded model still works", async () => {
    const odd = await generateRandomQwenImageModel(path.join(tmp.dir, "odd"), { seed: 3, sizes: { teHidden: 1024 } });
    const load = { ...files(), llm: odd.llm.path, threads: THREADS };
    const refused = { code: "INVALID_MODEL", message: expect.stringMatching(/text encoder \(llm\) has hidden size 1024, the diffusion model takes 3584/) };
    await expect(DiffusionModel.load(load)).rejects.toMatchObject(refused);
    const addon = native();
    await expect(addon.loadDiffusionModel!(loadParams(load, "cpu"), undefined, new addon.CancelToken())).rejects.toMatchObject(refused);
    expect(await sd.generate({ ...base, seed: 1 }).done).toHaveLength(1);
  }, 120_000);
});
