// RPC devices (lib/system/rpc.ts, native/system/rpc*.cpp): two `genai-native
// rpc-server` processes on 127.0.0.1 take layers of a generated model; what a
// server that is down, hung or killed does to a load and a generation.
import { type ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connectRpcServers, GenaiError, LlamaModel, rpcDevices, systemInfo } from "../../lib/index";
import { fitLlamaParams, ManagedLlama, measureLlamaMemory, Orchestrator } from "../../lib/orchestrator/index";
import { generateRandomLlamaModel, PRESETS } from "../../lib/tools";
import { tempDir } from "../helpers";

const CLI = path.resolve(__dirname, "..", "..", "dist", "cjs", "cli", "main.js");
const PROMPT = "Once upon a time";

/** A free loopback port (bound and released). */
async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

/** Every server a test started: afterAll kills them all, whatever the test did. */
const spawned: ChildProcess[] = [];

/** `genai-native rpc-server` on 127.0.0.1:port (CPU, 1 thread), once it accepts connections. */
async function startServer(port: number): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLI, "rpc-server", "--port", String(port), "--threads", "1"], { stdio: ["ignore", "pipe", "pipe"] });
  spawned.push(child);
  let out = "";
  child.stdout?.on("data", (d) => (out += d));
  child.stderr?.on("data", (d) => (out += d));
  for (let i = 0; i < 400; i++) {
    // listening once a connection is accepted (one without a HELLO is closed by the server at once)
    const up = await new Promise<boolean>((resolve) => {
      const sock = net.connect(port, "127.0.0.1", () => {
        sock.destroy();
        resolve(true);
      });
      sock.on("error", () => resolve(false));
    });
    if (up) return child;
    if (child.exitCode !== null) throw new Error(`rpc-server exited ${child.exitCode}: ${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  throw new Error(`rpc-server did not start: ${out}`);
}

async function greedy(model: LlamaModel, maxTokens = 24): Promise<string> {
  const ctx = await model.createContext({ contextSize: 256, threads: 1 });
  try {
    return (await ctx.complete(PROMPT, { temperature: 0, maxTokens, ignoreEos: true })).text;
  } finally {
    await ctx.dispose();
  }
}

async function expectCode(p: Promise<unknown>, code: string, match?: RegExp): Promise<GenaiError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(GenaiError);
  expect((e as GenaiError).code).toBe(code);
  if (match) expect((e as GenaiError).message).toMatch(match);
  return e as GenaiError;
}

describe("RPC devices: layers on two loopback rpc-servers", () => {
  const tmp = tempDir();
  let modelPath: string;
  let ports: number[];
  let endpoints: string[];
  let localText: string;

  beforeAll(async () => {
    modelPath = path.join(tmp.dir, "tiny.gguf");
    await generateRandomLlamaModel(modelPath, PRESETS.tiny, { type: "q8_0", seed: 5 });
    ports = [await freePort(), await freePort()];
    await Promise.all(ports.map(startServer));
    endpoints = ports.map((p) => `127.0.0.1:${p}`);
    const local = await LlamaModel.load(modelPath, { device: "cpu" });
    localText = await greedy(local);
    await local.dispose();
  });

  afterAll(() => {
    for (const s of spawned) s.kill("SIGKILL");
    tmp.cleanup();
  });

  it("layers split over the CPU and both servers give the local load's greedy text; systemInfo lists the servers' devices", async () => {
    // 4 layers: 3 offloaded, shared 2:1 by the two servers; the 4th and the output stay on the CPU
    const model = await LlamaModel.load(modelPath, { device: "cpu", rpcServers: endpoints, gpuLayers: 3, tensorSplit: [2, 1] });
    try {
      const ctx = await model.createContext({ contextSize: 256, threads: 1 });
      const byDevice = Object.fromEntries(ctx.memory().map((m) => [m.device, m.model]));
      await ctx.dispose();
      const rpc = rpcDevices().filter((d) => endpoints.includes(d.endpoint));
      expect(rpc.map((d) => d.endpoint)).toEqual(endpoints);
      const [a, b] = rpc.map((d) => d.name);
      // weights on each server and on the CPU, more on the first (2 layers) than the second (1)
      expect(byDevice[a]).toBeGreaterThan(byDevice[b]);
      expect(byDevice[b]).toBeGreaterThan(0);
      expect(byDevice.CPU).toBeGreaterThan(0);
      expect(await greedy(model)).toBe(localText);
      const listed = systemInfo().devices.filter((d) => d.type === "rpc" && endpoints.includes(d.endpoint ?? ""));
      expect(listed.map((d) => d.name)).toEqual([a, b]);
      for (const d of listed) {
        expect(d.backend).toBe("RPC");
        expect(d.totalBytes).toBeGreaterThan(0);
      }
    } finally {
      await model.dispose();
    }
  });

  it("measureLlamaMemory places layers as the load does, on the servers' devices", async () => {
    const opts = { device: "cpu", rpcServers: endpoints, gpuLayers: 3, tensorSplit: [2, 1], contextSize: 256 };
    const measured = await measureLlamaMemory(modelPath, opts);
    const model = await LlamaModel.load(modelPath, { device: "cpu", rpcServers: endpoints, gpuLayers: 3, tensorSplit: [2, 1] });
    try {
      const ctx = await model.createContext({ contextSize: 256, threads: 1 });
      const actual = ctx.memory();
      await ctx.dispose();
      const names = rpcDevices()
        .filter((d) => endpoints.includes(d.endpoint))
        .map((d) => d.name);
      for (const name of names) {
        const m = measured.find((x) => x.device === name);
        const a = actual.find((x) => x.device === name);
        expect(m?.model).toBe(a?.model);
        expect(m?.context).toBe(a?.context);
      }
    } finally {
      await model.dispose();
    }
  });

  it("fitLlamaParams fits the servers' devices like GPUs: a small budget on one offloads fewer layers", async () => {
    const opts = { device: "cpu", rpcServers: endpoints, tensorSplit: [1, 1], minContextSize: 256, maxContextSize: 256 };
    const all = await fitLlamaParams(modelPath, { ...opts, budgets: { CPU: 1e12 } });
    expect(all.gpuLayers).toBe(-1);
    const [a] = rpcDevices()
      .filter((d) => endpoints.includes(d.endpoint))
      .map((d) => d.name);
    const onA = all.memory.find((m) => m.device === a);
    expect(onA?.model).toBeGreaterThan(0);
    // room on the first server for about half of what it held
    const tight = await fitLlamaParams(modelPath, { ...opts, budgets: { CPU: 1e12, [a]: Math.floor((onA!.model + onA!.context + onA!.compute) * 0.6) } });
    expect(tight.gpuLayers).toBeGreaterThanOrEqual(0);
    expect(tight.gpuLayers).toBeLessThan(PRESETS.tiny.layers);
    const m = tight.memory.find((x) => x.device === a);
    expect((m?.model ?? 0) + (m?.context ?? 0) + (m?.compute ?? 0)).toBeLessThanOrEqual(Math.floor((onA!.model + onA!.context + onA!.compute) * 0.6));
  });

  it("the orchestrator frees and restores a context whose layers live on the servers, conversation intact", async () => {
    const load = { device: "cpu", rpcServers: endpoints, gpuLayers: 3, tensorSplit: [1, 1] };
    const llm = await ManagedLlama.create({ id: "rpc", modelPath, load, context: { contextSize: 256, threads: 1 } });
    const orch = new Orchestrator({ budgets: { CPU: 1e12 } });
    orch.add(llm);
    try {
      const t1 = await orch.submit({ kind: "llm", resource: llm, run: () => llm.context.complete(PROMPT, { temperature: 0, maxTokens: 16, ignoreEos: true }) })
        .promise;
      await llm.free("contextFreed");
      expect(llm.residency).toBe("contextFreed");
      expect(llm.savedStateBytes).toBeGreaterThan(0);
      const next = PROMPT + t1.text + " and";
      const t2 = await orch.submit({ kind: "llm", resource: llm, run: () => llm.context.complete(next, { temperature: 0, maxTokens: 12, ignoreEos: true }) })
        .promise;
      // the restored KV cells were used (a random model's text retokenizes differently past some point)
      expect(t2.timings.reusedTokens).toBeGreaterThan(4);
      // the same continuation as a fresh local load reading the whole text
      const local = await LlamaModel.load(modelPath, { device: "cpu" });
      const ctx = await local.createContext({ contextSize: 256, threads: 1 });
      const ref = await ctx.complete(next, { temperature: 0, maxTokens: 12, ignoreEos: true });
      await local.dispose();
      expect(t2.text).toBe(ref.text);
    } finally {
      orch.dispose();
      await llm.free("unloaded");
    }
  });

  it("a server killed mid-generation: BACKEND_ERROR naming it, the model refuses more work, the process goes on", async () => {
    const port = await freePort();
    const victim = await startServer(port);
    const endpoint = `127.0.0.1:${port}`;
    const model = await LlamaModel.load(modelPath, { device: "cpu", rpcServers: [endpoints[0], endpoint], gpuLayers: 4, tensorSplit: [1, 1] });
    const ctx = await model.createContext({ contextSize: 2048, threads: 1 });
    let tokens = 0;
    let killedAt = 0;
    const e = await (async () => {
      for await (const _ of ctx.generate(PROMPT, { temperature: 0, maxTokens: 1500, ignoreEos: true })) {
        if (++tokens === 8) {
          killedAt = performance.now();
          victim.kill("SIGKILL");
        }
      }
    })().then(
      () => undefined,
      (err: unknown) => err,
    );
    const ms = performance.now() - killedAt;
    expect(e).toBeInstanceOf(GenaiError);
    expect((e as GenaiError).code).toBe("BACKEND_ERROR");
    expect((e as GenaiError).message).toContain(endpoint);
    expect(tokens).toBeLessThan(1500);
    expect(ms).toBeLessThan(10_000);
    await expectCode(ctx.complete("again", { maxTokens: 2 }), "BACKEND_ERROR", new RegExp(endpoint));
    expect(rpcDevices().find((d) => d.endpoint === endpoint)?.failed).toBe(true);
    await model.dispose();
    // the other server and local work go on
    const again = await LlamaModel.load(modelPath, { device: "cpu", rpcServers: [endpoints[0]], gpuLayers: 2 });
    expect(await greedy(again)).toBe(localText);
    await again.dispose();
  });

  it("a server that stops answering: BACKEND_ERROR after rpcTimeouts.callMs, not a hang", async () => {
    const port = await freePort();
    const hung = await startServer(port);
    const endpoint = `127.0.0.1:${port}`;
    try {
      const model = await LlamaModel.load(modelPath, { device: "cpu", rpcServers: [endpoint], gpuLayers: 2, rpcTimeouts: { callMs: 1500 } });
      const ctx = await model.createContext({ contextSize: 256, threads: 1 });
      hung.kill("SIGSTOP");
      const t0 = performance.now();
      await expectCode(ctx.complete(PROMPT, { maxTokens: 8 }), "BACKEND_ERROR", /no answer within 1500 ms/);
      expect(performance.now() - t0).toBeLessThan(10_000);
      await model.dispose();
    } finally {
      hung.kill("SIGKILL");
    }
  });

  it("GENAI_NATIVE_RPC is every load's default rpcServers; rpcServers: [] opts out", async () => {
    process.env.GENAI_NATIVE_RPC = endpoints[0];
    try {
      const model = await LlamaModel.load(modelPath, { device: "cpu", gpuLayers: 2 });
      const ctx = await model.createContext({ contextSize: 256, threads: 1 });
      const name = rpcDevices().find((d) => d.endpoint === endpoints[0])?.name;
      expect(ctx.memory().find((m) => m.device === name)?.model).toBeGreaterThan(0);
      await model.dispose();
      const local = await LlamaModel.load(modelPath, { device: "cpu", gpuLayers: 2, rpcServers: [] });
      const lctx = await local.createContext({ contextSize: 256, threads: 1 });
      expect(lctx.memory().map((m) => m.device)).toEqual(["CPU"]);
      await local.dispose();
    } finally {
      delete process.env.GENAI_NATIVE_RPC;
    }
  });

  it("a server that answers malformed replies: BACKEND_ERROR naming what it sent, never ggml's abort", async () => {
    // speaks the handshake (HELLO, DEVICE_COUNT: 1), then answers every other command with 3 bytes
    const answers: Record<number, Buffer> = { 14: Buffer.from([7, 0, 0, 0, ...new Array(24).fill(0)]), 15: Buffer.from([1, 0, 0, 0]) };
    const noAnswer = new Set([4, 5, 6, 10, 12, 16, 17]);
    const bogus = net.createServer((sock) => {
      let buf = Buffer.alloc(0);
      sock.on("data", (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 9) {
          const size = Number(buf.readBigUInt64LE(1));
          if (buf.length < 9 + size) return;
          const cmd = buf[0];
          buf = buf.subarray(9 + size);
          if (noAnswer.has(cmd)) continue;
          const body = answers[cmd] ?? Buffer.from([1, 2, 3]);
          const head = Buffer.alloc(8);
          head.writeBigUInt64LE(BigInt(body.length));
          sock.write(Buffer.concat([head, body]));
        }
      });
      sock.on("error", () => {});
    });
    await new Promise<void>((r) => bogus.listen(0, "127.0.0.1", r));
    const endpoint = `127.0.0.1:${(bogus.address() as net.AddressInfo).port}`;
    try {
      await expectCode(
        LlamaModel.load(modelPath, { device: "cpu", rpcServers: [endpoint], gpuLayers: 2 }),
        "BACKEND_ERROR",
        /answered a command with 3 bytes where \d+ were due/,
      );
      // the process goes on: a local load still works
      const local = await LlamaModel.load(modelPath, { device: "cpu" });
      expect(await greedy(local)).toBe(localText);
      await local.dispose();
    } finally {
      bogus.close();
    }
  });

  it("a wrong address fails fast with BACKEND_ERROR naming it; malformed ones are INVALID_ARGUMENT", async () => {
    const closed = await freePort();
    let t0 = performance.now();
    await expectCode(LlamaModel.load(modelPath, { rpcServers: [`127.0.0.1:${closed}`] }), "BACKEND_ERROR", new RegExp(`127.0.0.1:${closed}.*refused`));
    expect(performance.now() - t0).toBeLessThan(2000);
    // a port that accepts but is no rpc-server: the handshake times out (connectMs)
    const silent = net.createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const port = (silent.address() as net.AddressInfo).port;
    t0 = performance.now();
    await expectCode(connectRpcServers([`127.0.0.1:${port}`], { connectMs: 500 }), "BACKEND_ERROR", /did not answer its handshake within 500 ms/);
    expect(performance.now() - t0).toBeLessThan(5000);
    silent.close();
    for (const bad of [["localhost"], ["a:0"], ["a:70000"], ["a b:1"], [7], "x:1", ["x:1", "x:1"]])
      await expectCode(LlamaModel.load(modelPath, { rpcServers: bad as string[] }), "INVALID_ARGUMENT");
    await expectCode(LlamaModel.load(modelPath, { rpcServers: endpoints, tensorSplit: [0, 0] }), "INVALID_ARGUMENT");
    await expectCode(LlamaModel.load(modelPath, { rpcTimeouts: { connectMs: 0 } }), "INVALID_ARGUMENT");
    await expectCode(LlamaModel.load(modelPath, { rpcTimeouts: { retries: 1 } as never }), "INVALID_ARGUMENT");
    // more shares than devices: the native check, once the servers' devices are known
    await expectCode(
      LlamaModel.load(modelPath, { device: "cpu", rpcServers: [endpoints[0]], tensorSplit: [1, 1, 1] }),
      "INVALID_ARGUMENT",
      /3 entries for 1 devices/,
    );
  });
});
