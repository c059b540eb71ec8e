#!/usr/bin/env node
// npm run bench:vision [-- --generated PRESET[:TYPE]] [--threads N] [--tokens 64] [--reps 5]
//                      [--image-size 336] [--hidden 512] [--layers 8]
// An image in the chat, genai-native vs llama.cpp's llama-mtmd-cli built from
// the same deps/llama.cpp (same model, projector, image, prompt, threads,
// context, greedy): the projector's encode time, the image embeddings' decode
// time, and generation tokens/s with the image in context. llama-mtmd-cli's
// figures are its own log lines ("mtmd batch encoding done in X ms", "image
// decoded (batch …) in Y ms", llama_perf_context_print's eval time);
// genai-native's are the result's timings (mediaEncodeMs, mediaDecodeMs, and
// (tokens − 1) / generationMs). The text model is a generated one
// (default medium:q8_0, ~254 M), the projector a generated LLaVA-style one
// (generateRandomMmproj: CLIP ViT at 336 px, patch 14 → 576 image tokens); the
// chat template is ChatML on both sides (the generated model has none).
// Interleaved rounds (the CLI a fresh process each); medians, spread, ratios as JSON.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import { generatedModel, llamaToolPath, median, spread } from "./runners/common.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(import.meta.url);
const { values: opt } = parseArgs({
  options: {
    generated: { type: "string", default: "medium:q8_0" },
    threads: { type: "string" },
    tokens: { type: "string", default: "64" },
    reps: { type: "string", default: "5" },
    "image-size": { type: "string", default: "336" },
    hidden: { type: "string", default: "512" },
    layers: { type: "string", default: "8" },
  },
});
const threads = Number(opt.threads ?? os.availableParallelism?.() ?? os.cpus().length);
const tokens = Number(opt.tokens);
const reps = Number(opt.reps);
const contextSize = 2048;
const log = (...m) => process.stderr.write(`${m.join(" ")}\n`);

const g = require(root);
const tools = require(path.join(root, "dist", "cjs", "tools", "index.js"));
const { PNG } = require("pngjs");
const modelPath = generatedModel(root, opt.generated);
const summary = await g.readGgufSummary(modelPath);
const out = path.join(root, "bench", "out");
const mmproj = path.join(out, `mmproj-${opt["image-size"]}-${opt.hidden}x${opt.layers}-e${summary.embeddingLength}.gguf`);
if (!fs.existsSync(mmproj)) {
  log(`[bench:vision] generating ${mmproj}`);
  await tools.generateRandomMmproj(mmproj, {
    textEmbd: summary.embeddingLength,
    imageSize: Number(opt["image-size"]),
    hidden: Number(opt.hidden),
    layers: Number(opt.layers),
    heads: Math.max(1, Number(opt.hidden) / 64),
    seed: 1,
  });
}
const image = path.join(out, "vision-bench.png");
const png = new PNG({ width: 640, height: 480 });
for (let i = 0; i < 640 * 480; i++) png.data.set([(i * 7) & 255, (i * 13) & 255, (i * 29) & 255, 255], 4 * i);
fs.writeFileSync(image, PNG.sync.write(png));
const cli = llamaToolPath(root, "llama-mtmd-cli");

function runCli() {
  const args = ["-m", modelPath, "--mmproj", mmproj, "--image", image, "-p", "Describe", "-n", String(tokens), "--temp", "0"];
  args.push("-t", String(threads), "-c", String(contextSize), "-v", "--ignore-eos", "--chat-template", "chatml");
  const r = spawnSync(cli, args, { cwd: path.dirname(cli), encoding: "utf8", maxBuffer: 64 << 20 });
  const text = `${r.stdout}${r.stderr}`;
  if (r.status !== 0) throw new Error(`llama-mtmd-cli failed (${r.status}): ${text.slice(-2000)}`);
  const num = (re) => Number(re.exec(text)?.[1] ?? Number.NaN);
  const evalMs = num(/eval time =\s+([\d.]+) ms \/\s+\d+ runs/);
  const runs = num(/eval time =\s+[\d.]+ ms \/\s+(\d+) runs/);
  return { encodeMs: num(/batch encoding done in (\d+) ms/), decodeMs: num(/image decoded \(batch 1\/1\) in (\d+) ms/), tokensPerSec: (runs * 1000) / evalMs };
}

const model = await g.LlamaModel.load(modelPath, { mmproj, device: "cpu", projectorThreads: threads });
const ctx = await model.createContext({ contextSize, threads, batchThreads: threads, batchSize: 2048 }); // llama-mtmd-cli: -b 2048 (common default)
const bytes = fs.readFileSync(image);
async function runAddon() {
  await ctx.clearHistory();
  const r = await ctx.chat(
    [
      {
        role: "user",
        content: [
          { type: "image", image: bytes },
          { type: "text", text: "Describe" },
        ],
      },
    ],
    {
      temperature: 0,
      maxTokens: tokens,
      ignoreEos: true,
      template: tools.CHATML_TEMPLATE, // the generated model has none: ChatML on both sides
    },
  ).result;
  const t = r.timings;
  return { encodeMs: t.mediaEncodeMs, decodeMs: t.mediaDecodeMs, tokensPerSec: ((r.tokenCount - 1) * 1000) / t.generationMs, mediaTokens: t.mediaTokens };
}

await runAddon(); // warm-up (page cache, first-use allocations), both sides
runCli();
const samples = { "genai-native": [], "llama-mtmd-cli": [] };
for (let i = 0; i < reps; i++) {
  for (const kind of i % 2 ? ["llama-mtmd-cli", "genai-native"] : ["genai-native", "llama-mtmd-cli"]) {
    const s = kind === "genai-native" ? await runAddon() : runCli();
    samples[kind].push(s);
    log(
      `[bench:vision] round ${i + 1}/${reps} ${kind}: encode ${s.encodeMs.toFixed(0)} ms, decode ${s.decodeMs.toFixed(0)} ms, ${s.tokensPerSec.toFixed(1)} tokens/s`,
    );
  }
}
await model.dispose();
const med = (k, f) => median(samples[k].map((s) => s[f]));
const r3 = (x) => Number(x.toFixed(3));
const fields = ["encodeMs", "decodeMs", "tokensPerSec"];
const result = {
  model: path.basename(modelPath),
  projector: { file: path.basename(mmproj), imageTokens: samples["genai-native"][0].mediaTokens },
  threads,
  tokens,
  reps,
  medians: Object.fromEntries(Object.keys(samples).map((k) => [k, Object.fromEntries(fields.map((f) => [f, r3(med(k, f))]))])),
  spread: Object.fromEntries(Object.keys(samples).map((k) => [k, Object.fromEntries(fields.map((f) => [f, spread(samples[k].map((s) => s[f]))]))])),
  ratios: {
    "encode (llama-mtmd-cli / genai-native, higher is better)": r3(med("llama-mtmd-cli", "encodeMs") / med("genai-native", "encodeMs")),
    "image decode (llama-mtmd-cli / genai-native)": r3(med("llama-mtmd-cli", "decodeMs") / med("genai-native", "decodeMs")),
    "tokens/s with the image (genai-native / llama-mtmd-cli)": r3(med("genai-native", "tokensPerSec") / med("llama-mtmd-cli", "tokensPerSec")),
  },
  target: "≥ 0.98×",
};
process.stdout.write(`${JSON.stringify(result, null, 1)}\n`);
