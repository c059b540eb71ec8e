// Model parts that do not fit together are refused at load, in TypeScript
// (lib/diffusion/parts.ts) before the engine sees them — sd.cpp would load
// them and abort the process at the first generation; the C++ side checks the
// same again (test/engine/diffusion-zimage.test.ts). Generated Z-Image parts
// (lib/tools/sd/z-image.ts; headers are all that is read, so the VAE encoder
// is written narrow here) and the engine's test double: no engine needed.
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DiffusionModel } from "../../lib/diffusion/index";
import { checkDiffusionParts } from "../../lib/diffusion/parts";
import { generateRandomZImageModel, type ZImageSizes } from "../../lib/tools";
import { FakeModel, fakeEngine } from "../fakes/diffusion-engine";
import { tempDir } from "../helpers";

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
    const counting = { ...eng, load: (...a: Parameters<typeof eng.load>) => (engineLoads++, eng.load(...a)) };
    await expect(DiffusionModel.load({ ...files, [part]: odd[part].path }, counting)).rejects.toMatchObject({
      code: "INVALID_MODEL",
      message: expect.stringMatching(message),
    });
    expect(engineLoads).toBe(0);
  });
});
