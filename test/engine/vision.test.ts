// Images in chat (llama.cpp's libmtmd) on a generated random-weight vision
// pair: a llama text model and an "mlp" (LLaVA-1.5) projector from
// generateRandomMmproj. Replies and image token counts are compared with
// llama.cpp's own llama-mtmd-cli built from the same sources.
import fs from "node:fs";
import path from "node:path";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ChatMessage, LlamaModel, MEDIA_MARKER, ManagedLlama, Orchestrator } from "../../lib/index";
import { createServer } from "../../lib/server/index";
import { PRESETS, generateRandomLlamaModel, generateRandomMmproj, parseGguf, serializeGguf } from "../../lib/tools";
import { MTMD_CLI, runMtmdCli, tempDir, THREADS, writeTestPng } from "../helpers";

const text = PRESETS.tiny;
const N = 24; // tokens generated per reply
const greedy = { temperature: 0, maxTokens: N } as const;
const ask = (images: unknown[], prompt = "Describe"): ChatMessage[] => [
  { role: "user", content: [...images.map((image) => ({ type: "image" as const, image: image as Buffer })), { type: "text" as const, text: prompt }] },
];

describe("vision: images in chat through libmtmd", () => {
  const tmp = tempDir("genai-native-vision-");
  const file = (n: string) => path.join(tmp.dir, n);
  let model: LlamaModel;
  let imageTokens: number;
  let pngA: Buffer;
  let pngB: Buffer;

  beforeAll(async () => {
    await generateRandomLlamaModel(file("text.gguf"), text, { chatTemplate: true, seed: 3 });
    imageTokens = (await generateRandomMmproj(file("mmproj.gguf"), { textEmbd: text.embd, seed: 5 })).imageTokens;
    pngA = writeTestPng(file("a.png"), 40, 23, 0);
    pngB = writeTestPng(file("b.png"), 31, 57, 4);
    model = await LlamaModel.load(file("text.gguf"), { mmproj: file("mmproj.gguf"), device: "cpu" });
  });
  afterAll(async () => {
    await model?.dispose();
    tmp.cleanup();
  });

  it("loads the projector beside the model: capabilities say images", async () => {
    expect(model.capabilities).toEqual({ vision: true, audio: false });
    const plain = await LlamaModel.load(file("text.gguf"), { device: "cpu" });
    expect(plain.capabilities).toEqual({ vision: false, audio: false });
    await plain.dispose();
  });

  it.skipIf(!MTMD_CLI)("one image and two: the greedy reply and image token count are llama-mtmd-cli's [needs llama-mtmd-cli built]", async () => {
    const ctx = await model.createContext({ contextSize: 512, threads: THREADS });
    const replies = new Set<string>();
    for (const images of [["a.png"], ["b.png"], ["a.png", "b.png"]]) {
      await ctx.clearHistory();
      const r = await ctx.chat(ask(images.map(file)), greedy).result;
      const cli = runMtmdCli({ model: file("text.gguf"), mmproj: file("mmproj.gguf"), images: images.map(file), prompt: "Describe", tokens: N });
      expect(cli.status, cli.log.slice(-2000)).toBe(0);
      expect(cli.imageTokens).toBe(imageTokens * images.length);
      expect(r.timings.mediaTokens, images.join("+")).toBe(cli.imageTokens);
      expect(r.text, images.join("+")).toBe(cli.text.trim());
      expect(r.tokenCount).toBe(N);
      replies.add(r.text);
    }
    expect(replies.size).toBe(3); // each image set its own reply
    await ctx.dispose();
  });

  it("the image reaches the model: two images give two replies; bytes, a path, raw pixels and a GeneratedImage are the same image", async () => {
    const ctx = await model.createContext({ contextSize: 512, threads: THREADS });
    const reply = async (image: unknown) => {
      await ctx.clearHistory();
      return (await ctx.chat(ask([image]), greedy).result).text;
    };
    const a = await reply(pngA);
    expect(await reply(pngB)).not.toBe(a);
    expect(await reply(file("a.png"))).toBe(a);
    const { PNG } = await import("pngjs");
    const decoded = PNG.sync.read(pngA);
    const rgba = { data: new Uint8Array(decoded.data), width: decoded.width, height: decoded.height, channels: 4 as const };
    expect(await reply(rgba)).toBe(a);
    const rgb = new Uint8Array(decoded.width * decoded.height * 3);
    for (let i = 0; i < decoded.width * decoded.height; i++) rgb.set(decoded.data.subarray(4 * i, 4 * i + 3), 3 * i);
    expect(await reply({ data: rgb, width: decoded.width, height: decoded.height, channels: 3 })).toBe(a);
    // an image job's result (lib/diffusion GeneratedImage): its PNG
    expect(await reply({ png: pngA, width: decoded.width, height: decoded.height, seed: 1 })).toBe(a);
    await ctx.dispose();
  });

  it("a follow-up turn finds the image in the KV cache and decodes only the new text", async () => {
    const ctx = await model.createContext({ contextSize: 512, threads: THREADS });
    const first = await ctx.chat(ask([pngA]), greedy).result;
    expect(first.timings.promptTokens).toBeGreaterThan(imageTokens);
    expect(first.timings.mediaEncodeMs).toBeGreaterThan(0);
    expect(first.timings.mediaDecodeMs).toBeGreaterThan(0);
    expect(first.timings.mediaEncodeMs + first.timings.mediaDecodeMs).toBeLessThan(first.timings.promptMs);
    const next = await ctx.chat([...ask([pngA]), { role: "assistant", content: first.text }, { role: "user", content: "And then?" }], greedy).result;
    expect(next.timings.mediaTokens).toBe(imageTokens);
    expect(next.timings.mediaEncodeMs).toBe(0); // found in the KV cache: not encoded again
    expect(next.timings.reusedTokens).toBeGreaterThanOrEqual(first.timings.promptTokens - 1);
    await ctx.dispose();
  });

  it("a conversation with an image survives saveState/restoreState and the orchestrator's free/restore: the image is found again, not re-encoded", async () => {
    const ctx = await model.createContext({ contextSize: 512, threads: THREADS });
    const first = await ctx.chat(ask([pngA]), greedy).result;
    const next = [...ask([pngA]), { role: "assistant" as const, content: first.text }, { role: "user" as const, content: "And then?" }];
    const saved = await ctx.saveState();
    expect(saved.tokens.some((t) => t < 0)).toBe(true); // the image's placeholder ids
    const other = await model.createContext({ contextSize: 512, threads: THREADS });
    await other.restoreState(saved);
    const a = await other.chat(next, greedy).result;
    const b = await ctx.chat(next, greedy).result;
    expect(a.text).toBe(b.text);
    expect(a.timings.mediaEncodeMs).toBe(0);
    expect(a.timings.reusedTokens).toBeGreaterThanOrEqual(first.timings.promptTokens);
    // a model without a projector refuses them
    const plain = await LlamaModel.load(file("text.gguf"), { device: "cpu" });
    const plainCtx = await plain.createContext({ contextSize: 512, threads: THREADS });
    await expect(plainCtx.restoreState(saved)).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    await plain.dispose();
    await other.dispose();
    await ctx.dispose();
    // the orchestrator's free and restore, as for an image job
    const llm = await ManagedLlama.create({
      modelPath: file("text.gguf"),
      load: { mmproj: file("mmproj.gguf"), device: "cpu" },
      context: { contextSize: 512, threads: THREADS },
    });
    const orch = new Orchestrator({ budgets: { CPU: 1e12 } });
    orch.add(llm);
    try {
      const t1 = await orch.submit({ kind: "llm", resource: llm, run: () => llm.context.chat(ask([pngA]), greedy).result }).promise;
      await llm.free("contextFreed");
      const t2 = await orch.submit({ kind: "llm", resource: llm, run: () => llm.context.chat(next, greedy).result }).promise;
      expect(t1.text).toBe(first.text);
      expect(t2.text).toBe(b.text);
      expect(t2.timings.mediaEncodeMs).toBe(0);
    } finally {
      orch.dispose();
      await llm.dispose();
    }
  });

  it("an abort while the projector encodes a large image stops it, and the context goes on", async () => {
    // 1024 image tokens through 6 blocks of width 256: an encode long enough to abort inside
    await generateRandomMmproj(file("big.gguf"), { textEmbd: text.embd, imageSize: 448, hidden: 256, heads: 4, layers: 6, seed: 9 });
    const big = await LlamaModel.load(file("text.gguf"), { mmproj: file("big.gguf"), device: "cpu" });
    const ctx = await big.createContext({ contextSize: 2048, threads: THREADS });
    let t0 = performance.now();
    const full = await ctx.chat(ask([pngA]), { temperature: 0, maxTokens: 1 }).result;
    const fullMs = performance.now() - t0;
    expect(full.timings.mediaTokens).toBe(1024);
    await ctx.clearHistory();
    const ac = new AbortController();
    setTimeout(() => ac.abort(), Math.min(50, fullMs / 8));
    t0 = performance.now();
    const aborted = await ctx.chat(ask([pngB]), { temperature: 0, maxTokens: 1, signal: ac.signal }).result;
    const abortedMs = performance.now() - t0;
    expect(aborted.stopReason).toBe("aborted");
    expect(aborted.tokenCount).toBe(0);
    expect(abortedMs).toBeLessThan(fullMs / 2);
    // nothing of the aborted image stayed: the same chat again gives the first reply
    await ctx.clearHistory();
    expect((await ctx.chat(ask([pngA]), { temperature: 0, maxTokens: 1 }).result).text).toBe(full.text);
    await big.dispose();
  });

  it("4 sequences with images, aborted at random moments (also mid-encode): every finished reply is its own alone, and afterwards all are exact", async () => {
    const big = await LlamaModel.load(file("text.gguf"), { mmproj: file("big.gguf"), device: "cpu" }); // made by the abort test
    const ctx = await big.createContext({ contextSize: 8192, sequences: 4, threads: THREADS });
    const q = (i: number) => ask([i % 2 ? pngB : pngA], `Describe ${i}`);
    const ref: string[] = [];
    for (let i = 0; i < 4; i++) ref.push((await ctx.sequence(i).chat(q(i), { temperature: 0, maxTokens: 6 }).result).text);
    let aborted = 0;
    let finished = 0;
    for (let round = 0; round < 12; round++)
      await Promise.all(
        [0, 1, 2, 3].map(async (i) => {
          const ac = new AbortController();
          setTimeout(() => ac.abort(), Math.random() * 400);
          try {
            const r = await ctx.sequence(i).chat(q(i), { temperature: 0, maxTokens: 6, signal: ac.signal }).result;
            if (r.stopReason === "aborted") aborted++;
            else {
              finished++;
              expect(r.text, `sequence ${i}`).toBe(ref[i]);
            }
          } catch (e) {
            expect((e as { code: string }).code).toBe("ABORTED"); // aborted before it started
            aborted++;
          }
        }),
      );
    console.log(`images in 4 sequences: ${finished} finished, ${aborted} aborted`);
    expect(aborted).toBeGreaterThan(0);
    expect(finished).toBeGreaterThan(0);
    const after = await Promise.all([0, 1, 2, 3].map((i) => ctx.sequence(i).chat(q(i), { temperature: 0, maxTokens: 6 }).result));
    expect(after.map((r) => r.text)).toEqual(ref);
    await big.dispose();
  });

  it("errors: typed, and the model and context work after each", async () => {
    const ctx = await model.createContext({ contextSize: 512, threads: THREADS });
    const plain = await LlamaModel.load(file("text.gguf"), { device: "cpu" });
    const plainCtx = await plain.createContext({ contextSize: 512, threads: THREADS });
    await expect(plainCtx.chat(ask([pngA]), greedy).result).rejects.toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringMatching(/mmproj/) });
    // a projector made for a model of another embedding size
    await generateRandomMmproj(file("wide.gguf"), { textEmbd: text.embd * 2 });
    await expect(LlamaModel.load(file("text.gguf"), { mmproj: file("wide.gguf"), device: "cpu" })).rejects.toMatchObject({ code: "INVALID_MODEL" });
    await expect(LlamaModel.load(file("text.gguf"), { mmproj: file("missing.gguf"), device: "cpu" })).rejects.toMatchObject({ code: "MODEL_NOT_FOUND" });
    // what clip.cpp would assert on: a norm epsilon below 0 (on the compute threads) is refused at load;
    // patches that no longer match the position table assert while the graph is built: an error, and the projector is not used again
    const mutated = (name: string, key: string, value: number) => {
      const d = parseGguf(fs.readFileSync(file("mmproj.gguf")));
      const kv = d.kv.find((k) => k.key === key)!;
      kv.value = { ...kv.value, value } as typeof kv.value;
      fs.writeFileSync(file(name), serializeGguf(d));
      return file(name);
    };
    await expect(
      LlamaModel.load(file("text.gguf"), { mmproj: mutated("eps.gguf", "clip.vision.attention.layer_norm_epsilon", -1), device: "cpu" }),
    ).rejects.toMatchObject({ code: "INVALID_MODEL", message: expect.stringMatching(/layer_norm_epsilon/) });
    const odd = await LlamaModel.load(file("text.gguf"), { mmproj: mutated("patch.gguf", "clip.vision.patch_size", 7), device: "cpu" });
    const oddCtx = await odd.createContext({ contextSize: 512, threads: THREADS });
    await expect(oddCtx.chat(ask([pngA]), greedy).result).rejects.toMatchObject({ code: "INVALID_MODEL", message: expect.stringMatching(/assertion/) });
    await expect(oddCtx.chat(ask([pngA]), greedy).result).rejects.toMatchObject({
      code: "INVALID_MODEL",
      message: expect.stringMatching(/load the model again/),
    });
    expect((await oddCtx.chat([{ role: "user", content: "Hello" }], greedy).result).tokenCount).toBeGreaterThan(0); // text still works
    await odd.dispose();
    fs.writeFileSync(file("junk.gguf"), Buffer.from("GGUF\x03\x00\x00\x00junk"));
    await expect(LlamaModel.load(file("text.gguf"), { mmproj: file("junk.gguf"), device: "cpu" })).rejects.toMatchObject({ code: "INVALID_MODEL" });
    // corrupt image bytes, a truncated PNG, a wrong raw size, a part of no known type
    const bad = { code: "INVALID_ARGUMENT" };
    await expect(ctx.chat(ask([Buffer.from("not an image at all")]), greedy).result).rejects.toMatchObject(bad);
    await expect(ctx.chat(ask([pngA.subarray(0, 60)]), greedy).result).rejects.toMatchObject(bad);
    await expect(ctx.chat(ask([{ data: new Uint8Array(10), width: 4, height: 4, channels: 3 }]), greedy).result).rejects.toMatchObject(bad);
    await expect(ctx.chat(ask([file("nope.png")]), greedy).result).rejects.toMatchObject(bad);
    await expect(ctx.chat([{ role: "user", content: [{ type: "video", url: "x" }] }] as never, greedy).result).rejects.toMatchObject(bad);
    // the marker typed as text with no image for it: the counts differ
    await expect(
      ctx.chat(
        [
          {
            role: "user",
            content: [
              { type: "image", image: pngA },
              { type: "text", text: MEDIA_MARKER },
            ],
          },
        ],
        greedy,
      ).result,
    ).rejects.toMatchObject(bad);
    const ok = await ctx.chat(ask([pngA]), greedy).result;
    expect(ok.tokenCount).toBeGreaterThan(0);
    expect((await plainCtx.chat([{ role: "user", content: "Hello" }], greedy).result).tokenCount).toBeGreaterThan(0);
    await plain.dispose();
    await ctx.dispose();
  });

  it("the orchestrator's ledger counts the projector's weights with the model's", async () => {
    const withProjector = await ManagedLlama.create({
      modelPath: file("text.gguf"),
      load: { mmproj: file("mmproj.gguf"), device: "cpu" },
      context: { contextSize: 512 },
    });
    const without = await ManagedLlama.create({ modelPath: file("text.gguf"), load: { device: "cpu" }, context: { contextSize: 512 } });
    const weights = (m: ManagedLlama) => m.residentHoldings().reduce((n, h) => n + (h.kind === "weights" ? h.bytes : 0), 0);
    const projector = fs.statSync(file("mmproj.gguf")).size;
    // the projector's tensor data: its file less the GGUF header
    expect(weights(withProjector) - weights(without)).toBeGreaterThan(projector * 0.9);
    expect(weights(withProjector) - weights(without)).toBeLessThanOrEqual(projector);
    await withProjector.dispose();
    await without.dispose();
  });

  it("serve: the official openai client sends an image as an image_url data URL and gets the library's reply", async () => {
    const server = await createServer({
      port: 0,
      models: [
        { id: "vision", path: file("text.gguf"), load: { mmproj: file("mmproj.gguf"), device: "cpu" }, context: { contextSize: 512, threads: THREADS } },
      ],
    });
    try {
      const { url } = await server.start();
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused", maxRetries: 0 });
      const r = await client.chat.completions.create({
        model: "vision",
        temperature: 0,
        max_tokens: N,
        messages: [
          {
            role: "user",
            content: [
              { type: "image_url", image_url: { url: `data:image/png;base64,${pngA.toString("base64")}` } },
              { type: "text", text: "Describe" },
            ],
          },
        ],
      });
      const ctx = await model.createContext({ contextSize: 512, threads: THREADS });
      const direct = await ctx.chat(ask([pngA]), greedy).result;
      await ctx.dispose();
      expect(r.choices[0].message.content).toBe(direct.text);
      expect(r.usage?.prompt_tokens).toBe(direct.timings.promptTokens);
      // a URL the server would have to fetch: 400 naming it
      await expect(
        client.chat.completions.create({
          model: "vision",
          messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "https://example.com/a.png" } }] }],
        }),
      ).rejects.toMatchObject({ status: 400, message: expect.stringMatching(/data: URL/) });
    } finally {
      await server.stop();
    }
  });
});
