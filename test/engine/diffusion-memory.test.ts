// estimateDiffusionMemory's compute part against stable-diffusion.cpp's own
// allocations, on the generated random-weight SD1 checkpoint (lib/tools/sd/,
// "tiny" preset, f16, as diffusion-engine.test.ts's) at 64², 128² and 256².
//
// What is measured: with the log level at "debug", sd.cpp logs the size of
// each runner's compute buffer when ggml_gallocr reserves it
// ("<clip|unet|vae> compute buffer size: N MB(RAM)", N in MiB with two
// decimals, src/core/ggml_extend.hpp). Each runner's largest logged size is
// its measured part; the largest of them is the measured peak, since sd.cpp
// frees each runner's buffer before the next runs. The estimate must be
// within 10 % of each.
//
// The same for Z-Image (a second suite): a random-weight Z-Image at
// Z-Image-Turbo's widths (DiT 3840 wide, 30 heads, FFN 10240; Qwen3 2560 /
// FFN 9728) with 1 layer and 1 refiner each (sd.cpp's buffers do not grow with
// depth) and a 32-channel VAE decoder (the estimate scales the Flux VAE per
// decoder channel; 128 would make the decodes 16× slower), at 128², 128×256
// and 256² with an 11-token prompt. Writing its 2.2 GB of weights takes about
// a minute; the whole suite about 1.5 minutes on 2 cores. And Qwen-Image (a
// third suite) at its real widths (DiT 3072, Qwen2.5-VL-7B 3584 / FFN 18944,
// 1 layer each, q4_0) with its own VAE's causal-3D layout, at CFG 2.5 with a
// negative prompt, at the same three sizes (about a minute). And SDXL (a fourth)
// at its real widths and depths, one checkpoint with its own VAE, CFG 7, at the
// same three sizes (about 1.5 minutes). And Flux 1 [dev] at its real widths (about a minute). And SD3.5 Large at its
// real widths and depth (about 3 minutes). And SD1 with a TAESD decoding in place of the VAE, text-to-image and
// img2img (TAESD_COMPUTE_FIT; about a minute).
//
// Part of `npm run test:diffusion`. A build without deps/stable-diffusion.cpp
// has no engine: the suite is then reported as skipped, with the reason in
// its name. On a device backend (GENAI_NATIVE_DEVICE) it is skipped too: the
// fit was measured on the CPU backend only.
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { capabilities, setLogger, setLogLevel } from "../../lib/index";
import { DiffusionModel, estimateDiffusionMemory } from "../../lib/diffusion/index";
import { ENGINE_HOWTO } from "../../lib/diffusion/native-engine";
import {
  generateRandomFlux1Model,
  generateRandomQwenImageModel,
  generateRandomSd15ControlNet,
  generateRandomSd15Model,
  generateRandomSd3Model,
  generateRandomSdxlModel,
  generateRandomTaesd,
  generateRandomZImageModel,
} from "../../lib/tools";
import { tempDir, THREADS } from "../helpers";

const device = (process.env.GENAI_NATIVE_DEVICE ?? "cpu").toLowerCase();
const skipReason = !capabilities().diffusion
  ? `the addon has no diffusion engine (${ENGINE_HOWTO})`
  : device !== "cpu"
    ? `GENAI_NATIVE_DEVICE=${device}: the compute-buffer fit was measured on the CPU backend only`
    : undefined;
const title = skipReason
  ? `diffusion memory estimate vs sd.cpp's compute buffers — SKIPPED: ${skipReason}`
  : "diffusion memory estimate vs sd.cpp's compute buffers (random-weight SD1, CPU)";
if (skipReason) console.warn(`[test:diffusion] memory estimate skipped: ${skipReason}`);

const LINE = /\b(clip|unet|vae) compute buffer size: ([\d.]+) MB\((?:RAM|VRAM)\)/;
const MiB = 2 ** 20;

