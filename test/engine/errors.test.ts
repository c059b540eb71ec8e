import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GenaiError, LlamaModel, measureLlamaMemory } from "../../lib/index";
import { native } from "../../lib/binding/load";
import { PRESETS, generateRandomLlamaModel } from "../../lib/tools";
import { systemInfo } from "../../lib/index";
import { storiesPath, tempDir, THREADS } from "../helpers";

// Complete native parameter objects (the TS layer always sends every field).
const LOAD = { gpuLayers: -1, vocabOnly: false, device: "cpu" };
const CTX = { contextSize: 128, batchSize: 512, threads: THREADS, batchThreads: THREADS, flashAttention: "auto", embeddings: false, sequences: 1 } as const;
const GEN = {
  sequence: 0,
  maxTokens: 4,
  temperature: 0,
  topK: 40,
  topP: 0.95,
  minP: 0.05,
  repeatPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  penaltyLastN: 64,
  seed: 1,
  stop: [],
  ignoreEos: false,
  grammar: "",
  jsonSchema: "",
  logitBias: [],
  logprobs: -1,
  contextOverflow: "error",
  keepTokens: 0,
  chat: null,
  media: null,
};

let stories: string;
let tmp: { dir: string; cleanup: () => void };

beforeAll(async () => {
  stories = await storiesPath();
  tmp = tempDir();
});
afterAll(() => tmp.cleanup());

async function loadError(p: string): Promise<GenaiError> {
  try {
    const m = await LlamaModel.load(p);
    await m.dispose();
  } catch (e) {
    expect(e).toBeInstanceOf(GenaiError);
    return e as GenaiError;
  }
  throw new Error(`loading ${p} did not fail`);
}

describe("bad model files never crash", () => {
  it("missing file → MODEL_NOT_FOUND", async () => {
    expect((await loadError(path.join(tmp.dir, "nope.gguf"))).code).toBe("MODEL_NOT_FOUND");
  });

  it("a directory → INVALID_MODEL", async () => {
    expect((await loadError(tmp.dir)).code).toBe("INVALID_MODEL");
  });

  it("an empty file → INVALID_MODEL", async () => {
    const p = path.join(tmp.dir, "empty.gguf");
    fs.writeFileSync(p, "");
    expect((await loadError(p)).code).toBe("INVALID_MODEL");
  });

  it("a text file renamed .gguf → INVALID_MODEL", async () => {
    const p = path.join(tmp.dir, "text.gguf");
    fs.writeFileSync(p, "this is not a model, just some text that is long enough to pass a size check\n".repeat(10));
    const e = await loadError(p);
    expect(e.code).toBe("INVALID_MODEL");
    expect(e.message).toMatch(/magic/);
  });

  it("a GGUF truncated at many offsets → INVALID_MODEL every time", async () => {
    const full = fs.readFileSync(stories);
    const offsets = [4, 8, 16, 24, 64, 200, 1000, 4096, 8000, 20_000, 100_000, 600_000, full.length - 1000, full.length - 1];
    for (const n of offsets) {
      const p = path.join(tmp.dir, `trunc-${n}.gguf`);
      fs.writeFileSync(p, full.subarray(0, n));
      const e = await loadError(p);
      expect(e.code, `truncated at ${n}`).toBe("INVALID_MODEL");
    }
    // the real file still loads afterwards
    const m = await LlamaModel.load(stories);
    await m.dispose();
  });

  it("the native layer checks files too (TS bypassed)", async () => {
    const addon = native();
    const p = path.join(tmp.dir, "text2.gguf");
    fs.writeFileSync(p, "plain text");
    await expect(addon.loadModel(p, LOAD, undefined, new addon.CancelToken())).rejects.toMatchObject({ code: "INVALID_MODEL" });
    await expect(addon.loadModel(path.join(tmp.dir, "missing.gguf"), LOAD, undefined, new addon.CancelToken())).rejects.toMatchObject({
      code: "MODEL_NOT_FOUND",
    });
    await expect(addon.loadModel(tmp.dir, LOAD, undefined, new addon.CancelToken())).rejects.toMatchObject({ code: "INVALID_MODEL" });
    // the rejection is the JS GenaiError class itself, constructed in C++
    await expect(addon.loadModel(tmp.dir, LOAD, undefined, new addon.CancelToken())).rejects.toBeInstanceOf(GenaiError);
  });
});

