// contextOverflow: what a generation does when its tokens do not fit the
// context (native/llm/overflow.h), on stories260K with small contexts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LlamaModel, type ChatMessage } from "../../lib/index";
import { storiesPath, THREADS } from "../helpers";

let model: LlamaModel;
beforeAll(async () => {
  model = await LlamaModel.load(await storiesPath());
});
afterAll(async () => {
  await model?.dispose();
});

const CHATML = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
/** Share of characters that are letters, spaces or punctuation: stories260K's English stays English. */
const proseShare = (t: string) => (t.match(/[A-Za-z .,!?'"\n-]/g)?.length ?? 0) / Math.max(1, t.length);

describe("contextOverflow", () => {
  it('"shift": a generation 10x longer than the context keeps going, in prose', async () => {
    const ctx = await model.createContext({ contextSize: 128, threads: THREADS });
    try {
      const r = await ctx.complete("Once upon a time", { contextOverflow: "shift", maxTokens: 1300, temperature: 0.7, seed: 4, ignoreEos: true });
      expect(r.tokenCount).toBe(1300);
      expect(r.stopReason).toBe("maxTokens");
      expect(r.timings.discardedTokens).toBeGreaterThan(1300 - ctx.info.contextSize);
      const tail = r.text.slice(-600);
      expect(proseShare(tail), tail).toBeGreaterThan(0.95);
      expect(new Set(r.tokens.slice(-200)).size).toBeGreaterThan(20);
      expect(ctx.info.kvTokens).toBeLessThan(ctx.info.contextSize); // llama.cpp rounds 128 up to 256
      // the default stops at the end of the context, as before
      const stopped = await ctx.complete("Once upon a time", { maxTokens: 1300, temperature: 0.7, seed: 4, ignoreEos: true });
      expect(stopped.stopReason).toBe("contextFull");
      expect(stopped.timings.discardedTokens).toBe(0);
    } finally {
      await ctx.dispose();
    }
  });

  it('"truncateMiddle" / "shift": a prompt longer than the context keeps its head and newest tokens; "error" refuses it', async () => {
    const ctx = await model.createContext({ contextSize: 128, threads: THREADS });
    try {
      const long = "Lily went to the park with her mom and saw a big red ball. ".repeat(60);
      await expect(ctx.complete(long, { maxTokens: 4 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/truncateMiddle/) });
      for (const contextOverflow of ["truncateMiddle", "shift"] as const) {
        const r = await ctx.complete(long, { contextOverflow, maxTokens: 8, temperature: 0 });
        expect(r.tokenCount).toBe(8);
        expect(r.timings.promptTokens).toBeGreaterThan(300);
        const n = ctx.info.contextSize;
        expect(r.timings.truncatedTokens).toBeGreaterThan(r.timings.promptTokens - n);
        expect(r.timings.promptTokens - r.timings.truncatedTokens).toBeLessThan(n);
      }
      // keepTokens is honoured: the same tokens kept at the front give the same text
      const a = await ctx.complete(long, { contextOverflow: "truncateMiddle", keepTokens: 20, maxTokens: 8, temperature: 0 });
      ctx.clearHistory();
      const b = await ctx.complete(long, { contextOverflow: "truncateMiddle", keepTokens: 20, maxTokens: 8, temperature: 0 });
      expect(b.text).toBe(a.text);
      await expect(ctx.complete(long, { contextOverflow: "sideways" as never })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      await expect(ctx.complete(long, { contextOverflow: "shift", keepTokens: -1 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    } finally {
      await ctx.dispose();
    }
  });

  it("a chat 10x longer than the context goes on with the system prompt kept at the front", async () => {
    const ctx = await model.createContext({ contextSize: 256, threads: THREADS });
    try {
      const system: ChatMessage = { role: "system", content: "You are a kind storyteller who tells short stories about animals in the forest." };
      const messages: ChatMessage[] = [system];
      let conversationTokens = 0;
      let truncatedTurns = 0;
      for (let turn = 0; turn < 24; turn++) {
        messages.push({ role: "user", content: `Tell me what happened to the little fox on day ${turn + 1}, please.` });
        const r = await ctx.chat(messages, { template: CHATML, contextOverflow: "shift", maxTokens: 80, temperature: 0.7, seed: turn }).result;
        expect(r.tokenCount, `turn ${turn}`).toBeGreaterThan(0);
        messages.push({ role: "assistant", content: r.text });
        conversationTokens = r.timings.promptTokens + r.tokenCount;
        if (r.timings.truncatedTokens > 0) {
          truncatedTurns++;
          // the system prompt's tokens stayed at the front: the next prompt found them in the KV cache
          const systemTokens = (await model.tokenize(`<|system|>${system.content}\n`, { addSpecial: true, parseSpecial: true })).length;
          expect(r.timings.reusedTokens, `turn ${turn}`).toBeGreaterThanOrEqual(systemTokens - 1);
        }
      }
      expect(conversationTokens).toBeGreaterThan(10 * ctx.info.contextSize);
      expect(truncatedTurns).toBeGreaterThan(10);
      // without a strategy the same conversation is refused
      await expect(ctx.chat(messages, { template: CHATML, maxTokens: 8 }).result).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    } finally {
      await ctx.dispose();
    }
  });
});
