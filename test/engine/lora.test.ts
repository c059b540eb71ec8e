// LoRA adapters made by the project's generator (lib/tools/llama/lora.ts) on a
// generated model: applying one changes the logits, a scale of 0 or removing it
// gives back the exact logits of the bare model, and bad adapters are typed errors.
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type CompletionResult, GenaiError, type LlamaContext, LlamaModel, type LoraAdapter } from "../../lib/index";
import { generateRandomLlamaModel } from "../../lib/tools/llama/generate";
import { generateRandomLora } from "../../lib/tools/llama/lora";
import { PRESETS } from "../../lib/tools/llama/shape";
import { storiesPath, tempDir, THREADS } from "../helpers";

describe("LoRA adapters", () => {
  let tmp: { dir: string; cleanup: () => void };
  let model: LlamaModel;
  let ctx: LlamaContext;
  let lora: LoraAdapter;
  let other: string;
  const file = (name: string) => path.join(tmp.dir, name);
  // the first 8 greedy tokens from BOS with each one's log-probability and 5 alternatives: the logits, compared exactly
  const probe = (c: LlamaContext): Promise<CompletionResult> => c.complete(Int32Array.of(1), { maxTokens: 8, ignoreEos: true, temperature: 0, logprobs: 5 });
  const logits = (r: CompletionResult) => JSON.stringify(r.logprobs);

  beforeAll(async () => {
    tmp = tempDir();
    await generateRandomLlamaModel(file("model.gguf"), PRESETS.tiny, { type: "f16", seed: 5 });
    await generateRandomLora(file("lora.gguf"), PRESETS.tiny, { rank: 8, alpha: 16, targets: ["attn_q", "attn_v", "ffn_down"], seed: 9, scale: 0.5 });
    // an adapter for another shape (more layers, wider)
    await generateRandomLora(file("other.gguf"), { ...PRESETS.tiny, embd: 512, heads: 8, kvHeads: 4, ff: 1024 }, { seed: 3 });
    other = file("other.gguf");
    model = await LlamaModel.load(file("model.gguf"));
    ctx = await model.createContext({ contextSize: 256, threads: THREADS });
    lora = await model.loadLora(file("lora.gguf"));
  });
  afterAll(async () => {
    await model?.dispose();
    tmp?.cleanup();
  });

  it("changes the logits; scale 0 and removing it restore them exactly", async () => {
    expect(lora.alpha).toBe(16);
    // each set in a fresh context: the swap on a live context is the next test's
    const fresh = async (scale: number | undefined) => {
      const c = await model.createContext({ contextSize: 256, threads: THREADS });
      try {
        if (scale !== undefined) c.setLoras([{ adapter: lora, scale }]);
        return logits(await probe(c));
      } finally {
        await c.dispose();
      }
    };
    const bare = await fresh(undefined);
    const adapted = await fresh(1);
    expect(adapted).not.toBe(bare);
    const half = await fresh(0.5);
    expect(half).not.toBe(adapted);
    expect(half).not.toBe(bare);
    expect(await fresh(0)).toBe(bare);
  });

  // Also on Vulkan: Debian 12's lavapipe (Mesa 22.3.6) crashed here in some runs (a double free inside
  // libvulkan_lvp); CI's Vulkan pass now uses Mesa 25.0.7's (scripts/debian-lavapipe.sh), where it passes.
  it("swapping on a live context needs no reload; scale 0 and removal restore the bare logits", async () => {
    const bare = await probe(ctx);
    ctx.setLoras([{ adapter: lora, scale: 1 }]);
    const adapted = await probe(ctx);
    expect(logits(adapted)).not.toBe(logits(bare));
    ctx.setLoras([{ adapter: lora, scale: 0.5 }]);
    const half = await probe(ctx);
    expect(logits(half)).not.toBe(logits(adapted));
    expect(logits(half)).not.toBe(logits(bare));
    ctx.setLoras([{ adapter: lora, scale: 0 }]);
    expect(logits(await probe(ctx))).toBe(logits(bare));
    ctx.setLoras([{ adapter: lora, scale: 1 }]);
    expect(logits(await probe(ctx))).toBe(logits(adapted));
    ctx.setLoras([]);
    expect(logits(await probe(ctx))).toBe(logits(bare));
  });

  it("a changed set forgets the KV cache (it was computed with other weights); the same set keeps it", async () => {
    ctx.setLoras([]);
    await probe(ctx);
    expect(ctx.info.kvTokens).toBeGreaterThan(0);
    ctx.setLoras([]);
    expect(ctx.info.kvTokens).toBeGreaterThan(0);
    ctx.setLoras([{ adapter: lora }]);
    expect(ctx.info.kvTokens).toBe(0);
    ctx.setLoras([]);
  });

  it("a context keeps the adapter it applies after the handle is disposed", async () => {
    const second = await model.loadLora(file("lora.gguf"));
    const c = await model.createContext({ contextSize: 256, threads: THREADS });
    try {
      c.setLoras([{ adapter: second, scale: 1 }]);
      const before = logits(await probe(c));
      second.dispose();
      c.clearHistory();
      expect(logits(await probe(c))).toBe(before);
      expect(() => c.setLoras([{ adapter: second }])).toThrow(expect.objectContaining({ code: "DISPOSED" }));
    } finally {
      await c.dispose();
    }
  });

  it("bad adapters and arguments are typed errors", async () => {
    await expect(model.loadLora(file("missing.gguf"))).rejects.toMatchObject({ code: "MODEL_NOT_FOUND" });
    await expect(model.loadLora(other)).rejects.toMatchObject({ code: "INVALID_MODEL", message: expect.stringMatching(/shape|llama\.cpp refused/) });
    // a model is not an adapter
    await expect(model.loadLora(file("model.gguf"))).rejects.toMatchObject({ code: "INVALID_MODEL", message: expect.stringMatching(/adapter/) });
    await expect(model.loadLora(file("lora.gguf"), { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: "ABORTED" });
    expect(() => ctx.setLoras([{ adapter: lora, scale: 1000 }])).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => ctx.setLoras([{ adapter: {} as never }])).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => ctx.setLoras([{ adapter: lora, weight: 1 } as never])).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    // the native side checks again: a duplicate, and an adapter of another model
    expect(() => ctx.setLoras([{ adapter: lora }, { adapter: lora }])).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/twice/) }),
    );
    const stories = await LlamaModel.load(await storiesPath());
    try {
      const sc = await stories.createContext({ contextSize: 128, threads: 1 });
      expect(() => sc.setLoras([{ adapter: lora }])).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/another model/) }),
      );
    } finally {
      await stories.dispose();
    }
    // busy while generating
    const running = ctx.complete("x", { maxTokens: 16, ignoreEos: true });
    expect(() => ctx.setLoras([])).toThrow(GenaiError);
    await running;
  });
});
