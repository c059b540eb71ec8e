import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gguf } from "@huggingface/gguf";
import {
  SD_PRESETS,
  generateRandomEsrganModel,
  generateRandomSd15Model,
  generateRandomTaesd,
  randomSd15ModelBytes,
  sd1TensorPlan,
  sdParameterCount,
  taesdTensors,
  validateSdShape,
} from "../../lib/tools";
import { runCli } from "../../lib/tools/gen-sd-model";

// Expectations are written out independently of the generator: tensor names and
// PyTorch shapes of the public v1-5-pruned-emaonly checkpoint (reversed here to
// ggml order, ne[0] first) and its well-known parameter counts; ggml type ids and
// block sizes from ggml.h / ggml-common.h.
const GGML = { f32: 0, f16: 1, q8_0: 8 } as const;
const ALIGN = 32;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;
const nbytes = (dtype: number, shape: number[]) => {
  const n = shape.reduce((a, b) => a * b, 1);
  return dtype === GGML.f32 ? 4 * n : dtype === GGML.f16 ? 2 * n : (n / 32) * 34;
};
const ggmlShape = (torch: number[]) => [...torch].reverse();

/** Some SD1.5 tensors with their PyTorch shapes. */
const SD15_SAMPLES: Record<string, number[]> = {
  "model.diffusion_model.time_embed.0.weight": [1280, 320],
  "model.diffusion_model.time_embed.2.bias": [1280],
  "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
  "model.diffusion_model.input_blocks.1.0.emb_layers.1.weight": [320, 1280],
  "model.diffusion_model.input_blocks.1.1.proj_in.weight": [320, 320, 1, 1],
  "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight": [320, 320],
  "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768],
  "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.ff.net.0.proj.weight": [2560, 320],
  "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.ff.net.2.weight": [320, 1280],
  "model.diffusion_model.input_blocks.3.0.op.weight": [320, 320, 3, 3],
  "model.diffusion_model.input_blocks.4.0.skip_connection.weight": [640, 320, 1, 1],
  "model.diffusion_model.input_blocks.11.0.out_layers.3.weight": [1280, 1280, 3, 3],
  "model.diffusion_model.middle_block.1.transformer_blocks.0.norm3.weight": [1280],
  "model.diffusion_model.middle_block.2.in_layers.0.bias": [1280],
  "model.diffusion_model.output_blocks.2.1.conv.weight": [1280, 1280, 3, 3],
  "model.diffusion_model.output_blocks.3.0.skip_connection.weight": [1280, 2560, 1, 1],
  "model.diffusion_model.output_blocks.5.2.conv.weight": [1280, 1280, 3, 3],
  "model.diffusion_model.output_blocks.7.1.transformer_blocks.0.attn2.to_v.weight": [640, 768],
  "model.diffusion_model.output_blocks.8.2.conv.weight": [640, 640, 3, 3],
  "model.diffusion_model.output_blocks.9.0.in_layers.2.weight": [320, 960, 3, 3],
  "model.diffusion_model.output_blocks.11.1.proj_out.weight": [320, 320, 1, 1],
  "model.diffusion_model.out.0.weight": [320],
  "model.diffusion_model.out.2.weight": [4, 320, 3, 3],
  "first_stage_model.encoder.conv_in.weight": [128, 3, 3, 3],
  "first_stage_model.encoder.down.0.downsample.conv.weight": [128, 128, 3, 3],
  "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight": [256, 128, 1, 1],
  "first_stage_model.encoder.mid.attn_1.k.weight": [512, 512, 1, 1],
  "first_stage_model.encoder.conv_out.weight": [8, 512, 3, 3],
  "first_stage_model.quant_conv.weight": [8, 8, 1, 1],
  "first_stage_model.post_quant_conv.weight": [4, 4, 1, 1],
  "first_stage_model.decoder.conv_in.weight": [512, 4, 3, 3],
  "first_stage_model.decoder.mid.attn_1.proj_out.weight": [512, 512, 1, 1],
  "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight": [256, 512, 1, 1],
  "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": [128, 256, 1, 1],
  "first_stage_model.decoder.up.3.upsample.conv.weight": [512, 512, 3, 3],
  "first_stage_model.decoder.up.0.block.2.conv2.weight": [128, 128, 3, 3],
  "first_stage_model.decoder.conv_out.weight": [3, 128, 3, 3],
  "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": [49408, 768],
  "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": [77, 768],
  "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.bias": [768],
  "cond_stage_model.transformer.text_model.encoder.layers.11.self_attn.out_proj.weight": [768, 768],
  "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc1.weight": [3072, 768],
  "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight": [768, 3072],
  "cond_stage_model.transformer.text_model.final_layer_norm.bias": [768],
};

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const sha = (f: string) => crypto.createHash("sha256").update(fs.readFileSync(f)).digest("hex");
const component = (name: string) => name.split(".")[0];

