// Process-level behaviour: worker_threads and process exit with native work running.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";

const root = path.resolve(__dirname, "..", "..");

function node(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, args, { cwd: root, encoding: "utf8", input, env: process.env, timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("worker_threads and exit", () => {
  it("worker_threads each load the addon with their own models", () => {
    const script = `
      const { Worker, isMainThread, parentPort } = require('node:worker_threads');
      const g = require(${JSON.stringify(root)});
      async function run() {
        const m = await g.LlamaModel.load(await g.resolveModel(undefined, { download: false }));
        const c = await m.createContext({ contextSize: 256, threads: 1 });
        const r = await c.complete('Once upon a time', { temperature: 0, maxTokens: 12 });
        await m.dispose();
        return r.text;
      }
      if (isMainThread) {
        const workers = [0, 1].map(() => new Promise((res, rej) => { const w = new Worker(__filename); w.on('message', res); w.on('error', rej); }));
        Promise.all([run(), ...workers]).then((texts) => { console.log(JSON.stringify(texts)); });
      } else {
        run().then((t) => parentPort.postMessage(t));
      }`;
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "genai-worker-")), "workers.js");
    fs.writeFileSync(file, script);
    try {
      const out = execFileSync(process.execPath, [file], { encoding: "utf8", env: process.env, timeout: 120_000 });
      const texts = JSON.parse(out) as string[];
      expect(texts).toHaveLength(3);
      expect(texts[0].length).toBeGreaterThan(10);
      expect(texts[1]).toBe(texts[0]);
      expect(texts[2]).toBe(texts[0]);
    } finally {
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
    }
  });

  it("the process exits cleanly with models loaded and a generation running", () => {
    const r = node([
      "-e",
      `
      const g = require('genai-native');
      (async () => {
        const m = await g.LlamaModel.load(await g.resolveModel(undefined, { download: false }));
        const c = await m.createContext({ contextSize: 2048, threads: 1 });
        const s = c.generate('Once upon a time', { maxTokens: 1900, ignoreEos: true });
        let n = 0;
        for await (const _ of s) if (++n === 5) { console.log('exiting'); process.exit(0); }
      })();`,
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe("exiting");
  });
});
