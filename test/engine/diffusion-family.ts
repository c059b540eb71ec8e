// The checks every generated DiT family (Z-Image, Flux 2 [klein], Qwen-Image:
// three parts, DiffusionModel.load({ diffusionModel, llm, vae })) passes on
// the real engine, shared by their test files. Not a test file itself.
import fs from "node:fs";
import path from "node:path";
import { expect } from "vitest";
import { capabilities } from "../../lib/index";
import { native } from "../../lib/binding/load";
import {
  DiffusionModel,
  type DenoiserReads,
  type DiffusionLoadOptions,
  type GeneratedImage,
  type ImageGenerateOptions,
  type ImageProgress,
  type RawImage,
} from "../../lib/diffusion/index";
import { ENGINE_HOWTO, loadParams } from "../../lib/diffusion/native-engine";
import { type GeneratedPart, generateRandomTaesd } from "../../lib/tools";
import { THREADS } from "../helpers";

/** True when the addon was built with stable-diffusion.cpp. */
export const engineAvailable = capabilities().diffusion;

/** The suite's title, or the SKIPPED one with the reason when there is no engine. */
export const familyTitle = (what: string): string =>
  engineAvailable ? `stable-diffusion.cpp ${what}` : `stable-diffusion.cpp ${what} — SKIPPED: the addon has no diffusion engine (${ENGINE_HOWTO})`;

export interface ThreeParts {
  diffusionModel: GeneratedPart;
  llm: GeneratedPart;
  vae: GeneratedPart;
}

export const partFiles = (p: ThreeParts) => ({ diffusionModel: p.diffusionModel.path, llm: p.llm.path, vae: p.vae.path });

export const raw = (img: GeneratedImage): RawImage => {
  expect(img.raw).toBeDefined();
  return img.raw!;
};

/** Pixel-equal. */
export const sameImage = (a: GeneratedImage, b: GeneratedImage): boolean => Buffer.from(raw(a).data).equals(Buffer.from(raw(b).data));

/** A deterministic w × h test picture; k picks the pattern. */
export const testPicture = (w: number, h: number, k: number, channels: 3 | 4 = 3): RawImage => ({
  data: new Uint8Array(w * h * channels).map((_, i) => (i * k) % 251),
  width: w,
  height: h,
  channels,
});

/** `generate(dir, seed)` writes GGUF files (`keys`: default the three parts): byte-identical for the same seed, different for another. */
export async function expectDeterministicParts<K extends string = keyof ThreeParts>(
  generate: (dir: string, seed: number) => Promise<Record<K, GeneratedPart>>,
  dir: string,
  seed: number,
  keys: readonly K[] = ["diffusionModel", "llm", "vae"] as unknown as K[],
): Promise<void> {
  const first = await generate(path.join(dir, "first"), seed);
  const again = await generate(path.join(dir, "again"), seed);
  const other = await generate(path.join(dir, "other"), seed + 1);
  for (const k of keys) {
    expect(fs.statSync(first[k].path).size).toBe(first[k].bytes);
    expect(fs.readFileSync(first[k].path).subarray(0, 4).toString("latin1")).toBe("GGUF");
    expect(first[k].parameters).toBeGreaterThan(0);
    expect(fs.readFileSync(again[k].path).equals(fs.readFileSync(first[k].path))).toBe(true);
    expect(fs.readFileSync(other[k].path).equals(fs.readFileSync(first[k].path))).toBe(false);
  }
}

/**
 * One image of `base` (its width × height, 2 steps) at `seed`: a PNG of that
 * size with varied pixels, the four stages in order, steps 1 and 2,
 * reproducible for its seed; another seed and another prompt (which reaches
 * the DiT through the text encoder: a small change with random weights, but
 * a change) differ. Returns the image.
 */
export async function expectOneImage(
  sd: DiffusionModel,
  base: ImageGenerateOptions & { width: number; height: number },
  seed: number,
): Promise<GeneratedImage> {
  const progress: ImageProgress[] = [];
  const job = sd.generate({ ...base, seed, output: "both" });
  job.on("progress", (p: ImageProgress) => progress.push(p));
  const [img] = await job.done;
  expect(img).toMatchObject({ width: base.width, height: base.height, seed });
  expect(img.png!.subarray(1, 4).toString("latin1")).toBe("PNG");
  expect([img.png!.readUInt32BE(16), img.png!.readUInt32BE(20)]).toEqual([base.width, base.height]); // IHDR
  const r = raw(img);
  expect(r.data.length).toBe(base.width * base.height * r.channels);
  expect(new Set(r.data).size).toBeGreaterThan(16); // not a flat image
  const stages = progress.map((p) => p.stage).filter((s, i, a) => s !== a[i - 1]);
  expect(stages).toEqual(["loading", "encoding", "diffusion", "decoding"]);
  expect(progress.filter((p) => p.stage === "diffusion").map((p) => p.step)).toEqual([1, 2]);
  const [again] = await sd.generate({ ...base, seed, output: "both" }).done;
  expect(sameImage(img, again)).toBe(true);
  const [other] = await sd.generate({ ...base, seed: seed + 1, output: "both" }).done;
  expect(sameImage(img, other)).toBe(false);
  const [prompted] = await sd.generate({ ...base, seed, prompt: "a dog on the moon", output: "both" }).done;
  expect(sameImage(img, prompted)).toBe(false);
  return img;
}

