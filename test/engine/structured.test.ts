// Structured output: GBNF grammars, JSON schemas (llama.cpp common's
// json_schema_to_grammar), chat's responseFormat, logit bias, and the
// generated token ids. Outputs are checked with ajv, a validator nobody here wrote.
import Ajv from "ajv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LlamaModel, type LlamaContext } from "../../lib/index";
import { native } from "../../lib/binding/load";
import { storiesPath, THREADS } from "../helpers";

let model: LlamaModel;
let ctx: LlamaContext;
beforeAll(async () => {
  model = await LlamaModel.load(await storiesPath());
  ctx = await model.createContext({ contextSize: 512, threads: THREADS });
});
afterAll(async () => {
  await model?.dispose();
});

const PERSON = {
  type: "object",
  properties: {
    name: { type: "string", minLength: 1, maxLength: 12 },
    age: { type: "integer", minimum: 0, maximum: 150 },
    pet: { enum: ["cat", "dog", "none"] },
  },
  required: ["name", "age", "pet"],
  additionalProperties: false,
} as const;

const CHATML = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

describe("grammar", () => {
  it("output follows a GBNF grammar and ends when the grammar is complete", async () => {
    for (const seed of [1, 2, 3, 4]) {
      const r = await ctx.complete("Once upon a time", { grammar: 'root ::= ("yes" | "no") "."', temperature: 1, seed, maxTokens: 20 });
      expect(["yes.", "no."]).toContain(r.text);
      expect(r.stopReason).toBe("eos");
    }
  });

  it("llama.cpp's refusals are INVALID_ARGUMENT with its message, and the context still works", async () => {
    const bad = (grammar: string) => ctx.complete("Once", { grammar, maxTokens: 4 });
    await expect(bad("root ::= undefined-rule")).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/grammar/) });
    await expect(bad('root ::= "unterminated')).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(bad("root ::= root")).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/left recursion/) });
    await expect(bad('nope ::= "a"')).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/root/) });
    // deeper than the native parser's stack allows: refused before llama.cpp sees it
    await expect(bad(`root ::= ${"(".repeat(5000)}"a"${")".repeat(5000)}`)).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/nests/),
    });
    await expect(ctx.complete("Once", { grammar: 5 as never })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    const ok = await ctx.complete("Once upon a time", { temperature: 0, maxTokens: 8 });
    expect(ok.tokenCount).toBe(8);
  });

  it("a grammar that no allowed token can continue is a typed error, not an abort", async () => {
    // every token banned: the grammar (which needs "z") has nothing left to choose from
    const logitBias = Object.fromEntries(Array.from({ length: model.metadata.vocabSize ?? 0 }, (_, i) => [i, Number.NEGATIVE_INFINITY]));
    await expect(ctx.complete("Once", { grammar: 'root ::= "z"', logitBias, maxTokens: 4 })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/admits no next token/),
    });
  });
});

