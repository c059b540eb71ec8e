// 1,000 generations aborted at random moments (before the start, in the prompt,
// mid-stream) across 4 contexts of one model; afterwards each context's next greedy
// generation is the one a fresh context gives: aborts leave no stale KV entries.
import { describe, expect, it } from "vitest";
import { GenaiError, LlamaModel } from "../../lib/index";
import { storiesPath } from "../helpers";

const PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went to the park. They", "One day, a girl named Sue"];
const GREEDY = { temperature: 0, maxTokens: 48 } as const;

/** mulberry32: a seeded PRNG, so a failing run can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// On the CPU 1,000 (about 6 s); on a GPU device (CI: Vulkan on lavapipe, a
// CPU emulation about 100 times slower per generation) 200, in about 40 s plus
// 45 s of greedy checks; the time limit is the config's (tripled on a device).
const onGpu = (process.env.GENAI_NATIVE_DEVICE ?? "cpu").toLowerCase() !== "cpu";
const TOTAL = onGpu ? 200 : 1000;

describe("abort storm", () => {
  it(`${TOTAL} generations aborted at random moments over 4 contexts; then greedy output equals a fresh context's`, async () => {
    const model = await LlamaModel.load(await storiesPath());
    try {
      const fresh = await model.createContext({ contextSize: 512, threads: 1 });
      const expected: string[] = [];
      for (const p of PROMPTS) expected.push((await fresh.complete(p, GREEDY)).text);
      await fresh.dispose();

      const contexts = await Promise.all([0, 1, 2, 3].map(() => model.createContext({ contextSize: 512, threads: 1 })));
      const counts = { aborted: 0, finished: 0, abortedBeforeStart: 0 };
      const random = rng(20240611);
      const storm = async (ctx: (typeof contexts)[number], n: number) => {
        for (let i = 0; i < n; i++) {
          const ac = new AbortController();
          const prompt = PROMPTS[Math.floor(random() * PROMPTS.length)] + " ".repeat(Math.floor(random() * 3));
          const how = random();
          if (how < 0.05) ac.abort(); // aborted before it starts
          const stream = ctx.generate(prompt, { maxTokens: 64, temperature: 0.8, seed: 1 + i, signal: ac.signal });
          if (how >= 0.05 && how < 0.35) setTimeout(() => ac.abort(), Math.floor(random() * 3)); // in the prompt or first tokens
          const afterPieces = Math.floor(random() * 12);
          let pieces = 0;
          try {
            for await (const _ of stream) if (how >= 0.35 && ++pieces >= afterPieces) ac.abort();
            const r = await stream.result;
            if (r.stopReason === "aborted") counts.aborted++;
            else counts.finished++;
          } catch (e) {
            // a signal aborted before the native call started rejects with ABORTED
            expect(e).toBeInstanceOf(GenaiError);
            expect((e as GenaiError).code).toBe("ABORTED");
            counts.abortedBeforeStart++;
          }
        }
      };
      const t0 = Date.now();
      await Promise.all(contexts.map((c) => storm(c, TOTAL / 4)));
      const seconds = (Date.now() - t0) / 1000;
      console.log(`abort storm: ${JSON.stringify(counts)} in ${seconds.toFixed(1)} s`);
      expect(counts.aborted + counts.finished + counts.abortedBeforeStart).toBe(TOTAL);
      expect(counts.aborted).toBeGreaterThan(TOTAL / 2);

      for (const ctx of contexts) {
        for (const [k, p] of PROMPTS.entries()) {
          const r = await ctx.complete(p, GREEDY);
          expect(r.text).toBe(expected[k]);
        }
        // also from an empty cache
        ctx.clearHistory();
        expect((await ctx.complete(PROMPTS[0], GREEDY)).text).toBe(expected[0]);
      }
    } finally {
      await model.dispose();
    }
  });
});