describe.skipIf(skipReason !== undefined)(title, () => {
  let tmp: ReturnType<typeof tempDir>;
  let modelFile: string;
  let sd: DiffusionModel;
  const lines: string[] = [];

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-memory-");
    modelFile = path.join(tmp.dir, "random-sd1-tiny.gguf");
    await generateRandomSd15Model(modelFile, { preset: "tiny", type: "f16", seed: 7 });
    sd = await DiffusionModel.load({ model: modelFile, threads: THREADS });
    setLogLevel("debug");
    setLogger((_level, message) => {
      if (LINE.test(message)) lines.push(message);
    });
  });
  afterAll(async () => {
    setLogger(null);
    setLogLevel("error");
    await sd?.dispose();
    tmp?.cleanup();
  });

  /** Runs one generation; sd.cpp's logged compute buffers per runner (bytes, the largest of each). */
  async function measure(side: number, extra: Record<string, unknown> = {}): Promise<Record<"clip" | "unet" | "vae", number>> {
    lines.length = 0;
    await sd.generate({ prompt: "a lighthouse", width: side, height: side, steps: 1, seed: 1, output: "raw", ...extra }).done;
    await new Promise((r) => setTimeout(r, 50)); // the logger's queued lines arrive on the JS thread
    const got = { clip: 0, unet: 0, vae: 0 };
    for (const l of lines) {
      const m = LINE.exec(l);
      if (m) got[m[1] as keyof typeof got] = Math.max(got[m[1] as keyof typeof got], Number(m[2]) * MiB);
    }
    return got;
  }

  const rows: string[] = [];
  it.each([64, 128, 256])("%i² pixels: the estimated compute buffers are within 10 % of sd.cpp's (peak and each part)", async (side) => {
    const measured = await measure(side);
    const e = await estimateDiffusionMemory({ model: modelFile }, { width: side, height: side });
    expect(e.family).toBe("sd1");
    const est = e.compute;
    if (!est) throw new Error(`no compute estimate: ${e.computeUnknownReason}`);
    expect(measured.unet * measured.vae * measured.clip).toBeGreaterThan(0); // every runner logged its buffer
    const peak = Math.max(measured.clip, measured.unet, measured.vae);
    const err = (a: number, b: number) => a / b - 1;
    rows.push(
      `${side}²: peak measured ${(peak / MiB).toFixed(2)} MiB, estimated ${(est.peak / MiB).toFixed(2)} (${(100 * err(est.peak, peak)).toFixed(2)} %); ` +
        `unet ${(measured.unet / MiB).toFixed(2)} vs ${(est.diffusion / MiB).toFixed(2)}; vae ${(measured.vae / MiB).toFixed(2)} vs ${(est.vae / MiB).toFixed(2)}`,
    );
    console.log(`[diffusion memory] ${rows.at(-1)}`);
    expect(Math.abs(err(est.peak, peak))).toBeLessThan(0.1);
    expect(Math.abs(err(est.diffusion, measured.unet))).toBeLessThan(0.1);
    expect(Math.abs(err(est.vae, measured.vae))).toBeLessThan(0.1);
    expect(Math.abs(err(est.textEncoder, measured.clip))).toBeLessThan(0.1);
  });

  it("img2img at 128²: the VAE part is the encode's (3394 B/px, wider than this 32-channel decoder's 1664), within 10 %", async () => {
    const data = new Uint8Array(128 * 128 * 3).map((_, i) => (i * 37) % 251);
    const measured = await measure(128, { initImage: { width: 128, height: 128, channels: 3, data }, strength: 1, steps: 1 });
    const plain = (await estimateDiffusionMemory({ model: modelFile }, { width: 128, height: 128 })).compute;
    const est = (await estimateDiffusionMemory({ model: modelFile }, { width: 128, height: 128, initImage: true })).compute;
    if (!est || !plain) throw new Error("no compute estimate");
    console.log(
      `[diffusion memory] SD1 img2img 128²: vae measured ${(measured.vae / MiB).toFixed(2)} MiB, estimated ${(est.vae / MiB).toFixed(2)} (decode alone ${(plain.vae / MiB).toFixed(2)})`,
    );
    expect(est.vae).toBeGreaterThan(1.5 * plain.vae);
    expect(Math.abs(est.vae / measured.vae - 1)).toBeLessThan(0.1);
    expect(Math.abs(est.peak / Math.max(measured.clip, measured.unet, measured.vae) - 1)).toBeLessThan(0.1);
  });
});

