import { monitorEventLoopDelay } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import { LlamaModel } from "../../lib/index";
import { storiesPath, THREADS } from "../helpers";

describe("event loop stays responsive", () => {
  it("p99 event-loop delay ≤ 20 ms while streaming 2,000 tokens", async () => {
    const model = await LlamaModel.load(await storiesPath());
    const ctx = await model.createContext({ contextSize: 2048, threads: THREADS });
    const h = monitorEventLoopDelay({ resolution: 1 });
    let pieces = 0;
    try {
      h.enable();
      const stream = ctx.generate("Once upon a time", { maxTokens: 2000, ignoreEos: true, temperature: 0.8, seed: 42 });
      for await (const _ of stream) pieces++;
      h.disable();
      const r = await stream.result;
      expect(r.tokenCount).toBe(2000);
      const p99ms = h.percentile(99) / 1e6;
      console.log(
        `event-loop delay over ${r.tokenCount} tokens (${pieces} pieces, ${THREADS} threads): p50 ${(h.percentile(50) / 1e6).toFixed(2)} ms, p99 ${p99ms.toFixed(2)} ms, max ${(h.max / 1e6).toFixed(2)} ms`,
      );
      expect(p99ms).toBeLessThanOrEqual(20);
    } finally {
      h.disable();
      await model.dispose();
    }
  });
});
