#!/usr/bin/env node
// npm run bench:batch [-- --model PATH | --generated PRESET[:TYPE]] [--npp 128] [--ntg 128] [--npl 4]
//                     [--threads N] [--reps 5] [--no-server]
// Parallel generation: `npl` sequences of `ntg` tokens after `npp`-token
// prompts, aggregate tokens/s of (pp: the prompts decoded at once; tg: the
// generations after them, wall clock; total: both — llama-batched-bench's S_PP, S_TG, S)
//   genai-native, one context with `npl` sequences (one batch per step),
//   genai-native, `npl` separate contexts generating at once,
//   llama.cpp's llama-batched-bench (same deps/llama.cpp, same flags; -npp/-ntg/-npl),
//   llama-server -np `npl` over loopback (4 concurrent /completion requests),
// on the generated ~254 M Q8_0 `medium` model by default. Rounds interleave
// (the order alternating); medians, spread and ratios as JSON.
import { spawnSync } from "node:child_process";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { generatedModel, llamaToolPath, median, randomTokens, spread } from "./runners/common.mjs";
import { killServer, randomPort, startLlamaServer, waitHealthy } from "./runners/llama-server.mjs";

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
/** POST /completion on its own connection (llama-server closes idle keep-alive sockets between rounds). */
function completion(body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(
      {
        host: "127.0.0.1",
        port: server.port,
        path: "/completion",
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(data) },
      },
      (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => (res.statusCode === 200 ? resolve(JSON.parse(text)) : reject(new Error(`llama-server ${res.statusCode}: ${text}`))));
      },
    );
    req.on("error", reject);
    req.end(data);
  });
}

// Timed as the addon's runner: the prompts first (slot i keeps prompt i: cache_prompt), then the generations.
let serverRound = 0;
async function llamaServer() {
  // new prompts each round: a slot would otherwise find the last round's prompt in its cache
  const round = serverRound++;
  const prompts = Array.from({ length: npl }, (_, i) => Array.from(randomTokens(npp, 32000, 100 + i + 1000 * round)));
  const t0 = performance.now();
  const first = await Promise.all(
    prompts.map((prompt, i) => completion({ prompt, id_slot: i, n_predict: 1, ignore_eos: true, temperature: 0, cache_prompt: true, return_tokens: true })),
  );
  const t1 = performance.now();
  const rs = await Promise.all(
    prompts.map((prompt, i) =>
      completion({ prompt: [...prompt, ...first[i].tokens], id_slot: i, n_predict: ntg, ignore_eos: true, temperature: 0, cache_prompt: true }),
    ),
  );
  const t2 = performance.now();
  if (rs.some((r) => r.timings.predicted_n !== ntg)) throw new Error(`llama-server generated ${rs.map((r) => r.timings.predicted_n)} tokens`);
  if (rs.some((r) => r.timings.cache_n < npp))
    throw new Error(`llama-server did not keep the prompts in their slots (cache_n ${rs.map((r) => r.timings.cache_n)})`);
  return { pp: (npl * npp * 1000) / (t1 - t0), tg: (npl * ntg * 1000) / (t2 - t1), total: (npl * (npp + ntg) * 1000) / (t2 - t0) };
}

const runners = { sequences: () => addon("sequences"), contexts: () => addon("contexts"), batchedBench };
if (!opt["no-server"]) {
  const port = randomPort();
  const proc = startLlamaServer(llamaToolPath(root, "llama-server"), {
    model,
    contextSize: ctx,
    threads,
    port,
    slots: npl,
    extra: ["-b", String(batch), "-ngl", "0"],
  });
  server = { proc, port };
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
  summary[name] = {
    tg: median(rs.map((r) => r.tg)),
    tgSpread: spread(rs.map((r) => r.tg)),
    pp: median(rs.map((r) => r.pp)),
    total: median(rs.map((r) => r.total)),
  };
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
