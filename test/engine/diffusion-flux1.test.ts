// Flux 1 on the real engine: a random-weight model in four parts
// (lib/tools/sd/flux1.ts: the Flux DiT with or without its guidance
// embedder, CLIP-L, a T5 encoder, the 16-channel Flux VAE), loaded as
// DiffusionModel.load({ diffusionModel, clipL, t5xxl, vae }) and sampled as
// Flux 1 is run: cfgScale 1 and the model's own defaults, 64×64, 2 steps.
// Random weights make noise-like images, but every kernel of the pipeline
// runs for real: CLIP-L's pooled vector, T5's hidden states, the guidance
// embedder of [dev], reference images (the Kontext path), a LoRA, TAESD.
//
// sd.cpp's T5 tokenizer reads its vocabulary from a header generated from
// T5's tokenizer.json (src/tokenizers/vocab/t5.hpp); a build whose copy of
// it lacks the data tokenizes every prompt to padding, and the prompt then
// reaches the DiT through CLIP-L alone. These tests hold either way.
//
// Part of `npm run test:diffusion`. Without deps/stable-diffusion.cpp the
// suite is reported as skipped, with the reason in its name.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionModel } from "../../lib/diffusion/index";
import { type GenerateFlux1Result, generateRandomFlux1Lora, generateRandomFlux1Model } from "../../lib/tools";
import { tempDir, THREADS } from "../helpers";
import {
  engineAvailable,
  expectDeterministicParts,
  expectImg2ImgDepends,
  expectNativeReads,
  expectOneImage,
  expectRefusedAtLoad,
  expectTaesdDecodes,
  familyTitle,
  raw,
  sameImage as same,
  testPicture as picture,
  unreadInput,
} from "./diffusion-family";

const SIZE = 64;
const base = { prompt: "a lighthouse at dusk", width: SIZE, height: SIZE, steps: 2, cfgScale: 1, output: "both" as const };
const partFiles = (p: GenerateFlux1Result) => ({ diffusionModel: p.diffusionModel.path, clipL: p.clipL.path, t5xxl: p.t5xxl.path, vae: p.vae.path });

