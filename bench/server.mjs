#!/usr/bin/env node
// npm run bench:server [-- --model PATH | --generated PRESET[:TYPE]] [--threads N] [--tokens 64] [--reps 5] [--concurrency 1,4]
// Streamed chat over HTTP: `genai-native serve` (a child process) vs
// llama-server built from the same deps/llama.cpp (-np matched to the
// concurrency), same model, threads and ChatML template. Per round and
// concurrency: time to first token (ms, from the request) and tokens/s
// (completion tokens after the first, summed over the concurrent requests,
// over the time from the first first-token to the last end). Medians and ratios as JSON.
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { generatedModel, llamaToolPath, median } from "./runners/common.mjs";
import { killServer, randomPort, startLlamaServer, waitHealthy } from "./runners/llama-server.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values: opt } = parseArgs({
  options: {
    model: { type: "string" },
    generated: { type: "string", default: "medium:q8_0" },
    threads: { type: "string" },
    tokens: { type: "string", default: "64" },
    reps: { type: "string", default: "5" },
    concurrency: { type: "string", default: "1,4" },
  },
});
const threads = Number(opt.threads ?? os.availableParallelism?.() ?? os.cpus().length);
const tokens = Number(opt.tokens);
const reps = Number(opt.reps);
const levels = opt.concurrency.split(",").map(Number);
const model = opt.model ?? generatedModel(root, opt.generated);
const contextSize = 2048;
const log = (...m) => process.stderr.write(m.join(" ") + "\n");
const { CHATML_TEMPLATE } = await import(path.join(root, "dist", "cjs", "tools", "llama", "shape.js"));
const chatml = path.join(root, "bench", "out", "chatml.jinja");
fs.mkdirSync(path.dirname(chatml), { recursive: true });
fs.writeFileSync(chatml, CHATML_TEMPLATE);

/** Starts one server for `np` concurrent requests; resolves { port, proc }. */
async function start(kind, np) {
  const port = randomPort();
  const proc =
    kind === "genai-native"
      ? spawn(
          process.execPath,
          [
            path.join(root, "dist", "cjs", "cli", "main.js"),
            "serve",
            "--model",
            model,
            "--port",
            String(port),
            "--context-size",
            String(contextSize),
            "--parallel",
            String(np),
            "--threads",
            String(threads),
            // as llama-server's -fa off (bench/runners/llama-server.mjs): on the CPU "auto" would turn it on
            "--flash-attention",
            "off",
            "--chat-template",
            chatml,
          ],
          { stdio: "ignore", env: { ...process.env, GENAI_NATIVE_DEVICE: "cpu" } },
        )
      : startLlamaServer(llamaToolPath(root, "llama-server"), {
          model,
          contextSize: contextSize * np,
          threads,
          port,
          slots: np,
          extra: ["-ngl", "0", "--chat-template", "chatml"],
        });
  await waitHealthy(port);
  return { port, proc };
}

/** One streamed chat on its own connection (a server closes idle keep-alive sockets between rounds); resolves { t0, first, end, completion }. */
function chat(port, i) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({
      model: path.basename(model, ".gguf"),
      messages: [{ role: "user", content: `Tell me story number ${i} about a lighthouse keeper and the sea.` }],
      max_tokens: tokens,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    const t0 = performance.now();
    let first = 0;
    let completion = 0;
    let buf = "";
    const req = http.request(
      {
        host: "127.0.0.1",
        port,
        path: "/v1/chat/completions",
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
        res.setEncoding("utf8");
        res.on("data", (c) => {
          buf += c;
          if (!first && /"content":"[^"]/.test(buf)) first = performance.now();
          const m = /"completion_tokens":(\d+)/.exec(buf);
          if (m) completion = Number(m[1]);
          buf = buf.slice(-4096);
        });
        res.on("end", () => resolve({ t0, first, end: performance.now(), completion }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/**
 * CPU time (user + system, ms) the process `pid` has used so far, from
 * /proc/<pid>/stat (fields 14 and 15, in clock ticks of 100 Hz on Linux);
 * null where there is no /proc.
 */
function cpuMs(pid) {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return null;
  }
}

const results = {};
for (const np of levels) {
  const servers = {};
  for (const kind of ["genai-native", "llama-server"]) {
    servers[kind] = await start(kind, np);
    await Promise.all(Array.from({ length: np }, (_, i) => chat(servers[kind].port, i))); // warm-up
  }
  const samples = { "genai-native": [], "llama-server": [] };
  try {
    for (let round = 0; round < reps; round++) {
      const kinds = round % 2 ? ["llama-server", "genai-native"] : ["genai-native", "llama-server"];
      for (const kind of kinds) {
        const cpu0 = cpuMs(servers[kind].proc.pid);
        const rs = await Promise.all(Array.from({ length: np }, (_, i) => chat(servers[kind].port, round * np + i)));
        const cpu1 = cpuMs(servers[kind].proc.pid);
        const ttft = median(rs.map((r) => r.first - r.t0));
        const after = rs.reduce((n, r) => n + Math.max(0, r.completion - 1), 0);
        const tps = (after * 1000) / (Math.max(...rs.map((r) => r.end)) - Math.min(...rs.map((r) => r.first)));
        // the server process's CPU time per generated token (all its threads: decode, sampling, HTTP)
        const cpuPerToken = cpu0 === null || cpu1 === null ? null : (cpu1 - cpu0) / rs.reduce((n, r) => n + r.completion, 0);
        samples[kind].push({ ttftMs: ttft, tokensPerSec: tps, cpuMsPerToken: cpuPerToken });
        log(
          `[bench:server] concurrency ${np} round ${round + 1}/${reps} ${kind}: first token ${ttft.toFixed(1)} ms, ${tps.toFixed(1)} tokens/s, CPU ${cpuPerToken?.toFixed(2) ?? "?"} ms/token`,
        );
      }
    }
  } finally {
    for (const s of Object.values(servers)) await killServer(s.proc);
  }
  const med = (kind, k) => median(samples[kind].map((s) => s[k]));
  const cpu = (kind) => (samples[kind].some((s) => s.cpuMsPerToken === null) ? null : med(kind, "cpuMsPerToken"));
  results[`concurrency ${np}`] = {
    "genai-native": { ttftMs: med("genai-native", "ttftMs"), tokensPerSec: med("genai-native", "tokensPerSec"), cpuMsPerToken: cpu("genai-native") },
    "llama-server": { ttftMs: med("llama-server", "ttftMs"), tokensPerSec: med("llama-server", "tokensPerSec"), cpuMsPerToken: cpu("llama-server") },
    ratios: {
      "first token (genai-native / llama-server, lower is better)": Number((med("genai-native", "ttftMs") / med("llama-server", "ttftMs")).toFixed(3)),
      "tokens/s (genai-native / llama-server)": Number((med("genai-native", "tokensPerSec") / med("llama-server", "tokensPerSec")).toFixed(3)),
    },
  };
}
process.stdout.write(
  JSON.stringify({ model: path.basename(model), threads, tokens, reps, results, targets: { "first token": "≤ 1.1x", "tokens/s": "≥ 0.95x" } }, null, 1) + "\n",
);
