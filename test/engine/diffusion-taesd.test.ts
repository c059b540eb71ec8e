// TAESD (DiffusionLoadOptions.taesd / taesdPreviewOnly, preview mode "tae")
// on the real engine: the generated random-weight SD1 checkpoint (lib/tools/sd,
// "tiny" preset) with a generated random-weight TAESD (lib/tools/sd/taesd.ts:
// tae.hpp's layout, 4 latent channels).
//
// `npm run test:diffusion` runs it; without deps/stable-diffusion.cpp the
// suite is reported as skipped, with the reason in its name.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { native } from "../../lib/binding/load";
import { capabilities } from "../../lib/index";
import { DiffusionModel, type GeneratedImage, type RawImage, estimateDiffusionMemory } from "../../lib/diffusion/index";
import { ENGINE_HOWTO, loadParams } from "../../lib/diffusion/native-engine";
import { generateRandomSd15Model, generateRandomTaesd } from "../../lib/tools";
import { tempDir, THREADS } from "../helpers";

const available = capabilities().diffusion;
const title = available
  ? "stable-diffusion.cpp TAESD (random-weight SD1 model and TAESD)"
  : `stable-diffusion.cpp TAESD — SKIPPED: the addon has no diffusion engine (${ENGINE_HOWTO})`;

const base = { prompt: "a lighthouse at dusk", width: 64, height: 64, steps: 2, cfgScale: 7, sampler: "euler", seed: 31, output: "raw" as const };
const pixels = (img: GeneratedImage) => Buffer.from(img.raw!.data);
/** Mean absolute difference of two images' pixels, 0..255. */
const meanDiff = (a: RawImage, b: RawImage) => {
  let s = 0;
  for (let i = 0; i < a.data.length; i++) s += Math.abs(a.data[i] - b.data[i]);
  return s / a.data.length;
};
const invalid = expect.objectContaining({ code: "INVALID_ARGUMENT" });

