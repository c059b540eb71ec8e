// Tool calling and reasoning through llama.cpp common's chat pipeline: real
// templates from llama.cpp (deps/llama.cpp/models/templates), llama.cpp's own
// parser test vectors (tests/test-chat.cpp), and generation under the
// tool-call grammar and the reasoning budget on a generated model whose
// vocabulary has <think>, </think>, <tool_call>, </tool_call> as single
// tokens, as real models do.
import fs from "node:fs";
import path from "node:path";
import Ajv from "ajv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ChatEvent, type ChatMessage, GenaiError, type LlamaContext, LlamaModel, type ToolDefinition } from "../../lib/index";
import { generateRandomLlamaModel } from "../../lib/tools/llama/generate";
import { PRESETS } from "../../lib/tools/llama/shape";
import { storiesPath, tempDir, THREADS } from "../helpers";

const TEMPLATES = path.resolve(__dirname, "..", "..", "deps", "llama.cpp", "models", "templates");
const template = (name: string) => fs.readFileSync(path.join(TEMPLATES, `${name}.jinja`), "utf8");

// tests/test-chat.cpp's special_function_tool
const SPECIAL_FUNCTION: ToolDefinition = {
  name: "special_function",
  description: "I'm special",
  parameters: { type: "object", properties: { arg1: { type: "integer", description: "The arg." } }, required: ["arg1"] },
};
const WEATHER: ToolDefinition = {
  name: "get_weather",
  description: "The weather in a city",
  parameters: { type: "object", properties: { city: { type: "string", maxLength: 12 } }, required: ["city"], additionalProperties: false },
};
const USER: ChatMessage[] = [{ role: "user", content: "Hey there!" }];