/** img2img at strength 0.5 over 4 steps (with 2, sd.cpp would start from σ = 1, pure noise) depends on the init image. */
export async function expectImg2ImgDepends(sd: DiffusionModel, base: ImageGenerateOptions & { width: number; height: number }): Promise<void> {
  const gen = (k: number) =>
    sd.generate({ ...base, steps: 4, seed: 5, initImage: testPicture(base.width, base.height, k), strength: 0.5, output: "both" }).done;
  const [a] = await gen(1);
  const [b] = await gen(7);
  expect([a.width, a.height]).toEqual([base.width, base.height]);
  expect(sameImage(a, b)).toBe(false);
}

/** A missing llm file is MODEL_NOT_FOUND (naming it before sd.cpp opens anything); leaving the llm out is INVALID_MODEL. */
/**
 * A TAESD with the family's latent channels (generateRandomTaesd) decodes and img2img-encodes in place of the VAE:
 * images of the size asked, unlike the VAE's, depending on the init image; one with other latent channels is
 * INVALID_MODEL (sd.cpp's shape check).
 */
export async function expectTaesdDecodes(
  sd: DiffusionModel,
  files: DiffusionLoadOptions,
  dir: string,
  base: ImageGenerateOptions & { width: number; height: number },
  latentChannels: 4 | 16 | 32,
  otherChannels: 4 | 16 | 32,
): Promise<void> {
  const file = path.join(dir, `taesd-${latentChannels}.gguf`);
  await generateRandomTaesd(file, { latentChannels, seed: 2 });
  const tae = await DiffusionModel.load({ ...files, taesd: file, threads: THREADS });
  try {
    const [vae] = await sd.generate({ ...base, seed: 5, output: "raw" }).done;
    const [img] = await tae.generate({ ...base, seed: 5, output: "raw" }).done;
    expect([img.width, img.height]).toEqual([base.width, base.height]);
    expect(sameImage(img, vae)).toBe(false);
    expect(new Set(raw(img).data).size).toBeGreaterThan(8);
    await expectImg2ImgDepends(tae, base);
  } finally {
    await tae.dispose();
  }
  const other = path.join(dir, `taesd-${otherChannels}.gguf`);
  await generateRandomTaesd(other, { latentChannels: otherChannels, seed: 2 });
  await expect(DiffusionModel.load({ ...files, taesd: other, threads: THREADS })).rejects.toMatchObject({ code: "INVALID_MODEL" });
}

export async function expectLlmRequired(files: DiffusionLoadOptions, dir: string): Promise<void> {
  await expect(DiffusionModel.load({ ...files, llm: path.join(dir, "missing-llm.gguf") })).rejects.toMatchObject({ code: "MODEL_NOT_FOUND" });
  await expect(DiffusionModel.load({ ...files, llm: undefined, threads: THREADS })).rejects.toMatchObject({ code: "INVALID_MODEL" });
}

/**
 * Parts that sd.cpp would load and then abort on (GGML_ASSERT) at the first
 * generation are INVALID_MODEL with `message` at load, in TypeScript
 * (lib/diffusion/parts.ts) and, with TypeScript bypassed, in C++
 * (native/diffusion/part_check.cpp); the model loaded before still works.
 */
export async function expectRefusedAtLoad(load: DiffusionLoadOptions, message: RegExp, loaded: DiffusionModel, base: ImageGenerateOptions): Promise<void> {
  const refused = { code: "INVALID_MODEL", message: expect.stringMatching(message) };
  await expect(DiffusionModel.load({ ...load, threads: THREADS })).rejects.toMatchObject(refused);
  const addon = native();
  await expect(addon.loadDiffusionModel!(loadParams({ ...load, threads: THREADS }, "cpu"), undefined, new addon.CancelToken())).rejects.toMatchObject(refused);
  expect(await loaded.generate({ ...base, seed: 1 }).done).toHaveLength(1);
}

/** The error generate throws for an input the model's denoiser does not read (DiffusionModel.reads): INVALID_ARGUMENT "<input>: …". */
export const unreadInput = (key: keyof DenoiserReads) =>
  expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(new RegExp(`^${key}: `)) });

/**
 * The inputs the model's denoiser reads as C++ reports them with TypeScript bypassed (DiffusionModel.reads mirrors
 * them), and C++ refusing each input it does not read with INVALID_ARGUMENT "<input>: …".
 */
export async function expectNativeReads(load: DiffusionLoadOptions, reads: DenoiserReads): Promise<void> {
  const addon = native();
  const h = await addon.loadDiffusionModel!(loadParams({ ...load, threads: THREADS }, "cpu"), undefined, new addon.CancelToken());
  try {
    expect(h.info().reads).toEqual(reads);
    const p = { prompt: "x", negativePrompt: "", width: 64, height: 64, steps: 1, cfgScale: 1, sampler: "euler", scheduler: "discrete", seed: 1, count: 1 };
    const inputs = { guidance: { guidance: 3 }, flowShift: { flowShift: 2 }, refImages: { refImages: [testPicture(64, 64, 1)] } };
    for (const key of ["guidance", "flowShift", "refImages"] as const) {
      if (reads[key]) continue;
      const g = () => h.generate({ ...p, loras: [], refImages: [], ...inputs[key] } as never, () => undefined, new addon.CancelToken());
      expect(g).toThrow(unreadInput(key));
    }
  } finally {
    h.dispose();
  }
}
