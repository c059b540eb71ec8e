// Stable Diffusion 3.5 on the real engine: a random-weight model in five
// parts (lib/tools/sd/sd3.ts: the MMDiT with SD3.5's RMS-normed attention,
// CLIP-L, OpenCLIP bigG, a 4096-wide T5 and the 16-channel VAE), loaded as
// DiffusionModel.load({ diffusionModel, clipL, clipG, t5xxl, vae }), 64×64,
// 2 steps. Random weights make noise-like images, but every kernel of the
// pipeline runs for real: three text encoders, their pooled vector, CLIP's
// token states padded and joined with T5's, the joint blocks, CFG with a
// negative prompt, a LoRA, TAESD.
//
// The T5 tokenizer's vocabulary: see diffusion-flux1.test.ts (these tests
// hold with or without it). About 0.8 GB of parts (bigG is 695 M
// parameters, q4_0); most generations run at CFG 1 to spare the encoders'
// second pass.
//
// Part of `npm run test:diffusion`. Without deps/stable-diffusion.cpp the
// suite is reported as skipped, with the reason in its name.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionModel } from "../../lib/diffusion/index";
import { type GenerateSd3Result, generateRandomFlux1Model, generateRandomSd3Lora, generateRandomSd3Model } from "../../lib/tools";
import { tempDir, THREADS } from "../helpers";
import {
  engineAvailable,
  expectImg2ImgDepends,
  expectNativeReads,
  expectOneImage,
  expectRefusedAtLoad,
  expectTaesdDecodes,
  familyTitle,
  raw,
  sameImage as same,
  unreadInput,
} from "./diffusion-family";

const SIZE = 64;
const base = { prompt: "a lighthouse at dusk", width: SIZE, height: SIZE, steps: 2, cfgScale: 1, output: "both" as const };
const partFiles = (p: GenerateSd3Result) => ({
  diffusionModel: p.diffusionModel.path,
  clipL: p.clipL.path,
  clipG: p.clipG.path,
  t5xxl: p.t5xxl.path,
  vae: p.vae.path,
});