describe("llama.cpp's parser test vectors (tests/test-chat.cpp) through applyChatTemplate + parseChat", () => {
  let model: LlamaModel;
  beforeAll(async () => {
    model = await LlamaModel.load(await storiesPath());
  });
  afterAll(() => model.dispose());

  const formatOf = async (name: string, tools: ToolDefinition[] = [], enableThinking = true) =>
    (await model.applyChatTemplate(USER, { template: template(name), tools, enableThinking })).format;

  it("Hermes 3 / Qwen 2.5 <tool_call> JSON, Mistral Nemo [TOOL_CALLS] with the model's id", async () => {
    for (const name of ["NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "Qwen-Qwen2.5-7B-Instruct"]) {
      const f = await formatOf(name, [SPECIAL_FUNCTION]);
      const r = model.parseChat('<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}\n</tool_call>', f);
      expect(r.content, name).toBe("");
      expect(
        r.toolCalls.map((c) => [c.name, JSON.parse(c.arguments)]),
        name,
      ).toEqual([["special_function", { arg1: 1 }]]);
      expect(model.parseChat("Hello, world!\nWhat's up?", f), name).toEqual({ content: "Hello, world!\nWhat's up?", reasoning: "", toolCalls: [] });
    }
    // parallel calls: two in one reply (parallelToolCalls), each parsed with its own arguments
    const parallel = (
      await model.applyChatTemplate(USER, { template: template("Qwen-Qwen2.5-7B-Instruct"), tools: [SPECIAL_FUNCTION, WEATHER], parallelToolCalls: true })
    ).format;
    const two = model.parseChat(
      '<tool_call>\n{"name": "special_function", "arguments": {"arg1": 1}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
      parallel,
    );
    expect(two.toolCalls.map((c) => [c.name, JSON.parse(c.arguments)])).toEqual([
      ["special_function", { arg1: 1 }],
      ["get_weather", { city: "Paris" }],
    ]);
    const nemo = await formatOf("mistralai-Mistral-Nemo-Instruct-2407", [SPECIAL_FUNCTION]);
    const r = model.parseChat('[TOOL_CALLS][{"name": "special_function", "arguments": {"arg1": 1}, "id": "123456789"}]', nemo);
    expect(r.toolCalls).toHaveLength(1);
    expect(r.toolCalls[0]).toMatchObject({ name: "special_function", id: "123456789" });
    expect(JSON.parse(r.toolCalls[0].arguments)).toEqual({ arg1: 1 });
  });

  it("reasoning apart from content: DeepSeek-R1's <think> (opened by the template) and gpt-oss's analysis channel", async () => {
    // (test-chat.cpp compares content and reasoning with surrounding whitespace stripped: here the "\n" after <think> is the template's)
    const r1 = await formatOf("deepseek-ai-DeepSeek-R1-Distill-Llama-8B");
    const thought = model.parseChat("I'm\nthinking</think>Hello, world!\nWhat's up?", r1);
    expect({ ...thought, reasoning: thought.reasoning.trim() }).toEqual({ content: "Hello, world!\nWhat's up?", reasoning: "I'm\nthinking", toolCalls: [] });
    const oss = await formatOf("openai-gpt-oss-120b");
    const text = "<|channel|>analysis<|message|>I'm\nthinking<|end|><|start|>assistant<|channel|>final<|message|>Hello, world!\nWhat's up?";
    expect(model.parseChat(text, oss)).toEqual({ content: "Hello, world!\nWhat's up?", reasoning: "I'm\nthinking", toolCalls: [] });
    // a stream cut mid-way parses as partial
    expect(model.parseChat("<|channel|>analysis<|message|>I'm\nthin", oss, { partial: true }).reasoning).toBe("I'm\nthin");
  });

  it("toolChoice shapes the grammar: auto waits for the model's opening tag, required constrains from the start, none has none", async () => {
    const auto = await formatOf("Qwen-Qwen3-0.6B", [WEATHER]);
    expect(auto.grammarLazy).toBe(true);
    expect(auto.triggers.map((t) => t.value)).toContain("<tool_call>\n");
    const required = (await model.applyChatTemplate(USER, { template: template("Qwen-Qwen3-0.6B"), tools: [WEATHER], toolChoice: "required" })).format;
    expect(required.grammarLazy).toBe(false);
    expect(required.grammar).toContain("get_weather");
    const none = (await model.applyChatTemplate(USER, { template: template("Qwen-Qwen3-0.6B"), tools: [WEATHER], toolChoice: "none" })).format;
    expect(none.grammar).toBe("");
    // the template shows the tools its own way
    const { prompt } = await model.applyChatTemplate(USER, { template: template("Qwen-Qwen3-0.6B"), tools: [WEATHER] });
    expect(prompt).toContain('"name": "get_weather"');
  });

  it("bad tools, tool choices, messages and formats are typed errors", async () => {
    const t = template("Qwen-Qwen3-0.6B");
    const bad = async (p: Promise<unknown>, message: RegExp) => {
      const e = await p.catch((x: unknown) => x);
      expect(e).toBeInstanceOf(GenaiError);
      expect((e as GenaiError).code).toBe("INVALID_ARGUMENT");
      expect((e as GenaiError).message).toMatch(message);
    };
    await bad(model.applyChatTemplate(USER, { template: t, tools: [{ name: "bad name!" }] }), /tools\[0\]\.name/);
    await bad(model.applyChatTemplate(USER, { template: t, tools: [WEATHER, WEATHER] }), /distinct/);
    await bad(model.applyChatTemplate(USER, { template: t, tools: [WEATHER], toolChoice: { name: "other" } }), /toolChoice names "other"/);
    await bad(model.applyChatTemplate(USER, { template: t, toolChoice: "required" }), /at least one tool/);
    await bad(model.applyChatTemplate(USER, { template: t, tools: [{ name: "x", parameters: "{" as never }] }), /tools\[0\]\.parameters/);
    await bad(model.applyChatTemplate([{ role: "assistant", content: "", toolCalls: [{ id: "1", name: "", arguments: "{}" }] }], { template: t }), /name/);
    await bad(model.applyChatTemplate([{ role: "user", content: "hi", tool_call_id: "x" } as never], { template: t }), /tool_call_id/);
    const f = await formatOf("mistralai-Mistral-Nemo-Instruct-2407", [SPECIAL_FUNCTION]);
    expect(() => model.parseChat("hi", { ...f, format: "no-such-format" })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
    expect(() => model.parseChat("hi", { ...f, parser: "{not json" })).toThrow(expect.objectContaining({ code: "INVALID_ARGUMENT" }));
  });
});

describe("generation under the chat format (generated model with <think>/<tool_call> tokens)", () => {
  let tmp: { dir: string; cleanup: () => void };
  let model: LlamaModel;
  let ctx: LlamaContext;
  const id = async (text: string) => {
    const t = await model.tokenize(text, { addSpecial: false, parseSpecial: true });
    expect(t.length, text).toBe(1);
    return t[0];
  };
  beforeAll(async () => {
    tmp = tempDir();
    const file = path.join(tmp.dir, "chat-tokens.gguf");
    const userTokens = ["<think>", "</think>", "<tool_call>", "</tool_call>", "<｜User｜>", "<｜Assistant｜>"];
    // no "▁" before text that follows a special token, as in the BPE vocabularies these templates come with
    await generateRandomLlamaModel(file, PRESETS.tiny, { type: "q8_0", chatTemplate: true, userTokens, addSpacePrefix: false, seed: 11 });
    model = await LlamaModel.load(file);
    ctx = await model.createContext({ contextSize: 2048, threads: THREADS });
  });
  afterAll(async () => {
    await model?.dispose();
    tmp?.cleanup();
  });

  it('toolChoice "required": the grammar makes a call that fits the tool\'s schema; it streams as events and goes back into the next turn', async () => {
    // Llama 3.1's format: any text, then the call as a JSON object from its first "{". The bias sends the
    // model to "{" at once and ends the reply as soon as the grammar allows; the grammar does the rest.
    const llama31 = template("meta-llama-Llama-3.1-8B-Instruct");
    const logitBias = { [await id("{")]: 20, [await id("<|im_end|>")]: 40, [await id("</s>")]: 40 };
    const stream = ctx.chat(USER, { template: llama31, tools: [WEATHER], toolChoice: "required", logitBias, temperature: 0, maxTokens: 200 });
    const events: ChatEvent[] = [];
    const pieces: string[] = [];
    await Promise.all([
      (async () => {
        for await (const e of stream.events()) events.push(e);
      })(),
      (async () => {
        for await (const p of stream) pieces.push(p);
      })(),
    ]);
    const r = await stream.result;
    expect(r.stopReason, r.rawText).toBe("eos");
    expect(r.formatError).toBeUndefined();
    expect(r.rawText).toMatch(/^\{\s*("type"\s*:\s*"function"\s*,\s*)?"name"\s*:\s*"get_weather"\s*,\s*"parameters"\s*:/);
    expect(r.toolCalls).toHaveLength(1);
    const call = r.toolCalls[0];
    expect(call.name).toBe("get_weather");
    expect(call.id).toMatch(/^call_[A-Za-z0-9]{24}$/);
    const validate = new Ajv().compile(WEATHER.parameters as object);
    expect(validate(JSON.parse(call.arguments)), JSON.stringify(validate.errors)).toBe(true);
    // exactly the call the model emitted: its "parameters" object
    expect(JSON.parse(call.arguments)).toEqual(JSON.parse(r.rawText).parameters);
    // the stream's content is the reply's content; the call came as deltas with one id
    expect(pieces.join("")).toBe(r.text);
    const deltas = events.filter((e) => e.type === "toolCall");
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.map((e) => e.argumentsDelta).join("")).toBe(call.arguments);
    expect(new Set(deltas.map((e) => `${e.index} ${e.id} ${e.name}`))).toEqual(new Set([`0 ${call.id} get_weather`]));

    // the next turn: the call and the tool's answer rendered the template's way
    const next: ChatMessage[] = [
      ...USER,
      { role: "assistant", content: r.text, toolCalls: r.toolCalls },
      { role: "tool", content: '{"temperature": 21}', toolCallId: call.id, toolName: call.name },
    ];
    const { prompt } = await model.applyChatTemplate(next, { template: llama31, tools: [WEATHER] });
    expect(prompt).toContain('{"name": "get_weather", "parameters": ');
    expect(prompt).toContain('<|start_header_id|>ipython<|end_header_id|>\n\n"{\\"temperature\\": 21}"');
  });

  it('toolChoice "auto" (a lazy grammar with triggers) generates plainly until the model opens a call', async () => {
    const r = await ctx.chat(USER, { template: template("Qwen-Qwen3-0.6B"), tools: [WEATHER], reasoningBudget: 0, maxTokens: 24, seed: 5 }).result;
    expect(r.tokenCount).toBeGreaterThan(0);
    // whatever it wrote is content or a call llama.cpp's parser found
    expect(r.text.length + r.toolCalls.length).toBeGreaterThan(0);
  });

  it("reasoningBudget: the end tag is forced after that many thinking tokens; reasoning and content come apart, reasoning first", async () => {
    const end = await id("</think>");
    const budget = 6;
    const stream = ctx.chat(USER, {
      template: template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B"),
      reasoningBudget: budget,
      maxTokens: 30,
      ignoreEos: true,
      logitBias: { [end]: -30 }, // the model does not close it early; the forced end tag still comes (the budget masks every other token)
      seed: 7,
    });
    const events: ChatEvent[] = [];
    for await (const e of stream.events()) events.push(e);
    const r = await stream.result;
    const at = Array.from(r.tokens).indexOf(end);
    // llama.cpp's budget counts from <think> (which the template's generation prompt opens: the tokens after it
    // there count too), then may wait up to 3 tokens for a UTF-8 character to finish
    const { format } = await model.applyChatTemplate(USER, { template: template("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B") });
    const genPrompt = Array.from(await model.tokenize(format.generationPrompt, { addSpecial: false, parseSpecial: true }));
    const counted = budget - (genPrompt.length - 1 - genPrompt.indexOf(await id("<think>")));
    expect(at).toBeGreaterThanOrEqual(counted);
    expect(at).toBeLessThanOrEqual(counted + 3);
    expect(r.reasoning.length).toBeGreaterThan(0);
    expect(r.rawText.indexOf("</think>")).toBeGreaterThan(0);
    expect(r.text).toBe(r.rawText.slice(r.rawText.indexOf("</think>") + "</think>".length));
    const kinds = events.map((e) => e.type).filter((t, i, a) => i === 0 || a[i - 1] !== t);
    expect(kinds[0]).toBe("reasoning");
    expect(kinds.filter((k) => k === "reasoning")).toHaveLength(1);
  });

  it("reasoningBudget 0 turns thinking off where the template has a switch (Qwen3: an empty think block)", async () => {
    const { prompt } = await model.applyChatTemplate(USER, { template: template("Qwen-Qwen3-0.6B"), enableThinking: false });
    expect(prompt.endsWith("<|im_start|>assistant\n<think>\n\n</think>\n\n")).toBe(true);
    const r = await ctx.chat(USER, { template: template("Qwen-Qwen3-0.6B"), reasoningBudget: 0, maxTokens: 12, seed: 2 }).result;
    expect(r.reasoning).toBe("");
  });

  it("tools with grammar, jsonSchema or responseFormat are refused before anything runs", async () => {
    for (const extra of [{ grammar: 'root ::= "a"' }, { jsonSchema: { type: "object" } }, { responseFormat: { type: "json_object" as const } }]) {
      await expect(ctx.chat(USER, { tools: [WEATHER], ...extra }).result).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
    }
    await expect(ctx.chat(USER, { reasoningBudget: -1 }).result).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});
