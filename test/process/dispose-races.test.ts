// dispose() racing running work: createContext, streaming, prompt decode, load, double dispose.
// Weights are freed when no model, context or job holds them any more: on Linux the
// model file's mappings in /proc/self/maps show whether anything still does.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GenaiError, LlamaModel } from "../../lib/index";
import { generateRandomLlamaModel, PRESETS } from "../../lib/tools";
import { storiesPath, tempDir, THREADS } from "../helpers";

const linux = process.platform === "linux";
/** Mappings of `file` in this process (weights of a model loaded with mmap), -1 off Linux. */
function mappings(file: string): number {
  if (!linux) return -1;
  const real = fs.realpathSync(file);
  return fs
    .readFileSync("/proc/self/maps", "utf8")
    .split("\n")
    .filter((l) => l.endsWith(real)).length;
}

async function expectDisposed(p: Promise<unknown>): Promise<void> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(GenaiError);
  expect((e as GenaiError).code).toBe("DISPOSED");
}

/** Settles once no native job holds the weights any more (the last reference drops on a native thread). */
async function mappingsGone(file: string): Promise<number> {
  // up to 5 s: a GPU driver may release memory it imported from the mapping after the free returns (seen on lavapipe)
  for (let i = 0; i < 250 && mappings(file) > 0; i++) await new Promise((r) => setTimeout(r, 20));
  return mappings(file);
}

describe("dispose races", () => {
  let tmp: ReturnType<typeof tempDir>;
  let big: string; // 8 layers, embd 512: ~34 M parameters, ~36 MB q8_0
  let stories: string;

  beforeAll(async () => {
    tmp = tempDir("genai-dispose-");
    big = path.join(tmp.dir, "small-q8_0.gguf");
    await generateRandomLlamaModel(big, PRESETS.small, { type: "q8_0", seed: 7 });
    stories = await storiesPath();
  });
  afterAll(() => tmp?.cleanup());

  it("createContext() running when dispose() is called rejects DISPOSED and frees what it made (5×)", async () => {
    // warm-up: the first load initializes the device (a Vulkan driver's own memory counts in RSS)
    const warm = await LlamaModel.load(big);
    await (await warm.createContext({ contextSize: 2048, threads: THREADS })).dispose();
    await warm.dispose();
    const rss0 = process.memoryUsage().rss;
    for (let i = 0; i < 5; i++) {
      const model = await LlamaModel.load(big);
      if (linux) expect(mappings(big)).toBeGreaterThan(0);
      const creating = model.createContext({ contextSize: 2048, threads: THREADS });
      const disposing = model.dispose();
      await expectDisposed(creating);
      await disposing;
      expect(model.disposed).toBe(true);
      if (linux) expect(await mappingsGone(big)).toBe(0);
    }
    // five leaked contexts held ~5 × (36 MB weights + 16 MB KV cache + compute buffers)
    expect(process.memoryUsage().rss - rss0).toBeLessThan(120 * 1024 * 1024);
  });

  it("createContext() after dispose() rejects DISPOSED", async () => {
    const model = await LlamaModel.load(stories);
    await model.dispose();
    await expectDisposed(model.createContext({ contextSize: 256 }));
    const model2 = await LlamaModel.load(stories);
    const disposing = model2.dispose();
    await expectDisposed(model2.createContext({ contextSize: 256 }));
    await disposing;
  });

  it("dispose() is idempotent: concurrent and repeated calls share one disposal", async () => {
    const model = await LlamaModel.load(stories);
    const ctx = await model.createContext({ contextSize: 256, threads: 1 });
    const a = model.dispose();
    const b = model.dispose();
    expect(b).toBe(a);
    await Promise.all([a, b, ctx.dispose(), ctx.dispose()]);
    await model.dispose();
    await ctx.dispose();
    expect(model.disposed).toBe(true);
    expect(ctx.disposed).toBe(true);
    expect(() => ctx.info).toThrow(/disposed/);
  });

  it("the model disposed while its context streams: the stream ends 'aborted' or rejects DISPOSED", async () => {
    for (let i = 0; i < 5; i++) {
      const model = await LlamaModel.load(stories);
      const ctx = await model.createContext({ contextSize: 2048, threads: 1 });
      const stream = ctx.generate("Once upon a time", { maxTokens: 1500, ignoreEos: true });
      let pieces = 0;
      let disposing: Promise<void> | undefined;
      const read = (async () => {
        for await (const _ of stream) if (++pieces === 1 + i * 3) disposing = model.dispose();
      })();
      const outcome = await read.then(
        () => stream.result,
        (e: unknown) => e,
      );
      await disposing;
      if (outcome instanceof GenaiError) expect(outcome.code).toBe("DISPOSED");
      else expect((outcome as { stopReason: string }).stopReason).toBe("aborted");
      expect(ctx.disposed).toBe(true);
      expect(model.disposed).toBe(true);
    }
  });

  it("the model disposed before its stream tokenized the prompt: DISPOSED", async () => {
    const model = await LlamaModel.load(stories);
    const ctx = await model.createContext({ contextSize: 256, threads: 1 });
    const stream = ctx.generate("Once upon a time", { maxTokens: 8 });
    await model.dispose();
    const r = await stream.result.then(
      (x) => x,
      (e: unknown) => e,
    );
    if (r instanceof GenaiError) expect(r.code).toBe("DISPOSED");
    else expect(r.stopReason).toBe("aborted");
  });

  it("context dispose() during a long prompt decode ends it 'aborted' at once", async () => {
    const model = await LlamaModel.load(big);
    try {
      const ctx = await model.createContext({ contextSize: 2048, batchSize: 64, threads: THREADS });
      const prompt = Int32Array.from({ length: 1800 }, (_, i) => 1 + ((i * 7919) % 8000));
      // one batch of 64 tokens, timed after a warm-up (a GPU device compiles its pipelines on first use)
      await ctx.complete(prompt.subarray(0, 8), { maxTokens: 1 });
      const warm = await ctx.complete(prompt.subarray(0, 65), { maxTokens: 1 });
      const oneBatchMs = warm.timings.promptMs;
      ctx.clearHistory();
      const t0 = Date.now();
      const stream = ctx.generate(prompt, { maxTokens: 4 });
      await new Promise((r) => setTimeout(r, 150));
      const tDispose = Date.now();
      await ctx.dispose();
      const r = await stream.result;
      expect(r.stopReason).toBe("aborted");
      expect(r.tokenCount).toBe(0);
      // a whole prompt of 1,800 tokens takes seconds here; the abort lands within one batch (on a GPU a
      // batch runs as one graph: the abort waits for it)
      expect(Date.now() - tDispose).toBeLessThan(Math.max(2000, 3 * oneBatchMs));
      expect(r.timings.promptMs).toBeLessThan(Date.now() - t0);
    } finally {
      await model.dispose();
    }
    if (linux) expect(await mappingsGone(big)).toBe(0);
  });

  it("a load aborted through its signal mid-way rejects ABORTED and frees the weights", async () => {
    for (let i = 0; i < 3; i++) {
      const ac = new AbortController();
      let progressed = 0;
      const loading = LlamaModel.load(big, {
        useMmap: false,
        signal: ac.signal,
        onProgress: (f) => {
          if (f > 0 && ++progressed === 1 + i) ac.abort();
        },
      });
      const e = await loading.then(
        (m) => m.dispose().then(() => "loaded"),
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(GenaiError);
      expect((e as GenaiError).code).toBe("ABORTED");
      if (linux) expect(await mappingsGone(big)).toBe(0);
    }
  });
});
