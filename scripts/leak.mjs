#!/usr/bin/env node
// npm run leak [-- --cycles 500] [--big-cycles 30] [--tokens 16] [--threads N] [--phase stories|big]
// Memory drift over load → createContext → generate → dispose cycles: stories260K
// (--cycles) and a generated ~94 MB q8_0 llama model (--big-cycles, written once to
// bench/out/). Each phase runs in its own child process (node --expose-gc) and
// reports RSS after a GC at cycle 10 (warm-up) and at the end; drift % is
// (end − cycle 10) / cycle 10, and fittedDriftPct the same from a least-squares
// line through ~20 samples (single readings move by several MiB with what
// glibc holds of freed memory at that moment). Prints one JSON object; exits 1
// when a phase's fitted drift is 5 % or more (--max-drift to change).
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const { values: opt } = parseArgs({
  options: {
    cycles: { type: "string", default: "500" },
    "big-cycles": { type: "string", default: "30" },
    tokens: { type: "string", default: "16" },
    threads: { type: "string" },
    phase: { type: "string" },
    "max-drift": { type: "string", default: "5" },
  },
});
const WARMUP = 10;
const MiB = 1024 * 1024;
const log = (...m) => process.stderr.write(`${m.join(" ")}\n`);

// 12 layers, embd 768, ff 2048, vocab 8192: ~88 M parameters, ~94 MB in q8_0
const BIG_SHAPE = { layers: 12, embd: 768, ff: 2048, heads: 12, kvHeads: 4, vocab: 8192, ctx: 2048 };

async function bigModelPath() {
  const file = path.join(root, "bench", "out", "leak-88m-q8_0.gguf");
  if (!fs.existsSync(file)) {
    const { generateRandomLlamaModel } = require(path.join(root, "dist", "cjs", "tools", "index.js"));
    log(`[leak] generating ${file}`);
    await generateRandomLlamaModel(`${file}.tmp`, BIG_SHAPE, { type: "q8_0", seed: 1 });
    fs.renameSync(`${file}.tmp`, file);
  }
  return file;
}

async function runPhase(phase) {
  if (typeof globalThis.gc !== "function") throw new Error("run with node --expose-gc");
  const g = require(root);
  const cycles = Number(phase === "big" ? opt["big-cycles"] : opt.cycles);
  const maxTokens = Number(opt.tokens);
  const threads = Number(opt.threads ?? Math.max(1, (os.availableParallelism?.() ?? os.cpus().length) - 1));
  const file = phase === "big" ? await bigModelPath() : await g.resolveModel(undefined, { download: false });
  // after the native threads have dropped their last references, and a full GC
  const rss = async () => {
    await new Promise((r) => setTimeout(r, 100));
    globalThis.gc();
    globalThis.gc();
    return process.memoryUsage().rss;
  };
  const start = await rss();
  let atWarmup = 0;
  const samples = []; // [cycle, bytes] after warm-up, about 20 of them
  const every = Math.max(1, Math.round((cycles - WARMUP) / 20));
  const t0 = Date.now();
  for (let i = 1; i <= cycles; i++) {
    const model = await g.LlamaModel.load(file);
    const ctx = await model.createContext({ contextSize: 256, threads });
    const r = await ctx.complete("Once upon a time", { maxTokens, temperature: 0, ignoreEos: true });
    if (r.tokenCount !== maxTokens) throw new Error(`cycle ${i}: ${r.tokenCount} tokens`);
    await model.dispose();
    if (i === WARMUP) atWarmup = await rss();
    if (i > WARMUP && (i - WARMUP) % every === 0 && i !== cycles) samples.push([i, await rss()]);
  }
  const end = await rss();
  const base = atWarmup || start;
  samples.unshift([WARMUP, base]);
  samples.push([cycles, end]);
  // least-squares slope: RSS moves by ±10 MiB between samples (what glibc keeps
  // of freed memory at that moment), a leak shows as a steady slope
  const n = samples.length;
  const mx = samples.reduce((a, [x]) => a + x, 0) / n;
  const my = samples.reduce((a, [, y]) => a + y, 0) / n;
  const sxx = samples.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  const slope = sxx > 0 ? samples.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0) / sxx : 0;
  return {
    model: path.basename(file),
    cycles,
    tokensPerCycle: maxTokens,
    threads,
    seconds: (Date.now() - t0) / 1000,
    rssStartMiB: +(start / MiB).toFixed(1),
    rssAtCycle10MiB: +(base / MiB).toFixed(1),
    rssEndMiB: +(end / MiB).toFixed(1),
    driftPct: +(((end - base) / base) * 100).toFixed(2),
    perCycleKiB: +((end - base) / 1024 / Math.max(1, cycles - WARMUP)).toFixed(2),
    fittedPerCycleKiB: +(slope / 1024).toFixed(2),
    fittedDriftPct: +(((slope * (cycles - WARMUP)) / base) * 100).toFixed(2),
    samplesMiB: samples.map(([, y]) => +(y / MiB).toFixed(1)),
  };
}

if (opt.phase) {
  const r = await runPhase(opt.phase);
  process.stdout.write(`${JSON.stringify(r)}\n`);
} else {
  const out = { mallocArenaMax: process.env.MALLOC_ARENA_MAX ?? null };
  const self = fileURLToPath(import.meta.url);
  const passArgs = ["--cycles", opt.cycles, "--big-cycles", opt["big-cycles"], "--tokens", opt.tokens, ...(opt.threads ? ["--threads", opt.threads] : [])];
  for (const phase of ["stories", "big"]) {
    if (Number(phase === "big" ? opt["big-cycles"] : opt.cycles) <= 0) continue;
    log(`[leak] ${phase}…`);
    const r = spawnSync(process.execPath, ["--expose-gc", self, "--phase", phase, ...passArgs], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
    if (r.status !== 0) {
      log(`[leak] ${phase} failed: status ${r.status} signal ${r.signal}`);
      process.exit(2);
    }
    out[phase] = JSON.parse(r.stdout.trim().split("\n").pop());
  }
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  const max = Number(opt["max-drift"]);
  if (["stories", "big"].some((p) => out[p] && out[p].fittedDriftPct >= max)) process.exit(1);
}