/**
 * A family's suite: files written by `write` into a temp folder (load option
 * → file), one generation per size (1 step, `params`), sd.cpp's logged
 * buffers per runner (`runners`: its runner names for the text encoder, the
 * denoiser (several: their largest buffers add up, as a ControlNet's and the
 * UNet's, both kept through sampling) and the VAE) against
 * estimateDiffusionMemory with `promptTokens` (and `controlImage`: a control
 * image of the size, generated and estimated),
 * each within 10 %.
 */
function memorySuite(
  name: string,
  family: "sd1" | "sdxl" | "zimage" | "flux1" | "qwenimage" | "sd3",
  runners: readonly [textEncoder: string | readonly string[], diffusion: string | readonly string[], vae: string],
  write: (dir: string) => Promise<Record<string, { path: string }>>,
  params: {
    prompt: string;
    negativePrompt?: string;
    cfgScale: number;
    promptTokens: number;
    controlImage?: boolean;
    refImage?: { width: number; height: number };
    /** img2img at strength 1: the init image is VAE-encoded */
    initImage?: boolean;
    /**
     * Runner names two models log under, both kept until the conditioner ends
     * (SD3's CLIP-L and bigG, both "clip"): their distinct sizes add up.
     */
    sharedRunners?: readonly string[];
  },
  sizes: readonly (readonly [number, number])[],
): void {
  const partOf = new Map(runners.flatMap((r, i) => (typeof r === "string" ? [r] : r).map((name) => [name, i] as const)));
  const line = new RegExp(`\\b(${[...partOf.keys()].join("|")}) compute buffer size: ([\\d.]+) MB\\((?:RAM|VRAM)\\)`);
  const title = skipReason
    ? `${name} memory estimate vs sd.cpp's compute buffers — SKIPPED: ${skipReason}`
    : `${name} memory estimate vs sd.cpp's compute buffers`;
  describe.skipIf(skipReason !== undefined)(title, () => {
    let tmp: ReturnType<typeof tempDir>;
    let load: Record<string, string>;
    let sd: DiffusionModel;
    const lines: string[] = [];

    beforeAll(async () => {
      tmp = tempDir(`genai-native-${family}-memory-`);
      const parts = await write(tmp.dir);
      load = Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, v.path]));
      sd = await DiffusionModel.load({ ...load, threads: THREADS });
      setLogLevel("debug");
      setLogger((_level, message) => {
        if (line.test(message)) lines.push(message);
      });
    }, 300_000);
    afterAll(async () => {
      setLogger(null);
      setLogLevel("error");
      await sd?.dispose();
      tmp?.cleanup();
    });

    it.each(sizes)("%i×%i pixels: the estimated compute buffers are within 10 % of sd.cpp's (peak and each part)", async (width, height) => {
      lines.length = 0;
      const { promptTokens, controlImage, refImage, initImage, sharedRunners, ...gen } = params;
      const picture = (w: number, h: number) => ({
        width: w,
        height: h,
        channels: 3 as const,
        data: new Uint8Array(w * h * 3).map((_, i) => (i % (w * 3) < w * 1.5 ? 255 : 0)),
      });
      const extra = {
        ...(controlImage && { controlImage: picture(width, height) }),
        ...(refImage && { refImages: [picture(refImage.width, refImage.height)] }),
        ...(initImage && { initImage: picture(width, height), strength: 1 }),
      };
      await sd.generate({ ...gen, ...extra, width, height, steps: 1, seed: 1, output: "raw" }).done;
      await new Promise((r) => setTimeout(r, 50));
      const byRunner = new Map<string, number>();
      const sizes = new Map<string, Set<number>>();
      for (const l of lines) {
        const m = line.exec(l);
        if (!m) continue;
        byRunner.set(m[1], Math.max(byRunner.get(m[1]) ?? 0, Number(m[2]) * MiB));
        sizes.set(m[1], (sizes.get(m[1]) ?? new Set()).add(Number(m[2]) * MiB));
      }
      for (const name of sharedRunners ?? [])
        byRunner.set(
          name,
          [...(sizes.get(name) ?? [])].reduce((a, b) => a + b, 0),
        );
      const measured = { textEncoder: 0, diffusion: 0, vae: 0 };
      const keys = ["textEncoder", "diffusion", "vae"] as const;
      for (const [name, bytes] of byRunner) measured[keys[partOf.get(name) as number]] += bytes;
      expect(byRunner.size).toBe(partOf.size); // every runner logged its buffer
      const e = await estimateDiffusionMemory(load, { width, height, promptTokens, controlImage, refImages: refImage && [refImage], initImage });
      expect(e.family).toBe(family);
      const est = e.compute;
      if (!est) throw new Error(`no compute estimate: ${e.computeUnknownReason}`);
      expect(measured.textEncoder * measured.diffusion * measured.vae).toBeGreaterThan(0);
      const peak = Math.max(measured.textEncoder, measured.diffusion, measured.vae);
      const err = (a: number, b: number) => a / b - 1;
      const row = (k: keyof typeof measured) => `${k} ${(measured[k] / MiB).toFixed(2)} vs ${(est[k] / MiB).toFixed(2)}`;
      console.log(
        `[diffusion memory] ${name} ${width}×${height}: peak measured ${(peak / MiB).toFixed(2)} MiB, estimated ${(est.peak / MiB).toFixed(2)}; ${row("textEncoder")}; ${row("diffusion")}; ${row("vae")}`,
      );
      expect(Math.abs(err(est.peak, peak))).toBeLessThan(0.1);
      for (const k of keys) expect(Math.abs(err(est[k], measured[k]))).toBeLessThan(0.1);
    });
  });
}

