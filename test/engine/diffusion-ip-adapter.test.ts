// IP-Adapter on the real engine: the random-weight SD1 checkpoint ("tiny"
// preset, f16) loaded with a random IP-Adapter for its UNet and the CLIP
// ViT-H/14 image encoder it takes embeddings from (lib/tools/sd/ip-adapter.ts:
// ip-adapter_sd15's tensor names, sd.cpp's fixed ViT-H/14 sizes, q4_0), 64×64,
// 2 steps. Every kernel runs for real (the image encoder at 224 × 224, the
// image projection, the image tokens' extra keys and values in each
// cross-attention); the images are deterministic, so "differs" and "the
// same" are byte comparisons.
//
// Part of `npm run test:diffusion`. Without deps/stable-diffusion.cpp the
// suite is reported as skipped, with the reason in its name.
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { native } from "../../lib/binding/load";
import { DiffusionModel } from "../../lib/diffusion/index";
import { loadParams } from "../../lib/diffusion/native-engine";
import { generateRandomIpAdapter, generateRandomIpAdapterWeights, generateRandomSd15Model, type GenerateIpAdapterResult } from "../../lib/tools";
import { tempDir, THREADS } from "../helpers";
import { engineAvailable, expectRefusedAtLoad, familyTitle, sameImage, testPicture } from "./diffusion-family";

const SIZE = 64;
const base = { prompt: "a cat", width: SIZE, height: SIZE, steps: 2, seed: 42, output: "both" as const };
const invalid = (message: RegExp) => expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(message) });

describe.skipIf(!engineAvailable)(familyTitle("IP-Adapter (random-weight SD1 + IP-Adapter + CLIP ViT-H/14)"), () => {
  let tmp: ReturnType<typeof tempDir>;
  let modelFile: string;
  let ip: GenerateIpAdapterResult;
  let sd: DiffusionModel;
  const red = testPicture(96, 96, 3);
  const blue = testPicture(128, 96, 13, 4);

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-ip-adapter-");
    modelFile = path.join(tmp.dir, "sd1.gguf");
    await generateRandomSd15Model(modelFile, { preset: "tiny", type: "f16", seed: 7 });
    ip = await generateRandomIpAdapter(path.join(tmp.dir, "ip"), { seed: 7 });
    sd = await DiffusionModel.load({ model: modelFile, ipAdapter: ip.ipAdapter.path, clipVision: ip.clipVision.path, threads: THREADS });
  }, 180_000);
  afterAll(async () => {
    await sd?.dispose();
    tmp?.cleanup();
  });

  it("an image prompt changes the image, reproducibly; another image gives another; strength 0 and no image prompt are the image without it", async () => {
    const gen = async (o: object) => (await sd.generate({ ...base, ...o }).done)[0];
    const plain = await gen({});
    const withRed = await gen({ ipAdapter: { image: red } });
    expect(sameImage(withRed, plain)).toBe(false);
    expect(sameImage(withRed, await gen({ ipAdapter: { image: red, strength: 1 } }))).toBe(true);
    expect(sameImage(withRed, await gen({ ipAdapter: { image: blue } }))).toBe(false);
    expect(sameImage(withRed, await gen({ ipAdapter: { image: red, strength: 0.5 } }))).toBe(false);
    expect(sameImage(plain, await gen({ ipAdapter: { image: red, strength: 0 } }))).toBe(true);
  }, 300_000);

  // sd.cpp ignores an image prompt, without a word, on a model without an IP-Adapter; an IP-Adapter without its
  // image encoder fails the load with one line per missing tensor
  it("an image prompt needs a model with an IP-Adapter, an IP-Adapter needs clipVision: INVALID_ARGUMENT in TS and in C++", async () => {
    const plain = await DiffusionModel.load({ model: modelFile, threads: THREADS });
    try {
      expect(() => plain.generate({ ...base, ipAdapter: { image: red } })).toThrow(invalid(/ipAdapter needs a model loaded with ipAdapter/));
    } finally {
      await plain.dispose();
    }
    await expect(DiffusionModel.load({ model: modelFile, ipAdapter: ip.ipAdapter.path, threads: THREADS })).rejects.toThrow(
      invalid(/ipAdapter needs clipVision/),
    );
    for (const o of [{ image: red, strength: 6 }, { image: red, strength: Number.NaN }, { image: testPicture(32, 64, 1) }, { image: red, weight: 1 }, {}])
      expect(() => sd.generate({ ...base, ipAdapter: o as never }), JSON.stringify(o).slice(-40)).toThrow(invalid(/ipAdapter/));
    const addon = native(); // TS bypassed
    const tok = () => new addon.CancelToken();
    expect(() => addon.loadDiffusionModel!(loadParams({ model: modelFile, ipAdapter: ip.ipAdapter.path, threads: THREADS }, "cpu"), undefined, tok())).toThrow(
      invalid(/ipAdapter needs clipVision/),
    );
    const h = await addon.loadDiffusionModel!(loadParams({ model: modelFile, threads: THREADS }, "cpu"), undefined, tok());
    try {
      expect(h.info().ipAdapter).toBe(false);
      const p = { ...base, negativePrompt: "", cfgScale: 7, sampler: "euler", scheduler: "discrete", count: 1, loras: [], refImages: [] };
      const { output: _, ...params } = p;
      expect(() => h.generate({ ...params, ipAdapter: { image: red, strength: 1 } } as never, () => undefined, tok())).toThrow(
        invalid(/ipAdapter needs a model loaded with ipAdapter/),
      );
    } finally {
      h.dispose();
    }
  }, 180_000);

  // sd.cpp loads it and then fails a GGML_ASSERT (an abort) in the image projection at the first image prompt
  it("an IP-Adapter for another image embedding width than the encoder's 1024 is INVALID_MODEL at load", async () => {
    const wide = await generateRandomIpAdapterWeights(path.join(tmp.dir, "ip-1280.gguf"), { seed: 2, sizes: { clipDim: 1280 } });
    await expectRefusedAtLoad(
      { model: modelFile, ipAdapter: wide.path, clipVision: ip.clipVision.path },
      /IP-Adapter \(ipAdapter\) takes 1280-wide image embeddings, the CLIP vision encoder \(clipVision\) gives 1024/,
      sd,
      base,
    );
  }, 180_000);

  it("an IP-Adapter made for another UNet (SD1.5's 320 channels on this 32-channel one) is INVALID_MODEL: sd.cpp's own shape check", async () => {
    const sd15 = await generateRandomIpAdapterWeights(path.join(tmp.dir, "ip-sd15.gguf"), { seed: 2, preset: "sd15" });
    await expect(DiffusionModel.load({ model: modelFile, ipAdapter: sd15.path, clipVision: ip.clipVision.path, threads: THREADS })).rejects.toMatchObject({
      code: "INVALID_MODEL",
      message: expect.stringMatching(/to_k_ip.weight' has wrong shape/),
    });
  }, 180_000);
});
