#!/usr/bin/env node
// npm run bench:rpc [-- --servers 2] [--model PATH | --generated medium:q8_0] [--threads N] [--server-threads N]
//                   [--pp 128] [--tg 64] [--reps 5]
// (also: npm run bench:llm -- --rpc 2 …)
// Tokens/s of a model whose layers all live on N loopback rpc-servers
// (`genai-native rpc-server`, CPU), split evenly (tensorSplit 1/1/…), through
// genai-native (rpcServers; its relay in between) vs llama.cpp's own
// llama-bench --rpc with the same servers, split, threads and sizes; and the
// same model on the local CPU through genai-native, to show what the RPC
// hops cost. Interleaved rounds, medians, spread (min–max), ratios as JSON.
// Loopback is not a network: real links add their latency per token.
import { spawn, spawnSync } from "node:child_process";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { generatedModel, llamaToolPath, median, spread } from "./runners/common.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values: opt } = parseArgs({
  options: {
    servers: { type: "string", default: "2" },
    rpc: { type: "string" },
    model: { type: "string" },
    generated: { type: "string", default: "medium:q8_0" },
    threads: { type: "string" },
    "server-threads": { type: "string" },
    pp: { type: "string", default: "128" },
    tg: { type: "string", default: "64" },
    reps: { type: "string", default: "5" },
  },
});
const cores = os.availableParallelism?.() ?? os.cpus().length;
const nServers = Number(opt.rpc ?? opt.servers);
const threads = Number(opt.threads ?? cores);
// default: the servers share this machine's cores (2 servers on 2 cores: 1 thread each); more
// threads than cores oversubscribe them, and every hop (the relay's, the client's) then waits for a core
const serverThreads = Number(opt["server-threads"] ?? Math.max(1, Math.floor(cores / nServers)));
const pp = Number(opt.pp);
const tg = Number(opt.tg);
const reps = Number(opt.reps);
const g = createRequire(import.meta.url)(root);
const log = (...m) => process.stderr.write(m.join(" ") + "\n");
const modelPath = opt.model ?? generatedModel(root, opt.generated);
const summary = await g.readGgufSummary(modelPath);
const llamaBench = llamaToolPath(root, "llama-bench");

async function freePort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}
async function listening(port) {
  for (let i = 0; i < 400; i++) {
    const up = await new Promise((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => {
        s.destroy();
        resolve(true);
      });
      s.on("error", () => resolve(false));
    });
    if (up) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`rpc-server on ${port} did not start`);
}
const ports = [];
const servers = [];
for (let i = 0; i < nServers; i++) {
  const port = await freePort();
  const cli = path.join(root, "dist", "cjs", "cli", "main.js");
  servers.push(spawn(process.execPath, [cli, "rpc-server", "--port", String(port), "--threads", String(serverThreads)], { stdio: "ignore" }));
  ports.push(port);
  await listening(port);
}
const endpoints = ports.map((p) => `127.0.0.1:${p}`);
const split = endpoints.map(() => 1);

function runJson(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${path.basename(cmd)} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(r.stdout.trim().startsWith("[") ? r.stdout : lines.filter((l) => l.startsWith("{")).pop());
}
function llamaBenchRpc() {
  const res = runJson(llamaBench, [
    ...["-m", modelPath, "-p", String(pp), "-n", String(tg), "-t", String(threads), "-b", String(pp), "-ub", String(Math.min(pp, 512))],
    ...["--rpc", endpoints.join(","), "-ngl", "999", "-ts", split.join("/"), "-fa", "0", "-r", "1", "-o", "json"],
  ]);
  const ppRow = res.find((r) => r.n_prompt === pp && r.n_gen === 0);
  const tgRow = res.find((r) => r.n_gen === tg && r.n_prompt === 0);
  return { ppTokensPerSec: ppRow.avg_ts, tgTokensPerSec: tgRow.avg_ts };
}
const runner = path.join(root, "bench", "runners", "addon.mjs");
const base = { root, model: modelPath, threads, pp, tg, vocab: summary.vocabSize, device: "cpu" };
const addonRpc = () => runJson(process.execPath, [runner, JSON.stringify({ ...base, rpcServers: endpoints, tensorSplit: split })]);
const addonLocal = () => runJson(process.execPath, [runner, JSON.stringify(base)]);

const samples = { "genai-native rpc": [], "llama-bench rpc": [], "genai-native local": [] };
try {
  for (let i = 0; i < reps; i++) {
    log(`[bench:rpc] round ${i + 1}/${reps}`);
    // alternate who goes first, so a drift in the machine's speed favours neither
    const order = i % 2 === 0 ? ["llama-bench rpc", "genai-native rpc"] : ["genai-native rpc", "llama-bench rpc"];
    for (const k of order) samples[k].push(k === "llama-bench rpc" ? llamaBenchRpc() : addonRpc());
    samples["genai-native local"].push(addonLocal());
  }
} finally {
  for (const s of servers) s.kill("SIGKILL");
}
const med = {};
const spr = {};
for (const [k, v] of Object.entries(samples)) {
  med[k] = { ppTokensPerSec: median(v.map((s) => s.ppTokensPerSec)), tgTokensPerSec: median(v.map((s) => s.tgTokensPerSec)) };
  spr[k] = { ppTokensPerSec: spread(v.map((s) => s.ppTokensPerSec)), tgTokensPerSec: spread(v.map((s) => s.tgTokensPerSec)) };
}
const r3 = (x) => Number(x.toFixed(3));
const perRound = samples["genai-native rpc"].map((s, i) => s.tgTokensPerSec / samples["llama-bench rpc"][i].tgTokensPerSec);
process.stdout.write(
  JSON.stringify(
    {
      setup: `${nServers} loopback rpc-servers (genai-native rpc-server, CPU, ${serverThreads} threads each), all layers on them, split ${split.join("/")}`,
      cpu: os.cpus()[0]?.model,
      model: { path: path.basename(modelPath), parameters: summary.parameterCount, fileBytes: summary.fileBytes },
      threads,
      pp,
      tg,
      reps,
      medians: med,
      spread: spr,
      ratios: {
        tgVsLlamaBenchRpc: r3(med["genai-native rpc"].tgTokensPerSec / med["llama-bench rpc"].tgTokensPerSec),
        tgVsLlamaBenchRpcPerRound: { median: r3(median(perRound)), ...spread(perRound.map(r3)) },
        ppVsLlamaBenchRpc: r3(med["genai-native rpc"].ppTokensPerSec / med["llama-bench rpc"].ppTokensPerSec),
        tgRpcVsLocal: r3(med["genai-native rpc"].tgTokensPerSec / med["genai-native local"].tgTokensPerSec),
      },
      caveat: "loopback is not a network: every server shares this machine's cores, and a real link adds its round-trip time per token and per server",
      samples,
    },
    null,
    2,
  ) + "\n",
);