// "a lighthouse": 3 prompt tokens, 11 with Z-Image's chat template (sd.cpp's tokenizer log)
memorySuite(
  "Z-Image (random weights at Z-Image-Turbo's widths, 1 layer, CPU)",
  "zimage",
  ["qwen3", "z_image", "vae"],
  async (dir) => {
    const { diffusionModel, llm, vae } = await generateRandomZImageModel(path.join(dir, "zi"), {
      seed: 5,
      sizes: { ditHidden: 3840, ditLayers: 1, ditRefinerLayers: 1, ditFfn: 10240, teHidden: 2560, teLayers: 1, teFfn: 9728, vaeDecoderChannels: 32 },
    });
    return { diffusionModel, llm, vae };
  },
  { prompt: "a lighthouse", cfgScale: 1, promptTokens: 3 },
  [
    [128, 128],
    [128, 256],
    [256, 256],
  ],
);

// Flux 1 [dev] at its real widths (DiT 3072, 24 heads; T5-XXL 4096 / FFN 10240, 1 layer each; q4_0, ~0.56 GB written in
// about 20 s), its CLIP-L and a 32-channel VAE decoder; "a lighthouse" pads to one 256-token T5 chunk. The text encoder
// part is CLIP-L's and T5's buffers together (sd.cpp runs them one after the other).
memorySuite(
  "Flux 1 (random weights at Flux 1 [dev]'s widths, 1 double + 1 single block, 1 T5 layer, CPU)",
  "flux1",
  [["clip", "t5"], "flux", "vae"],
  async (dir) => {
    const { diffusionModel, clipL, t5xxl, vae } = await generateRandomFlux1Model(path.join(dir, "f1"), {
      seed: 5,
      type: "q4_0",
      sizes: { ditHidden: 3072, t5Hidden: 4096, t5Inner: 4096, t5Ffn: 10240, t5Layers: 1 },
    });
    return { diffusionModel, clipL, t5xxl, vae };
  },
  { prompt: "a lighthouse", cfgScale: 1, promptTokens: 3 },
  [
    [128, 128],
    [128, 256],
    [256, 256],
  ],
);

