// Diffusion memory by resolution (issue 14): estimateDiffusionMemory's
// weights from the files' headers (a generated SD1 GGUF; hand-written
// safetensors headers of other families), its fitted SD1 compute buffers
// against the measurements they came from, and an image job's budget in the
// orchestrator (submitImageBatch reserves ManagedDiffusion.imageMemory) with
// the engine and the LLMs as test doubles.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  DEFAULT_PROMPT_TOKENS,
  DIT_COMPUTE_FIT,
  type DitShape,
  ditComputeBytes,
  ditTokens,
  estimateDiffusionMemory,
  refImagePixels,
  promptTokenBound,
  readTensorInfos,
  SD1_COMPUTE_FIT,
  SDXL_COMPUTE_FIT,
  TAESD_COMPUTE_FIT,
  type UnetShape,
  unetComputeBytes,
} from "../../lib/diffusion/index";
import { parseGgufHeader } from "../../lib/models/metadata";
import {
  type Holding,
  ManagedDiffusion,
  type ManagedResource,
  type OffloadEvent,
  Orchestrator,
  type Residency,
  submitImageBatch,
} from "../../lib/orchestrator/index";
import {
  FLUX1_TINY,
  FLUX2_KLEIN_TINY,
  flux1DitPlan,
  flux1T5Plan,
  flux1VaePlan,
  flux2DitPlan,
  flux2TextEncoderPlan,
  flux2VaePlan,
  GgmlType,
  generateRandomSd15Model,
  QWEN_IMAGE_TINY,
  SD3_TINY,
  sd3ClipGPlan,
  sd3MmditPlan,
  SDXL_TINY,
  sdxlCheckpointPlan,
  sdxlClipPlan,
  sdxlVaePlan,
  qwenImageDitPlan,
  qwenImageTextEncoderPlan,
  qwenImageVaePlan,
  qwenImageVisionPlan,
  Z_IMAGE_TINY,
  zImageDitPlan,
  zImageTextEncoderPlan,
  zImageVaePlan,
} from "../../lib/tools";
import { fakeEngine } from "../fakes/diffusion-engine";
import { tempDir, writePlanHeader } from "../helpers";

const MiB = 2 ** 20;
const TINY: UnetShape = { family: "sd1", unetChannels: 32, vaeDecoderChannels: 32, vaeConvScale: false };
const SD15: UnetShape = { family: "sd1", unetChannels: 320, vaeDecoderChannels: 128, vaeConvScale: false };
/** SDXL base's widths with its own VAE (sd.cpp's Conv2D scale), and with a VAE file beside it. */
const SDXL: UnetShape = { family: "sdxl", unetChannels: 320, vaeDecoderChannels: 128, vaeConvScale: true };
const SDXL_VAE_FILE: UnetShape = { ...SDXL, vaeConvScale: false };
/** A DiT family's measured widths (DIT_COMPUTE_FIT), with `extra` fields changed. */
const DIT_SHAPE = (family: DitShape["family"], extra: Partial<DitShape> = {}): DitShape => ({ family, ...DIT_COMPUTE_FIT[family].shape, ...extra });

/** A safetensors file with these tensors (ggml-order shapes given row-major here, as the format stores them), f16, zero data. */
function writeSafetensors(file: string, tensors: Record<string, number[]>): number {
  const header: Record<string, unknown> = {};
  let at = 0;
  for (const [name, shape] of Object.entries(tensors)) {
    const n = shape.reduce((a, b) => a * b, 1) * 2;
    header[name] = { dtype: "F16", shape, data_offsets: [at, at + n] };
    at += n;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(at)]));
  return at;
}

/** An SD1-like checkpoint's telling tensors (safetensors order: [out, in, kh, kw]); `context` 768 = SD1, 1024 = SD2. */
const unetTensors = (context: number, extra: Record<string, number[]> = {}) => ({
  "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
  "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, context],
  "first_stage_model.decoder.conv_out.weight": [3, 128, 3, 3],
  "cond_stage_model.transformer.text_model.final_layer_norm.weight": [768],
  ...extra,
});

