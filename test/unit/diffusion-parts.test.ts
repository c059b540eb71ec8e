// Model parts that do not fit together are refused at load, in TypeScript
// (lib/diffusion/parts.ts) before the engine sees them — sd.cpp would load
// them and abort the process at the first generation; the C++ side checks the
// same again (test/engine/diffusion-zimage.test.ts). Generated Z-Image,
// Flux 1 and Flux 2 [klein] parts (lib/tools/sd/z-image.ts, flux1.ts, flux2.ts; headers are
// all that is read, so the VAE encoder is written narrow here) and the
// engine's test double: no engine needed.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionModel } from "../../lib/diffusion/index";
import { checkDiffusionParts } from "../../lib/diffusion/parts";
import {
  FLUX1_TINY,
  type Flux1Sizes,
  type Flux2Sizes,
  flux1T5Plan,
  generateRandomFlux1Model,
  generateRandomFlux2KleinModel,
  generateRandomQwenImageModel,
  generateRandomQwenImageVision,
  generateRandomSd15ControlNet,
  generateRandomSd15Model,
  generateRandomZImageModel,
  type PartTensorSpec,
  SD3_TINY,
  sd3MmditPlan,
  type ZImageSizes,
} from "../../lib/tools";
import { FakeModel, fakeEngine } from "../fakes/diffusion-engine";
import { tempDir, writePlanHeader } from "../helpers";

