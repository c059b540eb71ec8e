// PhotoMaker on the real engine: a random-weight SDXL checkpoint
// (lib/tools/sd/sdxl.ts, SDXL base's tensor names) loaded with random
// PhotoMaker v1 weights (lib/tools/sd/photomaker.ts: the CLIP ViT-L/14 ID
// encoder, the fuse module and the UNet LoRA the file carries), 64×64, 2
// steps, CFG 7. Random weights make noise-like images and the identity moves
// them only a little (the UNet's attention is nearly uniform), but every
// kernel runs for real and the images are deterministic, so "differs" and
// "reproduces" are byte comparisons. The ID encoder is full ViT-L/14 size:
// about 5 s per generation with an identity on 2 cores.
//
// Part of `npm run test:diffusion`. Without deps/stable-diffusion.cpp the
// suite is reported as skipped, with the reason in its name.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { native } from "../../lib/binding/load";
import { DiffusionModel } from "../../lib/diffusion/index";
import { loadParams } from "../../lib/diffusion/native-engine";
import { generateRandomPhotoMaker, generateRandomSd15Model, generateRandomSdxlModel } from "../../lib/tools";
import { tempDir, THREADS } from "../helpers";
import { engineAvailable, expectRefusedAtLoad, familyTitle, sameImage, testPicture } from "./diffusion-family";

const SIZE = 64;
const base = { prompt: "a photo of a man img", width: SIZE, height: SIZE, steps: 2, cfgScale: 7, sampler: "euler", seed: 7, output: "both" as const };
const invalid = (message: RegExp) => expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(message) });

describe.skipIf(!engineAvailable)(familyTitle("PhotoMaker (random-weight SDXL checkpoint + PhotoMaker v1)"), () => {
  let tmp: ReturnType<typeof tempDir>;
  let modelFile: string;
  let pmFile: string;
  let sd: DiffusionModel;
  const face = testPicture(96, 128, 3);
  const otherFace = testPicture(128, 128, 11);

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-photomaker-");
    modelFile = (await generateRandomSdxlModel(path.join(tmp.dir, "sdxl.gguf"), { seed: 3 })).model.path;
    pmFile = (await generateRandomPhotoMaker(path.join(tmp.dir, "photomaker-v1.gguf"), { seed: 3 })).path;
    sd = await DiffusionModel.load({ model: modelFile, photoMaker: pmFile, threads: THREADS });
  }, 180_000);
  afterAll(async () => {
    await sd?.dispose();
    tmp?.cleanup();
  });

  it("an identity changes the image; the same photos and seed reproduce it; other photos give another; without photoMaker it is the plain model", async () => {
    const gen = async (o: object) => (await sd.generate({ ...base, ...o }).done)[0];
    const withFace = await gen({ photoMaker: { idImages: [face] } });
    const without = await gen({});
    expect(sameImage(withFace, without)).toBe(false);
    expect(sameImage(withFace, await gen({ photoMaker: { idImages: [face], styleStrength: 20 } }))).toBe(true);
    expect(sameImage(withFace, await gen({ photoMaker: { idImages: [otherFace] } }))).toBe(false);
    // two photos of the person (RGBA: the alpha is dropped) make an identity of their own
    const two = await gen({ photoMaker: { idImages: [face, { ...testPicture(64, 64, 5, 4) }] } });
    expect(sameImage(two, withFace)).toBe(false);
  }, 300_000);

  // sd.cpp generates without PhotoMaker, saying so only in its log, when the prompt has no trigger word it can find
  it("a prompt without the trigger word is refused in TS and in C++; one sd.cpp cannot find it in ((img): no class word) is refused from its log", async () => {
    expect(() => sd.generate({ ...base, prompt: "a photo of a man", photoMaker: { idImages: [face] } })).toThrow(invalid(/trigger word "img"/));
    await expect(sd.generate({ ...base, prompt: "(img)", photoMaker: { idImages: [face] } }).done).rejects.toThrow(
      invalid(/photoMaker cannot be used with this model \(stable-diffusion.cpp: .*trigger word 'img' was not found/),
    );
    // the model still works
    expect(await sd.generate({ ...base, seed: 1 }).done).toHaveLength(1);
    const addon = native(); // TS bypassed
    const h = await addon.loadDiffusionModel!(
      loadParams({ model: modelFile, photoMaker: pmFile, threads: THREADS }, "cpu"),
      undefined,
      new addon.CancelToken(),
    );
    try {
      expect(h.info().photoMaker).toBe(1);
      const { output: _, ...native } = base;
      const p = { ...native, negativePrompt: "", scheduler: "discrete", count: 1, loras: [], refImages: [] };
      const g = (o: object) => h.generate({ ...p, ...o } as never, () => undefined, new addon.CancelToken());
      const pm = { idImages: [face], styleStrength: 20 };
      expect(() => g({ prompt: "a photo of a man", photoMaker: pm })).toThrow(invalid(/trigger word "img" after its class word/));
      expect(() => g({ photoMaker: { ...pm, idImages: [] } })).toThrow(invalid(/photoMaker.idImages must be an array of 1..16 images/));
      expect(() => g({ photoMaker: { ...pm, idEmbeddings: pmFile } })).toThrow(invalid(/used only by PhotoMaker v2/));
      expect(() => g({ photoMaker: { ...pm, trigger: "img" } })).toThrow(invalid(/trigger/));
      expect(() => g({ photoMaker: { ...pm, styleStrength: 101 } })).toThrow(invalid(/styleStrength/));
    } finally {
      h.dispose();
    }
  }, 300_000);

  // sd.cpp loads it and then fails a GGML_ASSERT (an abort) in the ID encoder at the first generation with an identity
  it("PhotoMaker with an SD1 checkpoint (a 768-wide context, not SDXL's 2048) is INVALID_MODEL at load", async () => {
    const sd1 = path.join(tmp.dir, "sd1.gguf");
    await generateRandomSd15Model(sd1, { preset: "tiny", type: "f16", seed: 1 });
    await expectRefusedAtLoad({ model: sd1, photoMaker: pmFile }, /PhotoMaker \(photoMaker\) fuses 2048-wide embeddings .* a 768-wide context/, sd, base);
  }, 180_000);

  it("a PhotoMaker file sd.cpp cannot read is INVALID_MODEL (sd.cpp only warns and loads the model without it)", async () => {
    const junk = path.join(tmp.dir, "photomaker-junk.bin");
    fs.writeFileSync(junk, "not a model");
    await expect(DiffusionModel.load({ model: modelFile, photoMaker: junk, threads: THREADS })).rejects.toMatchObject({
      code: "INVALID_MODEL",
      message: expect.stringMatching(/could not load a model part: .*stacked ID embedding/),
    });
    const plain = await DiffusionModel.load({ model: modelFile, threads: THREADS });
    try {
      expect(() => plain.generate({ ...base, photoMaker: { idImages: [face] } })).toThrow(invalid(/needs a model loaded with photoMaker weights/));
    } finally {
      await plain.dispose();
    }
  }, 180_000);
});
