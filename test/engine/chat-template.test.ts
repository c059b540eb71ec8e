// Chat templates are code (GGUF tokenizer.chat_template, or { template }):
// hostile ones end in typed errors, never in a crash or a hang
// (native/llm/chat_template_check.*), and the signal ends a render at once.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { native } from "../../lib/binding/load";
import { GenaiError, LlamaModel } from "../../lib/index";
import { PRESETS, generateRandomLlamaModel } from "../../lib/tools";
import { storiesPath, tempDir } from "../helpers";

const root = path.resolve(__dirname, "..", "..");
const templatesDir = path.join(root, "deps", "llama.cpp", "models", "templates");

// Each ends in INVALID_ARGUMENT, refused before rendering (static) or stopped while rendering (a limit).
const HOSTILE: Record<string, { template: string; message: RegExp }> = {
  "recursive macro": { template: "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", message: /calls itself unconditionally/ },
  "mutual recursion": {
    template: "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}",
    message: /'a' -> 'b' -> 'a' calls itself unconditionally/,
  },
  "conditional recursion that never ends": {
    template: "{% macro f(n) %}{% if n >= 0 %}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}",
    message: /calls nested deeper than/,
  },
  "recursion through a macro passed as a value": { template: "{% macro a(g) %}{{ g(g) }}{% endmacro %}{{ a(a) }}", message: /calls nested deeper than/ },
  "recursion through call blocks": {
    template: "{% macro f(n) %}{% if n < 100000000 %}{% call f(n + 1) %}x{% endcall %}{% endif %}{% endmacro %}{{ f(0) }}",
    message: /calls nested deeper than/,
  },
  "range(10**9)": { template: "{% for i in range(1000000000) %}x{% endfor %}", message: /range\(\) of 1000000000 items/ },
  "computed range(10**9)": {
    template: "{% set n = 1000 * 1000 * 1000 %}{% for i in range(n) %}x{% endfor %}",
    message: /range\(\) of 1000000000 items/,
  },
  "nested ranges": {
    template: "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    message: /nested loops of more than/,
  },
  "huge string repetition": { template: "{{ 'x' * 1000000000 }}", message: /string repeated 1000000000 times/ },
  "computed string repetition": { template: "{% set n = 1000 * 1000 * 1000 %}{{ 'x' * n }}", message: /string repeated 1000000000 times/ },
  "string doubling": {
    template: "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    message: /pieces|bytes/,
  },
  "join amplification": { template: "{{ range(100000) | join('x' * 1000000) }}", message: /join\(\) would make/ },
  "printed output": { template: "{% set s = 'x' * 1000000 %}{% for i in range(100000) %}{{ s }}{% endfor %}", message: /printed more than/ },
  "deep nesting (brackets)": { template: `{{ ${"(".repeat(5000)}1${")".repeat(5000)} }}`, message: /nested deeper than/ },
  "deep nesting (blocks)": { template: `${"{% if true %}".repeat(500)}x${"{% endif %}".repeat(500)}`, message: /nested deeper than/ },
  "deep nesting (operator chain)": { template: `{{ 1${"+1".repeat(5000)} }}`, message: /nested deeper than/ },
  "a list that contains itself": { template: "{% set a = [] %}{{ a.append(a) }}{{ a }}", message: /would contain itself/ },
  "a namespace that contains itself": {
    template: "{% set ns = namespace() %}{% set ns.x = ns %}{{ ns | tojson }}",
    message: /would contain itself/,
  },
  "deep data": {
    template: "{% set x = [] %}{% for i in range(100000) %}{% set x = [x] %}{% endfor %}{{ x }}",
    message: /nested deeper than 64 levels/,
  },
  "shared data exploding when walked": {
    template: "{% set x = [1] %}{% for i in range(60) %}{% set x = [x, x] %}{% endfor %}{{ x | tojson }}",
    message: /more than \d+ elements/,
  },
  "oversized source": { template: `${"x".repeat(300 * 1024)}`, message: /bytes long/ },
};

// Runs the hostile templates in a child process (a crash there fails this test, not the runner).
function runChild(
  script: string,
  input: unknown,
  timeoutMs = 240_000,
): { results: Record<string, { code?: string; message?: string; ms: number; rendered?: number }>; raw: string } {
  const r = spawnSync(process.execPath, ["-e", script], {
    cwd: root,
    encoding: "utf8",
    env: process.env,
    input: JSON.stringify(input),
    timeout: timeoutMs,
    maxBuffer: 64 << 20,
  });
  const raw = `status ${r.status} signal ${r.signal}\n${r.stdout}\n${r.stderr}`;
  const results: Record<string, { code?: string; message?: string; ms: number; rendered?: number }> = {};
  for (const line of (r.stdout ?? "").split("\n")) if (line.startsWith("{")) Object.assign(results, JSON.parse(line));
  expect(r.status, raw).toBe(0);
  return { results, raw };
}

