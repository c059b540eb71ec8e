// Several conversations in one context (createContext({ sequences: n })):
// generations on different sequences are decoded together in one batch, and
// each gives what it gives alone in a context of its own.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GenaiError, type LlamaContext, LlamaModel } from "../../lib/index";
import { storiesPath, THREADS } from "../helpers";

const PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went to the park. They", "One day, a girl named Sue"];
const GREEDY = { temperature: 0, maxTokens: 48 } as const;
const PER_SEQUENCE = 512;

describe("sequences: several conversations in one context", () => {
  let model: LlamaModel;
  let ctx: LlamaContext;
  const alone: string[] = [];
  beforeAll(async () => {
    model = await LlamaModel.load(await storiesPath());
    const single = await model.createContext({ contextSize: PER_SEQUENCE, threads: THREADS });
    for (const p of PROMPTS) {
      single.clearHistory();
      alone.push((await single.complete(p, GREEDY)).text);
    }
    await single.dispose();
    ctx = await model.createContext({ contextSize: PER_SEQUENCE * PROMPTS.length, sequences: PROMPTS.length, threads: THREADS });
  });
  afterAll(() => model.dispose());

  it("4 sequences generating at once give the greedy text of 4 separate contexts", async () => {
    expect(ctx.info.sequences).toBe(4);
    expect(ctx.info.sequenceSize).toBe(PER_SEQUENCE);
    const started = Date.now();
    const results = await Promise.all(PROMPTS.map((p, i) => ctx.sequence(i).complete(p, GREEDY)));
    console.log(`4 sequences, ${results.reduce((n, r) => n + r.tokenCount, 0)} tokens in ${Date.now() - started} ms`);
    expect(results.map((r) => r.text)).toEqual(alone);
    expect(ctx.info.sequenceTokens.every((n) => n > 0)).toBe(true);
  });

  it("each sequence keeps its own history: a second turn reuses its own KV prefix while the others work", async () => {
    for (let i = 0; i < 4; i++) ctx.sequence(i).clearHistory();
    const first = await Promise.all(PROMPTS.map((p, i) => ctx.sequence(i).complete(p, { ...GREEDY, maxTokens: 8 })));
    const second = await Promise.all(PROMPTS.map((p, i) => ctx.sequence(i).complete(p + first[i].text + " And then", { ...GREEDY, maxTokens: 8 })));
    for (const [i, r] of second.entries()) expect(r.timings.reusedTokens, `sequence ${i}`).toBeGreaterThan(first[i].timings.promptTokens - 2);
    // clearing one sequence leaves the others
    ctx.sequence(2).clearHistory();
    const tokens = ctx.info.sequenceTokens;
    expect(tokens[2]).toBe(0);
    expect(tokens[0]).toBeGreaterThan(0);
    expect(tokens[3]).toBeGreaterThan(0);
  });

  it("aborting one sequence mid-stream leaves the others' text as it is alone", async () => {
    for (let i = 0; i < 4; i++) ctx.sequence(i).clearHistory();
    const ac = new AbortController();
    const aborted = (async () => {
      const stream = ctx.sequence(1).generate(PROMPTS[1], { ...GREEDY, signal: ac.signal });
      let pieces = 0;
      for await (const _ of stream) if (++pieces === 3) ac.abort();
      return stream.result;
    })();
    const others = await Promise.all([0, 2, 3].map((i) => ctx.sequence(i).complete(PROMPTS[i], GREEDY)));
    expect((await aborted).stopReason).toBe("aborted");
    expect(others.map((r) => r.text)).toEqual([alone[0], alone[2], alone[3]]);
    // and sequence 1 goes on as if nothing happened
    ctx.sequence(1).clearHistory();
    expect((await ctx.sequence(1).complete(PROMPTS[1], GREEDY)).text).toBe(alone[1]);
  });

  it("200 generations aborted at random moments across the 4 sequences leave each giving its text as alone", async () => {
    for (let i = 0; i < 4; i++) ctx.sequence(i).clearHistory();
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const counts = { aborted: 0, finished: 0 };
    await Promise.all(
      [0, 1, 2, 3].map(async (i) => {
        for (let k = 0; k < 50; k++) {
          const ac = new AbortController();
          const stream = ctx.sequence(i).generate(PROMPTS[(i + k) % 4], { maxTokens: 32, temperature: 0.8, seed: k + 1, signal: ac.signal });
          const after = Math.floor(random() * 10);
          let pieces = 0;
          for await (const _ of stream) if (++pieces >= after) ac.abort();
          counts[(await stream.result).stopReason === "aborted" ? "aborted" : "finished"]++;
        }
      }),
    );
    expect(counts.aborted + counts.finished).toBe(200);
    expect(counts.aborted).toBeGreaterThan(100);
    const again = await Promise.all(PROMPTS.map((p, i) => ctx.sequence(i).complete(p, GREEDY)));
    expect(again.map((r) => r.text)).toEqual(alone);
  });

  it("one operation per sequence; whole-context operations wait for none; bad indices are typed errors", async () => {
    const running = ctx.sequence(0).complete(PROMPTS[0], { ...GREEDY, maxTokens: 32 });
    await expect(ctx.sequence(0).complete("x", GREEDY)).rejects.toMatchObject({ code: "BUSY", message: expect.stringMatching(/sequence is busy/) });
    await expect(ctx.saveState()).rejects.toMatchObject({ code: "BUSY" });
    expect(() => ctx.clearHistory()).toThrow(expect.objectContaining({ code: "BUSY" }));
    const other = ctx.sequence(1).complete(PROMPTS[1], { ...GREEDY, maxTokens: 4 });
    await Promise.all([running, other]);
    expect(() => ctx.sequence(4)).toThrow(GenaiError);
    expect(() => ctx.sequence(-1)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    await expect(model.createContext({ embeddings: true, sequences: 2 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(model.createContext({ sequences: 0 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});
