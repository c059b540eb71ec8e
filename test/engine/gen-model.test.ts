import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import crypto from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gguf } from "@huggingface/gguf";
import {
  CHATML_TEMPLATE,
  PRESETS,
  generateRandomLlamaModel,
  llamaParameterCount,
  randomLlamaModelLayout,
  type LlamaShape,
  type WeightType,
  GgmlType,
  GgufWriter,
} from "../../lib/tools";
import { runCli } from "../../lib/tools/gen-model";

// Expectations below are written out independently of the generator (ggml type
// ids and block sizes from ggml.h / ggml-common.h, tensor names and shapes from
// llama.cpp src/models/llama.cpp), so a mistake in the generator shows up here.
const GGML = { f32: 0, f16: 1, q4_0: 2, q8_0: 8 } as const;
const BYTES_PER_32: Record<number, number> = { 0: 128, 1: 64, 2: 18, 8: 34 };
const ALIGN = 32;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;
const nbytes = (dtype: number, shape: number[]) => (shape.reduce((a, b) => a * b, 1) / 32) * BYTES_PER_32[dtype];

function expectedTensors(s: LlamaShape, type: WeightType, tied = false): Map<string, { shape: number[]; dtype: number }> {
  const w = GGML[type];
  const hd = s.embd / s.heads;
  const m = new Map<string, { shape: number[]; dtype: number }>();
  m.set("token_embd.weight", { shape: [s.embd, s.vocab], dtype: w });
  m.set("output_norm.weight", { shape: [s.embd], dtype: GGML.f32 });
  if (!tied) m.set("output.weight", { shape: [s.embd, s.vocab], dtype: w });
  for (let i = 0; i < s.layers; i++) {
    m.set(`blk.${i}.attn_norm.weight`, { shape: [s.embd], dtype: GGML.f32 });
    m.set(`blk.${i}.attn_q.weight`, { shape: [s.embd, s.embd], dtype: w });
    m.set(`blk.${i}.attn_k.weight`, { shape: [s.embd, hd * s.kvHeads], dtype: w });
    m.set(`blk.${i}.attn_v.weight`, { shape: [s.embd, hd * s.kvHeads], dtype: w });
    m.set(`blk.${i}.attn_output.weight`, { shape: [s.embd, s.embd], dtype: w });
    m.set(`blk.${i}.ffn_norm.weight`, { shape: [s.embd], dtype: GGML.f32 });
    m.set(`blk.${i}.ffn_gate.weight`, { shape: [s.embd, s.ff], dtype: w });
    m.set(`blk.${i}.ffn_up.weight`, { shape: [s.embd, s.ff], dtype: w });
    m.set(`blk.${i}.ffn_down.weight`, { shape: [s.ff, s.embd], dtype: w });
  }
  return m;
}

/** Independent minimal GGUF header walk: returns counts and the byte offset where the tensor infos end. */
function walkHeader(buf: Buffer): { version: number; nTensors: number; nKv: number; headerEnd: number; keys: string[] } {
  let p = 0;
  const u32 = () => {
    p += 4;
    return buf.readUInt32LE(p - 4);
  };
  const u64 = () => {
    p += 8;
    return Number(buf.readBigUInt64LE(p - 8));
  };
  const str = () => {
    const n = u64();
    p += n;
    return buf.toString("utf8", p - n, p);
  };
  const sizes: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const skip = (t: number): void => {
    if (t === 8) str();
    else if (t === 9) {
      const it = u32();
      const n = u64();
      for (let i = 0; i < n; i++) skip(it);
    } else if (sizes[t] !== undefined) p += sizes[t];
    else throw new Error(`bad value type ${t} at ${p}`);
  };
  expect(buf.toString("latin1", 0, 4)).toBe("GGUF");
  p = 4;
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const keys: string[] = [];
  for (let i = 0; i < nKv; i++) {
    keys.push(str());
    skip(u32());
  }
  for (let i = 0; i < nTensors; i++) {
    str();
    const nd = u32();
    p += 8 * nd + 4 + 8;
  }
  return { version, nTensors, nKv, headerEnd: p, keys };
}

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

const sha = (f: string) => crypto.createHash("sha256").update(fs.readFileSync(f)).digest("hex");

