// readGgufSummary parses the GGUF header on a worker thread: a 152,000-token
// vocabulary (Qwen-sized) used to block the event loop 200–360 ms.
import fs from "node:fs";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { afterAll, describe, expect, it } from "vitest";
import { LlamaModel } from "../../lib/index";
import { readGgufSummary } from "../../lib/models/metadata";
import { generateRandomLlamaModel, PRESETS } from "../../lib/tools";
import { GgufValueType } from "../../lib/tools/gguf/format";
import { parseGguf, serializeGguf, type GgufDoc } from "../../lib/tools/fuzz/gguf-doc";
import { storiesPath, tempDir } from "../helpers";

const tmp = tempDir("genai-gguf-meta-");
afterAll(() => tmp.cleanup());

/** A header-only GGUF (no tensors) with an n-token vocabulary. */
function bigVocabGguf(n: number): string {
  const doc: GgufDoc = {
    version: 3,
    kv: [
      { key: "general.architecture", value: { type: GgufValueType.STRING, value: "qwen2" } },
      { key: "qwen2.block_count", value: { type: GgufValueType.UINT32, value: 28 } },
      { key: "tokenizer.ggml.model", value: { type: GgufValueType.STRING, value: "gpt2" } },
      {
        key: "tokenizer.ggml.tokens",
        value: { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, items: Array.from({ length: n }, (_, i) => `tok${i}_${"x".repeat(i % 11)}`) },
      },
      { key: "tokenizer.ggml.token_type", value: { type: GgufValueType.ARRAY, itemType: GgufValueType.INT32, items: Array.from({ length: n }, () => 1) } },
    ],
    tensors: [],
    alignment: 32,
    dataOffset: 0,
    data: Buffer.alloc(0),
    headerBytes: 0,
    fields: [],
  };
  const file = path.join(tmp.dir, `vocab-${n}.gguf`);
  fs.writeFileSync(file, serializeGguf(doc));
  return file;
}

describe("readGgufSummary off the JS thread", () => {
  it("summarizes stories260K", async () => {
    const s = await readGgufSummary(await storiesPath());
    expect(s).toMatchObject({
      architecture: "llama",
      layerCount: 5,
      embeddingLength: 64,
      headCount: 8,
      headCountKv: 4,
      vocabSize: 512,
      tokenizer: "llama",
      tensorCount: 48,
    });
    expect(s.raw["llama.block_count"]).toBe(5);
    expect(s.raw["tokenizer.ggml.tokens"]).toBeUndefined(); // arrays are not in raw
  });

  it("a 152,000-token vocabulary does not block the event loop", async () => {
    const file = bigVocabGguf(152_000);
    await readGgufSummary(file); // the worker is warm, as after the first load
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    const t0 = performance.now();
    const s = await readGgufSummary(file);
    const ms = performance.now() - t0;
    h.disable();
    expect(s.vocabSize).toBe(152_000);
    expect(s.architecture).toBe("qwen2");
    const maxDelayMs = h.max / 1e6;
    // the parse itself takes ~100 ms or more on this machine; the loop must stay responsive throughout
    expect(maxDelayMs, `parse ${ms.toFixed(0)} ms, max loop delay ${maxDelayMs.toFixed(1)} ms`).toBeLessThan(60);
  });

  it("cheap checks stay typed: missing, not GGUF", async () => {
    await expect(readGgufSummary(path.join(tmp.dir, "nope.gguf"))).rejects.toMatchObject({ code: "MODEL_NOT_FOUND" });
    const bad = path.join(tmp.dir, "bad.gguf");
    fs.writeFileSync(bad, Buffer.alloc(64, 1));
    await expect(readGgufSummary(bad)).rejects.toMatchObject({ code: "INVALID_MODEL" });
  });
});

describe("LlamaModel.load's metadata comes from the header the native load checked", () => {
  it("equals readGgufSummary's (@huggingface/gguf) for every GGUF value type", async () => {
    const base = path.join(tmp.dir, "typed-base.gguf");
    await generateRandomLlamaModel(base, PRESETS.tiny, { seed: 3, chatTemplate: true });
    const doc = parseGguf(fs.readFileSync(base));
    const T = GgufValueType;
    doc.kv.push(
      { key: "test.u8", value: { type: T.UINT8, value: 250 } },
      { key: "test.i8", value: { type: T.INT8, value: -120 } },
      { key: "test.u16", value: { type: T.UINT16, value: 65000 } },
      { key: "test.i16", value: { type: T.INT16, value: -32000 } },
      { key: "test.u32", value: { type: T.UINT32, value: 4_000_000_000 } },
      { key: "test.i32", value: { type: T.INT32, value: -2_000_000_000 } },
      { key: "test.f32", value: { type: T.FLOAT32, value: 0.1 } },
      { key: "test.f64", value: { type: T.FLOAT64, value: -1e300 } },
      { key: "test.bool", value: { type: T.BOOL, value: true } },
      { key: "test.u64.small", value: { type: T.UINT64, value: 42n } },
      { key: "test.u64.big", value: { type: T.UINT64, value: 18_000_000_000_000_000_000n } },
      { key: "test.i64", value: { type: T.INT64, value: -9_000_000_000_000_000_000n } },
      { key: "test.string", value: { type: T.STRING, value: "héllo ✓" } },
      { key: "test.array", value: { type: T.ARRAY, itemType: T.FLOAT64, items: [1, 2, 3] } },
      { key: "__proto__", value: { type: T.STRING, value: "not a prototype" } },
    );
    const file = path.join(tmp.dir, "typed.gguf");
    fs.writeFileSync(file, serializeGguf(doc));
    const expected = await readGgufSummary(file);
    expect(expected.raw["test.u64.big"]).toBe("18000000000000000000");
    for (const vocabOnly of [false, true]) {
      const m = await LlamaModel.load(file, { vocabOnly });
      try {
        const { parameters, sizeBytes, description, chatTemplate, ...fromLoad } = m.metadata;
        expect(fromLoad).toEqual(expected);
        // a "__proto__" key is data, never the object's prototype
        expect(Object.getPrototypeOf(fromLoad.raw)).toBe(Object.prototype);
        expect(Object.hasOwn(fromLoad.raw, "__proto__")).toBe(false);
      } finally {
        await m.dispose();
      }
    }
  });
});