describe("bad options get INVALID_ARGUMENT in TS and in C++", () => {
  let model: LlamaModel;
  beforeAll(async () => {
    model = await LlamaModel.load(stories);
  });
  afterAll(async () => model?.dispose());

  const badLoad: [string, object][] = [
    ["gpuLayers NaN", { gpuLayers: NaN }],
    ["gpuLayers negative", { gpuLayers: -5 }],
    ["gpuLayers huge", { gpuLayers: 1e12 }],
    ["useMmap not boolean", { useMmap: "yes" }],
    ["onProgress not a function", { onProgress: 3 }],
    ["signal not a signal", { signal: {} }],
  ];
  for (const [name, opts] of badLoad) {
    it(`load: ${name}`, async () => {
      await expect(LlamaModel.load(stories, opts as never)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    });
  }

  const badContext: [string, object][] = [
    ["contextSize NaN", { contextSize: NaN }],
    ["contextSize negative", { contextSize: -1 }],
    ["contextSize huge", { contextSize: 1e12 }],
    ["contextSize fractional", { contextSize: 10.5 }],
    ["batchSize 0", { batchSize: 0 }],
    ["threads Infinity", { threads: Infinity }],
    ["seed negative", { seed: -1 }],
    ["seed 2^32-1", { seed: 0xffffffff }],
    ["flashAttention unknown", { flashAttention: "maybe" }],
  ];
  for (const [name, opts] of badContext) {
    it(`createContext: ${name}`, async () => {
      await expect(model.createContext(opts as never)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    });
  }

  const badGenerate: [string, object][] = [
    ["maxTokens 0", { maxTokens: 0 }],
    ["maxTokens NaN", { maxTokens: NaN }],
    ["maxTokens huge", { maxTokens: 1e15 }],
    ["temperature negative", { temperature: -1 }],
    ["temperature NaN", { temperature: NaN }],
    ["topP > 1", { topP: 2 }],
    ["minP negative", { minP: -0.1 }],
    ["topK negative", { topK: -3 }],
    ["repeatPenalty 0", { repeatPenalty: 0 }],
    ["seed huge", { seed: 2 ** 40 }],
    ["seed 2^32-1 (llama.cpp's 'random')", { seed: 0xffffffff }],
    ["stop not strings", { stop: [1] }],
    ["stop empty string", { stop: [""] }],
  ];
  for (const [name, opts] of badGenerate) {
    it(`generate: ${name}`, async () => {
      const ctx = await model.createContext({ contextSize: 256, threads: THREADS });
      try {
        await expect(ctx.complete("Hello", opts as never)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
        // nothing was lost: the context still works
        expect((await ctx.complete("Hello", { maxTokens: 3 })).tokenCount).toBeGreaterThan(0);
      } finally {
        await ctx.dispose();
      }
    });
  }

  it("the native layer validates options too (TS bypassed)", async () => {
    const addon = native();
    const h = model.handle();
    expect(() => addon.loadModel(stories, { ...LOAD, gpuLayers: NaN }, undefined, new addon.CancelToken())).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT" }),
    );
    expect(() => h.createContext({ ...CTX, contextSize: -5 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => h.createContext({ ...CTX, threads: NaN })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => h.detokenize(Int32Array.of(1, 99999), false, false)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => (h.tokenize as unknown as (x: number) => void)(42)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    const ctx = await h.createContext(CTX);
    try {
      const cancel = new addon.CancelToken();
      const gen = (p: object, cb: unknown = () => undefined) => ctx.generate({ ...GEN, tokens: Int32Array.of(1), ...p } as never, cb as never, cancel);
      expect(() => gen({ tokens: Int32Array.of(1, 99999) })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
      expect(() => gen({ tokens: [1, 2] })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
      expect(() => gen({ temperature: NaN })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
      expect(() => gen({ maxTokens: -1 })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
      expect(() => gen({}, "nope")).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
      // the TS layer's checks repeated natively: logit bias entries and their ranges
      for (const logitBias of [{}, [[1]], [[-1, 1]], [[1e6, 1]], [[1.5, 1]], [[1, Number.POSITIVE_INFINITY]], [[1, Number.NaN]], [[1, 2e9]], [["1", 1]]])
        expect(() => gen({ logitBias }), JSON.stringify(logitBias)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
      // media: null or { text, images, addSpecial, parseSpecial }; images need a projector (this model has none)
      const png = Uint8Array.of(0x89, 0x50, 0x4e, 0x47);
      const media = { text: "<__media__>x", images: [png], addSpecial: true, parseSpecial: true };
      for (const m of [
        undefined,
        5,
        { ...media, images: [] },
        { ...media, images: [[1, 2]] },
        { ...media, extra: 1 },
        { ...media, images: [{ width: 2, height: 2, rgb: new Uint8Array(5) }] },
      ])
        expect(() => gen({ media: m, tokens: new Int32Array(0) }), JSON.stringify(m)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
      expect(() => gen({ media, tokens: new Int32Array(0) })).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/projector/) }),
      );
      // LLAMA_DEFAULT_SEED (2^32−1) means "random" to llama.cpp: refused
      expect(() => gen({ seed: 0xffffffff })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
      // the sequence: one of the context's
      for (const sequence of [1, -1, 0.5, "0"])
        expect(() => gen({ sequence }), String(sequence)).toThrow(
          expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/sequence/) }),
        );
      // a chat format is checked field by field (lib/llm/types.ts ChatFormat)
      const format = {
        ...{ format: "Content-only", parser: "", generationPrompt: "", grammar: 'root ::= "a"', grammarLazy: true },
        ...{
          triggers: [{ type: "word", value: "<tool_call>", token: -1 }],
          preservedTokens: [],
          supportsThinking: false,
          thinkingStartTag: "",
          thinkingEndTags: [],
        },
      };
      const chatCases: [object, RegExp][] = [
        [{ chat: "yes" }, /chat must be null or/],
        [{ chat: { format, reasoningBudget: -1, extra: 1 } }, /unknown generate chat field extra/],
        [{ chat: { format, reasoningBudget: -2 } }, /reasoningBudget/],
        [{ chat: { format: { ...format, triggers: [{ type: "regex", value: "x", token: -1 }] }, reasoningBudget: -1 } }, /not one llama.cpp knows: regex/],
        [{ chat: { format: { ...format, triggers: [] }, reasoningBudget: -1 } }, /grammarLazy needs triggers/],
        [{ chat: { format: { ...format, triggers: [{ type: "token", value: "", token: 1e9 }] }, reasoningBudget: -1 } }, /token/],
        [{ chat: { format, reasoningBudget: -1 }, grammar: 'root ::= "b"' }, /cannot be given with tools/],
        [{ chat: { format: { ...format, grammarLazy: undefined }, reasoningBudget: -1 } }, /grammarLazy is required/],
      ];
      for (const [p, message] of chatCases)
        expect(() => gen(p), JSON.stringify(p)).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT", message: expect.stringMatching(message) }));
      // every field is required: C++ has no defaults of its own
      for (const key of Object.keys(GEN)) {
        const p: Record<string, unknown> = { ...GEN, tokens: Int32Array.of(1) };
        delete p[key];
        expect(() => ctx.generate(p as never, () => undefined, cancel), key).toThrow(
          expect.objectContaining({ code: "INVALID_ARGUMENT", message: `${key} is required` }),
        );
      }
      for (const key of Object.keys(CTX)) {
        const p: Record<string, unknown> = { ...CTX };
        delete p[key];
        expect(() => h.createContext(p as never), key).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT", message: `${key} is required` }));
      }
      // a prompt longer than the context
      const long = new Int32Array(ctx.info().contextSize + 10).fill(300);
      await expect(gen({ tokens: long })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      await expect(gen({ tokens: new Int32Array(0) })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      // a valid call works, and yields what the defaults object says it should
      expect((await gen({})).tokenCount).toBe(GEN.maxTokens);
    } finally {
      ctx.dispose();
    }
  });

  it("a prompt longer than the context is INVALID_ARGUMENT", async () => {
    const ctx = await model.createContext({ contextSize: 64, threads: THREADS });
    try {
      const n = ctx.info.contextSize; // llama.cpp may round the size up
      await expect(ctx.complete("Once upon a time ".repeat(n))).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
        message: expect.stringMatching(/context holds/),
      });
    } finally {
      await ctx.dispose();
    }
  });
});

describe("memory", () => {
  it("a context larger than memory is OUT_OF_MEMORY, and nothing is lost", async () => {
    // 16 layers × 2 (K, V) × 512 × 2 bytes = 32 KiB of f16 KV cache per token: 2^24 tokens need 512 GiB
    const p = path.join(tmp.dir, "wide-kv.gguf");
    await generateRandomLlamaModel(p, { layers: 16, embd: 512, ff: 128, heads: 8, kvHeads: 8, vocab: 512, ctx: 4096 }, { type: "q4_0" });
    const free = systemInfo().devices.reduce((s, d) => s + d.freeBytes, 0);
    expect(32 * 1024 * 2 ** 24).toBeGreaterThan(free); // the premise of this test
    const model = await LlamaModel.load(p);
    try {
      const err = await model.createContext({ contextSize: 2 ** 24 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(GenaiError);
      expect((err as GenaiError).code).toBe("OUT_OF_MEMORY");
      expect((err as GenaiError).message).toMatch(/MiB of KV cache/);
      const ctx = await model.createContext({ contextSize: 512, threads: THREADS });
      expect((await ctx.complete("hello", { maxTokens: 4, ignoreEos: true })).tokenCount).toBe(4);
    } finally {
      await model.dispose();
    }
  });
});

describe("use after dispose → DISPOSED", () => {
  it("model and its contexts", async () => {
    const model = await LlamaModel.load(stories);
    const ctx = await model.createContext({ contextSize: 128, threads: THREADS });
    await model.dispose();
    expect(ctx.disposed).toBe(true);
    await expect(model.tokenize("hi")).rejects.toMatchObject({ code: "DISPOSED" });
    await expect(model.createContext()).rejects.toMatchObject({ code: "DISPOSED" });
    await expect(ctx.complete("hi")).rejects.toMatchObject({ code: "DISPOSED" });
    await expect(ctx.embed("hi")).rejects.toMatchObject({ code: "DISPOSED" });
    expect(() => ctx.info).toThrow(expect.objectContaining({ code: "DISPOSED" }));
    await model.dispose(); // idempotent
    await ctx.dispose();
  });

  it("await using disposes", async () => {
    let ref: LlamaModel | undefined;
    {
      await using model = await LlamaModel.load(stories);
      ref = model;
      expect(ref.disposed).toBe(false);
    }
    expect(ref.disposed).toBe(true);
  });
});

describe("one list of error codes", () => {
  it("init() refuses a code list that lacks a code C++ uses", async () => {
    const { ERROR_CODES } = await import("../../lib/errors");
    const addon = native();
    expect(() =>
      addon.init(
        GenaiError,
        ERROR_CODES.filter((c) => c !== "BUSY"),
      ),
    ).toThrow(/BUSY/);
    addon.init(GenaiError, ERROR_CODES); // and accepts the real one
  });
});

describe("unknown options and null options are INVALID_ARGUMENT naming them", () => {
  let model: LlamaModel;
  beforeAll(async () => {
    model = await LlamaModel.load(stories);
  });
  afterAll(async () => model?.dispose());

  it("every LLM call rejects a key it does not understand, by name", async () => {
    const bad = { code: "INVALID_ARGUMENT" };
    await expect(LlamaModel.load(stories, { gpuLayer: 1 } as never)).rejects.toMatchObject({ ...bad, message: expect.stringMatching(/options\.gpuLayer/) });
    await expect(measureLlamaMemory(stories, { flashAtention: "off" } as never)).rejects.toMatchObject({
      ...bad,
      message: expect.stringMatching(/flashAtention/),
    });
    await expect(measureLlamaMemory(stories, { flashAttention: "maybe" } as never)).rejects.toMatchObject({
      ...bad,
      message: expect.stringMatching(/flashAttention/),
    });
    // and the addon itself, past TypeScript
    const ctxOpts = { contextSize: 64, batchSize: 64, embeddings: false, flashAttention: "maybe" };
    await expect(async () => native().estimateMemory(stories, { gpuLayers: 0, device: "cpu" }, ctxOpts as never)).rejects.toMatchObject({
      ...bad,
      message: expect.stringMatching(/flashAttention/),
    });
    await expect(model.createContext({ contextsize: 64 } as never)).rejects.toMatchObject({ ...bad, message: expect.stringMatching(/options\.contextsize/) });
    await expect(model.tokenize("x", { addBos: true } as never)).rejects.toMatchObject({ ...bad, message: expect.stringMatching(/addBos/) });
    await expect(model.detokenize([1], { special: true } as never)).rejects.toMatchObject({ ...bad, message: expect.stringMatching(/special/) });
    await expect(model.applyChatTemplate([{ role: "user", content: "x" }], { tmpl: "" } as never)).rejects.toMatchObject(bad);
    const ctx = await model.createContext({ contextSize: 128, threads: THREADS });
    try {
      // options that would change the output must never be ignored
      await expect(ctx.complete("Hello", { reasoningBudget: 3 } as never)).rejects.toMatchObject({
        ...bad,
        message: expect.stringMatching(/options\.reasoningBudget/),
      });
      await expect(ctx.complete("Hello", { tools: [] } as never)).rejects.toMatchObject({ ...bad, message: expect.stringMatching(/options\.tools/) });
      await expect(ctx.generate("Hello", { temprature: 0 } as never).result).rejects.toMatchObject({ ...bad, message: expect.stringMatching(/temprature/) });
      await expect(ctx.chat([{ role: "user", content: "x" }], { maxToken: 3 } as never).result).rejects.toMatchObject(bad);
      // complete's onText is known, chat's template is known
      expect((await ctx.complete("Hello", { maxTokens: 2, onText: () => undefined })).tokenCount).toBe(2);
    } finally {
      await ctx.dispose();
    }
    const emb = await model.createContext({ contextSize: 64, threads: THREADS, embeddings: true });
    try {
      await expect(emb.embed("x", { normalise: true } as never)).rejects.toMatchObject(bad);
    } finally {
      await emb.dispose();
    }
  });

  it("the addon rejects unknown fields too (TS bypassed)", async () => {
    const addon = native();
    const h = model.handle();
    expect(() => addon.loadModel(stories, { ...LOAD, mmap: true } as never, undefined, new addon.CancelToken())).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: "unknown load field mmap" }),
    );
    expect(() => h.createContext({ ...CTX, seed: 1 } as never)).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", message: "unknown context field seed" }),
    );
    const ctx = await h.createContext(CTX);
    try {
      expect(() => ctx.generate({ ...GEN, tokens: Int32Array.of(1), reasoningBudget: 3 } as never, () => undefined, new addon.CancelToken())).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT", message: "unknown generate field reasoningBudget" }),
      );
    } finally {
      ctx.dispose();
    }
  });

  it("null where an options object goes is a typed error, not a TypeError", async () => {
    const ctx = await model.createContext({ contextSize: 128, threads: THREADS });
    try {
      for (const call of [
        () => ctx.complete("x", null as never),
        () => ctx.generate("x", null as never).result,
        () => ctx.chat([{ role: "user", content: "x" }], null as never).result,
        () => model.tokenize("x", null as never),
        () => model.detokenize([1], null as never),
        () => model.applyChatTemplate([{ role: "user", content: "x" }], null as never),
        () => model.createContext(null as never),
        () => LlamaModel.load(stories, null as never),
      ]) {
        await expect(call()).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/options must be an object/) });
      }
    } finally {
      await ctx.dispose();
    }
  });

  it("detokenize takes token ids only: no null, numbers, array-likes or ids that would wrap", async () => {
    for (const bad of [null, 5, { length: 1e7 }, "12", [1.5], [-1], [2 ** 40], [Number.NaN]]) {
      await expect(model.detokenize(bad as never)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    }
    expect(typeof (await model.detokenize([1, 2]))).toBe("string");
  });

  it("estimateLlamaFromMetadata refuses a negative or missing context size", async () => {
    const { estimateLlamaFromMetadata } = await import("../../lib/index");
    await expect(estimateLlamaFromMetadata(stories, -1e12)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(estimateLlamaFromMetadata(stories, undefined as never)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await expect(estimateLlamaFromMetadata(stories, 256, { batch: 1 } as never)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    expect((await estimateLlamaFromMetadata(stories, 256)).total).toBeGreaterThan(0);
  });
});

describe("restoreState checks what it is given", () => {
  it("corrupted, truncated or foreign states and mismatched tokens are INVALID_ARGUMENT, and nothing is lost", async () => {
    const model = await LlamaModel.load(stories);
    const other = path.join(tmp.dir, "other-model.gguf");
    await generateRandomLlamaModel(other, PRESETS.tiny, { seed: 9 });
    const otherModel = await LlamaModel.load(other);
    try {
      const ctx = await model.createContext({ contextSize: 256, threads: THREADS });
      const first = await ctx.complete("Once upon a time", { temperature: 0, maxTokens: 8 });
      const saved = await ctx.saveState();
      const reference = await ctx.complete("Once upon a time" + first.text + " and", { temperature: 0, maxTokens: 8 });
      const bad = (e: RegExp) => ({ code: "INVALID_ARGUMENT", message: expect.stringMatching(e) });
      const flipped = Buffer.from(saved.state);
      flipped[flipped.length - 7] ^= 0x40;
      await expect(ctx.restoreState({ state: flipped, tokens: saved.tokens })).rejects.toMatchObject(bad(/checksum/));
      const flippedEarly = Buffer.from(saved.state); // in the hash's four-lane blocks, not its tail
      flippedEarly[40 + 17] ^= 0x01;
      await expect(ctx.restoreState({ state: flippedEarly, tokens: saved.tokens })).rejects.toMatchObject(bad(/checksum/));
      const oldFormat = Buffer.from(saved.state);
      oldFormat.writeUInt32LE(1, 4);
      await expect(ctx.restoreState({ state: oldFormat, tokens: saved.tokens })).rejects.toMatchObject(bad(/format version 1; this addon reads 2/));
      await expect(ctx.restoreState({ state: saved.state.subarray(0, saved.state.length - 100), tokens: saved.tokens })).rejects.toMatchObject(
        bad(/truncated/),
      );
      await expect(ctx.restoreState({ state: saved.state.subarray(40), tokens: saved.tokens })).rejects.toMatchObject(bad(/header/));
      await expect(ctx.restoreState({ state: saved.state, tokens: saved.tokens.subarray(1) })).rejects.toMatchObject(bad(/count/));
      const swapped = Int32Array.from(saved.tokens);
      swapped[1] = swapped[1] === 5 ? 6 : 5;
      await expect(ctx.restoreState({ state: saved.state, tokens: swapped })).rejects.toMatchObject(bad(/checksum/));
      const foreign = await otherModel.createContext({ contextSize: 256, threads: THREADS });
      await expect(foreign.restoreState(saved)).rejects.toMatchObject(bad(/another model/));
      // the real state still restores (it outlives the context that saved it) and the conversation continues exactly
      await ctx.dispose();
      const fresh = await model.createContext({ contextSize: 256, threads: THREADS });
      await fresh.restoreState(saved);
      const again = await fresh.complete("Once upon a time" + first.text + " and", { temperature: 0, maxTokens: 8 });
      expect(again.text).toBe(reference.text);
      expect(again.timings.reusedTokens).toBeGreaterThan(0);
    } finally {
      await model.dispose();
      await otherModel.dispose();
    }
  });
});