let dir = "";
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "genai-native-genmodel-"));
});
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("generateRandomLlamaModel (tiny preset, q8_0)", () => {
  const shape = PRESETS.tiny;
  let file = "";
  let result: Awaited<ReturnType<typeof generateRandomLlamaModel>>;

  beforeAll(async () => {
    file = path.join(dir, "tiny-q8.gguf");
    result = await generateRandomLlamaModel(file, shape, { type: "q8_0", seed: 7 });
  });

  it("has the GGUF magic, version 3 and matching counts", () => {
    const h = walkHeader(fs.readFileSync(file));
    expect(h.version).toBe(3);
    expect(h.nTensors).toBe(3 + 9 * shape.layers);
    expect(h.nKv).toBe(h.keys.length);
    expect(h.keys).not.toContain("general.alignment"); // default 32 is implicit
  });

  it("writes the llama metadata the loader reads", async () => {
    const { typedMetadata: md } = await gguf(file, { allowLocalFile: true, typedMetadata: true });
    const val = (k: string) => (md as Record<string, { value: unknown; type: number; subType?: number }>)[k];
    expect(val("general.architecture").value).toBe("llama");
    const u32: [string, number][] = [
      ["llama.context_length", shape.ctx],
      ["llama.embedding_length", shape.embd],
      ["llama.block_count", shape.layers],
      ["llama.feed_forward_length", shape.ff],
      ["llama.attention.head_count", shape.heads],
      ["llama.attention.head_count_kv", shape.kvHeads],
      ["llama.rope.dimension_count", shape.embd / shape.heads],
      ["general.file_type", 7],
      ["tokenizer.ggml.unknown_token_id", 0],
      ["tokenizer.ggml.bos_token_id", 1],
      ["tokenizer.ggml.eos_token_id", 2],
    ];
    for (const [k, v] of u32) {
      expect(val(k), k).toBeDefined();
      expect(val(k).type, k).toBe(4); // UINT32
      expect(val(k).value, k).toBe(v);
    }
    expect(val("llama.attention.layer_norm_rms_epsilon").type).toBe(6); // FLOAT32
    expect(val("llama.attention.layer_norm_rms_epsilon").value).toBeCloseTo(1e-5, 9);
    expect(val("tokenizer.ggml.model").value).toBe("llama");
    expect(val("tokenizer.ggml.add_bos_token")).toMatchObject({ type: 7, value: true });
    expect(val("tokenizer.chat_template")).toBeUndefined();

    const tokens = val("tokenizer.ggml.tokens");
    const scores = val("tokenizer.ggml.scores");
    const types = val("tokenizer.ggml.token_type");
    expect([tokens.type, tokens.subType]).toEqual([9, 8]);
    expect([scores.type, scores.subType]).toEqual([9, 6]);
    expect([types.type, types.subType]).toEqual([9, 5]);
    const tok = tokens.value as string[];
    const tt = types.value as number[];
    const sc = scores.value as number[];
    expect(tok.length).toBe(shape.vocab);
    expect(tt.length).toBe(shape.vocab);
    expect(sc.length).toBe(shape.vocab);
    expect(new Set(tok).size).toBe(shape.vocab); // llama.cpp asserts token_to_id.size() == id_to_token.size()
    expect(tok.slice(0, 3)).toEqual(["<unk>", "<s>", "</s>"]);
    expect(tt.slice(0, 3)).toEqual([2, 3, 3]);
    expect(tok.slice(3, 259)).toEqual(Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`));
    expect(tt.slice(3, 259).every((t) => t === 6)).toBe(true);
    expect(tt.slice(259).every((t) => t === 1)).toBe(true);
    expect(tok.slice(259).filter((t) => t.length === 0 || /^<.+>$/.test(t))).toEqual([]); // printable pieces, nothing special-looking
    expect(sc.slice(260).every((v, i) => v < sc[259 + i])).toBe(true); // strictly decreasing piece scores
    expect(tok).toContain("\u2581");
    expect(tok).toContain("a");
  });

  it("has every llama tensor with the right shape and type", async () => {
    const { tensorInfos } = await gguf(file, { allowLocalFile: true });
    const want = expectedTensors(shape, "q8_0");
    const got = new Map(tensorInfos.map((t) => [t.name, { shape: t.shape.map(Number), dtype: t.dtype as number }]));
    expect(got.size).toBe(tensorInfos.length); // no duplicate names
    expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
    for (const [name, w] of want) expect(got.get(name), name).toEqual(w);
  });

  it("lays out aligned, contiguous tensor data that ends exactly at the file end", async () => {
    const { tensorInfos, tensorDataOffset } = await gguf(file, { allowLocalFile: true });
    const size = fs.statSync(file).size;
    const dataOffset = Number(tensorDataOffset);
    const { headerEnd } = walkHeader(fs.readFileSync(file));
    expect(dataOffset).toBe(align(headerEnd));
    expect(dataOffset % ALIGN).toBe(0);
    let expectOffset = 0;
    for (const t of tensorInfos) {
      const off = Number(t.offset);
      expect(off % ALIGN, t.name).toBe(0);
      expect(off, t.name).toBe(expectOffset); // gguf.cpp requires exactly this
      const n = nbytes(t.dtype, t.shape.map(Number));
      expect(dataOffset + off + n, t.name).toBeLessThanOrEqual(size);
      expectOffset = off + align(n);
    }
    expect(size).toBe(dataOffset + expectOffset); // header + padding + data, nothing else
    expect(result.bytes).toBe(size);
    expect(result.dataOffset).toBe(dataOffset);
    expect(randomLlamaModelLayout(shape, { type: "q8_0", seed: 7 }).fileBytes).toBe(size);
  });

  it("counts parameters as the comment says, and as the file holds", async () => {
    const { tensorInfos } = await gguf(file, { allowLocalFile: true });
    const inFile = tensorInfos.reduce((a, t) => a + t.shape.reduce((x, y) => x * Number(y), 1), 0);
    expect(result.parameters).toBe(inFile);
    expect(result.parameters).toBe(4_196_608);
    expect(llamaParameterCount(PRESETS.small)).toBe(33_563_136);
    expect(llamaParameterCount(PRESETS.medium)).toBe(254_313_472);
    expect(llamaParameterCount(PRESETS.medium)).toBeGreaterThan(100e6);
    expect(llamaParameterCount(PRESETS.medium)).toBeLessThan(300e6);
  });

  it("writes norms as 1.0 and small, finite q8_0 blocks", async () => {
    const { tensorInfos, tensorDataOffset } = await gguf(file, { allowLocalFile: true });
    const buf = fs.readFileSync(file);
    const base = Number(tensorDataOffset);
    const norm = tensorInfos.find((t) => t.name === "blk.1.ffn_norm.weight")!;
    for (let i = 0; i < shape.embd; i++) expect(buf.readFloatLE(base + Number(norm.offset) + 4 * i)).toBe(1);
    for (const name of ["token_embd.weight", "blk.0.attn_q.weight", "blk.3.ffn_down.weight"]) {
      const t = tensorInfos.find((x) => x.name === name)!;
      const blocks = nbytes(t.dtype, t.shape.map(Number)) / 34;
      let sum = 0;
      let sumSq = 0;
      let count = 0;
      let badScales = 0;
      let minus128 = 0;
      for (let b = 0; b < Math.min(blocks, 2000); b++) {
        const p = base + Number(t.offset) + 34 * b;
        const d = f16ToF32(buf.readUInt16LE(p));
        if (!Number.isFinite(d) || d === 0 || Math.abs(d) > 0.05 / 127 + 1e-6) badScales++;
        for (let j = 0; j < 32; j++) {
          const q = buf.readInt8(p + 2 + j);
          if (q === -128) minus128++;
          const v = q * d;
          sum += v;
          sumSq += v * v;
          count++;
        }
      }
      expect(badScales, name).toBe(0);
      expect(minus128, name).toBe(0);
      const mean = sum / count;
      const std = Math.sqrt(sumSq / count - mean * mean);
      expect(Math.abs(mean)).toBeLessThan(0.002);
      expect(std).toBeGreaterThan(0.01);
      expect(std).toBeLessThan(0.05);
    }
  });

  it("is deterministic: same seed → identical bytes, other seed → other weights, same header", async () => {
    const again = path.join(dir, "tiny-q8-again.gguf");
    const other = path.join(dir, "tiny-q8-seed8.gguf");
    await generateRandomLlamaModel(again, shape, { type: "q8_0", seed: 7 });
    const r8 = await generateRandomLlamaModel(other, shape, { type: "q8_0", seed: 8 });
    expect(sha(again)).toBe(sha(file));
    const a = fs.readFileSync(file);
    const b = fs.readFileSync(other);
    expect(b.length).toBe(a.length);
    expect(sha(other)).not.toBe(sha(file));
    expect(b.subarray(0, r8.dataOffset).equals(a.subarray(0, r8.dataOffset))).toBe(true);
    // nearly every data byte differs somewhere: compare a weight tensor region
    let diff = 0;
    for (let i = r8.dataOffset; i < r8.dataOffset + 4096; i++) if (a[i] !== b[i]) diff++;
    expect(diff).toBeGreaterThan(3000);
  });
});

describe("generateRandomLlamaModel (other types and options)", () => {
  const micro: LlamaShape = { layers: 2, embd: 64, ff: 96, heads: 4, kvHeads: 2, vocab: 300, ctx: 128 };

  for (const type of ["f32", "f16", "q4_0", "q8_0"] as const) {
    it(`writes a consistent ${type} file`, async () => {
      const file = path.join(dir, `micro-${type}.gguf`);
      const r = await generateRandomLlamaModel(file, micro, { type, seed: 3 });
      const { tensorInfos, tensorDataOffset, metadata } = await gguf(file, { allowLocalFile: true });
      expect(metadata.version).toBe(3);
      expect((metadata as Record<string, unknown>)["general.file_type"]).toBe({ f32: 0, f16: 1, q4_0: 2, q8_0: 7 }[type]);
      const want = expectedTensors(micro, type);
      expect(tensorInfos.length).toBe(want.size);
      let end = 0;
      for (const t of tensorInfos) {
        expect({ shape: t.shape.map(Number), dtype: t.dtype }, t.name).toEqual(want.get(t.name));
        expect(Number(t.offset)).toBe(end);
        end += align(nbytes(t.dtype, t.shape.map(Number)));
      }
      expect(fs.statSync(file).size).toBe(Number(tensorDataOffset) + end);
      expect(r.bytes).toBe(Number(tensorDataOffset) + end);
      // every value is finite and within ±scale
      const buf = fs.readFileSync(file);
      const q = tensorInfos.find((t) => t.name === "blk.1.attn_v.weight")!;
      const p0 = Number(tensorDataOffset) + Number(q.offset);
      const n = micro.embd * (micro.embd / micro.heads) * micro.kvHeads;
      const values: number[] = [];
      if (type === "f32") for (let i = 0; i < n; i++) values.push(buf.readFloatLE(p0 + 4 * i));
      if (type === "f16") for (let i = 0; i < n; i++) values.push(f16ToF32(buf.readUInt16LE(p0 + 2 * i)));
      if (type === "q8_0")
        for (let b = 0; b < n / 32; b++) {
          const d = f16ToF32(buf.readUInt16LE(p0 + 34 * b));
          for (let j = 0; j < 32; j++) values.push(buf.readInt8(p0 + 34 * b + 2 + j) * d);
        }
      if (type === "q4_0")
        for (let b = 0; b < n / 32; b++) {
          const d = f16ToF32(buf.readUInt16LE(p0 + 18 * b));
          for (let j = 0; j < 16; j++) {
            const x = buf[p0 + 18 * b + 2 + j];
            values.push(((x & 15) - 8) * d, ((x >> 4) - 8) * d);
          }
        }
      expect(values.length).toBe(n);
      expect(values.filter((v) => !Number.isFinite(v) || Math.abs(v) > 0.05 * 1.001)).toEqual([]);
      expect(new Set(values).size).toBeGreaterThan(8);
    });
  }

  it("embeds a ChatML template with control tokens, and ties embeddings on request", async () => {
    const file = path.join(dir, "micro-chat.gguf");
    const r = await generateRandomLlamaModel(file, micro, { type: "f16", chatTemplate: true, tieEmbeddings: true, name: "chatty" });
    const { metadata, tensorInfos } = await gguf(file, { allowLocalFile: true });
    const md = metadata as Record<string, unknown>;
    expect(md["general.name"]).toBe("chatty");
    expect(md["tokenizer.chat_template"]).toBe(CHATML_TEMPLATE);
    const tokens = md["tokenizer.ggml.tokens"] as string[];
    const types = md["tokenizer.ggml.token_type"] as number[];
    expect(tokens.length).toBe(micro.vocab);
    const imEnd = tokens.indexOf("<|im_end|>");
    expect(tokens.indexOf("<|im_start|>")).toBeGreaterThan(2);
    expect(imEnd).toBeGreaterThan(2);
    expect(types[imEnd]).toBe(3);
    expect(md["tokenizer.ggml.eot_token_id"]).toBe(imEnd);
    expect(tensorInfos.some((t) => t.name === "output.weight")).toBe(false);
    expect(r.parameters).toBe(llamaParameterCount(micro, { tieEmbeddings: true }));
    expect(r.parameters).toBe(llamaParameterCount(micro) - micro.vocab * micro.embd);
  });

  it("rejects shapes llama.cpp or the block types cannot take", async () => {
    const f = path.join(dir, "bad.gguf");
    await expect(generateRandomLlamaModel(f, { ...micro, heads: 5 })).rejects.toThrow(/multiple of heads/);
    await expect(generateRandomLlamaModel(f, { ...micro, kvHeads: 3 })).rejects.toThrow(/kvHeads/);
    await expect(generateRandomLlamaModel(f, { ...micro, embd: 48, heads: 4 }, { type: "q8_0" })).rejects.toThrow(/multiple of 32/);
    await expect(generateRandomLlamaModel(f, { ...micro, ff: 100 }, { type: "q4_0" })).rejects.toThrow(/multiple of 32/);
    await expect(generateRandomLlamaModel(f, { ...micro, vocab: 200 })).rejects.toThrow(/vocab/);
    expect(fs.existsSync(f)).toBe(false);
    // f32/f16 need no block alignment
    await expect(generateRandomLlamaModel(f, { ...micro, embd: 48, heads: 4, ff: 100 }, { type: "f16" })).resolves.toMatchObject({ type: "f16" });
  });

  it("runs from CLI arguments", async () => {
    const out = path.join(dir, "cli.gguf");
    const r = await runCli([
      "--out",
      out,
      "--layers",
      "1",
      "--embd",
      "64",
      "--ff",
      "128",
      "--heads",
      "2",
      "--kv-heads",
      "1",
      "--vocab",
      "400",
      "--ctx",
      "256",
      "--type",
      "q4_0",
      "--seed",
      "5",
      "--chat-template",
    ]);
    expect(r.shape).toEqual({ layers: 1, embd: 64, ff: 128, heads: 2, kvHeads: 1, vocab: 400, ctx: 256 });
    expect(r.parameters).toBe(llamaParameterCount(r.shape));
    expect(r.bytes).toBe(fs.statSync(out).size);
    const { metadata } = await gguf(out, { allowLocalFile: true });
    expect((metadata as Record<string, unknown>)["llama.context_length"]).toBe(256);
    expect(typeof (metadata as Record<string, unknown>)["tokenizer.chat_template"]).toBe("string");
    await expect(runCli(["--layers", "1"])).rejects.toThrow(/--out/);
  });
});

describe("GgufWriter", () => {
  it("honours a custom alignment and records general.alignment", async () => {
    const w = new GgufWriter({ alignment: 64 });
    w.setString("general.architecture", "test");
    w.addTensor("a", [3], GgmlType.F32); // 12 bytes → padded to 64
    w.addTensor("b", [32, 2], GgmlType.Q8_0); // 68 bytes → 128
    const file = path.join(dir, "align64.gguf");
    const layout = await w.writeFile(file, async (t, write) => {
      await write(new Uint8Array(t.nbytes).fill(t.name === "a" ? 1 : 2));
    });
    const { tensorInfos, tensorDataOffset, metadata } = await gguf(file, { allowLocalFile: true });
    expect((metadata as Record<string, unknown>)["general.alignment"]).toBe(64);
    expect(Number(tensorDataOffset) % 64).toBe(0);
    expect(tensorInfos.map((t) => Number(t.offset))).toEqual([0, 64]);
    expect(fs.statSync(file).size).toBe(Number(tensorDataOffset) + 64 + 128);
    expect(layout.fileBytes).toBe(fs.statSync(file).size);
    const buf = fs.readFileSync(file);
    const d = Number(tensorDataOffset);
    expect([...buf.subarray(d, d + 12)].every((x) => x === 1)).toBe(true);
    expect([...buf.subarray(d + 12, d + 64)].every((x) => x === 0)).toBe(true); // zero padding
    expect(buf[d + 64]).toBe(2);
  });

  it("rejects missing or excess tensor data, bad alignment, duplicate keys", async () => {
    const mk = () => {
      const w = new GgufWriter();
      w.addTensor("t", [8], GgmlType.F32);
      return w;
    };
    await expect(mk().writeFile(path.join(dir, "short.gguf"), (_t, write) => write(new Uint8Array(16)))).rejects.toThrow(/wrote/);
    await expect(mk().writeFile(path.join(dir, "long.gguf"), (_t, write) => write(new Uint8Array(40)))).rejects.toThrow(/too much/);
    const sink = await mk().open(path.join(dir, "open.gguf"));
    await sink.write(new Uint8Array(31));
    await expect(sink.close()).rejects.toThrow(/missing tensor data/);
    expect(() => new GgufWriter({ alignment: 48 })).toThrow(/power of two/);
    expect(() => new GgufWriter().setUint32("k", 1).setUint32("k", 2)).toThrow(/duplicate/);
    expect(() => new GgufWriter().addTensor("q", [16], GgmlType.Q4_0)).toThrow(/block size/);
  });
});