let dir = "";
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "genai-native-gensd-"));
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("sd1TensorPlan", () => {
  it("matches the SD1.5 checkpoint: tensor counts, parameter counts, sample shapes", () => {
    const plan = sd1TensorPlan(SD_PRESETS.sd15, "f16");
    const count: Record<string, number> = {};
    const params: Record<string, number> = {};
    for (const t of plan) {
      const c = component(t.name);
      count[c] = (count[c] ?? 0) + 1;
      params[c] = (params[c] ?? 0) + t.shape.reduce((a, b) => a * b, 1);
    }
    // v1-5-pruned-emaonly: 686 UNet, 248 VAE, 196 CLIP tensors (without position_ids)
    expect(count).toEqual({ model: 686, first_stage_model: 248, cond_stage_model: 196 });
    // UNet 859.52 M, VAE 83.65 M, CLIP ViT-L/14 text 123.06 M parameters
    expect(params).toEqual({ model: 859_520_964, first_stage_model: 83_653_863, cond_stage_model: 123_060_480 });
    expect(sdParameterCount(plan)).toBe(1_066_235_307);
    const byName = new Map(plan.map((t) => [t.name, t]));
    expect(byName.size).toBe(plan.length);
    for (const [name, torch] of Object.entries(SD15_SAMPLES)) expect(byName.get(name)?.shape, name).toEqual(ggmlShape(torch));
  });

  it("tiny has the same tensor names, smaller UNet / VAE decoder, full CLIP and VAE encoder", () => {
    const big = sd1TensorPlan(SD_PRESETS.sd15, "q8_0");
    const tiny = sd1TensorPlan(SD_PRESETS.tiny, "q8_0");
    expect(tiny.map((t) => t.name)).toEqual(big.map((t) => t.name));
    const byName = new Map(tiny.map((t) => [t.name, t.shape]));
    expect(byName.get("model.diffusion_model.input_blocks.0.0.weight")).toEqual([3, 3, 4, 32]);
    expect(byName.get("model.diffusion_model.time_embed.0.weight")).toEqual([32, 128]);
    expect(byName.get("model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight")).toEqual([768, 128]);
    expect(byName.get("first_stage_model.decoder.conv_in.weight")).toEqual([3, 3, 4, 128]);
    expect(byName.get("first_stage_model.encoder.conv_out.weight")).toEqual([3, 3, 512, 8]);
    expect(byName.get("cond_stage_model.transformer.text_model.embeddings.token_embedding.weight")).toEqual([768, 49408]);
  });

  it("assigns f32 to norms, biases and the position embedding, f16 to conv kernels, the type to linear weights", () => {
    for (const type of ["q8_0", "f16", "f32"] as const) {
      const lin = GGML[type];
      for (const t of sd1TensorPlan(SD_PRESETS.tiny, type)) {
        if (t.shape.length === 1 || t.name.endsWith("position_embedding.weight")) expect(t.type, t.name).toBe(GGML.f32);
        else if (t.shape.length === 4) expect(t.type, t.name).toBe(type === "f32" ? GGML.f32 : GGML.f16);
        else expect(t.type, t.name).toBe(lin === GGML.q8_0 && t.shape[0] % 32 !== 0 ? GGML.f16 : lin);
      }
    }
  });

  it("rejects sizes GroupNorm32 cannot take and unknown types", () => {
    expect(() => validateSdShape({ unetChannels: 48, vaeDecoderChannels: 32 })).toThrow(RangeError);
    expect(() => validateSdShape({ unetChannels: 32, vaeDecoderChannels: 0 })).toThrow(RangeError);
    expect(() => validateSdShape(SD_PRESETS.tiny, "q4_0" as never)).toThrow(RangeError);
  });
});

