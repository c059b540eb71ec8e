// Qwen-Image on the real engine: a random-weight model in three parts
// (lib/tools/sd/qwen-image.ts: DiT, Qwen2.5-VL text encoder, Wan VAE),
// loaded as DiffusionModel.load({ diffusionModel, llm, vae }) and sampled
// with cfgScale 1 (one DiT pass a step), euler and sd.cpp's flow schedule,
// 64×64, 2 steps. Random weights make noise-like images, but every kernel of
// the pipeline (Qwen2 tokenizer and chat template, Qwen2.5-VL, the
// dual-stream DiT, Wan VAE) runs for real. sd.cpp fixes most Qwen-Image sizes
// (DiT hidden 3072, text encoder hidden 3584), so the parts are written as
// q4_0: ~620 MB in all, a few seconds to write.
//
// Part of `npm run test:diffusion`. Without deps/stable-diffusion.cpp the
// suite is reported as skipped, with the reason in its name.
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionModel } from "../../lib/diffusion/index";
import { generateRandomQwenImageModel, generateRandomQwenImageVision, type GenerateQwenImageResult } from "../../lib/tools";
import { tempDir, THREADS } from "../helpers";
import {
  engineAvailable,
  expectDeterministicParts,
  expectImg2ImgDepends,
  expectLlmRequired,
  expectOneImage,
  expectRefusedAtLoad,
  familyTitle,
  partFiles,
  raw,
  sameImage,
  testPicture,
} from "./diffusion-family";

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

