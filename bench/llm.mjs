#!/usr/bin/env node
// npm run bench:llm [-- --model PATH] [--generated medium|tiny] [--threads N] [--pp 512] [--tg 128]
//                   [--reps 5] [--no-peers] [--device cpu|vulkan|cuda|metal|Vulkan0]
// Prompt processing (pp) and generation (tg) tokens/s of genai-native vs
// llama.cpp's own llama-bench (built from the same deps/llama.cpp, same flags)
// and vs node-llama-cpp (its npm prebuilt), on the same model and threads.
// Runs are interleaved (one of each per round); medians and ratios as JSON.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const { values: opt } = parseArgs({
  options: {
    model: { type: "string" },
    generated: { type: "string" },
    threads: { type: "string" },
    pp: { type: "string", default: "512" },
    tg: { type: "string", default: "128" },
    reps: { type: "string", default: "7" },
    "no-peers": { type: "boolean", default: false },
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

// --- the model
let modelPath;
if (opt.generated) {
  const out = path.join(root, "bench", "out");
  fs.mkdirSync(out, { recursive: true });
  modelPath = path.join(out, `random-${opt.generated}-q8_0.gguf`);
  if (!fs.existsSync(modelPath)) {
    log(`[bench] generating ${modelPath}`);
    execFileSync(process.execPath, [path.join(root, "dist", "cjs", "tools", "gen-model.js"), "--preset", opt.generated, "--type", "q8_0", "--out", modelPath], {
      stdio: ["ignore", "ignore", "inherit"],
    });
  }
} else {
  modelPath = await g.resolveModel(opt.model, { download: true });
}
const summary = await g.readGgufSummary(modelPath);

// --- llama-bench from the same sources and flags
function llamaBenchPath() {
  const find = () => ["build/Release/llama-bench"].map((p) => path.join(root, p)).find((p) => fs.existsSync(p));
  if (!find()) {
    log("[bench] building llama-bench from deps/llama.cpp (same CMake flags as the addon)");
    execFileSync(process.execPath, [path.join(root, "scripts", "build-addon.mjs"), "--target", "llama-bench"], { stdio: ["ignore", "ignore", "inherit"] });
  }
  const p = find();
  if (!p) throw new Error("llama-bench was not built");
  return p;
}
const llamaBench = llamaBenchPath();

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

function runLlamaBench() {
  const res = runJson(llamaBench, [
    "-m",
    modelPath,
    "-p",
    String(pp),
    "-n",
    String(tg),
    "-t",
    String(threads),
    "-b",
    String(pp),
    "-ub",
    String(Math.min(pp, 512)),
    "-fa",
    "0",
    ...devArgs,
    "-r",
    "1",
    "-o",
    "json",
  ]);
  const ppRow = res.find((r) => r.n_prompt === pp && r.n_gen === 0);
  const tgRow = res.find((r) => r.n_gen === tg && r.n_prompt === 0);
  return { ppTokensPerSec: ppRow.avg_ts, tgTokensPerSec: tgRow.avg_ts };
}

const runnerArgs = JSON.stringify({
  root,
  model: modelPath,
  threads,
  pp,
  tg,
  peers,
  vocab: summary.vocabSize,
  device,
  nlcGpu: device === "cpu" ? false : (benchDevices[0]?.backend.toLowerCase().replace("mtl", "metal") ?? false),
});
const runAddon = () => runJson(process.execPath, [path.join(root, "bench", "runners", "addon.mjs"), runnerArgs]);
const runPeer = () => runJson(process.execPath, [path.join(root, "bench", "runners", "node-llama-cpp.mjs"), runnerArgs]);

const samples = { "genai-native": [], "llama-bench": [], "node-llama-cpp": [] };
for (let i = 0; i < reps; i++) {
  log(`[bench] round ${i + 1}/${reps}`);
  samples["llama-bench"].push(runLlamaBench());
  samples["genai-native"].push(runAddon());
  if (withPeers) {
    try {
      samples["node-llama-cpp"].push(runPeer());
    } catch (e) {
      log(`[bench] node-llama-cpp run failed: ${e.message.split("\n")[0]}; dropping it`);
      withPeers = false;
    }
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
// Medians, and the best round of each (robust to a noisy, shared machine: a
// run can only be slowed down by interference, never sped up).
const med = {};
const best = {};
for (const [k, v] of Object.entries(samples)) {
  if (!v.length) continue;
  med[k] = { ppTokensPerSec: median(v.map((s) => s.ppTokensPerSec)), tgTokensPerSec: median(v.map((s) => s.tgTokensPerSec)) };
  best[k] = { ppTokensPerSec: Math.max(...v.map((s) => s.ppTokensPerSec)), tgTokensPerSec: Math.max(...v.map((s) => s.tgTokensPerSec)) };
  if (k === "genai-native") med[k].eventLoopDelayP99Ms = median(v.map((s) => s.eventLoopDelayP99Ms));
}
const ratio = (a, b) => (b ? Number((a / b).toFixed(3)) : null);
function ratios(m) {
  const gn = m["genai-native"];
  const nlc = m["node-llama-cpp"];
  return {
    ppVsLlamaBench: ratio(gn.ppTokensPerSec, m["llama-bench"].ppTokensPerSec),
    tgVsLlamaBench: ratio(gn.tgTokensPerSec, m["llama-bench"].tgTokensPerSec),
    ppVsNodeLlamaCpp: nlc ? ratio(gn.ppTokensPerSec, nlc.ppTokensPerSec) : null,
    tgVsNodeLlamaCpp: nlc ? ratio(gn.tgTokensPerSec, nlc.tgTokensPerSec) : null,
  };
}
const result = {
  model: { path: path.basename(modelPath), parameters: summary.parameterCount, fileBytes: summary.fileBytes, architecture: summary.architecture },
  device: device === "cpu" ? "cpu" : benchDevices.map((d) => `${d.name} (${d.description})`).join(", "),
  cpu: os.cpus()[0]?.model,
  threads,
  pp,
  tg,
  reps,
  medians: med,
  best,
  ratios: ratios(med),
  bestRatios: ratios(best),
  versions: g.versions(),
  samples,
};
process.stdout.write(JSON.stringify(result, null, 2) + "\n");