// SD3.5 Large at its real widths and depth (sd.cpp gives the MMDiT as many heads as joint blocks: 38 blocks 2432 wide,
// 8.1 G parameters as q4_0, 4.9 GB written in about a minute), CLIP-L and bigG at full size, T5 4096 / FFN 10240 with
// 1 layer, a 32-channel VAE decoder. "a lighthouse" is one 77-token chunk (154 DiT text tokens). CLIP-L's and bigG's
// buffers (both logged as "clip") and T5's are all held until the conditioner ends: the text encoder part is their
// sum. At 64×512 the position grid's crop, not the blocks, is the MMDiT's buffer. The slowest suite (8 G parameters on
// 2 cores: about a minute a generation).
memorySuite(
  "SD3.5 Large (random weights at SD3.5 Large's widths and depth, q4_0, 1 T5 layer, CPU)",
  "sd3",
  [["clip", "t5"], "mmdit", "vae"],
  async (dir) => {
    const { diffusionModel, clipL, clipG, t5xxl, vae } = await generateRandomSd3Model(path.join(dir, "sd3"), {
      seed: 5,
      type: "q4_0",
      sizes: { depth: 38, hidden: 2432 },
    });
    return { diffusionModel, clipL, clipG, t5xxl, vae };
  },
  { prompt: "a lighthouse", cfgScale: 1, promptTokens: 3, sharedRunners: ["clip"] },
  [
    [128, 128],
    [64, 512],
    [256, 256],
  ],
);

// Qwen-Image as people download it: its own VAE file is the causal-3D Wan VAE. CFG 2.5 with a negative prompt (the
// unconditioned pass reuses the DiT's graph: the longer prompt counts, here "a lighthouse", 3 tokens).
memorySuite(
  "Qwen-Image (random weights at Qwen-Image's widths, Qwen2.5-VL-7B's FFN, the causal-3D Wan VAE, 1 layer, CFG 2.5, CPU)",
  "qwenimage",
  ["qwen2.5vl", "qwen_image", "wan_vae"],
  async (dir) => {
    const { diffusionModel, llm, vae } = await generateRandomQwenImageModel(path.join(dir, "qi"), { seed: 5, vae: "causal3d", sizes: { teFfn: 18944 } });
    return { diffusionModel, llm, vae };
  },
  { prompt: "a lighthouse", negativePrompt: "blurry", cfgScale: 2.5, promptTokens: 3 },
  [
    [128, 128],
    [128, 256],
    [256, 256],
  ],
);

// SDXL base at its real widths and depths (UNet 320 channels, transformer depths 1 / 2 / 10, CLIP-L + OpenCLIP bigG,
// VAE decoder 128; 2.57 G parameters, linear weights q4_0: 2.56 GB, about 40 s to write) in one checkpoint, so sd.cpp
// decodes with its SDXL Conv2D scale. CFG 7 with the empty negative prompt, as SDXL is run.
memorySuite(
  "SDXL (random weights at SDXL base's widths and depths, one checkpoint, CFG 7, CPU)",
  "sdxl",
  ["clip", "unet", "vae"],
  async (dir) => ({
    model: (await generateRandomSdxlModel(path.join(dir, "sdxl.gguf"), { seed: 5, sizes: { unetChannels: 320, timeEmbedDim: 1280, vaeDecoderChannels: 128 } }))
      .model,
  }),
  { prompt: "a lighthouse", cfgScale: 7, promptTokens: 3 },
  [
    [128, 128],
    [128, 256],
    [256, 256],
  ],
);