// reads { name: template (or GGUF path) } from stdin, prints one JSON line per case
const CHILD = (modelPath: string, viaGguf: boolean) => `
const g = require(${JSON.stringify(root)});
const cases = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
(async () => {
  const msgs = [{ role: "user", content: "hi" }];
  const base = ${viaGguf} ? null : await g.LlamaModel.load(${JSON.stringify(modelPath)});
  for (const [name, t] of Object.entries(cases)) {
    const m = base ?? (await g.LlamaModel.load(t));
    const t0 = Date.now();
    let out;
    try {
      const r = await m.applyChatTemplate(msgs, base ? { template: t } : {});
      out = { rendered: r.prompt.length, ms: Date.now() - t0 };
    } catch (e) {
      out = { code: e.code, message: String(e.message).slice(0, 300), ms: Date.now() - t0 };
    }
    if (!base) await m.dispose();
    process.stdout.write(JSON.stringify({ [name]: out }) + "\\n");
  }
  if (base) await base.dispose();
})();
`;

let stories: string;
let model: LlamaModel;
let tmp: ReturnType<typeof tempDir>;

beforeAll(async () => {
  stories = await storiesPath();
  model = await LlamaModel.load(stories);
  tmp = tempDir("genai-chat-template-");
});

afterAll(async () => {
  await model?.dispose();
  tmp?.cleanup();
});

describe("hostile chat templates end in typed errors", () => {
  it("as { template } (in a child process)", () => {
    const cases = Object.fromEntries(Object.entries(HOSTILE).map(([k, v]) => [k, v.template]));
    const { results, raw } = runChild(CHILD(stories, false), cases);
    for (const [name, { message }] of Object.entries(HOSTILE)) {
      const r = results[name];
      expect(r, `${name}\n${raw}`).toBeDefined();
      expect(r.code, `${name}: ${JSON.stringify(r)}`).toBe("INVALID_ARGUMENT");
      expect(r.message, name).toMatch(message);
      expect(r.ms, name).toBeLessThan(35_000);
    }
  });

  it("embedded in a GGUF's tokenizer.chat_template (in a child process)", async () => {
    const picked = [
      "recursive macro",
      "conditional recursion that never ends",
      "computed range(10**9)",
      "a list that contains itself",
      "deep nesting (brackets)",
    ];
    const files: Record<string, string> = {};
    for (const [i, name] of picked.entries()) {
      const file = path.join(tmp.dir, `hostile-${i}.gguf`);
      await generateRandomLlamaModel(file, PRESETS.tiny, { type: "q8_0", chatTemplate: HOSTILE[name].template, seed: i + 1 });
      files[name] = file;
    }
    const { results, raw } = runChild(CHILD("", true), files);
    for (const name of picked) {
      const r = results[name];
      expect(r, `${name}\n${raw}`).toBeDefined();
      expect(r.code, `${name}: ${JSON.stringify(r)}`).toBe("INVALID_ARGUMENT");
      expect(r.message, name).toMatch(HOSTILE[name].message);
    }
  });

  it("through chat(): the stream rejects with the typed error", async () => {
    const ctx = await model.createContext({ contextSize: 256 });
    try {
      await expect(
        ctx.chat([{ role: "user", content: "hi" }], { template: HOSTILE["conditional recursion that never ends"].template }).result,
      ).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
      });
    } finally {
      await ctx.dispose();
    }
  });
});

// allowed (under every limit) but slow: llama.cpp renders a template many times per call
const SLOW = "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}{{ messages[0].content }}";

