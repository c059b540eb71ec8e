// The built package as users load it: CommonJS require, ESM import, the CLI.
// Needs `npm run build` (npm ci does it); run against dist/.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.resolve(__dirname, "..", "..");
const cli = path.join(root, "dist", "cjs", "cli", "main.js");

function node(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: "utf8", input, env: process.env, timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("package entry points", () => {
  it("dist is built", () => {
    expect(fs.existsSync(path.join(root, "dist", "cjs", "index.js"))).toBe(true);
    expect(fs.existsSync(path.join(root, "dist", "esm", "index.mjs"))).toBe(true);
    expect(fs.existsSync(path.join(root, "dist", "cjs", "index.d.ts"))).toBe(true);
  });

  it("loads with require (CommonJS) by package name", () => {
    const r = node([
      "-e",
      "const g = require('genai-native'); const v = g.versions(); console.log(JSON.stringify({ fn: typeof g.LlamaModel.load, ggml: v.ggml, commit: v.llamaCppCommit }))",
    ]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.fn).toBe("function");
    expect(out.ggml).toBe("0.25.1");
    expect(out.commit).toMatch(/^[0-9a-f]{40}$/);
  });

  it("loads with import (ESM), sharing the same classes", () => {
    const r = node([
      "--input-type=module",
      "-e",
      "import { LlamaModel, GenaiError } from 'genai-native'; import { createRequire } from 'node:module'; const cjs = createRequire(import.meta.url)('genai-native'); console.log(LlamaModel === cjs.LlamaModel && GenaiError === cjs.GenaiError)",
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("true");
  });

  it("genai-native info prints devices and versions", () => {
    const r = node([cli, "info", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    const info = JSON.parse(r.stdout);
    expect(info.devices.length).toBeGreaterThan(0);
    expect(info.devices[0].totalBytes).toBeGreaterThan(0);
    expect(info.versions.llamaCppSource).toBe("node-llama-cpp@3.22.1");
  });

  it("genai-native complete streams from the default model via the resolver", () => {
    const r = node([cli, "complete", "--max-tokens", "30", "--temperature", "0", "--json", "Once upon a time"]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.tokenCount).toBe(30);
    expect(out.text.length).toBeGreaterThan(20);
    expect(path.basename(out.model)).toBe("stories260K.gguf");
    const plain = node([cli, "complete", "--max-tokens", "30", "--temperature", "0", "Once upon a time"]);
    expect(plain.stdout.trim()).toBe(("Once upon a time" + out.text).trim());
    // stderr is a pipe here, not a terminal: the load's progress is plain lines, no \r or escape sequences
    expect(plain.stderr).toMatch(/^loading \[#+\] 100%$/m);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the control characters are what is checked
    expect(plain.stderr).not.toMatch(/[\r\x1b]/);
  });

  it("the CLI reports errors with their code and a non-zero exit", () => {
    const r = node([cli, "complete", "--model", path.join(root, "nope.gguf"), "hi"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/MODEL_NOT_FOUND/);
    const bad = node([cli, "complete", "--max-tokens", "abc", "hi"]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/INVALID_ARGUMENT/);
  });

  it("genai-native image reports a missing engine or model with its code", async () => {
    const { capabilities } = await import("../../lib/index");
    const r = node([cli, "image", "--model", path.join(root, "nope.gguf"), "--size", "64x64", "a cat"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(capabilities().diffusion ? /MODEL_NOT_FOUND/ : /ENGINE_UNAVAILABLE: .*git submodule update --init deps\/stable-diffusion\.cpp/);
    const bad = node([cli, "image", "--model", "x.gguf", "--size", "big", "a cat"]);
    expect(bad.stderr).toMatch(/INVALID_ARGUMENT/);
  });
});

describe("Electron packaging", () => {
  it("resolves the addon from an app's app.asar.unpacked copy and loads it from there", async () => {
    const { addonRoot } = await import("../../lib/binding/load");
    const base = fs.mkdtempSync(path.join(os.tmpdir(), "genai-asar-"));
    try {
      const packed = path.join(base, "resources", "app.asar", "node_modules", "genai-native");
      const unpacked = path.join(base, "resources", "app.asar.unpacked", "node_modules", "genai-native");
      // no unpacked copy: the path stays as it is
      expect(addonRoot(packed)).toBe(packed);
      fs.mkdirSync(path.join(unpacked, "build", "Release"), { recursive: true });
      fs.copyFileSync(path.join(root, "package.json"), path.join(unpacked, "package.json"));
      // the addon with its shared libraries and backend modules, as a packager unpacks them
      const release = path.join(root, "build", "Release");
      for (const f of fs.readdirSync(release)) {
        if (/\.(node|so|dll|dylib)(\.\d+)*$/.test(f) && fs.statSync(path.join(release, f)).isFile())
          fs.copyFileSync(path.join(release, f), path.join(unpacked, "build", "Release", f));
      }
      expect(addonRoot(packed)).toBe(unpacked);
      expect(addonRoot(root)).toBe(root);
      // node-gyp-build finds and loads the unpacked binary
      const r = node([
        "-e",
        `const b = require(${JSON.stringify(require.resolve("node-gyp-build"))}); const p = b.resolve(${JSON.stringify(unpacked)}); const a = require(p); console.log(JSON.stringify({ p, dir: a.addonDir, cpu: a.backendModules()[0].path, ggml: a.versions().ggml }))`,
      ]);
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout);
      expect(out.p.startsWith(unpacked)).toBe(true);
      // its CPU backend module is the unpacked copy's, not the source tree's
      expect(out.dir).toBe(path.join(unpacked, "build", "Release"));
      expect(out.cpu.startsWith(unpacked)).toBe(true);
      expect(out.ggml).toBe("0.25.1");
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});
