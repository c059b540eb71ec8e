// Random-weight multimodal projectors (lib/tools/llama/mmproj.ts): the GGUF is
// read back with @huggingface/gguf and checked against expectations written
// out independently of the generator (key names, types and tensor layout from
// deps/llama.cpp/tools/mtmd/clip-impl.h, clip.cpp load_hparams/load_tensors and
// models/llava.cpp); then, when llama.cpp's own llama-mtmd-cli is built beside
// the addon, it runs on a generated text model + projector pair.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gguf } from "@huggingface/gguf";
import { generateRandomLlamaModel, generateRandomMmproj, type LlamaShape } from "../../lib/tools";
import { MTMD_CLI, runMtmdCli, tempDir, writeTestPng } from "../helpers";

const F32 = 0; // ggml_type GGML_TYPE_F32
const GGUF_UINT32 = 4;
const GGUF_FLOAT32 = 6;
const GGUF_BOOL = 7;
const GGUF_STRING = 8;
const GGUF_ARRAY = 9;

interface Dims {
  textEmbd: number;
  imageSize: number;
  patchSize: number;
  hidden: number;
  layers: number;
  ff: number;
}

/** Tensor name → ggml shape (ne[0] first) of an "mlp" (LLaVA-1.5) projector, per clip.cpp load_tensors. */
function expectedTensors(d: Dims): Map<string, number[]> {
  const { hidden: h, ff, textEmbd: e, patchSize: p } = d;
  const n = (d.imageSize / p) ** 2;
  const m = new Map<string, number[]>([
    ["v.class_embd", [h]],
    ["v.patch_embd.weight", [p, p, 3, h]],
    ["v.patch_embd.bias", [h]],
    ["v.position_embd.weight", [h, n + 1]], // + the class token
    ["v.pre_ln.weight", [h]],
    ["v.pre_ln.bias", [h]],
  ]);
  for (let i = 0; i < d.layers; i++) {
    for (const ln of ["ln1", "ln2"]) {
      m.set(`v.blk.${i}.${ln}.weight`, [h]);
      m.set(`v.blk.${i}.${ln}.bias`, [h]);
    }
    for (const a of ["attn_q", "attn_k", "attn_v", "attn_out"]) {
      m.set(`v.blk.${i}.${a}.weight`, [h, h]);
      m.set(`v.blk.${i}.${a}.bias`, [h]);
    }
    m.set(`v.blk.${i}.ffn_up.weight`, [h, ff]);
    m.set(`v.blk.${i}.ffn_up.bias`, [ff]);
    m.set(`v.blk.${i}.ffn_down.weight`, [ff, h]);
    m.set(`v.blk.${i}.ffn_down.bias`, [h]);
  }
  m.set("mm.0.weight", [h, e]);
  m.set("mm.0.bias", [e]);
  m.set("mm.2.weight", [e, e]); // clip_n_mmproj_embd = mm.2.weight ne[1] must equal the text n_embd
  m.set("mm.2.bias", [e]);
  return m;
}

type Typed = Record<string, { value: unknown; type: number; subType?: number }>;

async function checkFile(file: string, d: Dims, heads: number): Promise<void> {
  const { typedMetadata, tensorInfos } = await gguf(file, { allowLocalFile: true, typedMetadata: true });
  const md = typedMetadata as unknown as Typed;
  expect(md["general.architecture"]).toMatchObject({ type: GGUF_STRING, value: "clip" });
  // keys clip.cpp load_hparams requires for a vision projector, with the types its getters assert
  expect(md["clip.has_vision_encoder"]).toMatchObject({ type: GGUF_BOOL, value: true });
  expect(md["clip.projector_type"]).toMatchObject({ type: GGUF_STRING, value: "mlp" });
  const u32: [string, number][] = [
    ["clip.vision.embedding_length", d.hidden],
    ["clip.vision.attention.head_count", heads],
    ["clip.vision.feed_forward_length", d.ff],
    ["clip.vision.block_count", d.layers],
    ["clip.vision.projection_dim", d.textEmbd],
    ["clip.vision.image_size", d.imageSize],
    ["clip.vision.patch_size", d.patchSize],
  ];
  for (const [k, v] of u32) expect(md[k], k).toMatchObject({ type: GGUF_UINT32, value: v });
  expect(md["clip.vision.attention.layer_norm_epsilon"].type).toBe(GGUF_FLOAT32);
  expect(md["clip.vision.attention.layer_norm_epsilon"].value as number).toBeGreaterThan(0);
  for (const k of ["clip.vision.image_mean", "clip.vision.image_std"]) {
    expect([md[k].type, md[k].subType], k).toEqual([GGUF_ARRAY, GGUF_FLOAT32]);
    expect((md[k].value as number[]).length, k).toBe(3);
  }
  expect(md["clip.vision.image_grid_pinpoints"]).toBeUndefined(); // fixed-size preprocessing: one image, one chunk

  const want = expectedTensors(d);
  const got = new Map(tensorInfos.map((t) => [t.name, t.shape.map(Number)]));
  expect(got.size).toBe(tensorInfos.length); // no duplicate names
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [name, shape] of want) expect(got.get(name), name).toEqual(shape);
  expect(tensorInfos.every((t) => t.dtype === F32)).toBe(true);
}

