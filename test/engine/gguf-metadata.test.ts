// readGgufSummary parses the GGUF header on a worker thread: a 152,000-token
// vocabulary (Qwen-sized) used to block the event loop 200–360 ms.
import fs from "node:fs";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { afterAll, describe, expect, it } from "vitest";
import { readGgufSummary } from "../../lib/models/metadata";
import { GgufValueType } from "../../lib/tools/gguf/format";
import { serializeGguf, type GgufDoc } from "../../lib/tools/fuzz/gguf-doc";
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