describe("estimateDiffusionMemory", () => {
  let tmp: ReturnType<typeof tempDir>;
  let tiny: string;

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-memory-");
    tiny = path.join(tmp.dir, "tiny-q8.gguf");
    await generateRandomSd15Model(tiny, { seed: 7 }); // tiny preset, q8_0
  });
  afterAll(() => tmp.cleanup());

  it("weights are the GGUF's tensor data, split into text encoder, UNet and VAE; compute follows the SD1 fit", async () => {
    const e = await estimateDiffusionMemory({ model: tiny }, { width: 256, height: 256 });
    const header = await parseGgufHeader(tiny);
    expect(e.family).toBe("sd1");
    expect(e.weights.total).toBe(fs.statSync(tiny).size - header.tensorDataOffset);
    expect(e.weights.textEncoder + e.weights.diffusion + e.weights.vae).toBe(e.weights.total);
    expect(e.weights.textEncoder).toBeGreaterThan(e.weights.diffusion); // full-size CLIP, narrow UNet
    expect(e.compute).toEqual(unetComputeBytes(TINY, { width: 256, height: 256 }));
    expect(e.total).toBe(e.weights.total + (e.compute?.peak ?? NaN));
    expect((await readTensorInfos(tiny)).length).toBe(header.tensorCount);
  });

  // sd.cpp's logged "<part> compute buffer size" (MiB) at 487de75c: the fit's own measurements
  const MEASURED: [UnetShape, number, "diffusion" | "vae", number, boolean][] = [
    [TINY, 64, "diffusion", 0.96, false],
    [TINY, 256, "diffusion", 33.85, false],
    [TINY, 512, "diffusion", 517.3, false],
    [TINY, 320, "diffusion", 5.15, true],
    [TINY, 64, "vae", 6.5, false],
    [TINY, 512, "vae", 416.06, false],
    [SD15, 128, "diffusion", 14.12, false],
    [SD15, 384, "diffusion", 192.25, false],
    [SD15, 256, "diffusion", 30.94, true],
    [SD15, 256, "vae", 416.02, false],
    [SDXL, 128, "diffusion", 53.24, false],
    [SDXL, 384, "diffusion", 95.93, false],
    [SDXL, 1024, "diffusion", 830.86, false],
    [SDXL, 128, "diffusion", 8.29, true],
    [SDXL, 1024, "diffusion", 491.99, true],
    [SDXL, 128, "vae", 120.0, false],
    [SDXL, 512, "vae", 1920.06, false],
    [SDXL_VAE_FILE, 128, "vae", 104.0, false],
  ];
  it.each(MEASURED)("%o at %i² pixels: %s within the fit's error of sd.cpp's %f MiB (flash attention %s)", (shape, side, part, mib, flashAttention) => {
    const got = unetComputeBytes(shape, { width: side, height: side }, { flashAttention })[part];
    expect(Math.abs(got / (mib * MiB) - 1)).toBeLessThan(0.095);
  });

  // img2img: the VAE part is the larger of the encode and the decode, as sd.cpp logged them (MiB, the runner's largest)
  const ENCODES: [string, () => number, number][] = [
    ["SD1 tiny (32-channel decoder) 128²: the encode", () => unetComputeBytes(TINY, { width: 128, height: 128, initImage: true }).vae, 53.03],
    ["SD1 tiny 128×256", () => unetComputeBytes(TINY, { width: 128, height: 256, initImage: true }).vae, 106.06],
    ["SD1 tiny 768², tiled: one 512² encode tile", () => unetComputeBytes(TINY, { width: 768, height: 768, initImage: true }, { vaeTiling: true }).vae, 848.5],
    ["SDXL 128²: the decode", () => unetComputeBytes(SDXL, { width: 128, height: 128, initImage: true }).vae, 120.0],
    [
      "SDXL 512², tiled: the Conv2D-scaled encode of one 512² tile",
      () => unetComputeBytes(SDXL, { width: 512, height: 512, initImage: true }, { vaeTiling: true }).vae,
      976.5,
    ],
    [
      "Flux 2 [klein] 768², 32-channel decoder: the encode",
      () => ditComputeBytes(DIT_SHAPE("flux2", { vaeDecoderChannels: 32 }), { width: 768, height: 768, initImage: true }).vae,
      1909.13,
    ],
    [
      "Flux 2 [klein] 1280², tiled: one 1024² encode tile",
      () => ditComputeBytes(DIT_SHAPE("flux2", { vaeDecoderChannels: 32 }), { width: 1280, height: 1280, initImage: true }, { vaeTiling: true }).vae,
      3394.0,
    ],
    [
      "Qwen-Image causal-3D 128²: the encode",
      () => ditComputeBytes(DIT_SHAPE("qwenimage", { vaeLayout: "causal3d" }), { width: 128, height: 128, initImage: true }).vae,
      120.87,
    ],
    [
      "Qwen-Image causal-3D 256²",
      () => ditComputeBytes(DIT_SHAPE("qwenimage", { vaeLayout: "causal3d" }), { width: 256, height: 256, initImage: true }).vae,
      482.29,
    ],
  ];
  it.each(ENCODES)("img2img, %s: within 1 %% of sd.cpp's %f MiB", (_name, got, mib) => {
    expect(Math.abs(got() / (mib * MiB) - 1)).toBeLessThan(0.01);
  });

  it("SDXL: CLIP-L and bigG's buffer, the same at every size; the UNet's attention scores grow as L²; the VAE's Conv2D scale costs 60 bytes a pixel-channel, not 52", () => {
    const a = unetComputeBytes(SDXL, { width: 1024, height: 1024 });
    expect(a.textEncoder).toBe(Math.round(3.03 * MiB));
    expect(unetComputeBytes(SDXL, { width: 64, height: 64 }).textEncoder).toBe(a.textEncoder);
    expect(a.vae).toBe(60 * 128 * 1024 * 1024 + 16 * 128 * 128);
    expect(unetComputeBytes(SDXL_VAE_FILE, { width: 1024, height: 1024 }).vae).toBe(52 * 128 * 1024 * 1024 + 16 * 128 * 128);
    expect(a.peak).toBe(a.vae); // 7.5 GiB of decode at 1024²: the reason to tile it
    const tiled = unetComputeBytes(SDXL, { width: 1024, height: 1024 }, { vaeTiling: true });
    expect([tiled.vae, tiled.peak]).toEqual([unetComputeBytes(SDXL, { width: 256, height: 256 }).vae, tiled.diffusion]);
    const L = 128 * 128;
    expect(a.diffusion).toBe(Math.round(SDXL_COMPUTE_FIT.unet[0].scores * L * L + SDXL_COMPUTE_FIT.unet[0].perToken * L + SDXL_COMPUTE_FIT.unet[0].constant));
  });

  it("the text encoder is constant, the batch count changes nothing, VAE tiling bounds the decode at one 256-pixel tile", () => {
    const a = unetComputeBytes(SD15, { width: 512, height: 512 });
    expect(a.textEncoder).toBe(Math.round(1.42 * MiB));
    expect(unetComputeBytes(SD15, { width: 512, height: 512, count: 4 })).toEqual(a);
    expect(a.vae).toBeGreaterThan(a.diffusion); // SD1.5 at 512²: the VAE decode is the peak
    expect(a.peak).toBe(a.vae);
    const tiled = unetComputeBytes(SD15, { width: 1024, height: 512 }, { vaeTiling: true });
    expect(tiled.vae).toBe(unetComputeBytes(SD15, { width: 256, height: 256 }).vae);
    expect(SD1_COMPUTE_FIT.vaeTilePixels).toBe(256);
  });

  it("other families, shapes and modes get no compute estimate, with the reason", async () => {
    const sd1 = path.join(tmp.dir, "sd1.safetensors");
    const bytes = writeSafetensors(sd1, unetTensors(768));
    const ok = await estimateDiffusionMemory({ model: sd1 }, { width: 64, height: 64 });
    expect(ok.family).toBe("sd1");
    expect(ok.weights.total).toBe(bytes);
    expect(ok.weights.vae).toBe(3 * 128 * 9 * 2);
    // a decoding TAESD (here any file: only its weights are read) replaces the VAE's decode and encode buffers
    const taesd = await estimateDiffusionMemory({ model: sd1, taesd: sd1 }, { width: 64, height: 64, initImage: true });
    expect([taesd.family, taesd.compute?.vae, taesd.compute?.diffusion]).toEqual(["sd1", TAESD_COMPUTE_FIT.encodePerPixel * 64 * 64, ok.compute?.diffusion]);
    const tiledTaesd = await estimateDiffusionMemory({ model: sd1, taesd: sd1, vaeTiling: true }, { width: 64, height: 64 });
    expect([tiledTaesd.compute, tiledTaesd.computeUnknownReason]).toEqual([undefined, expect.stringMatching(/TAESD/)]);
    // img2img at 64²: SD1.5's 128-channel decode (6656 B/px) outweighs the encode (3394 B/px)
    const img2img = await estimateDiffusionMemory({ model: sd1 }, { width: 64, height: 64, initImage: true });
    expect([img2img.compute, img2img.computeUnknownReason]).toEqual([ok.compute, undefined]);

    const cases: [string, Record<string, number[]>, RegExp][] = [
      ["sd2", unetTensors(1024), /context of 1024/],
      ["ssd-1b", unetTensors(2048, { "model.diffusion_model.label_emb.0.0.weight": [1280, 2816] }), /without SDXL base's blocks/],
      // Chroma: Flux's double blocks with its distilled guidance layer, T5 only
      [
        "chroma",
        { "double_blocks.0.img_attn.qkv.weight": [9216, 3072], "distilled_guidance_layer.in_proj.weight": [5120, 64] },
        /fitted on SD1, SDXL and those DiTs only/,
      ],
      ["narrow", { ...unetTensors(768), "model.diffusion_model.input_blocks.0.0.weight": [192, 4, 3, 3] }, /192 channels/],
    ];
    for (const [name, tensors, reason] of cases) {
      const file = path.join(tmp.dir, `${name}.safetensors`);
      const b = writeSafetensors(file, tensors);
      const e = await estimateDiffusionMemory({ diffusionModel: file }, { width: 512, height: 512 });
      expect([name, e.family, e.compute, e.total, e.weights.total]).toEqual([name, "unknown", undefined, undefined, b]);
      expect(e.computeUnknownReason).toMatch(reason);
    }
  });

  it("an SDXL base checkpoint at SDXL's widths (a header): family sdxl, CLIP-L + bigG as the text encoder, compute with the Conv2D scale, or without it beside a VAE file", async () => {
    const S = { ...SDXL_TINY, unetChannels: 320, timeEmbedDim: 1280, vaeDecoderChannels: 128 };
    const file = path.join(tmp.dir, "sdxl.safetensors");
    const total = writePlanHeader(file, sdxlCheckpointPlan("f16", S));
    const bytesOf = (specs: { name: string; shape: number[]; type: GgmlType }[]) => writePlanHeader(path.join(tmp.dir, "part.safetensors"), specs);
    const te = bytesOf([...sdxlClipPlan("l", "f16", S), ...sdxlClipPlan("g", "f16", S)]);
    const vaeBytes = bytesOf(sdxlVaePlan("f16", S));
    const e = await estimateDiffusionMemory({ model: file }, { width: 1024, height: 1024 });
    expect([e.family, e.computeUnknownReason]).toEqual(["sdxl", undefined]);
    expect(e.weights).toEqual({ textEncoder: te, diffusion: total - te - vaeBytes, vae: vaeBytes, total });
    expect(e.compute).toEqual(unetComputeBytes(SDXL, { width: 1024, height: 1024 }));
    const vaeFile = path.join(tmp.dir, "sdxl-vae.safetensors");
    writePlanHeader(vaeFile, sdxlVaePlan("f16", S));
    const beside = await estimateDiffusionMemory({ model: file, vae: vaeFile, flashAttention: true }, { width: 1024, height: 1024 });
    expect(beside.compute).toEqual(unetComputeBytes(SDXL_VAE_FILE, { width: 1024, height: 1024 }, { flashAttention: true }));
    expect(beside.weights.vae).toBe(2 * vaeBytes); // both VAEs are read (sd.cpp loads the checkpoint's too)
    // the test model's 32-channel UNet was not measured
    const tinyFile = path.join(tmp.dir, "sdxl-tiny.safetensors");
    writePlanHeader(tinyFile, sdxlCheckpointPlan("f16"));
    const t = await estimateDiffusionMemory({ model: tinyFile }, { width: 256, height: 256 });
    expect([t.family, t.compute]).toEqual(["unknown", undefined]);
    expect(t.computeUnknownReason).toMatch(/an SDXL UNet of 32 channels .* only UNets of 320 channels/);
  });

  // UNet + ControlNet (a 320-channel SD1 UNet and SD1.5's ControlNet), as sd.cpp logged their sum (MiB)
  const CONTROL: [number, boolean, number][] = [
    [64, false, 11.47],
    [128, false, 23.49],
    [256, false, 100.22],
    [512, false, 1145.82],
    [128, true, 16.17],
    [512, true, 691.48],
  ];
  it.each(CONTROL)("a control image at %i²: UNet + ControlNet within 8 %% of sd.cpp's (flash attention %s: %f MiB)", (side, flashAttention, mib) => {
    const got = unetComputeBytes(SD15, { width: side, height: side }, { flashAttention, controlNet: true }).diffusion;
    expect(Math.abs(got / (mib * MiB) - 1)).toBeLessThan(0.08);
  });

  it("a loaded ControlNet: its weights always, its buffer and the control image's VAE encode only with a controlImage; measured beside SD1's 320-channel UNet only", async () => {
    const sd1 = path.join(tmp.dir, "sd1-cn.safetensors");
    writeSafetensors(sd1, unetTensors(768));
    const cn = path.join(tmp.dir, "cn.safetensors");
    const cnBytes = writeSafetensors(cn, { "control_model.input_hint_block.0.weight": [16, 3, 3, 3], "control_model.zero_convs.0.0.weight": [320, 320, 1, 1] });
    const size = { width: 512, height: 512 };
    const plain = await estimateDiffusionMemory({ model: sd1 }, size);
    const loaded = await estimateDiffusionMemory({ model: sd1, controlNet: cn }, size);
    expect(loaded.weights.total).toBe(plain.weights.total + cnBytes);
    expect(loaded.compute).toEqual(plain.compute);
    const control = await estimateDiffusionMemory({ model: sd1, controlNet: cn }, { ...size, controlImage: true });
    expect(control.compute).toEqual(unetComputeBytes(SD15, size, { controlNet: true }));
    expect(control.compute?.diffusion).toBeGreaterThan(2 * (plain.compute?.diffusion ?? 0)); // two runners' attention scores
    // with a 32-channel decoder the control image's encode (3394 B/px) outweighs the decode (1664 B/px)
    expect(unetComputeBytes({ ...SD15, vaeDecoderChannels: 32 }, size, { controlNet: true }).vae).toBe(3394 * 512 * 512);
    const tinyCn = await estimateDiffusionMemory({ model: tiny, controlNet: cn }, { ...size, controlImage: true });
    expect([tinyCn.family, tinyCn.compute, tinyCn.computeUnknownReason]).toEqual(["sd1", undefined, expect.stringMatching(/320-channel SD1 UNet only/)]);
    await expect(estimateDiffusionMemory({ model: sd1 }, { ...size, controlImage: true })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/controlImage needs a model loaded with controlNet/),
    });
    expect(() => unetComputeBytes(TINY, size, { controlNet: true })).toThrow(/no fitted ControlNet coefficients/);
  });

  it("bad input: typed errors", async () => {
    const code = (c: string) => expect.objectContaining({ code: c });
    await expect(estimateDiffusionMemory({ model: tiny }, { width: 100, height: 64 })).rejects.toEqual(code("INVALID_ARGUMENT"));
    await expect(estimateDiffusionMemory({ model: tiny }, { width: 64, height: 64, count: 0 })).rejects.toEqual(code("INVALID_ARGUMENT"));
    await expect(estimateDiffusionMemory({}, { width: 64, height: 64 })).rejects.toEqual(code("INVALID_ARGUMENT"));
    await expect(estimateDiffusionMemory({ model: path.join(tmp.dir, "none.gguf") }, { width: 64, height: 64 })).rejects.toEqual(code("MODEL_NOT_FOUND"));
    const junk = path.join(tmp.dir, "model.ckpt");
    fs.writeFileSync(junk, Buffer.from("PK\x03\x04 a zip pickle, not a tensor header"));
    await expect(estimateDiffusionMemory({ model: junk }, { width: 64, height: 64 })).rejects.toEqual(code("INVALID_MODEL"));
    expect(() => unetComputeBytes({ ...TINY, unetChannels: 64 }, { width: 64, height: 64 })).toThrow(/no fitted coefficients/);
  });
});