describe("generateRandomMmproj", () => {
  const tmp = tempDir("genai-native-mmproj-");
  const file = (n: string) => path.join(tmp.dir, n);
  // a small llama shape whose n_embd the projectors feed
  const text: LlamaShape = { layers: 2, embd: 128, ff: 256, heads: 4, kvHeads: 2, vocab: 512, ctx: 512 };

  afterAll(() => tmp.cleanup());

  it("writes the keys and tensors clip.cpp loads, with the defaults", async () => {
    const r = await generateRandomMmproj(file("default.gguf"), { textEmbd: text.embd });
    expect(r.projectorType).toBe("mlp");
    expect(r.imageTokens).toBe(16); // (56 / 14)²
    expect(r.tensors).toBe(6 + 16 * 2 + 4);
    expect(r.bytes).toBe(fs.statSync(file("default.gguf")).size);
    await checkFile(file("default.gguf"), { textEmbd: 128, imageSize: 56, patchSize: 14, hidden: 32, layers: 2, ff: 128 }, 4);
  });

  it("follows the options; the same seed gives the same bytes", async () => {
    const opts = { textEmbd: 64, imageSize: 28, patchSize: 14, hidden: 48, layers: 1, heads: 3, ff: 96, seed: 7 };
    const r = await generateRandomMmproj(file("a.gguf"), opts);
    expect(r.imageTokens).toBe(4);
    expect(r.tensors).toBe(6 + 16 + 4);
    await checkFile(file("a.gguf"), opts, 3);
    await generateRandomMmproj(file("b.gguf"), opts);
    await generateRandomMmproj(file("c.gguf"), { ...opts, seed: 8 });
    expect(fs.readFileSync(file("b.gguf")).equals(fs.readFileSync(file("a.gguf")))).toBe(true);
    expect(fs.readFileSync(file("c.gguf")).equals(fs.readFileSync(file("a.gguf")))).toBe(false);
  });

  it("rejects shapes clip.cpp cannot take", async () => {
    await expect(generateRandomMmproj(file("x.gguf"), { textEmbd: 0 })).rejects.toThrow(RangeError);
    await expect(generateRandomMmproj(file("x.gguf"), { textEmbd: 64, imageSize: 30, patchSize: 14 })).rejects.toThrow(/multiple of patchSize/);
    await expect(generateRandomMmproj(file("x.gguf"), { textEmbd: 64, hidden: 30, heads: 4 })).rejects.toThrow(/multiple of heads/);
    await expect(generateRandomMmproj(file("x.gguf"), { textEmbd: 64, seed: -1 })).rejects.toThrow(/seed/);
  });

  describe.skipIf(!MTMD_CLI)("with llama.cpp's llama-mtmd-cli [needs `node scripts/build-addon.mjs --target llama-mtmd-cli`]", () => {
    beforeAll(async () => {
      await generateRandomLlamaModel(file("text.gguf"), text, { chatTemplate: true, seed: 3 });
      writeTestPng(file("wide.png"), 40, 23); // any size: mtmd resizes to image_size²
    });

    it("encodes an image into imageTokens embeddings of the text width and generates", async () => {
      for (const [name, opts] of [
        ["p1.gguf", {}],
        ["p2.gguf", { imageSize: 42, hidden: 48, heads: 3, layers: 1, ff: 64 }],
      ] as const) {
        const r = await generateRandomMmproj(file(name), { textEmbd: text.embd, ...opts });
        const out = runMtmdCli({ model: file("text.gguf"), mmproj: file(name), images: [file("wide.png")], prompt: "Describe", tokens: 8 });
        expect(out.status, out.log.slice(-3000)).toBe(0);
        expect(out.log).toContain("load_hparams: projector:          mlp");
        expect(out.imageTokens, name).toBe(r.imageTokens);
        expect(out.embd, name).toBe(text.embd);
      }
    });

    it("is refused by a text model of another width", async () => {
      await generateRandomMmproj(file("wrong.gguf"), { textEmbd: text.embd * 2 });
      const out = runMtmdCli({ model: file("text.gguf"), mmproj: file("wrong.gguf"), images: [file("wide.png")], prompt: "Describe", tokens: 8 });
      expect(out.status).not.toBe(0);
      expect(out.log).toMatch(/mismatch between text model \(n_embd = 128\) and mmproj \(n_embd = 256\)/);
    });
  });
});