describe.skipIf(!engineAvailable)(familyTitle("SD3.5 (random-weight MMDiT + CLIP-L + bigG + T5 + 16-channel VAE)"), () => {
  let tmp: ReturnType<typeof tempDir>;
  let parts: GenerateSd3Result;
  let sd: DiffusionModel;
  const files = () => partFiles(parts);

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-sd3-");
    parts = await generateRandomSd3Model(path.join(tmp.dir, "sd3"), { seed: 41 });
    sd = await DiffusionModel.load({ ...files(), threads: THREADS });
  }, 300_000);
  afterAll(async () => {
    await sd?.dispose();
    tmp?.cleanup();
  });

  it("the generator writes five GGUF files of the sizes it reports; bad options are RangeErrors", async () => {
    for (const p of Object.values(files())) expect(fs.readFileSync(p).subarray(0, 4).toString("latin1")).toBe("GGUF");
    for (const k of ["diffusionModel", "clipL", "clipG", "t5xxl", "vae"] as const) expect(fs.statSync(parts[k].path).size).toBe(parts[k].bytes);
    await expect(generateRandomSd3Model(tmp.dir, { sizes: { depth: 12 } })).rejects.toThrow(RangeError);
    await expect(generateRandomSd3Model(tmp.dir, { variant: "sd4" as "sd3" })).rejects.toThrow(RangeError);
    await expect(generateRandomSd3Model(tmp.dir, { type: "q8_0" as "f16" })).rejects.toThrow(RangeError);
  });

  it("the model's own sampler and scheduler are the defaults (euler, discrete), as sd-cli picks them for SD3", () => {
    expect(sd.defaultSampler).toBe("euler");
    expect(sd.defaultScheduler()).toBe("discrete");
  });

  it("one image: a 64×64 PNG with varied pixels, reproducible for its seed; another seed or prompt differs", async () => {
    const img = await expectOneImage(sd, base, 77);
    expect(img.png!.toString("latin1")).toContain("Sampler: euler, Schedule type: discrete, CFG scale: 1, Seed: 77, Size: 64x64");
  });

  it("flowShift reaches the MMDiT's flow schedule; guidance and refImages, which it does not read, are INVALID_ARGUMENT (TS and C++)", async () => {
    expect(sd.reads).toEqual({ guidance: false, flowShift: true, refImages: false });
    const [plain] = await sd.generate({ ...base, seed: 6 }).done;
    const [shifted] = await sd.generate({ ...base, seed: 6, flowShift: 6 }).done;
    expect(same(plain, shifted)).toBe(false);
    expect(() => sd.generate({ ...base, guidance: 3 })).toThrow(unreadInput("guidance"));
    expect(() => sd.generate({ ...base, refImages: [{ data: new Uint8Array(64 * 64 * 3), width: 64, height: 64, channels: 3 }] })).toThrow(
      unreadInput("refImages"),
    );
    await expectNativeReads(files(), { guidance: false, flowShift: true, refImages: false });
  });

  it("CFG with a negative prompt: the negative prompt reaches the MMDiT", async () => {
    const cfg = { ...base, cfgScale: 4.5, seed: 3 };
    const [a] = await sd.generate({ ...cfg, negativePrompt: "blurry" }).done;
    const [b] = await sd.generate({ ...cfg, negativePrompt: "sharp, detailed" }).done;
    expect(new Set(raw(a).data).size).toBeGreaterThan(16);
    expect(same(a, b)).toBe(false);
  });

  it("img2img runs through the 16-channel VAE encoder and depends on the init image", async () => {
    await expectImg2ImgDepends(sd, base);
  });

  it("a TAESD with 16 latent channels decodes and encodes in place of the VAE; one with 4 is INVALID_MODEL", async () => {
    await expectTaesdDecodes(sd, files(), tmp.dir, base, 16, 4);
  });

  it("a LoRA on the MMDiT (PEFT names) changes the image; at scale 0 it is the image without it", async () => {
    const lora = await generateRandomSd3Lora(path.join(tmp.dir, "sd3-lora.safetensors"), { seed: 4, scale: 0.5 });
    expect(lora.tensors).toBe(6);
    const [plain] = await sd.generate({ ...base, seed: 9 }).done;
    const [adapted] = await sd.generate({ ...base, seed: 9, loras: [{ path: lora.path, scale: 1 }] }).done;
    const [zero] = await sd.generate({ ...base, seed: 9, loras: [{ path: lora.path, scale: 0 }] }).done;
    expect(same(plain, adapted)).toBe(false);
    expect(same(plain, zero)).toBe(true);
  });

  it("without t5xxl sd.cpp conditions on the CLIPs alone (T5's states zero): an image, another than with T5", async () => {
    const noT5 = await DiffusionModel.load({ ...files(), t5xxl: undefined, threads: THREADS });
    try {
      const [a] = await noT5.generate({ ...base, seed: 6 }).done;
      const [withT5] = await sd.generate({ ...base, seed: 6 }).done;
      expect(new Set(raw(a).data).size).toBeGreaterThan(16);
      expect(same(a, withT5)).toBe(false);
    } finally {
      await noT5.dispose();
    }
  });

  // sd.cpp loads these and then aborts (the CLIP + T5 join) or crashes (no prompt condition) at the first generation:
  // the load refuses them (lib/diffusion/parts.ts, and again native/diffusion/part_check.cpp).
  it("a T5 of another width than 4096 is INVALID_MODEL at load", async () => {
    const narrow = await generateRandomFlux1Model(path.join(tmp.dir, "t5-64"), { seed: 3 }); // its T5 is 64 wide
    await expectRefusedAtLoad(
      { ...files(), t5xxl: narrow.t5xxl.path },
      /the T5 text encoder \(t5xxl\) is 64 wide; SD3 joins its token states with CLIP's padded to 4096/,
      sd,
      base,
    );
  });

  it("no text encoder at all is INVALID_MODEL at load (sd.cpp crashes at the first generation)", async () => {
    await expectRefusedAtLoad({ diffusionModel: parts.diffusionModel.path, vae: parts.vae.path }, /no text encoder: SD3 takes clipL/, sd, base);
  });
});
