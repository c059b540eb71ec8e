// The dev tools (random-weight model generators, GGUF writer) are a separate
// package entry, "genai-native/tools": the main entry must not load them, and
// the tools entry must load by package name with require and import.
// Needs `npm run build:ts`; runs against dist/.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.resolve(__dirname, "..", "..");
const dist = path.join(root, "dist");

/** Runs `code` in a child node process at the package root; returns its stdout parsed as JSON. */
function nodeJson(code: string, esm = false): unknown {
  const args = esm ? ["--input-type=module", "-e", code] : ["-e", code];
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: "utf8", env: process.env, timeout: 120_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

// Loaded-module paths under dist/cjs/tools/, as seen by a child process after running `code`.
const TOOLS_LOADED = `Object.keys(require.cache).filter((k) => k.startsWith(require("node:path").join(${JSON.stringify(dist)}, "cjs", "tools") + require("node:path").sep))`;

describe("genai-native/tools entry", () => {
  it("is built: CommonJS, types and the ESM wrapper", () => {
    for (const f of ["cjs/index.js", "cjs/tools/index.js", "cjs/tools/index.d.ts", "esm/tools.mjs", "esm/tools.d.mts"]) {
      expect(fs.existsSync(path.join(dist, f)), f).toBe(true);
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
    expect(pkg.exports["./tools"]).toEqual({
      import: { types: "./dist/esm/tools.d.mts", default: "./dist/esm/tools.mjs" },
      require: { types: "./dist/cjs/tools/index.d.ts", default: "./dist/cjs/tools/index.js" },
    });
  });

  it("the main entry loads no module under dist/cjs/tools", () => {
    const out = nodeJson(
      `const g = require(${JSON.stringify(path.join(dist, "cjs", "index.js"))});` +
        `const main = ${TOOLS_LOADED};` +
        // control: the same check sees the tools once they are loaded
        `require(${JSON.stringify(path.join(dist, "cjs", "tools", "index.js"))});` +
        `console.log(JSON.stringify({ exports: Object.keys(g).length, main, after: ${TOOLS_LOADED}.length }))`,
    ) as { exports: number; main: string[]; after: number };
    expect(out.exports).toBeGreaterThan(0);
    expect(out.main).toEqual([]);
    expect(out.after).toBeGreaterThan(5);
  });

  it('the main entry never loads fastify; require("genai-native/server") and import give createServer', () => {
    const out = nodeJson(
      `require("genai-native");` +
        `const before = Object.keys(require.cache).filter((k) => k.includes("node_modules/fastify/")).length;` +
        `const s = require("genai-native/server");` +
        `const after = Object.keys(require.cache).filter((k) => k.includes("node_modules/fastify/")).length;` +
        `console.log(JSON.stringify({ before, after, createServer: typeof s.createServer }))`,
    ) as { before: number; after: number; createServer: string };
    expect(out).toMatchObject({ before: 0, createServer: "function" });
    expect(out.after).toBeGreaterThan(0);
    expect(nodeJson(`const s = await import("genai-native/server"); console.log(JSON.stringify(typeof s.createServer))`, true)).toBe("function");
  });

  it("the main entry exports no generator or GGUF writer", () => {
    const out = nodeJson(`const g = require("genai-native"); console.log(JSON.stringify(Object.keys(g)))`) as string[];
    for (const n of ["GgufWriter", "generateRandomLlamaModel", "generateRandomSd15Model", "generateRandomEsrganModel"]) {
      expect(out).not.toContain(n);
    }
  });

  it("no source outside lib/tools imports lib/tools", () => {
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) {
          if (p !== path.join(root, "lib", "tools")) walk(p);
        } else if (e.name.endsWith(".ts")) {
          const src = fs.readFileSync(p, "utf8");
          if (/(?:from\s+|require\(\s*|import\(\s*)["'][^"']*\/tools(?:\/[^"']*)?["']/.test(src)) offenders.push(path.relative(root, p));
        }
      }
    };
    walk(path.join(root, "lib"));
    expect(offenders).toEqual([]);
  });

  it('require("genai-native/tools") exposes the generators and writes a model', () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "genai-tools-")), "m.gguf");
    try {
      const out = nodeJson(
        `const t = require("genai-native/tools");` +
          `const fns = ["generateRandomLlamaModel", "randomLlamaModelLayout", "generateRandomSd15Model", "randomSd15ModelBytes", "generateRandomEsrganModel", "syntheticSpmVocab", "llamaTensorPlan", "sd1TensorPlan", "runGenModelCli", "runGenSdModelCli"].filter((n) => typeof t[n] !== "function");` +
          `const shape = { layers: 1, embd: 64, ff: 128, heads: 2, kvHeads: 1, vocab: 300, ctx: 64 };` +
          `t.generateRandomLlamaModel(${JSON.stringify(file)}, shape, { type: "f16" }).then((r) => console.log(JSON.stringify({` +
          `resolved: require.resolve("genai-native/tools"), missing: fns, writer: typeof t.GgufWriter, q8: t.GgmlType.Q8_0,` +
          `presets: Object.keys(t.PRESETS), bytes: r.bytes, expected: t.randomLlamaModelLayout(shape, { type: "f16" }).fileBytes,` +
          `magic: require("node:fs").readFileSync(${JSON.stringify(file)}).subarray(0, 4).toString("latin1") })))`,
      ) as Record<string, unknown>;
      expect(out.resolved).toBe(path.join(dist, "cjs", "tools", "index.js"));
      expect(out.missing).toEqual([]);
      expect(out.writer).toBe("function");
      expect(out.q8).toBe(8);
      expect(out.presets).toEqual(["tiny", "small", "base", "medium"]);
      expect(out.bytes).toBe(out.expected);
      expect(out.magic).toBe("GGUF");
    } finally {
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
    }
  });

  it('import "genai-native/tools" (ESM) shares the CommonJS objects', () => {
    const out = nodeJson(
      `import { GgufWriter, generateRandomLlamaModel, generateRandomSd15Model, SD_PRESETS } from "genai-native/tools";` +
        `import tools from "genai-native/tools";` +
        `import { createRequire } from "node:module";` +
        `const cjs = createRequire(import.meta.url)("genai-native/tools");` +
        `console.log(JSON.stringify({ same: GgufWriter === cjs.GgufWriter && generateRandomLlamaModel === cjs.generateRandomLlamaModel && tools === cjs,` +
        `sd: typeof generateRandomSd15Model, presets: Object.keys(SD_PRESETS), path: import.meta.resolve("genai-native/tools") }))`,
      true,
    ) as { same: boolean; sd: string; presets: string[]; path: string };
    expect(out.same).toBe(true);
    expect(out.sd).toBe("function");
    expect(out.presets).toEqual(["tiny", "sd15"]);
    expect(out.path.endsWith("/dist/esm/tools.mjs")).toBe(true);
  });
});
