// Z-Image (the Z-Image-Turbo family) on the real engine: a random-weight
// model in three parts (lib/tools/sd/z-image.ts: DiT denoiser, Qwen3 text
// encoder, Flux VAE), loaded as DiffusionModel.load({ diffusionModel, llm,
// vae }) and sampled like Z-Image-Turbo (cfgScale 1, euler, sd.cpp's flow
// schedule), 64×64, 2 steps. Random weights make noise-like images, but every
// kernel of the pipeline (Qwen2 tokenizer, Qwen3, DiT with its refiners, VAE)
// runs for real.
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
import { generateRandomZImageModel, type GenerateZImageResult } from "../../lib/tools";
import { tempDir, THREADS } from "../helpers";

const available = capabilities().diffusion;
const title = available
  ? "stable-diffusion.cpp Z-Image (random-weight DiT + Qwen3 + Flux VAE)"
  : `stable-diffusion.cpp Z-Image — SKIPPED: the addon has no diffusion engine (${ENGINE_HOWTO})`;

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
  let parts: GenerateZImageResult;
  let sd: DiffusionModel;
  const files = () => ({ diffusionModel: parts.diffusionModel.path, llm: parts.llm.path, vae: parts.vae.path });

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-zimage-");
    parts = await generateRandomZImageModel(path.join(tmp.dir, "z"), { seed: 11 });
    sd = await DiffusionModel.load({ ...files(), threads: THREADS });
  });
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
    expect(parts).toMatchObject({ seed: 11, type: "f16" });
    const again = await generateRandomZImageModel(path.join(tmp.dir, "again"), { seed: 11 });
    const other = await generateRandomZImageModel(path.join(tmp.dir, "other"), { seed: 12 });
    for (const k of ["diffusionModel", "llm", "vae"] as const) {
      expect(fs.readFileSync(again[k].path).equals(fs.readFileSync(parts[k].path))).toBe(true);
      expect(fs.readFileSync(other[k].path).equals(fs.readFileSync(parts[k].path))).toBe(false);
    }
    await expect(generateRandomZImageModel(path.join(tmp.dir, "bad"), { seed: -1 })).rejects.toThrow(RangeError);
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
    // the prompt reaches the DiT through Qwen3 (a small change with random weights, but a change)
    const [prompted] = await sd.generate({ ...base, seed: 1234, prompt: "a dog on the moon" }).done;
    expect(same(img, prompted)).toBe(false);
  });

  it("img2img runs through the VAE encoder and depends on the init image", async () => {
    const init = (k: number): RawImage => ({ data: new Uint8Array(SIZE * SIZE * 3).map((_, i) => (i * k) % 251), width: SIZE, height: SIZE, channels: 3 });
    // 4 steps at strength 0.5 start from the schedule's second sigma (with 2 steps sd.cpp would start from σ = 1, pure noise)
    const [a] = await sd.generate({ ...base, steps: 4, seed: 5, initImage: init(1), strength: 0.5 }).done;
    const [b] = await sd.generate({ ...base, steps: 4, seed: 5, initImage: init(7), strength: 0.5 }).done;
    expect([a.width, a.height]).toEqual([SIZE, SIZE]);
    expect(same(a, b)).toBe(false);
  });

  it("a missing llm file is MODEL_NOT_FOUND; leaving the llm out is INVALID_MODEL", async () => {
    await expect(DiffusionModel.load({ ...files(), llm: path.join(tmp.dir, "missing-qwen3.gguf") })).rejects.toMatchObject({ code: "MODEL_NOT_FOUND" });
    await expect(DiffusionModel.load({ ...files(), llm: undefined, threads: THREADS })).rejects.toMatchObject({ code: "INVALID_MODEL" });
  });

  // sd.cpp loads each of these without complaint and then fails a GGML_ASSERT
  // (a process abort) at the first generation: the load refuses them
  // (lib/diffusion/parts.ts, and again native/diffusion/part_check.h), and the model loaded before still works.
  it.each([
    [
      "a text encoder wider than the caption embedder",
      { teHidden: 64 },
      "llm",
      /text encoder \(llm\) has hidden size 64, the diffusion model's caption embedder takes 32/,
    ],
    ["a text encoder with a small vocabulary", { teVocab: 1024 }, "llm", /vocabulary has 1024 tokens/],
    [
      "a DiT for 4 latent channels with the 16-channel VAE",
      { latentChannels: 4 },
      "diffusionModel",
      /the VAE has 16 latent channels, the diffusion model takes 4/,
    ],
    ["a DiT with 64-wide heads", { ditHeadDim: 64 }, "diffusionModel", /heads are 64 wide, not 128/],
    ["a DiT narrower than 256", { ditHidden: 128, ditFfn: 512 }, "diffusionModel", /hidden size 128 is under 256/],
  ] as const)("parts that do not fit together are INVALID_MODEL at load: %s", async (_, sizes, part, message) => {
    const odd = await generateRandomZImageModel(path.join(tmp.dir, `odd-${part}-${Object.keys(sizes).join("-")}`), { seed: 3, sizes });
    const load = { ...files(), [part]: odd[part].path, threads: THREADS };
    const refused = { code: "INVALID_MODEL", message: expect.stringMatching(message) };
    await expect(DiffusionModel.load(load)).rejects.toMatchObject(refused); // TS: lib/diffusion/parts.ts
    const addon = native(); // C++, TS bypassed: native/diffusion/part_check.cpp
    await expect(addon.loadDiffusionModel!(loadParams(load, "cpu"), undefined, new addon.CancelToken())).rejects.toMatchObject(refused);
    expect(await sd.generate({ ...base, seed: 1 }).done).toHaveLength(1);
  });

  it('scheduler "ays" (noise levels for SD1, SDXL and SVD only) is INVALID_ARGUMENT on Z-Image, not a flat image', async () => {
    await expect(sd.generate({ ...base, scheduler: "ays" }).done).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/scheduler ays cannot be used with this model/),
    });
  });
});