describe("estimateDiffusionMemory: the DiT families (Z-Image, Flux 1, Flux 2 [klein], Qwen-Image, SD3.5 Large)", () => {
  let tmp: ReturnType<typeof tempDir>;
  /** Writes the three parts' headers; returns the load options and the bytes per part. */
  const parts = (
    name: string,
    dit: Parameters<typeof writePlanHeader>[1],
    llm: Parameters<typeof writePlanHeader>[1],
    vae: Parameters<typeof writePlanHeader>[1],
  ) => {
    const f = (p: string) => path.join(tmp.dir, `${name}-${p}.safetensors`);
    const bytes = { diffusion: writePlanHeader(f("dit"), dit), textEncoder: writePlanHeader(f("llm"), llm), vae: writePlanHeader(f("vae"), vae) };
    return { load: { diffusionModel: f("dit"), llm: f("llm"), vae: f("vae") }, bytes };
  };
  const ZI = { ...Z_IMAGE_TINY, ditHidden: 3840, ditFfn: 10240, teHidden: 2560, teLayers: 1, teFfn: 9728, vaeDecoderChannels: 128 };
  const FX = { ...FLUX2_KLEIN_TINY, ditHidden: 3072, teHidden: 2560, teLayers: 27, teHeads: 32, teFfn: 9728, vaeDecoderChannels: 128 };
  const QI = { ...QWEN_IMAGE_TINY, teFfn: 18944 };

  beforeAll(() => {
    tmp = tempDir("genai-native-dit-memory-");
  });
  afterAll(() => tmp.cleanup());

  it("Z-Image-Turbo's, Flux 2 [klein] 4B's and Qwen-Image's widths: family, weights per part, and the fitted compute", async () => {
    const cases = [
      ["zimage", parts("zi", zImageDitPlan("f16", ZI), zImageTextEncoderPlan("f16", ZI), zImageVaePlan("f16", ZI))],
      ["flux2", parts("fx", flux2DitPlan("f16", FX), flux2TextEncoderPlan("f16", FX), flux2VaePlan("f16", FX))],
      ["qwenimage", parts("qi", qwenImageDitPlan("f16", QI), qwenImageTextEncoderPlan("f16", QI), qwenImageVaePlan("f16", QI))],
    ] as const;
    for (const [family, { load, bytes }] of cases) {
      const e = await estimateDiffusionMemory(load, { width: 1024, height: 1024 });
      expect([family, e.family, e.computeUnknownReason]).toEqual([family, family, undefined]);
      expect(e.weights).toEqual({ ...bytes, total: bytes.diffusion + bytes.textEncoder + bytes.vae });
      const m = DIT_COMPUTE_FIT[family].shape;
      expect(e.compute).toEqual(ditComputeBytes({ family, ...m }, { width: 1024, height: 1024 }));
      expect(e.total).toBe(e.weights.total + (e.compute?.peak ?? Number.NaN));
      // at 1024² the DiT or the VAE decode is the peak, the text encoder far below both
      expect(e.compute?.textEncoder).toBeLessThan(Math.min(e.compute?.diffusion ?? 0, e.compute?.vae ?? 0));
    }
  });

  it("other widths, Flux 2 [dev], a missing text encoder and tiling of the Wan VAE: the family, no compute, the reason", async () => {
    const tiny = parts("zi-tiny", zImageDitPlan("f16"), zImageTextEncoderPlan("f16"), zImageVaePlan("f16"));
    const t = await estimateDiffusionMemory(tiny.load, { width: 256, height: 256 });
    expect([t.family, t.compute, t.total]).toEqual(["zimage", undefined, undefined]);
    expect(t.computeUnknownReason).toMatch(/DiT 256 wide .*only DiT 3840 \(30 heads\)/);

    const dev = parts(
      "fx-dev",
      [...flux2DitPlan("f16", FX), { name: "single_blocks.47.linear2.weight", shape: [4, 4], type: GgmlType.F16 }],
      flux2TextEncoderPlan("f16", FX),
      flux2VaePlan("f16", FX),
    );
    const d = await estimateDiffusionMemory(dev.load, { width: 256, height: 256 });
    expect([d.family, d.compute]).toEqual(["flux2", undefined]);
    expect(d.computeUnknownReason).toMatch(/Flux 2 \[dev\]/);

    const noLlm = await estimateDiffusionMemory({ diffusionModel: tiny.load.diffusionModel, vae: tiny.load.vae }, { width: 256, height: 256 });
    expect([noLlm.family, noLlm.compute, noLlm.computeUnknownReason]).toEqual(["zimage", undefined, expect.stringMatching(/no LLM text encoder/)]);

    const qi2d = parts("qi-2d", qwenImageDitPlan("f16", QI), qwenImageTextEncoderPlan("f16", QI), qwenImageVaePlan("f16", QI));
    const tiled = await estimateDiffusionMemory({ ...qi2d.load, vaeTiling: true }, { width: 512, height: 512 });
    expect([tiled.compute, tiled.computeUnknownReason]).toEqual([undefined, "vaeTiling was not measured for qwenimage"]);
  });

  it("Qwen-Image's own VAE file (the causal-3D Wan VAE, decoder.conv1 [3, 3, 3, in·out]): its own VAE coefficients, the rest as with the 2D one", async () => {
    const qi3d = parts("qi-3d", qwenImageDitPlan("f16", QI), qwenImageTextEncoderPlan("f16", QI), qwenImageVaePlan("f16", QI, "causal3d"));
    const qi2d = parts("qi-2d-b", qwenImageDitPlan("f16", QI), qwenImageTextEncoderPlan("f16", QI), qwenImageVaePlan("f16", QI));
    const size = { width: 512, height: 512 };
    const q3 = await estimateDiffusionMemory(qi3d.load, size);
    const q2 = await estimateDiffusionMemory(qi2d.load, size);
    expect([q3.family, q3.computeUnknownReason]).toEqual(["qwenimage", undefined]);
    // 78 bytes per pixel per channel (96) + 525 per latent token: 1874 MiB, as sd.cpp logged 1874.50 MiB at 512²
    expect(q3.compute?.vae).toBe(78 * 96 * 512 * 512 + 525 * 64 * 64);
    expect(Math.abs((q3.compute?.vae ?? 0) / (1874.5 * 2 ** 20) - 1)).toBeLessThan(0.01);
    expect([q3.compute?.diffusion, q3.compute?.textEncoder]).toEqual([q2.compute?.diffusion, q2.compute?.textEncoder]);
    expect(q3.compute?.vae).toBeGreaterThan(1.5 * (q2.compute?.vae ?? Number.POSITIVE_INFINITY));
    // 126.9 M parameters, as Wan 2.1's VAE
    expect(q3.weights.vae).toBe(qi3d.bytes.vae);
    expect(qwenImageVaePlan("f16", QI, "causal3d").reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0)).toBe(126_892_531);
    expect(ditComputeBytes({ family: "qwenimage", ...DIT_COMPUTE_FIT.qwenimage.shape, vaeLayout: "causal3d" }, size)).toEqual(q3.compute);
    // Qwen-Image-Edit: the vision tower's weights count with the text encoder's; its tensors (v.blk.N.ffn_gate, …) do
    // not stand in for the language model's
    const vision = path.join(tmp.dir, "qi-vision.safetensors");
    const visionBytes = writePlanHeader(vision, qwenImageVisionPlan("f16", QI));
    const edit = await estimateDiffusionMemory({ ...qi3d.load, llmVision: vision }, size);
    expect(edit.compute).toEqual(q3.compute);
    expect(edit.weights.textEncoder).toBe(q3.weights.textEncoder + visionBytes);
  });

  it("reference images: resized as sd.cpp logged it, their tokens join the image's in the DiT, their encodes the VAE's (Flux 2 [klein], Qwen-Image)", async () => {
    // sd.cpp's "resize vae ref image 0 from 256x512 to 368x720" (height × width) for a 512×256 reference
    expect(refImagePixels("flux2", 512, 512, { width: 512, height: 256 })).toEqual([720, 368]);
    expect(refImagePixels("flux2", 256, 256, { width: 512, height: 256 })).toEqual([368, 176]);
    expect(refImagePixels("qwenimage", 512, 512, { width: 512, height: 256 })).toEqual([736, 352]);
    expect(refImagePixels("qwenimage", 256, 256, { width: 128, height: 128 })).toEqual([256, 256]);
    expect(refImagePixels("flux2", 2048, 2048, { width: 1024, height: 1024 })).toEqual([1024, 1024]); // at most 1024²
    const fx = DIT_SHAPE("flux2");
    const qi = DIT_SHAPE("qwenimage");
    const f1 = DIT_SHAPE("flux1");
    const size = (w: number, h: number, refs: { width: number; height: number }[] = []) => ({ width: w, height: h, promptTokens: 3, refImages: refs });
    const sq = { width: 256, height: 256 };
    // two references at a 256² target: the DiT of a 256×768 image
    expect(ditComputeBytes(fx, size(256, 256, [sq, { width: 512, height: 512 }])).diffusion).toBe(ditComputeBytes(fx, size(256, 768)).diffusion);
    // sd.cpp's DiT buffers (MiB) with references, within 3 %
    const MEASURED_REFS: [DitShape, ReturnType<typeof size>, number][] = [
      [fx, size(256, 256, [sq, { width: 512, height: 512 }]), 367.81],
      [fx, size(256, 256, [sq]), 271.44],
      [fx, size(512, 512, [{ width: 512, height: 256 }]), 1054.68],
      // Flux 1 (Kontext's path) at Flux 1 [dev]'s widths: the 512×256 reference is encoded at 368×176 (209.64 MiB logged)
      [f1, size(256, 256, [sq]), 172.88],
      [f1, size(256, 256, [{ width: 512, height: 256 }]), 172.0],
      [qi, size(256, 256, [sq]), 68.0],
      [qi, size(512, 512, [{ width: 512, height: 256 }]), 552.99],
    ];
    for (const [shape, s, mib] of MEASURED_REFS) expect(Math.abs(ditComputeBytes(shape, s).diffusion / (mib * MiB) - 1)).toBeLessThan(0.03);
    // the reference's encode (720×368: 857.61 MiB logged) outweighs a 32-channel decoder's 512² decode
    expect(ditComputeBytes({ ...fx, vaeDecoderChannels: 32 }, size(512, 512, [{ width: 512, height: 256 }])).vae).toBe(3394 * 720 * 368);
    expect(ditComputeBytes({ ...f1, vaeDecoderChannels: 32 }, size(256, 256, [{ width: 512, height: 256 }])).vae).toBe(3394 * 368 * 176);
    // through estimateDiffusionMemory: Flux 2 and Qwen-Image without the vision tower; not Z-Image, not Qwen-Image-Edit's vision tower
    const flux = parts("fx-ref", flux2DitPlan("f16", FX), flux2TextEncoderPlan("f16", FX), flux2VaePlan("f16", FX));
    const withRefs = await estimateDiffusionMemory(flux.load, size(256, 256, [sq]));
    expect(withRefs.compute).toEqual(ditComputeBytes(fx, size(256, 256, [sq])));
    const zi = parts("zi-ref", zImageDitPlan("f16", ZI), zImageTextEncoderPlan("f16", ZI), zImageVaePlan("f16", ZI));
    const z = await estimateDiffusionMemory(zi.load, size(256, 256, [sq]));
    expect([z.compute, z.computeUnknownReason]).toEqual([
      undefined,
      expect.stringMatching(/reference images were measured for Flux 1, Flux 2 \[klein\] and for Qwen-Image without llmVision only/),
    ]);
    const q = parts("qi-ref", qwenImageDitPlan("f16", QI), qwenImageTextEncoderPlan("f16", QI), qwenImageVaePlan("f16", QI));
    expect((await estimateDiffusionMemory(q.load, size(256, 256, [sq]))).compute).toEqual(ditComputeBytes(qi, size(256, 256, [sq])));
    expect((await estimateDiffusionMemory({ ...q.load, llmVision: q.load.llm }, size(256, 256, [sq]))).compute).toBeUndefined();
    await expect(estimateDiffusionMemory(flux.load, size(256, 256, [{ width: 16, height: 256 }]))).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("Flux 1 [dev]'s widths (clipL + t5xxl beside the DiT): family flux1, T5 and CLIP-L as the text encoder, the fitted compute; narrow or without T5: the reason", async () => {
    const F1 = { ...FLUX1_TINY, ditHidden: 3072, t5Hidden: 4096, t5Inner: 4096, t5Ffn: 10240, t5Layers: 1, vaeDecoderChannels: 128 };
    const f = (p: string) => path.join(tmp.dir, `f1-${p}.safetensors`);
    const bytes = {
      diffusion: writePlanHeader(f("dit"), flux1DitPlan("f16", F1)),
      textEncoder: writePlanHeader(f("t5"), flux1T5Plan("f16", F1)) + writePlanHeader(f("clip"), sdxlClipPlan("l", "f16")),
      vae: writePlanHeader(f("vae"), flux1VaePlan("f16", F1)),
    };
    const load = { diffusionModel: f("dit"), t5xxl: f("t5"), clipL: f("clip"), vae: f("vae") };
    const e = await estimateDiffusionMemory(load, { width: 1024, height: 1024 });
    expect([e.family, e.computeUnknownReason]).toEqual(["flux1", undefined]);
    expect(e.weights).toEqual({ ...bytes, total: bytes.diffusion + bytes.textEncoder + bytes.vae });
    expect(e.compute).toEqual(ditComputeBytes({ family: "flux1", ...DIT_COMPUTE_FIT.flux1.shape }, { width: 1024, height: 1024 }));
    const noT5 = await estimateDiffusionMemory({ ...load, t5xxl: undefined }, { width: 256, height: 256 });
    expect([noT5.family, noT5.compute, noT5.computeUnknownReason]).toEqual(["flux1", undefined, "no T5 text encoder (load.t5xxl) in the files"]);
    writePlanHeader(f("narrow-dit"), flux1DitPlan("f16", FLUX1_TINY));
    const narrow = await estimateDiffusionMemory({ ...load, diffusionModel: f("narrow-dit") }, { width: 256, height: 256 });
    expect([narrow.family, narrow.compute]).toEqual(["flux1", undefined]);
    expect(narrow.computeUnknownReason).toMatch(/a Flux 1 model of DiT 128 wide .* only DiT 3072 \(24 heads\), text encoder 4096 \(FFN 10240\)/);
  });

  it("SD3.5 Large's widths (clipL + clipG + t5xxl beside the MMDiT): family sd3, the fitted compute; other widths, MMDiT-X, another grid or no T5: the reason", async () => {
    const L = { ...SD3_TINY, depth: 38, hidden: 2432, vaeDecoderChannels: 128 };
    const T5 = { ...FLUX1_TINY, t5Hidden: 4096, t5Inner: 4096, t5Ffn: 10240, t5Layers: 1 };
    const f = (p: string) => path.join(tmp.dir, `sd3-${p}.safetensors`);
    writePlanHeader(f("mmdit"), sd3MmditPlan(L));
    // the memory suite's q4_0 MMDiT: its linear weights quantized, the position grid and norms kept f32
    const q4 = new Map(sd3MmditPlan(L, "sd3.5", "q4_0").map((t) => [t.name, t.type]));
    expect([q4.get("joint_blocks.37.x_block.mlp.fc1.weight"), q4.get("pos_embed"), q4.get("joint_blocks.0.x_block.attn.ln_q.weight")]).toEqual([
      GgmlType.Q4_0,
      GgmlType.F32,
      GgmlType.F32,
    ]);
    writePlanHeader(f("t5"), flux1T5Plan("f16", T5));
    writePlanHeader(f("clip-l"), sdxlClipPlan("l", "f16"));
    writePlanHeader(f("clip-g"), sd3ClipGPlan());
    writePlanHeader(f("vae"), zImageVaePlan("f16", { ...Z_IMAGE_TINY, vaeDecoderChannels: 128 }));
    const load = { diffusionModel: f("mmdit"), t5xxl: f("t5"), clipL: f("clip-l"), clipG: f("clip-g"), vae: f("vae") };
    const shape = { family: "sd3" as const, ...DIT_COMPUTE_FIT.sd3.shape };
    const e = await estimateDiffusionMemory(load, { width: 1024, height: 1024 });
    expect([e.family, e.computeUnknownReason]).toEqual(["sd3", undefined]);
    expect(e.compute).toEqual(ditComputeBytes(shape, { width: 1024, height: 1024 }));
    const reason = async (diffusionModel: string, more: object = {}) =>
      (await estimateDiffusionMemory({ ...load, diffusionModel, ...more }, { width: 256, height: 256 })).computeUnknownReason;
    expect(await reason(f("mmdit"), { t5xxl: undefined })).toBe("no T5 text encoder (load.t5xxl) in the files");
    writePlanHeader(f("medium"), sd3MmditPlan({ ...L, depth: 24, hidden: 1536 }, "sd3"));
    expect(await reason(f("medium"))).toMatch(/an SD3 model of DiT 1536 wide \(24 heads\).* only DiT 2432 \(38 heads\)/);
    // SD3.5 Medium: MMDiT-X blocks (a second attention in the first x_blocks) and a 384² position grid
    const mmditX = sd3MmditPlan({ ...L, depth: 24, hidden: 1536, posEmbedMaxSize: 384 });
    writePlanHeader(f("x"), [...mmditX, { name: "joint_blocks.0.x_block.attn2.qkv.weight", shape: [1536, 4608], type: GgmlType.F16 }]);
    expect(await reason(f("x"))).toMatch(/SD3.5 Medium's MMDiT-X blocks/);
    writePlanHeader(f("grid"), sd3MmditPlan({ ...L, posEmbedMaxSize: 384 }));
    expect(await reason(f("grid"))).toMatch(/a 384² position grid was not measured/);
    // the position-grid crop is the buffer of a tall image with flash attention: rows of patches, not the area
    const tall = ditComputeBytes(shape, { width: 64, height: 2048 }, { flashAttention: true }).diffusion;
    const wide = ditComputeBytes(shape, { width: 2048, height: 64 }, { flashAttention: true }).diffusion;
    expect(tall).toBeGreaterThan(2 * wide);
  });

  it("token counts: Z-Image pads to 32, Flux 2 [klein] to 512 text tokens, Qwen-Image drops its 34 system-prompt tokens", () => {
    // SD3: 77-token chunks of 75 prompt tokens; the DiT sees CLIP's and T5's states of each, 154 tokens
    expect(ditTokens("sd3", 512, 512, 3)).toEqual({ text: 77, ditText: 154, image: 1024 });
    expect(ditTokens("sd3", 512, 512, 75)).toEqual({ text: 77, ditText: 154, image: 1024 });
    expect(ditTokens("sd3", 512, 512, 76)).toEqual({ text: 77, ditText: 308, image: 1024 });
    expect(ditTokens("sd3", 256, 256, 400)).toEqual({ text: 77, ditText: 924, image: 256 });
    // Flux 1: T5 runs per 256-token chunk (the prompt + its end token, padded); the DiT sees all the chunks' tokens
    expect(ditTokens("flux1", 512, 512, 3)).toEqual({ text: 256, ditText: 256, image: 1024 });
    expect(ditTokens("flux1", 512, 512, 300)).toEqual({ text: 256, ditText: 512, image: 1024 });
    expect(ditTokens("flux1", 512, 512, 255)).toEqual({ text: 256, ditText: 256, image: 1024 });
    expect(ditTokens("zimage", 64, 64, 3)).toEqual({ text: 11, ditText: 32, image: 32 });
    expect(ditTokens("zimage", 1024, 1024, 139)).toEqual({ text: 147, ditText: 160, image: 4096 });
    expect(ditTokens("flux2", 512, 512, 3)).toEqual({ text: 512, ditText: 512, image: 1024 });
    expect(ditTokens("flux2", 512, 512, 600)).toEqual({ text: 612, ditText: 612, image: 1024 });
    const q = ditTokens("qwenimage", 512, 256, 100);
    expect([q.image, q.text - q.ditText]).toEqual([512, 34]);
  });

  it("a job's prompt tokens are bounded by its prompts' UTF-8 bytes (each Qwen2 BPE token covers at least one), the longer of prompt and negative prompt, at most 4096", () => {
    expect(promptTokenBound("a lighthouse")).toBe(12);
    expect(promptTokenBound("a lighthouse", "blurry, low quality, extra fingers")).toBe(34);
    expect(promptTokenBound("café ☕")).toBe(Buffer.byteLength("café ☕"));
    expect(promptTokenBound(undefined, "")).toBe(1);
    expect(promptTokenBound("x".repeat(10_000))).toBe(4096);
  });

  it("the prompt's length, flash attention and tiling change the parts they should; bad input throws", () => {
    const zi: DitShape = { family: "zimage", ...DIT_COMPUTE_FIT.zimage.shape };
    const fx: DitShape = { family: "flux2", ...DIT_COMPUTE_FIT.flux2.shape };
    const a = ditComputeBytes(zi, { width: 1024, height: 1024 });
    expect(ditComputeBytes(zi, { width: 1024, height: 1024, promptTokens: DEFAULT_PROMPT_TOKENS })).toEqual(a);
    const long = ditComputeBytes(zi, { width: 1024, height: 1024, promptTokens: 1000 });
    expect(long.textEncoder).toBeGreaterThan(a.textEncoder);
    expect(long.diffusion).toBeGreaterThan(a.diffusion);
    expect(long.vae).toBe(a.vae);
    // klein pads every prompt to 512 tokens: a short one costs what a 400-token one does
    expect(ditComputeBytes(fx, { width: 512, height: 512, promptTokens: 5 })).toEqual(ditComputeBytes(fx, { width: 512, height: 512, promptTokens: 400 }));
    const flash = ditComputeBytes(zi, { width: 1024, height: 1024 }, { flashAttention: true });
    expect(flash.diffusion).toBeLessThan(a.diffusion / 3); // no L² scores
    expect([flash.textEncoder, flash.vae]).toEqual([a.textEncoder, a.vae]);
    const tiled = ditComputeBytes(zi, { width: 2048, height: 1024 }, { vaeTiling: true });
    expect(tiled.vae).toBe(ditComputeBytes(zi, { width: 256, height: 256 }).vae);
    expect(ditComputeBytes(zi, { width: 512, height: 512, count: 4 })).toEqual(ditComputeBytes(zi, { width: 512, height: 512 }));
    expect(() => ditComputeBytes(zi, { width: 512, height: 512, promptTokens: 0 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => ditComputeBytes(zi, { width: 520, height: 512 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => ditComputeBytes({ ...zi, ditHidden: 2048 }, { width: 512, height: 512 })).toThrow(/no fitted coefficients/);
  });

  // sd.cpp's logged "<runner> compute buffer size" (MiB) at 487de75c, the fits' own measurements: [shape, width, height, prompt tokens, part, MiB, flash attention]
  const MEASURED: [DitShape["family"], number, number, number, "diffusion" | "textEncoder" | "vae", number, boolean][] = [
    ["zimage", 128, 128, 3, "diffusion", 16.62, false],
    ["zimage", 256, 256, 3, "diffusion", 47.8, false],
    ["zimage", 512, 512, 3, "diffusion", 238.22, false],
    ["zimage", 1024, 1024, 3, "diffusion", 2379.47, false],
    ["zimage", 256, 256, 139, "diffusion", 73.43, false],
    ["zimage", 768, 768, 3, "diffusion", 379.36, true],
    ["zimage", 256, 256, 139, "diffusion", 58.59, true],
    ["zimage", 128, 128, 3, "textEncoder", 1.2, false],
    ["zimage", 128, 128, 419, "textEncoder", 47.4, false],
    ["zimage", 256, 256, 3, "vae", 416.06, false],
    // Flux 2 [klein]: the real context (7680) at 128² and 256²; the larger sizes were measured with a 96-wide context, + 8.06 MiB
    ["flux2", 128, 128, 3, "diffusion", 133.72, false],
    ["flux2", 256, 256, 3, "diffusion", 186.88, false],
    ["flux2", 1024, 1024, 3, "diffusion", 2730.69 + 8.06, false],
    ["flux2", 128, 128, 3, "diffusion", 123.59, true],
    ["flux2", 1024, 1024, 3, "diffusion", 1056.69 + 2.06, true],
    ["flux2", 128, 128, 3, "textEncoder", 65.0, false],
    ["flux2", 256, 256, 3, "vae", 416.13, false],
    // Flux 1 [dev]: a 400-word prompt is 401 T5 tokens, two chunks
    ["flux1", 128, 128, 3, "diffusion", 60.96, false],
    ["flux1", 1024, 1024, 3, "diffusion", 2361.25, false],
    ["flux1", 256, 256, 400, "diffusion", 173.82, false],
    ["flux1", 128, 512, 3, "diffusion", 85.57, true],
    ["flux1", 1024, 1024, 3, "diffusion", 780.25, true],
    ["flux1", 256, 256, 400, "diffusion", 128.82, true],
    ["flux1", 128, 128, 3, "textEncoder", 68.25 + 1.42, false],
    // SD3.5 Large: 100 and 400 prompt tokens are 2 and 6 chunks; W × H 64×2048 and 128×512: the position-grid crop
    ["sd3", 128, 128, 3, "diffusion", 27.41, false],
    ["sd3", 1024, 1024, 3, "diffusion", 2865.44, false],
    ["sd3", 256, 256, 400, "diffusion", 300.62, false],
    ["sd3", 128, 512, 3, "diffusion", 64.23, false],
    ["sd3", 1024, 1024, 3, "diffusion", 356.84, true],
    ["sd3", 256, 256, 100, "diffusion", 47.71, true],
    ["sd3", 64, 2048, 3, "diffusion", 240.04, true],
    ["sd3", 128, 128, 3, "textEncoder", 1.42 + 2.36 + 9.65, false],
    ["qwenimage", 128, 128, 3, "diffusion", 8.61, false],
    ["qwenimage", 768, 768, 3, "diffusion", 681.69, false],
    ["qwenimage", 256, 256, 559, "diffusion", 104.96, false],
    ["qwenimage", 768, 768, 3, "diffusion", 272.93, true],
    ["qwenimage", 128, 128, 559, "diffusion", 41.46, true],
    ["qwenimage", 128, 128, 3, "textEncoder", 7.8, false],
    ["qwenimage", 128, 128, 559, "textEncoder", 112.33, false],
    ["qwenimage", 768, 768, 3, "vae", 2592.56, false],
  ];
  it.each(MEASURED)(
    "%s at %i×%i pixels, %i prompt tokens: %s within the fit's error of sd.cpp's %f MiB (flash attention %s)",
    (family, width, height, promptTokens, part, mib, flashAttention) => {
      const got = ditComputeBytes({ family, ...DIT_COMPUTE_FIT[family].shape }, { width, height, promptTokens }, { flashAttention })[part];
      expect(Math.abs(got / (mib * MiB) - 1)).toBeLessThan(0.06);
    },
  );
});

/** An LLM double: `bytes` of weights on `device` while resident. */
class FakeLlm implements ManagedResource {
  readonly engine = "llm";
  residency: Residency = "resident";
  inUse = false;
  lastUsedAt = 0;
  constructor(
    readonly id: string,
    readonly bytes: number,
    readonly device = "CPU",
  ) {}
  holdings(): Holding[] {
    return this.residency === "unloaded" ? [] : this.residentHoldings();
  }
  residentHoldings(): Holding[] {
    return [{ device: this.device, kind: "weights", bytes: this.bytes }];
  }
  async free(level: Exclude<Residency, "resident">): Promise<void> {
    this.residency = level;
  }
  async restore(): Promise<void> {
    this.residency = "resident";
  }
  setInUse(v: boolean): void {
    this.inUse = v;
    this.lastUsedAt = Date.now();
  }
}

describe("an image job's budget: weights + the compute buffers of its resolution (engine and LLMs: test doubles)", () => {
  let tmp: ReturnType<typeof tempDir>;
  let file: string;

  beforeAll(async () => {
    tmp = tempDir("genai-native-sd-budget-");
    file = path.join(tmp.dir, "tiny-q8.gguf");
    await generateRandomSd15Model(file, { seed: 7 });
  });
  afterAll(() => tmp.cleanup());

  it("ManagedDiffusion counts the header's weights and an image's compute on its device; keepVaeOnCpu moves the VAE's to the CPU", async () => {
    const d = await ManagedDiffusion.create({ load: { model: file }, engine: fakeEngine(), device: "Vulkan0" });
    const e = d.estimate({ width: 256, height: 256 });
    expect(d.residentHoldings()).toEqual([{ device: "Vulkan0", kind: "weights", bytes: e?.weights.total }]);
    expect(d.imageMemory({ width: 256, height: 256 })).toEqual([{ device: "Vulkan0", kind: "compute", bytes: e?.compute?.peak }]);
    const split = await ManagedDiffusion.create({ load: { model: file, keepVaeOnCpu: true }, engine: fakeEngine(), device: "Vulkan0" });
    const c = unetComputeBytes(TINY, { width: 256, height: 256 });
    expect(split.imageMemory({ width: 256, height: 256 })).toEqual([
      { device: "Vulkan0", kind: "compute", bytes: Math.max(c.textEncoder, c.diffusion) },
      { device: "CPU", kind: "compute", bytes: c.vae },
    ]);
    expect(split.residentHoldings().map((h) => h.device)).toEqual(["Vulkan0", "CPU"]);
    expect(() => d.imageMemory({ width: 100, height: 64 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });

  it("on a tight device, a 256² job frees exactly one of two idle LLMs (the least recently used); a 64² job frees none", async () => {
    const diffusion = await ManagedDiffusion.create({ load: { model: file }, engine: fakeEngine() });
    const weights = diffusion.residentHoldings()[0].bytes;
    const c64 = unetComputeBytes(TINY, { width: 64, height: 64 }).peak;
    const c256 = unetComputeBytes(TINY, { width: 256, height: 256 }).peak;
    const llmBytes = c256; // freeing one LLM covers 256²'s extra need (c256 − c64), one is not enough to spare
    const orch = new Orchestrator({ budgets: { CPU: weights + 2 * llmBytes + c64 }, restoreAfterJob: false });
    const older = new FakeLlm("older", llmBytes);
    const newer = new FakeLlm("newer", llmBytes);
    older.setInUse(false);
    await new Promise((r) => setTimeout(r, 5));
    newer.setInUse(false);
    orch.add(older, { priority: "background" });
    orch.add(newer, { priority: "background" });
    orch.add(diffusion, { priority: "background" });
    const offloads: OffloadEvent[] = [];
    orch.on("offload", (e: OffloadEvent) => offloads.push(e));
    const image = { prompt: "a lighthouse", steps: 1, seed: 1, output: "raw" as const };
    try {
      await submitImageBatch(orch, diffusion, { ...image, width: 64, height: 64 }).promise;
      expect(offloads).toEqual([]);
      let during: { id: string; kind: string; bytes: number }[] | undefined;
      const onProgress = () => {
        during ??= orch.ledger().find((d) => d.device === "CPU")?.holders;
      };
      const images = await submitImageBatch(orch, diffusion, { ...image, width: 256, height: 256 }, { priority: "interactive", onProgress }).promise;
      expect(images.map((i) => i.width)).toEqual([256]);
      expect(offloads.map((e) => e.resource)).toEqual(["older"]);
      expect([older.residency, newer.residency]).toEqual(["unloaded", "resident"]);
      // while it ran: the weights, the LLM left, and the job's compute buffers; afterwards the compute is given back
      expect(during?.map((h) => [h.id === diffusion.id || h.id === "newer" ? h.id : "job", h.kind, h.bytes])).toEqual([
        ["newer", "weights", llmBytes],
        [diffusion.id, "weights", weights],
        ["job", "compute", c256],
      ]);
      expect(orch.ledger()[0].used).toBe(weights + llmBytes);
    } finally {
      orch.dispose();
      await diffusion.free();
    }
  });
  it("submitImageBatch reserves what the job adds: an init image's or a reference image's VAE encode; a control image without a ControlNet is refused before it queues", async () => {
    const diffusion = await ManagedDiffusion.create({ load: { model: file }, engine: fakeEngine() });
    const size = { width: 128, height: 128 };
    const bytes = (extra: object) => diffusion.imageMemory({ ...size, ...extra })[0].bytes;
    // this 32-channel decoder needs 1664 B/px; the encoder 3394
    expect(bytes({})).toBe(unetComputeBytes(TINY, size).peak);
    expect(bytes({ initImage: true })).toBe(3394 * 128 * 128);
    // a 256×128 reference at a 128² target is encoded at 176×96 (refImagePixels)
    expect(refImagePixels("sd1", 128, 128, { width: 256, height: 128 })).toEqual([176, 96]);
    expect(bytes({ refImages: [{ width: 256, height: 128 }] })).toBe(3394 * 176 * 96);
    const orch = new Orchestrator({ budgets: { CPU: 1e12 }, restoreAfterJob: false });
    orch.add(diffusion, { priority: "background" });
    const picture = (w: number, h: number) => ({ width: w, height: h, channels: 3 as const, data: new Uint8Array(w * h * 3) });
    const image = { prompt: "a lighthouse", steps: 1, seed: 1, output: "raw" as const, ...size };
    try {
      let reserved: number | undefined;
      const onProgress = () => {
        reserved ??= orch.ledger()[0].holders.find((h) => h.kind === "compute")?.bytes;
      };
      await submitImageBatch(orch, diffusion, { ...image, refImages: [picture(256, 128)] }, { onProgress }).promise;
      expect(reserved).toBe(3394 * 176 * 96);
      reserved = undefined;
      await submitImageBatch(orch, diffusion, { ...image, initImage: picture(128, 128) }, { onProgress }).promise;
      expect(reserved).toBe(3394 * 128 * 128);
      expect(() => submitImageBatch(orch, diffusion, { ...image, controlImage: picture(128, 128) })).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/controlImage needs a model loaded with controlNet/) }),
      );
    } finally {
      orch.dispose();
      await diffusion.free();
    }
  });
});