describe("generateRandomSd15Model (tiny, q8_0)", () => {
  let file = "";
  let result: Awaited<ReturnType<typeof generateRandomSd15Model>>;

  beforeAll(async () => {
    file = path.join(dir, "tiny-q8.gguf");
    result = await generateRandomSd15Model(file, { seed: 7 });
  });

  it("writes a GGUF whose tensors match the plan, laid out aligned and contiguous", async () => {
    const { tensorInfos, tensorDataOffset } = await gguf(file, { allowLocalFile: true });
    const plan = sd1TensorPlan(SD_PRESETS.tiny, "q8_0");
    expect(tensorInfos.map((t) => t.name)).toEqual(plan.map((t) => t.name));
    for (let i = 0; i < plan.length; i++) {
      expect(tensorInfos[i].shape.map(Number), plan[i].name).toEqual(plan[i].shape);
      expect(tensorInfos[i].dtype as number, plan[i].name).toBe(plan[i].type);
    }
    const size = fs.statSync(file).size;
    const base = Number(tensorDataOffset);
    expect(base % ALIGN).toBe(0);
    let expectOffset = 0;
    for (const t of tensorInfos) {
      expect(Number(t.offset), t.name).toBe(expectOffset);
      expectOffset += align(nbytes(t.dtype, t.shape.map(Number)));
    }
    expect(size).toBe(base + expectOffset);
    expect(result).toMatchObject({ bytes: size, tensors: 1130, type: "q8_0", preset: "tiny", seed: 7 });
    expect(result.parameters).toBe(sdParameterCount(plan));
    expect(randomSd15ModelBytes({ seed: 7 })).toBe(size);
    // the names sd.cpp's version detection looks for (VERSION_SD1)
    const names = new Set(tensorInfos.map((t) => t.name));
    expect(names.has("model.diffusion_model.middle_block.1.norm.weight")).toBe(true);
    expect(names.has("model.diffusion_model.output_blocks.7.1.norm.weight")).toBe(true);
  });

  it("fills norms with 1, biases with 0 (log-variance −30) and weights with small finite values", async () => {
    const { tensorInfos, tensorDataOffset } = await gguf(file, { allowLocalFile: true });
    const buf = fs.readFileSync(file);
    const base = Number(tensorDataOffset);
    const at = (name: string) => {
      const t = tensorInfos.find((x) => x.name === name);
      if (!t) throw new Error(`missing ${name}`);
      return { p: base + Number(t.offset), n: t.shape.reduce((a, b) => a * Number(b), 1) };
    };
    const gn = at("first_stage_model.decoder.norm_out.weight");
    for (let i = 0; i < gn.n; i++) expect(buf.readFloatLE(gn.p + 4 * i)).toBe(1);
    const b = at("model.diffusion_model.out.2.bias");
    for (let i = 0; i < b.n; i++) expect(buf.readFloatLE(b.p + 4 * i)).toBe(0);
    // the VAE encoder's log-variance channels: −30 (near-deterministic encoding, as in a trained VAE)
    const qb = at("first_stage_model.quant_conv.bias");
    expect(Array.from({ length: qb.n }, (_, i) => buf.readFloatLE(qb.p + 4 * i))).toEqual([0, 0, 0, 0, -30, -30, -30, -30]);
    const conv = at("model.diffusion_model.input_blocks.0.0.weight");
    let maxAbs = 0;
    for (let i = 0; i < conv.n; i++) maxAbs = Math.max(maxAbs, Math.abs(f16ToF32(buf.readUInt16LE(conv.p + 2 * i))));
    expect(maxAbs).toBeGreaterThan(0.015);
    expect(maxAbs).toBeLessThanOrEqual(0.02);
    const q = at("cond_stage_model.transformer.text_model.encoder.layers.3.mlp.fc1.weight");
    let sumSq = 0;
    for (let blk = 0; blk < 1000; blk++) {
      const p = q.p + 34 * blk;
      const d = f16ToF32(buf.readUInt16LE(p));
      expect(d).toBeCloseTo(0.02 / 127, 6);
      for (let j = 0; j < 32; j++) {
        const v = buf.readInt8(p + 2 + j);
        expect(v).toBeGreaterThanOrEqual(-127);
        sumSq += (v * d) ** 2;
      }
    }
    const std = Math.sqrt(sumSq / 32000);
    expect(std).toBeGreaterThan(0.009); // uniform ±0.02 → std 0.0115
    expect(std).toBeLessThan(0.014);
  });

  it("is deterministic: same seed → identical bytes; another seed (via the CLI) → other weights", async () => {
    const again = path.join(dir, "tiny-q8-again.gguf");
    await generateRandomSd15Model(again, { seed: 7 });
    expect(sha(again)).toBe(sha(file));
    const other = path.join(dir, "tiny-f16-seed8.gguf");
    const r = await runCli(["--out", other, "--type", "f16", "--seed", "8"]);
    expect(r).toMatchObject({ bytes: fs.statSync(other).size, type: "f16", seed: 8, tensors: 1130 });
    // the f32 position embedding is stored the same way in both files: compare it
    const pos = "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight";
    const read = async (f: string) => {
      const { tensorInfos, tensorDataOffset } = await gguf(f, { allowLocalFile: true });
      const t = tensorInfos.find((x) => x.name === pos)!;
      const p = Number(tensorDataOffset) + Number(t.offset);
      return fs.readFileSync(f).subarray(p, p + 768 * 77 * 4);
    };
    expect((await read(other)).equals(await read(file))).toBe(false);
    await expect(runCli(["--type", "f16"])).rejects.toThrow(/--out/);
  });
});