describe.skipIf(!available)(title, () => {
  let tmp: ReturnType<typeof tempDir>;
  let modelFile: string;
  let taesdFile: string;
  let plain: DiffusionModel; // the checkpoint's own VAE
  let tae: DiffusionModel; // TAESD decodes and encodes
  let plainImage: GeneratedImage;

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-taesd-");
    modelFile = path.join(tmp.dir, "random-sd1-tiny.gguf");
    taesdFile = path.join(tmp.dir, "random-taesd.gguf");
    await generateRandomSd15Model(modelFile, { preset: "tiny", type: "f16", seed: 7 });
    await generateRandomTaesd(taesdFile, { seed: 3 });
    plain = await DiffusionModel.load({ model: modelFile, threads: THREADS });
    tae = await DiffusionModel.load({ model: modelFile, taesd: taesdFile, threads: THREADS });
    [plainImage] = await plain.generate(base).done;
  });
  afterAll(async () => {
    await plain?.dispose();
    await tae?.dispose();
    tmp?.cleanup();
  });

  it("decodes with the TAESD in place of the VAE: another image of the same size, reproducible, not flat", async () => {
    const [img] = await tae.generate(base).done;
    expect([img.width, img.height]).toEqual([64, 64]);
    expect(meanDiff(img.raw!, plainImage.raw!)).toBeGreaterThan(1);
    expect(new Set(img.raw!.data).size).toBeGreaterThan(8);
    const [again] = await tae.generate(base).done;
    expect(pixels(again).equals(pixels(img))).toBe(true);
  });

  it("img2img encodes with the TAESD's encoder; the strength shapes the result", async () => {
    const init = plainImage.raw!;
    const [weak] = await tae.generate({ ...base, initImage: init, strength: 0.3 }).done;
    const [strong] = await tae.generate({ ...base, initImage: init, strength: 0.9 }).done;
    expect([weak.width, weak.height]).toEqual([64, 64]);
    expect(pixels(weak).equals(pixels(strong))).toBe(false);
  });

  it('"tae" previews come from the TAESD; with taesdPreviewOnly the final image is the VAE\'s', async () => {
    const previewOnly = await DiffusionModel.load({ model: modelFile, taesd: taesdFile, taesdPreviewOnly: true, threads: THREADS });
    try {
      const previews = async (m: DiffusionModel, mode: "tae" | "vae") => {
        const seen: RawImage[] = [];
        const job = m.generate({ ...base, preview: { mode } });
        job.on("preview", (p: { image: RawImage }) => seen.push(p.image));
        const [img] = await job.done;
        return { seen, img };
      };
      const t = await previews(previewOnly, "tae");
      const v = await previews(plain, "vae");
      expect(t.seen.length).toBe(base.steps);
      expect(v.seen.length).toBe(base.steps);
      expect([t.seen[0].width, t.seen[0].height]).toEqual([64, 64]);
      // the same latents (the same UNet, seed and sampler), decoded by the TAESD and by the VAE
      expect(meanDiff(t.seen.at(-1)!, v.seen.at(-1)!)).toBeGreaterThan(1);
      expect(pixels(t.img).equals(pixels(plainImage))).toBe(true);
      expect(pixels(v.img).equals(pixels(plainImage))).toBe(true);
      // decoding with the TAESD: its previews of the same latents are the previews-only model's
      const d = await previews(tae, "tae");
      expect(d.seen.map((img, k) => Buffer.from(img.data).equals(Buffer.from(t.seen[k].data)))).toEqual([true, true]);
    } finally {
      await previewOnly.dispose();
    }
  });

  it('"tae" previews without a TAESD, "vae" previews with one, taesdPreviewOnly without one, a TAESD of another family: refused (TS and C++)', async () => {
    expect(() => plain.generate({ ...base, preview: { mode: "tae" } })).toThrow(invalid);
    // sd.cpp would make these with the TAESD
    expect(() => tae.generate({ ...base, preview: { mode: "vae" } })).toThrow(invalid);
    await expect(DiffusionModel.load({ model: modelFile, taesdPreviewOnly: true })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    const f16 = path.join(tmp.dir, "taesd-16ch.gguf");
    await generateRandomTaesd(f16, { latentChannels: 16 });
    await expect(DiffusionModel.load({ model: modelFile, taesd: f16, threads: THREADS })).rejects.toMatchObject({ code: "INVALID_MODEL" });
    const addon = native();
    const tok = () => new addon.CancelToken();
    expect(() => addon.loadDiffusionModel!({ ...loadParams({ model: modelFile }, "cpu"), taesdPreviewOnly: true }, undefined, tok())).toThrow(invalid);
    const p = { prompt: "x", negativePrompt: "", width: 64, height: 64, steps: 1, cfgScale: 7, sampler: "euler", scheduler: "discrete", seed: 1, count: 1 };
    for (const [load, mode, taesd] of [
      [{ model: modelFile }, "tae", false],
      [{ model: modelFile, taesd: taesdFile }, "vae", true],
    ] as const) {
      const h = await addon.loadDiffusionModel!(loadParams({ ...load, threads: THREADS }, "cpu"), undefined, tok());
      try {
        expect(h.info().taesd).toBe(taesd);
        const g = () => h.generate({ ...p, loras: [], refImages: [], preview: { mode, intervalSteps: 1 } } as never, () => undefined, tok());
        expect(g).toThrow(invalid);
      } finally {
        h.dispose();
      }
    }
  });

  it("the memory estimate counts the TAESD's weights instead of the checkpoint's VAE it replaces", async () => {
    const withVae = await estimateDiffusionMemory({ model: modelFile }, { width: 64, height: 64 });
    const withTae = await estimateDiffusionMemory({ model: modelFile, taesd: taesdFile }, { width: 64, height: 64 });
    const previewOnly = await estimateDiffusionMemory({ model: modelFile, taesd: taesdFile, taesdPreviewOnly: true }, { width: 64, height: 64 });
    const taeBytes = fs.statSync(taesdFile).size;
    expect(withTae.weights.vae).toBeLessThan(taeBytes);
    expect(withTae.weights.vae).toBeGreaterThan(taeBytes * 0.9);
    expect(withTae.weights.total).toBe(withVae.weights.total - withVae.weights.vae + withTae.weights.vae);
    // previews only: the VAE stays and the TAESD's decoder joins it
    expect(previewOnly.weights.vae).toBeGreaterThan(withVae.weights.vae);
  });
});