describe.skipIf(!engineAvailable)(familyTitle("Qwen-Image (random-weight DiT + Qwen2.5-VL + Wan VAE)"), () => {
  let tmp: ReturnType<typeof tempDir>;
  let parts: GenerateQwenImageResult;
  let sd: DiffusionModel;
  const files = () => partFiles(parts);

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-qwen-image-");
    parts = await generateRandomQwenImageModel(path.join(tmp.dir, "q"), { seed: 11, vision: true });
    sd = await DiffusionModel.load({ ...files(), threads: THREADS });
  }, 120_000);
  afterAll(async () => {
    await sd?.dispose();
    tmp?.cleanup();
  });

  it("the generator writes three GGUF files, byte-identical for a seed and different for another", async () => {
    expect(parts).toMatchObject({ seed: 11, type: "q4_0" });
    // the full-size parts take seconds to write: determinism is checked on narrow ones (same writer, same plans)
    const sizes = { ditHeads: 1, teHidden: 256, teVocab: 4096, vaeChannels: 8 };
    await expectDeterministicParts((dir, seed) => generateRandomQwenImageModel(dir, { seed, sizes }), tmp.dir, 11);
    await expect(generateRandomQwenImageModel(path.join(tmp.dir, "bad"), { seed: -1 })).rejects.toThrow(RangeError);
    await expect(generateRandomQwenImageModel(path.join(tmp.dir, "bad"), { type: "q5_k" as "q4_0" })).rejects.toThrow(RangeError);
  });

  it("one image: a 64×64 PNG with varied pixels, reproducible for its seed; another seed or prompt differs", async () => {
    await expectOneImage(sd, base, 1234);
  }, 120_000);

  it("img2img runs through the VAE encoder and depends on the init image", async () => {
    await expectImg2ImgDepends(sd, base);
  }, 120_000);

  it("Qwen-Image's own VAE layout (the causal-3D Wan VAE) decodes a varied image and encodes img2img's init image", async () => {
    const own = await generateRandomQwenImageModel(path.join(tmp.dir, "causal3d"), { seed: 11, vae: "causal3d" });
    expect(own.vae).toMatchObject({ parameters: 126_892_531 }); // Wan 2.1's VAE's count
    const m = await DiffusionModel.load({ ...files(), vae: own.vae.path, threads: THREADS });
    try {
      const [img] = await m.generate({ ...base, seed: 3 }).done;
      expect(new Set(raw(img).data).size).toBeGreaterThan(16);
      const [plain] = await sd.generate({ ...base, seed: 3 }).done;
      expect(sameImage(img, plain)).toBe(false); // another VAE, another image
      await expectImg2ImgDepends(m, base);
    } finally {
      await m.dispose();
    }
  }, 240_000);

  it("a missing llm file is MODEL_NOT_FOUND; leaving the llm out is INVALID_MODEL", async () => {
    await expectLlmRequired(files(), tmp.dir);
  }, 60_000);

  it("the model's own sampler and scheduler (the defaults) are euler and discrete, as sd-cli picks them for Qwen-Image", () => {
    expect(sd.defaultSampler).toBe("euler");
    expect(sd.defaultScheduler()).toBe("discrete");
  });

  // sd.cpp loads this without complaint and then fails a GGML_ASSERT (a process abort) in the DiT's txt_norm at
  // the first generation: the load refuses it.
  it("a text encoder narrower than the DiT's 3584 is INVALID_MODEL at load; the loaded model still works", async () => {
    const odd = await generateRandomQwenImageModel(path.join(tmp.dir, "odd"), { seed: 3, sizes: { teHidden: 1024 } });
    await expectRefusedAtLoad({ ...files(), llm: odd.llm.path }, /text encoder \(llm\) has hidden size 1024, the diffusion model takes 3584/, sd, base);
    // the same mismatch through the vision tower: its image embeddings go into the 3584-wide text encoder's input
    const oddVision = await generateRandomQwenImageVision(path.join(tmp.dir, "odd", "mmproj-1024.gguf"), { seed: 3, sizes: { teHidden: 1024 } });
    await expectRefusedAtLoad(
      { ...files(), llmVision: oddVision.path },
      /vision tower \(llmVision\) gives 1024-wide image embeddings, the text encoder \(llm\) is 3584 wide/,
      sd,
      base,
    );
  }, 120_000);

  // Qwen-Image-Edit(-Plus) is Qwen-Image plus Qwen2.5-VL's vision tower (an mmproj GGUF): with reference images the
  // prompt becomes the edit template with the images' embeddings in it (QwenImageEditPlusPipeline); without the tower
  // the reference images reach only the DiT, as VAE latents.
  describe("Qwen-Image-Edit: the vision tower (llmVision)", () => {
    let edit: DiffusionModel;
    const ref = testPicture(SIZE, SIZE, 3);
    beforeAll(async () => {
      expect(parts.llmVision).toMatchObject({ tensors: 2 + 2 * 16 + 5 });
      edit = await DiffusionModel.load({ ...files(), llmVision: parts.llmVision!.path, threads: THREADS });
    }, 120_000);
    afterAll(async () => {
      await edit?.dispose();
    });

    it("a reference image reaches the text encoder through it: the same edit without the tower differs; text-to-image does not", async () => {
      const [withTower] = await edit.generate({ ...base, seed: 9, refImages: [ref] }).done;
      const [withoutTower] = await sd.generate({ ...base, seed: 9, refImages: [ref] }).done;
      expect(sameImage(withTower, withoutTower)).toBe(false);
      const [again] = await edit.generate({ ...base, seed: 9, refImages: [ref] }).done;
      expect(sameImage(withTower, again)).toBe(true);
      const [otherRef] = await edit.generate({ ...base, seed: 9, refImages: [testPicture(SIZE, SIZE, 7)] }).done;
      expect(sameImage(withTower, otherRef)).toBe(false);
      // no reference image: the tower is not used, the image is the plain model's
      const [t2i] = await edit.generate({ ...base, seed: 9 }).done;
      const [plain] = await sd.generate({ ...base, seed: 9 }).done;
      expect(sameImage(t2i, plain)).toBe(true);
    }, 240_000);

    // sd.cpp builds the tower with 16 heads: a width that is not 16 heads of an even width fails a GGML_ASSERT (an
    // abort) while the model loads
    it("a vision tower that is not 16 heads of an even width is INVALID_MODEL at load; the loaded model still works", async () => {
      // 72: not 16 whole heads (the assert in VisionAttention, at load); 80: heads 5 wide (a reshape assert at the first edit)
      for (const width of [72, 80]) {
        const odd = await generateRandomQwenImageVision(path.join(tmp.dir, `mmproj-${width}.gguf`), { seed: 4, sizes: { visionHidden: width } });
        const why = new RegExp(`vision tower \\(llmVision\\) is ${width} wide, not 16 heads of an even width`);
        await expectRefusedAtLoad({ ...files(), llmVision: odd.path }, why, edit, base);
      }
    }, 120_000);
  });
});
