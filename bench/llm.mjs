#!/usr/bin/env node
// npm run bench:llm [-- --model PATH | --generated PRESET[:TYPE],... | --suite] [--threads N] [--pp 512]
//                   [--tg 128] [--reps 7] [--runs N|auto] [--no-peers] [--profile] [--device cpu|vulkan|cuda|metal|Vulkan0]
// npm run bench:llm -- --cold [...]   process start → first token vs llama-server (bench/cold.mjs)
// npm run bench:llm -- --rpc 2 [...]   layers on 2 loopback rpc-servers vs llama-bench --rpc (bench/rpc.mjs)
// Prompt processing (pp) and generation (tg) tokens/s of genai-native vs
// llama.cpp's own llama-bench (built from the same deps/llama.cpp, same flags)
// and vs node-llama-cpp (its npm prebuilt), on the same model and threads.
// Runs are interleaved (one of each per round, the order alternating); medians, spread (min–max) and
// ratios as JSON. --suite: the three shapes of issue 16 (stories260K, the
// generated ~100 M F16 `base` and ~254 M Q8_0 `medium`). --profile: where each
// generated token's time goes (ms/token), next to llama-bench's ms/token.
// --runs: timed runs per round on each side (llama-bench -r N; the addon
// repeats pp and tg N times), averaged as llama-bench's avg_ts. "auto"
// (default): enough runs that one round's generation lasts ≥ 1 s (from an
// untimed llama-bench probe), so a 26 ms generation (stories260K) is not one
// scheduler hiccup away from ±20 %.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { generatedModel, llamaToolPath, median, spread } from "./runners/common.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
if (process.argv.includes("--rpc")) {
  const r = spawnSync(process.execPath, [path.join(root, "bench", "rpc.mjs"), ...process.argv.slice(2)], { stdio: "inherit" });
  process.exit(r.status ?? 1);
}
if (process.argv.includes("--cold")) {
  const r = spawnSync(process.execPath, [path.join(root, "bench", "cold.mjs"), ...process.argv.slice(2).filter((x) => x !== "--cold")], { stdio: "inherit" });
  process.exit(r.status ?? 1);
}
const require = createRequire(import.meta.url);
const { values: opt } = parseArgs({
  options: {
    model: { type: "string" },
    generated: { type: "string" },
    suite: { type: "boolean", default: false },
    threads: { type: "string" },
    pp: { type: "string", default: "512" },
    tg: { type: "string", default: "128" },
    reps: { type: "string", default: "7" },
    runs: { type: "string", default: "auto" },
    "no-peers": { type: "boolean", default: false },
    profile: { type: "boolean", default: false },
    device: { type: "string", default: "cpu" },
  },
});
// --device cpu | vulkan | cuda | metal | a device name (Vulkan0): every runner
// puts all layers there (llama-bench -dev/-ngl, node-llama-cpp gpu: <backend>).
const device = opt.device.toLowerCase();
const threads = Number(opt.threads ?? os.availableParallelism?.() ?? os.cpus().length);
const pp = Number(opt.pp);
const tg = Number(opt.tg);
const reps = Number(opt.reps);
const g = require(root);
const log = (...m) => process.stderr.write(m.join(" ") + "\n");

// --- the models
const specs = opt.suite ? [null, "base:f16", "medium:q8_0"] : opt.generated ? opt.generated.split(",") : [opt.model ?? null];
const models = [];
for (const spec of specs) {
  const p = spec === null || (!opt.suite && !opt.generated) ? await g.resolveModel(spec ?? undefined, { download: true }) : generatedModel(root, spec);
  models.push({ path: p, summary: await g.readGgufSummary(p) });
}

const llamaBench = llamaToolPath(root, "llama-bench");

// --- node-llama-cpp, installed beside the project (bench/.peers)
const peers = path.join(root, "bench", ".peers");
let withPeers = !opt["no-peers"];
if (withPeers && !fs.existsSync(path.join(peers, "node_modules", "node-llama-cpp"))) {
  log("[bench] installing node-llama-cpp@3.22.1 into bench/.peers");
  fs.mkdirSync(peers, { recursive: true });
  fs.writeFileSync(path.join(peers, "package.json"), JSON.stringify({ private: true, dependencies: { "node-llama-cpp": "3.22.1" } }));
  const r = spawnSync("npm", ["install", "--no-audit", "--no-fund", "--prefix", peers], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: "true" },
  });
  if (r.status !== 0) {
    log("[bench] node-llama-cpp could not be installed; measuring without it");
    withPeers = false;
  }
}

function runJson(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${path.basename(cmd)} failed (${r.status}): ${r.stderr.slice(-2000)}`);
  const line = r.stdout
    .trim()
    .split("\n")
    .filter((l) => l.startsWith("{") || l.startsWith("["))
    .pop();
  return JSON.parse(r.stdout.trim().startsWith("[") ? r.stdout : line);
}

// the device name(s) llama-bench takes for --device (ggml's names: CUDA0, Vulkan0, MTL0)
await g.initBackends();
const gpuDevices = g.systemInfo().devices.filter((d) => d.type !== "cpu");
const benchDevices =
  device === "cpu"
    ? []
    : gpuDevices.filter((d) => d.name.toLowerCase() === device || d.backend.toLowerCase() === device || (device === "metal" && d.backend === "MTL"));
if (device !== "cpu" && !benchDevices.length)
  throw new Error(`--device ${opt.device}: no such device here (${gpuDevices.map((d) => d.name).join(", ") || "CPU only"}); see \`genai-native info\``);
const devArgs = device === "cpu" ? ["-dev", "none", "-ngl", "0"] : ["-dev", benchDevices.map((d) => d.name).join("/"), "-ngl", "999"];