describe("generateRandomEsrganModel", () => {
  it("writes finite conv weights of about ±weightScale (they were all f16 +inf: the PRNG's uint32 was not scaled)", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "genai-esrgan-"));
    try {
      const file = path.join(dir, "esrgan.gguf");
      await generateRandomEsrganModel(file, { scale: 2, blocks: 1, seed: 3 });
      const { tensorInfos, tensorDataOffset } = await gguf(file, { allowLocalFile: true });
      const bytes = fs.readFileSync(file);
      const conv = tensorInfos.find((t) => t.name.endsWith(".weight"));
      expect(conv).toBeDefined();
      const n = conv!.shape.reduce((a, b) => a * Number(b), 1);
      const start = Number(tensorDataOffset) + Number(conv!.offset);
      let maxAbs = 0;
      for (let i = 0; i < n; i++) {
        const h = bytes.readUInt16LE(start + 2 * i);
        expect((h & 0x7c00) === 0x7c00, `element ${i} is inf/NaN (0x${h.toString(16)})`).toBe(false);
        const e = (h >> 10) & 0x1f;
        const v = e === 0 ? (h & 0x3ff) * 2 ** -24 : (1 + (h & 0x3ff) / 1024) * 2 ** (e - 15);
        maxAbs = Math.max(maxAbs, v);
      }
      expect(maxAbs).toBeGreaterThan(0.01);
      expect(maxAbs).toBeLessThanOrEqual(0.02);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("generateRandomTaesd", () => {
  // madebyollin/taesd's TAESD (diffusers AutoencoderTiny): 64 channels, 4 latent channels; its decoder has
  // 1,222,531 parameters and the whole model 2,445,063 (counted by hand from tae.hpp's layers, see taesd.ts)
  it("has TAESD's layers: parameter counts, latent-channel convs, TAEF2's group-norm branch, the decoder alone", () => {
    const count = (z: 4 | 16 | 32, enc: boolean) => taesdTensors(z, enc).reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
    expect(count(4, true)).toBe(2_445_063);
    expect(count(4, false)).toBe(1_222_531);
    const shape = (z: 4 | 16 | 32, name: string) => taesdTensors(z).find((t) => t.name === name)?.shape;
    expect(shape(16, "decoder.layers.0.weight")).toEqual([3, 3, 16, 64]);
    expect(shape(16, "encoder.layers.14.weight")).toEqual([3, 3, 64, 16]);
    expect(shape(4, "decoder.layers.6.bias")).toBeUndefined(); // the convs after an upsample have no bias
    expect(shape(4, "decoder.layers.2.pool.0.weight")).toBeUndefined();
    expect(shape(32, "decoder.layers.2.pool.0.weight")).toEqual([1, 1, 64, 256]);
    expect(shape(32, "encoder.layers.13.pool.1.weight")).toEqual([256]);
    expect(shape(32, "encoder.layers.5.pool.1.weight")).toBeUndefined();
    expect(taesdTensors(4, false).every((t) => t.name.startsWith("decoder."))).toBe(true);
    expect(() => taesdTensors(8 as 4)).toThrow(RangeError);
  });

  it("writes kernels with variance 1 / fan-in (uniform ±√(3 / fan-in)), zero biases", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "genai-taesd-"));
    try {
      const file = path.join(dir, "taesd.gguf");
      const r = await generateRandomTaesd(file, { seed: 5 });
      expect(r.tensors).toBe(134);
      const { tensorInfos, tensorDataOffset } = await gguf(file, { allowLocalFile: true });
      const bytes = fs.readFileSync(file);
      const at = (name: string) => Number(tensorDataOffset) + Number(tensorInfos.find((t) => t.name === name)!.offset);
      const f16 = (h: number) => {
        const e = (h >> 10) & 0x1f;
        const v = e === 0 ? (h & 0x3ff) * 2 ** -24 : (1 + (h & 0x3ff) / 1024) * 2 ** (e - 15);
        return h & 0x8000 ? -v : v;
      };
      let maxAbs = 0;
      let sumSq = 0;
      const n = 3 * 3 * 64 * 64;
      for (let i = 0; i < n; i++) {
        const v = f16(bytes.readUInt16LE(at("decoder.layers.2.conv.0.weight") + 2 * i));
        maxAbs = Math.max(maxAbs, Math.abs(v));
        sumSq += v * v;
      }
      const bound = Math.sqrt(3 / 576);
      expect(maxAbs).toBeLessThanOrEqual(bound * 1.001);
      expect(maxAbs).toBeGreaterThan(bound * 0.99);
      expect(sumSq / n).toBeGreaterThan((1 / 576) * 0.95);
      expect(sumSq / n).toBeLessThan((1 / 576) * 1.05);
      expect(bytes.readFloatLE(at("decoder.layers.2.conv.0.bias"))).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
