import { spawnSync } from "node:child_process";
import path from "node:path";
import { afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { GenaiError, LlamaModel, setLogger, setLogLevel, type LogLevel, type LogSource } from "../../lib/index";
import { native } from "../../lib/binding/load";
import { storiesPath, THREADS } from "../helpers";

const root = path.resolve(__dirname, "..", "..");
let stories: string;

interface Line {
  level: LogLevel;
  message: string;
  source: LogSource;
}

function collect(): Line[] {
  const lines: Line[] = [];
  setLogger((level, message, source) => lines.push({ level, message, source }));
  return lines;
}

async function loadAndDispose(): Promise<void> {
  const m = await LlamaModel.load(stories);
  await m.dispose();
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The JSON a child process printed last. */
function lastJson<T>(stdout: string): T {
  return JSON.parse(stdout.trim().split("\n").at(-1) ?? "null") as T;
}

beforeAll(async () => {
  stories = await storiesPath();
});
afterEach(() => {
  setLogger(null);
  setLogLevel("error");
});

describe("setLogger", () => {
  it("receives llama.cpp's load lines at info when the level allows them", async () => {
    setLogLevel("info");
    const lines = collect();
    await loadAndDispose();
    await vi.waitFor(() => expect(lines.some((l) => l.source === "llama" && l.level === "info" && /llama_model_loader|print_info/.test(l.message))).toBe(true));
    for (const l of lines) {
      expect(["info", "warn", "error"]).toContain(l.level);
      expect(["llama", "ggml", "sd"]).toContain(l.source);
      expect(l.message).not.toMatch(/\n$/);
      expect(l.message.length).toBeGreaterThan(0);
    }
  });

  it("receives debug lines too at debug", async () => {
    setLogLevel("debug");
    const lines = collect();
    await loadAndDispose();
    // llama.cpp's vocabulary load logs at debug ("load: control token ...")
    await vi.waitFor(() => expect(lines.some((l) => l.level === "debug" && l.source === "llama")).toBe(true));
    expect(lines.some((l) => l.level === "info")).toBe(true);
    const infoOnly = collect();
    setLogLevel("info");
    await loadAndDispose();
    await vi.waitFor(() => expect(infoOnly.some((l) => l.level === "info")).toBe(true));
    await sleep(200);
    expect(infoOnly.some((l) => l.level === "debug")).toBe(false);
  });

  it("gets nothing below the level", async () => {
    setLogLevel("warn");
    const lines = collect();
    await loadAndDispose();
    await sleep(300);
    expect(lines.filter((l) => l.level === "info" || l.level === "debug")).toEqual([]);
    setLogLevel("none");
    const none = collect();
    await loadAndDispose();
    await sleep(300);
    expect(none).toEqual([]);
  });

  it("a later setLogger replaces the logger", async () => {
    setLogLevel("info");
    const first = collect();
    const second = collect();
    await loadAndDispose();
    await vi.waitFor(() => expect(second.length).toBeGreaterThan(0));
    expect(first).toEqual([]);
  });

  it("rejects a bad level or logger with INVALID_ARGUMENT", () => {
    const code = (fn: () => void) => {
      try {
        fn();
      } catch (e) {
        expect(e).toBeInstanceOf(GenaiError);
        return (e as GenaiError).code;
      }
      throw new Error("did not throw");
    };
    expect(code(() => setLogLevel("verbose" as LogLevel))).toBe("INVALID_ARGUMENT");
    expect(code(() => setLogger(42 as unknown as null))).toBe("INVALID_ARGUMENT");
    expect(code(() => setLogger(undefined as unknown as null))).toBe("INVALID_ARGUMENT");
    // the addon checks too
    expect(code(() => native().setLogger("x" as unknown as null))).toBe("INVALID_ARGUMENT");
    expect(code(() => native().setLogLevel("loud"))).toBe("INVALID_ARGUMENT");
  });
});

describe("setLogger in a child process", () => {
  const run = (script: string, timeout = 120_000) => {
    const r = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", env: { ...process.env, GENAI_NATIVE_LOG: "" }, timeout });
    expect(r.error, "the process did not exit by itself").toBeUndefined();
    expect(r.signal, r.stderr).toBeNull();
    expect(r.status, r.stderr).toBe(0);
    return { stdout: r.stdout, stderr: r.stderr };
  };

  it("setLogger(null) restores stderr", () => {
    const { stdout, stderr } = run(`
      const g = require(${JSON.stringify(root)});
      let n = 0;
      g.setLogLevel("info");
      g.setLogger(() => n++);
      g.setLogger(null);
      g.LlamaModel.load(${JSON.stringify(stories)}).then(async (m) => {
        await m.dispose();
        setTimeout(() => console.log(JSON.stringify({ n })), 200);
      });`);
    expect(lastJson(stdout)).toEqual({ n: 0 });
    expect(stderr).toMatch(/llama_model_loader|print_info/);
  });

  it("an exception thrown by the logger is an uncaught exception, and later lines still arrive", () => {
    const { stdout } = run(`
      const g = require(${JSON.stringify(root)});
      let n = 0, uncaught = "";
      process.on("uncaughtException", (e) => (uncaught = e.message));
      g.setLogLevel("info");
      g.setLogger(() => { if (++n === 1) throw new Error("logger failed"); });
      g.LlamaModel.load(${JSON.stringify(stories)}).then(async (m) => {
        await m.dispose();
        setTimeout(() => console.log(JSON.stringify({ n, uncaught })), 200);
      });`);
    const r = lastJson<{ n: number; uncaught: string }>(stdout);
    expect(r.uncaught).toBe("logger failed");
    expect(r.n).toBeGreaterThan(1);
  });

  it("exits normally with a logger set: after generating, and from process.exit() mid-generation", () => {
    const natural = run(`
      const g = require(${JSON.stringify(root)});
      let n = 0;
      g.setLogLevel("debug");
      g.setLogger(() => n++);
      process.on("exit", () => console.log(JSON.stringify({ n })));
      (async () => {
        const m = await g.LlamaModel.load(${JSON.stringify(stories)});
        const ctx = await m.createContext({ contextSize: 256, threads: ${THREADS} });
        await ctx.complete("Once upon a time", { maxTokens: 8, temperature: 0 });
        // no dispose, logger still set: the process must end by itself
      })();`);
    expect(lastJson<{ n: number }>(natural.stdout).n).toBeGreaterThan(0);
    expect(natural.stderr).not.toMatch(/llama_model_loader/);

    run(`
      const g = require(${JSON.stringify(root)});
      g.setLogLevel("debug");
      g.setLogger(() => {});
      (async () => {
        const m = await g.LlamaModel.load(${JSON.stringify(stories)});
        const ctx = await m.createContext({ contextSize: 256, threads: ${THREADS} });
        let pieces = 0;
        await ctx.complete("Once upon a time", { maxTokens: 200, temperature: 0, ignoreEos: true, onText: () => { if (++pieces === 3) process.exit(0); } });
      })();`);
  });

  it("a worker_thread's logger ends with the worker; the main thread logs to stderr again", () => {
    const { stdout, stderr } = run(`
      const { Worker } = require("node:worker_threads");
      const g = require(${JSON.stringify(root)});
      const code = \`
        const { parentPort } = require("node:worker_threads");
        const g = require(${JSON.stringify(root)});
        let n = 0;
        g.setLogLevel("info");
        g.setLogger(() => n++);
        g.LlamaModel.load(${JSON.stringify(stories)}).then(async (m) => {
          await m.dispose();
          setTimeout(() => parentPort.postMessage(n), 200);
        });\`;
      const w = new Worker(code, { eval: true });
      let workerLines = -1;
      w.on("message", (n) => (workerLines = n));
      w.on("exit", async () => {
        const m = await g.LlamaModel.load(${JSON.stringify(stories)});
        await m.dispose();
        console.log(JSON.stringify({ workerLines }));
      });`);
    expect(lastJson<{ workerLines: number }>(stdout).workerLines).toBeGreaterThan(0);
    expect(stderr).toMatch(/llama_model_loader|print_info/);
  });
});
