#!/usr/bin/env node
// npm run bench:image [-- --family sd1|sdxl|zimage|flux1|sd3|flux2|qwenimage | --model PATH] [--size 256] [--steps 6] [--reps 3] [--threads N]
// Seconds per sampling step of genai-native's diffusion engine vs
// stable-diffusion.cpp's own sd-cli built from the same deps/ sources and
// flags (`--target sd-cli`), same model, size, steps, sampler, seed, threads;
// interleaved rounds, medians and the ratio (the median of each round's ratio, and the ratio of each side's
// fastest round, the least disturbed on a shared machine). The per-step figure is the mean
// of steps 2..n (step 1 includes graph setup in both). Memory: each side's
// peak resident memory (Linux: the addon's process VmHWM less its baseline
// before the load; sd-cli's maximum RSS from /usr/bin/time) next to
// estimateDiffusionMemory's weights + compute peak for the same size.
// --family: the generated random-weight model of a family (sd1: one
// checkpoint, euler_a, CFG 7; sdxl: one checkpoint with SDXL base's names, a
// narrow UNet and the full-size CLIP-L + bigG, euler_a, CFG 7; zimage: DiT + Qwen3 + Flux VAE files, euler,
// CFG 1 as Z-Image-Turbo runs; flux1: Flux 1 [dev] DiT + CLIP-L + T5 + Flux VAE,
// euler with the flux scheduler, CFG 1 (guidance 3.5, sd.cpp's default); sd3: SD3.5 MMDiT + CLIP-L + bigG + T5 +
// 16-channel VAE, euler, discrete, CFG 4.5; flux2: Flux 2 [klein] DiT + Qwen3 + Flux 2 VAE,
// euler with the flux2 scheduler, CFG 1; qwenimage: Qwen-Image DiT +
// Qwen2.5-VL + Wan VAE (q4_0), euler, CFG 1); --model: any single checkpoint
// sd.cpp loads.
// Needs the engine (deps/stable-diffusion.cpp populated); otherwise it says so.
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const g = require(root);
const { values: opt } = parseArgs({
  options: {
    model: { type: "string" },
    family: { type: "string" },
    size: { type: "string", default: "256" },
    steps: { type: "string", default: "6" },
    reps: { type: "string", default: "3" },
    threads: { type: "string" },
  },
});
if (!g.capabilities().diffusion) {
  process.stdout.write(
    JSON.stringify({
      skipped: true,
      reason: "this addon has no diffusion engine: git submodule update --init deps/stable-diffusion.cpp && npm run build:native",
    }) + "\n",
  );
  process.exit(0);
}
const size = Number(opt.size);
const steps = Number(opt.steps);
const reps = Number(opt.reps);
const threads = Number(opt.threads ?? os.availableParallelism?.() ?? os.cpus().length);
// families with a random-weight generator (lib/tools/sd): the sampler, scheduler and CFG each is run with
// (the family's sd.cpp defaults; the distilled Z-Image-Turbo and Flux 2 [klein] at CFG 1), the generator and its files
const FAMILIES = {
  sd1: { sampler: "euler_a", scheduler: "discrete", cfgScale: 7 },
  sdxl: { sampler: "euler_a", scheduler: "discrete", cfgScale: 7, checkpoint: "generateRandomSdxlModel", prefix: "sdxl" },
  zimage: { sampler: "euler", scheduler: "discrete", cfgScale: 1, generator: "generateRandomZImageModel", prefix: "z-image" },
  flux1: { sampler: "euler", scheduler: "flux", cfgScale: 1, generator: "generateRandomFlux1Model", prefix: "flux1-dev" },
  sd3: { sampler: "euler", scheduler: "discrete", cfgScale: 4.5, generator: "generateRandomSd3Model", prefix: "sd3" },
  flux2: { sampler: "euler", scheduler: "flux2", cfgScale: 1, generator: "generateRandomFlux2KleinModel", prefix: "flux2-klein" },
  qwenimage: { sampler: "euler", scheduler: "discrete", cfgScale: 1, generator: "generateRandomQwenImageModel", prefix: "qwen-image" },
};
if (opt.family !== undefined && opt.model !== undefined) throw new Error("give --family or --model, not both");
const family = opt.family ?? "sd1";
if (!FAMILIES[family])
  throw new Error(`--family ${family}: no generated checkpoint for it yet (have: ${Object.keys(FAMILIES).join(", ")}); pass --model PATH with a real one`);