describe.skipIf(!engineAvailable)(familyTitle("Flux 1 (random-weight DiT + CLIP-L + T5 + Flux VAE)"), () => {
  let tmp: ReturnType<typeof tempDir>;
  let parts: GenerateFlux1Result;
  let sd: DiffusionModel;
  const files = () => partFiles(parts);

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-flux1-");
    parts = await generateRandomFlux1Model(path.join(tmp.dir, "dev"), { seed: 31 });
    sd = await DiffusionModel.load({ ...files(), threads: THREADS });
  });
  afterAll(async () => {
    await sd?.dispose();
    tmp?.cleanup();
  });

  it("the generator writes four GGUF files, byte-identical for a seed and different for another", async () => {
    await expectDeterministicParts((dir, seed) => generateRandomFlux1Model(dir, { seed }), tmp.dir, 31, ["diffusionModel", "clipL", "t5xxl", "vae"]);
    await expect(generateRandomFlux1Model(tmp.dir, { variant: "pro" as "dev" })).rejects.toThrow(RangeError);
  });

  it("the model's own sampler and scheduler are the defaults (euler, flux), as sd-cli picks them for Flux", () => {
    expect(sd.defaultSampler).toBe("euler");
    expect(sd.defaultScheduler()).toBe("flux");
  });

  it("one image: a 64×64 PNG with varied pixels, reproducible for its seed; another seed or prompt differs; the PNG names the defaults", async () => {
    const img = await expectOneImage(sd, base, 77);
    expect(img.png!.toString("latin1")).toContain("Sampler: euler, Schedule type: flux, CFG scale: 1, Seed: 77, Size: 64x64");
    const [wide] = await sd.generate({ ...base, seed: 77, width: 128, height: 64 }).done;
    expect([wide.width, wide.height, raw(wide).data.length]).toEqual([128, 64, 128 * 64 * raw(wide).channels]);
  });

  it("[dev]'s distilled guidance reaches the DiT (its guidance embedder) and the PNG names it; [schnell] has no guidance embedder", async () => {
    const [plain] = await sd.generate({ ...base, seed: 4 }).done;
    const [g7] = await sd.generate({ ...base, seed: 4, guidance: 7 }).done;
    const [g35] = await sd.generate({ ...base, seed: 4, guidance: 3.5 }).done;
    expect(same(plain, g7)).toBe(false);
    expect(same(plain, g35)).toBe(true); // sd.cpp's default is 3.5
    expect(g7.png!.toString("latin1")).toContain("Distilled CFG Scale: 7");
    const schnell = await generateRandomFlux1Model(path.join(tmp.dir, "schnell"), { seed: 31, variant: "schnell" });
    expect(schnell.diffusionModel.tensors).toBe(parts.diffusionModel.tensors - 4);
    const s = await DiffusionModel.load({ ...partFiles(schnell), threads: THREADS });
    try {
      expect(sd.reads).toEqual({ guidance: true, flowShift: true, refImages: true });
      expect(s.reads).toEqual({ guidance: false, flowShift: true, refImages: true });
      // sd.cpp would leave it unread: the same image
      expect(() => s.generate({ ...base, guidance: 7 })).toThrow(unreadInput("guidance"));
      await expectNativeReads(partFiles(schnell), { guidance: false, flowShift: true, refImages: true });
      const [a] = await s.generate({ ...base, seed: 4 }).done;
      expect(new Set(raw(a).data).size).toBeGreaterThan(16);
      expect(same(a, plain)).toBe(false);
    } finally {
      await s.dispose();
    }
  });

  it("reference images (the Kontext path) reach the DiT through the VAE encoder: the output depends on them", async () => {
    const [plain] = await sd.generate({ ...base, seed: 5 }).done;
    const [a] = await sd.generate({ ...base, seed: 5, refImages: [picture(64, 64, 1)] }).done;
    const [b] = await sd.generate({ ...base, seed: 5, refImages: [picture(64, 64, 7)] }).done;
    expect(same(plain, a)).toBe(false);
    expect(same(a, b)).toBe(false);
  });

  it("img2img runs through the 16-channel VAE encoder and depends on the init image", async () => {
    await expectImg2ImgDepends(sd, base);
  });

  it("a TAESD with the family's 16 latent channels decodes and encodes in place of the VAE; one with 4 is INVALID_MODEL", async () => {
    await expectTaesdDecodes(sd, files(), tmp.dir, base, 16, 4);
  });

  it("a LoRA on the DiT (PEFT names) changes the image; at scale 0 it is the image without it", async () => {
    const lora = await generateRandomFlux1Lora(path.join(tmp.dir, "flux1-lora.safetensors"), { seed: 4, scale: 0.5 });
    expect(fs.statSync(lora.path).size).toBe(lora.bytes);
    expect(lora.tensors).toBe(6);
    const [plain] = await sd.generate({ ...base, seed: 9 }).done;
    const [adapted] = await sd.generate({ ...base, seed: 9, loras: [{ path: lora.path, scale: 1 }] }).done;
    const [zero] = await sd.generate({ ...base, seed: 9, loras: [{ path: lora.path, scale: 0 }] }).done;
    expect(same(plain, adapted)).toBe(false);
    expect(same(plain, zero)).toBe(true);
  });

  it("without clipL sd.cpp conditions on T5 alone (CLIP-L's pooled vector zero): an image, another than with CLIP-L", async () => {
    const noClip = await DiffusionModel.load({ ...files(), clipL: undefined, threads: THREADS });
    try {
      const [a] = await noClip.generate({ ...base, seed: 6 }).done;
      const [withClip] = await sd.generate({ ...base, seed: 6 }).done;
      expect(new Set(raw(a).data).size).toBeGreaterThan(16);
      expect(same(a, withClip)).toBe(false);
    } finally {
      await noClip.dispose();
    }
  });

  it("without t5xxl a DiT that takes T5-XXL's 4096 features gets sd.cpp's zeros: an image", async () => {
    const wide = await generateRandomFlux1Model(path.join(tmp.dir, "ctx4096"), { seed: 2, sizes: { contextWidth: 4096 } });
    const m = await DiffusionModel.load({ ...partFiles(wide), t5xxl: undefined, threads: THREADS });
    try {
      const [a] = await m.generate({ ...base, seed: 6 }).done;
      expect(new Set(raw(a).data).size).toBeGreaterThan(16);
    } finally {
      await m.dispose();
    }
  });

  // sd.cpp loads each of these and then fails a GGML_ASSERT (a process abort) or crashes at the first generation:
  // the load refuses them (lib/diffusion/parts.ts, and again native/diffusion/part_check.cpp).
  it("a T5 of another width than the DiT's txt_in is INVALID_MODEL at load", async () => {
    const odd = await generateRandomFlux1Model(path.join(tmp.dir, "t5-96"), { seed: 3, sizes: { t5Hidden: 96 } });
    await expectRefusedAtLoad(
      { ...files(), t5xxl: odd.t5xxl.path },
      /the T5 text encoder \(t5xxl\) is 96 wide, the diffusion model's txt_in takes 64/,
      sd,
      base,
    );
  });

  it("leaving t5xxl out of a DiT that does not take 4096 features is INVALID_MODEL at load", async () => {
    await expectRefusedAtLoad(
      { ...files(), t5xxl: undefined },
      /without t5xxl sd.cpp gives the diffusion model 4096-wide zeros as the prompt, its txt_in takes 64/,
      sd,
      base,
    );
  });

  it("no text encoder at all is INVALID_MODEL at load (sd.cpp crashes at the first generation)", async () => {
    await expectRefusedAtLoad({ diffusionModel: parts.diffusionModel.path, vae: parts.vae.path }, /no text encoder: Flux 1 takes t5xxl/, sd, base);
  });
});