describe("jsonSchema and responseFormat", () => {
  const validate = new Ajv().compile(PERSON);

  it("complete() output parses and validates against the schema (several seeds)", async () => {
    for (const seed of [11, 12, 13, 14, 15]) {
      const r = await ctx.complete("Once upon a time", { jsonSchema: PERSON, temperature: 0.9, seed, maxTokens: 120 });
      expect(r.stopReason, r.text).toBe("eos");
      const value = JSON.parse(r.text);
      expect(validate(value), `${r.text} ${JSON.stringify(validate.errors)}`).toBe(true);
    }
  });

  it("chat() with responseFormat json_schema and json_object", async () => {
    const messages = [{ role: "user", content: "Tell me about a person." }];
    const r = await ctx.chat(messages, { template: CHATML, responseFormat: { type: "json_schema", schema: PERSON }, temperature: 0.7, seed: 5, maxTokens: 120 })
      .result;
    expect(validate(JSON.parse(r.text)), r.text).toBe(true);
    const o = await ctx.chat(messages, { template: CHATML, responseFormat: { type: "json_object" }, temperature: 0, maxTokens: 60 }).result;
    expect(o.text.startsWith("{"), o.text).toBe(true);
    if (o.stopReason === "eos") expect(typeof JSON.parse(o.text)).toBe("object");
    const t = await ctx.chat(messages, { template: CHATML, responseFormat: { type: "text" }, temperature: 0, maxTokens: 8 }).result;
    expect(t.tokenCount).toBe(8);
  });

  it("refuses bad schemas and combinations with typed errors", async () => {
    const bad = (o: object) => ctx.complete("Once", { maxTokens: 4, ...o });
    await expect(bad({ jsonSchema: PERSON, grammar: 'root ::= "a"' })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/combined/),
    });
    await expect(bad({ jsonSchema: "{}" })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(bad({ jsonSchema: { type: "object", properties: { a: { $ref: "#/$defs/missing" } } } })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/jsonSchema/),
    });
    let deep: object = { type: "string" };
    for (let i = 0; i < 100; i++) deep = { type: "array", items: deep };
    await expect(bad({ jsonSchema: deep })).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/nests/) });
    await expect(ctx.chat([{ role: "user", content: "x" }], { template: CHATML, responseFormat: { type: "yaml" } as never }).result).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
    await expect(
      ctx.chat([{ role: "user", content: "x" }], { template: CHATML, responseFormat: { type: "json_schema" } as never }).result,
    ).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
    });
  });

  it("the native layer checks schema depth and $ref count again", async () => {
    const h = await native().loadModel(await storiesPath(), { gpuLayers: 0, vocabOnly: false, device: "cpu" }, undefined, undefined);
    const c = await h.createContext({
      contextSize: 128,
      batchSize: 128,
      threads: THREADS,
      batchThreads: THREADS,
      flashAttention: "auto",
      embeddings: false,
      sequences: 1,
    });
    try {
      const params = {
        ...{ maxTokens: 4, temperature: 0, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, penaltyLastN: 64 },
        ...{
          seed: 1,
          stop: [],
          ignoreEos: false,
          grammar: "",
          logitBias: [],
          logprobs: -1,
          contextOverflow: "error",
          keepTokens: 0,
          chat: null,
          media: null,
          sequence: 0,
          tokens: Int32Array.of(1),
        },
      };
      const run = (jsonSchema: string) => c.generate({ ...params, jsonSchema }, () => undefined, new (native().CancelToken)());
      await expect(run(`${"[".repeat(100)}${"]".repeat(100)}`)).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/nests/) });
      const refs = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`d${i}`, { $ref: `#/$defs/d${i + 1}` }]));
      await expect(run(JSON.stringify({ $defs: refs, $ref: "#/$defs/d0" }))).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
        message: expect.stringMatching(/\$ref/),
      });
      await expect(run("{not json")).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    } finally {
      c.dispose();
      h.dispose();
    }
  });
});

describe("logitBias and token ids", () => {
  it("banning the greedy token changes the output and never emits it; a large bias forces a token", async () => {
    const base = await ctx.complete("Once upon a time", { temperature: 0, maxTokens: 12 });
    expect(await model.detokenize(base.tokens)).toBe(base.text);
    expect(base.tokens.length).toBe(base.tokenCount);
    const banned = base.tokens[0];
    const r = await ctx.complete("Once upon a time", { temperature: 0, maxTokens: 12, logitBias: { [banned]: Number.NEGATIVE_INFINITY } });
    expect(Array.from(r.tokens)).not.toContain(banned);
    expect(r.text).not.toBe(base.text);
    const forced = base.tokens[5] === 300 ? 301 : 300;
    const f = await ctx.complete("Once upon a time", { temperature: 0, maxTokens: 3, logitBias: { [forced]: 1e6 } });
    expect(Array.from(f.tokens)).toEqual([forced, forced, forced]);
    await expect(ctx.complete("Once", { logitBias: { "-1": 1 } })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(ctx.complete("Once", { logitBias: { 5: Number.POSITIVE_INFINITY } })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(ctx.complete("Once", { logitBias: { 99999: 1 } })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      message: expect.stringMatching(/\[0, 512\)/),
    });
  });
});

describe("mutated grammars and schemas never take the process down", () => {
  // mulberry32: reproducible
  function rng(seed: number) {
    let a = seed >>> 0;
    return () => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }
  function mutate(src: string, next: () => number, alphabet: string): string {
    let s = src;
    const edits = 1 + Math.floor(next() * 4);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(next() * (s.length + 1));
      const op = next();
      const ch = alphabet[Math.floor(next() * alphabet.length)];
      if (op < 0.4) s = s.slice(0, at) + ch + s.slice(at);
      else if (op < 0.7) s = s.slice(0, at) + s.slice(at + 1);
      else s = s.slice(0, at) + s.slice(at, at + 1 + Math.floor(next() * 6)).repeat(2 + Math.floor(next() * 3)) + s.slice(at + 1);
    }
    return s;
  }

  it("300 mutated GBNF grammars: each generates or is INVALID_ARGUMENT", async () => {
    const seeds = [
      'root ::= ("yes" | "no") "."',
      'root ::= item+ "!"\nitem ::= [a-z] | "x" [0-9]{1,3}',
      'root ::= "{" ws "\\"a\\":" ws [0-9]+ ws "}"\nws ::= [ \\t\\n]*',
    ];
    const next = rng(7);
    const seen: Record<string, number> = {};
    for (let i = 0; i < 300; i++) {
      const g = mutate(seeds[i % seeds.length], next, '()[]{}|*+?"\\:=-^ \nab0-9root#<>');
      try {
        await ctx.complete("Once", { grammar: g, temperature: 0.8, seed: i, maxTokens: 6 });
        seen.ok = (seen.ok ?? 0) + 1;
      } catch (e) {
        const code = (e as { code?: string }).code ?? "untyped";
        seen[code] = (seen[code] ?? 0) + 1;
        expect(code, `${JSON.stringify(g)}: ${(e as Error).message}`).toBe("INVALID_ARGUMENT");
      }
    }
    expect(seen.ok).toBeGreaterThan(20);
    expect(seen.INVALID_ARGUMENT).toBeGreaterThan(20);
  });

  it("200 mutated JSON schemas (as text, through the addon): each generates or is INVALID_ARGUMENT", async () => {
    const h = model.handle();
    const c = await h.createContext({
      contextSize: 128,
      batchSize: 128,
      threads: THREADS,
      batchThreads: THREADS,
      flashAttention: "auto",
      embeddings: false,
      sequences: 1,
    });
    const next = rng(11);
    const base = JSON.stringify(PERSON);
    let ok = 0;
    try {
      for (let i = 0; i < 200; i++) {
        const schema = mutate(base, next, '{}[]":,0123456789 $refanyOfitemstypeobjectarraystringpattern^.*+?()');
        const params = {
          ...{ maxTokens: 6, temperature: 0.8, topK: 40, topP: 0.95, minP: 0.05, repeatPenalty: 1, presencePenalty: 0, frequencyPenalty: 0 },
          ...{
            penaltyLastN: 64,
            seed: i,
            stop: [],
            ignoreEos: false,
            grammar: "",
            logitBias: [],
            logprobs: -1,
            contextOverflow: "error",
            keepTokens: 0,
            chat: null,
            media: null,
            sequence: 0,
            tokens: Int32Array.of(1),
            jsonSchema: schema,
          },
        };
        try {
          await c.generate(params, () => undefined, new (native().CancelToken)());
          ok++;
        } catch (e) {
          expect((e as { code?: string }).code, `${schema}: ${(e as Error).message}`).toBe("INVALID_ARGUMENT");
        }
      }
    } finally {
      c.dispose();
    }
    expect(ok).toBeGreaterThan(5);
  });
});