/** The load's model files (DiffusionLoadOptions), generated once into bench/out. */
let load;
if (opt.model) load = { model: opt.model };
else if (FAMILIES[family].checkpoint) {
  const f = FAMILIES[family];
  const tools = require(path.join(root, "dist", "cjs", "tools", "index.js"));
  // regenerated each run (a few seconds), as the parts below
  const r = await tools[f.checkpoint](path.join(root, "bench", "out", `random-${f.prefix}.gguf`), { seed: 1 });
  load = { model: r.model.path };
} else if (FAMILIES[family].generator) {
  const f = FAMILIES[family];
  const dir = path.join(root, "bench", "out", `random-${f.prefix}`);
  const tools = require(path.join(root, "dist", "cjs", "tools", "index.js"));
  // regenerated each run (a few seconds): a file left by an older generator would measure another model
  const parts = await tools[f.generator](dir, { seed: 1 });
  // the parts the generator wrote (diffusionModel, vae and the family's text encoders: llm, or clipL + t5xxl)
  load = Object.fromEntries(Object.entries(parts).flatMap(([k, p]) => (p && typeof p === "object" && "path" in p ? [[k, p.path]] : [])));
} else {
  load = { model: path.join(root, "bench", "out", "random-sd15.gguf") };
  if (!fs.existsSync(load.model)) {
    fs.mkdirSync(path.dirname(load.model), { recursive: true });
    execFileSync(process.execPath, [path.join(root, "dist", "cjs", "tools", "gen-sd-model.js"), "--out", load.model], {
      stdio: ["ignore", "ignore", "inherit"],
    });
  }
}
// sd-cli's flags for the same files (examples/common/common.cpp)
const CLI_FLAGS = { model: "-m", diffusionModel: "--diffusion-model", llm: "--llm", vae: "--vae", clipL: "--clip_l", clipG: "--clip_g", t5xxl: "--t5xxl" };
const cliFiles = Object.entries(load).flatMap(([k, f]) => [CLI_FLAGS[k], f]);
const sdCli = path.join(root, "build", "Release", "sd-cli"); // beside the addon and its backend modules
if (!fs.existsSync(sdCli))
  execFileSync("cmake", ["--build", path.join(root, "build"), "--target", "sd-cli", "--parallel", String(os.cpus().length)], {
    stdio: ["ignore", "ignore", "inherit"],
  });

const common = {
  prompt: "a lighthouse on a cliff",
  width: size,
  height: size,
  steps,
  cfgScale: opt.model ? 7 : FAMILIES[family].cfgScale,
  sampler: opt.model ? "euler_a" : FAMILIES[family].sampler,
  scheduler: opt.model ? "discrete" : FAMILIES[family].scheduler,
  seed: 42,
  count: 1,
};
const meanTail = (xs) => (xs.length > 1 ? xs.slice(1).reduce((s, x) => s + x, 0) / (xs.length - 1) : xs[0]);

function runAddon() {
  const r = spawnSync(process.execPath, [path.join(root, "bench", "runners", "image-addon.mjs"), JSON.stringify({ root, load, threads, params: common })], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`the addon's runner failed: ${r.stderr.slice(-1500)}`);
  return JSON.parse(r.stdout.trim().split("\n").pop());
}

