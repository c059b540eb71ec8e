// Diffusion memory by resolution (issue 14): estimateDiffusionMemory's
// weights from the files' headers (a generated SD1 GGUF; hand-written
// safetensors headers of other families), its fitted SD1 compute buffers
// against the measurements they came from, and an image job's budget in the
// orchestrator (submitImageBatch reserves ManagedDiffusion.imageMemory) with
// the engine and the LLMs as test doubles.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { estimateDiffusionMemory, readTensorInfos, SD1_COMPUTE_FIT, sd1ComputeBytes } from "../../lib/diffusion/index";
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
import { generateRandomSd15Model } from "../../lib/tools";
import { fakeEngine } from "../fakes/diffusion-engine";
import { tempDir } from "../helpers";

const MiB = 2 ** 20;
const TINY = { unetChannels: 32, vaeDecoderChannels: 32 };
const SD15 = { unetChannels: 320, vaeDecoderChannels: 128 };

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
    expect(e.compute).toEqual(sd1ComputeBytes(TINY, { width: 256, height: 256 }));
    expect(e.total).toBe(e.weights.total + (e.compute?.peak ?? NaN));
    expect((await readTensorInfos(tiny)).length).toBe(header.tensorCount);
  });

  // sd.cpp's logged "<part> compute buffer size" (MiB) at 487de75c: the fit's own measurements
  const MEASURED: [typeof TINY, number, "diffusion" | "vae", number, boolean][] = [
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
  ];
  it.each(MEASURED)("%o at %i² pixels: %s within the fit's error of sd.cpp's %f MiB (flash attention %s)", (shape, side, part, mib, flashAttention) => {
    const got = sd1ComputeBytes(shape, { width: side, height: side }, { flashAttention })[part];
    expect(Math.abs(got / (mib * MiB) - 1)).toBeLessThan(0.09);
  });

  it("the text encoder is constant, the batch count changes nothing, VAE tiling bounds the decode at one 256-pixel tile", () => {
    const a = sd1ComputeBytes(SD15, { width: 512, height: 512 });
    expect(a.textEncoder).toBe(Math.round(1.42 * MiB));
    expect(sd1ComputeBytes(SD15, { width: 512, height: 512, count: 4 })).toEqual(a);
    expect(a.vae).toBeGreaterThan(a.diffusion); // SD1.5 at 512²: the VAE decode is the peak
    expect(a.peak).toBe(a.vae);
    const tiled = sd1ComputeBytes(SD15, { width: 1024, height: 512 }, { vaeTiling: true });
    expect(tiled.vae).toBe(sd1ComputeBytes(SD15, { width: 256, height: 256 }).vae);
    expect(SD1_COMPUTE_FIT.vaeTilePixels).toBe(256);
  });

  it("other families, shapes and modes get no compute estimate, with the reason", async () => {
    const sd1 = path.join(tmp.dir, "sd1.safetensors");
    const bytes = writeSafetensors(sd1, unetTensors(768));
    const ok = await estimateDiffusionMemory({ model: sd1 }, { width: 64, height: 64 });
    expect(ok.family).toBe("sd1");
    expect(ok.weights.total).toBe(bytes);
    expect(ok.weights.vae).toBe(3 * 128 * 9 * 2);
    const taesd = await estimateDiffusionMemory({ model: sd1, taesd: sd1 }, { width: 64, height: 64 });
    expect([taesd.family, taesd.compute, taesd.computeUnknownReason]).toEqual(["sd1", undefined, expect.stringMatching(/TAESD/)]);
    const img2img = await estimateDiffusionMemory({ model: sd1 }, { width: 64, height: 64, initImage: true });
    expect([img2img.compute, img2img.total, img2img.computeUnknownReason]).toEqual([undefined, undefined, expect.stringMatching(/img2img/)]);

    const cases: [string, Record<string, number[]>, RegExp][] = [
      ["sd2", unetTensors(1024), /context of 1024/],
      ["sdxl", unetTensors(2048, { "model.diffusion_model.label_emb.0.0.weight": [1280, 2816] }), /SDXL/],
      ["flux", { "double_blocks.0.img_attn.qkv.weight": [9216, 3072] }, /fitted on SD1 only/],
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

  it("bad input: typed errors", async () => {
    const code = (c: string) => expect.objectContaining({ code: c });
    await expect(estimateDiffusionMemory({ model: tiny }, { width: 100, height: 64 })).rejects.toEqual(code("INVALID_ARGUMENT"));
    await expect(estimateDiffusionMemory({ model: tiny }, { width: 64, height: 64, count: 0 })).rejects.toEqual(code("INVALID_ARGUMENT"));
    await expect(estimateDiffusionMemory({}, { width: 64, height: 64 })).rejects.toEqual(code("INVALID_ARGUMENT"));
    await expect(estimateDiffusionMemory({ model: path.join(tmp.dir, "none.gguf") }, { width: 64, height: 64 })).rejects.toEqual(code("MODEL_NOT_FOUND"));
    const junk = path.join(tmp.dir, "model.ckpt");
    fs.writeFileSync(junk, Buffer.from("PK\x03\x04 a zip pickle, not a tensor header"));
    await expect(estimateDiffusionMemory({ model: junk }, { width: 64, height: 64 })).rejects.toEqual(code("INVALID_MODEL"));
    expect(() => sd1ComputeBytes({ unetChannels: 64, vaeDecoderChannels: 32 }, { width: 64, height: 64 })).toThrow(/no fitted coefficients/);
  });
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
    const c = sd1ComputeBytes(TINY, { width: 256, height: 256 });
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
    const c64 = sd1ComputeBytes(TINY, { width: 64, height: 64 }).peak;
    const c256 = sd1ComputeBytes(TINY, { width: 256, height: 256 }).peak;
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
});