describe("logprobs", () => {
  it("each generated token's log-probability and its top alternatives, ordered and consistent", async () => {
    const r = await ctx.complete("Once upon a time", { temperature: 0, maxTokens: 16, logprobs: 5 });
    const lps = r.logprobs ?? [];
    expect(lps.length).toBe(r.tokenCount);
    expect(lps.map((l) => l.token)).toEqual(Array.from(r.tokens));
    expect(lps.map((l) => l.text).join("")).toBe(r.text);
    for (const lp of lps) {
      expect(lp.top.length).toBe(5);
      expect(lp.logprob).toBeLessThanOrEqual(0);
      // greedy: the chosen token is the most likely one
      expect(lp.top[0].token).toBe(lp.token);
      expect(lp.top[0].logprob).toBeCloseTo(lp.logprob, 6);
      for (let k = 1; k < lp.top.length; k++) expect(lp.top[k].logprob).toBeLessThanOrEqual(lp.top[k - 1].logprob);
      expect(new Set(lp.top.map((t) => t.token)).size).toBe(5);
      const mass = lp.top.reduce((s, t) => s + Math.exp(t.logprob), 0);
      expect(mass).toBeLessThanOrEqual(1 + 1e-5);
      expect(mass).toBeGreaterThan(0);
    }
  });

  it("the reported distribution is the model's own: it sums to one over the vocabulary and ignores the logit bias", async () => {
    // force each token in turn (bias +1e6) as the first generated token: its logprob is reported all the same
    const vocab = model.metadata.vocabSize ?? 0;
    let total = 0;
    let top: unknown;
    for (let t = 0; t < vocab; t++) {
      const r = await ctx.complete("Once upon a time", { temperature: 0, maxTokens: 1, ignoreEos: true, logprobs: 3, logitBias: { [t]: 1e6 } });
      expect(r.tokens[0]).toBe(t);
      total += Math.exp(r.logprobs?.[0].logprob ?? Number.NaN);
      top ??= r.logprobs?.[0].top;
      expect(r.logprobs?.[0].top).toEqual(top);
    }
    expect(total).toBeCloseTo(1, 4);
  });

  it("logprobs: 0 gives the chosen token only; out of range or sampled runs are checked", async () => {
    const r = await ctx.complete("Once", { temperature: 0.9, seed: 3, maxTokens: 6, logprobs: 0 });
    expect(r.logprobs?.length).toBe(r.tokenCount);
    for (const lp of r.logprobs ?? []) expect(lp.top).toEqual([]);
    expect((await ctx.complete("Once", { maxTokens: 2 })).logprobs).toBeUndefined();
    await expect(ctx.complete("Once", { logprobs: 21 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(ctx.complete("Once", { logprobs: -1 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});