describe("the signal", () => {
  it("rejects a slow render with ABORTED within a second, and the native render stops", async () => {
    const ac = new AbortController();
    const t0 = Date.now();
    const p = model.applyChatTemplate([{ role: "user", content: "hi" }], { template: SLOW, signal: ac.signal });
    setTimeout(() => ac.abort(), 300);
    await expect(p).rejects.toMatchObject({ code: "ABORTED" });
    expect(Date.now() - t0).toBeLessThan(1300);
    // the next render starts at once: nothing is left running on the model
    const r = await model.applyChatTemplate([{ role: "user", content: "hi" }], { template: "{{ messages[0].content }}" });
    expect(r.prompt).toBe("hi");
  });

  it("an aborted signal rejects before rendering; a bad signal is INVALID_ARGUMENT", async () => {
    await expect(model.applyChatTemplate([{ role: "user", content: "hi" }], { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: "ABORTED" });
    // biome-ignore lint/suspicious/noExplicitAny: a wrong type on purpose
    await expect(model.applyChatTemplate([{ role: "user", content: "hi" }], { signal: "no" as any })).rejects.toBeInstanceOf(GenaiError);
  });

  it("chat() passes its signal to the template render", async () => {
    const ctx = await model.createContext({ contextSize: 256 });
    try {
      const t0 = Date.now();
      const stream = ctx.chat([{ role: "user", content: "hi" }], { template: SLOW, signal: AbortSignal.timeout(300) });
      await expect(stream.result).rejects.toMatchObject({ code: "ABORTED" });
      expect(Date.now() - t0).toBeLessThan(1300);
    } finally {
      await ctx.dispose();
    }
  });
});

describe("exit", () => {
  it("process.exit during a slow render (no signal) exits at once", () => {
    const script = `
const g = require(${JSON.stringify(root)});
(async () => {
  const m = await g.LlamaModel.load(${JSON.stringify("STORIES")});
  m.applyChatTemplate([{ role: "user", content: "hi" }], { template: ${JSON.stringify(SLOW)} }).catch(() => {});
  setTimeout(() => { process.stdout.write("exiting " + Date.now() + "\\n"); process.exit(0); }, 300);
})();
`.replace("STORIES", stories);
    const t0 = Date.now();
    const r = spawnSync(process.execPath, ["-e", script], { cwd: root, encoding: "utf8", env: process.env, timeout: 60_000 });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    const exiting = Number(/exiting (\d+)/.exec(r.stdout)?.[1]);
    expect(Date.now() - exiting).toBeLessThan(2000);
    expect(Date.now() - t0).toBeLessThan(30_000);
  });
});

describe("the addon's applyChatTemplate (TypeScript bypassed)", () => {
  it("refuses hostile templates with typed errors, and its cancel token stops the native render", async () => {
    const addon = native();
    const handle = await addon.loadModel(stories, { gpuLayers: -1, vocabOnly: false, device: "cpu" }, undefined, new addon.CancelToken());
    try {
      const msgs = [{ role: "user", content: "hi" }];
      const opts = (template: string) => ({
        addAssistant: true,
        template,
        tools: [],
        toolChoice: "auto" as const,
        parallelToolCalls: false,
        enableThinking: true,
      });
      await expect(handle.applyChatTemplate(msgs, opts(HOSTILE["recursive macro"].template))).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
      await expect(handle.applyChatTemplate(msgs, opts(HOSTILE["a list that contains itself"].template))).rejects.toMatchObject({
        code: "INVALID_ARGUMENT",
      });
      const token = new addon.CancelToken();
      const t0 = Date.now();
      const p = handle.applyChatTemplate(msgs, opts(SLOW), token);
      setTimeout(() => token.cancel(), 300);
      await expect(p).rejects.toMatchObject({ code: "ABORTED" });
      expect(Date.now() - t0).toBeLessThan(1300);
      // not a CancelToken
      // biome-ignore lint/suspicious/noExplicitAny: a wrong type on purpose
      expect(() => handle.applyChatTemplate(msgs, { ...opts(SLOW), template: null }, {} as any)).toThrow(GenaiError);
      // every option is named; one C++ does not read is refused
      expect(() => handle.applyChatTemplate(msgs, { ...opts(SLOW), reasoningFormat: "none" } as never)).toThrow(
        expect.objectContaining({ code: "INVALID_ARGUMENT", message: "unknown applyChatTemplate field reasoningFormat" }),
      );
    } finally {
      handle.dispose();
    }
  });
});

describe("real templates", () => {
  const files = fs.existsSync(templatesDir) ? fs.readdirSync(templatesDir).filter((f) => f.endsWith(".jinja")) : [];

  it("llama.cpp ships templates to check", () => {
    expect(files.length).toBeGreaterThan(20);
  });

  it("every template in deps/llama.cpp/models/templates passes the checks and renders a 3-message conversation", async () => {
    const msgs = [
      { role: "user", content: "What is the capital of France?" },
      { role: "assistant", content: "Paris." },
      { role: "user", content: "And of Italy?" },
    ];
    const failed: string[] = [];
    for (const f of files) {
      const template = fs.readFileSync(path.join(templatesDir, f), "utf8");
      try {
        const { prompt } = await model.applyChatTemplate(msgs, { template });
        if (!prompt.includes("capital of France") || !prompt.includes("And of Italy?")) failed.push(`${f}: prompt lacks the messages`);
      } catch (e) {
        failed.push(`${f}: ${(e as Error).message.slice(0, 200)}`);
      }
    }
    expect(failed).toEqual([]);
  });
});
