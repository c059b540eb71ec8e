// Exit safety, in child processes: process.exit() and worker.terminate() while native
// work runs (load, generation, chat-template rendering, tokenize) end the process or
// the worker with the expected code: no signal (abort, segfault), no hang.
import { spawnSync } from "node:child_process";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateRandomLlamaModel, PRESETS } from "../../lib/tools";
import { storiesPath, tempDir } from "../helpers";

const root = path.resolve(__dirname, "..", "..");

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `script` (CommonJS, `g` = the package, `MODEL`/`BIG` = model paths) in a child node. */
function child(script: string, env: Record<string, string>, timeout = 90_000): Run {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ["-e", `const g = require(${JSON.stringify(root)});\n${script}`], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, ...env },
    timeout,
    killSignal: "SIGKILL",
  });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, ms: Date.now() - t0 };
}

function expectExit(r: Run, code: number): void {
  expect(r.signal, `signal ${r.signal} (timeout or crash); stderr:\n${r.stderr}`).toBeNull();
  expect(r.status, r.stderr).toBe(code);
}

// 5 MB of text, and a chat of many messages (the template renders for a while)
const PAYLOADS = `
  const TEXT = 'Once upon a time there was a little girl who liked to play. '.repeat(85000);
  const TEMPLATE = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\\\n' + message['content'] + '<|im_end|>' + '\\\\n' }}{% endfor %}";
  const MESSAGES = Array.from({ length: 4000 }, (_, i) => ({ role: i % 2 ? 'assistant' : 'user', content: 'hello there, message number ' + i }));
`;

/** Source of a worker body (runs with `g`, PAYLOADS, `workerData.i`), terminated after it says 'go'. */
function terminateMany(workerBody: string, times: number): string {
  const workerSrc = `
    const { parentPort, workerData } = require('node:worker_threads');
    const g = require(${JSON.stringify(root)});
    ${PAYLOADS}
    (async () => { ${workerBody} })().catch((e) => { parentPort.postMessage('error: ' + (e && e.stack)); });
  `;
  return `
    const { Worker } = require('node:worker_threads');
    (async () => {
      for (let i = 0; i < ${times}; i++) {
        const w = new Worker(${JSON.stringify(workerSrc)}, { eval: true, workerData: { i } });
        const msg = await new Promise((res, rej) => { w.once('message', res); w.once('error', rej); });
        if (msg !== 'go') throw new Error(String(msg));
        await new Promise((r) => setTimeout(r, 2 + ((i * 7) % 25)));
        await w.terminate();
      }
      console.log('survived');
    })().catch((e) => { console.error(e); process.exitCode = 1; });
  `;
}

describe("worker.terminate() while native work runs", () => {
  let tmp: ReturnType<typeof tempDir>;
  let env: Record<string, string>;

  beforeAll(async () => {
    tmp = tempDir("genai-exit-");
    const big = path.join(tmp.dir, "small-q8_0.gguf");
    await generateRandomLlamaModel(big, PRESETS.small, { type: "q8_0", seed: 3 });
    env = { MODEL: await storiesPath(), BIG: big };
  });
  afterAll(() => tmp?.cleanup());

  it("terminated mid-tokenize (5 MB of text), 20×: the process survives and exits 0", () => {
    const r = child(
      terminateMany(
        `const m = await g.LlamaModel.load(process.env.MODEL);
         parentPort.postMessage('go');
         for (;;) await m.tokenize(TEXT);`,
        20,
      ),
      env,
    );
    expectExit(r, 0);
    expect(r.stdout.trim()).toBe("survived");
  });

  it("terminated mid chat-template rendering (4,000 messages), 20×: the process survives and exits 0", () => {
    const r = child(
      terminateMany(
        `const m = await g.LlamaModel.load(process.env.MODEL);
         parentPort.postMessage('go');
         for (;;) await m.applyChatTemplate(MESSAGES, { template: TEMPLATE });`,
        20,
      ),
      env,
    );
    expectExit(r, 0);
    expect(r.stdout.trim()).toBe("survived");
  });

  it("terminated mid-generation, 10×: exits 0", () => {
    const r = child(
      terminateMany(
        `const m = await g.LlamaModel.load(process.env.MODEL);
         const c = await m.createContext({ contextSize: 2048, threads: 1 });
         const s = c.generate('Once upon a time', { maxTokens: 1900, ignoreEos: true });
         let n = 0;
         for await (const _ of s) if (++n === 2) parentPort.postMessage('go');`,
        10,
      ),
      env,
    );
    expectExit(r, 0);
    expect(r.stdout.trim()).toBe("survived");
  });

  it("terminated mid-load, 10×: exits 0", () => {
    const r = child(
      terminateMany(
        `let said = false;
         await g.LlamaModel.load(process.env.BIG, { useMmap: false, onProgress: () => { if (!said) { said = true; parentPort.postMessage('go'); } } });
         await new Promise(() => {});`,
        10,
      ),
      env,
    );
    expectExit(r, 0);
    expect(r.stdout.trim()).toBe("survived");
  });
});

describe("process.exit() while native work runs", () => {
  let tmp: ReturnType<typeof tempDir>;
  let env: Record<string, string>;

  beforeAll(async () => {
    tmp = tempDir("genai-exit-");
    const big = path.join(tmp.dir, "small-q8_0.gguf");
    await generateRandomLlamaModel(big, PRESETS.small, { type: "q8_0", seed: 3 });
    env = { MODEL: await storiesPath(), BIG: big };
  });
  afterAll(() => tmp?.cleanup());

  it("during load: exits with the given code", () => {
    const r = child(`g.LlamaModel.load(process.env.BIG, { useMmap: false, onProgress: (f) => { if (f > 0) process.exit(3); } });`, env);
    expectExit(r, 3);
  });

  it("during generation: exits with the given code", () => {
    const r = child(
      `(async () => {
        const m = await g.LlamaModel.load(process.env.MODEL);
        const c = await m.createContext({ contextSize: 2048, threads: 1 });
        let n = 0;
        for await (const _ of c.generate('Once upon a time', { maxTokens: 1900, ignoreEos: true })) if (++n === 5) process.exit(4);
      })();`,
      env,
    );
    expectExit(r, 4);
  });

  it("during chat-template rendering: exits with the given code", () => {
    const r = child(
      `${PAYLOADS}
      (async () => {
        const m = await g.LlamaModel.load(process.env.MODEL);
        m.applyChatTemplate(MESSAGES, { template: TEMPLATE });
        setTimeout(() => process.exit(5), 5);
      })();`,
      env,
    );
    expectExit(r, 5);
  });

  it("during tokenize (5 MB): exits with the given code", () => {
    const r = child(
      `${PAYLOADS}
      (async () => {
        const m = await g.LlamaModel.load(process.env.MODEL);
        m.tokenize(TEXT);
        m.tokenize(TEXT);
        setTimeout(() => process.exit(6), 5);
      })();`,
      env,
    );
    expectExit(r, 6);
  });

  it("during prompt decode with a context being created: exits with the given code", () => {
    const r = child(
      `(async () => {
        const m = await g.LlamaModel.load(process.env.BIG);
        const c = await m.createContext({ contextSize: 2048, batchSize: 64, threads: 1 });
        m.createContext({ contextSize: 2048, threads: 1 });
        c.generate(Int32Array.from({ length: 1500 }, (_, i) => 1 + (i % 8000)), { maxTokens: 4 }).result.catch(() => {});
        setTimeout(() => process.exit(7), 50);
      })();`,
      env,
    );
    expectExit(r, 7);
  });
});