function runLlamaBench(modelPath, runs) {
  const res = runJson(llamaBench, [
    ...["-m", modelPath, "-p", String(pp), "-n", String(tg), "-t", String(threads), "-b", String(pp), "-ub", String(Math.min(pp, 512))],
    ...["-fa", "0", ...devArgs, "-r", String(runs), "-o", "json"],
  ]);
  const ppRow = res.find((r) => r.n_prompt === pp && r.n_gen === 0);
  const tgRow = res.find((r) => r.n_gen === tg && r.n_prompt === 0);
  return { ppTokensPerSec: ppRow.avg_ts, tgTokensPerSec: tgRow.avg_ts };
}

const nlcGpu = device === "cpu" ? false : (benchDevices[0]?.backend.toLowerCase().replace("mtl", "metal") ?? false);
const runnerArgs = (m) => JSON.stringify({ root, model: m.path, threads, pp, tg, peers, vocab: m.summary.vocabSize, device, nlcGpu, runs: m.runs });
const runAddon = (m) => runJson(process.execPath, [path.join(root, "bench", "runners", "addon.mjs"), runnerArgs(m)]);
const runPeer = (m) => runJson(process.execPath, [path.join(root, "bench", "runners", "node-llama-cpp.mjs"), runnerArgs(m)]);

const ratio = (a, b) => (b ? Number((a / b).toFixed(3)) : null);
const round = (x, d = 4) => (x === null || x === undefined ? x : Number(x.toFixed(d)));

/** Timed runs per round: --runs, or (auto) enough for ≥ 1 s of generation, from one untimed llama-bench run (1..20). */
function runsFor(m) {
  if (opt.runs !== "auto") return Math.max(1, Number(opt.runs));
  const probe = runLlamaBench(m.path, 1);
  return Math.min(20, Math.max(1, Math.ceil(1 / (tg / probe.tgTokensPerSec))));
}

function benchModel(m) {
  const samples = { "genai-native": [], "llama-bench": [], "node-llama-cpp": [] };
  m.runs = runsFor(m);
  log(`[bench] ${path.basename(m.path)}: ${m.runs} timed run(s) per round and side`);
  for (let i = 0; i < reps; i++) {
    log(`[bench] ${path.basename(m.path)}: round ${i + 1}/${reps}`);
    // alternate who goes first, so a drift in the machine's speed (another VM, heat) favours neither
    if (i % 2 === 0) {
      samples["llama-bench"].push(runLlamaBench(m.path, m.runs));
      samples["genai-native"].push(runAddon(m));
    } else {
      samples["genai-native"].push(runAddon(m));
      samples["llama-bench"].push(runLlamaBench(m.path, m.runs));
    }
    if (withPeers) {
      try {
        samples["node-llama-cpp"].push(runPeer(m));
      } catch (e) {
        log(`[bench] node-llama-cpp run failed: ${e.message.split("\n")[0]}; dropping it`);
        withPeers = false;
        samples["node-llama-cpp"] = [];
      }
    }
  }
  const med = {};
  const spr = {};
  for (const [k, v] of Object.entries(samples)) {
    if (!v.length) continue;
    med[k] = { ppTokensPerSec: median(v.map((s) => s.ppTokensPerSec)), tgTokensPerSec: median(v.map((s) => s.tgTokensPerSec)) };
    spr[k] = { ppTokensPerSec: spread(v.map((s) => s.ppTokensPerSec)), tgTokensPerSec: spread(v.map((s) => s.tgTokensPerSec)) };
  }
  const gn = med["genai-native"];
  gn.eventLoopDelayP99Ms = median(samples["genai-native"].map((s) => s.eventLoopDelayP99Ms));
  const lb = med["llama-bench"];
  const nlc = med["node-llama-cpp"];
  // per round: genai-native / llama-bench of the same round (interleaved, so they share the round's noise)
  const perRound = samples["genai-native"].map((s, i) => s.tgTokensPerSec / samples["llama-bench"][i].tgTokensPerSec);
  const out = {
    model: { path: path.basename(m.path), parameters: m.summary.parameterCount, fileBytes: m.summary.fileBytes, architecture: m.summary.architecture },
    runsPerRound: m.runs,
    medians: med,
    spread: spr,
    ratios: {
      ppVsLlamaBench: ratio(gn.ppTokensPerSec, lb.ppTokensPerSec),
      tgVsLlamaBench: ratio(gn.tgTokensPerSec, lb.tgTokensPerSec),
      tgVsLlamaBenchPerRound: { median: round(median(perRound), 3), ...spread(perRound.map((x) => round(x, 3))) },
      ppVsNodeLlamaCpp: nlc ? ratio(gn.ppTokensPerSec, nlc.ppTokensPerSec) : null,
      tgVsNodeLlamaCpp: nlc ? ratio(gn.tgTokensPerSec, nlc.tgTokensPerSec) : null,
    },
  };
  if (opt.profile) {
    const prof = samples["genai-native"].map((s) => s.profile);
    const keys = Object.keys(prof[0]);
    out.profileMsPerToken = {
      "llama-bench": round(1000 / lb.tgTokensPerSec),
      "genai-native": Object.fromEntries(keys.map((k) => [k, prof[0][k] === null ? null : round(median(prof.map((p) => p[k])))])),
    };
  }
  out.samples = samples;
  return out;
}

const results = models.map(benchModel);
process.stdout.write(
  JSON.stringify(
    {
      device: device === "cpu" ? "cpu" : benchDevices.map((d) => `${d.name} (${d.description})`).join(", "),
      cpu: os.cpus()[0]?.model,
      threads,
      pp,
      tg,
      reps,
      versions: g.versions(),
      models: results,
    },
    null,
    2,
  ) + "\n",
);