function runSdCli() {
  const out = path.join(os.tmpdir(), `genai-bench-${process.pid}.png`);
  const t0 = performance.now();
  // /usr/bin/time -f: the child's maximum resident set in KiB, on stderr's last line
  const timed = fs.existsSync("/usr/bin/time");
  const r = spawnSync(
    timed ? "/usr/bin/time" : sdCli,
    [
      ...(timed ? ["-f", "GENAI_MAXRSS_KB=%M", sdCli] : []),
      ...cliFiles,
      "-p",
      common.prompt,
      "-W",
      String(size),
      "-H",
      String(size),
      "--steps",
      String(steps),
      "--cfg-scale",
      String(common.cfgScale),
      "--sampling-method",
      common.sampler,
      "--scheduler",
      common.scheduler,
      "-s",
      "42",
      "-t",
      String(threads),
      "-o",
      out,
    ],
    { encoding: "utf8", maxBuffer: 64 << 20 },
  );
  const total = performance.now() - t0;
  fs.rmSync(out, { force: true });
  if (r.status !== 0) throw new Error(`sd-cli failed: ${r.stderr.slice(-1500)}`);
  // progress lines: "|====| k/n - 1.23s/it" or "- 4.56it/s"
  const perStep = [];
  for (const m of (r.stdout + r.stderr).matchAll(/(\d+)\/(\d+) - ([\d.]+)(s\/it|it\/s)/g)) {
    if (Number(m[2]) !== steps) continue;
    const v = Number(m[3]);
    perStep[Number(m[1]) - 1] = m[4] === "s/it" ? v : 1 / v;
  }
  const rss = r.stderr.match(/GENAI_MAXRSS_KB=(\d+)/);
  return { secondsPerStep: meanTail(perStep.filter((x) => x !== undefined)), totalMs: total, peakRssBytes: rss ? Number(rss[1]) * 1024 : null };
}

const samples = { "genai-native": [], "sd-cli": [] };
for (let i = 0; i < reps; i++) {
  process.stderr.write(`[bench] round ${i + 1}/${reps}\n`);
  samples["sd-cli"].push(runSdCli());
  samples["genai-native"].push(runAddon());
}
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ours = median(samples["genai-native"].map((s) => s.secondsPerStep));
const estimate = await g.estimateDiffusionMemory(load, { width: size, height: size });
const peakOf = (k, f) => {
  const xs = samples[k].map(f).filter((x) => typeof x === "number");
  return xs.length ? median(xs) : null;
};
const oursPeak = peakOf("genai-native", (s) => (s.peakRssBytes === null ? null : s.peakRssBytes - s.baselineRssBytes));
const cliPeak = peakOf("sd-cli", (s) => s.peakRssBytes);
const theirs = median(samples["sd-cli"].map((s) => s.secondsPerStep));
const oursMin = Math.min(...samples["genai-native"].map((s) => s.secondsPerStep));
const theirsMin = Math.min(...samples["sd-cli"].map((s) => s.secondsPerStep));
process.stdout.write(
  JSON.stringify(
    {
      model: Object.values(load)
        .map((f) => path.basename(f))
        .join(" + "),
      size: `${size}x${size}`,
      steps,
      threads,
      reps,
      medianSecondsPerStep: { "genai-native": ours, "sd-cli": theirs },
      // throughput ratio: ≥ 1 means genai-native is at least as fast
      ratio: Number((theirs / ours).toFixed(3)),
      // the fastest round of each side, and their ratio: on a shared machine other load only ever slows a round
      // down, so the minimum is the least disturbed figure of each (reported beside the medians, not instead)
      minSecondsPerStep: { "genai-native": oursMin, "sd-cli": theirsMin },
      ratioOfMinimums: Number((theirsMin / oursMin).toFixed(3)),
      // each round's sd-cli run and addon run back to back: the median of their ratios cancels load that drifts
      // over the rounds (a round's pair shares it), where the medians of each side do not
      pairedRatio: Number(median(samples["sd-cli"].map((s, i) => s.secondsPerStep / samples["genai-native"][i].secondsPerStep)).toFixed(3)),
      family: opt.model ? estimate.family : family,
      // bytes; the estimate is the orchestrator's (lib/diffusion/memory.ts), the peaks are measured
      memory: {
        estimate: { weights: estimate.weights.total, computePeak: estimate.compute?.peak ?? null, total: estimate.total ?? null },
        peakRss: { "genai-native (over its baseline)": oursPeak, "sd-cli": cliPeak },
        estimateOverPeak: {
          "genai-native": estimate.total && oursPeak ? Number((estimate.total / oursPeak).toFixed(3)) : null,
          "sd-cli": estimate.total && cliPeak ? Number((estimate.total / cliPeak).toFixed(3)) : null,
        },
      },
      samples,
    },
    null,
    2,
  ) + "\n",
);
