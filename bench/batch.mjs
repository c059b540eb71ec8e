#!/usr/bin/env node
// npm run bench:batch [-- --model PATH | --generated PRESET[:TYPE]] [--npp 128] [--ntg 128] [--npl 4]
//                     [--threads N] [--reps 5] [--no-server]
// Parallel generation: `npl` sequences of `ntg` tokens after `npp`-token
// prompts, aggregate tokens/s of
//   genai-native, one context with `npl` sequences (one batch per step),
//   genai-native, `npl` separate contexts generating at once,
//   llama.cpp's llama-batched-bench (same deps/llama.cpp, same flags; -npp/-ntg/-npl),
//   llama-server -np `npl` over loopback (4 concurrent /completion requests),
// on the generated ~254 M Q8_0 `medium` model by default. Rounds interleave
// (the order alternating); medians, spread and ratios as JSON.
import { spawn, spawnSync } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { generatedModel, llamaToolPath, median, randomTokens, spread } from "./runners/common.mjs";
import { killServer, randomPort, waitHealthy } from "./runners/llama-server.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values: opt } = parseArgs({
  options: {
    model: { type: "string" },
    generated: { type: "string", default: "medium:q8_0" },
    npp: { type: "string", default: "128" },
    ntg: { type: "string", default: "128" },
    npl: { type: "string", default: "4" },
    threads: { type: "string" },
    reps: { type: "string", default: "5" },
    "no-server": { type: "boolean", default: false },
  },
});
const [npp, ntg, npl, reps] = [opt.npp, opt.ntg, opt.npl, opt.reps].map(Number);
const threads = Number(opt.threads ?? os.availableParallelism?.() ?? os.cpus().length);
const model = opt.model ?? generatedModel(root, opt.generated);
// every sequence holds its prompt and generation (+ llama.cpp's 256-token padding of n_ctx)
const ctx = npl * (npp + ntg + 256);
const batch = Math.max(512, npl * npp);
const log = (...m) => process.stderr.write(m.join(" ") + "\n");

function addon(mode) {
  const a = { root, model, npp, ntg, npl, threads, ctx, batch, reps: 1, mode };
  const r = spawnSync(process.execPath, [path.join(root, "bench", "runners", "batch-addon.mjs"), JSON.stringify(a)], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`batch-addon ${mode} failed: ${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout.trim().split("\n").pop()).rounds[0];
}

function batchedBench() {
  const bin = llamaToolPath(root, "llama-batched-bench");
  const args = ["-m", model, "-c", String(ctx), "-b", String(batch), "-ub", "512", "-npp", String(npp), "-ntg", String(ntg), "-npl", String(npl)];
  const r = spawnSync(bin, [...args, "-t", String(threads), "-tb", String(threads), "-fa", "off", "-ngl", "0", "--output-format", "jsonl"], {
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`llama-batched-bench failed: ${r.stderr.slice(-2000)}`);
  const line = (r.stdout + r.stderr).split("\n").find((l) => l.startsWith("{") && l.includes('"speed_tg"'));
  const j = JSON.parse(line);
  return { pp: j.speed_pp, tg: j.speed_tg, total: j.speed };
}

let server;
async function llamaServer() {
  const prompts = Array.from({ length: npl }, (_, i) => Array.from(randomTokens(npp, 32000, 100 + i)));
  const rs = await Promise.all(
    prompts.map(async (prompt) => {
      const res = await fetch(`http://127.0.0.1:${server.port}/completion`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ prompt, n_predict: ntg, ignore_eos: true, temperature: 0, cache_prompt: false }),
      });
      return (await res.json()).timings;
    }),
  );
  if (rs.some((t) => t.predicted_n !== ntg)) throw new Error(`llama-server generated ${rs.map((t) => t.predicted_n)} tokens`);
  return {
    pp: (npl * npp * 1000) / Math.max(...rs.map((t) => t.prompt_ms)),
    tg: (npl * ntg * 1000) / Math.max(...rs.map((t) => t.predicted_ms)),
  };
}

const runners = { sequences: () => addon("sequences"), contexts: () => addon("contexts"), batchedBench };
if (!opt["no-server"]) {
  const bin = llamaToolPath(root, "llama-server");
  const port = randomPort();
  const args = [
    "-m",
    model,
    "-c",
    String(ctx),
    "-b",
    String(batch),
    "-t",
    String(threads),
    "-tb",
    String(threads),
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
  ];
  server = { proc: spawn(bin, [...args, "-fa", "off", "--no-webui", "-np", String(npl), "-ngl", "0"], { stdio: "ignore" }), port };
  await waitHealthy(port);
  await llamaServer(); // warm-up
  runners.llamaServer = llamaServer;
}

const samples = Object.fromEntries(Object.keys(runners).map((k) => [k, []]));
try {
  for (let round = 0; round < reps; round++) {
    const names = Object.keys(runners);
    if (round % 2) names.reverse();
    for (const name of names) {
      const r = await runners[name]();
      samples[name].push(r);
      log(`[bench:batch] round ${round + 1}/${reps} ${name}: tg ${r.tg.toFixed(1)} t/s, pp ${r.pp.toFixed(1)} t/s`);
    }
  }
} finally {
  if (server) await killServer(server.proc);
}

const summary = {};
for (const [name, rs] of Object.entries(samples)) {
  summary[name] = { tg: median(rs.map((r) => r.tg)), tgSpread: spread(rs.map((r) => r.tg)), pp: median(rs.map((r) => r.pp)) };
}
const ratio = (a, b) => (summary[a] && summary[b] ? Number((summary[a].tg / summary[b].tg).toFixed(3)) : null);
process.stdout.write(
  JSON.stringify(
    {
      model: path.basename(model),
      npp,
      ntg,
      npl,
      threads,
      contextSize: ctx,
      reps,
      tokensPerSecond: summary,
      ratios: {
        "sequences / llama-batched-bench (tg)": ratio("sequences", "batchedBench"),
        "sequences / separate contexts (tg)": ratio("sequences", "contexts"),
        "sequences / llama-server -np (tg)": ratio("sequences", "llamaServer"),
      },
      targets: { "vs llama-batched-bench": 0.95, "vs separate contexts": 1.5 },
    },
    null,
    1,
  ) + "\n",
);
