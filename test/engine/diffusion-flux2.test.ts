// Flux 2 [klein] on the real engine: a random-weight model in three parts
// (lib/tools/sd/flux2.ts: Flux 2 DiT, 28-layer Qwen3 text encoder whose
// layers 9, 18 and 27 feed the DiT, 32-channel Flux 2 VAE), loaded as
// DiffusionModel.load({ diffusionModel, llm, vae }) and sampled as klein is
// run: cfgScale 1 and the model's own defaults (euler, the "flux2"
// scheduler), 64×64, 2 steps. Random weights make noise-like images, but every
// kernel of the pipeline runs for real, and so do reference images (edits)
// and a LoRA on the DiT.
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
import { type GenerateFlux2Result, generateRandomFlux2KleinModel, generateRandomFlux2Lora } from "../../lib/tools";
import { tempDir, THREADS } from "../helpers";

const available = capabilities().diffusion;
const title = available
  ? "stable-diffusion.cpp Flux 2 [klein] (random-weight DiT + Qwen3 + Flux 2 VAE)"
  : `stable-diffusion.cpp Flux 2 [klein] — SKIPPED: the addon has no diffusion engine (${ENGINE_HOWTO})`;

const SIZE = 64;
const base = { prompt: "a lighthouse at dusk", width: SIZE, height: SIZE, steps: 2, cfgScale: 1, output: "both" as const };

const raw = (img: GeneratedImage): RawImage => {
  expect(img.raw).toBeDefined();
  return img.raw!;
};
const same = (a: GeneratedImage, b: GeneratedImage) => Buffer.from(raw(a).data).equals(Buffer.from(raw(b).data));
const picture = (w: number, h: number, k: number, channels: 3 | 4 = 3): RawImage => ({
  data: new Uint8Array(w * h * channels).map((_, i) => (i * k) % 251),
  width: w,
  height: h,
  channels,
});

