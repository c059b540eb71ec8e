// ControlNet on the real engine: a random-weight SD1 ControlNet
// (lib/tools/sd/controlnet.ts) loaded with a random-weight SD1 checkpoint
// (lib/tools/sd/generate.ts) as DiffusionModel.load({ model, controlNet }),
// then controlImage / controlStrength per generation.
//
// sd.cpp builds its ControlNet with SD1.5's fixed 320 model channels
// (src/model/diffusion/control.hpp, ControlNetBlock), so the checkpoint here
// is the "tiny" preset with the UNet widened to 320 channels (CLIP, VAE as in
// "tiny"): a narrower ControlNet is refused at load, and so is a 320-wide
// ControlNet with the 32-wide "tiny" UNet, which sd.cpp would load and then
// abort the process on (GGML_ASSERT in the UNet's ggml_add of the control
// outputs): lib/diffusion/parts.ts and native/diffusion/part_check.cpp.
//
// Part of `npm run test:diffusion`. A build without deps/stable-diffusion.cpp
// has no engine: the suite is then reported as skipped, with the reason in
// its name — never as passed.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { native } from "../../lib/binding/load";
import { capabilities } from "../../lib/index";
import { DiffusionModel, type GeneratedImage, type RawImage } from "../../lib/diffusion/index";
import { ENGINE_HOWTO, loadParams } from "../../lib/diffusion/native-engine";
import { generateRandomSd15Model } from "../../lib/tools";
import { generateRandomSd15ControlNet, SD1_CONTROLNET_CHANNELS, sd15ControlNetTensorPlan, type SdControlNetResult } from "../../lib/tools/sd/controlnet";
import { tempDir, THREADS } from "../helpers";

const available = capabilities().diffusion;
const title = available
  ? "stable-diffusion.cpp ControlNet (random-weight SD1 ControlNet with a 320-channel SD1 checkpoint)"
  : `stable-diffusion.cpp ControlNet — SKIPPED: the addon has no diffusion engine (${ENGINE_HOWTO})`;
if (!available) console.warn(`[test:diffusion] skipped: ${ENGINE_HOWTO}`);

const SIZE = 64;
const base = { prompt: "a lighthouse at dusk", width: SIZE, height: SIZE, steps: 2, cfgScale: 1, sampler: "euler", seed: 1234, output: "raw" as const };
const bytes = (img: GeneratedImage) => Buffer.from(img.raw!.data);
const same = (a: GeneratedImage, b: GeneratedImage) => bytes(a).equals(bytes(b));
const meanDiff = (a: GeneratedImage, b: GeneratedImage) => {
  const x = bytes(a);
  const y = bytes(b);
  let s = 0;
  for (let i = 0; i < x.length; i++) s += Math.abs(x[i] - y[i]);
  return s / x.length;
};
/** A control image (as an edge map would be): white where `on(x, y)`, black elsewhere; 4 channels add an alpha of 255. */
const hint = (on: (x: number, y: number) => boolean, channels: 3 | 4 = 3): RawImage => {
  const data = new Uint8Array(SIZE * SIZE * channels);
  for (let y = 0; y < SIZE; y++)
    for (let x = 0; x < SIZE; x++) {
      const i = (y * SIZE + x) * channels;
      data.fill(on(x, y) ? 255 : 0, i, i + 3);
      if (channels === 4) data[i + 3] = 255;
    }
  return { data, width: SIZE, height: SIZE, channels };
};
const square = (x: number, y: number) => x >= 16 && x < 48 && y >= 16 && y < 48;
const stripes = (x: number) => x % 16 < 4;