describe("diffusion model parts that do not fit together", () => {
  const tmp = tempDir("genai-native-parts-");
  const small: Partial<ZImageSizes> = { vaeEncoderChannels: 8 };
  const write = (name: string, sizes: Partial<ZImageSizes> = {}) => generateRandomZImageModel(path.join(tmp.dir, name), { sizes: { ...small, ...sizes } });
  let files: { diffusionModel: string; llm: string; vae: string };
  beforeAll(async () => {
    const z = await write("base");
    files = { diffusionModel: z.diffusionModel.path, llm: z.llm.path, vae: z.vae.path };
  });
  afterAll(() => tmp.cleanup());

  it("matching Z-Image parts pass and reach the engine; other families and unreadable files are not judged here", async () => {
    await expect(checkDiffusionParts(files)).resolves.toBeUndefined();
    const m = await DiffusionModel.load(files, fakeEngine(new FakeModel(1)));
    await m.dispose();
    await expect(checkDiffusionParts({ diffusionModel: path.join(tmp.dir, "missing.gguf"), llm: files.llm })).resolves.toBeUndefined();
    await expect(checkDiffusionParts({ model: files.vae })).resolves.toBeUndefined();
  });

  it.each([
    ["llm", { teHidden: 64 }, /text encoder \(llm\) has hidden size 64, the diffusion model's caption embedder takes 32/],
    ["llm", { teVocab: 1024 }, /vocabulary has 1024 tokens; the Qwen tokenizer's ids go up to 151673/],
    ["diffusionModel", { latentChannels: 4 }, /the VAE has 16 latent channels, the diffusion model takes 4/],
    ["vae", { latentChannels: 8 }, /the VAE has 8 latent channels, the diffusion model takes 16/],
    ["diffusionModel", { ditHeadDim: 64 }, /heads are 64 wide, not 128/],
    ["diffusionModel", { ditHidden: 128, ditFfn: 512 }, /hidden size 128 is under 256/],
  ] as const)("%s written with %o is INVALID_MODEL before the engine loads anything", async (part, sizes, message) => {
    const odd = await write(`odd-${part}-${Object.keys(sizes).join("-")}`, sizes);
    let engineLoads = 0;
    const eng = fakeEngine(new FakeModel(1));
    const counting = {
      ...eng,
      load: (...a: Parameters<typeof eng.load>) => {
        engineLoads++;
        return eng.load(...a);
      },
    };
    await expect(DiffusionModel.load({ ...files, [part]: odd[part].path }, counting)).rejects.toMatchObject({
      code: "INVALID_MODEL",
      message: expect.stringMatching(message),
    });
    expect(engineLoads).toBe(0);
  });
});

describe("Flux 2 [klein] parts that do not fit together", () => {
  const tmp = tempDir("genai-native-parts-flux2-");
  const small: Partial<Flux2Sizes> = { vaeEncoderChannels: 8 };
  const write = (name: string, sizes: Partial<Flux2Sizes> = {}) => generateRandomFlux2KleinModel(path.join(tmp.dir, name), { sizes: { ...small, ...sizes } });
  let files: { diffusionModel: string; llm: string; vae: string };
  beforeAll(async () => {
    const f = await write("base");
    files = { diffusionModel: f.diffusionModel.path, llm: f.llm.path, vae: f.vae.path };
  });
  afterAll(() => tmp.cleanup());

  it("matching parts pass: the DiT's txt_in takes the hidden states of layers 9, 18 and 27 (3 × 32)", async () => {
    await expect(checkDiffusionParts(files)).resolves.toBeUndefined();
    // 18 layers give two of the three hidden states: a DiT made for that fits
    const two = await write("two", { teLayers: 18, teHeads: 32 });
    await expect(checkDiffusionParts({ ...files, diffusionModel: two.diffusionModel.path, llm: two.llm.path })).resolves.toBeUndefined();
    await expect(checkDiffusionParts({ ...files, llm: two.llm.path })).rejects.toMatchObject({
      code: "INVALID_MODEL",
      message: expect.stringMatching(/gives 2 × 32 = 64 features per token \(18 layers\), the diffusion model's txt_in takes 96/),
    });
  });

  it.each([
    [{ teLayers: 8, teHeads: 32, contextWidth: 96 }, /gives 1 × 32 = 32 features per token \(8 layers\)/],
    [{ teHidden: 40, contextWidth: 96 }, /gives 3 × 40 = 120 features per token/],
    [{ teVocab: 151000 }, /vocabulary has 151000 tokens/],
  ] as const)("a text encoder written with %o is INVALID_MODEL before the engine loads anything", async (sizes, message) => {
    const odd = await write(`odd-${Object.keys(sizes).join("-")}`, sizes);
    let engineLoads = 0;
    const eng = fakeEngine(new FakeModel(1));
    const counting = {
      ...eng,
      load: (...a: Parameters<typeof eng.load>) => {
        engineLoads++;
        return eng.load(...a);
      },
    };
    await expect(DiffusionModel.load({ ...files, llm: odd.llm.path }, counting)).rejects.toMatchObject({
      code: "INVALID_MODEL",
      message: expect.stringMatching(message),
    });
    expect(engineLoads).toBe(0);
  });
});

describe("Flux 1 parts that do not fit together", () => {
  const tmp = tempDir("genai-native-parts-flux1-");
  const small: Partial<Flux1Sizes> = { vaeEncoderChannels: 8 };
  const write = (name: string, sizes: Partial<Flux1Sizes> = {}) => generateRandomFlux1Model(path.join(tmp.dir, name), { sizes: { ...small, ...sizes } });
  let files: { diffusionModel: string; clipL: string; t5xxl: string; vae: string };
  let ctx4096: string;
  beforeAll(async () => {
    const f = await write("base");
    files = { diffusionModel: f.diffusionModel.path, clipL: f.clipL.path, t5xxl: f.t5xxl.path, vae: f.vae.path };
    ctx4096 = (await write("ctx4096", { contextWidth: 4096 })).diffusionModel.path;
  });
  afterAll(() => tmp.cleanup());

  const refusal = async (load: Parameters<typeof checkDiffusionParts>[0], message: RegExp) => {
    let engineLoads = 0;
    const eng = fakeEngine(new FakeModel(1));
    const counting = {
      ...eng,
      load: (...a: Parameters<typeof eng.load>) => {
        engineLoads++;
        return eng.load(...a);
      },
    };
    await expect(DiffusionModel.load(load, counting)).rejects.toMatchObject({ code: "INVALID_MODEL", message: expect.stringMatching(message) });
    expect(engineLoads).toBe(0);
  };

  it("matching parts pass: T5's width is the DiT's txt_in input; CLIP-L alone or T5 alone pass; no T5 passes when txt_in takes T5-XXL's 4096", async () => {
    await expect(checkDiffusionParts(files)).resolves.toBeUndefined();
    await expect(checkDiffusionParts({ ...files, clipL: undefined })).resolves.toBeUndefined();
    await expect(checkDiffusionParts({ ...files, diffusionModel: ctx4096, t5xxl: undefined })).resolves.toBeUndefined();
  });

  it("a T5 of another width, no T5 for a DiT that does not take 4096 features, and no text encoder at all are INVALID_MODEL before the engine loads anything", async () => {
    const wide = await write("t5-96", { t5Hidden: 96 });
    await refusal({ ...files, t5xxl: wide.t5xxl.path }, /the T5 text encoder \(t5xxl\) is 96 wide, the diffusion model's txt_in takes 64/);
    await refusal({ ...files, t5xxl: undefined }, /without t5xxl sd.cpp gives the diffusion model 4096-wide zeros as the prompt, its txt_in takes 64/);
    await refusal({ diffusionModel: ctx4096, vae: files.vae }, /no text encoder: Flux 1 takes t5xxl/);
    // a T5 of T5-XXL's width beside a DiT that takes 64
    await refusal({ ...files, diffusionModel: ctx4096 }, /the T5 text encoder \(t5xxl\) is 64 wide, the diffusion model's txt_in takes 4096/);
  });

  it("a DiT in diffusers' names (single_transformer_blocks, context_embedder) is Flux 1 too", async () => {
    // safetensors header only (row-major shapes): context_embedder takes 64 features, as the T5 written here gives
    const file = path.join(tmp.dir, "diffusers-dit.safetensors");
    const tensors: Record<string, number[]> = { "context_embedder.weight": [128, 64], "single_transformer_blocks.0.attn.to_q.weight": [128, 128] };
    const header: Record<string, unknown> = {};
    let at = 0;
    for (const [name, shape] of Object.entries(tensors)) {
      header[name] = { dtype: "F16", shape, data_offsets: [at, at + shape[0] * shape[1] * 2] };
      at += shape[0] * shape[1] * 2;
    }
    const json = Buffer.from(JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(at)]));
    await expect(checkDiffusionParts({ ...files, diffusionModel: file })).resolves.toBeUndefined();
    await refusal({ ...files, diffusionModel: file, t5xxl: undefined }, /without t5xxl .* its txt_in takes 64/);
  });
});

/** writePlanHeader's sparse safetensors header for a tensor plan; returns the file. */
function writeHeader(file: string, specs: readonly PartTensorSpec[]): string {
  writePlanHeader(file, specs);
  return file;
}

describe("SD3 parts that do not fit together", () => {
  const tmp = tempDir("genai-native-parts-sd3-");
  const f = (n: string) => path.join(tmp.dir, n);
  const t5 = (width: number) =>
    writeHeader(f(`t5-${width}.safetensors`), flux1T5Plan("f16", { ...FLUX1_TINY, t5Hidden: width, t5Inner: 4096, t5Ffn: 10240, t5Layers: 1 }));
  const mmdit = (name: string, sizes = {}) => writeHeader(f(`${name}.safetensors`), sd3MmditPlan({ ...SD3_TINY, ...sizes }));
  afterAll(() => tmp.cleanup());

  it("an MMDiT with its 4096-wide T5 passes, with or without the CLIPs; without T5 too", async () => {
    const load = { diffusionModel: mmdit("mmdit"), t5xxl: t5(4096), clipL: f("clip-l.gguf"), clipG: f("clip-g.gguf") };
    await expect(checkDiffusionParts(load)).resolves.toBeUndefined();
    await expect(checkDiffusionParts({ ...load, clipL: undefined, clipG: undefined })).resolves.toBeUndefined();
    await expect(checkDiffusionParts({ ...load, t5xxl: undefined })).resolves.toBeUndefined();
  });

  it.each([
    ["a 64-wide T5", () => ({ diffusionModel: mmdit("mmdit"), t5xxl: t5(64) }), /the T5 text encoder \(t5xxl\) is 64 wide; SD3 joins/],
    ["no text encoder", () => ({ diffusionModel: mmdit("mmdit") }), /no text encoder: SD3 takes clipL/],
    ["a context_embedder taking 64", () => ({ diffusionModel: mmdit("ctx64", { contextSize: 64 }), t5xxl: t5(4096) }), /context_embedder takes 64 features/],
    ["a y_embedder taking 1024", () => ({ diffusionModel: mmdit("adm1024", { admInChannels: 1024 }), t5xxl: t5(4096) }), /y_embedder takes 1024 features/],
  ] as const)("%s is INVALID_MODEL before the engine loads anything", async (_, load, message) => {
    await expect(checkDiffusionParts(load())).rejects.toMatchObject({ code: "INVALID_MODEL", message: expect.stringMatching(message) });
  });
});

describe("a ControlNet of another width than the UNet", () => {
  const tmp = tempDir("genai-native-parts-cn-");
  afterAll(() => tmp.cleanup());

  it("is INVALID_MODEL before the engine loads (sd.cpp would abort in the UNet's ggml_add at the first step); an equal width passes", async () => {
    const model = path.join(tmp.dir, "tiny.gguf");
    await generateRandomSd15Model(model, { preset: "tiny", type: "f16", seed: 1 });
    const same = await generateRandomSd15ControlNet(path.join(tmp.dir, "cn32.gguf"), { preset: "tiny", seed: 1 });
    const wide = await generateRandomSd15ControlNet(path.join(tmp.dir, "cn64.gguf"), { unetChannels: 64, seed: 1 });
    await expect(checkDiffusionParts({ model, controlNet: same.path })).resolves.toBeUndefined();
    let engineLoads = 0;
    const eng = fakeEngine(new FakeModel(1));
    const counting = {
      ...eng,
      load: (...a: Parameters<typeof eng.load>) => {
        engineLoads++;
        return eng.load(...a);
      },
    };
    await expect(DiffusionModel.load({ model, controlNet: wide.path }, counting)).rejects.toMatchObject({
      code: "INVALID_MODEL",
      message: expect.stringMatching(/the ControlNet \(controlNet\) has 64 model channels, the diffusion model's UNet 32/),
    });
    expect(engineLoads).toBe(0);
  });
});

// Qwen-Image-Edit's vision tower (llmVision): sd.cpp builds it with 16 heads and puts its output into the text
// encoder's input; the engine test (test/engine/diffusion-qwen-image.test.ts) has sd-cli's aborts for each case.
describe("a Qwen-Image vision tower (llmVision) that does not fit", () => {
  const tmp = tempDir("genai-native-parts-qwen-vision-");
  // narrow parts: only the headers are read (the DiT is 128 wide, the text encoder 256)
  const sizes = { ditHeads: 1, teHidden: 256, teVocab: 151936, vaeChannels: 8 };
  let files: { diffusionModel: string; llm: string; vae: string; llmVision: string };
  beforeAll(async () => {
    const q = await generateRandomQwenImageModel(path.join(tmp.dir, "base"), { sizes, vision: true });
    files = { diffusionModel: q.diffusionModel.path, llm: q.llm.path, vae: q.vae.path, llmVision: q.llmVision!.path };
  }, 60_000);
  afterAll(() => tmp.cleanup());

  it("a tower of 16 heads of an even width, its merger giving the text encoder's width, passes", async () => {
    await expect(checkDiffusionParts(files)).resolves.toBeUndefined();
  });

  it.each([
    [{ visionHidden: 72 }, /vision tower \(llmVision\) is 72 wide, not 16 heads of an even width \(a multiple of 32\)/],
    [{ visionHidden: 80 }, /vision tower \(llmVision\) is 80 wide/],
    [{ teHidden: 512 }, /gives 512-wide image embeddings, the text encoder \(llm\) is 256 wide/],
  ] as const)("a tower written with %o is INVALID_MODEL before the engine loads anything", async (odd, message) => {
    const v = await generateRandomQwenImageVision(path.join(tmp.dir, `odd-${Object.entries(odd).flat().join("-")}.gguf`), { sizes: { ...sizes, ...odd } });
    let engineLoads = 0;
    const eng = fakeEngine(new FakeModel(1));
    const counting = {
      ...eng,
      load: (...a: Parameters<typeof eng.load>) => {
        engineLoads++;
        return eng.load(...a);
      },
    };
    await expect(DiffusionModel.load({ ...files, llmVision: v.path }, counting)).rejects.toMatchObject({
      code: "INVALID_MODEL",
      message: expect.stringMatching(message),
    });
    expect(engineLoads).toBe(0);
  });
});
