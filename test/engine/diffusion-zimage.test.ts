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
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionModel } from "../../lib/diffusion/index";
import { generateRandomZImageModel, type GenerateZImageResult } from "../../lib/tools";
import { tempDir, THREADS } from "../helpers";
import {
  engineAvailable,
  expectDeterministicParts,
  expectImg2ImgDepends,
  expectLlmRequired,
  expectOneImage,
  expectRefusedAtLoad,
  expectTaesdDecodes,
  familyTitle,
  partFiles,
} from "./diffusion-family";

const SIZE = 64;
const base = { prompt: "a lighthouse at dusk", width: SIZE, height: SIZE, steps: 2, cfgScale: 1, sampler: "euler", scheduler: "discrete" };

describe.skipIf(!engineAvailable)(familyTitle("Z-Image (random-weight DiT + Qwen3 + Flux VAE)"), () => {
  let tmp: ReturnType<typeof tempDir>;
  let parts: GenerateZImageResult;
  let sd: DiffusionModel;
  const files = () => partFiles(parts);

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
    expect(parts).toMatchObject({ seed: 11, type: "f16" });
    await expectDeterministicParts((dir, seed) => generateRandomZImageModel(dir, { seed }), tmp.dir, 11);
    await expect(generateRandomZImageModel(path.join(tmp.dir, "bad"), { seed: -1 })).rejects.toThrow(RangeError);
  });

  it("one image: a 64×64 PNG with varied pixels, reproducible for its seed; another seed or prompt differs", async () => {
    await expectOneImage(sd, base, 1234);
  });

  it("img2img runs through the VAE encoder and depends on the init image", async () => {
    await expectImg2ImgDepends(sd, base);
  });

  it("a TAESD with the family's 16 latent channels decodes and encodes in place of the VAE; one with 4 is INVALID_MODEL", async () => {
    await expectTaesdDecodes(sd, files(), tmp.dir, base, 16, 4);
  });

  it("a missing llm file is MODEL_NOT_FOUND; leaving the llm out is INVALID_MODEL", async () => {
    await expectLlmRequired(files(), tmp.dir);
  });

  // sd.cpp loads each of these without complaint and then fails a GGML_ASSERT
  // (a process abort) at the first generation: the load refuses them.
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
    await expectRefusedAtLoad({ ...files(), [part]: odd[part].path }, message, sd, base);
  });

  it('scheduler "ays" (noise levels for SD1, SDXL and SVD only) is INVALID_ARGUMENT on Z-Image, not a flat image', async () => {
    await expect(sd.generate({ ...base, scheduler: "ays" }).done).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/scheduler ays cannot be used with this model/),
    });
  });
});