describe.skipIf(!available)(title, () => {
  let tmp: ReturnType<typeof tempDir>;
  let modelFile: string;
  let cn: SdControlNetResult;
  let sd: DiffusionModel;
  let plain: GeneratedImage;
  let withSquare: GeneratedImage;
  const gen = (o: object = {}) => sd.generate({ ...base, ...o }).done.then((r) => r[0]);

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-controlnet-");
    modelFile = path.join(tmp.dir, "random-sd1-320.gguf");
    await generateRandomSd15Model(modelFile, { preset: "tiny", shape: { unetChannels: SD1_CONTROLNET_CHANNELS }, type: "q8_0", seed: 7 });
    cn = await generateRandomSd15ControlNet(path.join(tmp.dir, "random-sd1-controlnet.gguf"), { seed: 5 });
    sd = await DiffusionModel.load({ model: modelFile, controlNet: cn.path, threads: THREADS });
    plain = await gen();
    withSquare = await gen({ controlImage: hint(square) });
  });
  afterAll(async () => {
    await sd?.dispose();
    tmp?.cleanup();
  });

  it("the generator writes sd.cpp's ControlNet tensors (control_model.*), byte-identical for a seed, different for another", async () => {
    expect(cn).toMatchObject({ unetChannels: 320, type: "f16", seed: 5, tensors: 340 });
    expect(fs.statSync(cn.path).size).toBe(cn.bytes);
    expect(fs.readFileSync(cn.path).subarray(0, 4).toString("latin1")).toBe("GGUF");
    const names = sd15ControlNetTensorPlan(320).map((t) => t.name);
    for (const n of ["input_hint_block.14.weight", "zero_convs.11.0.weight", "middle_block_out.0.weight", "input_blocks.11.0.out_layers.3.weight"])
      expect(names).toContain(n);
    expect(names.some((n) => n.startsWith("output_blocks."))).toBe(false);
    // a narrower one for the byte comparisons (same code paths, 64 model channels)
    const a = await generateRandomSd15ControlNet(path.join(tmp.dir, "a.gguf"), { unetChannels: 64, seed: 5 });
    const b = await generateRandomSd15ControlNet(path.join(tmp.dir, "b.gguf"), { unetChannels: 64, seed: 5 });
    const c = await generateRandomSd15ControlNet(path.join(tmp.dir, "c.gguf"), { unetChannels: 64, seed: 6 });
    expect(fs.readFileSync(a.path).equals(fs.readFileSync(b.path))).toBe(true);
    expect(fs.readFileSync(a.path).equals(fs.readFileSync(c.path))).toBe(false);
    await expect(generateRandomSd15ControlNet(path.join(tmp.dir, "bad.gguf"), { seed: -1 })).rejects.toThrow(RangeError);
    await expect(generateRandomSd15ControlNet(path.join(tmp.dir, "bad.gguf"), { unetChannels: 48 })).rejects.toThrow(RangeError);
  });

  it("the engine reports the ControlNet (C++ info), and not for the checkpoint alone", async () => {
    const addon = native();
    const tok = () => new addon.CancelToken();
    const h = await addon.loadDiffusionModel!(loadParams({ model: modelFile, controlNet: cn.path, threads: THREADS }, "cpu"), undefined, tok());
    try {
      expect(h.info().controlNet).toBe(true);
    } finally {
      h.dispose();
    }
    const bare = await addon.loadDiffusionModel!(loadParams({ model: modelFile, threads: THREADS }, "cpu"), undefined, tok());
    try {
      expect(bare.info().controlNet).toBe(false);
    } finally {
      bare.dispose();
    }
  });

  it("a control image changes the image; the same one and seed reproduce it; another control image gives another image", async () => {
    expect(meanDiff(withSquare, plain)).toBeGreaterThan(1);
    // the same hint as RGBA (alpha dropped) at the default strength, 0.9, given explicitly: the same bytes
    expect(same(await gen({ controlImage: hint(square, 4), controlStrength: 0.9 }), withSquare)).toBe(true);
    const withStripes = await gen({ controlImage: hint(stripes) });
    expect(meanDiff(withStripes, withSquare)).toBeGreaterThan(1);
    expect(meanDiff(withStripes, plain)).toBeGreaterThan(1);
  });

  it("controlStrength 0 gives the same bytes as no control image (sd.cpp adds the control outputs times 0); 0.3 differs from both", async () => {
    expect(same(await gen({ controlImage: hint(square), controlStrength: 0 }), plain)).toBe(true);
    const weak = await gen({ controlImage: hint(square), controlStrength: 0.3 });
    expect(meanDiff(weak, plain)).toBeGreaterThan(0.5);
    expect(meanDiff(weak, withSquare)).toBeGreaterThan(0.5);
  });

  it("a ControlNet narrower than sd.cpp's fixed 320 channels is INVALID_MODEL at load; a model without one refuses controlImage", async () => {
    const narrow = await generateRandomSd15ControlNet(path.join(tmp.dir, "narrow.gguf"), { preset: "tiny", seed: 5 });
    expect(narrow.unetChannels).toBe(32);
    await expect(DiffusionModel.load({ model: modelFile, controlNet: narrow.path, threads: THREADS })).rejects.toMatchObject({
      code: "INVALID_MODEL",
      message: expect.stringMatching(/ControlNet/),
    });
    const bare = await DiffusionModel.load({ model: modelFile, threads: THREADS });
    try {
      expect(() => bare.generate({ ...base, controlImage: hint(square) })).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/controlNet/) }),
      );
    } finally {
      await bare.dispose();
    }
  });

  it("a 320-channel ControlNet with a 32-channel UNet (an abort in sd.cpp's first step) is INVALID_MODEL at load, in TS and in C++", async () => {
    const tinyFile = path.join(tmp.dir, "random-sd1-tiny.gguf");
    await generateRandomSd15Model(tinyFile, { preset: "tiny", type: "f16", seed: 7 });
    const load = { model: tinyFile, controlNet: cn.path, threads: THREADS };
    const refused = {
      code: "INVALID_MODEL",
      message: expect.stringMatching(/the ControlNet \(controlNet\) has 320 model channels, the diffusion model's UNet 32/),
    };
    await expect(DiffusionModel.load(load)).rejects.toMatchObject(refused);
    const addon = native(); // TS bypassed
    await expect(addon.loadDiffusionModel!(loadParams(load, "cpu"), undefined, new addon.CancelToken())).rejects.toMatchObject(refused);
    expect(same(await gen(), plain)).toBe(true); // the loaded model is untouched
  });
});
