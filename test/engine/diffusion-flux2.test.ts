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
import { DiffusionModel } from "../../lib/diffusion/index";
import { type GenerateFlux2Result, generateRandomFlux2KleinModel, generateRandomFlux2Lora } from "../../lib/tools";
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
  raw,
  sameImage as same,
  testPicture as picture,
} from "./diffusion-family";

const SIZE = 64;
const base = { prompt: "a lighthouse at dusk", width: SIZE, height: SIZE, steps: 2, cfgScale: 1, output: "both" as const };

describe.skipIf(!engineAvailable)(familyTitle("Flux 2 [klein] (random-weight DiT + Qwen3 + Flux 2 VAE)"), () => {
  let tmp: ReturnType<typeof tempDir>;
  let parts: GenerateFlux2Result;
  let sd: DiffusionModel;
  const files = () => partFiles(parts);

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
    await expectDeterministicParts((dir, seed) => generateRandomFlux2KleinModel(dir, { seed }), tmp.dir, 21);
  });

  it("the model's own sampler and scheduler are the defaults (euler, flux2), as sd-cli picks them for Flux 2", () => {
    expect(sd.defaultSampler).toBe("euler");
    expect(sd.defaultScheduler()).toBe("flux2");
    expect(sd.defaultScheduler("lcm")).toBe("lcm");
    expect(() => sd.defaultScheduler("nope")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("one image: a 64×64 PNG with varied pixels, reproducible for its seed; another seed or prompt differs; the PNG names the defaults", async () => {
    const img = await expectOneImage(sd, base, 77);
    expect(img.png!.toString("latin1")).toContain("Sampler: euler, Schedule type: flux2, CFG scale: 1, Seed: 77, Size: 64x64");
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
    await expectImg2ImgDepends(sd, base);
  });

  it("a TAESD with the family's 32 latent channels decodes and encodes in place of the VAE; one with 16 is INVALID_MODEL", async () => {
    await expectTaesdDecodes(sd, files(), tmp.dir, base, 32, 16);
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
    await expectLlmRequired(files(), tmp.dir);
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
    await expectRefusedAtLoad({ ...files(), llm: odd.llm.path }, message, sd, base);
  });
});