describe.skipIf(!available)(title, () => {
  let tmp: ReturnType<typeof tempDir>;
  let parts: GenerateFlux2Result;
  let sd: DiffusionModel;
  const files = () => ({ diffusionModel: parts.diffusionModel.path, llm: parts.llm.path, vae: parts.vae.path });

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-flux2-");
    parts = await generateRandomFlux2KleinModel(path.join(tmp.dir, "f"), { seed: 21 });
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
    }
    const again = await generateRandomFlux2KleinModel(path.join(tmp.dir, "again"), { seed: 21 });
    const other = await generateRandomFlux2KleinModel(path.join(tmp.dir, "other"), { seed: 22 });
    for (const k of ["diffusionModel", "llm", "vae"] as const) {
      expect(fs.readFileSync(again[k].path).equals(fs.readFileSync(parts[k].path))).toBe(true);
      expect(fs.readFileSync(other[k].path).equals(fs.readFileSync(parts[k].path))).toBe(false);
    }
  });

  it("the model's own sampler and scheduler are the defaults (euler, flux2), as sd-cli picks them for Flux 2", () => {
    expect(sd.defaultSampler).toBe("euler");
    expect(sd.defaultScheduler()).toBe("flux2");
    expect(sd.defaultScheduler("lcm")).toBe("lcm");
    expect(() => sd.defaultScheduler("nope")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("one image: a 64×64 PNG with varied pixels, reproducible for its seed; another seed or prompt differs", async () => {
    const progress: ImageProgress[] = [];
    const job = sd.generate({ ...base, seed: 77 });
    job.on("progress", (p: ImageProgress) => progress.push(p));
    const [img] = await job.done;
    expect(img).toMatchObject({ width: SIZE, height: SIZE, seed: 77 });
    expect([img.png!.readUInt32BE(16), img.png!.readUInt32BE(20)]).toEqual([SIZE, SIZE]); // IHDR
    expect(img.png!.toString("latin1")).toContain("Sampler: euler, Schedule type: flux2, CFG scale: 1, Seed: 77, Size: 64x64");
    expect(new Set(raw(img).data).size).toBeGreaterThan(16); // not a flat image
    const stages = progress.map((p) => p.stage).filter((s, i, a) => s !== a[i - 1]);
    expect(stages).toEqual(["loading", "encoding", "diffusion", "decoding"]);
    expect(progress.filter((p) => p.stage === "diffusion").map((p) => p.step)).toEqual([1, 2]);

    const [again] = await sd.generate({ ...base, seed: 77 }).done;
    expect(same(img, again)).toBe(true);
    const [other] = await sd.generate({ ...base, seed: 78 }).done;
    expect(same(img, other)).toBe(false);
    const [prompted] = await sd.generate({ ...base, seed: 77, prompt: "a dog on the moon" }).done;
    expect(same(img, prompted)).toBe(false);
    // a non-square size (the latent is 8×4 × 128 channels: VAE factor 16 with Flux 2's 2×2 patches)
    const [wide] = await sd.generate({ ...base, seed: 77, width: 128, height: 64 }).done;
    expect([wide.width, wide.height, raw(wide).data.length]).toEqual([128, 64, 128 * 64 * raw(wide).channels]);
  });

  it("reference images (edits) reach the DiT through the VAE encoder: the output depends on them; any size", async () => {
    const [plain] = await sd.generate({ ...base, seed: 5 }).done;
    const [a] = await sd.generate({ ...base, seed: 5, refImages: [picture(64, 64, 1)] }).done;
    const [a2] = await sd.generate({ ...base, seed: 5, refImages: [picture(64, 64, 1)] }).done;
    const [b] = await sd.generate({ ...base, seed: 5, refImages: [picture(64, 64, 7)] }).done;
    const [two] = await sd.generate({ ...base, seed: 5, refImages: [picture(64, 64, 1), picture(128, 64, 3, 4)] }).done;
    expect(same(a, a2)).toBe(true);
    expect(same(plain, a)).toBe(false);
    expect(same(a, b)).toBe(false);
    expect(same(a, two)).toBe(false);
    expect([two.width, two.height]).toEqual([SIZE, SIZE]);
  });

  it("img2img runs through the 32-channel VAE encoder and depends on the init image", async () => {
    const [a] = await sd.generate({ ...base, steps: 4, seed: 5, initImage: picture(SIZE, SIZE, 1), strength: 0.5 }).done;
    const [b] = await sd.generate({ ...base, steps: 4, seed: 5, initImage: picture(SIZE, SIZE, 7), strength: 0.5 }).done;
    expect(same(a, b)).toBe(false);
  });

  it("a LoRA on the DiT (PEFT names) changes the image; at scale 0 it is the image without it", async () => {
    const lora = await generateRandomFlux2Lora(path.join(tmp.dir, "flux2-lora.safetensors"), { seed: 4, scale: 0.5 });
    expect(fs.statSync(lora.path).size).toBe(lora.bytes);
    expect(lora.tensors).toBe(6);
    const [plain] = await sd.generate({ ...base, seed: 9 }).done;
    const [adapted] = await sd.generate({ ...base, seed: 9, loras: [{ path: lora.path, scale: 1 }] }).done;
    const [zero] = await sd.generate({ ...base, seed: 9, loras: [{ path: lora.path, scale: 0 }] }).done;
    const [after] = await sd.generate({ ...base, seed: 9 }).done;
    expect(same(plain, adapted)).toBe(false);
    expect(same(plain, zero)).toBe(true);
    expect(same(plain, after)).toBe(true); // the LoRA does not stay applied
  });

  it("a missing llm file is MODEL_NOT_FOUND; leaving the llm out is INVALID_MODEL", async () => {
    await expect(DiffusionModel.load({ ...files(), llm: path.join(tmp.dir, "missing.gguf") })).rejects.toMatchObject({ code: "MODEL_NOT_FOUND" });
    await expect(DiffusionModel.load({ ...files(), llm: undefined, threads: THREADS })).rejects.toMatchObject({ code: "INVALID_MODEL" });
  });

  // sd.cpp loads each of these without complaint and then fails a GGML_ASSERT (a process abort) at the first
  // generation: the load refuses them (lib/diffusion/parts.ts, and again native/diffusion/part_check.cpp).
  it.each([
    [
      "a 2-layer text encoder (its final output only) for a DiT that takes layers 9, 18 and 27",
      { teLayers: 2, teHeads: 32, contextWidth: 96 },
      /gives 1 × 32 = 32 features per token \(2 layers\), the diffusion model's txt_in takes 96/,
    ],
    ["a text encoder wider than the DiT's txt_in", { teHidden: 48, contextWidth: 96 }, /gives 3 × 48 = 144 features per token/],
    ["a text encoder with a small vocabulary", { teVocab: 1024 }, /vocabulary has 1024 tokens/],
  ] as const)("parts that do not fit together are INVALID_MODEL at load: %s", async (_, sizes, message) => {
    const odd = await generateRandomFlux2KleinModel(path.join(tmp.dir, `odd-${Object.keys(sizes).join("-")}`), { seed: 3, sizes });
    const load = { ...files(), llm: odd.llm.path, threads: THREADS };
    const refused = { code: "INVALID_MODEL", message: expect.stringMatching(message) };
    await expect(DiffusionModel.load(load)).rejects.toMatchObject(refused); // TS: lib/diffusion/parts.ts
    const addon = native(); // C++, TS bypassed: native/diffusion/part_check.cpp
    await expect(addon.loadDiffusionModel!(loadParams(load, "cpu"), undefined, new addon.CancelToken())).rejects.toMatchObject(refused);
    expect(await sd.generate({ ...base, seed: 1 }).done).toHaveLength(1);
  });
});