// SD1 with a ControlNet and a control image: generateRandomSd15ControlNet (SD1.5's 320 channels, as sd.cpp builds every
// SD1 ControlNet) beside the tiny preset with a 320-channel UNet (q8_0, 1.7 GB; about 45 s to write both). The UNet's
// and the ControlNet's buffers add up; the control image is VAE-encoded (3394 B/px, over this 32-channel decode's).
memorySuite(
  "SD1 + ControlNet (random weights, a 320-channel UNet and SD1.5's ControlNet, a control image, CFG 7, CPU)",
  "sd1",
  ["clip", ["unet", "control_net"], "vae"],
  async (dir) => ({
    model: await generateRandomSd15Model(path.join(dir, "sd1-320.gguf"), { preset: "tiny", shape: { unetChannels: 320 }, type: "q8_0", seed: 7 }),
    controlNet: await generateRandomSd15ControlNet(path.join(dir, "controlnet.gguf"), { seed: 5 }),
  }),
  { prompt: "a lighthouse", cfgScale: 7, promptTokens: 3, controlImage: true },
  [
    [64, 64],
    [128, 128],
    [256, 256],
  ],
);

// Flux 1 with a reference image (Kontext's path), at Flux 1 [dev]'s widths as above: the 512×256 reference is resized
// to the target's area and VAE-encoded; its tokens join the image's in the DiT.
memorySuite(
  "Flux 1 with a reference image (random weights at Flux 1 [dev]'s widths, 1 double + 1 single block, 1 T5 layer, CPU)",
  "flux1",
  [["clip", "t5"], "flux", "vae"],
  async (dir) => {
    const { diffusionModel, clipL, t5xxl, vae } = await generateRandomFlux1Model(path.join(dir, "f1"), {
      seed: 5,
      type: "q4_0",
      sizes: { ditHidden: 3072, t5Hidden: 4096, t5Inner: 4096, t5Ffn: 10240, t5Layers: 1 },
    });
    return { diffusionModel, clipL, t5xxl, vae };
  },
  { prompt: "a lighthouse", cfgScale: 1, promptTokens: 3, refImage: { width: 512, height: 256 } },
  [
    [128, 128],
    [128, 256],
    [256, 256],
  ],
);

// Qwen-Image editing without the vision tower: a 512×256 reference image, which sd.cpp resizes to the target's area
// (refImagePixels) and VAE-encodes; its tokens join the image's in the DiT.
memorySuite(
  "Qwen-Image with a reference image (random weights at Qwen-Image's widths, 1 layer, the 2D Wan VAE, CPU)",
  "qwenimage",
  ["qwen2.5vl", "qwen_image", "wan_vae"],
  async (dir) => {
    const { diffusionModel, llm, vae } = await generateRandomQwenImageModel(path.join(dir, "qi"), { seed: 5, sizes: { teFfn: 18944 } });
    return { diffusionModel, llm, vae };
  },
  { prompt: "a lighthouse", cfgScale: 1, promptTokens: 3, refImage: { width: 512, height: 256 } },
  [
    [128, 128],
    [128, 256],
    [256, 256],
  ],
);

// SD1 with a TAESD decoding (and encoding) in place of the VAE (generateRandomTaesd: tae.hpp's 64-channel layout, 4
// latent channels): the VAE part is the TAESD's buffer (TAESD_COMPUTE_FIT), text-to-image and img2img.
for (const initImage of [false, true])
  memorySuite(
    `SD1 + TAESD${initImage ? ", img2img" : ""} (random weights, the tiny preset, CPU)`,
    "sd1",
    ["clip", "unet", "taesd"],
    async (dir) => ({
      model: await generateRandomSd15Model(path.join(dir, "sd1.gguf"), { preset: "tiny", type: "f16", seed: 7 }),
      taesd: await generateRandomTaesd(path.join(dir, "taesd.gguf"), { seed: 3 }),
    }),
    { prompt: "a lighthouse", cfgScale: 7, promptTokens: 3, initImage },
    [
      [64, 64],
      [128, 128],
      [256, 512],
    ],
  );
